"""``model="auto"``: the background method a user gets without choosing one.

On a GPU (CUDA or Apple MPS) a dedicated inpainting checkpoint,
``stable-diffusion-v1-5/stable-diffusion-inpainting``: its 9-channel UNet sees the mask and
the masked picture, and diffusers' inpainting guide shows it blending the new background
with its surroundings better than a text-to-image UNet driven by latent blending. It shares
the loaded SD v1 pipeline's text encoder, tokenizer and VAE (the same weights), so it costs
one more UNet (about 1.7 GB in fp16).

On the CPU the text-to-image model's own weights: no second UNet (3.4 GB in fp32) to hold
and load on a machine where memory and time are already the limit.

With the built-in tiny text-to-image model, the GPU choice is the tiny inpainting checkpoint.
"""

from __future__ import annotations

import torch

from ...models import INPAINTING_SD, TINY, provenance

AUTO = "auto"
TINY_INPAINTING = "tiny-inpainting"


def auto_model(pipe) -> str | None:
    """The ``model=`` that ``"auto"`` stands for with the text-to-image ``pipe``: a dedicated
    inpainting checkpoint on a GPU, ``None`` (the pipeline's own weights) on the CPU."""
    info = provenance(pipe)
    device = info.get("offload_device") or next(iter(pipe.unet.parameters())).device
    if torch.device(device).type == "cpu":
        return None
    return TINY_INPAINTING if info.get("model") == TINY else INPAINTING_SD
