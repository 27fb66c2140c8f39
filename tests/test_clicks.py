"""ClickSegmenter on the built-in tiny models of every backend (random weights: assertions are
on state, shapes, counts and exact equality between runs, never on how good a mask looks).

Tests taking ``tiny_sam`` run once per backend: segment_anything's tiny SAM and the tiny
transformers SAM, SlimSAM, SAM-HQ and SAM 2 (all loaded by ``load_sam`` through the same code
as real weights); tests that spy on ``SamPredictor`` use segment_anything's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_or_skip
from PIL import Image

import sdsam_nb
from sdsam_nb.segment.clicks import Candidate, ClickSegmenter


def gradient(w: int, h: int) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], -1)
    return Image.fromarray(a.astype(np.uint8))


BACKENDS = ["tiny", "tiny-sam", "tiny-slimsam", "tiny-sam-hq", "tiny-sam2"]


@pytest.fixture(params=BACKENDS)
def tiny_sam(request, _private_cache):
    """Each backend's tiny model (this module's own, overriding conftest's)."""
    return load_or_skip(request.param)


@pytest.fixture
def own_sam(_private_cache):
    """A predictor of its own (same cached tiny model), safe to spy on."""
    return sdsam_nb.load_sam("tiny")


def spy(monkeypatch, predictor, name):
    calls = []
    original = getattr(predictor, name)

    def wrapper(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(predictor, name, wrapper)
    return calls


# ------------------------------------------------------------------ embedding


def test_embedding_is_computed_once_across_many_clicks(monkeypatch, own_sam, subject_image):
    set_calls = spy(monkeypatch, own_sam, "set_image")
    seg = ClickSegmenter(own_sam, subject_image)
    for k in range(6):
        seg.add_point(100 + 10 * k, 100, positive=k % 2 == 0)
    seg.set_box(90, 40, 210, 160)
    seg.undo()
    seg.redo()
    seg.clear_box()
    assert seg.embedding_computations == 1 and len(set_calls) == 1
    assert seg.embedding_restores == 0
    assert seg.last_latency_s is not None and 0 < seg.last_latency_s < 5


def test_shared_predictor_restores_own_embedding(monkeypatch, own_sam, subject_image):
    set_calls = spy(monkeypatch, own_sam, "set_image")
    first = ClickSegmenter(own_sam, subject_image)
    first.add_point(150, 100)
    other = ClickSegmenter(own_sam, gradient(200, 300))  # the predictor now holds another image
    other.add_point(50, 250)
    got = first.add_point(120, 90, positive=False)
    assert first.embedding_computations == 1 and first.embedding_restores == 1
    assert len(set_calls) == 2

    fresh = ClickSegmenter(own_sam, subject_image)
    fresh.add_point(150, 100)
    want = fresh.add_point(120, 90, positive=False)
    assert np.array_equal(got, want)
    assert np.array_equal(first.logits, fresh.logits)
    # and the other segmenter switches back just as well
    got_other = other.add_point(60, 240)
    other_again = ClickSegmenter(own_sam, gradient(200, 300))
    other_again.add_point(50, 250)
    assert np.array_equal(got_other, other_again.add_point(60, 240))
    assert other.embedding_computations == 1 and other.embedding_restores == 1


# ------------------------------------------------------------------ sizes and candidates


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (64, 257)])
def test_mask_has_the_image_size(tiny_sam, size):
    w, h = size
    seg = ClickSegmenter(tiny_sam, gradient(w, h))
    assert seg.size == (w, h)
    assert seg.mask.shape == (h, w) and seg.mask.dtype == bool and not seg.mask.any()
    m = seg.add_point(w / 2, h / 3)
    assert m.shape == (h, w) and m.dtype == bool
    assert all(c.mask.shape == (h, w) for c in seg.candidates)
    assert np.array_equal(seg.mask, seg.candidates[seg.chosen].mask)


