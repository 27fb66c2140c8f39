"""Reframing (:func:`reframe`): the subject on a new canvas of another size or aspect (a square
shot as a 16:9 banner), scaled and placed where asked, the rest painted by any background method.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from .. import masks
from ..edges import subject_alpha
from ..images import MIN_SIDE, ImageLike, check_pixel_limit
from ..recording import recorded
from ..validate import check_int, check_number, is_number
from .common import DEFAULT_FEATHER, Variations, checked_subject, resize_mask
from .inpaint import inpaint_background

# a named position -> where the subject's box goes: (x, y) fractions of the free space
POSITIONS = {
    "center": (0.5, 0.5),
    "top": (0.5, 0.0),
    "bottom": (0.5, 1.0),
    "left": (0.0, 0.5),
    "right": (1.0, 0.5),
    "top-left": (0.0, 0.0),
    "top-right": (1.0, 0.0),
    "bottom-left": (0.0, 1.0),
    "bottom-right": (1.0, 1.0),
}
_ASPECT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[:x/]\s*(\d+(?:\.\d+)?)\s*$")


def parse_aspect(aspect) -> float:
    """``"16:9"``, ``"4x5"``, ``"1.91:1"`` or a number (width / height) as a ratio > 0."""
    if is_number(aspect) and not isinstance(aspect, bool):
        ratio = float(aspect)
    else:
        match = _ASPECT.match(aspect) if isinstance(aspect, str) else None
        if match is None:
            raise ValueError(
                f"aspect={aspect!r} is not an aspect ratio: give 'W:H' such as '16:9' or a "
                "number (width / height)"
            )
        w, h = float(match.group(1)), float(match.group(2))
        ratio = w / h if h > 0 else math.inf
    if not math.isfinite(ratio) or ratio <= 0 or ratio > 20 or ratio < 1 / 20:
        raise ValueError(
            f"aspect={aspect!r} is not a usable aspect ratio: both sides must be > 0 and the "
            "ratio between 1:20 and 20:1"
        )
    return ratio


def canvas_size(
    width: int, height: int, *, size: Sequence[int] | None = None, aspect=None
) -> tuple[int, int]:
    """The new canvas ``(w, h)``: ``size`` as given, or the smallest canvas of ``aspect``
    that holds the whole ``width`` x ``height`` picture (so a square shot turned 16:9 gains
    width and keeps its height).

    Both sides are at least 64 px (``width`` and ``height`` too) and the canvas is at most
    :func:`~sdsam_nb.images.max_pixels` (50 megapixels by default); either is refused with a
    ``ValueError`` naming ``size`` or ``aspect`` before anything is allocated."""
    if (size is None) == (aspect is None):
        raise ValueError("give either size=(w, h) or aspect='W:H' for the new canvas")
    if size is not None:
        if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
            raise ValueError(f"size must be (width, height) in pixels, not {size!r}")
        w = check_int(size[0], "size[0]", low=MIN_SIDE)
        h = check_int(size[1], "size[1]", low=MIN_SIDE)
        check_pixel_limit(w, h, f"size=({w}, {h})", fix="give a smaller size")
        return w, h
    width = check_int(width, "width", low=MIN_SIDE)
    height = check_int(height, "height", low=MIN_SIDE)
    ratio = parse_aspect(aspect)
    if ratio >= width / height:
        w, h = max(MIN_SIDE, round(height * ratio)), height
    else:
        w, h = width, max(MIN_SIDE, round(width / ratio))
    what = f"the canvas of aspect={aspect!r} around the {width}x{height} picture"
    check_pixel_limit(w, h, what, fix="downscale the picture or choose a squarer aspect")
    return w, h


def _position(position) -> tuple[float, float]:
    if isinstance(position, str) and position in POSITIONS:
        return POSITIONS[position]
    if (
        isinstance(position, Sequence)
        and not isinstance(position, str)
        and len(position) == 2
        and all(is_number(v) and 0 <= float(v) <= 1 for v in position)
    ):
        return float(position[0]), float(position[1])
    raise ValueError(
        f"position={position!r} must be one of {list(POSITIONS)} or (x, y) fractions in 0..1 "
        "(0, 0: top-left; 1, 1: bottom-right)"
    )


def place_subject(
    image: ImageLike,
    subject_mask,
    canvas: tuple[int, int],
    *,
    scale: float = 1.0,
    position="center",
    alpha: np.ndarray | None = None,
    colours: np.ndarray | None = None,
) -> tuple[Image.Image, np.ndarray, tuple[int, int, int, int]]:
    """The subject at ``scale`` on a ``canvas`` (w, h) at ``position``.

    Returns ``(picture, mask, box)``: the canvas picture (the subject's pixels where the
    subject is, the rest filled with the mean colour of the old background: a neutral start
    for a repaint), its ``HxW bool`` subject mask and the subject's box ``(x0, y0, x1, y1)``
    on it (end exclusive). With a soft ``alpha`` of the picture (and its decontaminated
    ``colours``), the pixels it touches come along and the placed alpha is returned fourth.

    Raises:
        ValueError: a bad ``scale`` or ``position``, a picture over the pixel limit at
            ``scale`` (:func:`~sdsam_nb.images.max_pixels`), or a subject that does not fit.
    """
    picture, mask = checked_subject(image, subject_mask)
    scale = check_number(scale, "scale", low=0.0, open_low=True)
    fx, fy = _position(position)
    if colours is not None:
        picture = Image.fromarray(colours, mode="RGB")
    if scale != 1:
        what = f"at scale={scale:g} the {picture.size[0]}x{picture.size[1]} picture"
        check_pixel_limit(picture.size[0] * scale, picture.size[1] * scale, what, fix="lower scale")
        w, h = (max(1, round(v * scale)) for v in picture.size)
        picture, mask = picture.resize((w, h), Image.LANCZOS), resize_mask(mask, (w, h))
        if not mask.any():
            raise ValueError(f"scale={scale:g} shrinks the subject to nothing: raise scale")
        if alpha is not None:
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            alpha = np.clip(cv2.resize(alpha, (w, h), interpolation=interpolation), 0.0, 1.0)
    carried = mask if alpha is None else (alpha > 0) | mask  # what goes onto the canvas
    x0, y0, x1, y1 = masks.bbox(carried)  # end exclusive
    bw, bh = x1 - x0, y1 - y0
    cw, ch = canvas
    if bw > cw or bh > ch:
        raise ValueError(
            f"the subject at scale={scale:g} is {bw}x{bh} px, larger than the {cw}x{ch} "
            "canvas: lower scale or give a larger size"
        )
    left, top = round(fx * (cw - bw)), round(fy * (ch - bh))
    pixels = np.asarray(picture)
    background = pixels[~mask]
    fill = background.mean(axis=0) if len(background) else np.full(3, 127.0)
    out = np.full((ch, cw, 3), np.rint(fill), np.uint8)
    new_mask = np.zeros((ch, cw), bool)
    cut = carried[y0:y1, x0:x1]
    region = out[top : top + bh, left : left + bw]
    region[cut] = pixels[y0:y1, x0:x1][cut]
    new_mask[top : top + bh, left : left + bw] = mask[y0:y1, x0:x1]
    placed = Image.fromarray(out, mode="RGB"), new_mask, (left, top, left + bw, top + bh)
    if alpha is None:
        return placed
    new_alpha = np.zeros((ch, cw), np.float32)
    new_alpha[top : top + bh, left : left + bw] = alpha[y0:y1, x0:x1]
    return (*placed, new_alpha)


@recorded("reframe")
def reframe(
    pipe,
    image: ImageLike,
    subject_mask,
    prompt: str,
    *,
    size: Sequence[int] | None = None,
    aspect=None,
    scale: float = 1.0,
    position="center",
    feather: float = DEFAULT_FEATHER,
    model: str | os.PathLike | None = None,
    work_size: int = 512,
    edge="feather",
    **inpaint,
) -> Variations:
    """The subject on a new canvas, everything else painted from ``prompt``.

    Args:
        pipe: the text-to-image pipeline of :func:`sdsam_nb.load_sd`.
        image: the subject picture; ``subject_mask``: ``HxW bool``, True = subject.
        prompt: what the new picture shows around the subject.
        size: the canvas ``(width, height)`` in pixels (each >= 64, at most
            :func:`~sdsam_nb.images.max_pixels` in all): larger, smaller or as large as the
            picture, any aspect.
        aspect: instead of ``size``, an aspect ratio such as ``"16:9"``: the smallest canvas
            of that aspect that holds the whole picture.
        scale: the subject's size on the canvas relative to the picture (> 0; 0.6: smaller).
        position: where the subject's box goes: ``"center"``, ``"bottom"``, ``"top-left"``...
            (:data:`POSITIONS`) or ``(x, y)`` fractions of the free space (0..1).
        feather: soft edge of the pasted subject (pixels), as in ``inpaint_background``.
        model: the background method, as in :func:`inpaint_background` (``None``, ``"own"``,
            ``"auto"``, a dedicated inpainting checkpoint, ``"salient"``...).
        work_size: the long side the model paints at (``inpaint_background``'s ``size``).
        edge: ``"feather"`` or ``"matte"`` (the matte and its decontaminated colours are
            estimated on the original picture, then placed with the subject), as in
            :func:`inpaint_background`.
        **inpaint: the other arguments of :func:`inpaint_background` (``negative_prompt``,
            ``seed``, ``n``, ``steps``, ``guidance``, ``strength``, ``grow``,
            ``keep_subject``, ``scheduler``).

    Returns:
        :class:`Variations` of the canvas size; each ``info["reframe"]`` holds the canvas,
        the subject's box on it, the scale and the method. The subject's pixels (at
        ``scale``) are identical inside the mask shrunk by ``feather``.

    Raises:
        ValueError: a bad ``size``/``aspect`` (e.g. ``"16:0"``), ``scale`` or ``position``,
            a canvas or scaled picture over the pixel limit, a subject larger than the canvas
            at that scale, a ``feather`` wider than the placed subject, or a bad inpainting
            argument.
    """
    picture, mask = checked_subject(image, subject_mask)
    canvas = canvas_size(*picture.size, size=size, aspect=aspect)
    alpha = colours = None
    if isinstance(edge, str) and edge == "matte":  # estimated on the picture, then placed
        alpha, colours = subject_alpha(picture, mask, edge, feather=feather)
    placed, placed_mask, box, *soft = place_subject(
        picture, mask, canvas, scale=scale, position=position, alpha=alpha, colours=colours
    )
    results = inpaint_background(
        pipe,
        placed,
        placed_mask,
        prompt,
        feather=feather,
        model=model,
        size=work_size,
        edge=soft[0] if soft else edge,
        **inpaint,
    )
    for result in results:
        result.info["reframe"] = {
            "canvas": list(canvas),
            "box": list(box),
            "scale": float(scale),
            "method": result.info.get("method"),
        }
    return results
