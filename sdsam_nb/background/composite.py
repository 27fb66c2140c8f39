"""Compositing a cut-out subject onto a background."""

from __future__ import annotations

import numbers

import cv2
import numpy as np
from PIL import Image

from .. import masks
from ..edges import check_feather, contact_shadow, paste, subject_alpha
from ..images import ImageLike, check_min_size, check_pixel_limit, to_rgb
from ..recording import recorded
from ..validate import check_flag, check_number
from .common import (
    DEFAULT_FEATHER,
    HARMONIZE_STRENGTH,
    checked_subject,
    resize_mask,
)

MAX_GAIN = 2.0  # harmonizing changes the subject's contrast by at most this factor
L_RANGE = (5.0, 95.0)  # ... and moves its lightness (CIE L*) no further out than this


def _harmonize(pixels: np.ndarray, where: np.ndarray, target: np.ndarray, t: float) -> np.ndarray:
    """Move the LAB mean and std of ``pixels[where]`` a fraction ``t`` towards ``target``'s.

    Within bounds that keep the subject visible on any background: its contrast changes by
    at most :data:`MAX_GAIN` either way, and its lightness moves only as far as its darkest
    and lightest pixels stay within :data:`L_RANGE` (on a flat black background the
    statistics alone would flatten the subject to black)."""
    lab = cv2.cvtColor(pixels.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    ref = cv2.cvtColor(target.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    src = lab[where]
    mean_s, std_s = src.mean(axis=0), src.std(axis=0)
    mean_t, std_t = ref.mean(axis=0), ref.std(axis=0)
    mean_new = mean_s + t * (mean_t - mean_s)
    std_new = std_s + t * (std_t - std_s)
    gain = np.where(std_s > 1e-6, std_new / np.maximum(std_s, 1e-6), 1.0)
    gain = np.clip(gain, 1 / MAX_GAIN, MAX_GAIN)
    # L in [0, 100]: the darkest pixel no darker than L_RANGE[0] (or its own), the lightest
    # no lighter than L_RANGE[1] (or its own): never black on black, nor white on white
    floor, ceiling = min(src[:, 0].min(), L_RANGE[0]), max(src[:, 0].max(), L_RANGE[1])
    low = floor + gain[0] * (mean_s[0] - src[:, 0].min())
    high = ceiling - gain[0] * (src[:, 0].max() - mean_s[0])
    if low <= high:
        mean_new[0] = np.clip(mean_new[0], low, high)
    lab = (lab - mean_s) * gain + mean_new
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _position(position, size: tuple[int, int], cut: tuple[int, int]) -> tuple[int, int]:
    (bw, bh), (cw, ch) = size, cut
    if isinstance(position, str):
        if position == "center":
            return (bw - cw) // 2, (bh - ch) // 2
        if position == "bottom":
            return (bw - cw) // 2, bh - ch
    elif (
        isinstance(position, (tuple, list))
        and len(position) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in position)
    ):
        return int(position[0]), int(position[1])
    raise ValueError(
        f'position must be "center", "bottom" or (x, y) integer pixels, got {position!r}'
    )


def _shadow_options(shadow) -> dict:
    if shadow is True:
        return {}
    if isinstance(shadow, dict):
        unknown = set(shadow) - {"direction", "distance", "softness", "squash", "opacity"}
        if unknown:
            raise ValueError(
                f"shadow: unknown option(s) {sorted(unknown, key=repr)}; use direction, "
                "distance, softness, squash, opacity"
            )
        return dict(shadow)
    raise ValueError(f"shadow must be True, False or a dict of options, not {shadow!r}")


@recorded("composite")
def composite(
    image: ImageLike,
    subject_mask,
    background: ImageLike,
    *,
    scale: float = 1.0,
    position: str | tuple[int, int] = "center",
    feather: float = DEFAULT_FEATHER,
    harmonize: bool | float = False,
    return_mask: bool = False,
    edge="feather",
    shadow: bool | dict = False,
) -> Image.Image | tuple[Image.Image, np.ndarray]:
    """Paste the subject of ``image`` onto ``background``.

    The cut-out is the mask's bounding box (:func:`sdsam_nb.masks.bbox`), resized with
    LANCZOS (its mask by area average) when ``scale != 1``, copied exactly otherwise; its edge
    is feathered over ``feather`` px inside the mask (the cut-out's border counts as an edge),
    so at ``scale == 1`` without harmonizing the subject is pixel-identical on
    ``masks.shrink(placed_mask, feather)``.

    Args:
        image: the subject picture; ``subject_mask``: its ``HxW bool`` mask (True = subject).
        background: the new background (any size, both sides >= 64); it sets the output size.
        scale: size factor of the cut-out (> 0).
        position: ``"center"``, ``"bottom"`` (centred, resting on the bottom edge: products),
            or ``(x, y)``: the bounding box's top-left corner in background pixels. What falls
            outside the background is clipped; a subject entirely outside is an error.
        feather: soft-edge width in pixels (>= 0), less than the (scaled) subject is thick
            (:func:`~sdsam_nb.edges.check_feather`).
        harmonize: ``True`` moves the subject's per-channel mean and std in CIE LAB
            ``HARMONIZE_STRENGTH`` (half) of the way towards the background's; a number in
            ``[0, 1]`` sets that fraction. Bounded so the subject stays visible: its contrast
            at most halved or doubled, its lightness (L*) kept within 5..95 or its own range.
        return_mask: also return where the subject went.
        edge: ``"feather"`` (the mask feathered by ``feather``), ``"matte"`` (a soft alpha
            matte with decontaminated edge colours, :mod:`sdsam_nb.edges`; the cut-out then
            holds the soft edge up to 8 px outside the mask too), or an ``HxW`` float alpha
            of ``image`` in 0..1 (pasted as ``alpha * F + (1 - alpha) * B``, ``F`` the
            picture's own pixels).
        shadow: a soft contact shadow cast from the subject's alpha
            (:func:`sdsam_nb.edges.contact_shadow`): ``True`` with its defaults, or a dict of
            its arguments (``direction``, ``distance``, ``softness``, ``squash``,
            ``opacity``); ``False`` (default) casts none.

    Returns:
        An ``RGB`` ``PIL.Image`` of the background's size; with ``return_mask`` a tuple
        ``(image, placed_mask)``, ``placed_mask`` the scaled, clipped ``HxW bool`` subject
        mask at the background's size (e.g. for :func:`object_expansion`).

    Raises:
        ValueError: a bad argument (named in the message), a mask of another size than the
            image, an empty or full mask, a picture under 64 px or over the pixel limit
            (:func:`~sdsam_nb.images.max_pixels`, also for the cut-out at ``scale``), a
            ``feather`` wider than the subject, or a subject placed entirely outside the
            background.
    """
    picture, mask = checked_subject(image, subject_mask)
    back = to_rgb(background, name="background")
    check_min_size(back, name="background")
    scale = check_number(scale, "scale", low=0.0, open_low=True)
    feather = check_number(feather, "feather", low=0.0)
    if harmonize is True:
        strength = HARMONIZE_STRENGTH
    elif harmonize is False:
        strength = 0.0
    else:
        strength = check_number(harmonize, "harmonize", low=0.0, high=1.0)
    return_mask = check_flag(return_mask, "return_mask")
    shadow_options = None if shadow is False else _shadow_options(shadow)
    mx0, my0, mx1, my1 = masks.bbox(mask)  # the work below is bounded before it is done
    what = f"at scale={scale:g} the {mx1 - mx0}x{my1 - my0} px subject"
    check_pixel_limit((mx1 - mx0) * scale, (my1 - my0) * scale, what, fix="lower scale")

    if isinstance(edge, str) and edge == "feather":
        x0, y0, x1, y1 = mx0, my0, mx1, my1
        cut = picture.crop((x0, y0, x1, y1))
        soft = None
    else:  # the cut-out holds everything the alpha touches, the mask's box inside it
        full_alpha, colours = subject_alpha(picture, mask, edge, feather=feather)
        x0, y0, x1, y1 = masks.bbox(full_alpha > 0)
        cut = Image.fromarray(colours[y0:y1, x0:x1], mode="RGB")
        soft = full_alpha[y0:y1, x0:x1]
    cut_mask = mask[y0:y1, x0:x1]
    offset = (mx0 - x0, my0 - y0)
    if scale != 1.0:
        new = (round((x1 - x0) * scale), round((y1 - y0) * scale))
        cut_mask = resize_mask(cut_mask, new) if min(new) >= 1 else cut_mask[:0, :0]
        if not cut_mask.any():
            raise ValueError(
                f"scale={scale:g} shrinks the {x1 - x0}x{y1 - y0} px subject to nothing"
            )
        cut = cut.resize(new, Image.LANCZOS)
        if soft is not None:
            shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            soft = np.clip(cv2.resize(soft, new, interpolation=shrink), 0.0, 1.0)
        offset = (round(offset[0] * scale), round(offset[1] * scale))
    pixels = np.asarray(cut)
    if strength > 0:
        pixels = _harmonize(pixels, cut_mask, np.asarray(back), strength)

    bw, bh = back.size
    ch, cw = cut_mask.shape
    if soft is None:
        # One px of padding makes the cut-out's border an edge of the mask for feathering.
        padded = np.pad(cut_mask, 1)
        scaled = "the subject" if scale == 1 else f"the subject at scale={scale:g}"
        check_feather(padded, feather, subject=scaled)
        alpha = masks.feather(padded, feather)[1:-1, 1:-1]
        x, y = _position(position, (bw, bh), (cw, ch))
    else:  # placed by the mask's box, as the feathered cut-out is
        alpha = soft
        box = masks.bbox(cut_mask)
        mx, my = _position(position, (bw, bh), (box[2] - box[0], box[3] - box[1]))
        x, y = mx - offset[0], my - offset[1]
    # Clip the cut-out to the background: [cx0, cx1) x [cy0, cy1) of the cut-out lands on it.
    cx0, cy0 = max(0, -x), max(0, -y)
    cx1, cy1 = min(cw, bw - x), min(ch, bh - y)
    if cx0 >= cx1 or cy0 >= cy1 or not cut_mask[cy0:cy1, cx0:cx1].any():
        raise ValueError(
            f"position={position!r} puts the subject ({cw}x{ch} px) entirely outside the "
            f"{bw}x{bh} background"
        )
    region = (slice(y + cy0, y + cy1), slice(x + cx0, x + cx1))
    inside = (slice(cy0, cy1), slice(cx0, cx1))
    out = np.array(back)
    if shadow_options is not None:
        placed_alpha = np.zeros((bh, bw), np.float32)
        placed_alpha[region] = alpha[inside]
        dark = contact_shadow(placed_alpha, **shadow_options)
        out = np.clip(np.rint(out * (1.0 - dark[..., None])), 0, 255).astype(np.uint8)
    out[region] = paste(out[region], pixels[inside], alpha[inside])
    result = Image.fromarray(out, mode="RGB")
    if not return_mask:
        return result
    placed = np.zeros((bh, bw), dtype=bool)
    placed[region] = cut_mask[inside]
    return result, placed
