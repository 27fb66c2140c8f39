"""The notebooks run alone with other inputs and options: your own photo, the sample picture,
a text prompt, other segmenters and background methods, and bad parameters, on the built-in
tiny models. They run in this process (``_here``: the notebooks' own cells, as a batch runs
them), which is quicker than a kernel each; their replays, the chain and the walkthrough run
under papermill (test_notebooks.py), so both ways are checked to agree."""

from __future__ import annotations

import nbformat
import numpy as np
import papermill as pm
import pytest
from PIL import Image
from test_notebooks import FAST, _call, _here, _png

from sdsam_nb import runs
from sdsam_nb.edges import DEFAULT_BAND
from sdsam_nb.models import hf_sam
from sdsam_nb.runs.chain import WALKTHROUGH, execute_chain, replay


@pytest.mark.slow
def test_walkthrough_with_your_own_photo(tmp_path):
    """image_path skips generating the subject, but SD still paints the backgrounds."""
    params = {**FAST, "image_path": str(runs.sample_subject()), "points": [[256, 190, 1]]}
    run = _here(WALKTHROUGH, params, tmp_path)
    files = run.record["files"]
    assert {"input", "subject", "mask", "inpaint-1", "composite-1"} <= set(files)
    assert "subject-variation-1" not in files  # nothing generated for the subject
    sample = np.asarray(Image.open(runs.sample_subject()).convert("RGB"))
    assert np.array_equal(_png(run.file("subject")), sample)
    for key in ("inpaint-0", "composite-0", "background-0"):
        assert Image.open(run.file(key)).size == (512, 384), key
    calls = [c["call"] for c in run.record["executions"][-1]["calls"]]
    assert "generate" not in calls and "generate_background" in calls


@pytest.mark.slow
def test_inpaint_notebook_alone_uses_the_sample(tmp_path):
    """Run alone, 03 takes the sample picture and its mask from data/."""
    run = _here(["03_inpaint_background"], FAST, tmp_path)
    sample = Image.open(runs.sample_subject())
    result = Image.open(run.file("inpaint-0"))
    assert result.size == sample.size == (512, 384)
    inside = np.asarray(Image.open(runs.sample_mask())) > 127
    from sdsam_nb.masks import shrink

    core = shrink(inside, DEFAULT_BAND)  # edge="matte" (the default): alpha 1 from there in
    assert np.array_equal(np.asarray(result)[core], np.asarray(sample.convert("RGB"))[core])
    # no clicks in this run: the results are re-segmented with the sample mask's box
    scores = run.record["inpaint_scores"]
    assert all("object_expansion" in s and "object_expansion_original" in s for s in scores)


@pytest.mark.slow
def test_a_bad_parameter_shows_its_error_in_the_executed_notebook(tmp_path):
    """Under papermill: the error in the saved notebook, the run marked failed."""
    name, error = "01_generate_subject", "parameter steps must be an integer"
    with pytest.raises(pm.PapermillExecutionError, match=error):
        execute_chain([name], {**FAST, "steps": "ten"}, output_root=tmp_path, progress=False)
    (folder,) = tmp_path.iterdir()
    executed = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    shown = [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "error"
    ]
    assert shown and error in shown[0]["evalue"]
    # the run folder says it failed, and why
    run = runs.open_run(folder)
    assert run.status == "failed"
    (entry,) = run.record["executions"]
    assert error in entry["errors"][0] and entry["executed_notebook"] == f"{name}.ipynb"


@pytest.mark.parametrize(
    ("name", "params", "error", "started"),
    [
        ("02_click_to_mask", {"points": [[5000, 10, 1]]}, "outside the image", True),
        ("01_generate_subject", {"sd_model": "nobody/no-such-model"}, "Cannot load", True),
        ("03_inpaint_background", {"scheduler": "fast"}, "parameter scheduler must be", False),
    ],
    ids=["point-outside", "unknown-model", "unknown-scheduler"],
)
def test_bad_parameter_fails_with_a_clear_error(tmp_path, name, params, error, started):
    """A value the setup call refuses starts no run; one a step refuses fails its run."""
    with pytest.raises((ValueError, FileNotFoundError), match=error) as raised:
        _here([name], {**FAST, **params}, tmp_path)
    assert "\n" not in str(raised.value)
    folders = list(tmp_path.iterdir())
    assert len(folders) == started
    if started:
        run = runs.open_run(folders[0])
        (entry,) = run.record["executions"]
        assert run.status == "failed" and error in entry["errors"][0]


