"""Run folders: records many writers share without loss, history per execution, parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdsam_nb import runs


def _picture(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, np.uint8))


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def test_two_handles_on_one_run_keep_each_others_records(tmp_path):
    """Notebooks 02 and 03 open side by side on one run folder."""
    a = runs.new_run(tmp_path)
    b = runs.open_run(a.path)  # opened before a writes anything
    a.set("clicks", {"actions": [1, 2]})
    a.save_mask("mask", np.eye(8, dtype=bool))
    b.save_image("inpaint-0", _picture(7))
    record = json.loads((a.path / "run.json").read_text())
    assert record["clicks"] == {"actions": [1, 2]}
    assert record["files"] == {"mask": "mask.png", "inpaint-0": "inpaint-0.png"}
    assert a.record == b.record == record
    assert np.array_equal(b.load_mask("mask"), np.eye(8, dtype=bool))


def test_the_later_writer_of_a_key_wins_and_nothing_else_is_lost(tmp_path):
    a = runs.new_run(tmp_path)
    b = runs.open_run(a.path)
    a.set("x", 1)
    b.set("y", 2)
    b.set("x", 3)
    assert {k: a.record[k] for k in ("x", "y")} == {"x": 3, "y": 2}


def test_a_taken_name_gets_a_numbered_sibling_and_nothing_is_overwritten(tmp_path):
    a = runs.new_run(tmp_path)
    b = runs.open_run(a.path)
    first = a.save_image("mask", _picture(1))
    second = b.save_image("mask", _picture(2))
    assert (first.name, second.name) == ("mask.png", "mask-1.png")
    assert _pixels(first)[0, 0, 0] == 1 and _pixels(second)[0, 0, 0] == 2
    assert a.file("mask") == second  # the newest under the key
    assert not [p for p in a.path.iterdir() if p.name.endswith(".tmp")]


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from PIL import Image
    from sdsam_nb import runs

    folder, me, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    run = runs.open_run(folder)
    (folder / f"ready-{me}").touch()
    while not all((folder / f"ready-{w}").exists() for w in ("a", "b")):
        time.sleep(0.01)
    for i in range(n):
        value = (1 if me == "a" else 101) + i
        run.save_image(f"{me}-{i}", Image.fromarray(np.full((16, 16, 3), value, np.uint8)),
                       filename="shared.png")
        run.set(f"key-{me}-{i}", i)
    print("ok")
    """
)


@pytest.mark.slow
def test_two_processes_writing_one_run_lose_nothing(tmp_path):
    """Both open the run before either writes; each saves under the same file name and sets
    its own keys many times: every picture has its own file and every key is recorded."""
    run = runs.new_run(tmp_path)
    n = 25
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(run.path), me, str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for me in ("a", "b")
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert out.strip() == "ok"
    record = run.record
    names = set()
    for me, base in (("a", 1), ("b", 101)):
        for i in range(n):
            assert record[f"key-{me}-{i}"] == i
            name = record["files"][f"{me}-{i}"]
            names.add(name)
            assert _pixels(run.path / name)[0, 0, 0] == base + i, name
    assert len(names) == 2 * n  # no two writers got the same name
    pngs = {p.name for p in run.path.glob("*.png")}
    assert pngs == names
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]


def test_each_execution_keeps_what_its_pictures_were_made_with(tmp_path):
    """Rerunning a notebook with other parameters: the earlier pictures' settings stay."""
    first = runs.new_run(tmp_path)
    first.log_params("03_inpaint_background", {"seed": 0})
    first.save_image("inpaint-0", _picture(1))
    first.finish()
    again = runs.open_run(first.path)
    again.log_params("03_inpaint_background", {"seed": 5})
    with again.step("inpaint"):
        pass
    again.save_image("inpaint-0", _picture(2))
    again.set("inpaint_scores", [{"max_abs": 0}])
    again.finish()
    record = first.record
    old, new = record["executions"]
    assert (old["params"], old["files"]) == ({"seed": 0}, {"inpaint-0": "inpaint-0.png"})
    assert (new["params"], new["files"]) == ({"seed": 5}, {"inpaint-0": "inpaint-0-1.png"})
    assert new["values"] == {"inpaint_scores": [{"max_abs": 0}]}
    assert "inpaint" in new["steps"] and "steps" not in old
    assert old["status"] == new["status"] == "done"
    # the newest is what a replay re-runs
    assert record["notebooks"]["03_inpaint_background"]["params"] == {"seed": 5}
    assert record["files"]["inpaint-0"] == "inpaint-0-1.png"


