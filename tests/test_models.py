"""The loaders, on the built-in tiny models: the same code path as real weights."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

import sdsam_nb
from sdsam_nb import models
from sdsam_nb.models import tiny


def _pixels(pipe, seed=0, **kw):
    out = pipe(
        "a red ball",
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )
    return np.asarray(out.images[0])


def test_tiny_sd_loads_and_runs_deterministically(tiny_sd):
    assert type(tiny_sd).__name__ == "StableDiffusionPipeline"
    assert tiny_sd.device.type == "cpu"
    assert tiny_sd.unet.dtype == sdsam_nb.pick_dtype(tiny_sd.device)  # fp32, or bf16 (test_dtype)
    assert tiny_sd.vae_scale_factor == 8  # the real SD v1 geometry
    a, b, c = _pixels(tiny_sd, 1), _pixels(tiny_sd, 1), _pixels(tiny_sd, 2)
    assert a.shape == (64, 64, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_loading_is_cached_per_process(tiny_sd):
    again = sdsam_nb.load_sd("tiny", progress=False)
    assert again is tiny_sd
    noisy = sdsam_nb.load_sd("tiny", progress=True)  # progress bars: no reload, and the
    assert noisy is not tiny_sd and noisy.unet is tiny_sd.unet  # quiet pipe stays quiet
    assert sdsam_nb.load_sd("tiny", progress=True) is noisy
    assert sdsam_nb.provenance(noisy)["progress"] is True
    assert sdsam_nb.provenance(tiny_sd)["progress"] is False
    assert sdsam_nb.provenance(tiny_sd)["model"] == "tiny"


def test_tiny_is_saved_in_the_standard_format():
    folder = tiny.sd_folder(sdsam_nb.cache_dir() / "tiny")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for part in ("unet", "vae", "text_encoder"):
        assert list((folder / part).glob("*.safetensors")), part
    assert {"tokenizer.json", "vocab.json"} & {p.name for p in (folder / "tokenizer").iterdir()}
    assert tiny.sam_checkpoint(sdsam_nb.cache_dir() / "tiny").suffix == ".pth"


def test_inpainting_and_img2img_share_the_weights(tiny_sd):
    inp = sdsam_nb.inpainting(tiny_sd)
    i2i = sdsam_nb.img2img(tiny_sd)
    assert type(inp).__name__ == "StableDiffusionInpaintPipeline"
    assert type(i2i).__name__ == "StableDiffusionImg2ImgPipeline"
    for other in (inp, i2i):
        for name in ("unet", "vae", "text_encoder"):
            mine = dict(getattr(tiny_sd, name).named_parameters())
            theirs = dict(getattr(other, name).named_parameters())
            assert all(mine[k].data_ptr() == theirs[k].data_ptr() for k in mine), name
        assert other.scheduler is tiny_sd.scheduler
    image = Image.new("RGB", (64, 64), (200, 20, 20))
    mask = Image.new("L", (64, 64), 255)
    out = inp(
        "a room",
        image=image,
        mask_image=mask,
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert out.size == (64, 64)
    out = i2i(
        "a room",
        image=image,
        num_inference_steps=2,
        strength=0.5,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert out.size == (64, 64)


def test_sharing_keeps_an_fp16_pipe_in_fp16():
    """diffusers' from_pipe casts to float32 unless told otherwise: the shared weights stay."""
    half = sdsam_nb.load_sd("tiny", dtype="float16", device="cpu", progress=False)
    sdsam_nb.inpainting(half)
    sdsam_nb.img2img(half)
    assert half.unet.dtype == half.vae.dtype == half.text_encoder.dtype == torch.float16


def test_offload_needs_a_gpu_and_flags_are_checked():
    with pytest.raises(ValueError, match="offload=True needs a GPU"):
        sdsam_nb.load_sd("tiny", device="cpu", offload=True)
    with pytest.raises(ValueError, match="compile_unet must be True or False"):
        sdsam_nb.load_sd("tiny", device="cpu", compile_unet="yes")
    # "no" is truthy: it would have kept the safety checker on (and the bars) silently
    for flag in ("safety_checker", "progress"):
        with pytest.raises(ValueError, match=f"{flag} must be True or False, not 'no'"):
            sdsam_nb.load_sd("tiny", device="cpu", **{flag: "no"})
    for name in ("revision", "variant"):
        with pytest.raises(ValueError, match=f"{name} must be a non-empty string or None"):
            sdsam_nb.load_sd("tiny", device="cpu", **{name: 3})