def test_candidates_three_for_a_single_point_else_one(tiny_sam, subject_image):
    seg = ClickSegmenter(tiny_sam, subject_image)
    assert seg.candidates == [] and seg.logits is None
    seg.add_point(150, 100)
    cands = seg.candidates
    assert len(cands) == 3 and all(isinstance(c, Candidate) for c in cands)
    assert all(isinstance(c.score, float) for c in cands)
    assert seg.chosen == int(np.argmax([c.score for c in cands]))
    assert seg.logits.shape == (1, 64, 64) and seg.logits.dtype == np.float32  # 256-px model
    seg.add_point(20, 20, positive=False)
    assert len(seg.candidates) == 1 and seg.chosen == 0
    assert seg.points == [(150.0, 100.0), (20.0, 20.0)] and seg.labels == [1, 0]

    boxed = ClickSegmenter(tiny_sam, subject_image)
    boxed.set_box(200, 150, 100, 50)  # corners in any order
    assert boxed.box == (100.0, 50.0, 200.0, 150.0) and len(boxed.candidates) == 1
    boxed.add_point(150, 100)
    assert len(boxed.candidates) == 1

    forced = ClickSegmenter(tiny_sam, subject_image, multimask=True)
    forced.add_point(150, 100)
    forced.add_point(30, 30, positive=False)
    assert len(forced.candidates) == 3
    single = ClickSegmenter(tiny_sam, subject_image, multimask=False)
    single.add_point(150, 100)
    assert len(single.candidates) == 1


def test_chosen_logits_are_fed_back(monkeypatch, own_sam, subject_image):
    calls = spy(monkeypatch, own_sam, "predict")
    seg = ClickSegmenter(own_sam, subject_image)
    seg.add_point(150, 100)
    assert calls[0]["mask_input"] is None and calls[0]["multimask_output"] is True
    pick = (seg.chosen + 1) % 3
    seg.choose(pick)
    assert seg.chosen == pick and np.array_equal(seg.mask, seg.candidates[pick].mask)
    expected = seg.logits
    seg.add_point(60, 40, positive=False)
    assert np.array_equal(calls[1]["mask_input"], expected)
    assert calls[1]["multimask_output"] is False
    assert len(calls) == 2  # choose() did not predict


def test_choose_validates_the_index(tiny_sam, subject_image):
    seg = ClickSegmenter(tiny_sam, subject_image)
    with pytest.raises(ValueError, match="no candidates"):
        seg.choose(0)
    seg.add_point(150, 100)
    for bad in (3, -1, 1.0, "1", True):
        with pytest.raises(ValueError, match=r"0\.\.2"):
            seg.choose(bad)


# ------------------------------------------------------------------ undo / redo


def test_undo_redo_restore_snapshots_without_predicting(monkeypatch, own_sam, subject_image):
    seg = ClickSegmenter(own_sam, subject_image)
    assert seg.undo() is False and seg.redo() is False
    seen = []
    for action in (
        lambda: seg.add_point(150, 100),
        lambda: seg.choose((seg.chosen + 1) % 3),
        lambda: seg.add_point(40, 30, positive=False),
        lambda: seg.set_box(80, 40, 220, 170),
        lambda: seg.clear_box(),
    ):
        action()
        seen.append((seg.mask, seg.candidates, seg.chosen, seg.logits, seg.points, seg.box))

    calls = spy(monkeypatch, own_sam, "predict")

    def same(k):
        mask, cands, chosen, logits, points, box = seen[k]
        assert np.array_equal(seg.mask, mask) and seg.chosen == chosen
        assert np.array_equal(seg.logits, logits)
        assert [c.score for c in seg.candidates] == [c.score for c in cands]
        pairs = zip(seg.candidates, cands, strict=True)
        assert all(np.array_equal(a.mask, b.mask) for a, b in pairs)
        assert seg.points == points and seg.box == box

    for k in (3, 2, 1, 0):
        assert seg.undo() is True
        same(k)
    assert seg.undo() is True
    assert not seg.mask.any() and seg.candidates == [] and seg.points == []
    assert seg.undo() is False
    for k in range(5):
        assert seg.redo() is True
        same(k)
    assert seg.redo() is False
    assert calls == []

    seg.undo()
    seg.undo()
    seg.add_point(200, 150)  # a new action drops the redo branch
    assert seg.redo() is False and seg.can_undo and not seg.can_redo


def test_reset_is_undoable_and_returned_masks_are_copies(tiny_sam, subject_image):
    seg = ClickSegmenter(tiny_sam, subject_image)
    m = seg.add_point(150, 100)
    m[:] = ~m  # mutating the returned array must not touch the state
    kept = seg.mask
    assert not np.array_equal(m, kept)
    assert not seg.reset().any() and seg.points == [] and seg.box is None
    assert seg.undo() and np.array_equal(seg.mask, kept)


# ------------------------------------------------------------------ replay


