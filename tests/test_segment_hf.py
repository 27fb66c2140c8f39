"""The transformers segmenters (SAM, SlimSAM, SAM-HQ, SAM 2.1) on their tiny variants: loading
through ``from_pretrained``, what the click segmenter gets from them, records and errors.

The click behaviour itself (points, box, undo/redo, candidates, replay) runs for every
backend in ``test_clicks.py``; the picker in ``test_widget.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_or_skip

import sdsam_nb
from sdsam_nb import ClickSegmenter, ModelUnavailableError
from sdsam_nb.models.hf_sam import TransformersSam
from sdsam_nb.runs import model_info
from sdsam_nb.segment import PromptSegmenter, as_segmenter

FAMILY = {"tiny-sam": "sam", "tiny-slimsam": "sam", "tiny-sam-hq": "sam_hq", "tiny-sam2": "sam2"}


@pytest.fixture(params=sorted(FAMILY))
def hf_sam(request, _private_cache):
    return load_or_skip(request.param)


def spy(monkeypatch, obj, name):
    calls = []
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapper)
    return calls


def test_loaded_through_from_pretrained_once_per_process(hf_sam):
    assert isinstance(hf_sam, TransformersSam) and isinstance(hf_sam, PromptSegmenter)
    assert as_segmenter(hf_sam) is hf_sam
    assert hf_sam.family == FAMILY[hf_sam.source]
    folder = sdsam_nb.provenance(hf_sam.model)["path"]
    names = {p.name for p in __import__("pathlib").Path(folder).iterdir()}
    assert {"config.json", "model.safetensors"} <= names
    assert names & {"preprocessor_config.json", "processor_config.json"}
    again = sdsam_nb.load_sam(hf_sam.source)
    assert again is not hf_sam and again.model is hf_sam.model  # weights loaded once


def test_embedding_once_and_the_chosen_logits_fed_back(monkeypatch, hf_sam, subject_image):
    embeds = spy(monkeypatch, hf_sam, "embed")
    predicts = spy(monkeypatch, hf_sam, "predict")
    seg = ClickSegmenter(hf_sam, subject_image)
    seg.add_point(150, 100)
    assert predicts[-1][1]["mask_input"] is None
    seg.choose(len(seg.candidates) - 1)
    chosen = seg.logits
    assert chosen.shape[0] == 1 and chosen.shape[1] == chosen.shape[2]  # 1 x h x w, square
    seg.add_point(60, 40, positive=False)
    np.testing.assert_array_equal(predicts[-1][1]["mask_input"], chosen)
    seg.set_box(90, 40, 210, 160)
    assert len(embeds) == 1 and seg.embedding_computations == 1
    assert seg.mask.shape == (200, 300) and seg.mask.dtype == bool


def test_boxes_give_one_mask_each_in_batches(hf_sam, subject_image):
    boxes = [[10, 10, 120, 90], [100, 50, 200, 150], [0, 0, 299, 199]]
    one = sdsam_nb.segment.box_masks(hf_sam, subject_image, boxes, batch=1)
    all_at_once = sdsam_nb.segment.box_masks(hf_sam, subject_image, boxes)
    assert one.shape == (3, 200, 300) and one.dtype == bool
    np.testing.assert_array_equal(one, all_at_once)
    assert sdsam_nb.segment.box_masks(hf_sam, subject_image, []).shape == (0, 200, 300)


def test_two_segmenters_share_one_model_without_clobbering(hf_sam, subject_image):
    from PIL import Image

    a = ClickSegmenter(hf_sam, subject_image)
    a.add_point(150, 100)
    other = Image.fromarray(np.asarray(subject_image)[::-1, ::-1].copy())
    b = ClickSegmenter(hf_sam, other)
    b.add_point(150, 100)
    a.add_point(60, 40, positive=False)
    fresh = ClickSegmenter.from_dict(hf_sam, subject_image, a.to_dict())
    np.testing.assert_array_equal(fresh.mask, a.mask)


def test_the_run_record_names_backend_family_id_and_checksum(hf_sam):
    info = model_info(hf_sam, hf_sam.source)
    assert info["backend"] == "transformers" and info["family"] == FAMILY[hf_sam.source]
    assert info["model"] == hf_sam.source and info["revision"] is None
    assert len(info["checksum"]) == 64
    json.dumps(info)
    assert hf_sam.info() == {
        "backend": "transformers",
        "family": FAMILY[hf_sam.source],
        "model": hf_sam.source,
        "embed_dtype": str(hf_sam.dtype).removeprefix("torch."),
    }


def test_automatic_masks_are_segment_anything_only(_private_cache, subject_image):
    with pytest.raises(ValueError, match="transformers backend has no automatic masks"):
        sdsam_nb.auto_subject_mask(load_or_skip("tiny-sam"), subject_image)


def _folder(tmp_path, model_type):
    folder = tmp_path / model_type
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda tmp: "sam_vit_q", r"model_type='sam_vit_q' is not a SAM model: give one of"),
        (lambda tmp: str(tmp / "a" / "b"), r"neither an existing folder nor a hub id"),
        (lambda tmp: str(_folder(tmp, "clip")), r"is a 'clip' checkpoint, not a Segment Anyth"),
        (lambda tmp: str(_folder(tmp, "sam3")), r"cannot take clicks: a SAM 3 checkpoint.*sam3"),
    ],
    ids=["unknown-name", "missing-folder", "other-family", "sam3"],
)
def test_bad_models_get_one_line_errors(_private_cache, tmp_path, make, match):
    with pytest.raises(ValueError, match=match) as caught:
        sdsam_nb.load_sam(make(tmp_path))
    assert "\n" not in str(caught.value)


def test_arguments_of_the_other_library_are_refused(_private_cache, tmp_path):
    with pytest.raises(ValueError, match="checkpoint= is for segment_anything"):
        sdsam_nb.load_sam("tiny-sam2", checkpoint=tmp_path / "x.pth")
    with pytest.raises(ValueError, match="revision= is for transformers"):
        sdsam_nb.load_sam("tiny", revision="main")
    with pytest.raises(ValueError, match="model_type=None is not a SAM model"):
        sdsam_nb.load_sam(None)


def test_an_uncached_hub_id_offline_says_how_to_get_it(_private_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="facebook/sam2.1-hiera-tiny"):
        sdsam_nb.load_sam("facebook/sam2.1-hiera-tiny")
