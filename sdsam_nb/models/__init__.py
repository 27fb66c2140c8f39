"""Models: devices, the per-process cache, samplers, and the loaders of Stable Diffusion,
Segment Anything, Grounding DINO, SAM 3 and ViTMatte, each taking a real model or ``"tiny"``
(:mod:`.tiny`). What each module holds: ``docs/architecture.md``.

The names below load on first use (PEP 562), as the package's own do: importing one light
module of this package (``.cache``, ``.identity``, ``.schedulers``) does not import torch or
diffusers, which the command line does not need.
"""

from ..lazy import lazy_names

# where each public name is defined
_DEFINED_IN = {
    "MODELS": ".cache",
    "TINY": ".cache",
    "ModelCache": ".cache",
    "ModelUnavailableError": ".cache",
    "cache_dir": ".cache",
    "clear_loaded": ".cache",
    "provenance": ".cache",
    "sha256_file": ".cache",
    "DEFAULT_GROUNDING_DINO": ".detectors",
    "GroundingDinoDetector": ".detectors",
    "load_grounding_dino": ".detectors",
    "device_report": ".devices",
    "in_colab": ".devices",
    "pick_device": ".devices",
    "pick_dtype": ".devices",
    "DEFAULT_VITMATTE": ".matting",
    "VitMatte": ".matting",
    "load_vitmatte": ".matting",
    "SAM_CHECKPOINTS": ".sam",
    "load_sam": ".sam",
    "sam_checkpoint_path": ".sam",
    "DEFAULT_SAM3": ".sam3",
    "Sam3TextSegmenter": ".sam3",
    "load_sam3": ".sam3",
    "DEFAULT_SCHEDULER": ".schedulers",
    "SCHEDULERS": ".schedulers",
    "make_scheduler": ".schedulers",
    "DEFAULT_SD": ".sd",
    "INPAINTING_SD": ".sd",
    "img2img": ".sd",
    "inpainting": ".sd",
    "load_sd": ".sd",
}

__all__ = [*_DEFINED_IN, "tiny"]


__getattr__, __dir__ = lazy_names(__name__, _DEFINED_IN, __all__)
