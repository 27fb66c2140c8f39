"""The tiny Stable Diffusion v1 pipelines: text-to-image (``"tiny"``) and the 9-channel
inpainting checkpoint (``"tiny-inpainting"``), and the parts the other tiny diffusion models
share: the byte-level CLIP vocabulary, text encoder and VAE.

The recipe keeps the real v1 geometry where it matters: a VAE that downsamples 8x (latents
are ``H/8 x W/8``, 4 channels), a UNet with cross-attention on the text encoder's states, a
CLIP tokenizer (byte-level BPE) and the v1-4 PNDM scheduler config.
"""

from __future__ import annotations

import json
import tempfile
from functools import partial
from pathlib import Path

import torch

from ..cache import loading_bars
from .build import SEED, build_folder, saved

SD_RECIPE = "sd-v1-tiny-r1"
SD_INPAINTING_RECIPE = "sd-v1-inpainting-tiny-r1"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-to-symbol table: printable bytes map to themselves, others above 255."""
    keep = {*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    extra = iter(range(256, 512))
    return {b: chr(b) if b in keep else chr(next(extra)) for b in range(256)}


# A few merges so that common words in our prompts become single tokens, like real CLIP.
_MERGES = ["t h", "th e</w>", "a n", "an d</w>", "o n</w>", "i n", "e r</w>", "o f</w>"]


def write_clip_vocab(folder: Path) -> None:
    """Write a byte-level CLIP ``vocab.json`` and ``merges.txt`` into ``folder``."""
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(m.split()) for m in _MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges = "#version: 0.2\n" + "\n".join(_MERGES) + "\n"
    (folder / "merges.txt").write_text(merges, encoding="utf-8")


def tiny_vae():
    """An ``AutoencoderKL`` with four levels (8x downsampling, 4 latent channels, as SD v1)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=512,
    )


def tiny_clip(tokenizer_kwargs: dict | None = None, **config):
    """``(tokenizer, text_encoder)``: the byte-level CLIP tokenizer (77 tokens) and a 2-layer,
    32-wide ``CLIPTextModel``; ``config`` overrides the text encoder's config."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_clip_vocab(Path(tmp))
        # from_pretrained reads vocab.json + merges.txt the same way in transformers 4 and 5
        tokenizer = CLIPTokenizer.from_pretrained(
            tmp, model_max_length=77, **(tokenizer_kwargs or {})
        )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=1000,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **config,
        )
    )
    return tokenizer, text_encoder


def _build_sd_pipeline():
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=64,  # 64 latents = 512 px, the v1 default size
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=16,
    )
    vae = tiny_vae()
    tokenizer, text_encoder = tiny_clip()
    scheduler = PNDMScheduler(  # the scheduler config of CompVis/stable-diffusion-v1-4
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def sd_folder(root: Path) -> Path:
    """Return the tiny SD pipeline folder under ``root``, building it on first use (~1 s)."""
    return build_folder(Path(root) / SD_RECIPE, "model_index.json", saved(_build_sd_pipeline))


def _build_sd_inpainting_pipeline(root: Path):
    """The tiny dedicated inpainting checkpoint: a 9-channel UNet (latents, mask, masked
    picture) of its own, with the text encoder, tokenizer and VAE of the tiny SD under
    ``root``, as the real SD 1.5 inpainting checkpoint shares SD v1's CLIP text encoder and VAE
    weights."""
    from diffusers import (
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    with loading_bars(False):
        text_to_image = StableDiffusionPipeline.from_pretrained(sd_folder(root))
    torch.manual_seed(SEED + 1)
    config = {**dict(text_to_image.unet.config), "in_channels": 9}
    unet = UNet2DConditionModel.from_config(config)
    return StableDiffusionInpaintPipeline(
        vae=text_to_image.vae,
        text_encoder=text_to_image.text_encoder,
        tokenizer=text_to_image.tokenizer,
        unet=unet,
        scheduler=text_to_image.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def sd_inpainting_folder(root: Path) -> Path:
    """Return the tiny inpainting checkpoint's folder under ``root`` (``"tiny-inpainting"``),
    building it on first use from the tiny SD folder's own components."""
    build = partial(_build_sd_inpainting_pipeline, root)
    return build_folder(Path(root) / SD_INPAINTING_RECIPE, "model_index.json", saved(build))
