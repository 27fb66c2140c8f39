"""Fuzzing what users type and what they leave on disk (hypothesis): the command line's
parameters and parameter files, and ``run.json`` as ``replay`` and ``run -p run_dir`` read it.
The property everywhere: a correct result, or a one-line error naming the input (exit status
2 on the command line) — never another exception type, never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sdsam_nb import runs
from sdsam_nb.__main__ import main
from sdsam_nb.kernel import SharedKernel
from sdsam_nb.runs import chain

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOTEBOOK_PARAMS = sorted(
    {name for nb in chain.CHAIN for name in chain.declared(nb)} & set(runs.SPEC)
)
YAMLISH = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "010",
            "1:00",
            "yes",
            "~",
            "[]",
            "{}",
            "[[1, 2, 1]]",
            "[1, 2, 3, 4]",
            ".nan",
            "-.inf",
            "1e999",
            "0x10",
            "&a [*a]",
            "!!python/object:os.system",
            "[" * 60 + "]" * 60,
            "'unterminated",
            "a: b: c",
            "\x00",
            "😀",
            "99999999999999999999999",
        ]
    ),  # fmt: skip
)


class _Ran(Exception):
    """Raised by the stand-in for execute_chain: the values reached the kernels' side."""


def _cli(args: list[str]) -> tuple[int | None, dict | None, list[str]]:
    """``main(args)`` with execute_chain stood in for: (exit status or None if it ran, the
    parameters it would have run with, stderr's lines)."""
    seen = {}

    def stand_in(names, params, **kwargs):
        seen.update(params)
        if "run_dir" in kwargs:  # the command hands run_dir on apart from the parameters
            seen["run_dir"] = kwargs["run_dir"]
        raise _Ran

    err = io.StringIO()
    with (
        mock.patch("sdsam_nb.runs.chain.execute_chain", stand_in),
        mock.patch.object(SharedKernel, "start", lambda kernel: kernel),  # no kernel to boot
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            code = main(args)
        except _Ran:
            code = None
        except SystemExit as exc:  # argparse's own answer: its usage, then one error line
            code = exc.code
            usage, *said = err.getvalue().splitlines()
            assert usage.startswith("usage: sdsam-nb") and said[-1].startswith("sdsam-nb ")
            return code, None, said[-1:]
    return code, (seen if code is None else None), err.getvalue().splitlines()


@FUZZ
@given(name=st.sampled_from(NOTEBOOK_PARAMS), text=YAMLISH)
@example(name="run_dir", text="")  # accepted (no run to continue): the command hands it on
def test_any_parameter_text_is_run_checked_or_refused_in_one_line(name, text):
    code, params, said = _cli(["run", "-p", name, text])
    if code is None:  # accepted: exactly what the notebooks will accept
        checked = runs.check_params(**{k: v for k, v in params.items() if k in runs.SPEC})
        assert checked[name] == runs.check_params(**{name: params[name]})[name]
    else:
        assert code == 2 and len(said) == 1 and said[0].startswith("sdsam-nb"), said


@FUZZ
@given(
    body=st.one_of(
        st.text(max_size=200),
        st.dictionaries(st.sampled_from(NOTEBOOK_PARAMS), YAMLISH, max_size=4).map(
            lambda d: "\n".join(f"{k}: {v}" for k, v in d.items())
        ),
    )
)
def test_any_parameters_file_is_run_checked_or_refused_in_one_line(body):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "params.yaml"
        path.write_text(body, encoding="utf-8")
        code, _params, said = _cli(["run", "-f", str(path)])
    assert code is None or (code == 2 and len(said) == 1), said


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "run_id": JSON,
        "notebooks": st.one_of(
            JSON,
            st.dictionaries(
                st.sampled_from(chain.EVERY),
                st.fixed_dictionaries({}, optional={"params": JSON, "execution": JSON}),
            ),
        ),
        "executions": st.one_of(
            JSON,
            st.lists(
                st.fixed_dictionaries(
                    {}, optional={"notebook": JSON | st.sampled_from(chain.EVERY), "status": JSON}
                ),
                max_size=3,
            ),
        ),
        "files": st.one_of(
            JSON, st.dictionaries(st.text(max_size=8), st.text(max_size=12) | JSON, max_size=3)
        ),
        "sha256": JSON,
        "clicks": JSON,
        "steps": JSON,
        "models": JSON,
    },
)


@FUZZ
@given(record=st.one_of(JSON, RECORDS), raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_any_run_json_is_read_or_named_damaged_in_one_line(record, raw):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "run.json").write_bytes(json.dumps(record).encode() if raw is None else raw)
        try:
            run = runs.open_run(folder)
            assert run.status in ("done", "running", "failed", "empty")
            chain.check_files(run)
        except (ValueError, FileNotFoundError) as exc:
            assert len(str(exc).splitlines()) == 1 and str(exc)
        code, _params, said = _cli(["replay", folder])
        assert code is None or (code == 2 and len(said) == 1), said
        code, _params, said = _cli(["run", "--notebooks", "03", "-p", "run_dir", folder])
        assert code is None or (code == 2 and len(said) == 1), said
