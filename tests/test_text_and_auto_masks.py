"""Text prompts (Grounding DINO + SAM) and the automatic subject, on the built-in tiny models.

The tiny models have random weights, so their boxes and masks are arbitrary: these tests
control the inputs instead (thresholds 0 force boxes, 1 forces none; an injected detector
gives known boxes; hand-made masks for the subject rule).
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from PIL import Image

from sdsam_nb import ModelUnavailableError, cache_dir
from sdsam_nb.models import tiny
from sdsam_nb.models.detectors import GroundingDinoDetector, grounding_prompt, load_grounding_dino
from sdsam_nb.segment import (
    TextMaskResult,
    auto_subject_mask,
    box_masks,
    pick_subject,
    subject_scores,
    text_mask,
)

H, W = 200, 300


@pytest.fixture(scope="module")
def tiny_dino(_private_cache):
    return load_grounding_dino("tiny", device="cpu")


class FakeDetector:
    """A detector with known boxes that records how it was called."""

    source = "fake"

    def __init__(self, boxes, scores, labels=None):
        self.boxes, self.scores = boxes, scores
        self.labels = labels or [f"thing {i}" for i in range(len(boxes))]
        self.calls = []

    def __call__(self, image, text, box_threshold, text_threshold):
        self.calls.append((image.size, text, box_threshold, text_threshold))
        return self.boxes, self.labels, self.scores


TWO_BOXES = [(20.0, 20.0, 120.0, 100.0), (150.0, 50.0, 250.0, 150.0)]


def per_box_masks(predictor, image, boxes):
    """Reference: SAM's documented single-box call, one box at a time."""
    predictor.set_image(np.asarray(image))
    return [
        predictor.predict(box=np.array(b), multimask_output=False)[0][0].astype(bool) for b in boxes
    ]


def disc(cx, cy, r, shape=(H, W)):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 < r**2


# --------------------------------------------------------------------------- loader


def test_tiny_grounding_dino_loads_like_a_real_model_and_is_cached(tiny_dino):
    folder = cache_dir() / "tiny" / tiny.GD_RECIPE
    for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    assert isinstance(tiny_dino, GroundingDinoDetector)
    assert type(tiny_dino.model).__name__ == "GroundingDinoForObjectDetection"
    assert type(tiny_dino.processor).__name__ == "GroundingDinoProcessor"
    assert tiny_dino.model.config.backbone_config.model_type == "swin"
    assert str(tiny_dino.device) == "cpu" and not tiny_dino.model.training
    # Grounding DINO splits phrases on bert-base-uncased ids; the tiny vocabulary keeps them.
    ids = tiny_dino.processor.tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", ".", "?"])
    assert ids == [101, 102, 1012, 1029]
    assert load_grounding_dino("tiny", device="cpu") is tiny_dino


def test_tiny_grounding_dino_detects_on_cpu(tiny_dino, subject_image):
    boxes, labels, scores = tiny_dino(subject_image, "Red disc", 0.0, 0.0)
    n = tiny_dino.model.config.num_queries
    assert boxes.shape == (n, 4) and len(labels) == len(scores) == n
    assert all(0.0 < s <= 1.0 for s in scores)
    assert all(set(label.split()) <= {"red", "disc"} for label in labels)
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    again = tiny_dino(subject_image, "Red disc", 0.0, 0.0)
    np.testing.assert_array_equal(again[0], boxes)
    none = tiny_dino(subject_image, "red disc", 1.0, 0.25)  # a score is never above 1
    assert none[0].shape == (0, 4) and none[1] == [] and none[2] == []


@pytest.mark.parametrize("size", [(64, 64), (512, 512), (600, 200), (200, 600)])
def test_tiny_grounding_dino_takes_square_and_long_pictures(tiny_dino, size):
    """The coarsest feature map must stay above 1x1 (GroupNorm fails on one value)."""
    picture = Image.new("RGB", size, (200, 40, 40))
    boxes, labels, scores = tiny_dino(picture, "a red square", 0.0, 0.0)
    assert boxes.shape == (tiny_dino.model.config.num_queries, 4)
    assert (boxes[:, 2] <= size[0] + 1e-3).all() and (boxes[:, 3] <= size[1] + 1e-3).all()


def test_grounding_prompt():
    assert grounding_prompt("  Red   Shoes ") == "red shoes."
    assert grounding_prompt("cat. dog.") == "cat. dog."


