"""The segmenter interface: backends plug in behind it; the click segmenter talks only to it."""

from __future__ import annotations

import numpy as np
import pytest

from sdsam_nb import ClickSegmenter, MaskPicker, segment
from sdsam_nb.segment import Prediction, PromptSegmenter, SamBackend, as_segmenter


class DiscBackend:
    """A backend in a dozen lines: the mask is the discs around the include points, less the
    discs around the exclude points; radius 20, 30, 40 px for the three candidates."""

    backend = "discs"

    def __init__(self):
        self.embeds = 0

    def embed(self, image):
        self.embeds += 1
        return image.shape[:2]

    def predict(self, embedding, *, points, labels, box, mask_input, multimask):
        h, w = embedding
        yy, xx = np.mgrid[0:h, 0:w]
        masks = []
        for radius in (20, 30, 40) if multimask else (30,):
            mask = np.zeros((h, w), bool)
            for (x, y), label in zip(points if points is not None else [], labels, strict=False):
                disc = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
                mask = mask | disc if label == 1 else mask & ~disc
            if box is not None:
                x0, y0, x1, y1 = box
                mask |= (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
            masks.append(mask)
        scores = np.linspace(0.9, 0.7, len(masks))
        return Prediction(np.stack(masks), scores, np.zeros((len(masks), 256, 256), np.float32))

    def predict_boxes(self, embedding, boxes, **_):
        raise NotImplementedError

    def info(self):
        return {"backend": self.backend}


def test_a_new_backend_drives_the_click_segmenter(subject_image):
    backend = DiscBackend()
    assert isinstance(backend, PromptSegmenter)
    seg = ClickSegmenter(backend, subject_image)
    seg.add_point(150, 100)
    assert len(seg.candidates) == 3 and seg.chosen == 0
    assert seg.mask[100, 150] and seg.mask[100, 168] and not seg.mask[100, 175]
    seg.add_point(160, 100, positive=False)
    assert not seg.mask[100, 150]
    seg.undo()
    assert seg.mask[100, 150]
    again = ClickSegmenter.from_dict(backend, subject_image, seg.to_dict())
    assert np.array_equal(again.mask, seg.mask)
    assert backend.embeds == 2  # once per segmenter, never per click
    picker = MaskPicker(seg)  # the widget takes any backend too
    assert picker.mask.shape == (200, 300)


def test_as_segmenter_wraps_sam_and_names_what_it_cannot(tiny_sam):
    wrapped = as_segmenter(tiny_sam)
    assert isinstance(wrapped, SamBackend) and wrapped.predictor is tiny_sam
    backend = DiscBackend()
    assert as_segmenter(backend) is backend
    with pytest.raises(ValueError, match="predictor must be a segmentation model .* not str"):
        as_segmenter("vit_b")


def test_register_adds_a_backend_for_another_model_type(subject_image, monkeypatch):
    class Wrapped:
        pass

    monkeypatch.setattr(segment.base, "BACKENDS", list(segment.BACKENDS))
    segment.base.register(lambda m: isinstance(m, Wrapped), lambda m: DiscBackend())
    seg = ClickSegmenter(Wrapped(), subject_image)
    seg.add_point(150, 100)
    assert seg.mask[100, 150]


def test_embeddings_are_values_one_sam_serves_many_segmenters(tiny_sam, subject_image):
    backend = SamBackend(tiny_sam)
    other = np.asarray(subject_image)[::-1].copy()
    a = ClickSegmenter(backend, subject_image)
    b = ClickSegmenter(backend, other)
    a.add_point(150, 100)
    b.add_point(150, 100)
    alone = ClickSegmenter(tiny_sam, subject_image)
    alone.add_point(150, 100)
    assert np.array_equal(a.mask, alone.mask)
    assert np.array_equal(a.candidates[0].mask, alone.candidates[0].mask)


def test_text_needs_a_detector_given_from_outside(tiny_sam, subject_image):
    seg = ClickSegmenter(tiny_sam, subject_image)
    with pytest.raises(ValueError, match="detector is required with a text prompt"):
        seg.set_text("the red disc")
