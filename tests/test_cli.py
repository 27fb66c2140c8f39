"""The command line and plain papermill, as a new user calls them: each does what it is told
or says no in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import python_says
from test_notebooks import _here

import sdsam_nb
from sdsam_nb import runs
from sdsam_nb.__main__ import main
from sdsam_nb.kernel import NO_OUTPUT_CACHE, WARM, SharedKernel

CHECKOUT = Path(__file__).resolve().parents[1]
TINY = ["-p", "sd_model", "tiny", "-p", "sam_model", "tiny", "-p", "steps", "2"]
QUICK = [*TINY, "-p", "size", "128", "-p", "n_variations", "1"]


@pytest.fixture
def cli(capfd):
    """``sdsam-nb ARGS`` in this process (``main``): its exit status and what it wrote,
    with the kernels' own writes (they share this process's stderr)."""

    def call(*args) -> subprocess.CompletedProcess:
        capfd.readouterr()
        code = main(list(args))
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return call


def _said(stderr: str) -> list[str]:
    """What the command itself said on stderr. The kernels it starts share its stderr and
    write there on their own (ipykernel's transport warning; under load, tornado's report of
    a control message that raced the kernel's shutdown): those are not the command's lines,
    but no traceback of the command's own (papermill's execution error) may be there."""
    assert "PapermillExecutionError" not in stderr and "sdsam_nb/__main__.py" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("sdsam-nb:")]


def test_a_misspelled_parameter_fails_naming_it(capsys):
    assert main(["run", "--notebooks", "01", "-p", "stepz", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "sdsam-nb: -p stepz: no parameter 'stepz' in 01_generate_subject (did you mean steps?)"
    )


def test_a_parameter_of_another_notebook_fails(capsys):
    assert main(["run", "--notebooks", "02", "-p", "steps", "3"]) == 2
    assert "no parameter 'steps' in 02_click_to_mask" in capsys.readouterr().err


def test_a_typo_in_a_parameters_file_fails(tmp_path, capsys):
    params = tmp_path / "p.yaml"
    params.write_text("steps: 3\nbackground_promt: a beach\n")
    assert main(["run", "-f", str(params)]) == 2
    err = capsys.readouterr().err
    assert "no parameter 'background_promt' in any notebook (did you mean background_prompt" in err


def test_a_missing_picture_fails_before_any_notebook_runs(tmp_path, capsys):
    for name in ("image_path", "mask_path"):
        missing = tmp_path / f"{name}.png"
        code = main(["run", "-p", name, str(missing), "--output-root", str(tmp_path)])
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert err == f"sdsam-nb: -p {name}: no file at {str(missing)!r}"
    assert list(tmp_path.iterdir()) == []  # no run folder was made


def test_replay_of_a_missing_folder_answers_in_one_line(tmp_path, cli, monkeypatch):
    booted = []

    class Kernel(SharedKernel):  # booted ahead of the check, as for a run
        def start(self):
            booted.append(super().start())
            return self

    monkeypatch.setattr("sdsam_nb.__main__.SharedKernel", Kernel)
    done = cli("replay", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert _said(done.stderr) == [
        f"sdsam-nb: replay: {str(tmp_path / 'nope')!r} is not a run folder (no run.json)"
    ]
    assert len(booted) == 1 and booted[0].km is None  # and shut down


def test_copy_notebooks_for_an_installed_kit(tmp_path, capsys):
    target = tmp_path / "my-notebooks"
    assert main(["notebooks", str(target)]) == 0
    copied = sorted(p.name for p in target.iterdir())
    assert copied == sorted(p.name for p in runs.kit_dir("notebooks").glob("*.ipynb"))
    (target / "02_click_to_mask.ipynb").write_text("my edits")
    assert main(["notebooks", str(target)]) == 0  # again: nothing is overwritten
    assert (target / "02_click_to_mask.ipynb").read_text() == "my edits"
    assert "kept" in capsys.readouterr().out
    (tmp_path / "a-file").write_text("")
    assert main(["notebooks", str(tmp_path / "a-file" / "sub")]) == 2  # no traceback
    assert "notebooks: cannot write into" in capsys.readouterr().err


@pytest.mark.slow
def test_run_dir_continues_the_given_run(tmp_path, cli):
    first = _here(["02_click_to_mask"], {"sam_model": "tiny", "points": [[256, 200, 1]]}, tmp_path)
    done = cli(
        "run",
        "--notebooks",
        "03",
        *QUICK,
        "-p",
        "run_dir",
        str(first.path),
        "--no-progress",
        "--output-root",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # no new folder
    record = first.record
    assert [e["notebook"] for e in record["executions"]] == [
        "02_click_to_mask",
        "03_inpaint_background",
    ]
    assert {"mask", "inpaint-0"} <= set(record["files"])
    assert record["executions"][1]["executed_notebook"] == "03_inpaint_background.ipynb"
    assert all(e["status"] == "done" for e in record["executions"])
    # 03 used the run's own mask and clicks, not the sample's
    assert record["notebooks"]["03_inpaint_background"]["params"]["run_dir"] == str(first.path)


@pytest.mark.slow
def test_failed_replay_answers_in_one_line(tmp_path, cli):
    bad = cli(
        "run",
        "--notebooks",
        "02",
        "-p",
        "sam_model",
        "tiny",
        "-p",
        "points",
        "[[5000, 10, 1]]",
        "--no-progress",
        "--output-root",
        str(tmp_path),
    )
    assert bad.returncode == 1
    said = _said(bad.stderr)
    assert len(said) == 1 and "outside the image" in said[0], said
    (folder,) = tmp_path.iterdir()
    run = runs.open_run(folder)
    assert run.status == "failed"
    assert "outside the image" in run.record["executions"][0]["errors"][0]
    again = cli("replay", str(folder), "--no-progress")
    assert again.returncode == 1
    said = _said(again.stderr)
    assert len(said) == 1 and said[0].startswith("sdsam-nb: the replay failed: ValueError:"), said


@pytest.mark.slow
def test_plain_papermill_from_the_checkout_root():
    """papermill -p passes a list as text (read as YAML 1.2) and -y passes YAML, in one call;
    the run folder lands in the checkout's outputs/ wherever papermill is started."""
    outputs = CHECKOUT / "outputs"
    before = set(outputs.iterdir()) if outputs.exists() else set()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("SDSAM_OUTPUTS", None)
    yaml_params = {"sd_model": "tiny", "steps": 2, "size": 128, "n_variations": 1, "fast": "lcm"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "papermill", "-k", "python3", "--no-progress-bar",
             "notebooks/04_composite_background.ipynb", "-",  # the executed notebook: stdout
             "-p", "position", "[10, 20]", "-y", json.dumps(yaml_params)],
            cwd=CHECKOUT, capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        (folder,) = set(outputs.iterdir()) - before
        run = runs.open_run(folder)
        assert run.status == "done" and run.file("composite-0").is_file()
        params = run.record["notebooks"]["04_composite_background"]["params"]
        assert params["position"] == [10, 20] and params["fast"] == "lcm"  # the few-step mode
        assert run.record["models"]["sd"]["fast"]["name"] == "lcm"
    finally:
        for new in set(outputs.iterdir()) - before:
            shutil.rmtree(new)


