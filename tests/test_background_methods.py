"""Background methods plug in behind inpaint_background: one class, one table entry."""

from __future__ import annotations

import numpy as np
import pytest

import sdsam_nb
from sdsam_nb.background import METHODS, method_for
from sdsam_nb.background.methods import DedicatedInpainting, OwnWeights


def test_the_table_resolves_names_and_checkpoints(tmp_path):
    assert isinstance(method_for(None), OwnWeights) and method_for("own").name == "own"
    dedicated = method_for(sdsam_nb.INPAINTING_SD)
    assert isinstance(dedicated, DedicatedInpainting) and dedicated.model == sdsam_nb.INPAINTING_SD
    assert method_for(tmp_path).model == str(tmp_path)  # a local folder
    with pytest.raises(ValueError, match="model must be None, one of"):
        method_for(3)


class Recording(OwnWeights):
    """Own weights, plus an extra input for the pipeline call (as a ControlNet's control
    image would be)."""

    name = "recording"

    def inputs(self, image, mask_image) -> dict:
        return {"extra_marker": (image.size, mask_image.mode)}


def test_a_new_method_is_one_class_and_one_entry(tiny_sd, subject_image, subject_mask, monkeypatch):
    from diffusers import StableDiffusionInpaintPipeline

    monkeypatch.setitem(METHODS, "recording", Recording)
    seen = []
    call = StableDiffusionInpaintPipeline.__call__

    def spy(self, *args, **kwargs):  # the pipeline boundary: what the method handed over
        seen.append(kwargs.pop("extra_marker"))
        return call(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionInpaintPipeline, "__call__", spy)
    out = sdsam_nb.inpaint_background(
        tiny_sd, subject_image, subject_mask, "a beach", n=2, steps=2, size=96, model="recording"
    )
    assert len(out) == 2 and out[0].size == subject_image.size
    assert seen == [((96, 64), "L")] * 2
    # the same pixels as the own-weights method: the extra input changed nothing else
    monkeypatch.undo()
    own = sdsam_nb.inpaint_background(
        tiny_sd, subject_image, subject_mask, "a beach", n=2, steps=2, size=96
    )
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(out, own, strict=True))