def test_unknown_hub_id_is_unavailable_quickly(_private_cache):
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="no-such-grounding-dino"):
        load_grounding_dino("sdsam-test/no-such-grounding-dino", device="cpu")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("model", ["", "not a hub id", "a/b/c", 3])
def test_malformed_model_argument(model):
    with pytest.raises(ValueError, match="model"):
        load_grounding_dino(model, device="cpu")


# --------------------------------------------------------------------------- text_mask


def test_text_mask_end_to_end_on_tiny_models(tiny_dino, tiny_sam, subject_image):
    result = text_mask(
        subject_image,
        "red disc",
        detector=tiny_dino,
        predictor=tiny_sam,
        box_threshold=0.0,
        text_threshold=0.0,
    )
    assert isinstance(result, TextMaskResult)
    assert result.mask.shape == (H, W) and result.mask.dtype == bool
    assert result.found is True and len(result.boxes) > 0
    assert len(result.boxes) == len(result.labels) == len(result.scores)
    assert result.scores == sorted(result.scores, reverse=True)
    for x0, y0, x1, y1 in result.boxes:
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
    assert result.best_box == result.boxes[0]
    np.testing.assert_array_equal(result.mask, np.logical_or.reduce(result.box_masks))
    record = json.loads(json.dumps(result.to_dict()))
    assert record["text"] == "red disc" and record["detector"] == "tiny"
    assert record["box_threshold"] == 0.0 and record["combine"] == "union"
    assert record["mask_area"] == int(result.mask.sum())
    again = text_mask(
        subject_image, "red disc", detector=tiny_dino, predictor=tiny_sam, box_threshold=0.0,
        text_threshold=0.0,
    )  # fmt: skip
    np.testing.assert_array_equal(again.mask, result.mask)
    assert again.boxes == result.boxes


def test_text_mask_nothing_found_on_tiny_models(tiny_dino, tiny_sam, subject_image):
    result = text_mask(
        subject_image, "red disc", detector=tiny_dino, predictor=tiny_sam, box_threshold=1.0
    )
    assert result.found is False
    assert result.boxes == [] and result.labels == [] and result.scores == []
    assert result.mask.shape == (H, W) and result.mask.dtype == bool and not result.mask.any()
    assert "Nothing found" in result.message and "box_threshold" in result.message
    assert result.best_box is None


def test_union_is_the_or_of_the_box_masks(tiny_sam, subject_image):
    fake = FakeDetector(TWO_BOXES, [0.4, 0.9])
    result = text_mask(
        subject_image, "two things", detector=fake, predictor=tiny_sam, combine="union",
        box_threshold=0.3, text_threshold=0.2,
    )  # fmt: skip
    assert fake.calls == [((W, H), "two things", 0.3, 0.2)]
    assert result.found and result.combine == "union"
    assert result.boxes == [TWO_BOXES[1], TWO_BOXES[0]]  # highest score first
    assert result.scores == [0.9, 0.4] and result.labels == ["thing 1", "thing 0"]
    assert result.used == [0, 1] and len(result.box_masks) == 2
    np.testing.assert_array_equal(result.mask, result.box_masks[0] | result.box_masks[1])
    reference = per_box_masks(tiny_sam, subject_image, result.boxes)
    for got, ref in zip(result.box_masks, reference, strict=True):
        assert (got == ref).mean() > 0.999
    union = reference[0] | reference[1]
    assert (result.mask == union).mean() > 0.999


def test_best_keeps_only_the_highest_scoring_box(tiny_sam, subject_image):
    fake = FakeDetector(TWO_BOXES, [0.4, 0.9])
    result = text_mask(
        subject_image, "two things", detector=fake, predictor=tiny_sam, combine="best"
    )
    assert result.found and result.combine == "best" and result.used == [0]
    assert result.best_box == TWO_BOXES[1] and result.scores[0] == 0.9
    assert len(result.boxes) == 2  # every detection is kept for the record
    (ref,) = per_box_masks(tiny_sam, subject_image, [TWO_BOXES[1]])
    assert (result.mask == ref).mean() > 0.999
    np.testing.assert_array_equal(result.mask, result.box_masks[0])
    union = text_mask(subject_image, "two things", detector=fake, predictor=tiny_sam)
    assert ((union.mask | result.mask) == union.mask).mean() > 0.999  # union contains best