def test_the_warm_up_imports_the_pipelines_and_leaves_no_name():
    """What the chain's kernel runs first (sdsam_nb.kernel.WARM): the kit's API and SD's
    pipeline classes imported, nothing left in the namespace the first notebook gets; the
    garbage collector on again after it, what it imported frozen (no full collection goes
    through it again)."""
    import gc

    namespace = {}
    try:
        exec(WARM, namespace)  # noqa: S102 - the kit's own one-line warm-up
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # this test process collects as before
    assert set(namespace) == {"__builtins__"}
    assert "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion" in sys.modules
    assert all(name in vars(sdsam_nb) for name in sdsam_nb.__all__)  # each looked up once


def test_the_chain_kernel_keeps_no_output_history(monkeypatch):
    """The chain's kernel starts with IPython's output cache off (kernel.NO_OUTPUT_CACHE):
    clearing that cache before each notebook collected all garbage, about a second with the
    models loaded. (That the kernel boots with it: every chain test.)"""
    from jupyter_client.manager import AsyncKernelManager

    asked = {}

    class Manager(AsyncKernelManager):
        async def start_kernel(self, **kwargs):
            asked.update(kwargs)
            raise RuntimeError("no kernel in this test")

    monkeypatch.setattr(SharedKernel, "manager_class", Manager)
    with pytest.raises(RuntimeError, match="no kernel in this test"):
        SharedKernel().start()
    assert asked["extra_arguments"] == [NO_OUTPUT_CACHE]


