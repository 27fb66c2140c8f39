"""Full-size model architectures with random weights (no download), for honest timings.

SD v1-4 (:func:`sd_v14_folder`) is built from its *published* configs and saved once as a
diffusers folder in fp16 under ``sdsam_nb.cache_dir()/bench/``, loaded through the ordinary
``from_pretrained`` code; the tokenizer is the kit's small byte-level vocabulary. SAM
(:func:`build_sam`) comes from segment-anything's own builders with ``checkpoint=None``, the
``vit_b`` folder the notebooks load (:func:`sam_vit_b_folder`) from transformers' ``SamConfig()``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from sdsam_nb.models.tiny import SEED, build_folder
from sdsam_nb.models.tiny.build import saved

from .harness import log, quiet

RECIPE = "sd-v1-4-arch-random-fp16-r1"
INPAINTING_RECIPE = "sd-v1-inpainting-arch-random-fp16-r1"
SAM_RECIPE = "sam-vit-base-arch-random-r2"  # r2: SamModel(SamConfig()), no conversion

# CompVis/stable-diffusion-v1-4's published configs, each without the keys where it equals the
# class' default: diffusers' UNet2DConditionModel defaults are SD v1's UNet but for these two.
UNET_CONFIG = {"sample_size": 64, "cross_attention_dim": 768}
VAE_CONFIG = {
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "sample_size": 512,
}
# openai/clip-vit-large-patch14's text_config (what SD v1-4's text_encoder/config.json holds)
TEXT_CONFIG = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "projection_dim": 768,
    "num_attention_heads": 12,
}
SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "skip_prk_steps": True,
    "steps_offset": 1,
}


def _bench() -> Path:
    from sdsam_nb import cache_dir

    return cache_dir() / "bench"


def _sd_v14():
    """The SD v1-4 pipeline: its published architecture, random fp16 weights."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline
    from diffusers import UNet2DConditionModel as UNet
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from sdsam_nb.models.tiny import write_clip_vocab

    with tempfile.TemporaryDirectory() as tmp:
        write_clip_vocab(Path(tmp))
        tokenizer = CLIPTokenizer.from_pretrained(tmp, model_max_length=77)
    ids = {f"{k}_token_id": getattr(tokenizer, f"{k}_token_id") for k in ("bos", "eos", "pad")}
    with quiet():  # .to(fp16) warns about an empty "keep in fp32" list
        unet = UNet(**UNET_CONFIG).to(torch.float16)
        vae = AutoencoderKL(**VAE_CONFIG).to(torch.float16)
        text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG, **ids)).to(torch.float16)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def sd_v14_folder() -> Path:
    """The saved full-size SD v1-4 folder (random fp16 weights) under
    ``sdsam_nb.cache_dir() / "bench"``, built on first use: about a minute on 2 CPU cores."""
    final = _bench() / RECIPE
    if not (final / "model_index.json").is_file():
        log(f"building full-size SD v1-4 (random weights, fp16) into {final} (once, ~2.1 GB)")
    return build_folder(final, "model_index.json", saved(_sd_v14))


def sd_inpainting_folder(quick: bool = False) -> Path:
    """A dedicated inpainting checkpoint: the kit's tiny one (``quick``) or a full-size one
    (random fp16 weights), built on first use: a 9-channel UNet of its own and, hard-linked
    from :func:`sd_v14_folder`, the same text encoder, tokenizer, VAE and scheduler files, as
    SD 1.5 inpainting shares SD v1's CLIP text encoder and VAE. About 1.7 GB more on disk."""
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    from sdsam_nb import cache_dir
    from sdsam_nb.models import tiny

    if quick:
        return tiny.sd_inpainting_folder(cache_dir() / "tiny")
    base, final = sd_v14_folder(), _bench() / INPAINTING_RECIPE

    def write(folder: Path) -> None:
        log(f"building a full-size 9-channel inpainting UNet (random, fp16) into {final}")
        for sub in ("text_encoder", "tokenizer", "vae", "scheduler"):
            shutil.copytree(base / sub, folder / sub, copy_function=os.link)
        torch.manual_seed(SEED + 1)
        unet = UNet2DConditionModel(**{**UNET_CONFIG, "in_channels": 9}).to(torch.float16)
        unet.save_pretrained(folder / "unet", safe_serialization=True)
        index = json.loads((base / "model_index.json").read_text())
        index["_class_name"] = StableDiffusionInpaintPipeline.__name__
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))

    return build_folder(final, "model_index.json", write)


def sd_folder(quick: bool) -> Path:
    """The SD folder a benchmark loads: the kit's tiny one (``quick``) or :func:`sd_v14_folder`."""
    from sdsam_nb import cache_dir
    from sdsam_nb.models import tiny

    return tiny.sd_folder(cache_dir() / "tiny") if quick else sd_v14_folder()


def build_sam(model_type: str, device: torch.device | str = "cpu"):
    """A SAM model (random weights for vit_*, the built-in weights for ``"tiny"``), in eval mode."""
    import warnings

    if model_type == "tiny":
        import sdsam_nb

        return sdsam_nb.load_sam("tiny", device=device).model
    from segment_anything import sam_model_registry

    if model_type not in sam_model_registry or model_type == "default":
        raise ValueError(f"model_type={model_type!r} is not one of vit_b, vit_l, vit_h, tiny")
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(SEED)
        sam = sam_model_registry[model_type](checkpoint=None)
    return sam.to(device).eval()


def sam_vit_b_folder() -> Path:
    """transformers' ``SamModel`` at ``facebook/sam-vit-base``'s architecture (vit_b), random
    weights seeded as the segmenters benchmark's ``sam-vit-base`` (:func:`segmenters.hf_sam`),
    saved with its processor as a folder that ``sdsam_nb.load_sam`` and the notebooks'
    ``sam_model`` load: the name ``"vit_b"`` means the official file, checked against the sha256
    in its name, which random weights cannot match. Built once (~0.4 GB)."""
    import transformers

    from .segmenters import hf_sam

    # as sdsam_nb.models.tiny.hf_sam_folder: transformers 5's processor_config.json is not 4.x's
    final = _bench() / f"{SAM_RECIPE}-transformers{transformers.__version__.split('.')[0]}"
    if not (final / "config.json").is_file():
        log(f"writing SAM vit_b (random weights) as a transformers folder into {final} (once)")
    return build_folder(final, "config.json", saved(hf_sam))


def dir_size_gb(folder: Path) -> float:
    """Total size of the files under ``folder`` in GB (10**9 bytes)."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 1e9


if __name__ == "__main__":  # python -m benchmarks.fullsize: build the folder ahead of time
    with quiet():
        folder = sd_v14_folder()
    print(folder, f"{dir_size_gb(folder):.2f} GB")