def test_boxes_are_clipped_sorted_and_capped(tiny_sam, subject_image):
    import torch

    fake = FakeDetector(
        torch.tensor([[-10.0, -5.0, 50.0, 60.0], [310.0, 0.0, 400.0, 50.0], [100, 50, 200, 150]]),
        torch.tensor([0.5, 0.99, 0.7]),
    )
    result = text_mask(subject_image, "x", detector=fake, predictor=tiny_sam, max_boxes=1)
    # the box outside the picture is dropped, the rest sorted by score and capped at one
    assert result.boxes == [(100.0, 50.0, 200.0, 150.0)] and result.scores == [pytest.approx(0.7)]
    result = text_mask(subject_image, "x", detector=fake, predictor=tiny_sam)
    assert result.boxes[1] == (0.0, 0.0, 50.0, 60.0)


def test_injected_detector_finding_nothing(tiny_sam, subject_image):
    result = text_mask(subject_image, "unicorn", detector=FakeDetector([], []), predictor=tiny_sam)
    assert result.found is False and result.boxes == [] and result.used == []
    assert result.mask.shape == (H, W) and not result.mask.any()
    assert "unicorn" in result.message
    assert result.to_dict()["found"] is False


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(text=""), "text"),
        (dict(text=" . "), "text"),
        (dict(text=None), "text"),
        (dict(box_threshold=-0.1), "box_threshold"),
        (dict(box_threshold=1.5), "box_threshold"),
        (dict(box_threshold=math.nan), "box_threshold"),
        (dict(box_threshold="0.3"), "box_threshold"),
        (dict(text_threshold=2), "text_threshold"),
        (dict(text_threshold=-1e-6), "text_threshold"),
        (dict(combine="all"), "combine"),
        (dict(max_boxes=0), "max_boxes"),
        (dict(detector="grounding-dino"), "detector"),
        (dict(predictor="sam"), "predictor"),
    ],
)
def test_bad_input_names_the_argument(subject_image, kwargs, name):
    args = dict(text="red disc", detector=None, predictor=None) | kwargs
    text = args.pop("text")
    # raised before any model is loaded: detector/predictor None would need the hub
    with pytest.raises(ValueError, match=name):
        text_mask(subject_image, text, **args)


def test_malformed_detector_output(tiny_sam, subject_image):
    bad = FakeDetector([(0, 0, 10, 10)], [0.5, 0.6])
    with pytest.raises(ValueError, match="detector"):
        text_mask(subject_image, "x", detector=bad, predictor=tiny_sam)
    with pytest.raises(ValueError, match="detector"):
        text_mask(subject_image, "x", detector=lambda *a: None, predictor=tiny_sam)


def test_box_masks_shapes(tiny_sam, subject_image):
    masks = box_masks(tiny_sam, subject_image, TWO_BOXES, batch=1)
    assert masks.shape == (2, H, W) and masks.dtype == bool
    assert box_masks(tiny_sam, subject_image, []).shape == (0, H, W)


# --------------------------------------------------------------------------- subject rule


def test_centred_disc_beats_strip_speck_and_background(subject_mask):
    strip = np.zeros((H, W), bool)
    strip[:20] = True  # along the top edge
    speck = np.zeros((H, W), bool)
    speck[99:102, 149:152] = True  # tiny, but dead centre
    background = ~subject_mask
    full = np.ones((H, W), bool)
    masks = [strip, speck, background, subject_mask, full]
    assert pick_subject(masks) == 3
    assert pick_subject(masks[::-1]) == 1
    scores = subject_scores(masks)
    assert scores[3]["border"] == 1.0 and scores[3]["size"] == 1.0
    assert scores[3]["center"] > 0.99 and scores[3]["score"] > 0.99
    assert 0.4 < scores[0]["border_frac"] < 0.6  # a strip's boundary is half on the frame
    assert scores[1]["size"] < 0.01
    assert scores[4]["score"] == 0.0  # the whole picture is no subject


def test_centrality_and_border_decide_between_equal_sizes():
    centred, off = disc(150, 100, 40), disc(60, 60, 40)
    assert pick_subject([off, centred]) == 1
    inside, cut = disc(150, 100, 40), disc(150, 10, 40)  # same centre column, cut by the top
    scores = subject_scores([inside, cut])
    assert scores[1]["border"] < scores[0]["border"] == 1.0
    assert pick_subject([cut, inside]) == 1
    # quality (e.g. SAM's predicted IoU) multiplies in
    assert pick_subject([centred, centred], quality=[0.5, 0.9]) == 1
    # equal scores: the larger mask, then the lower index
    assert pick_subject([disc(150, 100, 30), disc(150, 100, 40)]) == 1
    assert pick_subject([centred, centred]) == 0


