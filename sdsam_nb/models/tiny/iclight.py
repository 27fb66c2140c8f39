"""Tiny IC-Light offsets for the tiny SD (``"tiny"``): the two files of ``lllyasviel/ic-light``
that :func:`sdsam_nb.relight` reads (:mod:`sdsam_nb.models.iclight` says what they hold), under
the real names and layout, so that ``relight`` on the tiny pipeline reads, checks and merges
them as the real ones. Seeded random float16 numbers, larger on ``conv_in`` so that the
condition changes the tiny model's pictures (noise, as every tiny model's are).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..cache import loading_bars
from .build import SEED, build_folder
from .sd import sd_folder

ICLIGHT_RECIPE = "iclight-tiny-r1"
ICLIGHT_FILES = {"iclight_sd15_fc.safetensors": 8, "iclight_sd15_fbc.safetensors": 12}
"""The hub's file names and the UNet input channels each one's ``conv_in`` takes."""


def iclight_offsets(config: dict, channels: int, seed: int) -> dict[str, torch.Tensor]:
    """Seeded random offsets (float16) for a UNet of ``config`` with ``in_channels`` set to
    ``channels``: one per tensor of its state dict, each of that tensor's shape."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):  # shapes only: nothing is allocated
        unet = UNet2DConditionModel.from_config({**dict(config), "in_channels": channels})
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, tensor in unet.state_dict().items():
        scale = 0.05 if name.startswith("conv_in.") else 0.005
        out[name] = (torch.randn(tensor.shape, generator=generator) * scale).half()
    return out


def _write(folder: Path, sd: Path) -> None:
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    with loading_bars(False):
        config = UNet2DConditionModel.load_config(sd, subfolder="unet")
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, channels) in enumerate(ICLIGHT_FILES.items()):
        save_file(iclight_offsets(config, channels, SEED + 10 + i), folder / name)


def iclight_folder(root: Path, *, sd: Path | None = None) -> Path:
    """The folder ``root / ICLIGHT_RECIPE`` holding both tiny offset files under the hub's
    names (:data:`ICLIGHT_FILES`), built on first use (well under a second). ``sd``: the SD
    pipeline folder whose UNet they are for (default: the tiny SD under ``root``); another
    ``sd`` needs another ``root``."""
    sd = sd_folder(root) if sd is None else Path(sd)
    last = list(ICLIGHT_FILES)[-1]
    return build_folder(Path(root) / ICLIGHT_RECIPE, last, lambda tmp: _write(tmp, sd))
