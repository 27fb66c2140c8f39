"""The few-step mode, load_sd(fast=...): a tiny LoRA of each kind goes through
``lora_state_dict`` / ``load_lora_weights`` as a real one does, is fused into a UNet of the
fast pipeline's own, and changes its pictures and nothing else's; seeds, the subject's pixels,
the record and the notebook parameter. Tiny models, in this process, 64-px pictures."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image
from safetensors.torch import load_file, save_file

import sdsam_nb
from sdsam_nb import runs
from sdsam_nb.models import MODELS, ModelUnavailableError, cache_dir, provenance, sha256_file
from sdsam_nb.models.fast import FAST, sampling
from sdsam_nb.models.identity import model_info
from sdsam_nb.models.sd import img2img, inpainting
from sdsam_nb.models.tiny import sd_folder
from sdsam_nb.runs.chain import execute_chain, replay

KINDS = list(FAST)
SAMPLER = {"lcm": "LCMScheduler", "tcd": "TCDScheduler", "hyper-sd": "DDIMScheduler"}
LAYER = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"  # one the LoRAs change


def _picture(pipe, **kwargs) -> np.ndarray:
    args = {"seed": 3, "width": 64, "height": 64, "cache": False, **kwargs}
    return np.asarray(sdsam_nb.generate(pipe, "a red chair", **args)[0])


def _subject() -> tuple[Image.Image, np.ndarray]:
    picture = Image.new("RGB", (96, 64), (40, 90, 200))
    pixels = np.asarray(picture).copy()
    mask = np.zeros((64, 96), bool)
    mask[16:48, 32:64] = True
    pixels[mask] = np.random.default_rng(0).integers(0, 256, (int(mask.sum()), 3))
    return Image.fromarray(pixels), mask


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_loads_through_load_lora_weights_fused_and_changes_the_pictures(
    kind, models, monkeypatch
):
    loaded = []
    real = StableDiffusionPipeline.load_lora_weights

    def spy(self, source, **kwargs):
        loaded.append((source, kwargs["weight_name"]))
        return real(self, source, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "load_lora_weights", spy)
    exact = {"dtype": torch.float32, "progress": False}  # the fused weights compared exactly
    plain = sdsam_nb.load_sd("tiny", **exact)
    fast = sdsam_nb.load_sd("tiny", fast=kind, **exact)
    mode = FAST[kind]

    # the real path: the adapter file under its real name, read by load_lora_weights
    ((folder, weight_name),) = loaded
    assert weight_name == mode.weight_name
    info = provenance(fast)["fast"]
    assert info == {
        "name": kind,
        "adapter": "tiny",
        "sha256": sha256_file(f"{folder}/{weight_name}"),
        "weight_name": weight_name,
        "fused": True,
    }
    assert type(fast.scheduler).__name__ == SAMPLER[kind]
    if kind == "hyper-sd":
        assert fast.scheduler.config.timestep_spacing == "trailing"

    # fused: plain layers whose weights moved by exactly the LoRA's up @ down
    assert not any("lora" in name for name, _ in fast.unet.named_modules())
    lora = load_file(f"{folder}/{weight_name}")
    down, up = lora[f"unet.{LAYER}.lora_A.weight"], lora[f"unet.{LAYER}.lora_B.weight"]
    moved = fast.unet.get_submodule(LAYER).weight - plain.unet.get_submodule(LAYER).weight
    assert torch.allclose(moved, up @ down, atol=1e-5) and moved.abs().max() > 0.01

    # the same sampler, steps and guidance on both: only the adapter differs
    same = {"steps": mode.steps, "guidance": mode.guidance, "scheduler": mode.scheduler}
    assert not np.array_equal(_picture(fast, **same), _picture(plain, **same))


def test_the_plain_pipeline_keeps_its_weights_and_pictures(models):
    plain = sdsam_nb.load_sd("tiny", progress=False)
    before = _picture(plain)
    weights = {k: v.clone() for k, v in plain.unet.state_dict().items()}
    fast = {kind: sdsam_nb.load_sd("tiny", fast=kind, progress=False) for kind in KINDS}
    for pipe in fast.values():  # a UNet of its own; the rest shared, not copied
        assert pipe.unet is not plain.unet
        assert pipe.text_encoder is plain.text_encoder and pipe.vae is plain.vae
    assert plain.unet.state_dict().keys() == weights.keys()
    assert all(torch.equal(v, weights[k]) for k, v in plain.unet.state_dict().items())
    assert np.array_equal(_picture(plain), before)
    assert provenance(plain).get("fast") is None
    # the same call returns the same object; another sampler is a view on the same weights
    assert sdsam_nb.load_sd("tiny", fast="lcm", progress=False) is fast["lcm"]
    quiet = sdsam_nb.load_sd("tiny", fast="lcm", progress=True)
    assert quiet is not fast["lcm"] and quiet.unet is fast["lcm"].unet


def test_the_disk_cache_of_pictures_tells_the_adapter_apart(models):
    """The same call, sampler, steps and guidance: the plain pipeline's cached picture is not
    the fast one's (the cache keys on the model's identity, which names the adapter)."""
    plain = sdsam_nb.load_sd("tiny", progress=False)
    fast = sdsam_nb.load_sd("tiny", fast="lcm", progress=False)
    same = {"steps": 4, "guidance": 1.0, "scheduler": "lcm", "width": 64, "height": 64}
    stored = sdsam_nb.generate(plain, "a red chair", **same)[0]
    assert stored.info["cache"] == "miss"
    assert sdsam_nb.generate(plain, "a red chair", **same)[0].info["cache"] == "hit"
    made = sdsam_nb.generate(fast, "a red chair", **same)[0]
    assert made.info["cache"] == "miss"
    assert not np.array_equal(np.asarray(made), np.asarray(stored))
    assert sdsam_nb.generate(fast, "a red chair", **same)[0].info["cache"] == "hit"


def test_few_step_runs_are_seeded_and_repeat_bit_identically(models):
    for kind in KINDS:  # no steps / guidance given: the adapter's, as its model card sets them
        fast = sdsam_nb.load_sd("tiny", fast=kind, progress=False)
        mode = FAST[kind]
        default = _picture(fast)
        assert np.array_equal(default, _picture(fast, steps=mode.steps, guidance=mode.guidance))
        assert not np.array_equal(default, _picture(fast, steps=mode.steps + 2)), kind
    assert sampling(fast) == (8, 0.0, {})
    assert sampling(sdsam_nb.load_sd("tiny", fast="tcd", progress=False)) == (4, 0.0, {"eta": 0.3})
    assert sampling(sdsam_nb.load_sd("tiny", progress=False), guidance=2.0) == (25, 2.0, {})
    # variation i is seed + i
    fast = sdsam_nb.load_sd("tiny", fast="tcd", progress=False)
    first = sdsam_nb.generate(fast, "a red chair", seed=5, n=2, width=64, height=64, cache=False)
    assert first.seeds == [5, 6]
    assert np.array_equal(np.asarray(first[1]), _picture(fast, seed=6))
    # a new process's pipeline (the cache emptied): the same pixels
    MODELS.clear()
    again = sdsam_nb.load_sd("tiny", fast="tcd", progress=False)
    assert again is not fast and np.array_equal(_picture(again, seed=6), np.asarray(first[1]))


@pytest.mark.parametrize("method", [None, "tiny-inpainting"])
def test_inpainting_and_reframing_keep_the_subject(method, models):
    """Own weights (the fast pipeline's modules) and the dedicated 9-channel checkpoint (the
    same LoRA fused into its own UNet): the subject's pixels stay, the plain ones unchanged."""
    plain = sdsam_nb.load_sd("tiny", progress=False)
    fast = sdsam_nb.load_sd("tiny", fast="lcm", progress=False)
    painter, plain_painter = inpainting(fast, method), inpainting(plain, method)
    assert type(painter.scheduler).__name__ == "LCMScheduler"
    assert provenance(painter)["fast"]["name"] == "lcm"
    if method is None:
        assert painter.unet is fast.unet
    else:  # a 9-channel UNet of its own, with the adapter; the plain checkpoint's untouched
        assert painter.unet.config.in_channels == 9 and painter.unet is not plain_painter.unet
        assert painter.text_encoder is fast.text_encoder
        moved = (
            painter.unet.get_submodule(LAYER).weight
            - plain_painter.unet.get_submodule(LAYER).weight
        )
        assert moved.abs().max() > 0.01
    picture, mask = _subject()
    args = {"seed": 1, "size": 64, "feather": 0, "model": method}
    out = sdsam_nb.inpaint_background(fast, picture, mask, "a beach", **args)
    assert np.array_equal(np.asarray(out[0])[mask], np.asarray(picture)[mask])
    assert not np.array_equal(
        np.asarray(out[0]),
        np.asarray(sdsam_nb.inpaint_background(plain, picture, mask, "a beach", **args)[0]),
    )
    frame = {"size": (128, 64), "work_size": 128, "feather": 0, "model": method}
    wide = sdsam_nb.reframe(fast, picture, mask, "a beach", **frame)
    (x0, y0, x1, y1) = wide[0].info["reframe"]["box"]
    placed = np.asarray(wide[0])[y0:y1, x0:x1]
    cut = mask[16:48, 32:64]
    assert np.array_equal(placed[cut], np.asarray(picture)[16:48, 32:64][cut])
    assert type(img2img(fast).scheduler).__name__ == "LCMScheduler"


