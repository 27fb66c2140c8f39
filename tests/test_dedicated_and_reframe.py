"""The dedicated inpainting checkpoint (the tiny 9-channel one), what "auto" picks, object
expansion per method, and reframing to new canvases, on the built-in tiny models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import sdsam_nb
from sdsam_nb import masks
from sdsam_nb.background.methods.auto import AUTO, auto_model
from sdsam_nb.background.reframe import canvas_size, parse_aspect, place_subject
from sdsam_nb.models import cache_dir, tiny

FAST = {"steps": 2, "size": 96}


@pytest.fixture(scope="module")
def dedicated(tiny_sd):
    return sdsam_nb.inpainting(tiny_sd, "tiny-inpainting")


def test_tiny_dedicated_checkpoint_has_a_9_channel_unet_and_shares_the_rest(tiny_sd, dedicated):
    assert dedicated.unet.config.in_channels == 9 and tiny_sd.unet.config.in_channels == 4
    # the same text encoder, tokenizer and VAE objects: held once
    assert dedicated.text_encoder is tiny_sd.text_encoder and dedicated.vae is tiny_sd.vae
    assert dedicated.tokenizer is tiny_sd.tokenizer
    assert sdsam_nb.provenance(dedicated)["shared"] == ["text_encoder", "tokenizer", "vae"]
    assert sdsam_nb.inpainting(tiny_sd, "tiny-inpainting") is dedicated  # loaded once
    # it samples with the sampler load_sd chose, built from its own scheduler config
    assert type(dedicated.scheduler) is type(tiny_sd.scheduler)


def test_other_weights_are_loaded_not_shared(tiny_sd, tmp_path):
    folder = tmp_path / "other-inpainting"
    shutil.copytree(tiny.sd_inpainting_folder(cache_dir() / "tiny"), folder)
    from transformers import CLIPTextModel

    encoder = CLIPTextModel.from_pretrained(folder / "text_encoder")
    with torch.no_grad():  # one weight changed: another text encoder of the same architecture
        next(iter(encoder.parameters())).add_(1.0)
    encoder.save_pretrained(folder / "text_encoder")
    other = sdsam_nb.inpainting(tiny_sd, str(folder))
    assert other.text_encoder is not tiny_sd.text_encoder and other.vae is tiny_sd.vae
    assert sdsam_nb.provenance(other)["shared"] == ["tokenizer", "vae"]
    assert other.text_encoder.dtype == tiny_sd.text_encoder.dtype


def test_a_text_to_image_checkpoint_is_no_inpainting_model(tiny_sd):
    with pytest.raises(ValueError, match=r"not an inpainting checkpoint: its UNet takes 4") as e:
        sdsam_nb.inpainting(tiny_sd, str(tiny.sd_folder(cache_dir() / "tiny")))
    assert "\n" not in str(e.value)


def test_dedicated_inpainting_keeps_size_subject_pixels_and_seeds(
    tiny_sd, subject_image, subject_mask
):
    out = sdsam_nb.inpaint_background(
        tiny_sd, subject_image, subject_mask, "a beach", n=2, model="tiny-inpainting", **FAST
    )
    assert [im.size for im in out] == [subject_image.size] * 2
    assert [im.info["method"] for im in out] == ["tiny-inpainting"] * 2
    core = masks.shrink(subject_mask, 3)
    for im in out:
        assert np.array_equal(np.asarray(im)[core], np.asarray(subject_image)[core])
    again = sdsam_nb.inpaint_background(
        tiny_sd, subject_image, subject_mask, "a beach", seed=1, model="tiny-inpainting", **FAST
    )
    assert np.array_equal(np.asarray(again[0]), np.asarray(out[1]))  # seed 1 alone = 2nd of 2


def test_auto_is_the_own_weights_on_the_cpu_and_dedicated_on_a_gpu(tiny_sd, monkeypatch):
    assert auto_model(tiny_sd) is None
    out = sdsam_nb.inpaint_background(
        tiny_sd, Image.new("RGB", (96, 64), "red"), _box(64, 96), "a beach", model=AUTO, **FAST
    )
    assert out[0].info["method"] == "own"

    class OnGpu:  # what auto_model reads of a pipeline: its provenance and its UNet's device
        unet = torch.nn.Linear(1, 1)

    gpu = OnGpu()
    monkeypatch.setattr(
        "sdsam_nb.background.methods.auto.provenance",
        lambda p: (
            {"offload_device": torch.device("cuda"), "model": "tiny"}
            if p is gpu
            else {"offload_device": None, "model": "CompVis/stable-diffusion-v1-4"}
        ),
    )
    assert auto_model(gpu) == "tiny-inpainting"
    assert auto_model(tiny_sd) is None  # its UNet is on the CPU


def _box(h, w):
    m = np.zeros((h, w), bool)
    m[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
    return m


def test_scores_say_which_method_made_each_result(tiny_sd, tiny_sam, subject_image, subject_mask):
    own = sdsam_nb.inpaint_background(tiny_sd, subject_image, subject_mask, "a beach", **FAST)
    dedicated = sdsam_nb.inpaint_background(
        tiny_sd, subject_image, subject_mask, "a beach", model="tiny-inpainting", **FAST
    )
    scores = sdsam_nb.score_results(
        subject_image, [*own, *dedicated], subject_mask, predictor=tiny_sam
    )
    assert [s["method"] for s in scores] == ["own", "tiny-inpainting"]
    summary = sdsam_nb.expansion_by_method(scores)
    assert set(summary) == {"own", "tiny-inpainting"}
    for name, score in zip(["own", "tiny-inpainting"], scores, strict=True):
        assert summary[name]["n"] == 1 and summary[name]["mean"] == score["object_expansion"]
    json.dumps(summary)


# ------------------------------------------------------------------ reframing


@pytest.mark.parametrize(
    ("kwargs", "canvas"),
    [
        ({"aspect": "16:9"}, (356, 200)),  # wider than 3:2: the height is kept
        ({"aspect": "9:16"}, (300, 533)),  # taller: the width is kept
        ({"aspect": 1.0}, (300, 300)),
        ({"size": (640, 200)}, (640, 200)),
        ({"size": (120, 80)}, (120, 80)),  # smaller than the picture
    ],
)
def test_canvas_sizes_for_a_300x200_picture(kwargs, canvas):
    assert canvas_size(300, 200, **kwargs) == canvas


@pytest.mark.parametrize(
    ("kwargs", "canvas", "scale"),
    [
        ({"aspect": "16:9", "position": "bottom"}, (356, 200), 1.0),  # wider
        ({"aspect": "3:4"}, (300, 400), 1.0),  # taller
        ({"size": (160, 120), "scale": 0.5, "position": "top-left"}, (160, 120), 0.5),  # smaller
        ({"size": (300, 200), "scale": 0.8, "position": (0.25, 1.0)}, (300, 200), 0.8),  # same
    ],
    ids=["wider", "taller", "smaller", "same-size"],
)
def test_reframe_to_new_canvases(tiny_sd, subject_image, subject_mask, kwargs, canvas, scale):
    out = sdsam_nb.reframe(
        tiny_sd, subject_image, subject_mask, "a beach", n=2, steps=2, work_size=96, **kwargs
    )
    assert [im.size for im in out] == [canvas] * 2
    info = out[0].info["reframe"]
    assert info["canvas"] == list(canvas) and info["scale"] == scale and info["method"] == "own"
    # the subject's pixels (scaled as asked) are pasted back unchanged inside the shrunk mask
    placed, placed_mask, box = place_subject(
        subject_image, subject_mask, canvas, scale=scale, position=kwargs.get("position", "center")
    )
    assert info["box"] == list(box)
    core = masks.shrink(placed_mask, 3)
    assert core.any()
    for im in out:
        assert np.array_equal(np.asarray(im)[core], np.asarray(placed)[core])
    if kwargs.get("position") == "bottom":
        assert box[3] == canvas[1]  # the subject's box touches the bottom edge


def test_reframe_with_the_dedicated_checkpoint_is_reproducible(
    tiny_sd, subject_image, subject_mask
):
    run = [
        sdsam_nb.reframe(
            tiny_sd,
            subject_image,
            subject_mask,
            "a beach",
            aspect="16:9",
            model="tiny-inpainting",
            steps=2,
            work_size=96,
        )[0]
        for _ in range(2)
    ]
    assert run[0].size == (356, 200) and run[0].info["reframe"]["method"] == "tiny-inpainting"
    assert np.array_equal(np.asarray(run[0]), np.asarray(run[1]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"aspect": "16:0"}, r"aspect='16:0' is not a usable aspect ratio"),
        ({"aspect": "wide"}, r"aspect='wide' is not an aspect ratio"),
        ({"size": (100, 64), "scale": 1.0}, r"larger than the 100x64 canvas: lower scale"),
        ({"size": (64, 64), "aspect": "1:1"}, r"either size=\(w, h\) or aspect"),
        ({}, r"either size=\(w, h\) or aspect"),
        ({"aspect": "16:9", "scale": 0}, r"scale"),
        ({"aspect": "16:9", "position": "middle"}, r"position='middle' must be one of"),
        ({"size": (32, 500)}, r"size\[0\]"),
    ],
)
def test_reframe_bad_input_is_one_line(tiny_sd, subject_image, subject_mask, kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        sdsam_nb.reframe(tiny_sd, subject_image, subject_mask, "a beach", **kwargs)
    assert "\n" not in str(e.value)


def test_aspect_ratios_parse():
    assert parse_aspect("16:9") == pytest.approx(16 / 9)
    assert parse_aspect("4x5") == pytest.approx(0.8) and parse_aspect(2) == 2.0
    assert parse_aspect("1.91:1") == pytest.approx(1.91)
