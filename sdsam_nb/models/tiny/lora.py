"""Tiny few-step LoRAs for the tiny SD (``"tiny"``), one per kind of
:data:`sdsam_nb.models.fast.FAST`, so that ``load_sd("tiny", fast="lcm")`` loads one offline
through the real ``lora_state_dict`` / ``load_lora_weights`` path: peft adapters on the UNet's
:data:`TARGETS`, filled with seeded random numbers (peft starts ``lora_B`` at zero, which would
change nothing), written with diffusers' ``save_lora_weights`` under the real file name.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..cache import loading_bars
from .build import SEED, build_folder
from .sd import sd_folder

LORA_RECIPE = "sd-v1-lora-tiny-r1"

# the UNet layers the tiny adapters change (peft's target_modules: names' last parts)
TARGETS = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "proj_in",
    "proj_out",
    "ff.net.0.proj",
    "ff.net.2",
    "conv1",
    "conv2",
    "time_emb_proj",
)


def _write_lora(folder: Path, sd: Path, kind: str, weight_name: str) -> None:
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    with loading_bars(False):
        unet = UNet2DConditionModel.from_pretrained(sd, subfolder="unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=list(TARGETS)))
    # one seed per kind: each kind's adapter is another one, as the real ones are
    generator = torch.Generator().manual_seed(SEED + sum(kind.encode()))
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if ".lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    layers = get_peft_model_state_dict(unet)
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=layers, weight_name=weight_name, safe_serialization=True
    )


def lora_folder(root: Path, kind: str, weight_name: str, *, sd: Path | None = None) -> Path:
    """The folder ``root / LORA_RECIPE / kind`` holding a random rank-4 ``kind`` adapter as
    ``weight_name`` (the real adapter's file name), built on first use (~1 s for the tiny
    SD). ``sd``: the SD pipeline folder whose UNet it is for (default: the tiny SD under
    ``root``); another ``sd`` needs another ``root``."""
    sd = sd_folder(root) if sd is None else Path(sd)
    return build_folder(
        Path(root) / LORA_RECIPE / kind,
        weight_name,
        lambda tmp: _write_lora(tmp, sd, kind, weight_name),
    )
