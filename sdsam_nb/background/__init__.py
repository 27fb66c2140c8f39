"""New backgrounds: generate a picture, repaint around a subject, or paste a subject onto one.

Conventions: those of :mod:`sdsam_nb.images`; a mask is inverted into an ``L`` image, white =
repaint, only where it is handed to diffusers.

Reproducibility: every function that samples makes **one pipeline call and one
``torch.Generator`` per variation**, seeded ``seed + i`` on the pipeline's execution device.
Variation ``i`` of ``n`` is therefore the same picture as variation ``0`` of a single run with
``seed + i``, bit for bit, on the same machine, because the batch size (1) never changes.
Each returned image carries ``info["seed"]`` and ``info["nsfw"]``; the returned
:class:`Variations` list has ``.seeds`` and ``.nsfw`` as well.

The safety checker (when the pipeline has one) blacks out images it flags: those images get
``info["nsfw"] = True`` and a :class:`SafetyCheckerWarning` names the variations.

Nothing here writes files or changes a pipeline's settings (progress bars included).
"""

from ..edges import edge_closeups, kept_width
from ..models import SCHEDULERS, inpainting, make_scheduler  # used by scheduler= and model=
from .common import (
    DEFAULT_FEATHER,
    HARMONIZE_STRENGTH,
    SafetyCheckerWarning,
    Variations,
    processing_size,
)
from .composite import composite
from .generate import generate, generate_background
from .inpaint import inpaint_background
from .methods import METHODS, BackgroundMethod, method_for
from .reframe import POSITIONS, canvas_size, place_subject, reframe
from .relight import LIGHTS, Relit, relight
from .scores import (
    expansion_by_method,
    object_expansion,
    relight_score,
    score_results,
    subject_fidelity,
)

__all__ = [
    "DEFAULT_FEATHER",
    "HARMONIZE_STRENGTH",
    "LIGHTS",
    "METHODS",
    "SCHEDULERS",
    "BackgroundMethod",
    "SafetyCheckerWarning",
    "Variations",
    "composite",
    "edge_closeups",
    "kept_width",
    "generate",
    "generate_background",
    "inpainting",
    "inpaint_background",
    "make_scheduler",
    "method_for",
    "place_subject",
    "reframe",
    "Relit",
    "relight",
    "relight_score",
    "canvas_size",
    "POSITIONS",
    "object_expansion",
    "processing_size",
    "expansion_by_method",
    "score_results",
    "subject_fidelity",
]
