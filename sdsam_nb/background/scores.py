"""Scores: how well a result kept its subject (fidelity, object expansion, what relighting
changed besides the light)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image

from .. import masks
from ..images import ImageLike, to_mask, to_rgb
from ..recording import recorded
from ..segment.clicks import ClickSegmenter
from ..validate import check_flag, check_number
from .common import DEFAULT_FEATHER, check_subject_alpha, checked_subject

EDGE_TOLERANCE = 2
"""Pixels an edge may move and still count as the same edge in :func:`relight_score`."""


def object_expansion(subject_mask, result_mask) -> float:
    """How much the subject grew in a result: ``|result \\ subject| / |subject|``.

    The area of ``result_mask`` outside ``subject_mask``, as a fraction of ``subject_mask``'s
    area: 0 when the result's subject stays within the original outline, 0.2 when the model
    extended it by a fifth of its area (e.g. a bottle given an extra neck). The measure of
    Eshratifar et al., "Salient Object-Aware Background Generation using Text-Guided Diffusion
    Models" (CVPR 2024 workshops). ``result_mask`` is the subject segmented in the result,
    e.g. ``ClickSegmenter.from_dict(predictor, result, segmenter.to_dict()).mask``.

    Args:
        subject_mask, result_mask: ``HxW bool`` of the same size; ``subject_mask`` not empty.
    """
    subject = to_mask(subject_mask, name="subject_mask")
    if not subject.any():
        raise ValueError("subject_mask is empty: the expansion of nothing is undefined")
    result = to_mask(result_mask, (subject.shape[1], subject.shape[0]), name="result_mask")
    return float(np.count_nonzero(result & ~subject)) / float(np.count_nonzero(subject))


def subject_fidelity(
    image: ImageLike, result: ImageLike, subject_mask, *, shrink: float = DEFAULT_FEATHER
) -> dict[str, Any]:
    """How much a same-size result changed the subject's pixels.

    Compares ``image`` and ``result`` on ``masks.shrink(subject_mask, shrink)`` (the part of the
    subject :func:`inpaint_background` promises to keep when ``shrink >= feather``).

    Returns:
        ``{"max_abs": int, "mean_abs": float, "pixels": int}``: the largest and the mean
        absolute difference over the R, G and B values (0..255) of the ``pixels`` compared.
        ``max_abs == 0`` means the subject is pixel-identical there.
    """
    picture, mask = checked_subject(image, subject_mask)
    other = to_rgb(result, name="result")
    if other.size != picture.size:
        raise ValueError(
            f"result is {other.size[0]}x{other.size[1]} but image is "
            f"{picture.size[0]}x{picture.size[1]}: compare pictures of the same size"
        )
    inner = masks.shrink(mask, check_number(shrink, "shrink", low=0.0))
    if not inner.any():
        raise ValueError(f"shrink={shrink!r} leaves no subject pixel to compare: use less")
    a = np.asarray(picture, dtype=np.int16)[inner]
    b = np.asarray(other, dtype=np.int16)[inner]
    diff = np.abs(a - b)
    return {
        "max_abs": int(diff.max()),
        "mean_abs": float(diff.mean()),
        "pixels": int(np.count_nonzero(inner)),
    }


@recorded("score_results")
def score_results(
    image: ImageLike,
    results: Sequence[ImageLike],
    subject_mask,
    *,
    predictor=None,
    clicks: Mapping[str, Any] | ClickSegmenter | None = None,
    shrink: float = DEFAULT_FEATHER,
    cache: bool = True,
) -> list[dict[str, Any]]:
    """Score each result of :func:`inpaint_background` against the original picture.

    Every result gets ``{"variation": i, "max_abs", "mean_abs", "pixels"}`` from
    :func:`subject_fidelity` (on ``masks.shrink(subject_mask, shrink)``). With a SAM
    ``predictor`` the result is segmented again with the same prompts and scored with
    :func:`object_expansion` against ``subject_mask``:

    * the prompts are ``clicks``, replayed exactly: a :meth:`ClickSegmenter.to_dict` record
      made on ``image``, or the :class:`ClickSegmenter` itself (its embedding of ``image`` is
      reused); without them, the bounding box of ``subject_mask`` as a box prompt;
    * ``"object_expansion"`` is the result's value; ``"object_expansion_original"`` is the same
      measure on the unedited ``image``: the part of the number that is the segmentation's own
      disagreement with ``subject_mask`` (cleaned-up mask, box prompt), not the model's doing.
      The model grew the subject by about the difference of the two.

    SAM embeds ``image`` at most once and each result once. A result that says which
    background method made it (``info["method"]``, set by :func:`inpaint_background`) has
    that name in ``"method"``, so results of several methods can be compared in one call
    (:func:`expansion_by_method` sums them up).

    Args:
        image: the original picture; ``results``: pictures of the same size.
        subject_mask: ``HxW bool`` of ``image``, True = subject, not empty or full.
        predictor: a ``SamPredictor`` (:func:`sdsam_nb.load_sam`), or ``None`` for fidelity only.
        clicks: the click record or segmenter that made the mask, or ``None``.
        shrink: pixels the subject mask is shrunk by before comparing (use the ``feather``
            the results were made with).
        cache: take the embeddings from the disk cache of embeddings (and store those
            computed); ``False`` neither reads nor writes it (see :class:`ClickSegmenter`).

    Returns:
        One dict per result, in order; the expansion values rounded to 4 decimals.

    Raises:
        ValueError: a result of another size, a bad mask, or a ``clicks`` record made on a
            picture of another size.
    """
    picture, mask = checked_subject(image, subject_mask)
    check_flag(cache, "cache")
    if isinstance(results, (Image.Image, np.ndarray, str)) or not isinstance(results, Sequence):
        raise ValueError("results must be a list of pictures, e.g. what inpaint_background returns")
    baseline = record = None
    if predictor is not None:
        if isinstance(clicks, ClickSegmenter):
            original = clicks
        elif clicks is None:
            box = list(masks.bbox(mask))
            original = ClickSegmenter.from_prompts(predictor, picture, box=box, cache=cache)
        else:
            original = ClickSegmenter.from_dict(predictor, picture, clicks, cache=cache)
        record = original.to_dict()
        baseline = round(object_expansion(mask, original.mask), 4)
    scores = []
    for i, result in enumerate(results):
        score = {"variation": i, **subject_fidelity(picture, result, mask, shrink=shrink)}
        if isinstance(result, Image.Image) and "method" in result.info:
            score["method"] = result.info["method"]
        if record is not None:
            again = ClickSegmenter.from_dict(
                predictor, to_rgb(result, name="result"), record, cache=cache
            ).mask
            score["object_expansion"] = round(object_expansion(mask, again), 4)
            score["object_expansion_original"] = baseline
        scores.append(score)
    return scores


def expansion_by_method(scores: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Object expansion per background method from :func:`score_results`'s dicts:
    ``{method: {"n", "mean", "max", "original"}}`` (``original``: the segmentation's own part,
    :func:`score_results`' ``object_expansion_original``); scores without a method or without
    expansion are left out."""
    out: dict[str, list] = {}
    for s in scores:
        if "method" in s and "object_expansion" in s:
            out.setdefault(s["method"], []).append(s)
    return {
        name: {
            "n": len(group),
            "mean": round(float(np.mean([s["object_expansion"] for s in group])), 4),
            "max": round(float(max(s["object_expansion"] for s in group)), 4),
            "original": group[0]["object_expansion_original"],
        }
        for name, group in out.items()
    }


