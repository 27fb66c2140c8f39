"""Mask tools: clean up, grow, shrink and feather ``HxW bool`` masks, and draw them.

Masks come in any form :func:`sdsam_nb.images.to_mask` accepts. Islands are 8-connected;
distances are exact Euclidean distances between pixel centres (scipy's
``distance_transform_edt``). The picture's border is not an edge of the mask: a subject cut off
by the frame stays touching the frame when it is shrunk or feathered.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from .images import ImageLike, to_mask, to_rgb
from .validate import check_flag, check_fraction, check_int, check_number, check_pixels

# The colours :func:`overlay` (and the widget) draw include and exclude points and the box in.
POSITIVE_COLOR, NEGATIVE_COLOR, BOX_COLOR = (0, 255, 0), (255, 0, 0), (255, 200, 0)


def _inside_distance(mask: np.ndarray) -> np.ndarray:
    """Each True pixel's distance to the nearest False pixel (0 on False; all ``inf`` when
    there is no False pixel)."""
    if mask.all():
        return np.full(mask.shape, np.inf)
    return ndimage.distance_transform_edt(mask)


def fill_holes(mask) -> np.ndarray:
    """``mask`` (``HxW bool``) with its holes (False regions off the border) filled."""
    return ndimage.binary_fill_holes(to_mask(mask))


def remove_small(mask, min_area: int) -> np.ndarray:
    """``mask`` (``HxW bool``) without its islands (8-connected) of fewer than ``min_area``
    pixels; ``0`` or ``1`` keeps everything."""
    m, min_area = to_mask(mask), check_int(min_area, "min_area", low=0)
    labels, count = ndimage.label(m, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return m
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    keep = areas >= min_area
    keep[0] = False  # label 0 is the background
    return keep[labels]


def grow(mask, px: float) -> np.ndarray:
    """Dilate ``mask`` by ``px`` pixels (negative: :func:`shrink`): a pixel is added when its
    centre lies within ``px`` of a mask pixel's, a dilation with a disk of radius ``px``
    (``grow(m, 1)`` adds the 4-neighbours). Returns ``HxW bool``."""
    m = to_mask(mask)
    px = check_pixels(px, "px")
    if px < 0:
        return _shrink(m, -px)
    if px == 0 or not m.any():
        return m
    return ~_shrink(~m, px)


def shrink(mask, px: float) -> np.ndarray:
    """Erode ``mask`` by ``px >= 0`` pixels, the complement of growing the background: a pixel
    stays when its centre is more than ``px`` from every False pixel's. Returns ``HxW bool``."""
    return _shrink(to_mask(mask), check_number(px, "px", low=0))


def _shrink(m: np.ndarray, px: float) -> np.ndarray:
    if px == 0:
        return m
    return _inside_distance(m) > px


def inner_radius(mask) -> float:
    """The radius (pixels) of the mask's thickest part: the largest distance from a True pixel
    to the nearest False one. ``shrink(mask, px)`` and the opaque part of ``feather(mask, px)``
    are empty exactly when ``px >= inner_radius(mask)``. 0 when empty, ``inf`` when full."""
    m = to_mask(mask)
    return float(_inside_distance(m).max()) if m.any() else 0.0


def feather(mask, radius: float) -> np.ndarray:
    """A soft ``HxW float32`` alpha matte of ``mask`` whose ramp of ``radius`` pixels (>= 0)
    lies inside the mask. With ``d`` each pixel's distance to the nearest False pixel:

    * ``alpha == 1.0`` exactly where ``d > radius`` (on ``shrink(mask, radius)``);
    * ``alpha == 0.0`` exactly outside ``mask``;
    * in between, ``smoothstep((d - 0.5) / radius)``, strictly between 0 and 1.

    A radius below 1 gives the hard mask as float.
    """
    m = to_mask(mask)
    radius = check_number(radius, "radius", low=0)
    if radius < 1:  # d >= 1 on the mask: all of it is inner (and a tiny radius would overflow)
        return m.astype(np.float32)
    d = _inside_distance(m)
    inner = d > radius
    t = np.clip((d - 0.5) / radius, 0.0, 1.0)
    ramp = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
    # For a huge radius float32 could round a ramp value up to 1.0: keep it strictly below.
    ramp = np.minimum(ramp, np.nextafter(np.float32(1), np.float32(0)))
    return np.where(inner, np.float32(1), np.where(m, ramp, np.float32(0))).astype(np.float32)


