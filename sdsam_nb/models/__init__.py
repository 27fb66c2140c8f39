"""Models: devices, the per-process cache, samplers, and the loaders of Stable Diffusion,
Segment Anything, Grounding DINO, SAM 3 and ViTMatte, each taking a real model or ``"tiny"``
(:mod:`.tiny`). What each module holds: ``docs/architecture.md``.
"""

from . import tiny
from .cache import (
    MODELS,
    TINY,
    ModelCache,
    ModelUnavailableError,
    cache_dir,
    clear_loaded,
    provenance,
    sha256_file,
)
from .detectors import DEFAULT_GROUNDING_DINO, GroundingDinoDetector, load_grounding_dino
from .devices import device_report, in_colab, pick_device, pick_dtype
from .matting import DEFAULT_VITMATTE, VitMatte, load_vitmatte
from .sam import SAM_CHECKPOINTS, load_sam, sam_checkpoint_path
from .sam3 import DEFAULT_SAM3, Sam3TextSegmenter, load_sam3
from .schedulers import DEFAULT_SCHEDULER, SCHEDULERS, make_scheduler
from .sd import DEFAULT_SD, INPAINTING_SD, img2img, inpainting, load_sd

__all__ = [
    "DEFAULT_GROUNDING_DINO",
    "DEFAULT_SCHEDULER",
    "DEFAULT_SAM3",
    "DEFAULT_SD",
    "INPAINTING_SD",
    "MODELS",
    "SAM_CHECKPOINTS",
    "SCHEDULERS",
    "TINY",
    "GroundingDinoDetector",
    "ModelCache",
    "ModelUnavailableError",
    "Sam3TextSegmenter",
    "cache_dir",
    "clear_loaded",
    "device_report",
    "img2img",
    "in_colab",
    "inpainting",
    "load_grounding_dino",
    "load_sam",
    "load_sam3",
    "load_vitmatte",
    "DEFAULT_VITMATTE",
    "VitMatte",
    "load_sd",
    "make_scheduler",
    "pick_device",
    "pick_dtype",
    "provenance",
    "sam_checkpoint_path",
    "sha256_file",
    "tiny",
]