def test_papermill_clients_of_the_chain_kernel_are_ready_at_once(monkeypatch):
    """Each notebook's client (papermill opens one on the chain's kernel) is ready in one
    kernel_info round trip, not after jupyter_client's extra 0.2 s of IOPub silence, and gets
    its cell's output (its IOPub channel is connected)."""
    import time

    from jupyter_core.utils import run_sync

    monkeypatch.setattr("sdsam_nb.kernel.WARM", "pass")  # the kernel alone, not the kit
    kernel = SharedKernel().start()
    waits = []
    try:
        km = kernel.ready()
        for _ in range(2):  # as for two notebooks
            client = km.client()
            client.start_channels()
            start = time.perf_counter()
            run_sync(client.wait_for_ready)(timeout=60)
            waits.append(time.perf_counter() - start)
            said = []
            run_sync(client.execute_interactive)(
                "print('hello')", timeout=60, output_hook=said.append
            )
            client.stop_channels()
            assert {"name": "stdout", "text": "hello\n"} in [m["content"] for m in said]
    finally:
        kernel.stop()
    assert min(waits) < 0.2, waits  # jupyter_client's own wait: at least 0.2 s every time


def test_the_chain_writes_each_executed_notebook_at_its_start_and_end(tmp_path, monkeypatch):
    """papermill writes an executed notebook before and after each of its cells; the chain's
    engine (chain._engine) writes it when it starts and when it ends, holding every cell's
    output (and when a cell fails or the kernel dies: tests/test_faults.py)."""
    import nbformat
    import papermill.engines

    from sdsam_nb.runs import chain

    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    params = nbformat.v4.new_code_cell('run_dir = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(f"print({i})") for i in range(5))]
    nbformat.write(nb, folder / "02_click_to_mask.ipynb")
    writes = []
    write = papermill.engines.write_ipynb
    monkeypatch.setattr(papermill.engines, "write_ipynb", lambda *a: writes.append(write(*a)))
    monkeypatch.setattr("sdsam_nb.kernel.WARM", "pass")  # the kernel alone, not the kit
    run = chain.execute_chain(
        ["02_click_to_mask"], {}, output_root=tmp_path / "out", notebooks=folder, echo=False
    )
    executed = nbformat.read(run.path / "02_click_to_mask.ipynb", as_version=4)
    said = [o["text"] for c in executed.cells[1:] for o in c.outputs]
    assert said == [f"{i}\n" for i in range(5)]
    assert len(writes) == 2, len(writes)  # papermill's own: 2 + 2 per cell


def test_the_command_line_exits_without_collecting_its_garbage():
    """At exit ``sdsam-nb`` freezes the garbage collector (atexit): the interpreter's last
    collections of what papermill built took 0.1-0.4 s after every command."""
    code = (
        "import atexit, gc\n"
        "atexit.register(lambda: print(gc.get_freeze_count() > 0))  # runs after the kit's\n"
        "import sdsam_nb.__main__\n"
    )
    assert python_says(code) == ["True"]


def test_the_command_line_checks_and_records_without_torch(tmp_path):
    """What ``sdsam-nb run`` does itself (its kernel does the rest): read its parameters,
    check them, make and reopen the run folder, papermill. None of it imports torch or
    diffusers, whose import and teardown took seconds of every run's critical path."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import papermill\n"
        "from sdsam_nb.__main__ import _check_values, _yaml_value\n"
        "from sdsam_nb.runs import new_run, open_run\n"
        "from sdsam_nb.runs.chain import select\n"
        "select('01,02,03')\n"
        "params = {'steps': _yaml_value('4', 'steps'), 'points': [[10, 20, 1]], 'size': 256,\n"
        "          'background_prompt': 'a beach', 'sd_model': 'tiny'}\n"
        f"run = new_run(Path({str(tmp_path)!r}))\n"
        "_check_values({**params, 'run_dir': str(run.path)})\n"
        "open_run(run.path)\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))\n"
    )
    assert python_says(code, HF_HUB_OFFLINE="1") == ["[]"]