def test_to_dict_is_json_and_replays_bit_identically(tiny_sam, subject_image):
    seg = ClickSegmenter(tiny_sam, subject_image)
    seg.add_point(150, 100)
    seg.choose((seg.chosen + 1) % 3)
    seg.add_point(30.25, 20.5, positive=False)
    seg.add_point(250, 180, positive=False)
    seg.undo()  # undone: must not be recorded
    seg.set_box(90.5, 45, 215, 160.75)
    seg.add_point(160, 120)
    seg.clear_box()
    seg.add_point(140, 80)

    d = seg.to_dict()
    text = json.dumps(d)
    d = json.loads(text)
    assert d["version"] == 1 and d["image_size"] == [300, 200] and d["multimask"] == "auto"
    assert [a["op"] for a in d["actions"]] == [
        "point", "choose", "point", "box", "point", "clear_box", "point",
    ]  # fmt: skip
    assert d["points"] == [[150.0, 100.0], [30.25, 20.5], [160.0, 120.0], [140.0, 80.0]]
    assert d["labels"] == [1, 0, 1, 1] and d["box"] is None and d["chosen"] == seg.chosen

    replay = ClickSegmenter.from_dict(tiny_sam, subject_image, d)
    assert np.array_equal(replay.mask, seg.mask)
    assert np.array_equal(replay.logits, seg.logits)
    assert replay.to_dict() == d
    assert replay.undo() and seg.undo()
    assert np.array_equal(replay.mask, seg.mask)


def test_fed_back_logits_make_the_order_matter(tiny_sam, subject_image):
    """Why to_dict records actions: without the choose() the same points give other logits."""
    a = ClickSegmenter(tiny_sam, subject_image)
    a.add_point(150, 100)
    a.choose((a.chosen + 1) % 3)
    a.add_point(40, 30, positive=False)
    b = ClickSegmenter.from_prompts(tiny_sam, subject_image, points=[[150, 100], [40, 30, 0]])
    assert a.points == b.points and a.labels == b.labels
    assert not np.array_equal(a.logits, b.logits)
    assert np.array_equal(
        ClickSegmenter.from_dict(tiny_sam, subject_image, a.to_dict()).logits, a.logits
    )


def test_add_points_is_one_prediction_one_action_and_replays(monkeypatch, own_sam, subject_image):
    seg = ClickSegmenter(own_sam, subject_image)
    seg.add_point(150, 100)
    calls = []
    original = own_sam.predict
    monkeypatch.setattr(own_sam, "predict", lambda *a, **k: calls.append(1) or original(*a, **k))
    mask = seg.add_points([[40, 30, 0], [160, 110], (250.5, 180, 1)])
    assert len(calls) == 1
    assert seg.points == [(150.0, 100.0), (40.0, 30.0), (160.0, 110.0), (250.5, 180.0)]
    assert seg.labels == [1, 0, 1, 1] and np.array_equal(mask, seg.mask)
    d = json.loads(json.dumps(seg.to_dict()))
    assert d["actions"][1] == {
        "op": "points",
        "points": [[40.0, 30.0, 0], [160.0, 110.0, 1], [250.5, 180.0, 1]],
    }
    assert np.array_equal(ClickSegmenter.from_dict(own_sam, subject_image, d).mask, seg.mask)
    assert seg.undo() and seg.points == [(150.0, 100.0)]  # one undo step
    with pytest.raises(ValueError, match=r"points\[1\]: y=200 is outside"):
        seg.add_points([[10, 10], [10, 200]])
    with pytest.raises(ValueError, match="at least one point"):
        seg.add_points([])
    assert seg.points == [(150.0, 100.0)]


def test_to_dict_after_reset_keeps_only_later_actions(tiny_sam, subject_image):
    seg = ClickSegmenter(tiny_sam, subject_image, multimask=False)
    seg.add_point(150, 100)
    seg.reset()
    seg.add_point(100, 60)
    d = seg.to_dict()
    assert d["actions"] == [{"op": "point", "x": 100.0, "y": 60.0, "positive": True}]
    assert d["multimask"] is False
    assert np.array_equal(ClickSegmenter.from_dict(tiny_sam, subject_image, d).mask, seg.mask)


