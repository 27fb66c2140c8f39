"""Bad input and faults on the run, replay and sweep paths: a correct result or a one-line
error that names the input (exit status 2 for bad input), and nothing written or lost that
the user did not ask for. In-process, except where a kernel is what is tested."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from sdsam_nb import runs
from sdsam_nb.__main__ import main
from sdsam_nb.batch import sweep as sweep_module
from sdsam_nb.kernel import SharedKernel
from sdsam_nb.runs import chain


def _said(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# ---------------------------------------------------------------- parameters mean what they say


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("010", 10),
        ("1:00", "1:00"),
        ("yes", "yes"),
        ("0o10", 8),
        ("[[256, 200, 1]]", [[256, 200, 1]]),
    ],
)
def test_parameter_text_is_read_as_yaml_1_2(text, value):
    assert runs.load_yaml(text) == value


def test_the_cli_records_seed_010_as_10(monkeypatch, tmp_path):
    seen = {}

    def fake_chain(names, params, **kwargs):
        seen.update(params)
        raise SystemExit(0)

    monkeypatch.setattr("sdsam_nb.runs.chain.execute_chain", fake_chain)
    with pytest.raises(SystemExit):
        main(["run", "--notebooks", "01", "-p", "seed", "010", "-p", "subject_prompt", "1:00"])
    assert seen["seed"] == 10 and seen["subject_prompt"] == "1:00"


def test_a_parameters_file_is_yaml_1_2(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(
        chain, "execute_chain", lambda names, params, **kw: seen.update(params) or 1 / 0
    )
    params = tmp_path / "p.yaml"
    params.write_text("seed: 010\nbackground_prompt: yes\n")
    with pytest.raises(ZeroDivisionError):
        main(["run", "--notebooks", "03", "-f", str(params)])
    assert seen["seed"] == 10 and seen["background_prompt"] == "yes"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "min_island", "-3"], "parameter min_island must be an integer >= 0 (pixels)"),
        (["-p", "points", "[[1, 2"], "-p points value '[[1, 2' is not YAML"),
        (["-p", "points", "[" * 100 + "]" * 100], "nested too deeply"),
        (["-p", "run_dir", "nowhere"], "-p run_dir: 'nowhere' is not a run folder"),
    ],
)
def test_bad_values_stop_before_anything_runs(args, message, capsys, tmp_path, monkeypatch):
    """The kernel, booted ahead while the command checks its parameters, is shut down."""
    started = []

    class Kernel(SharedKernel):
        def start(self):
            started.append(super().start())
            return self

    monkeypatch.setattr("sdsam_nb.__main__.SharedKernel", Kernel)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--notebooks", "02", *args, "--output-root", "out"]) == 2
    said = _said(capsys)
    assert len(said) == 1 and message in said[0], said
    assert not (tmp_path / "out").exists()
    assert len(started) == 1 and started[0].km is None  # shut down


# ---------------------------------------------------------------- where the mask comes from


def test_a_photo_of_the_samples_size_never_gets_the_sample_mask(tmp_path):
    run = runs.new_run(tmp_path)
    sample = runs.load_subject(run)
    photo = Image.fromarray(np.asarray(sample)[::-1].copy())  # the same size, other pixels
    with pytest.raises(FileNotFoundError, match="has no mask for this picture"):
        runs.load_subject_mask(run, photo)
    mask = runs.load_subject_mask(run, sample)
    assert mask.any() and run.record["mask_source"] == {"source": "sample"}


def test_the_mask_source_is_recorded(tmp_path):
    run = runs.new_run(tmp_path)
    run.log_params("03_inpaint_background", {})
    subject = runs.load_subject(run)
    mask = np.zeros((subject.size[1], subject.size[0]), bool)
    mask[100:200, 100:300] = True
    mine = tmp_path / "mine.png"
    Image.fromarray(mask).save(mine)
    assert runs.load_subject_mask(run, subject, str(mine)).sum() == mask.sum()
    source = run.record["mask_source"]
    assert source["source"] == "file" and source["path"] == str(mine)
    assert source["sha256"] == runs.record.sha256_file(mine)
    run.save_mask("mask", mask)
    runs.record_mask_made(run, "text", text_prompt="the armchair")
    runs.load_subject_mask(run, subject)
    assert run.record["mask_source"] == {
        "source": "text",
        "text_prompt": "the armchair",
        "mask": "mask.png",
    }
    assert run.record["executions"][0]["values"]["mask_source"]["source"] == "text"


# ---------------------------------------------------------------- damaged runs, replay


def _run_with_a_picture(root: Path) -> runs.Run:
    run = runs.new_run(root)
    run.log_params("02_click_to_mask", {"sam_model": "tiny"})
    run.save_image("subject", Image.new("RGB", (64, 64), (10, 20, 30)))
    run.save_json("notes", {"a": 1})
    run.finish()
    return run


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "not JSON"),
        ('{"run_id": "x", "files": {', "not JSON"),
        ("[]", "a list, not a mapping"),
        ('{"notebooks": {"02_click_to_mask": {}}}', "has no params mapping"),
        ('{"files": {"mask": 3}}', "files holds a name that is not text"),
        ('{"executions": [1, 2]}', "executions is not a list"),
        ('{"notebooks": []}', "notebooks is not a mapping"),
        ('{"version": "2"}', "version is '2', not a record version"),
    ],
)
def test_a_damaged_run_json_is_named_in_one_line(text, problem, tmp_path, capsys):
    run = _run_with_a_picture(tmp_path)
    (run.path / "run.json").write_text(text)
    for args in (
        ["replay", str(run.path)],
        ["run", "--notebooks", "03", "-p", "run_dir", str(run.path)],
    ):
        assert main(args) == 2
        said = _said(capsys)
        assert len(said) == 1 and "run.json is damaged" in said[0] and problem in said[0], said
    assert (run.path / "subject.png").is_file()  # nothing of the folder is touched


def test_a_run_json_from_a_newer_kit_asks_for_an_upgrade(tmp_path, capsys):
    run = _run_with_a_picture(tmp_path)
    record = json.loads((run.path / "run.json").read_text())
    (run.path / "run.json").write_text(json.dumps({**record, "version": 99}))
    assert main(["replay", str(run.path)]) == 2
    said = _said(capsys)
    assert len(said) == 1 and "was written by a newer sdsam-nb (record version 99" in said[0]
    assert "upgrade sdsam-nb" in said[0]


def test_replay_of_a_run_with_a_missing_or_changed_picture_says_which(tmp_path, capsys):
    run = _run_with_a_picture(tmp_path)
    Image.new("RGB", (64, 64), (0, 0, 0)).save(run.path / "subject.png")
    assert main(["replay", str(run.path)]) == 2
    (said,) = _said(capsys)
    assert "subject.png ('subject') has changed since the run wrote it" in said
    (run.path / "subject.png").unlink()
    assert main(["replay", str(run.path)]) == 2
    (said,) = _said(capsys)
    assert "subject.png ('subject') is missing" in said
    assert sorted(p.name for p in tmp_path.iterdir()) == [run.path.name]  # no new run folder


def test_compare_runs_compares_every_file_and_names_what_one_run_lacks(tmp_path):
    a, b = _run_with_a_picture(tmp_path / "a"), _run_with_a_picture(tmp_path / "b")
    same = chain.compare_runs(a, b)
    assert same.identical and same.pictures == ["subject"] and same.others == ["notes"]
    assert "1 pictures pixel for pixel, 1 other files byte for byte" in same.summary()
    b.save_json("notes", {"a": 2})
    b.save_image("extra", Image.new("RGB", (8, 8)))
    other = chain.compare_runs(a, b)
    assert other.differ == ["notes"] and other.extra == ["extra"] and not other.identical
    assert chain.compare_runs(b, a).missing == ["extra"]


# ---------------------------------------------------------------- output folders, selections


def test_output_roots_that_cannot_hold_runs_are_refused_in_one_line(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    for root, problem in ((a_file, "is a file, not a folder"), (a_file / "x", "which is a file")):
        for args in (
            ["run", "--notebooks", "02", "--output-root", str(root)],
            ["sweep", "02", "-p", "min_island", "0", "64", "-o", str(root)],
            ["batch", str(tmp_path / "items.csv"), "-o", str(root)],
        ):
            if args[0] == "batch":
                (tmp_path / "items.csv").write_text("id,image\na,pic.png\n")
            assert main(args) == 2, args
            said = _said(capsys)
            assert len(said) == 1 and problem in said[0], (args, said)
    assert a_file.read_text() == "mine"
    for root in (None, 3, ""):  # not "." for "" (a run folder in whatever folder this is)
        with pytest.raises(ValueError, match="output_root must be a folder path"):
            runs.new_run(root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_root_is_refused(tmp_path, capsys):
    tmp_path.chmod(0o555)
    try:
        assert main(["run", "--notebooks", "02", "--output-root", str(tmp_path / "o")]) == 2
    finally:
        tmp_path.chmod(0o755)
    assert "cannot be created" in _said(capsys)[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--notebooks", ","], "--notebooks ',' names no notebook"),
        (["run", "--notebooks", "07"], "--notebooks: no notebook '07'"),
        (["sweep", "", "-p", "seed", "1"], "sweep: give one notebook"),
        (["sweep", "01,02", "-p", "seed", "1"], "sweep: give one notebook"),
        (["sweep", "01", "-p", "seed"], "-p seed: give the values to sweep"),
        (
            ["sweep", "01", *("-p seed " + " ".join(map(str, range(200)))).split()]
            + ("-p n_variations " + " ".join(map(str, range(1, 17)))).split()
            + ("-p steps " + " ".join(map(str, range(1, 5)))).split(),
            "the grid has more than 10,000 points",
        ),
    ],
)
def test_selections_that_name_nothing_are_refused(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SDSAM_OUTPUTS", str(tmp_path / "outputs"))
    assert main(args) == 2
    said = _said(capsys)
    assert len(said) == 1 and message in said[0], said
    assert list(tmp_path.iterdir()) == []  # no run or sweep folder


# ---------------------------------------------------------------- faults: dead kernels


def test_a_sweep_point_that_fails_is_failed_and_the_others_go_on(tmp_path, monkeypatch):
    def flaky(name, params, **kwargs):
        if params["seed"] == 2:
            raise RuntimeError("01_generate_subject: out of memory")
        run = runs.open_run(params["run_dir"])
        run.log_params(name, params)
        run.finish()

    monkeypatch.setattr(sweep_module, "execute_here", flaky)
    result = sweep_module.run_sweep(
        "01_generate_subject", {"seed": [1, 2, 3]}, out_dir=tmp_path, progress=False
    )
    assert [r["status"] for r in result.rows] == ["done", "failed", "done"]
    assert result.rows[1]["error"] == "RuntimeError: 01_generate_subject: out of memory"
    index = (tmp_path / "index.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in index[1:]] == ["done", "failed", "done"]
    # the failed point is redone by the next pass, its folder kept aside
    monkeypatch.setattr(sweep_module, "execute_here", lambda name, params, **kw: flaky(
        name, {**params, "seed": 0}))  # fmt: skip
    again = sweep_module.run_sweep(
        "01_generate_subject", {"seed": [1, 2, 3]}, out_dir=tmp_path, progress=False
    )
    assert again.skipped == ["p001", "p003"] and again.done == ["p001", "p002", "p003"]
    assert len(list(tmp_path.glob("p002.incomplete-*"))) == 1


class _Recorded:
    """A kernel manager class that keeps each instance, so a test can find its kernel."""

    managers: list = []


@pytest.mark.slow
def test_a_kernel_killed_mid_run_leaves_a_failed_record(tmp_path, monkeypatch, capsys):
    from jupyter_client.manager import AsyncKernelManager

    class Manager(AsyncKernelManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            _Recorded.managers.append(self)

    folder = tmp_path / "notebooks"
    folder.mkdir()
    marker = tmp_path / "started"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    params = nbformat.v4.new_code_cell('run_dir = ""\nprogress = True')
    params.metadata["tags"] = ["parameters"]
    setup = 'import sdsam_nb\nrun = sdsam_nb.start("02_click_to_mask", globals())'
    work = f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\ntime.sleep(120)"
    nb.cells = [params, nbformat.v4.new_code_cell(setup), nbformat.v4.new_code_cell(work)]
    nbformat.write(nb, folder / "02_click_to_mask.ipynb")

    def kill_when_started():
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(_Recorded.managers[-1].provisioner.pid, signal.SIGKILL)

    monkeypatch.setattr(chain.SharedKernel, "manager_class", Manager)
    killer = threading.Thread(target=kill_when_started, daemon=True)
    killer.start()
    start = time.monotonic()
    with pytest.raises(chain.KernelDied, match="02_click_to_mask: the kernel stopped") as died:
        chain.execute_chain(
            ["02_click_to_mask"], {}, output_root=tmp_path / "out", notebooks=folder, echo=False
        )
    assert time.monotonic() - start < 100  # the kill, not the cell's two minutes, ended it
    (run_dir,) = (tmp_path / "out").iterdir()
    run = runs.open_run(run_dir)
    (entry,) = run.record["executions"]  # the one the setup cell started, now failed
    assert run.status == "failed" and entry["status"] == "failed" and "started" in entry
    assert entry["errors"] == [died.value.line] and "out of memory" in died.value.line
    executed = nbformat.read(run_dir / entry["executed_notebook"], as_version=4)
    assert executed.cells[-2].execution_count  # written as it ended: the setup cell had run
    json.loads((run_dir / "run.json").read_text())
