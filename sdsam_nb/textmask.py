"""Masks without clicks: from a text phrase (Grounding DINO + SAM) or from no prompt at all.

* :func:`text_mask` — Grounding DINO finds boxes for a phrase ("red shoes"), SAM turns each
  box into a mask, and a documented ``combine`` rule makes one ``HxW bool`` mask of them.
* :func:`auto_subject_mask` — SAM's automatic mask generator proposes masks everywhere and
  :func:`pick_subject` chooses "the subject" by size, centrality and contact with the border.

Both return a small result object rather than raising when nothing is found (``found=False``
with an empty mask and a ``message`` saying what to try); bad arguments raise ``ValueError``
naming the argument. Results carry everything needed to replay them (``to_dict()``) and, for
text, the boxes a click picker can start from. Conventions of :mod:`sdsam_nb.images`: images
are ``PIL.Image`` RGB or ``HxWx3 uint8``, masks ``HxW bool`` (True = subject), boxes XYXY in
image pixels.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from . import tiny
from .images import ImageLike, to_rgb
from .loaders import MODELS, _unavailable, load_sam, pick_device, resolve_model
from .segment import as_segmenter
from .segment.detect import Detector, check_fraction, check_request, detect

DEFAULT_GROUNDING_DINO = "IDEA-Research/grounding-dino-tiny"
COMBINE_RULES = ("union", "best")


# --------------------------------------------------------------------------- Grounding DINO


def grounding_prompt(text: str) -> str:
    """``text`` as Grounding DINO expects it: lower case, stripped, ending in ``"."``.

    Several phrases are separated by dots: ``"red shoes. hat"`` -> ``"red shoes. hat."``.
    """
    prompt = " ".join(text.lower().split())
    return prompt if prompt.endswith(".") else prompt + "."


class GroundingDinoDetector:
    """A Grounding DINO processor + model pair, callable as a :data:`Detector`.

    Attributes:
        processor: the ``transformers`` ``GroundingDinoProcessor`` (image processor + BERT
            tokenizer).
        model: the ``GroundingDinoForObjectDetection`` in eval mode on ``device``.
        source: the model id, folder or ``"tiny"`` it was loaded from (for ``run.json``).
    """

    def __init__(self, processor, model, source: str):
        self.processor = processor
        self.model = model
        self.source = source
        params = inspect.signature(processor.post_process_grounded_object_detection).parameters
        # older transformers call the box threshold `box_threshold`
        self._box_kw = "threshold" if "threshold" in params else "box_threshold"
        self._special = set(getattr(processor.tokenizer, "all_special_tokens", []))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        return f"GroundingDinoDetector(source={self.source!r}, device={str(self.device)!r})"

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


def _resolve_grounding_dino(model) -> tuple[str, bool]:
    """(path-or-id, is_local) for a Grounding DINO ``model`` argument."""
    return resolve_model(
        model,
        "model",
        build_tiny=tiny.grounding_dino_folder,
        marker="config.json",
        example=DEFAULT_GROUNDING_DINO,
    )


def load_grounding_dino(
    model: str = DEFAULT_GROUNDING_DINO,
    *,
    device: str | torch.device | None = None,
) -> GroundingDinoDetector:
    """Load a Grounding DINO zero-shot detector, once per process.

    Args:
        model: a hub id (default ``IDEA-Research/grounding-dino-tiny``, 172 M parameters,
            ~0.7 GB), a local folder written by ``save_pretrained``, or ``"tiny"`` for the
            built-in offline model (random weights: its boxes are arbitrary).
        device: ``None`` picks CUDA, then MPS, then CPU. Weights are loaded as saved
            (fp32 for the hub checkpoint).

    Returns:
        A :class:`GroundingDinoDetector` (``.processor``, ``.model``; callable as
        ``detector(image, text, box_threshold, text_threshold)``). Calling again with the
        same arguments returns the same object.

    Raises:
        ValueError: ``model`` or ``device`` is malformed.
        ModelUnavailableError: a hub id that is neither cached nor downloadable.
    """
    from huggingface_hub.utils import HfHubHTTPError, OfflineModeIsEnabled
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    dev = pick_device(device)
    key = ("grounding_dino", str(model), str(dev))
    if key in MODELS:
        return MODELS.get(key)
    source, local = _resolve_grounding_dino(model)
    try:
        processor = AutoProcessor.from_pretrained(source)
        net = AutoModelForZeroShotObjectDetection.from_pretrained(source)
    except (OSError, ConnectionError, HfHubHTTPError, OfflineModeIsEnabled) as exc:
        if local:
            raise
        raise _unavailable(str(model), exc) from None
    net.to(dev).eval()
    detector = GroundingDinoDetector(processor, net, str(model))
    MODELS.put(key, detector)
    return detector


# --------------------------------------------------------------------------- text -> mask


@dataclass(eq=False)
class TextMaskResult:
    """What :func:`text_mask` found, and everything needed to replay it.

    Attributes:
        mask: ``HxW bool``, True = subject; all False when nothing was found.
        boxes: every detected box kept, XYXY floats in image pixels, highest score first.
        labels: the phrase each box matched.
        scores: each box's detection score (0..1).
        text: the phrase as given.
        found: True when at least one box was detected (``boxes`` is not empty).
        combine: ``"union"`` or ``"best"``.
        box_threshold, text_threshold, max_boxes: the settings used.
        used: indices into ``boxes`` whose masks make ``mask`` (union: all, best: ``[0]``).
        box_masks: one ``HxW bool`` SAM mask per entry of ``used``.
        message: a sentence for the notebook: what was found, or what to try.
        detector: the detector's source (model id, folder, ``"tiny"``) or its repr.
    """

    mask: np.ndarray = field(repr=False)
    boxes: list[tuple[float, float, float, float]]
    labels: list[str]
    scores: list[float]
    text: str
    found: bool
    combine: str
    box_threshold: float
    text_threshold: float
    max_boxes: int | None
    used: list[int]
    box_masks: list[np.ndarray] = field(repr=False)
    message: str
    detector: str

    @property
    def best_box(self) -> tuple[float, float, float, float] | None:
        """The highest-scoring box (XYXY image pixels), or None: a click picker's start."""
        return self.boxes[0] if self.boxes else None

    def to_dict(self) -> dict:
        """A JSON-ready record (no arrays) for ``run.json``: enough to replay the call."""
        return {
            "text": self.text,
            "box_threshold": self.box_threshold,
            "text_threshold": self.text_threshold,
            "combine": self.combine,
            "max_boxes": self.max_boxes,
            "detector": self.detector,
            "found": self.found,
            "boxes": [list(b) for b in self.boxes],
            "labels": list(self.labels),
            "scores": list(self.scores),
            "used": list(self.used),
            "mask_area": int(self.mask.sum()),
            "message": self.message,
        }