def test_pick_subject_nothing_and_bad_input():
    assert pick_subject([np.zeros((H, W), bool), np.ones((H, W), bool)]) is None
    with pytest.raises(ValueError, match="empty"):
        pick_subject([])
    with pytest.raises(ValueError, match="masks\\[1\\]"):
        pick_subject([disc(10, 10, 5), np.zeros((10, 10), bool)])
    with pytest.raises(ValueError, match="bool"):
        pick_subject([np.zeros((H, W), np.uint8)])
    with pytest.raises(ValueError, match="min_frac"):
        pick_subject([disc(10, 10, 5)], min_frac=0.9, max_frac=0.5)
    # not a TypeError from deep inside: each bad value is named
    for bad in (None, "0.1", [1]):
        with pytest.raises(ValueError, match="min_frac must be"):
            pick_subject([disc(10, 10, 5)], min_frac=bad)
        with pytest.raises(ValueError, match="max_frac must be"):
            pick_subject([disc(10, 10, 5)], max_frac=bad)
    for bad in (None, 3, "masks"):
        with pytest.raises(ValueError, match="masks must be a list"):
            pick_subject(bad)
    with pytest.raises(ValueError, match="quality\\[0\\] must be a finite number"):
        pick_subject([disc(10, 10, 5)], quality=[float("nan")])
    with pytest.raises(ValueError, match="quality must be a list"):
        pick_subject([disc(10, 10, 5)], quality=0.5)


# --------------------------------------------------------------------------- auto_subject_mask


def test_auto_subject_mask_on_tiny_sam_is_deterministic(tiny_sam, subject_image):
    kwargs = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    first = auto_subject_mask(tiny_sam, subject_image, **kwargs)
    assert first.mask.shape == (H, W) and first.mask.dtype == bool
    assert first.candidates >= 1
    if first.found:
        assert first.mask.any() and first.index is not None and first.score > 0
        assert set(first.breakdown) >= {"size", "center", "border", "quality", "area_frac"}
        x0, y0, x1, y1 = first.box
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
    else:
        assert not first.mask.any() and first.message
    second = auto_subject_mask(tiny_sam, subject_image, **kwargs)
    np.testing.assert_array_equal(first.mask, second.mask)
    assert (first.index, first.score, first.candidates) == (
        second.index,
        second.score,
        second.candidates,
    )
    record = json.loads(json.dumps(first.to_dict()))
    assert record["settings"]["points_per_side"] == 4


def test_auto_subject_mask_picks_by_the_rule(monkeypatch, tiny_sam, subject_image, subject_mask):
    from segment_anything import SamAutomaticMaskGenerator

    strip = np.zeros((H, W), bool)
    strip[:, :30] = True
    proposals = [
        {"segmentation": m, "predicted_iou": 0.95} for m in (strip, subject_mask, ~subject_mask)
    ]
    monkeypatch.setattr(SamAutomaticMaskGenerator, "generate", lambda self, image: proposals)
    result = auto_subject_mask(tiny_sam, subject_image)
    assert result.found and result.index == 1 and result.candidates == 3
    np.testing.assert_array_equal(result.mask, subject_mask)
    assert result.box == (101.0, 51.0, 200.0, 150.0)  # XYXY, x1/y1 exclusive
    assert result.breakdown["quality"] == 0.95

    monkeypatch.setattr(SamAutomaticMaskGenerator, "generate", lambda self, image: [])
    nothing = auto_subject_mask(tiny_sam, subject_image)
    assert nothing.found is False and nothing.index is None and nothing.candidates == 0
    assert nothing.mask.shape == (H, W) and not nothing.mask.any()
    assert "No subject found" in nothing.message


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(points_per_side=0), "points_per_side"),
        (dict(points_per_batch=2.5), "points_per_batch"),
        (dict(pred_iou_thresh=1.2), "pred_iou_thresh"),
        (dict(stability_score_thresh=-1), "stability_score_thresh"),
        (dict(min_frac=0.0), "min_frac"),
    ],
)
def test_auto_subject_mask_bad_input(tiny_sam, subject_image, kwargs, name):
    with pytest.raises(ValueError, match=name):
        auto_subject_mask(tiny_sam, subject_image, **kwargs)
    with pytest.raises(ValueError, match="predictor"):
        auto_subject_mask(object(), subject_image)