def test_the_salient_method_refuses_the_adapter(models):
    fast = sdsam_nb.load_sd("tiny", fast="hyper-sd", progress=False)
    picture, mask = _subject()
    with pytest.raises(ValueError, match=r"^the salient method is SD 2 .*fast='hyper-sd'") as err:
        sdsam_nb.inpaint_background(fast, picture, mask, "a beach", size=64, model="salient")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fast": "turbo"}, r"^fast='turbo' is not one of \['lcm', 'tcd', 'hyper-sd'\] or None"),
        ({"fast": ["lcm"]}, r"^fast=\['lcm'\] is not one of"),
        ({"fast": "lcm", "scheduler": "euler_a"}, r"^fast='lcm' samples with scheduler 'lcm'"),
        ({"fast": "tcd", "scheduler": None}, r"^fast='tcd' samples with scheduler 'tcd'"),
    ],
)
def test_a_bad_name_or_sampler_is_one_line(kwargs, message, models):
    with pytest.raises(ValueError, match=message) as err:
        sdsam_nb.load_sd("tiny", progress=False, **kwargs)
    assert "\n" not in str(err.value)
    assert len(MODELS) == 0  # refused before anything loaded


def _sdxl_shaped(folder, *, second_text_encoder: bool) -> None:
    """A LoRA with SDXL's shapes: the cross-attention keys of SDXL (2048 wide) on layers the
    SD v1 UNet has, and (optionally) weights for SDXL's second text encoder."""
    state = {
        f"unet.{LAYER}.lora_A.weight": torch.randn(4, 2048),
        f"unet.{LAYER}.lora_B.weight": torch.randn(64, 4),
    }
    if second_text_encoder:
        key = "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj"
        state[f"{key}.lora_A.weight"] = torch.randn(4, 1280)
        state[f"{key}.lora_B.weight"] = torch.randn(1280, 4)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "pytorch_lora_weights.safetensors"))


