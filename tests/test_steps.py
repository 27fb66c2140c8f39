"""The notebooks' steps: each records itself in the run and checks what a notebook cell did."""

from __future__ import annotations

import numpy as np
import pytest

from sdsam_nb import runs, steps


def _params(**over):
    p = {
        "sam_model": "tiny",
        "points": [[150, 100, 1]],
        "box": None,
        "candidate": None,
        "clicks": None,
        "text_prompt": None,
        "fill_holes": True,
        "min_island": 0,
    }
    return {**p, **over}


def test_segmenter_from_points_records_model_and_steps(tmp_path, tiny_sam, subject_image):
    run = runs.new_run(tmp_path)
    run.log_params("02_click_to_mask", {})
    _, seg = steps.segmenter(run, subject_image, _params())
    assert seg.points == [(150.0, 100.0)] and seg.mask.shape == (200, 300)  # random weights
    record = run.record
    assert record["models"]["sam"]["model_type"] == "tiny"
    assert {"load_sam", "embed_and_replay_clicks"} <= set(record["executions"][0]["steps"])
    # a recorded click history replays to the same mask
    _, again = steps.segmenter(run, subject_image, _params(clicks=seg.to_dict(), points=[]))
    assert np.array_equal(again.mask, seg.mask)


def test_clean_mask_and_its_errors(tiny_sam, subject_image):
    from sdsam_nb import ClickSegmenter

    seg = ClickSegmenter(tiny_sam, subject_image)
    mask = np.zeros((200, 300), bool)
    mask[50:150, 100:200] = True
    mask[90:110, 140:160] = False  # a hole
    cleaned, overlay = steps.clean_mask(mask, seg, subject_image, _params())
    assert cleaned[100, 150] and overlay.size == subject_image.size
    with pytest.raises(ValueError, match="mask \\(from your clicks\\)"):
        steps.clean_mask(np.zeros((200, 300), bool), seg, subject_image, _params())


def test_pick_must_be_below_the_number_of_variations(tmp_path):
    run = runs.new_run(tmp_path)
    with pytest.raises(ValueError, match="parameter pick must be below n_variations=2, got 2"):
        steps.subject_variations(run, None, {"image_path": "", "pick": 2, "n_variations": 2})
