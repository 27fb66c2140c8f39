"""sdsam-nb sweep: a notebook over a grid of parameters, one run folder per point, here one
after the other and on a Ray actor pool, with the same pictures either way; a second pass skips
what is done."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdsam_nb import runs
from sdsam_nb.__main__ import main
from sdsam_nb.batch.runner import COLUMNS
from sdsam_nb.batch.sweep import grid, run_sweep

NOTEBOOK = "01_generate_subject"
FIXED = {"sd_model": "tiny", "width": 64, "height": 64, "steps": 2, "n_variations": 1}
VALUES = {"seed": [1, 2], "subject_prompt": ["a red chair", "a blue vase"]}


def _index(out: Path) -> list[dict]:
    with open(out / "index.csv", newline="") as f:
        return list(csv.DictReader(f))


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    """The 2x2 sweep through the command."""
    out = tmp_path_factory.mktemp("sweep") / "local"
    fixed = [a for k, v in FIXED.items() for a in ("-p", k, str(v))]
    code = main(
        ["sweep", "01", "-p", "seed", "1", "2", "-p", "subject_prompt", "a red chair",
         "a blue vase", *fixed, "-o", str(out), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    return out


def test_grid_is_the_cartesian_product_last_name_fastest():
    assert grid({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    with pytest.raises(ValueError, match="seed: give a list of one or more values"):
        grid({"seed": []})
    with pytest.raises(ValueError, match="steps: a value appears twice"):
        grid({"steps": [4, 4]})


def test_bad_sweeps_stop_in_one_line(tmp_path, capsys):
    def error(*args) -> str:
        assert main(["sweep", *args, "-o", str(tmp_path / "out")]) == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    assert "no parameter 'sed'" in error("01", "-p", "sed", "1", "2")
    assert "did you mean seed" in error("01", "-p", "sed", "1", "2")
    assert "-p seed: give the values to sweep" in error("01", "-p", "seed")
    assert "nothing to sweep" in error("01")
    assert "no notebook '09'" in error("09", "-p", "seed", "1")
    assert "--workers needs --ray" in error("01", "-p", "seed", "1", "--workers", "2")
    with pytest.raises(ValueError, match="workers must be at least 1"):
        run_sweep(NOTEBOOK, {"seed": [1]}, out_dir=tmp_path / "w", ray="local", workers=0)
    with pytest.raises(ValueError, match="run_dir: each point makes its own run folder"):
        run_sweep("03_inpaint_background", {"run_dir": ["a", "b"]}, out_dir=tmp_path / "w")
    with pytest.raises(ValueError, match="sed: 01_generate_subject has no such parameter"):
        run_sweep(NOTEBOOK, {"sed": [1]}, out_dir=tmp_path / "w")
    assert not (tmp_path / "out").exists()  # nothing was written


@pytest.mark.slow
def test_a_2x2_sweep_makes_one_run_folder_per_point(local):
    rows = _index(local)
    assert tuple(rows[0])[: len(COLUMNS)] == COLUMNS
    assert [r["id"] for r in rows] == ["p001", "p002", "p003", "p004"]
    assert [(r["seed"], r["subject_prompt"]) for r in rows] == [
        ("1", "a red chair"),
        ("1", "a blue vase"),
        ("2", "a red chair"),
        ("2", "a blue vase"),
    ]
    assert all(r["status"] == "done" and r["skipped"] == "False" for r in rows)
    pictures = []
    for row in rows:
        run = runs.open_run(local / row["run_dir"])
        params = run.record["executions"][-1]["params"]
        assert (
            params["seed"] == int(row["seed"]) and params["subject_prompt"] == row["subject_prompt"]
        )
        assert params["width"] == 64 and params["steps"] == 2
        assert run.status == "done" and run.record["executions"][-1]["notebook"] == NOTEBOOK
        assert float(row["seconds"]) > 0 and row["worker"] == run.record["sweep"]["worker"]
        pictures.append(_pixels(local / row["run_dir"] / run.record["files"]["subject"]))
    assert len({p.tobytes() for p in pictures}) == 4  # every point its own picture
    # a second pass: every point done already, nothing run again
    again = run_sweep(NOTEBOOK, VALUES, out_dir=local, fixed=FIXED, progress=False)
    assert again.skipped == ["p001", "p002", "p003", "p004"] and again.exit_code == 0


@pytest.mark.slow
@pytest.mark.long
def test_the_sweep_on_ray_gives_the_local_pictures(local, ray_local, tmp_path):
    # the grid's first row (seed 1, both prompts): the local sweep's p001 and p002
    values = {**VALUES, "seed": VALUES["seed"][:1]}
    result = run_sweep(
        NOTEBOOK, values, out_dir=tmp_path / "ray", fixed=FIXED, ray="local", progress=False
    )
    assert result.done == ["p001", "p002"] and result.exit_code == 0
    for point in result.done:
        files = runs.open_run(local / point).record["files"]
        assert runs.open_run(tmp_path / "ray" / point).record["files"] == files
        for name in files.values():
            there = tmp_path / "ray" / point / name
            assert np.array_equal(_pixels(local / point / name), _pixels(there)), (point, name)
