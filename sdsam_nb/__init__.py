"""sdsam-nb: generate a subject with Stable Diffusion, mask it with SAM clicks, give it a new
background (inpainted around it, or composited), keeping the subject's pixels and the picture's
aspect ratio.

Conventions (see :mod:`sdsam_nb.images`): images are ``PIL.Image`` RGB or ``HxWx3 uint8``;
masks are ``HxW bool`` with ``True`` = subject; points are ``(x, y)`` in image pixels.

The names below load on first use (PEP 562), as diffusers' do: ``import sdsam_nb`` is quick,
and ``sdsam_nb.load_sd`` imports what loading SD needs when it is first asked for.
"""

from importlib import metadata as _metadata

from .lazy import lazy_names

# The submodules, and where each other public name is defined.
_SUBMODULES = ("caching", "edges", "images", "masks", "models", "runs", "segment", "validate")
_DEFINED_IN = {
    "DEFAULT_FEATHER": ".background",
    "SCHEDULERS": ".background",
    "SafetyCheckerWarning": ".background",
    "Variations": ".background",
    "composite": ".background",
    "expansion_by_method": ".background",
    "generate": ".background",
    "generate_background": ".background",
    "inpaint_background": ".background",
    "object_expansion": ".background",
    "processing_size": ".background",
    "reframe": ".background",
    "relight": ".background",
    "relight_score": ".background",
    "score_results": ".background",
    "subject_fidelity": ".background",
    "to_mask": ".images",
    "to_rgb": ".images",
    "DEFAULT_SD": ".models",
    "INPAINTING_SD": ".models",
    "MODELS": ".models",
    "ModelCache": ".models",
    "ModelUnavailableError": ".models",
    "cache_dir": ".models",
    "clear_loaded": ".models",
    "device_report": ".models",
    "img2img": ".models",
    "in_colab": ".models",
    "inpainting": ".models",
    "load_grounding_dino": ".models",
    "load_sam": ".models",
    "load_sam3": ".models",
    "load_sd": ".models",
    "pick_device": ".models",
    "pick_dtype": ".models",
    "provenance": ".models",
    "start": ".runs",
    "Candidate": ".segment",
    "ClickSegmenter": ".segment",
    "TextMaskResult": ".segment",
    "auto_subject_mask": ".segment",
    "find_boxes": ".segment",
    "pick_subject": ".segment",
    "text_mask": ".segment",
    "MaskPicker": ".segment.widget",
    "enable_colab_widgets": ".segment.widget",
}

try:
    __version__ = _metadata.version("sdsam-nb")
except _metadata.PackageNotFoundError:  # imported from a checkout that is not installed
    __version__ = "0+unknown"

__all__ = [*_SUBMODULES, *_DEFINED_IN]


__getattr__, __dir__ = lazy_names(__name__, _DEFINED_IN, __all__)