def test_from_dict_rejects_another_image_size_and_bad_records(tiny_sam, subject_image):
    seg = ClickSegmenter(tiny_sam, subject_image)
    seg.add_point(150, 100)
    d = seg.to_dict()
    with pytest.raises(ValueError, match="300x200.*200x300"):
        ClickSegmenter.from_dict(tiny_sam, gradient(200, 300), d)
    with pytest.raises(ValueError, match="version"):
        ClickSegmenter.from_dict(tiny_sam, subject_image, {**d, "version": 2})
    with pytest.raises(ValueError, match=r"actions'\]\[0\].*op"):
        ClickSegmenter.from_dict(tiny_sam, subject_image, {**d, "actions": [{"op": "zap"}]})
    with pytest.raises(ValueError, match=r"actions'\]\[0\].*'y'"):
        ClickSegmenter.from_dict(
            tiny_sam, subject_image, {**d, "actions": [{"op": "point", "x": 1}]}
        )
    bad_point = {"op": "point", "x": 999, "y": 1, "positive": True}
    with pytest.raises(ValueError, match=r"actions'\]\[0\].*x=999"):
        ClickSegmenter.from_dict(tiny_sam, subject_image, {**d, "actions": [bad_point]})


def test_from_prompts_replays_box_then_points_then_choice(tiny_sam, subject_image):
    by_hand = ClickSegmenter(tiny_sam, subject_image)
    by_hand.set_box(90, 40, 210, 160)
    by_hand.add_point(150, 100)
    by_hand.add_point(100, 50, positive=False)
    got = ClickSegmenter.from_prompts(
        tiny_sam, subject_image, points=[[150, 100], [100, 50, 0]], box=[90, 40, 210, 160]
    )
    assert np.array_equal(got.mask, by_hand.mask) and got.labels == [1, 0]

    one = ClickSegmenter.from_prompts(
        tiny_sam, subject_image, points=np.array([[150, 100, 1]]), chosen=0
    )
    assert one.chosen == 0 and len(one.candidates) == 3
    assert ClickSegmenter.from_prompts(tiny_sam, subject_image).to_dict()["actions"] == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"points": [150, 100]}, r"points.*\[\[x, y\]\]"),
        ({"points": [[150]]}, r"points\[0\]"),
        ({"points": [[150, 100, 2]]}, r"points\[0\].*label"),
        ({"points": [[150, 100], [400, 50]]}, r"points\[1\].*x=400.*300x200"),
        ({"points": "150,100"}, "points"),
        ({"points": np.zeros((2, 4))}, "points"),
        ({"box": [1, 2, 3]}, "box"),
        ({"box": [10, 10, 10, 50]}, "box.*zero area"),
        ({"box": [10, 10, 400, 50]}, "box.*x1=400"),
        ({"chosen": 0}, "chosen"),
        ({"points": [[150, 100]], "chosen": 5}, r"chosen.*0\.\.2"),
    ],
)
def test_from_prompts_validates(own_sam, subject_image, kwargs, match):
    # checked by ClickSegmenter before any backend runs: one backend is enough
    with pytest.raises(ValueError, match=match):
        ClickSegmenter.from_prompts(own_sam, subject_image, **kwargs)


@pytest.mark.parametrize(
    "x, y, name",
    [
        (300, 10, "x=300"),
        (-0.5, 10, "x=-0.5"),
        (10, 200, "y=200"),
        (float("nan"), 10, "x=nan"),
        (10, float("inf"), "y=inf"),
        ("10", 10, "x must be a number"),
        (None, 10, "x must be a number"),
        (10, True, "y must be a number"),
    ],
)
def test_bad_points_raise_with_name_and_image_size(own_sam, subject_image, x, y, name):
    seg = ClickSegmenter(own_sam, subject_image)  # checked before the backend: one is enough
    with pytest.raises(ValueError, match=name) as info:
        seg.add_point(x, y)
    assert "300x200" in str(info.value)
    assert seg.points == [] and not seg.can_undo


def test_bad_box_positive_and_multimask(tiny_sam, subject_image):
    seg = ClickSegmenter(tiny_sam, subject_image)
    with pytest.raises(ValueError, match="zero area"):
        seg.set_box(10, 10, 50, 10)
    with pytest.raises(ValueError, match="y1=201"):
        seg.set_box(10, 10, 50, 201)
    seg.set_box(0, 0, 300, 200)  # the whole picture is a valid box
    with pytest.raises(ValueError, match="positive"):
        seg.add_point(10, 10, positive="yes")
    with pytest.raises(ValueError, match="multimask"):
        ClickSegmenter(tiny_sam, subject_image, multimask="always")
    with pytest.raises(ValueError, match="predictor"):
        ClickSegmenter(object(), subject_image)


