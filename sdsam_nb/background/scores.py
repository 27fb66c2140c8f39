"""Scores: how well a result kept its subject (fidelity, object expansion)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from .. import masks
from ..images import ImageLike, to_mask, to_rgb
from ..recording import recorded
from ..segment.clicks import ClickSegmenter
from ..validate import check_flag, check_number
from .common import DEFAULT_FEATHER, checked_subject


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
