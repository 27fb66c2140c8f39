"""The salient-object-aware ControlNet as a background method, on its tiny replica.

``SalientControlNet("tiny")`` (and ``model="salient"`` next to the tiny text-to-image pipe) is
the replica of ``yahoo-inc/photo-background-generation`` that
:mod:`sdsam_nb.models.tiny.salient` builds with the checkpoint's folder layout.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import sdsam_nb
from sdsam_nb import masks
from sdsam_nb.background import METHODS, method_for
from sdsam_nb.background.common import DEFAULT_FEATHER
from sdsam_nb.background.methods import KNOWN_CHECKPOINTS, SALIENT_BG, SalientControlNet
from sdsam_nb.models import MODELS, cache_dir, provenance, tiny
from sdsam_nb.models.salient import SalientInpaintPipeline

QUICK = {"n": 1, "steps": 2, "size": 96}
# the component folders of yahoo-inc/photo-background-generation (its model_index.json)
LAYOUT = {"controlnet", "unet", "vae", "text_encoder", "tokenizer", "scheduler"}
LAYOUT |= {"feature_extractor"}


@pytest.fixture
def fresh_models():
    """An empty model cache for the test, the previous one put back afterwards."""
    before = MODELS.copy()
    MODELS.clear()
    yield
    MODELS.clear()
    MODELS.update(before)


def test_the_tiny_replica_has_the_checkpoints_layout():
    folder = tiny.salient_folder(cache_dir() / "tiny")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionControlNetInpaintPipeline"
    assert {p.name for p in folder.iterdir() if p.is_dir()} == LAYOUT
    assert index["safety_checker"] == [None, None]
    assert index["scheduler"] == ["diffusers", "UniPCMultistepScheduler"]
    unet, controlnet = (
        json.loads((folder / p / "config.json").read_text()) for p in ("unet", "controlnet")
    )
    assert unet["in_channels"] == controlnet["in_channels"] == 9  # as the real checkpoint
    assert controlnet["conditioning_channels"] == 3


def test_the_tables_name_it(tiny_sd):
    assert METHODS["salient"] is KNOWN_CHECKPOINTS[SALIENT_BG] is SalientControlNet
    assert method_for("salient").checkpoint is None
    assert method_for(SALIENT_BG).checkpoint == SALIENT_BG
    mine = SalientControlNet("tiny", conditioning_scale=0.5)
    assert method_for(mine) is mine and mine.name == "salient"


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "1", None])
def test_conditioning_scale_is_checked(bad):
    with pytest.raises(ValueError, match="conditioning_scale"):
        SalientControlNet("tiny", conditioning_scale=bad)


def test_loading_goes_through_each_components_from_pretrained(tiny_sd, fresh_models, monkeypatch):
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DiffusionPipeline,
        UNet2DConditionModel,
        UniPCMultistepScheduler,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    calls = []
    for cls in (
        ControlNetModel,
        UNet2DConditionModel,
        AutoencoderKL,
        CLIPTextModel,
        CLIPTokenizer,
        UniPCMultistepScheduler,
    ):

        def spy(*args, _cls=cls, _load=cls.from_pretrained, **kwargs):
            calls.append((_cls.__name__, kwargs.get("subfolder"), "custom_pipeline" in kwargs))
            return _load(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)

    def no_pipeline_loading(*args, **kwargs):
        raise AssertionError("the pipeline is assembled from its components, never loaded whole")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", no_pipeline_loading)
    painter = SalientControlNet("tiny").pipeline(tiny_sd)
    assert sorted(calls) == [
        ("AutoencoderKL", "vae", False),
        ("CLIPTextModel", "text_encoder", False),
        ("CLIPTokenizer", "tokenizer", False),
        ("ControlNetModel", "controlnet", False),
        ("UNet2DConditionModel", "unet", False),
        ("UniPCMultistepScheduler", "scheduler", False),
    ]
    assert isinstance(painter, SalientInpaintPipeline)
    info = provenance(painter)
    assert info["model"] == "tiny" and info["revision"] is None
    assert info["path"] == str(tiny.salient_folder(cache_dir() / "tiny"))


def test_it_follows_the_text_to_image_pipe(tiny_sd):
    painter = SalientControlNet("tiny").pipeline(tiny_sd)
    assert painter.unet.dtype == tiny_sd.unet.dtype and painter.device == tiny_sd.device
    # load_sd's sampler (DPM-Solver++), built from the checkpoint's own UniPC config
    assert type(painter.scheduler) is type(tiny_sd.scheduler)
    assert type(provenance(painter)["own_scheduler"]).__name__ == "UniPCMultistepScheduler"
    assert provenance(painter)["scheduler"] == provenance(tiny_sd)["scheduler"] == "dpm++"
    assert painter.safety_checker is None  # the tiny pipe has none
    assert painter._progress_bar_config.get("disable") is True  # as progress=False
    # once per process; "salient" next to the tiny pipe is the tiny replica
    assert SalientControlNet("tiny").pipeline(tiny_sd) is painter
    assert method_for("salient").pipeline(tiny_sd) is painter


def _background(tiny_sd, subject_image, subject_mask, **kwargs):
    return sdsam_nb.inpaint_background(
        tiny_sd, subject_image, subject_mask, "a beach", **{**QUICK, **kwargs}
    )


def test_a_salient_background_keeps_the_subject(tiny_sd, subject_image, subject_mask):
    method = SalientControlNet("tiny")
    (out,) = _background(tiny_sd, subject_image, subject_mask, model=method, seed=3)
    assert out.size == subject_image.size and out.mode == "RGB"
    inner = masks.shrink(subject_mask, DEFAULT_FEATHER)
    assert np.array_equal(np.asarray(out)[inner], np.asarray(subject_image)[inner])
    background = ~subject_mask
    assert not np.array_equal(np.asarray(out)[background], np.asarray(subject_image)[background])
    (again,) = _background(tiny_sd, subject_image, subject_mask, model=method, seed=3)
    assert np.array_equal(np.asarray(out), np.asarray(again))
    (by_name,) = _background(tiny_sd, subject_image, subject_mask, model="salient", seed=3)
    assert np.array_equal(np.asarray(out), np.asarray(by_name))


def test_the_controlnet_gets_the_mask_and_the_scale(
    tiny_sd, subject_image, subject_mask, monkeypatch
):
    painter = SalientControlNet("tiny").pipeline(tiny_sd)
    calls, forwards = [], []
    call = SalientInpaintPipeline.__call__

    def spy_call(self, *args, **kwargs):  # the pipeline boundary
        calls.append(kwargs)
        return call(self, *args, **kwargs)

    forward, unet_forward, unet_extra = painter.controlnet.forward, painter.unet.forward, []

    def spy_forward(sample, *args, **kwargs):
        forwards.append((sample, kwargs["controlnet_cond"], kwargs["conditioning_scale"]))
        return forward(sample, *args, **kwargs)

    def spy_unet(sample, *args, **kwargs):
        unet_extra.append(sample[:, 4:])  # the mask and the masked-picture latents
        return unet_forward(sample, *args, **kwargs)

    monkeypatch.setattr(SalientInpaintPipeline, "__call__", spy_call)
    monkeypatch.setattr(painter.controlnet, "forward", spy_forward)
    monkeypatch.setattr(painter.unet, "forward", spy_unet)
    method = SalientControlNet("tiny", conditioning_scale=0.5)
    _background(tiny_sd, subject_image, subject_mask, model=method)

    (kwargs,) = calls
    mask_image = kwargs["mask_image"]
    assert kwargs["control_image"] is mask_image and mask_image.mode == "L"
    assert kwargs["controlnet_conditioning_scale"] == 0.5
    repaint = np.asarray(mask_image) == 255  # white = the background to repaint
    assert repaint.shape == (64, 96) and not repaint[32, 48] and repaint[0, 0]
    # inside the pipeline: the inpainting UNet's 9 channels in, the mask as the condition
    assert len(forwards) == len(unet_extra) == 2  # two steps
    expected = torch.from_numpy(repaint.astype(np.float32))
    for (sample, cond, scale), extra in zip(forwards, unet_extra, strict=True):
        assert sample.shape[1] == 9 and torch.equal(sample[:, 4:], extra)
        assert scale == pytest.approx(0.5)
        assert cond.shape == (2, 3, 64, 96)  # classifier-free guidance: twice
        assert torch.equal(cond.float(), expected.expand(2, 3, 64, 96))


def test_diffusers_own_pipeline_cannot_feed_the_checkpoints_controlnet(tiny_sd):
    """Why SalientInpaintPipeline exists (diffusers issue #4374): the stock pipeline hands the
    ControlNet the 4 latent channels only. If this starts passing, the subclass can go."""
    from diffusers import StableDiffusionControlNetInpaintPipeline

    painter = SalientControlNet("tiny").pipeline(tiny_sd)
    stock = StableDiffusionControlNetInpaintPipeline(**painter.components)
    stock.set_progress_bar_config(disable=True)
    mask = Image.new("L", (64, 64), 255)
    with pytest.raises(RuntimeError, match="channels"):
        stock("x", image=Image.new("RGB", (64, 64)), mask_image=mask, control_image=mask,
              num_inference_steps=1, height=64, width=64)  # fmt: skip


def test_a_folder_of_another_layout_is_refused(tiny_sd, tmp_path):
    sd = tiny.sd_folder(cache_dir() / "tiny")  # a text-to-image folder: no controlnet
    with pytest.raises(ValueError, match=r"no controlnet/ folder.*ControlNet-inpainting") as err:
        SalientControlNet(str(sd)).pipeline(tiny_sd)
    assert "\n" not in str(err.value) and str(sd) in str(err.value)

    four = tmp_path / "four-channel-unet"
    shutil.copytree(tiny.salient_folder(cache_dir() / "tiny"), four)
    config = json.loads((four / "unet" / "config.json").read_text())
    (four / "unet" / "config.json").write_text(json.dumps({**config, "in_channels": 4}))
    with pytest.raises(ValueError, match="in_channels=4.*9-channel") as err:
        SalientControlNet(four).pipeline(tiny_sd)
    assert "\n" not in str(err.value)
