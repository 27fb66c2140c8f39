"""Text detectors: the contract a detector meets (:data:`Detector`), the one place its output
is checked (:func:`detect`), and Grounding DINO (transformers) loaded as one
(:func:`load_grounding_dino`).

A detector is any callable ``(image RGB PIL, text, box_threshold, text_threshold) ->
(boxes Nx4 XYXY image pixels, labels N str, scores N float)``: a
:class:`GroundingDinoDetector`, SAM 3's segmenter (:func:`sdsam_nb.load_sam3`), or one a test
plugs in. The click segmenter is given a detector; it never loads one.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..images import ImageLike, to_rgb
from ..validate import check_fraction
from .cache import Loaded, load_once
from .tiny import grounding_dino_folder

DEFAULT_GROUNDING_DINO = "IDEA-Research/grounding-dino-tiny"

Detector = Callable[[Image.Image, str, float, float], tuple[Any, Sequence[str], Sequence[float]]]


def kept(boxes: np.ndarray, scores: Sequence[float], max_boxes: int | None) -> list[int]:
    """Indices of the detections to keep, best score first (ties in the given order): boxes
    (``Nx4`` XYXY) with a positive width and height and a finite score, at most ``max_boxes``
    (``None``: all)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [
        int(i)
        for i in order
        if boxes[i, 2] > boxes[i, 0] and boxes[i, 3] > boxes[i, 1] and math.isfinite(scores[i])
    ][:max_boxes]


