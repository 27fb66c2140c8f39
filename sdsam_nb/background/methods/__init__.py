"""Background methods: how the background around a subject is repainted, behind one call.

:func:`sdsam_nb.inpaint_background` calls the pipeline of the :class:`BackgroundMethod` its
``model`` names (:func:`method_for`) with the picture, the repaint mask (white = repaint) and
the method's own inputs. Adding a method is one new file here with such a class and one entry
in :data:`METHODS` (by name) or :data:`KNOWN_CHECKPOINTS` (by model id).
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from PIL import Image

from .dedicated import DedicatedInpainting
from .own import OwnWeights
from .salient import SALIENT_BG, SalientControlNet


class BackgroundMethod(Protocol):
    """``name``: what ``run.json`` and the scores call it; ``pipeline(pipe)``: a diffusers
    inpainting pipeline on the device, dtype and sampler of the text-to-image ``pipe``;
    ``inputs(image, mask_image)``: extra keyword arguments for its call (e.g. a ControlNet's
    control image)."""

    name: str

    def pipeline(self, pipe) -> Any: ...

    def inputs(self, image: Image.Image, mask_image: Image.Image) -> dict: ...


# a name -> the method's class (built with no argument)
METHODS: dict[str, type] = {"own": OwnWeights, "salient": SalientControlNet}
# a checkpoint id -> the method class that loads it (built with the id); any other id or
# folder is taken for a dedicated (9-channel) inpainting checkpoint
KNOWN_CHECKPOINTS: dict[str, type] = {SALIENT_BG: SalientControlNet}


def method_for(model: str | os.PathLike | BackgroundMethod | None) -> BackgroundMethod:
    """The method ``model`` names: ``None`` or ``"own"`` inpaints with the text-to-image
    pipeline's own weights; a name from :data:`METHODS`; a checkpoint id or local folder
    (a dedicated inpainting checkpoint such as ``sdsam_nb.INPAINTING_SD``); a method object
    (with ``name``, ``pipeline`` and ``inputs``, e.g. ``SalientControlNet(conditioning_scale=0.5)``)
    is returned as is.

    Raises:
        ValueError: ``model`` is neither None, a name, an id, a folder nor a method.
    """
    if model is None:
        return OwnWeights()
    if all(hasattr(model, a) for a in ("name", "pipeline", "inputs")):
        return model
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise ValueError(
            f"model must be None, one of {sorted(METHODS)}, an inpainting checkpoint id, a "
            f"local folder or a method object, not {model!r}"
        )
    key = str(model)
    if key in METHODS:
        return METHODS[key]()
    return KNOWN_CHECKPOINTS.get(key, DedicatedInpainting)(key)


__all__ = [
    "KNOWN_CHECKPOINTS",
    "METHODS",
    "BackgroundMethod",
    "DedicatedInpainting",
    "OwnWeights",
    "SALIENT_BG",
    "SalientControlNet",
    "method_for",
]