def bbox(mask) -> tuple[int, int, int, int] | None:
    """The bounding box of ``mask``'s True pixels, ``(x0, y0, x1, y1)`` ints with ``x1``/``y1``
    exclusive (``mask[y0:y1, x0:x1]`` is the tightest crop); ``None`` for an empty mask."""
    m = to_mask(mask)
    cols = np.flatnonzero(m.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(m.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _finite_array(value, shape_hint: str, name: str) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {shape_hint} of numbers, got {value!r}") from None
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite numbers, got {value!r}")
    return a


def overlay(
    image: ImageLike,
    mask=None,
    *,
    color: Sequence[int] = (30, 144, 255),
    alpha: float = 0.45,
    outline: bool = True,
    points: Sequence[Sequence[float]] | np.ndarray | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    box: Sequence[float] | None = None,
) -> Image.Image:
    """A new ``RGB`` picture: ``image`` with ``mask``, click points and a box drawn over it.

    Args:
        mask: ``HxW`` mask of the image's size, tinted ``color`` (``(r, g, b)``) at opacity
            ``alpha`` (0..1), with its contours when ``outline``.
        points: ``N`` points ``(x, y)`` in image pixels with ``N`` ``labels`` (default all 1),
            drawn as green (1) or red (0) discs with a white rim.
        box: ``(x0, y0, x1, y1)`` in image pixels, drawn in amber.
    """
    rgb = to_rgb(image)
    w, h = rgb.size
    out = np.array(rgb, dtype=np.uint8)
    try:
        tint = tuple(int(c) for c in color)
    except (TypeError, ValueError):
        tint = ()
    if len(tint) != 3 or not all(0 <= c <= 255 for c in tint):
        raise ValueError(f"color must be an (r, g, b) triple of 0..255, got {color!r}")
    alpha, outline = check_fraction(alpha, "alpha"), check_flag(outline, "outline")
    # coordinates far off the picture are drawn where they are equally invisible: OpenCV
    # takes only 32-bit integers
    far = (-(w + h), 2 * (w + h))
    thickness = max(1, round(min(w, h) / 400))

    if mask is not None:
        m = to_mask(mask, (w, h))
        blended = out[m].astype(np.float32) * (1.0 - alpha) + np.float32(alpha) * np.array(tint)
        out[m] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        if outline and m.any():
            contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, tint, thickness)

    if box is not None:
        b = np.clip(_finite_array(box, "(x0, y0, x1, y1)", "box").ravel(), *far)
        if b.size != 4:
            raise ValueError(f"box must be (x0, y0, x1, y1), got {box!r}")
        x0, x1 = sorted((round(b[0]), round(b[2])))
        y0, y1 = sorted((round(b[1]), round(b[3])))
        cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOR, thickness + 1)

    if points is not None:
        p = _finite_array(points, "N x 2 (x, y)", "points")
        if p.size == 0:
            p = p.reshape(0, 2)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"points must be N x 2 (x, y), got shape {p.shape}")
        lab = np.ones(len(p), dtype=int) if labels is None else np.asarray(labels).ravel()
        if len(lab) != len(p) or not np.isin(lab, (0, 1)).all():
            raise ValueError(f"labels must be {len(p)} values of 1 (include) or 0 (exclude)")
        radius = max(3, round(min(w, h) / 80))
        for (x, y), label in zip(np.clip(p, *far), lab, strict=True):
            centre = (round(x), round(y))
            fill = POSITIVE_COLOR if label == 1 else NEGATIVE_COLOR
            cv2.circle(out, centre, radius + max(1, radius // 3), (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(out, centre, radius, fill, -1, cv2.LINE_AA)
    return Image.fromarray(out, mode="RGB")