def test_pipelines_of_an_offloaded_pipe_are_offloaded_and_share(tiny_sd):
    """diffusers' model offload installed with the CPU as the "GPU" (the hooks are the same).

    A pipeline built from an offloaded one gets its own hooks on the shared modules, so each
    runs, both stay offloaded, and the pixels equal those of the resident pipeline.
    """
    from diffusers import StableDiffusionPipeline

    folder = tiny.sd_folder(sdsam_nb.cache_dir() / "tiny")
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    pipe.to(tiny_sd.dtype)  # load_sd's automatic dtype (float32, or bfloat16: tests/test_dtype)
    pipe.scheduler = models.make_scheduler("dpm++", pipe)  # load_sd's default sampler
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_model_cpu_offload(device="cpu")
    inp, i2i = sdsam_nb.inpainting(pipe), sdsam_nb.img2img(pipe)
    for other in (inp, i2i):
        assert other._all_hooks and other._offload_device == pipe._offload_device
        assert other.unet.conv_in.weight.data_ptr() == pipe.unet.conv_in.weight.data_ptr()
    assert np.array_equal(_pixels(pipe, 3), _pixels(tiny_sd, 3))
    image = Image.new("RGB", (64, 64), (200, 20, 20))
    mask = Image.new("L", (64, 64), 255)
    kw = {"image": image, "mask_image": mask}
    offloaded = _pixels(inp, 4, **kw)
    assert np.array_equal(offloaded, _pixels(sdsam_nb.inpainting(tiny_sd), 4, **kw))
    assert _pixels(pipe, 3).shape == (64, 64, 3)  # the first pipeline still runs after


@pytest.mark.slow
def test_compiled_unet_runs_and_matches_eager(tiny_sd):
    """torch.compile in place (inductor on the CPU here: about 40 s to compile), in float32
    (the tolerance below is float32's, whatever the CPU's automatic dtype)."""
    compiled = sdsam_nb.load_sd("tiny", dtype="float32", progress=False, compile_unet=True)
    assert compiled is not tiny_sd and compiled.unet._compiled_call_impl is not None
    assert sdsam_nb.load_sd("tiny", dtype="float32", progress=False, compile_unet=True) is compiled
    eager = sdsam_nb.load_sd("tiny", dtype="float32", progress=False)
    fast, eager = _pixels(compiled, 5), _pixels(eager, 5)
    assert fast.shape == eager.shape == (64, 64, 3)
    assert np.abs(fast.astype(int) - eager).max() <= 2  # compiled kernels round differently
    inp = sdsam_nb.inpainting(compiled)
    assert inp.unet is compiled.unet


def test_device_and_dtype_choice(monkeypatch):
    monkeypatch.setattr(models.devices, "cpu_flags", frozenset)  # no native bf16: tests/test_dtype
    cpu = sdsam_nb.pick_device("cpu")
    assert cpu.type == "cpu" and sdsam_nb.pick_dtype(cpu) == torch.float32
    assert sdsam_nb.pick_dtype(torch.device("cuda")) == torch.float16
    assert sdsam_nb.pick_dtype(cpu, "float16") == torch.float16
    with pytest.raises(ValueError, match="dtype"):
        sdsam_nb.pick_dtype(cpu, "float99")
    with pytest.raises(ValueError, match="device"):
        sdsam_nb.pick_device("gpu-please")
    with pytest.raises(ValueError, match="device='meta' holds no data"):
        sdsam_nb.pick_device("meta")
    # a GPU this machine does not have is named, not left to fail deep inside torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for missing in ("cuda", 0, "cuda:1"):
        with pytest.raises(ValueError, match="torch finds no CUDA GPU here"):
            sdsam_nb.pick_device(missing)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert sdsam_nb.pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="this machine has 1 CUDA GPU"):
        sdsam_nb.pick_device("cuda:1")
    report = sdsam_nb.device_report("cpu")
    assert report["device"] == "cpu" and report["dtype"] == "float32"
    assert report["colab"] is False and report["gpu"] is None


def test_unknown_hub_id_gives_one_short_error():
    start = time.perf_counter()
    with pytest.raises(sdsam_nb.ModelUnavailableError, match="nobody/no-such-model") as info:
        sdsam_nb.load_sd("nobody/no-such-model")
    assert time.perf_counter() - start < 30
    message = str(info.value)
    assert "hf download" in message and "'tiny'" in message and "HF_HUB_OFFLINE" in message
    assert info.value.__suppress_context__  # no chained traceback from deep inside
    with pytest.raises(ValueError, match="neither an existing folder nor a hub id"):
        sdsam_nb.load_sd("not a model")
    with pytest.raises(ValueError, match="no model_index.json"):
        sdsam_nb.load_sd(str(sdsam_nb.cache_dir()))


def test_tiny_sam_predicts(tiny_sam):
    image = np.zeros((120, 200, 3), np.uint8)
    tiny_sam.set_image(image)
    masks, scores, logits = tiny_sam.predict(
        point_coords=np.array([[100, 60]]), point_labels=np.array([1])
    )
    assert masks.shape == (3, 120, 200) and masks.dtype == bool and scores.shape == (3,)
    assert sdsam_nb.load_sam("tiny").model is tiny_sam.model  # the model is loaded once


