"""Text masks with SAM 3: the tiny SAM 3 (real transformers classes, small config) loaded
through ``from_pretrained``, ``text_mask(method="sam3")``, the click segmenter starting from
SAM 3's best box, and notebook 02 with ``text_method="sam3"``.

The tiny model's weights are random: every query scores about 0.25, so ``box_threshold=0.0``
finds every instance and ``1.0`` finds none.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import transformers
from PIL import Image

from sdsam_nb import ClickSegmenter, load_sam3, text_mask
from sdsam_nb.models import (
    DEFAULT_GROUNDING_DINO,
    MODELS,
    ModelUnavailableError,
    Sam3TextSegmenter,
    cache_dir,
    provenance,
    tiny,
)
from sdsam_nb.models.sam3 import sam3_phrases
from sdsam_nb.runs import check_params
from sdsam_nb.segment.text import TEXT_METHODS, load_text_detector

if not hasattr(transformers, "Sam3Model"):  # the oldest transformers the kit allows
    pytest.skip("the installed transformers has no SAM 3", allow_module_level=True)


@pytest.fixture(scope="module")
def tiny_sam3(_private_cache):
    return load_sam3("tiny", device="cpu")


def _inside(boxes, size) -> bool:
    w, h = size
    return all(0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h for x0, y0, x1, y1 in boxes)


def test_tiny_sam3_loads_like_a_real_model_and_is_cached(tiny_sam3):
    from transformers import Sam3Model, Sam3Processor

    assert isinstance(tiny_sam3, Sam3TextSegmenter)
    assert isinstance(tiny_sam3.model, Sam3Model) and isinstance(tiny_sam3.processor, Sam3Processor)
    assert tiny_sam3.source == "tiny" and str(tiny_sam3.device) == "cpu"
    assert not tiny_sam3.model.training
    folder = cache_dir() / "tiny" / tiny.SAM3_RECIPE
    assert json.loads((folder / "config.json").read_text())["model_type"] == "sam3"
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert provenance(tiny_sam3.model) == {"model": "tiny", "revision": None, "path": str(folder)}
    assert load_sam3("tiny", device="cpu") is tiny_sam3
    assert MODELS.get(("sam3", "tiny", "cpu")) is tiny_sam3


def test_segment_gives_masks_boxes_and_scores_at_the_pictures_size(tiny_sam3, subject_image):
    masks, boxes, scores, labels = tiny_sam3.segment(subject_image, "red disc. hat", threshold=0)
    n = len(scores)
    assert n == 2 * tiny_sam3.model.config.detr_decoder_config.num_queries
    assert masks.shape == (n, 200, 300) and masks.dtype == bool
    assert boxes.shape == (n, 4) and boxes.dtype == np.float32
    assert np.all(boxes >= 0) and np.all(boxes <= [300, 200, 300, 200])
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    assert set(labels) == {"red disc", "hat"}
    masks, boxes, scores, labels = tiny_sam3.segment(subject_image, "red disc", threshold=1.0)
    assert masks.shape == (0, 200, 300) and boxes.shape == (0, 4) and scores == labels == []


def test_segmenter_is_a_detector(tiny_sam3, subject_image):
    boxes, labels, scores = tiny_sam3(subject_image, "the red disc", 0.0, 0.25)
    assert boxes.shape == (len(labels), 4) and len(scores) == len(labels) > 0
    assert set(labels) == {"the red disc"}
    assert tiny_sam3(subject_image, "the red disc", 1.0, 0.25)[1] == []


def test_sam3_phrases():
    assert sam3_phrases("  Red   shoes. hat.") == ["Red shoes", "hat"]
    assert sam3_phrases(" . ") == []


def test_text_mask_with_sam3_found(tiny_sam3, subject_image):
    result = text_mask(
        subject_image, "red disc", method="sam3", detector=tiny_sam3, box_threshold=0.0
    )
    assert result.found and result.detector == "tiny" and result.combine == "union"
    n = len(result.boxes)
    assert 0 < n <= 20 and len(result.labels) == len(result.scores) == n
    assert result.labels == ["red disc"] * n
    assert result.scores == sorted(result.scores, reverse=True)
    assert _inside(result.boxes, subject_image.size)
    assert result.best_box == result.boxes[0]
    assert result.used == list(range(n)) and len(result.box_masks) == n
    assert all(m.shape == (200, 300) and m.dtype == bool for m in result.box_masks)
    assert result.mask.shape == (200, 300) and result.mask.dtype == bool
    assert np.array_equal(result.mask, np.logical_or.reduce(result.box_masks))
    # the masks are SAM 3's own instance masks, in the same order as the boxes
    masks, boxes, _, _ = tiny_sam3.segment(subject_image, "red disc", threshold=0.0)
    assert np.array_equal(np.stack(result.box_masks), masks[:n])
    assert np.allclose(result.boxes, boxes[:n])
    record = result.to_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["detector"] == "tiny" and record["mask_area"] == int(result.mask.sum())
    assert str(n) in result.message and "union" in result.message


def test_text_mask_with_sam3_best_and_max_boxes(tiny_sam3, subject_image):
    best = text_mask(
        subject_image,
        "red disc",
        method="sam3",
        detector=tiny_sam3,
        box_threshold=0.0,
        combine="best",
        max_boxes=3,
    )
    assert best.found and len(best.boxes) == 3 and best.used == [0]
    assert len(best.box_masks) == 1 and np.array_equal(best.mask, best.box_masks[0])
    assert "best box only" in best.message


def test_text_mask_with_sam3_nothing_found(tiny_sam3, subject_image):
    result = text_mask(
        subject_image, "a unicorn", method="sam3", detector=tiny_sam3, box_threshold=1.0
    )
    assert not result.found and result.boxes == result.labels == result.scores == []
    assert result.used == [] and result.box_masks == [] and result.best_box is None
    assert result.mask.shape == (200, 300) and not result.mask.any()
    assert "Nothing found" in result.message and "box_threshold" in result.message
    assert json.loads(json.dumps(result.to_dict()))["found"] is False


def test_unknown_method_names_the_accepted_ones(subject_image):
    with pytest.raises(ValueError, match="method") as info:
        text_mask(subject_image, "red disc", method="sam2")
    assert "'grounding_dino'" in str(info.value) and "'sam3'" in str(info.value)
    assert list(TEXT_METHODS) == ["grounding_dino", "sam3"]


def test_sam3_rejects_a_predictor_or_another_detector(tiny_sam3, tiny_sam, subject_image):
    with pytest.raises(ValueError, match="predictor"):
        text_mask(subject_image, "disc", method="sam3", detector=tiny_sam3, predictor=tiny_sam)
    with pytest.raises(ValueError, match="detector"):
        text_mask(subject_image, "disc", method="sam3", detector=lambda *a: ([], [], []))
    # checked before any model is loaded (detector=None would need the hub)
    with pytest.raises(ValueError, match="box_threshold"):
        text_mask(subject_image, "disc", method="sam3", box_threshold=2)
    with pytest.raises(ValueError, match="text"):
        text_mask(subject_image, " . ", method="sam3")


def test_a_checkpoint_of_another_family_is_a_one_line_error(_private_cache):
    folder = tiny.grounding_dino_folder(cache_dir() / "tiny")
    before = len(MODELS)
    with pytest.raises(ValueError) as info:
        load_sam3(str(folder), device="cpu")
    message = str(info.value)
    assert "\n" not in message and str(folder) in message
    assert "grounding-dino" in message and "facebook/sam3" in message
    assert len(MODELS) == before


def test_unknown_hub_id_is_unavailable(_private_cache):
    with pytest.raises(ModelUnavailableError, match="no-such-sam3"):
        load_sam3("sdsam-test/no-such-sam3", device="cpu")


def test_text_detector_by_method(tiny_sam3):
    assert load_text_detector("sam3", "tiny", device="cpu") is tiny_sam3
    # the notebooks' detector_model default names Grounding DINO: with sam3 it means SAM 3's
    with pytest.raises(ModelUnavailableError, match="facebook/sam3"):
        load_text_detector("sam3", DEFAULT_GROUNDING_DINO, device="cpu")
    with pytest.raises(ValueError, match="method"):
        load_text_detector("owl", "tiny")


def test_click_segmenter_starts_from_sam3s_best_box(tiny_sam3, tiny_sam, subject_image):
    seg = ClickSegmenter(tiny_sam, subject_image)
    boxes = seg.set_text("red disc", detector=tiny_sam3, box_threshold=0.0)
    _, best, _, _ = tiny_sam3.segment(subject_image, "red disc", threshold=0.0)
    assert boxes and np.allclose(boxes[0], best[0], atol=1e-4)
    action = seg.to_dict()["actions"][0]
    assert action["op"] == "text" and action["detector"] == "tiny"
    assert seg.mask.shape == (200, 300) and seg.mask.dtype == bool
    # a replay uses the recorded boxes: no detector needed
    again = ClickSegmenter.from_dict(tiny_sam, subject_image, seg.to_dict())
    assert np.array_equal(again.mask, seg.mask)


def test_text_method_parameter():
    assert check_params(text_method="sam3") == {"text_method": "sam3"}
    with pytest.raises(ValueError, match="text_method.*'grounding_dino', 'sam3'"):
        check_params(text_method="sam2")


@pytest.mark.slow
def test_click_notebook_with_a_sam3_text_prompt(tmp_path):
    """02 with text_method="sam3": SAM 3's best box replaces the clicks, and is recorded."""
    from test_notebooks import _here

    from sdsam_nb.runs.chain import replay

    params = {
        "sam_model": "tiny",
        "detector_model": "tiny",
        "text_prompt": "the red ball",
        "text_method": "sam3",
        "box_threshold": 0.0,
    }
    run = _here(["02_click_to_mask"], params, tmp_path)  # its replay runs under papermill
    assert run.record["notebooks"]["02_click_to_mask"]["params"]["text_method"] == "sam3"
    action = run.record["clicks"]["actions"][0]
    assert action["op"] == "text" and action["text"] == "the red ball"
    assert action["detector"] == "tiny" and action["boxes"]
    assert Image.open(run.file("mask")).size == (512, 384)
    # replaying the record needs no detector and gives the same mask
    new, comparison = replay(run.path, progress=False, here=True)
    assert comparison.identical and new.record["clicks"]["actions"][0]["op"] == "text"