def test_a_failed_execution_is_marked_in_the_record(tmp_path):
    run = runs.new_run(tmp_path)
    assert run.status == "empty"
    run.log_params("01_generate_subject", {})
    assert run.status == "running"
    run.fail("OSError: Cannot load model nobody/no-such-model")
    assert run.status == "failed"
    (entry,) = run.record["executions"]
    assert entry["status"] == "failed" and entry["errors"] == [
        "OSError: Cannot load model nobody/no-such-model"
    ]


@pytest.mark.slow
def test_run_json_is_valid_after_a_writer_is_killed(tmp_path):
    """A writer killed at any moment leaves the previous valid run.json."""
    run = runs.new_run(tmp_path)
    script = textwrap.dedent(
        """
        import sys
        from sdsam_nb import runs
        run = runs.open_run(sys.argv[1])
        print("go", flush=True)
        i = 0
        while True:
            run.set("counter", i)
            i += 1
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(run.path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "go"
    import time

    time.sleep(1.0)
    proc.kill()
    proc.wait()
    record = json.loads((run.path / "run.json").read_text())  # parses: never half a file
    assert record["counter"] >= 0 and record["run_id"] == run.path.name
    run.set("after", True)  # the lock is free again
    assert run.record["after"] is True


def test_new_run_never_reuses_a_folder(tmp_path):
    runs.new_run(tmp_path, run_id="x")
    with pytest.raises(ValueError, match="run_id='x' exists already"):
        runs.new_run(tmp_path, run_id="x")


def test_filename_must_be_a_plain_name(tmp_path):
    run = runs.new_run(tmp_path)
    with pytest.raises(ValueError, match="filename must be a plain file name"):
        run.save_image("x", _picture(0), filename="../escape.png")


# ---------------------------------------------------------------------- parameters


def test_list_parameters_given_as_text_are_parsed():
    """papermill's -p passes lists as text."""
    params = runs.check_params(
        points="[[256, 200, 1]]", box="[1, 2, 30, 40]", position="bottom", clicks="{a: 1}"
    )
    assert params == {
        "points": [[256, 200, 1]],
        "box": [1, 2, 30, 40],
        "position": "bottom",
        "clicks": {"a": 1},
    }
    # text parameters stay text
    assert runs.check_params(text_prompt="[the chair]") == {"text_prompt": "[the chair]"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"stepz": 3}, r"unknown parameter 'stepz' \(did you mean steps\?\)"),
        ({"steps": "ten"}, "parameter steps must be an integer >= 1, got 'ten'"),
        (
            {"points": "[[1, 2"},
            r"parameter points is not YAML \(.*with papermill give it as YAML: -y",
        ),
        ({"seed": "010"}, "parameter seed must be an integer >= 0, got '010'"),
        ({"points": "256, 200"}, "with papermill give it as YAML: -y 'points: ...'"),
        ({"box": [1, 2, 3]}, r"parameter box must be None or \[x0, y0, x1, y1\]"),
    ],
)
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        runs.check_params(**params)


def test_start_checks_parses_and_opens_the_run(tmp_path, capsys):
    namespace = {
        "points": "[[10, 20, 1]]",
        "run_dir": "",
        "output_root": str(tmp_path),
        "use_drive": False,
        "unrelated": object(),  # not a parameter: left alone
    }
    run = runs.start("02_click_to_mask", namespace)
    assert namespace["points"] == [[10, 20, 1]]
    assert "unrelated" not in run.record["notebooks"]["02_click_to_mask"]["params"]
    assert run.path.parent == tmp_path
    assert run.record["notebooks"]["02_click_to_mask"]["params"]["points"] == [[10, 20, 1]]
    assert "run folder:" in capsys.readouterr().out
    # a second notebook continues the same run
    run2 = runs.start("03_inpaint_background", {"run_dir": str(run.path)}, echo=False)
    assert run2.path == run.path and len(run.record["executions"]) == 2


def test_start_names_a_bad_parameter(tmp_path):
    with pytest.raises(ValueError, match="parameter seed must be an integer >= 0"):
        runs.start("01_generate_subject", {"seed": -1, "output_root": str(tmp_path)})
    assert not list(tmp_path.iterdir())  # no run folder for a run that never started


# ---------------------------------------------------------------------- the kit's files


def test_kit_files_and_default_output_root(tmp_path, monkeypatch):
    notebooks = runs.kit_dir("notebooks")
    assert (notebooks / "02_click_to_mask.ipynb").is_file()
    assert runs.sample_subject().is_file() and runs.sample_mask().is_file()
    with pytest.raises(ValueError, match="name must be 'notebooks' or 'data'"):
        runs.kit_dir("outputs")
    monkeypatch.setenv("SDSAM_OUTPUTS", str(tmp_path / "elsewhere"))
    assert runs.default_output_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("SDSAM_OUTPUTS")
    checkout = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(checkout / "notebooks")  # Jupyter in a checkout's notebooks/
    assert runs.default_output_root() == checkout / "outputs"