def relight_score(before: ImageLike, after: ImageLike, alpha) -> dict:
    """Whether relighting changed the subject's shape or identity, not only its light:
    ``before`` and ``after`` compared on luminance inside the subject (``alpha`` >= 0.5, 2 px
    in from its edge; ``docs/api.md``, "Relighting the subject").

    Args:
        before, after: pictures of one size (:func:`~sdsam_nb.images.to_rgb`).
        alpha: an ``HxW`` bool mask or float alpha of that size.

    Returns:
        ``{"edges": float, "structure": float, "light_change": float}``: the F-score of the
        two pictures' Canny edges (each stretched to its 1st..99th luminance percentile; an
        edge within :data:`EDGE_TOLERANCE` px is kept), SSIM's structure term averaged over
        the subject (both 1 for an unchanged subject), and the mean absolute luminance
        change as a fraction of 255.
    """
    a = to_rgb(before, name="before")
    b = to_rgb(after, name="after")
    if a.size != b.size:
        raise ValueError(f"after is {b.size[0]}x{b.size[1]} but before is {a.size[0]}x{a.size[1]}")
    region = check_subject_alpha(alpha, a.size) >= 0.5
    if not region.any():
        raise ValueError("alpha has no pixel of 0.5 or more: no subject to compare")
    inner = cv2.erode(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    region = inner if inner.any() else region
    la, lb = (cv2.cvtColor(np.asarray(p), cv2.COLOR_RGB2GRAY).astype(np.float32) for p in (a, b))
    edges = _edge_f1(_edges(la, region), _edges(lb, region))
    return {
        "edges": edges,
        "structure": _structure(la, lb, region),
        "light_change": float(np.abs(la - lb)[region].mean() / 255.0),
    }


def _edges(lum: np.ndarray, region: np.ndarray) -> np.ndarray:
    low, high = np.percentile(lum[region], (1, 99))
    stretched = np.clip((lum - low) * (255.0 / max(high - low, 1.0)), 0, 255).astype(np.uint8)
    return (cv2.Canny(stretched, 50, 150, L2gradient=True) > 0) & region


def _edge_f1(a: np.ndarray, b: np.ndarray) -> float:
    if not a.any() and not b.any():
        return 1.0
    if not a.any() or not b.any():
        return 0.0

    def near(edges: np.ndarray) -> np.ndarray:  # distance to the nearest of ``edges``
        return cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, 3)

    precision = float((near(a)[b] <= EDGE_TOLERANCE).mean())
    recall = float((near(b)[a] <= EDGE_TOLERANCE).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _structure(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    c3 = (0.03 * 255) ** 2 / 2  # SSIM's C2 / 2 (Wang et al. 2004)

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    a, b = a.astype(np.float64), b.astype(np.float64)
    ma, mb = blur(a), blur(b)
    va = np.maximum(blur(a * a) - ma * ma, 0)
    vb = np.maximum(blur(b * b) - mb * mb, 0)
    cov = blur(a * b) - ma * mb
    s = (cov + c3) / (np.sqrt(va * vb) + c3)
    return float(np.clip(s[region].mean(), -1.0, 1.0))
