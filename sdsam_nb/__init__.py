"""sdsam-nb: generate a subject with Stable Diffusion, mask it with SAM clicks, give it a new
background (inpainted around it, or composited), keeping the subject's pixels and the picture's
aspect ratio.

Conventions (see :mod:`sdsam_nb.images`): images are ``PIL.Image`` RGB or ``HxWx3 uint8``;
masks are ``HxW bool`` with ``True`` = subject; points are ``(x, y)`` in image pixels.
"""

from importlib import metadata as _metadata

from . import (
    caching,
    edges,
    images,
    masks,
    models,
    runs,
    segment,
    validate,
)
from .background import (
    DEFAULT_FEATHER,
    SCHEDULERS,
    SafetyCheckerWarning,
    Variations,
    composite,
    expansion_by_method,
    generate,
    generate_background,
    inpaint_background,
    object_expansion,
    processing_size,
    reframe,
    relight,
    relight_score,
    score_results,
    subject_fidelity,
)
from .images import to_mask, to_rgb
from .models import (
    DEFAULT_SD,
    INPAINTING_SD,
    MODELS,
    ModelCache,
    ModelUnavailableError,
    cache_dir,
    clear_loaded,
    device_report,
    img2img,
    in_colab,
    inpainting,
    load_grounding_dino,
    load_sam,
    load_sam3,
    load_sd,
    pick_device,
    pick_dtype,
    provenance,
)
from .runs import start
from .segment import (
    Candidate,
    ClickSegmenter,
    TextMaskResult,
    auto_subject_mask,
    find_boxes,
    pick_subject,
    text_mask,
)
from .segment.widget import MaskPicker, enable_colab_widgets

try:
    __version__ = _metadata.version("sdsam-nb")
except _metadata.PackageNotFoundError:  # imported from a checkout that is not installed
    __version__ = "0+unknown"

__all__ = [
    "caching",
    "edges",
    "DEFAULT_FEATHER",
    "SCHEDULERS",
    "SafetyCheckerWarning",
    "DEFAULT_SD",
    "INPAINTING_SD",
    "Candidate",
    "TextMaskResult",
    "auto_subject_mask",
    "find_boxes",
    "load_grounding_dino",
    "pick_subject",
    "text_mask",
    "ClickSegmenter",
    "MaskPicker",
    "MODELS",
    "ModelCache",
    "ModelUnavailableError",
    "Variations",
    "cache_dir",
    "clear_loaded",
    "enable_colab_widgets",
    "composite",
    "expansion_by_method",
    "device_report",
    "generate",
    "generate_background",
    "images",
    "img2img",
    "in_colab",
    "inpaint_background",
    "inpainting",
    "load_sam",
    "load_sam3",
    "load_sd",
    "masks",
    "models",
    "object_expansion",
    "pick_device",
    "pick_dtype",
    "processing_size",
    "provenance",
    "reframe",
    "relight",
    "relight_score",
    "runs",
    "start",
    "validate",
    "score_results",
    "segment",
    "subject_fidelity",
    "to_mask",
    "to_rgb",
]