@pytest.mark.parametrize(
    ("second_text_encoder", "message"),
    [
        (True, r"holds weights for 'text_encoder_2', which an SD v1 pipeline does not have"),
        (False, r"does not fit this model: unet\.down_blocks\.1\..*to_k \(2048 inputs where"),
    ],
)
def test_an_adapter_for_another_base_model_is_one_line(
    second_text_encoder, message, models, monkeypatch, tmp_path
):
    """A table entry whose adapter is a local folder (as one added for a downloaded adapter
    would be) holding an SDXL-shaped LoRA; the tiny SD loaded from its folder."""
    _sdxl_shaped(tmp_path / "sdxl", second_text_encoder=second_text_encoder)
    entry = replace(FAST["lcm"], adapter=str(tmp_path / "sdxl"), revision="")
    monkeypatch.setitem(FAST, "sdxl", entry)
    model = str(sd_folder(cache_dir() / "tiny"))
    with pytest.raises(ValueError, match=rf"^fast='sdxl': .*{message}") as err:
        sdsam_nb.load_sd(model, fast="sdxl", progress=False)
    assert "\n" not in str(err.value)
    assert not any("fast" in key for key in MODELS.copy())


def test_an_adapter_not_in_the_cache_offline_says_how_to_get_it(models):
    """The model's hub id is not looked at first: the adapter is, and named in one line."""
    with pytest.raises(ModelUnavailableError) as err:
        sdsam_nb.load_sd("CompVis/stable-diffusion-v1-4", fast="lcm", progress=False)
    text = str(err.value)
    assert "\n" not in text and "fast='lcm'" in text
    mode = FAST["lcm"]
    assert f"hf download {mode.adapter} {mode.weight_name} --revision {mode.revision}" in text


def test_the_notebook_parameter_is_checked():
    assert runs.check_params(fast="tcd", steps=None, guidance=None) == {
        "fast": "tcd",
        "steps": None,
        "guidance": None,
    }
    with pytest.raises(ValueError, match=r"^parameter fast must be None \(off\) or one of 'lcm'"):
        runs.check_params(fast="LCM")
    with pytest.raises(ValueError, match="parameter steps must be an integer >= 1, got 0"):
        runs.check_params(steps=0)


@pytest.mark.slow
def test_a_notebook_with_fast_records_the_adapter_and_replays_identically(tmp_path):
    """01 run in this process with fast="lcm" (steps and guidance left to it), then replayed:
    the same pixels (test_cli's plain papermill run gives 04 the parameter in a kernel)."""
    params = {"sd_model": "tiny", "fast": "lcm", "width": 64, "height": 64, "n_variations": 2}
    run = execute_chain(
        ["01_generate_subject"], params, output_root=tmp_path, progress=False, echo=False, here=True
    )
    record = run.record
    assert record["executions"][-1]["params"]["fast"] == "lcm"
    sd = record["models"]["sd"]
    assert sd["fast"]["name"] == "lcm" and sd["fast"]["adapter"] == "tiny"
    assert sd["fast"] == model_info(sdsam_nb.load_sd("tiny", fast="lcm"), "tiny")["fast"]
    assert sd["scheduler"] == "lcm"
    # what the notebook made is what the fast pipeline makes at the adapter's 4 steps
    pipe = sdsam_nb.load_sd("tiny", fast="lcm", progress=False)
    given = record["executions"][-1]["params"]
    expected = sdsam_nb.generate(
        pipe,
        given["subject_prompt"],
        negative_prompt=given["subject_negative"],
        steps=4,
        guidance=1.0,
        width=64,
        height=64,
        cache=False,
    )[0]
    with Image.open(run.file("subject")) as subject:
        assert np.array_equal(np.asarray(subject.convert("RGB")), np.asarray(expected))
    new, comparison = replay(run.path, output_root=tmp_path / "replays", progress=False, here=True)
    assert comparison.identical, comparison
    assert new.record["models"]["sd"]["fast"] == sd["fast"]