def detections(raw, size: tuple[int, int], max_boxes: int | None):
    """Validate a detector's output; clip boxes to the image, drop empty ones, sort by score."""
    try:
        boxes_raw, labels, scores = raw
    except (TypeError, ValueError):
        raise ValueError(
            f"detector must return (boxes Nx4, labels, scores), got {type(raw).__name__}"
        ) from None
    if isinstance(boxes_raw, torch.Tensor):
        boxes_raw = boxes_raw.detach().float().cpu().numpy()
    boxes = np.asarray(boxes_raw, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    labels = [str(label) for label in labels]
    scores = [float(s) for s in (scores.tolist() if hasattr(scores, "tolist") else scores)]
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not (len(boxes) == len(labels) == len(scores)):
        raise ValueError(
            f"detector returned boxes of shape {boxes.shape}, {len(labels)} labels and "
            f"{len(scores)} scores: expected Nx4 XYXY boxes with one label and score each"
        )
    w, h = size
    boxes = np.clip(boxes, 0.0, [w, h, w, h])
    keep = kept(boxes, scores, max_boxes)
    return (
        [tuple(float(v) for v in boxes[i]) for i in keep],
        [labels[i] for i in keep],
        [scores[i] for i in keep],
    )


def check_request(
    text: str, box_threshold: float, text_threshold: float, max_boxes: int | None
) -> tuple[float, float]:
    """Check a detection request before any model runs; return the two thresholds."""
    if not isinstance(text, str) or not text.strip(" .\t\n"):
        raise ValueError(f"text must name what to mask, e.g. 'red shoes', not {text!r}")
    box_threshold = check_fraction(box_threshold, "box_threshold")
    text_threshold = check_fraction(text_threshold, "text_threshold")
    if max_boxes is not None and (
        isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 1
    ):
        raise ValueError(f"max_boxes must be a positive int or None, not {max_boxes!r}")
    return box_threshold, text_threshold


def detect(
    detector: Detector,
    image: Image.Image,
    text: str,
    *,
    box_threshold: float = 0.35,
    text_threshold: float = 0.25,
    max_boxes: int | None = 20,
) -> tuple[list[tuple[float, float, float, float]], list[str], list[float], str]:
    """``detector``'s boxes for ``text`` on the RGB ``image``, checked.

    Returns ``(boxes, labels, scores, source)``: XYXY image-pixel boxes clipped to the image,
    sorted by score (best first), at most ``max_boxes``; ``source`` names the detector.

    Raises:
        ValueError: an empty ``text``, a threshold outside 0..1, a bad ``max_boxes``, a
            ``detector`` that is not callable or returns something malformed.
    """
    box_threshold, text_threshold = check_request(text, box_threshold, text_threshold, max_boxes)
    if not callable(detector):
        raise ValueError(
            "detector must be callable (image, text, box_threshold, text_threshold) -> "
            f"(boxes, labels, scores), e.g. sdsam_nb.load_grounding_dino(), not "
            f"{type(detector).__name__}"
        )
    source = getattr(detector, "source", None) or getattr(detector, "__name__", None)
    source = str(source or repr(detector))
    boxes, labels, scores = detections(
        detector(image, text, box_threshold, text_threshold), image.size, max_boxes
    )
    return boxes, labels, scores, source


def grounding_prompt(text: str) -> str:
    """``text`` as Grounding DINO expects it: lower case, stripped, ending in ``"."``.

    Several phrases are separated by dots: ``"red shoes. hat"`` -> ``"red shoes. hat."``.
    """
    prompt = " ".join(text.lower().split())
    return prompt if prompt.endswith(".") else prompt + "."


class GroundingDinoDetector(Loaded):
    """A Grounding DINO ``GroundingDinoProcessor`` (image processor + BERT tokenizer) and
    ``GroundingDinoForObjectDetection`` pair (:class:`~sdsam_nb.models.cache.Loaded`),
    callable as a :data:`Detector`."""

    kind, example = "grounding_dino", DEFAULT_GROUNDING_DINO
    classes = ("AutoProcessor", "AutoModelForZeroShotObjectDetection")
    build_tiny = staticmethod(grounding_dino_folder)

    def __init__(self, processor, model, source: str):
        super().__init__(processor, model, source)
        params = inspect.signature(processor.post_process_grounded_object_detection).parameters
        # older transformers call the box threshold `box_threshold`
        self._box_kw = "threshold" if "threshold" in params else "box_threshold"
        self._special = set(getattr(processor.tokenizer, "all_special_tokens", []))

    def _clean(self, label: str) -> str:
        words = [w for w in label.split() if w not in self._special]
        return " ".join(words).strip(" .")

    @torch.inference_mode()
    def __call__(
        self,
        image: ImageLike,
        text: str,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
    ) -> tuple[np.ndarray, list[str], list[float]]:
        """Boxes for ``text`` in ``image``.

        Returns:
            ``(boxes, labels, scores)``: an ``Nx4 float32`` array of XYXY boxes in image
            pixels, the phrase each box matched (special tokens removed) and its score
            (max sigmoid over the prompt's tokens). A box is kept when its score is strictly
            above ``box_threshold`` (so 1.0 keeps nothing); a token belongs to its label when
            its probability is above ``text_threshold``.
        """
        rgb = to_rgb(image)
        inputs = self.processor(images=rgb, text=grounding_prompt(text), return_tensors="pt")
        inputs = inputs.to(self.device)
        outputs = self.model(**inputs)
        w, h = rgb.size
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            text_threshold=text_threshold,
            target_sizes=[(h, w)],
            **{self._box_kw: box_threshold},
        )[0]
        labels = result["text_labels"] if "text_labels" in result else result["labels"]
        boxes = result["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
        # transformers 4.40 does not clip the boxes to the picture (5.x does): clip them here
        boxes = np.clip(boxes, 0, np.array([w, h, w, h], dtype=boxes.dtype))
        scores = result["scores"].detach().float().cpu().tolist()
        # batch_decode([]) gives [""]: with no boxes transformers returns one empty label
        labels = [self._clean(str(label)) for label in list(labels)[: len(scores)]]
        return boxes, labels, scores


def load_grounding_dino(
    model: str = DEFAULT_GROUNDING_DINO,
    *,
    device: str | torch.device | None = None,
) -> GroundingDinoDetector:
    """A Grounding DINO zero-shot detector (:class:`GroundingDinoDetector`, a :data:`Detector`)
    of ``model`` (a hub id, default ``IDEA-Research/grounding-dino-tiny``, 172 M parameters; a
    ``save_pretrained`` folder; ``"tiny"``), loaded once per process on ``device`` (``None``:
    CUDA, then MPS, then CPU) with its weights as saved.

    Raises:
        ValueError: ``model`` or ``device`` is malformed.
        ModelUnavailableError: a hub id that is neither cached nor downloadable.
    """
    return load_once(GroundingDinoDetector, model, device)