def box_masks(predictor, image: ImageLike, boxes, *, batch: int = 16) -> np.ndarray:
    """Masks for XYXY ``boxes`` (image pixels), one per box: ``NxHxW bool``.

    ``predictor`` is any segmentation model :func:`sdsam_nb.segment.as_segmenter` accepts.
    The image encoder runs once, then the boxes are decoded in batches of ``batch`` with one
    candidate each (a box is an unambiguous prompt; SAM's README does the same).
    """
    segmenter = as_segmenter(predictor)
    array = np.asarray(to_rgb(image))
    h, w = array.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros((0, h, w), dtype=bool)
    return segmenter.predict_boxes(segmenter.embed(array), boxes, batch=batch)


def find_boxes(
    image: ImageLike,
    text: str,
    *,
    detector: Detector | None = None,
    box_threshold: float = 0.35,
    text_threshold: float = 0.25,
    max_boxes: int | None = 20,
) -> tuple[list[tuple[float, float, float, float]], list[str], list[float], str]:
    """Grounding DINO's boxes for ``text`` on ``image``, without SAM.

    Returns ``(boxes, labels, scores, source)``: XYXY image-pixel boxes clipped to the image,
    sorted by score (best first), at most ``max_boxes``; ``source`` names the detector.
    Raises ``ValueError`` for the same bad arguments as :func:`text_mask`.
    """
    rgb = to_rgb(image)
    if detector is None:
        check_request(text, box_threshold, text_threshold, max_boxes)  # before loading one
        detector = load_grounding_dino()
    return detect(
        detector,
        rgb,
        text,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        max_boxes=max_boxes,
    )