def _official_named(tmp_path, state, model_type="tiny"):
    path = tmp_path / "raw.pth"
    torch.save(state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    named = tmp_path / f"sam_{model_type}_{digest[:6]}.pth"
    path.rename(named)
    return named, digest


def test_sam_checkpoint_of_another_type_is_a_clear_error(tmp_path):
    state = torch.load(tiny.sam_checkpoint(sdsam_nb.cache_dir() / "tiny"), weights_only=True)
    path = tmp_path / "my_sam.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"does not match model_type='vit_b'.*'tiny'"):
        sdsam_nb.load_sam("vit_b", checkpoint=path)
    assert sdsam_nb.load_sam("tiny", checkpoint=path).model is not None
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a SAM state dict"):
        sdsam_nb.load_sam("tiny", checkpoint=junk)
    with pytest.raises(FileNotFoundError, match="no such file"):
        sdsam_nb.load_sam("vit_b", checkpoint=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="model_type"):
        sdsam_nb.load_sam("vit_x")
    with pytest.raises(ValueError, match="checkpoint must be a file path or None, not 3"):
        sdsam_nb.load_sam("vit_b", checkpoint=3)
    with pytest.raises(ValueError, match="revision must be a non-empty string or None"):
        sdsam_nb.load_sam("tiny", revision=3)


def test_sam_file_whose_hash_does_not_match_its_name_is_rejected(tmp_path):
    state = torch.load(tiny.sam_checkpoint(sdsam_nb.cache_dir() / "tiny"), weights_only=True)
    named, digest = _official_named(tmp_path, state)
    bad = named.with_name(f"sam_tiny_{'0' if digest[0] != '0' else '1'}{digest[1:6]}.pth")
    named.rename(bad)
    with pytest.raises(ValueError, match="corrupt or not the official file"):
        sdsam_nb.load_sam("tiny", checkpoint=bad)


def test_sam_download_is_verified_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    """The official download path, served from a file:// URL (no network here)."""
    cache = tmp_path / "cache"
    server = tmp_path / "server"
    server.mkdir()
    monkeypatch.setenv("SDSAM_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("SDSAM_SAM_URL", server.as_uri())
    state = torch.load(tiny.sam_checkpoint(tmp_path / "t"), weights_only=True)
    good, _ = _official_named(server, state)
    # a file whose contents do not match the official name's hash: rejected, nothing kept
    monkeypatch.setitem(models.SAM_CHECKPOINTS, "vit_b", "sam_vit_b_01ec64.pth")
    (server / "sam_vit_b_01ec64.pth").write_bytes(good.read_bytes())
    with pytest.raises(ValueError, match="sha256"):
        models.sam_checkpoint_path("vit_b")
    assert not (cache / "sam").exists() or not any((cache / "sam").iterdir())
    # the right file is downloaded once, kept, and found again without downloading
    monkeypatch.setitem(models.SAM_CHECKPOINTS, "vit_b", good.name)
    path = models.sam_checkpoint_path("vit_b")
    assert path == cache / "sam" / good.name and path.read_bytes() == good.read_bytes()
    good.unlink()
    assert models.sam_checkpoint_path("vit_b") == path
    # missing and no network: the short error
    monkeypatch.setitem(models.SAM_CHECKPOINTS, "vit_l", "sam_vit_l_0b3195.pth")
    with pytest.raises(sdsam_nb.ModelUnavailableError, match="checkpoint="):
        models.sam_checkpoint_path("vit_l")
    assert not (cache / "sam" / "sam_vit_l_0b3195.pth").exists()


def test_default_sampler_is_dpm_solver_and_switches_without_reloading(tiny_sd):
    from diffusers import (
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        PNDMScheduler,
    )

    unet = tiny_sd.unet
    assert isinstance(tiny_sd.scheduler, DPMSolverMultistepScheduler)
    # built from the model's own scheduler config: the same noise schedule
    own = sdsam_nb.provenance(tiny_sd)["own_scheduler"]
    assert isinstance(own, PNDMScheduler)
    for key in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps"):
        assert tiny_sd.scheduler.config[key] == own.config[key], key
    assert sdsam_nb.provenance(tiny_sd)["scheduler"] == "dpm++"
    assert sdsam_nb.inpainting(tiny_sd).scheduler is tiny_sd.scheduler
    dpm = _pixels(tiny_sd, 1)

    euler = sdsam_nb.load_sd("tiny", progress=False, scheduler="euler_a")
    assert euler is not tiny_sd and euler.unet is unet  # the same weights, not reloaded
    assert isinstance(euler.scheduler, EulerAncestralDiscreteScheduler)
    assert isinstance(tiny_sd.scheduler, DPMSolverMultistepScheduler)  # held pipe unchanged
    assert sdsam_nb.img2img(euler).scheduler is euler.scheduler
    assert not np.array_equal(_pixels(euler, 1), dpm)
    assert sdsam_nb.load_sd("tiny", progress=False, scheduler="euler_a") is euler

    model_own = sdsam_nb.load_sd("tiny", progress=False, scheduler=None)
    assert model_own.scheduler is own and sdsam_nb.provenance(model_own)["scheduler"] is None
    assert np.array_equal(_pixels(tiny_sd, 1), dpm)  # the same sampler, the same pixels
    with pytest.raises(ValueError, match="scheduler='k_lms' is not one of"):
        sdsam_nb.load_sd("tiny", scheduler="k_lms")
