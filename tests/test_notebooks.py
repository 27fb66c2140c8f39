"""The notebooks: committed clean, parameters that papermill reads, and executed end to end.

Execution runs papermill on the built-in tiny models with small settings; every test asserts
on the files and the run.json a run produced.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import papermill as pm
import pytest
from PIL import Image

from sdsam_nb import runs
from sdsam_nb.runs.chain import (
    CHAIN,
    WALKTHROUGH,
    compare_runs,
    execute_chain,
    execute_here,
    replay,
)

NOTEBOOKS = runs.kit_dir("notebooks")
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))
# Quick settings for the tiny models; points inside every picture used (512x384 and up).
FAST = {
    "sd_model": "tiny",
    "sam_model": "tiny",
    "detector_model": "tiny",
    "steps": 2,
    "size": 128,
    "n_variations": 2,
    "width": 256,
    "height": 192,
    "points": [[120, 90, 1], [20, 20, 0]],
}


def test_every_step_has_a_notebook():
    assert [p.stem for p in ALL] == [*WALKTHROUGH, *CHAIN]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_committed_clean_and_in_house_order(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip the outputs"
    assert nb.metadata.kernelspec["language"] == "python"
    # title + badge, Colab-only install cell, then the cell tagged "parameters"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "colab.research.google.com/github/" in nb.cells[0].source
    assert "IN_COLAB" in nb.cells[1].source and "enable_custom_widget_manager" in nb.cells[1].source
    assert nb.cells[1].metadata.get("tags") == ["colab"]  # left out where the batch runs it
    assert nb.cells[2].metadata.get("tags") == ["parameters"]
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
    # numbered steps, each with a sentence of markdown, ending with a save step
    steps = [c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## ")]
    assert [s.split(".")[0] for s in steps] == [f"## {i}" for i in range(1, len(steps) + 1)]
    assert "Save" in steps[-1]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(path):
    """papermill silently skips a parameter line it cannot parse (e.g. two '=' on it)."""
    nb = nbformat.read(path, as_version=4)
    source = nb.cells[2].source
    assigned = {
        line.split("=")[0].strip()
        for line in source.splitlines()
        if "=" in line and not line.startswith(("#", " "))
    }
    assert set(pm.inspect_notebook(str(path))) == assigned
    assert {"run_dir", "output_root", "use_drive"} <= assigned
    assert ("progress" in assigned) == ("sd_model" in assigned)  # diffusers' progress bars


# the call that does each step's work, as a reader sees it in the notebook: the kit's public
# function (or the run's own saving), with the arguments that matter written out
CALLS = {
    "01_generate_subject": ["sdsam_nb.load_sd(", "dtype=dtype", "sdsam_nb.generate(", "seed=seed"],
    "02_click_to_mask": [
        "sdsam_nb.load_sam(sam_model)",
        "ClickSegmenter.from_prompts(",
        "ClickSegmenter.from_dict(",
        "sdsam_nb.MaskPicker(segmenter)",
        "sdsam_nb.masks.fill_holes(mask)",
        "runs.keep_mask(run, mask, segmenter, overlay)",
    ],
    "03_inpaint_background": [
        "sdsam_nb.inpaint_background(",
        "model=inpaint_model",
        "sdsam_nb.score_results(",
        "sdsam_nb.reframe(",
        "table(scores)",
    ],
    "04_composite_background": [
        "sdsam_nb.generate_background(",
        "sdsam_nb.composite(",
        "edge=edge",
        "shadow=shadow",
        "sdsam_nb.relight(",
        "prompt=relight_prompt",
    ],
}
CALLS["00_walkthrough"] = [
    *CALLS["01_generate_subject"],
    *CALLS["02_click_to_mask"][:-1],
    "sdsam_nb.inpaint_background(",
    "sdsam_nb.score_results(",
    *CALLS["04_composite_background"],
]
# read by start() from the notebook's globals, not by a step
SETUP_ONLY = {"run_dir", "output_root", "use_drive"}


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_each_step_shows_its_call_and_uses_every_parameter(path):
    """No hidden parameter dict: the steps call the kit's public functions with the notebook's
    variables, so a value changed and its cell rerun is the value used."""
    import ast

    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells[3:] if c.cell_type == "code"]
    text = "\n".join(code)
    for call in CALLS[path.stem]:
        assert call in text, (path.stem, call)
    assert "sdsam_nb.steps" not in text and "params" not in text
    assert code[0].splitlines()[-1] == f'run = sdsam_nb.start("{path.stem}", globals())'
    read = {
        node.id
        for source in code
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    unused = set(pm.inspect_notebook(str(path))) - read - SETUP_ONLY
    assert not unused, f"{path.stem}: parameters no step reads: {sorted(unused)}"


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def _here(names, params: dict, root: Path) -> runs.Run:
    """``names`` run in this process (as ``sdsam-nb batch`` runs them: the notebooks' own
    cells) into one new run folder under ``root``; the Run. Faster than a kernel each, for the
    tests of options and errors; the chain above runs them under papermill."""
    run_dir = ""  # the first notebook's setup call starts the run (or refuses to)
    for name in names:
        given = {**params, "output_root": str(root), "run_dir": run_dir, "progress": False}
        run_dir = str(execute_here(name, given, quiet=True)["run"].path)
    return runs.open_run(run_dir)


def _call(record: dict, notebook: str, name: str) -> dict:
    """The first call ``name`` that the newest execution of ``notebook`` recorded."""
    execution = record["executions"][record["notebooks"][notebook]["execution"]]
    calls = [c for c in execution.get("calls", []) if c["call"] == name]
    assert calls, f"{notebook} recorded no {name}: {[c['call'] for c in execution['calls']]}"
    return calls[0]


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory):
    """The chain 01 -> 04 executed once, as `sdsam-nb run --tiny` does."""
    return execute_chain(CHAIN, FAST, output_root=tmp_path_factory.mktemp("runs"), progress=False)


@pytest.mark.slow
def test_chain_makes_a_complete_run_folder(chain_run):
    run = chain_run
    files = run.record["files"]
    for key in (
        "subject",
        "mask",
        "mask-overlay",
        "inpaint-0",
        "inpaint-1",
        "background-0",
        "composite-1",
    ):
        assert (run.path / files[key]).is_file(), key
    for name in CHAIN:
        executed = nbformat.read(run.path / f"{name}.ipynb", as_version=4)
        assert executed.metadata.papermill.parameters["run_dir"] == str(run.path)
        # progress=False: no loading bars left in the executed notebook (only 02's picker)
        outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
        widgets = [
            o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        ]
        assert len(widgets) == (name == "02_click_to_mask"), name
        tables = [o for o in outputs if "<table" in o.get("data", {}).get("text/html", "")]
        assert bool(tables) == (name in ("02_click_to_mask", "03_inpaint_background")), name
        assert "Loading pipeline components" not in json.dumps(outputs), name
        # one kernel for the chain, cleared before each notebook: counts start again at 1
        counts = [c.execution_count for c in executed.cells if c.cell_type == "code"]
        assert counts[0] == 1 and counts == sorted(counts), (name, counts)
    assert [e["status"] for e in run.record["executions"]] == ["done"] * len(CHAIN)
    # the subject is the size asked for; everything after it keeps that size
    assert Image.open(run.file("subject")).size == (256, 192)
    for key in ("mask", "inpaint-0", "composite-0", "background-0"):
        assert Image.open(run.file(key)).size == (256, 192), key
    record = json.loads((run.path / "run.json").read_text())
    nb_params = {name: entry["params"] for name, entry in record["notebooks"].items()}
    assert nb_params["02_click_to_mask"]["points"] == FAST["points"]
    assert nb_params["01_generate_subject"]["steps"] == 2
    # each notebook keeps its own defaults (03 and 04 prompt different backgrounds)
    assert (
        nb_params["03_inpaint_background"]["background_prompt"]
        != nb_params["04_composite_background"]["background_prompt"]
    )
    assert record["clicks"]["actions"][0] == {
        "op": "point",
        "x": 120.0,
        "y": 90.0,
        "positive": True,
    }
    # where each step's mask came from: 02's clicks, read back by 03 and 04 from mask.png
    values = {e["notebook"]: e.get("values", {}) for e in record["executions"]}
    assert values["02_click_to_mask"]["mask_made_by"] == {"source": "clicks"}
    for name in ("03_inpaint_background", "04_composite_background"):
        assert values[name]["mask_source"] == {"source": "clicks", "mask": "mask.png"}, name
    assert set(record["sha256"]) == set(record["files"].values())
    assert (
        record["models"]["sd"]["model"] == "tiny" and len(record["models"]["sd"]["checksum"]) == 64
    )
    assert record["models"]["sam"]["model_type"] == "tiny"
    assert record["models"]["sd"]["scheduler"] == "dpm++"  # load_sd's default sampler
    inpainted = _call(record, "03_inpaint_background", "inpaint_background")
    assert inpainted["args"]["model"] == "auto" and inpainted["args"]["seed"] == 0
    methods = {picture["info"]["method"] for picture in inpainted["returned"]}
    assert methods == {"own"}  # "auto" on the CPU: the model's own weights
    assert record["packages"]["torch"] and record["packages"]["diffusers"]
    assert record["notebooks"]["01_generate_subject"]["device"]["device"] == "cpu"
    assert set(record["notebooks"]) == set(CHAIN)
    # each notebook's calls, recorded by the active run with the values they ran with
    for notebook, call in (
        ("01_generate_subject", "generate"),
        ("02_click_to_mask", "load_sam"),
        ("02_click_to_mask", "ClickSegmenter.from_prompts"),
        ("03_inpaint_background", "score_results"),
        ("04_composite_background", "composite"),
    ):
        assert _call(record, notebook, call)["seconds"] >= 0, (notebook, call)
    generated = _call(record, "01_generate_subject", "generate")
    assert generated["args"]["n"] == FAST["n_variations"] and generated["args"]["steps"] == 2
    assert [p["info"]["seed"] for p in generated["returned"]] == [0, 1]
    # keep_subject: the subject's pixels survive inpainting exactly inside the shrunk mask
    assert all(s["max_abs"] == 0 for s in record["inpaint_scores"])
    assert all("object_expansion" in s for s in record["inpaint_scores"])
    # the saved mask is the one the clicks give
    mask = _png(run.file("mask")) > 127
    assert mask.any() and not mask.all()


@pytest.mark.slow
def test_replay_is_bit_identical(chain_run):
    """In this process (the replays of sdsam-nb replay and a batch item run the same
    parameters; test_cli's failed replay goes through a kernel)."""
    new, comparison = replay(chain_run.path, progress=False, here=True)
    assert new.path != chain_run.path and new.path.parent == chain_run.path.parent
    assert comparison.identical and comparison == compare_runs(chain_run, new)
    assert set(comparison.pictures) == set(chain_run.record["files"]) and not comparison.others
    assert new.record["clicks"] == chain_run.record["clicks"]
    for key in ("mask", "inpaint-1", "composite-0"):
        assert np.array_equal(_png(chain_run.file(key)), _png(new.file(key))), key
    # computed from scratch: the replay never took a picture or an embedding from the caches
    for name, entry in new.record["notebooks"].items():
        assert entry["params"].get("cache", False) is False, name
    lookups = [
        call["cache"]
        for execution in new.record["executions"]
        for call in execution.get("calls", [])
        if "cache" in call
    ]
    assert lookups and not any(c.get("hits") for c in lookups)
    assert comparison.calls_compared >= 10 and not comparison.calls


@pytest.mark.slow
def test_walkthrough_alone(tmp_path):
    run = execute_chain(WALKTHROUGH, FAST, output_root=tmp_path, progress=False)
    files = run.record["files"]
    assert {"subject", "mask", "inpaint-0", "composite-0", "background-1"} <= set(files)
    assert Image.open(run.file("composite-0")).size == (256, 192)
    assert list(run.record["notebooks"]) == ["00_walkthrough"]
    # scored with its own clicks, before they are saved
    scores = run.record["inpaint_scores"]
    assert len(scores) == FAST["n_variations"] and all(s["max_abs"] == 0 for s in scores)
    assert all(s["object_expansion"] >= 0 and "object_expansion_original" in s for s in scores)


@pytest.mark.slow
def test_a_run_recorded_before_executions_replays_identically(tmp_path):
    """Run folders written before run.json kept one entry per execution (record version 1:
    no ``executions``, no ``status``) still replay bit for bit (a run of 02 alone: the
    chain's replay is test_replay_is_bit_identical's)."""
    first = _here(["02_click_to_mask"], {"sam_model": "tiny", "points": [[256, 200, 1]]},
                  tmp_path / "new")  # fmt: skip
    (tmp_path / "old").mkdir()
    old = first.path.rename(tmp_path / "old" / first.path.name)
    record = json.loads((old / "run.json").read_text())
    record.pop("executions")
    record["version"] = 1
    for entry in record["notebooks"].values():
        entry.pop("execution")
    (old / "run.json").write_text(json.dumps(record))
    assert runs.open_run(old).status == "done"
    new, comparison = replay(old, progress=False, here=True)
    assert comparison.identical and new.path.parent == old.parent
    assert new.status == "done"
