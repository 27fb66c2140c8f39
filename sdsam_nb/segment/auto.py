"""A mask with no prompt at all: SAM's automatic mask generator proposes masks everywhere and
:func:`pick_subject` chooses "the subject" by size, centrality and contact with the border.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..images import ImageLike, to_rgb
from ..masks import bbox
from ..recording import recorded
from ..validate import check_fraction, check_int, is_finite
from .base import MaskResult, as_segmenter


def _check_fractions(min_frac: float, max_frac: float) -> None:
    check_fraction(min_frac, "min_frac")
    check_fraction(max_frac, "max_frac")
    if not (0.0 < min_frac < max_frac < 1.0):
        raise ValueError(f"need 0 < min_frac < max_frac < 1, got {min_frac=}, {max_frac=}")


def subject_scores(
    masks: Sequence[np.ndarray],
    *,
    min_frac: float = 0.05,
    max_frac: float = 0.80,
    quality: Sequence[float] | None = None,
) -> list[dict[str, float]]:
    """Score each ``HxW bool`` mask of one picture as its subject: one dict per mask with
    ``score`` (the product below) and its factors, all 0..1:

    * ``size``: 1 when the mask covers ``min_frac``..``max_frac`` of the picture; below that
      ``area / min_frac``, above ``(1 - area) / (1 - max_frac)``;
    * ``center``: ``1 - d``, ``d`` the centroid's distance from the image centre in
      half-width/half-height units over sqrt(2) (0 centre, 1 corner);
    * ``border``: 1 less the fraction of the mask's boundary pixels on the image border (a
      disc inside the picture: 1; a strip along an edge: ~0.5; the whole picture: 0);
    * ``quality``: the given per-mask quality (e.g. SAM's predicted IoU), else 1;

    plus ``area_frac`` and ``border_frac`` for reference. An empty mask scores 0.
    """
    _check_fractions(min_frac, max_frac)
    if quality is not None and not isinstance(quality, (Sequence, np.ndarray)):
        raise ValueError(f"quality must be a list of numbers or None, not {quality!r}")
    if quality is not None and len(quality) != len(masks):
        raise ValueError(f"quality has {len(quality)} values for {len(masks)} masks")
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
        if quality is not None and not is_finite(quality[i]):
            raise ValueError(f"quality[{i}] must be a finite number, not {quality[i]!r}")
        q = 1.0 if quality is None else float(np.clip(quality[i], 0.0, 1.0))
        size = center = border = border_frac = 0.0  # an empty mask scores 0
        if area > 0.0:
            size = min(1.0, area / min_frac, (1.0 - area) / (1.0 - max_frac))
            ys, xs = np.nonzero(m)
            dx = (xs.mean() + 0.5 - w / 2) / (w / 2)
            dy = (ys.mean() + 0.5 - h / 2) / (h / 2)
            center = 1.0 - min(1.0, math.hypot(dx, dy) / math.sqrt(2))
            boundary = m & ~ndimage.binary_erosion(m, border_value=0)
            on_edge = boundary.sum() - boundary[1:-1, 1:-1].sum()  # on the picture's border
            border_frac = float(on_edge) / float(boundary.sum())
            border = 1.0 - border_frac
        out.append(
            dict(
                score=size * center * border * q if area else 0.0,
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
    """Index of the mask most likely to be the picture's subject, or None when all score 0.

    The rule (:func:`subject_scores`): score = size x center x border (x quality): a subject
    fills a fair part of the picture (5..80 % by default), sits near the middle and is
    surrounded by background rather than cut by the frame. Ties go to the larger mask, then to
    the lower index.

    Raises:
        ValueError: ``masks`` is empty, not all ``HxW bool`` of one size, or bad fractions.
    """
    if isinstance(masks, (str, bytes)) or not isinstance(masks, (Sequence, np.ndarray)):
        raise ValueError(f"masks must be a list of HxW bool arrays, not {type(masks).__name__}")
    if len(masks) == 0:
        raise ValueError("masks is empty: nothing to pick from")
    scores = subject_scores(masks, min_frac=min_frac, max_frac=max_frac, quality=quality)
    best = max(range(len(scores)), key=lambda i: (scores[i]["score"], scores[i]["area_frac"], -i))
    return best if scores[best]["score"] > 0.0 else None


@dataclass(eq=False)
class SubjectResult(MaskResult):
    """What :func:`auto_subject_mask` chose.

    Attributes:
        mask: ``HxW bool``, True = subject; all False when nothing was found.
        found, index: whether a candidate was chosen, and its index in SAM's list (or None).
        score: its score (0..1); ``breakdown`` holds the factors (:func:`subject_scores`).
        candidates: how many masks SAM's generator proposed.
        box: the chosen mask's bounding box, XYXY image pixels (or None).
        message: a sentence for the notebook: what was chosen, or what to try.
        settings: generator and rule settings.
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


@recorded("auto_subject_mask")
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
    """The picture's subject without any prompt: ``SamAutomaticMaskGenerator``'s masks, the
    predicted IoU as quality, and :func:`pick_subject`.

    Args:
        predictor: a ``SamPredictor`` from :func:`sdsam_nb.load_sam` (its own picture is left
            as it was).
        image: ``PIL.Image`` / ``HxWx3 uint8`` RGB / path.
        points_per_side: the prompt grid is ``points_per_side**2`` points (SAM's default 32;
            16 is 4x cheaper and finds anything above ``min_frac``); raise it for thin subjects.
        points_per_batch: prompts decoded at once (memory vs. speed).
        pred_iou_thresh, stability_score_thresh: SAM's own quality filters; 0 keeps all.
        min_frac, max_frac: the subject size range of the rule (fractions of the picture).

    Returns:
        A :class:`SubjectResult`; when nothing scores above 0, ``found=False``, an all-False
        mask and a ``message`` saying what to try.

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
    generator = dict(
        points_per_side=check_int(points_per_side, "points_per_side", low=1),
        points_per_batch=check_int(points_per_batch, "points_per_batch", low=1),
        pred_iou_thresh=check_fraction(pred_iou_thresh, "pred_iou_thresh"),
        stability_score_thresh=check_fraction(stability_score_thresh, "stability_score_thresh"),
    )
    _check_fractions(min_frac, max_frac)
    array = np.asarray(to_rgb(image))
    proposals = segmenter.automatic_masks(array, **generator)
    masks = [np.asarray(p["segmentation"], dtype=bool) for p in proposals]
    quality = [float(p["predicted_iou"]) for p in proposals]
    rule = dict(min_frac=float(min_frac), max_frac=float(max_frac))
    index = pick_subject(masks, quality=quality, **rule) if masks else None
    if index is None:
        why = "SAM proposed no masks" if not masks else f"none of SAM's {len(masks)} masks"
        why += "" if not masks else " looks like a subject (all empty or along the border)"
        mask, breakdown, box = np.zeros(array.shape[:2], dtype=bool), {}, None
        message = (
            f"No subject found: {why}. Lower pred_iou_thresh / stability_score_thresh, "
            "raise points_per_side, or use text_mask(...) or clicks."
        )
    else:
        mask = masks[index]
        breakdown = subject_scores([mask], quality=[quality[index]], **rule)[0]
        box = tuple(float(v) for v in bbox(mask))
        message = (
            f"Subject: mask {index} of {len(masks)} ({breakdown['area_frac']:.1%} of the "
            f"picture, score {breakdown['score']:.2f} = size {breakdown['size']:.2f} x centre "
            f"{breakdown['center']:.2f} x border {breakdown['border']:.2f} x quality "
            f"{breakdown['quality']:.2f})."
        )
    return SubjectResult(
        mask=mask,
        found=index is not None,
        index=index,
        score=breakdown.get("score", 0.0),
        breakdown=breakdown,
        candidates=len(masks),
        box=box,
        message=message,
        settings={**generator, **rule},
    )