@pytest.mark.slow
def test_click_notebook_with_a_text_prompt(tmp_path):
    """02 with text_prompt: Grounding DINO's box replaces the clicks, and is recorded."""
    params = {**FAST, "text_prompt": "the red ball", "box_threshold": 0.0, "text_threshold": 0.0}
    run = _here(["02_click_to_mask"], params, tmp_path)
    action = run.record["clicks"]["actions"][0]
    assert action["op"] == "text" and action["text"] == "the red ball"
    assert Image.open(run.file("mask")).size == (512, 384)
    # replaying the record needs no detector and gives the same mask
    new, comparison = replay(run.path, progress=False, here=True)
    assert comparison.identical and new.record["clicks"]["actions"][0]["op"] == "text"


@pytest.mark.slow
def test_click_notebook_with_a_transformers_segmenter(tmp_path):
    """02 with ``sam_model`` a transformers SAM 2 (tiny): the clicks, the record naming the
    backend, and a bit-identical replay."""
    if not hf_sam.available("tiny-sam2"):
        pytest.skip("the installed transformers has no SAM 2")
    params = {**FAST, "sam_model": "tiny-sam2"}
    run = _here(["02_click_to_mask"], params, tmp_path)
    sam = run.record["models"]["sam"]
    assert sam["backend"] == "transformers" and sam["family"] == "sam2"
    assert sam["requested"] == sam["model"] == "tiny-sam2" and len(sam["checksum"]) == 64
    assert Image.open(run.file("mask")).size == (512, 384)
    new, comparison = replay(run.path, progress=False, here=True)
    assert comparison.identical and new.record["models"]["sam"]["family"] == "sam2"


@pytest.mark.slow
def test_inpaint_notebook_with_the_dedicated_checkpoint_and_reframing(tmp_path):
    """03 with the tiny 9-channel checkpoint, and its reframe step: a 16:9 banner with the
    subject smaller at the bottom."""
    params = {
        **FAST,
        "inpaint_model": "tiny-inpainting",
        "reframe_aspect": "16:9",
        "reframe_scale": 0.6,
        "reframe_position": "bottom",
    }
    run = _here(["03_inpaint_background"], params, tmp_path)
    inpainted = _call(run.record, "03_inpaint_background", "inpaint_background")
    assert inpainted["returned"][0]["info"]["method"] == "tiny-inpainting"
    assert [s["method"] for s in run.record["inpaint_scores"]] == ["tiny-inpainting"] * 2
    assert Image.open(run.file("inpaint-0")).size == (512, 384)
    frame = _call(run.record, "03_inpaint_background", "reframe")["returned"][0]["info"]["reframe"]
    assert Image.open(run.file("reframe-1")).size == tuple(frame["canvas"]) == (683, 384)
    assert frame["box"][3] == 384 and frame["scale"] == 0.6


@pytest.mark.slow
def test_inpaint_notebook_with_the_salient_controlnet(tmp_path):
    """03 with inpaint_model="salient" (the tiny replica beside the tiny SD), reframed too."""
    params = {**FAST, "inpaint_model": "salient", "reframe_size": [640, 320]}
    run = _here(["03_inpaint_background"], params, tmp_path)
    inpainted = _call(run.record, "03_inpaint_background", "inpaint_background")
    assert inpainted["returned"][0]["info"]["method"] == "salient"
    assert [s["method"] for s in run.record["inpaint_scores"]] == ["salient"] * 2
    assert Image.open(run.file("inpaint-0")).size == (512, 384)
    assert Image.open(run.file("reframe-0")).size == (640, 320)
    reframed = _call(run.record, "03_inpaint_background", "reframe")["returned"][0]
    assert reframed["info"]["reframe"]["method"] == "salient"


@pytest.mark.slow
def test_a_notebook_run_here_from_a_notebook_shows_none_of_its_pictures(tmp_path, monkeypatch):
    """A batch started from a notebook runs each item's notebooks in that kernel: their
    pictures (show_images) must not pile up in the user's notebook."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shown = []
        monkeypatch.setattr(shell.display_pub, "publish", lambda *a, **k: shown.append(a))
        run = _here(["04_composite_background"], FAST, tmp_path)
    finally:
        InteractiveShell.clear_instance()
    assert run.status == "done"
    assert not shown
