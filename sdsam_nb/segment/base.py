"""The segmenter interface (what clicks, text and automatic masks need from a promptable
segmentation model), the table of backends, and the results' ``run.json`` record.

A backend wraps one model family and is stateless towards its callers: :meth:`embed` returns
the picture's embedding as a value the caller keeps and :meth:`predict` takes it back, so any
number of segmenters share one loaded model. Adding a backend is one file with a class like
:class:`sdsam_nb.segment.sam.SamBackend` and one :func:`register` call.

Conventions: pictures ``HxWx3 uint8 RGB``; points ``Nx2`` float ``(x, y)`` in image pixels
with labels ``N`` int (1 include, 0 exclude); boxes XYXY in image pixels; masks ``HxW bool``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..models.prediction import Prediction  # below segment: models' own wrappers return it


@runtime_checkable
class PromptSegmenter(Protocol):
    """A promptable segmentation model, as :class:`sdsam_nb.ClickSegmenter` uses it."""

    backend: str  # the family, e.g. "segment_anything"

    def embed(self, image: np.ndarray) -> Any:
        """Run the image encoder once on ``HxWx3 uint8 RGB``; return the embedding."""

    def predict(
        self,
        embedding: Any,
        *,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None,
        mask_input: np.ndarray | None,
        multimask: bool,
    ) -> Prediction:
        """Decode points (``Nx2``) with labels (``N``), a box (``4``) and the previous
        low-res logits (``1x256x256``) into candidates (3 with ``multimask``, else 1)."""

    def predict_boxes(self, embedding: Any, boxes: np.ndarray, *, batch: int = 16) -> np.ndarray:
        """One mask per XYXY box (``Nx4``): ``NxHxW bool``, decoded ``batch`` boxes at a time."""

    def info(self) -> dict:
        """What ``run.json`` records about the model (family, id, checksum...)."""


# (accepts(model), wrap(model)) pairs, one per backend file (registered when sdsam_nb.segment
# imports it); as_segmenter uses the first that accepts a model.
BACKENDS: list[tuple[Callable[[Any], bool], Callable[[Any], PromptSegmenter]]] = []


def register(accepts: Callable[[Any], bool], wrap: Callable[[Any], PromptSegmenter]) -> None:
    """Add a backend: ``accepts(model)`` says whether ``wrap(model)`` can serve ``model``."""
    BACKENDS.append((accepts, wrap))


def as_segmenter(model: Any) -> PromptSegmenter:
    """``model`` behind the segmenter interface: a backend object itself, or a model one of
    :data:`BACKENDS` wraps (a ``SamPredictor`` from :func:`sdsam_nb.load_sam`).

    Raises:
        ValueError: nothing serves ``model``; the message names what was given.
    """
    if isinstance(model, PromptSegmenter):
        return model
    for accepts, wrap in BACKENDS:
        if accepts(model):
            return wrap(model)
    raise ValueError(
        f"predictor must be a segmentation model from sdsam_nb.load_sam() (a segment_anything "
        f"SamPredictor) or a PromptSegmenter backend, not {type(model).__name__}"
    )


class MaskResult:
    """Base of the result dataclasses of text and automatic masks (they have a ``mask``)."""

    def to_dict(self) -> dict:
        """A JSON-ready record for ``run.json``, enough to replay the call: every field but the
        masks (those left out of the repr), and ``mask_area`` (pixels)."""
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        return json.loads(json.dumps({**record, "mask_area": int(self.mask.sum())}))