def text_mask(
    image: ImageLike,
    text: str,
    *,
    detector: Detector | None = None,
    predictor=None,
    box_threshold: float = 0.35,
    text_threshold: float = 0.25,
    combine: str = "union",
    max_boxes: int | None = 20,
) -> TextMaskResult:
    """Mask what ``text`` names: Grounding DINO boxes, SAM masks, one combined mask.

    Args:
        image: ``PIL.Image`` / ``HxWx3 uint8`` RGB / path (see :func:`sdsam_nb.to_rgb`).
        text: the phrase, e.g. ``"red shoes"``; several phrases separated by dots.
        detector: any callable ``(image, text, box_threshold, text_threshold) -> (boxes Nx4
            XYXY image pixels, labels, scores)``; ``None`` loads
            ``load_grounding_dino()`` (``IDEA-Research/grounding-dino-tiny``).
        predictor: a ``SamPredictor`` from :func:`sdsam_nb.load_sam`; ``None`` loads
            ``load_sam()`` (vit_b). Its image is set to ``image``.
        box_threshold: keep boxes whose score is above this (0..1; Grounding DINO's demo
            uses 0.35). 0 keeps every query, 1 keeps none.
        text_threshold: a prompt token joins a box's label above this probability (0..1).
        combine: with several boxes, ``"union"`` ORs every box's mask (all shoes of a
            pair); ``"best"`` keeps only the highest-scoring box's mask (one subject).
        max_boxes: segment at most this many boxes, highest scores first (``None``: all;
            Grounding DINO can return up to 900 with low thresholds).

    Boxes are clipped to the image; boxes empty after clipping are dropped. Ties in score
    keep the detector's order.

    Returns:
        A :class:`TextMaskResult`. When nothing is found: ``found=False``, an all-False mask,
        no boxes, and a ``message`` saying what to try (SAM is not run).

    Raises:
        ValueError: empty ``text``, a threshold outside 0..1, an unknown ``combine``, a bad
            ``max_boxes``, a ``detector`` that is not callable or returns malformed output.
        ModelUnavailableError: ``detector``/``predictor`` is None and the default model
            cannot be had.
    """
    if combine not in COMBINE_RULES:
        raise ValueError(f"combine must be one of {list(COMBINE_RULES)}, not {combine!r}")
    if predictor is not None:
        as_segmenter(predictor)
    rgb = to_rgb(image)
    w, h = rgb.size
    boxes, labels, scores, source = find_boxes(
        rgb,
        text,
        detector=detector,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        max_boxes=max_boxes,
    )
    box_threshold, text_threshold = float(box_threshold), float(text_threshold)
    settings = dict(
        text=text,
        combine=combine,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        max_boxes=max_boxes,
        detector=source,
    )
    if not boxes:
        return TextMaskResult(
            mask=np.zeros((h, w), dtype=bool),
            boxes=[],
            labels=[],
            scores=[],
            found=False,
            used=[],
            box_masks=[],
            message=(
                f"Nothing found for {text!r} with box_threshold={box_threshold}: lower "
                "box_threshold (e.g. 0.25), name the subject with a short noun phrase "
                "('red shoes'), or click the subject instead."
            ),
            **settings,
        )
    if predictor is None:
        predictor = load_sam()
    used = list(range(len(boxes))) if combine == "union" else [0]
    masks = box_masks(predictor, rgb, [boxes[i] for i in used])
    mask = np.logical_or.reduce(masks, axis=0)
    what = f"{len(boxes)} box{'es' if len(boxes) > 1 else ''} for {text!r}"
    rule = (
        f"union of {len(used)} masks"
        if combine == "union"
        else f"best box only (score {scores[0]:.2f}, {labels[0]!r})"
    )
    message = f"{what}; {rule}: {mask.mean():.1%} of the picture."
    if not mask.any():
        message += " SAM returned an empty mask: try another box or click the subject."
    return TextMaskResult(
        mask=mask,
        boxes=boxes,
        labels=labels,
        scores=scores,
        found=True,
        used=used,
        box_masks=list(masks),
        message=message,
        **settings,
    )


# --------------------------------------------------------------------------- automatic subject


