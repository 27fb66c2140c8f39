"""The tiny replica of ``yahoo-inc/photo-background-generation`` (random weights), written by
diffusers' own ``save_pretrained`` in the real checkpoint's folder layout. It keeps a 9-channel
SD 2 inpainting UNet (linear attention projections), a ControlNet taking those same 9 channels
with a 3-channel conditioning picture downsampled 8x, a GELU CLIP text encoder with a tokenizer
padding with ``"!"`` (SD 2's OpenCLIP) and a UniPC scheduler predicting the noise.
"""

from __future__ import annotations

from pathlib import Path

from .build import build_folder, saved
from .sd import tiny_clip, tiny_vae

SALIENT_RECIPE = "salient-tiny-r1"


def _build_salient_pipeline():
    from diffusers import (
        ControlNetModel,
        StableDiffusionControlNetInpaintPipeline,
        UNet2DConditionModel,
        UniPCMultistepScheduler,
    )
    from transformers import CLIPImageProcessor

    blocks = {
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "cross_attention_dim": 32,
        "attention_head_dim": (2, 4),
        "norm_num_groups": 16,
        "use_linear_projection": True,  # as SD 2
    }
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=9,  # latents + mask + masked-picture latents
        out_channels=4,
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **blocks,
    )
    controlnet = ControlNetModel(
        in_channels=9,  # the real one is initialised from the inpainting UNet: 9 channels in
        conditioning_channels=3,
        conditioning_embedding_out_channels=(4, 8, 8, 16),  # three stride-2 steps: 8x
        **blocks,
    )
    vae = tiny_vae()
    # SD 2's OpenCLIP text encoder: GELU, padding with "!"
    tokenizer, text_encoder = tiny_clip({"pad_token": "!"}, hidden_act="gelu")
    scheduler = UniPCMultistepScheduler(  # the checkpoint's sampler on SD 2's noise schedule
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        prediction_type="epsilon",
        steps_offset=1,
    )
    return StableDiffusionControlNetInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        controlnet=controlnet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}),
        requires_safety_checker=False,
    )


def salient_folder(root: Path) -> Path:
    """Return the tiny salient-ControlNet folder under ``root``, building it on first use (~1 s)."""
    return build_folder(
        Path(root) / SALIENT_RECIPE, "model_index.json", saved(_build_salient_pipeline)
    )
