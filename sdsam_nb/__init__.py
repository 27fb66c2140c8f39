"""sdsam-nb: generate a subject with Stable Diffusion, mask it with SAM clicks, give it a new background."""

from .images import to_mask, to_rgb
from .loaders import (
    DEFAULT_SD,
    INPAINTING_SD,
    ModelUnavailableError,
    cache_dir,
    clear_loaded,
    device_report,
    img2img,
    in_colab,
    inpainting,
    load_sam,
    load_sd,
    pick_device,
    pick_dtype,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SD",
    "INPAINTING_SD",
    "ModelUnavailableError",
    "cache_dir",
    "clear_loaded",
    "device_report",
    "img2img",
    "in_colab",
    "inpainting",
    "load_sam",
    "load_sd",
    "pick_device",
    "pick_dtype",
    "to_mask",
    "to_rgb",
]