def subject_scores(
    masks: Sequence[np.ndarray],
    *,
    min_frac: float = 0.05,
    max_frac: float = 0.80,
    quality: Sequence[float] | None = None,
) -> list[dict[str, float]]:
    """Score each ``HxW bool`` mask as "the subject" of its picture (see :func:`pick_subject`).

    Returns one dict per mask with ``score`` (the product below) and its factors, all 0..1:

    * ``size``: 1 when the mask covers ``min_frac``..``max_frac`` of the picture; below that
      ``area / min_frac``, above ``(1 - area) / (1 - max_frac)``;
    * ``center``: ``1 - d``, where ``d`` is the distance of the mask's centroid from the
      image centre in half-width/half-height units, divided by sqrt(2) (0 centre, 1 corner);
    * ``border``: ``1 - `` the fraction of the mask's boundary pixels that lie on the image
      border (a disc inside the picture: 1; a strip along an edge: ~0.5; the whole picture: 0);
    * ``quality``: the given per-mask quality (e.g. SAM's predicted IoU), else 1;

    plus ``area_frac`` and ``border_frac`` for reference. An empty mask scores 0.
    """
    if not (0.0 < min_frac < max_frac < 1.0):
        raise ValueError(f"need 0 < min_frac < max_frac < 1, got {min_frac=}, {max_frac=}")
    if quality is not None and len(quality) != len(masks):
        raise ValueError(f"quality has {len(quality)} values for {len(masks)} masks")
    from scipy import ndimage

    out = []
    shape = None
    for i, m in enumerate(masks):
        m = np.asarray(m)
        if m.ndim != 2 or m.dtype != bool:
            raise ValueError(f"masks[{i}] must be an HxW bool array, got {m.dtype} {m.shape}")
        if shape is not None and m.shape != shape:
            raise ValueError(f"masks[{i}] is {m.shape}, masks[0] is {shape}: one picture only")
        shape = m.shape
        h, w = m.shape
        area = float(m.mean())
        q = 1.0 if quality is None else float(np.clip(quality[i], 0.0, 1.0))
        if area == 0.0:
            out.append(dict(score=0.0, size=0.0, center=0.0, border=0.0, quality=q,
                            area_frac=0.0, border_frac=0.0))  # fmt: skip
            continue
        if area < min_frac:
            size = area / min_frac
        elif area > max_frac:
            size = (1.0 - area) / (1.0 - max_frac)
        else:
            size = 1.0
        ys, xs = np.nonzero(m)
        dx = (xs.mean() + 0.5 - w / 2) / (w / 2)
        dy = (ys.mean() + 0.5 - h / 2) / (h / 2)
        center = 1.0 - min(1.0, math.hypot(dx, dy) / math.sqrt(2))
        boundary = m & ~ndimage.binary_erosion(m, border_value=0)
        on_edge = boundary[0].sum() + boundary[-1].sum() + boundary[1:-1, 0].sum()
        on_edge += boundary[1:-1, -1].sum()
        border_frac = float(on_edge) / float(boundary.sum())
        border = 1.0 - border_frac
        out.append(
            dict(
                score=size * center * border * q,
                size=size,
                center=center,
                border=border,
                quality=q,
                area_frac=area,
                border_frac=border_frac,
            )
        )
    return out


def pick_subject(
    masks: Sequence[np.ndarray],
    *,
    min_frac: float = 0.05,
    max_frac: float = 0.80,
    quality: Sequence[float] | None = None,
) -> int | None:
    """Index of the mask most likely to be the picture's subject, or None.

    The rule: score = size x center x border (x quality), each factor 0..1 as defined in
    :func:`subject_scores` — a subject fills a fair part of the picture (5..80 % by default),
    sits near the middle, and is surrounded by background rather than cut by the frame.
    The highest score wins; ties go to the larger mask, then to the lower index. None when
    every mask scores 0 (all empty, or all covering the whole picture / touching only the
    border).

    Raises:
        ValueError: ``masks`` is empty, not all ``HxW bool`` of one size, or bad fractions.
    """
    if len(masks) == 0:
        raise ValueError("masks is empty: nothing to pick from")
    scores = subject_scores(masks, min_frac=min_frac, max_frac=max_frac, quality=quality)
    best = max(range(len(scores)), key=lambda i: (scores[i]["score"], scores[i]["area_frac"], -i))
    return best if scores[best]["score"] > 0.0 else None


@dataclass(eq=False)
class SubjectResult:
    """What :func:`auto_subject_mask` chose.

    Attributes:
        mask: ``HxW bool``, True = subject; all False when nothing was found.
        found: True when a candidate was chosen.
        index: the chosen candidate's index in SAM's list (None if not found).
        score: its score (0..1); ``breakdown`` holds the factors (:func:`subject_scores`).
        candidates: how many masks SAM's generator proposed.
        box: the chosen mask's bounding box, XYXY image pixels (None if not found).
        message: a sentence for the notebook: what was chosen, or what to try.
        settings: generator and rule settings, for ``run.json``.
    """

    mask: np.ndarray = field(repr=False)
    found: bool
    index: int | None
    score: float
    breakdown: dict[str, float]
    candidates: int
    box: tuple[float, float, float, float] | None
    message: str
    settings: dict

    def to_dict(self) -> dict:
        """A JSON-ready record (no arrays) for ``run.json``."""
        return {
            "found": self.found,
            "index": self.index,
            "score": self.score,
            "breakdown": dict(self.breakdown),
            "candidates": self.candidates,
            "box": list(self.box) if self.box else None,
            "mask_area": int(self.mask.sum()),
            "message": self.message,
            "settings": dict(self.settings),
        }


