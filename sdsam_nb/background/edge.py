"""The subject's edge when it is pasted onto new pixels: a feathered binary mask (the kit's
first behaviour) or a soft alpha matte with the old background's colour taken out of the
edge (:mod:`sdsam_nb.edges`), or an alpha the caller made."""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from .. import edges, masks
from ..recording import recorded
from .common import paste

EDGES = ("feather", "matte")
DEFAULT_BAND = 8  # px either side of the mask's edge that matting estimates


def fit_band(mask: np.ndarray, band: float) -> float | None:
    """``band``, narrowed where the picture has no room for it: at most the subject's
    half-thickness less a pixel (so the mask shrunk by the band keeps some sure subject) and
    the background's widest reach from the subject less a pixel (so the mask grown by it
    leaves some sure background: a subject that fills the frame). ``None`` when either is
    under 2 px (then the feather is used)."""
    half = masks.inner_radius(np.pad(mask, 1))
    room = masks.inner_radius(~np.asarray(mask, bool))  # the frame is not an edge
    if half < 2 or room < 2:
        return None
    return min(float(band), half - 1, room - 1)


def kept_width(mask: np.ndarray, edge, feather: float) -> float:
    """How far inside ``mask`` (pixels) the subject's own pixels are kept exactly when it is
    pasted with ``edge``: ``feather`` for a feathered edge; for ``"matte"`` the band of
    :func:`fit_band` (where the matte's alpha is exactly 1), or ``feather`` for a subject
    too thin for a band. :func:`~sdsam_nb.background.score_results`' ``shrink``."""
    fitted = fit_band(mask, DEFAULT_BAND) if isinstance(edge, str) and edge == "matte" else None
    return feather if fitted is None else fitted


def check_feather(mask: np.ndarray, feather: float, *, subject: str = "the subject") -> None:
    """Raise a one-line ``ValueError`` if ``masks.feather(mask, feather)`` leaves no pixel of
    ``mask`` fully opaque, i.e. ``feather >= masks.inner_radius(mask)``: such a subject would
    be pasted as a faint ghost, or not at all (an alpha that rounds to 0 on every pixel), while
    its mask still says it is there. ``subject`` names it in the message (e.g. with its scale).
    """
    depth = masks.inner_radius(mask)
    if feather >= depth:
        raise ValueError(
            f"feather={feather:g} px is too wide for {subject}: its thickest part is "
            f"{depth:.4g} px from its edge, so no pixel of it would be pasted whole; use "
            f"feather < {depth:.4g} (e.g. {math.ceil(depth) - 1})"
        )


def subject_alpha(
    picture: Image.Image, mask: np.ndarray, edge, *, feather: float, band: float = DEFAULT_BAND
) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha, foreground)`` for pasting ``picture``'s subject: ``HxW float`` alpha in
    ``[0, 1]`` and the ``HxWx3 uint8`` colours to paste.

    * ``"feather"``: ``masks.feather(mask, feather)`` and the picture's own pixels (a
      ``feather`` at least as wide as the subject is refused, :func:`check_feather`);
    * ``"matte"``: :func:`sdsam_nb.edges.matte` (``band`` px either side of the mask's
      edge, narrowed by :func:`fit_band` for a thin subject) and
      :func:`sdsam_nb.edges.estimate_foreground` (decontaminated colours);
    * an ``HxW`` float array in ``[0, 1]``: that alpha and the picture's own pixels (the
      textbook ``alpha * F + (1 - alpha) * B``).

    Raises:
        ValueError: another ``edge``, an alpha of the wrong size or outside ``[0, 1]``, or a
            ``feather`` the subject is too thin for.
    """
    pixels = np.asarray(picture)
    if isinstance(edge, str) and edge == "matte":
        fitted = fit_band(mask, band)
        if fitted is not None:
            alpha = edges.matte(picture, mask, band=fitted)
            return alpha, edges.estimate_foreground(picture, alpha)
        edge = "feather"  # no band fits (see fit_band): the feather is used
    if isinstance(edge, str) and edge == "feather":
        check_feather(mask, feather)
        return masks.feather(mask, feather), pixels
    if isinstance(edge, np.ndarray):
        h, w = mask.shape
        if edge.shape != (h, w):
            raise ValueError(
                f"edge: an alpha of {edge.shape} given for a {w}x{h} picture; it must be HxW "
                f"= ({h}, {w}) floats in 0..1"
            )
        alpha = edge.astype(np.float32)
        if not np.isfinite(alpha).all() or alpha.min() < 0 or alpha.max() > 1:
            raise ValueError("edge: the alpha must hold numbers in 0..1 (1 = subject)")
        return alpha, pixels
    raise ValueError(
        f"edge must be one of {list(EDGES)} or an HxW float alpha in 0..1, not {edge!r}"
    )


@recorded("edge_closeups")
def edge_closeups(
    picture: Image.Image,
    mask: np.ndarray,
    background,
    *,
    feather: float,
    band: float = DEFAULT_BAND,
    size: int = 96,
    zoom: int = 3,
) -> list[Image.Image]:
    """The same stretch of the subject's edge pasted onto ``background`` (a picture of the
    subject picture's size) with each of :data:`EDGES`, cut out around the softest part of
    the edge and enlarged ``zoom`` times (nearest neighbour, so pixels stay visible): what a
    notebook shows to compare a feathered and a matted edge.
    """
    back = np.asarray(
        background.convert("RGB") if isinstance(background, Image.Image) else background
    )
    if back.shape[:2] != mask.shape:
        raise ValueError("background must have the subject picture's size")
    pasted = {}
    for edge in EDGES:
        alpha, colours = subject_alpha(picture, mask, edge, feather=feather, band=band)
        pasted[edge] = paste(back, colours, alpha.astype(np.float32))
        if edge == "matte":
            soft = ((alpha > 0.02) & (alpha < 0.98)).astype(np.float32)
    h, w = mask.shape
    side = min(size, h, w)
    density = cv2.blur(soft, (side, side)) if soft.any() else masks.feather(mask, 1)
    y, x = np.unravel_index(int(np.argmax(density)), density.shape)
    top = int(np.clip(y - side // 2, 0, h - side))
    left = int(np.clip(x - side // 2, 0, w - side))
    return [
        Image.fromarray(pasted[edge][top : top + side, left : left + side]).resize(
            (side * zoom, side * zoom), Image.NEAREST
        )
        for edge in EDGES
    ]