# ------------------------------------------------------------------ image modes


def test_image_modes_are_converted(tiny_sam, subject_image, tmp_path):
    rgb = subject_image
    i16 = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    assert i16.mode == "I;16"
    for img in (rgb.convert("RGBA"), rgb.convert("L"), rgb.convert("P"), i16, np.asarray(rgb)):
        seg = ClickSegmenter(tiny_sam, img)
        assert seg.image.mode == "RGB" and seg.size == (300, 200)
        assert seg.add_point(150, 100).shape == (200, 300)

    # A JPEG stored landscape with EXIF orientation 6 (rotate 90° clockwise) is upright 200x300.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    rgb.save(path, exif=exif)
    with Image.open(path) as stored:
        assert stored.size == (300, 200)
    for source in (path, str(path)):
        seg = ClickSegmenter(tiny_sam, source)
        assert seg.size == (200, 300) and seg.image.mode == "RGB"
        assert seg.add_point(100, 250).shape == (300, 200)
        # rotated clockwise: the stored bottom-left (blue, no green) is now the top-left
        r, g, b = np.asarray(seg.image)[2, 2].astype(int)
        assert b > 200 and g < 50
    with pytest.raises(ValueError, match="200x300"):
        seg.add_point(250, 100)  # inside the stored landscape frame, outside the upright one


# --------------------------------------------------------------------------- text prompts


def _fake_detector(boxes, scores):
    def detect(image, text, box_threshold, text_threshold):
        return np.array(boxes, dtype=np.float32), ["subject"] * len(boxes), np.array(scores)

    return detect


def test_text_prompt_sets_the_box_and_replays_without_the_detector(tiny_sam, subject_image):
    detector = _fake_detector([[90, 40, 210, 160], [10, 10, 60, 50]], [0.9, 0.4])
    seg = ClickSegmenter(tiny_sam, subject_image)
    found = seg.set_text("the red disc", detector=detector, box_threshold=0.3)
    assert found[0] == (90.0, 40.0, 210.0, 160.0) and len(found) == 2
    assert seg.box == (90.0, 40.0, 210.0, 160.0)
    assert seg.detections == found
    # the same mask as a plain box prompt on the best box
    plain = ClickSegmenter(tiny_sam, subject_image)
    plain.set_box(90, 40, 210, 160)
    assert np.array_equal(seg.mask, plain.mask)
    seg.add_point(150, 100)
    record = json.loads(json.dumps(seg.to_dict()))
    action = record["actions"][0]
    assert action["op"] == "text" and action["text"] == "the red disc"
    assert action["box_threshold"] == 0.3 and action["boxes"][1] == [10.0, 10.0, 60.0, 50.0]
    again = ClickSegmenter.from_dict(tiny_sam, subject_image, record)  # no detector needed
    assert np.array_equal(again.mask, seg.mask) and again.detections == found


def test_text_prompt_union_box_and_nothing_found(tiny_sam, subject_image):
    detector = _fake_detector([[90, 40, 210, 160], [10, 10, 60, 50]], [0.9, 0.4])
    seg = ClickSegmenter(tiny_sam, subject_image)
    seg.set_text("things", detector=detector, combine="union")
    assert seg.box == (10.0, 10.0, 210.0, 160.0)
    empty = ClickSegmenter(tiny_sam, subject_image)
    assert empty.set_text("nothing", detector=_fake_detector(np.zeros((0, 4)), [])) == []
    assert not empty.mask.any() and empty.to_dict()["actions"] == []
    with pytest.raises(ValueError, match="found nothing"):
        ClickSegmenter.from_prompts(
            tiny_sam, subject_image, text="nothing", detector=_fake_detector(np.zeros((0, 4)), [])
        )
    with pytest.raises(ValueError, match="text or box"):
        ClickSegmenter.from_prompts(tiny_sam, subject_image, text="x", box=[0, 0, 5, 5])


def test_text_prompt_with_the_tiny_grounding_dino(tiny_sam, subject_image):
    from sdsam_nb.models import load_grounding_dino

    seg = ClickSegmenter.from_prompts(
        tiny_sam,
        subject_image,
        text="the red disc",
        detector=load_grounding_dino("tiny"),
        box_threshold=0.0,
        text_threshold=0.0,
    )
    assert seg.box is not None and seg.mask.shape == (200, 300)
    assert seg.to_dict()["actions"][0]["detector"]
