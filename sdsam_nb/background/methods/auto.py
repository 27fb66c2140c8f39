"""``model="auto"``: the background method a user gets without choosing one: on a GPU the
dedicated inpainting checkpoint (it blends the new background with its surroundings better;
one more UNet, sharing the rest), on the CPU the text-to-image model's own weights (no second
UNet to load and hold). Why: ``docs/models.md``.
"""

from __future__ import annotations

import torch

from ...models import INPAINTING_SD, TINY, provenance

AUTO = "auto"
TINY_INPAINTING = "tiny-inpainting"


def auto_model(pipe) -> str | None:
    """The ``model=`` that ``"auto"`` stands for with the text-to-image ``pipe``: a dedicated
    inpainting checkpoint on a GPU (the tiny one with the tiny ``pipe``), ``None`` (the
    pipeline's own weights) on the CPU."""
    info = provenance(pipe)
    device = info.get("offload_device") or next(iter(pipe.unet.parameters())).device
    if torch.device(device).type == "cpu":
        return None
    return TINY_INPAINTING if info.get("model") == TINY else INPAINTING_SD