def auto_subject_mask(
    predictor,
    image: ImageLike,
    *,
    points_per_side: int = 16,
    points_per_batch: int = 64,
    pred_iou_thresh: float = 0.88,
    stability_score_thresh: float = 0.95,
    min_frac: float = 0.05,
    max_frac: float = 0.80,
) -> SubjectResult:
    """The picture's subject without any prompt: SAM's automatic masks + :func:`pick_subject`.

    Args:
        predictor: a ``SamPredictor`` from :func:`sdsam_nb.load_sam`; its model runs
            ``segment_anything.SamAutomaticMaskGenerator`` (the predictor's own image state
            is left untouched).
        image: ``PIL.Image`` / ``HxWx3 uint8`` RGB / path.
        points_per_side: the prompt grid is ``points_per_side**2`` points. SAM's default is
            32 (1024 decoder prompts); 16 (256) is 4x cheaper on the decoder and still finds
            anything bigger than ``min_frac`` of the picture, which is all a subject can be.
            Raise it for small or thin subjects.
        points_per_batch: prompts decoded at once (memory vs. speed).
        pred_iou_thresh, stability_score_thresh: SAM's own quality filters (its defaults);
            0 keeps every proposal.
        min_frac, max_frac: the subject size range of the rule (fractions of the picture).

    Candidates are scored with the predicted IoU as ``quality`` (see
    :func:`subject_scores`).

    Returns:
        A :class:`SubjectResult`. When SAM proposes nothing, or nothing scores above 0,
        ``found=False`` with an all-False mask and a ``message`` saying what to try
        (no exception).

    Raises:
        ValueError: a bad ``predictor``, ``points_per_side``/``points_per_batch`` < 1, a
            threshold outside 0..1, or bad fractions.
    """
    segmenter = as_segmenter(predictor)
    if not hasattr(segmenter, "automatic_masks"):
        raise ValueError(
            f"predictor: the {segmenter.backend} backend has no automatic masks; use "
            "text_mask(...) or clicks"
        )
    for name, value in (
        ("points_per_side", points_per_side),
        ("points_per_batch", points_per_batch),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, not {value!r}")
    pred_iou_thresh = check_fraction(pred_iou_thresh, "pred_iou_thresh")
    stability_score_thresh = check_fraction(stability_score_thresh, "stability_score_thresh")
    if not (0.0 < min_frac < max_frac < 1.0):
        raise ValueError(f"need 0 < min_frac < max_frac < 1, got {min_frac=}, {max_frac=}")
    array = np.asarray(to_rgb(image))
    h, w = array.shape[:2]
    settings = dict(
        points_per_side=points_per_side,
        points_per_batch=points_per_batch,
        pred_iou_thresh=pred_iou_thresh,
        stability_score_thresh=stability_score_thresh,
        min_frac=min_frac,
        max_frac=max_frac,
    )
    proposals = segmenter.automatic_masks(
        array,
        points_per_side=points_per_side,
        points_per_batch=points_per_batch,
        pred_iou_thresh=pred_iou_thresh,
        stability_score_thresh=stability_score_thresh,
    )
    masks = [np.asarray(p["segmentation"], dtype=bool) for p in proposals]
    index = None
    if masks:
        quality = [float(p["predicted_iou"]) for p in proposals]
        index = pick_subject(masks, min_frac=min_frac, max_frac=max_frac, quality=quality)
    if index is None:
        why = "SAM proposed no masks" if not masks else f"none of SAM's {len(masks)} masks"
        why += "" if not masks else " looks like a subject (all empty or along the border)"
        return SubjectResult(
            mask=np.zeros((h, w), dtype=bool),
            found=False,
            index=None,
            score=0.0,
            breakdown={},
            candidates=len(masks),
            box=None,
            message=(
                f"No subject found: {why}. Lower pred_iou_thresh / stability_score_thresh, "
                "raise points_per_side, or use text_mask(...) or clicks."
            ),
            settings=settings,
        )
    breakdown = subject_scores(
        [masks[index]], min_frac=min_frac, max_frac=max_frac, quality=[quality[index]]
    )[0]
    mask = masks[index]
    ys, xs = np.nonzero(mask)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return SubjectResult(
        mask=mask,
        found=True,
        index=index,
        score=breakdown["score"],
        breakdown=breakdown,
        candidates=len(masks),
        box=box,
        message=(
            f"Subject: mask {index} of {len(masks)} ({breakdown['area_frac']:.1%} of the "
            f"picture, score {breakdown['score']:.2f} = size {breakdown['size']:.2f} x centre "
            f"{breakdown['center']:.2f} x border {breakdown['border']:.2f} x quality "
            f"{breakdown['quality']:.2f})."
        ),
        settings=settings,
    )
