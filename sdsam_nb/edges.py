"""Soft edges: an alpha matte from a binary subject mask, decontaminated subject colours, a
contact shadow, the compositing equation that puts them together, and how the kit pastes a
subject's edge onto new pixels.

A SAM mask is binary: pasted through it (even feathered) the subject keeps a fringe of its old
background's colour and loses hair and fur. The fix, in four steps:

1. :func:`trimap` splits the picture into sure subject (the mask shrunk by ``band`` px), sure
   background (outside the mask grown by ``band`` px) and an unknown band between them, widened
   by :func:`strand_band` where the picture shows strands (hair, fur) leaving the subject, up
   to ``reach`` px beyond the mask;
2. :func:`matte` estimates the alpha in that band (closed-form matting on the CPU, ViTMatte on
   a GPU);
3. :func:`estimate_foreground` recovers the subject's own colours where it is see-through;
4. :func:`blend` composites ``alpha * F + (1 - alpha) * B``, optionally over a background
   darkened by :func:`contact_shadow`.

The background functions (``composite``, ``inpaint_background``, ``reframe``) take the edge by
name (:data:`EDGES`): :func:`subject_alpha` gives the alpha and colours to :func:`paste` with,
a feathered mask (the kit's first behaviour) or the matte above, or an alpha the caller made;
:func:`edge_closeups` shows both side by side.

Conventions: pictures are ``HxWx3 uint8`` RGB (or anything :func:`sdsam_nb.images.to_rgb`
takes), masks ``HxW bool``, alphas and shadows ``HxW float32`` in ``[0, 1]``, distances in
pixels of the picture.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from . import masks
from .images import ImageLike, check_subject, to_mask, to_rgb
from .models.devices import pick_device
from .recording import recorded
from .validate import check_fraction, check_number, check_pixels

FOREGROUND, UNKNOWN, BACKGROUND = 255, 128, 0
"""The three values of a :func:`trimap`."""
FOREGROUND_MARGIN = 16
"""Pixels of context around the soft band that :func:`estimate_foreground` solves on."""
FOREGROUND_SMOOTHING = 0.1
"""pymatting's ``gradient_weight`` in :func:`estimate_foreground` (its default 1 smooths the
colours more where the alpha changes). Chosen on the edge benchmark's families over other pairs
(seed 1; rocket -> coffee, motorcycle -> astronaut, astronaut -> coffee, coffee -> rocket):
composite error (0..255) soft / hair / strands 2.15 / 1.73 / 4.45 with 1, 2.08 / 1.57 / 4.26
with 0.3, 2.06 / 1.52 / 4.22 with 0.1, 2.04 / 1.51 / 4.21 with 0.03."""
FOREGROUND_ITERATIONS = 4
"""pymatting's ``n_big_iterations`` there (its default 2): on the same scenes, with the
strands' pulls, 2.05 / 1.52 / 4.11 with 2, 1.96 / 1.48 / 4.08 with 4."""
EDGES = ("feather", "matte")
"""The edges the background functions paste a subject with, by name (see :func:`subject_alpha`)."""
DEFAULT_BAND = 8
"""Pixels either side of the mask's edge that matting estimates when a subject is pasted."""
DEFAULT_REACH = 40
"""Pixels beyond the mask's edge that the unknown band may reach where strands continue (see
:func:`strand_band`)."""
PRIOR_WEIGHT = 0.3
"""Strength of closed-form matting's pull towards the binary mask at the band's inner and outer
limits (see :func:`matte`). Chosen on a synthetic arrangement that the benchmark does not use
(the astronaut's colours over the rocket, onto the coffee cup; band 8 px): the composite's
error in the band was 3.65 / 3.53 (soft edge / hair) for 0 (plain closed-form matting),
2.61 / 2.54 for 0.1, 2.65 / 2.29 for 0.3, 3.10 / 2.07 for 1 (0..255)."""


def trimap(mask, band: float, *, strands: np.ndarray | None = None) -> np.ndarray:
    """The trimap of a binary subject mask.

    Args:
        mask: ``HxW`` subject mask (any form :func:`sdsam_nb.images.to_mask` takes).
        band: half-width of the unknown band in pixels, > 0: the band runs from ``band`` px
            inside the mask's edge to ``band`` px outside it.
        strands: optional ``HxW bool`` pixels outside the mask that the band is widened to
            (:func:`strand_band`); ``None`` (the default) keeps the band ``band`` px wide.

    Returns:
        ``HxW uint8``: 255 (:data:`FOREGROUND`) on ``shrink(mask, band)``, 0
        (:data:`BACKGROUND`) outside ``grow(mask, band)`` and ``strands``, 128
        (:data:`UNKNOWN`) between.

    Raises:
        ValueError: ``band`` is not a number > 0, the mask is empty or full, the band
            leaves no sure subject (it is wider than the subject) or no sure background, or
            ``strands`` is not an ``HxW bool`` array outside the mask.
    """
    m = to_mask(mask)
    check_subject(m, name="mask")
    band = check_number(band, "band", low=0, open_low=True)
    sure_fg = masks.shrink(m, band)
    if not sure_fg.any():
        raise ValueError(
            f"band={band:g} px is wider than the subject: shrinking the mask by it leaves "
            "no sure subject pixel; use a smaller band"
        )
    sure_bg = ~masks.grow(m, band)
    if not sure_bg.any():
        raise ValueError(
            f"band={band:g} px leaves no sure background: growing the mask by it covers the "
            "whole picture; use a smaller band"
        )
    out = np.full(m.shape, UNKNOWN, dtype=np.uint8)
    out[sure_fg] = FOREGROUND
    out[sure_bg] = BACKGROUND
    if strands is not None:
        if not (isinstance(strands, np.ndarray) and strands.dtype == bool):
            raise ValueError(f"strands must be an HxW bool array, not {type(strands).__name__}")
        if strands.shape != m.shape or (strands & m).any():
            raise ValueError(
                f"strands must be {m.shape[0]}x{m.shape[1]} (HxW, the mask's size) and lie "
                "outside the mask: make it with strand_band"
            )
        out[strands] = UNKNOWN
    return out


# --------------------------------------------------------------------------- strands

STRAND_CONTRAST = 20
"""How far (0..255, the largest over the channels) a line must stand out from its surroundings
to count as a strand: the white or black top-hat of a 5x5 disc, which keeps lines up to about
2 px wide and drops what is wider."""
STRAND_SEPARATION = 30.0
"""How different (0..255, Euclidean RGB) the nearby subject and the local background must be
for a line's colour to say which of the two it belongs to."""
STRAND_FIT = 0.2
"""The least share of the subject's colour a strand pixel holds: its colour projected on the
segment from the local background to the nearby subject's colour."""
STRAND_GROUP = 3
"""Lines within 6 px of each other that make a group (added after a lone line of the astronaut
photograph, widened to 6 px, made the benchmark's soft case astronaut -> rocket worse: 2.228 ->
2.236); a lone line gets 2 px around it and nothing more (as likely the background's)."""
STRAND_JOIN = 6
"""Pixels across which a group's strands take in the thin lines near them that only loosely
have the subject's colour (any share of it, within the segment's length; where the strict test
broke a strand or missed one beside it): hysteresis, as in Canny's edges."""
STRAND_MARGIN = 6
"""Pixels around a group's strands that the band takes in too (their soft sides, room for the
matte). STRAND_JOIN and STRAND_MARGIN were chosen on strand scenes the edge benchmark does not
use (seed 1; rocket -> coffee, motorcycle -> astronaut, astronaut -> coffee, coffee -> rocket):
composite error 6.15 (0..255) with a 6-px margin and no joining, 5.13 across 3 px with 3 px
around; with :data:`STRAND_PULL`, 4.65 there, 4.53 across 6-12 px (the same), 4.45 across 6 px
with 4 px around; with :data:`STRAND_GAP_PULL` too, 4.08 / 3.98 / 3.94 / 3.93 with 4 / 5 / 6 /
10 px around. The soft and hair scenes' bands do not change."""


def strand_band(
    image: ImageLike, mask, *, band: float = DEFAULT_BAND, reach: float = DEFAULT_REACH
) -> np.ndarray:
    """Where the subject's fine structure (hair, fur, strands) continues beyond its mask: the
    pixels outside the mask that :func:`trimap` adds to its unknown band, and where
    :func:`matte`'s pull towards the mask is released.

    A strand is a line that is (1) thin: it stands out of its surroundings by
    :data:`STRAND_CONTRAST` in a 5x5 white or black top-hat (OpenCV); (2) of the subject's
    colour: on the segment from the local background (a 7x7 median, which removes thin
    lines) to the colour of the subject nearby (a Gaussian mean, sigma 10 px, of the subject
    2-20 px inside its edge, carried outwards from the nearest such pixel), at least
    :data:`STRAND_FIT` of the way and within half the segment's length of it, where the two
    colours differ by :data:`STRAND_SEPARATION`; (3) leaving the subject: unbroken
    (8-connected), it starts within 3 px of the mask's edge and reaches further than
    ``2 * band`` px from it (lines within 1 px of such a line are taken with it). Where
    :data:`STRAND_GROUP` strands lie together, the thin lines within :data:`STRAND_JOIN` px of
    them that have the subject's colour only loosely are taken too (hysteresis). Hard edges, a
    background of the subject's colour, and lines of the background that do not leave the
    subject give no strands, so the band keeps its width there.

    Args:
        image: the picture (``HxWx3 uint8`` RGB, a ``PIL.Image`` or a path).
        mask: ``HxW`` binary subject mask of the same size.
        band: half-width of the unknown band in pixels, > 0 (default 8).
        reach: how far outside the mask's edge the band may grow, pixels (default 40); at
            most ``band`` turns the widening off.

    Returns:
        ``HxW bool``: the strands, 2 px around each and :data:`STRAND_MARGIN` px around a
        group's (and the lines it took in), outside the mask and at most ``reach`` px from it
        (empty where there are none).

    Raises:
        ValueError: a bad ``band``, ``reach`` or mask.
    """
    rgb = np.asarray(to_rgb(image))
    h, w = rgb.shape[:2]
    m = to_mask(mask, (w, h))
    check_subject(m, name="mask")
    band = check_number(band, "band", low=0, open_low=True)
    reach = check_number(reach, "reach", low=0)
    out = np.zeros(m.shape, bool)
    if reach <= band:
        return out
    rows, cols = _box(m, math.ceil(reach) + 16)  # 16 px of context for the filters
    out[rows, cols] = _strands(rgb[rows, cols], m[rows, cols], band, reach)
    return out


def _strands(pixels: np.ndarray, mask: np.ndarray, band: float, reach: float) -> np.ndarray:
    """:func:`strand_band` on a crop (``HxWx3 uint8``, ``HxW bool``)."""
    outside = ndimage.distance_transform_edt(~mask)
    none = np.zeros(mask.shape, bool)
    x = pixels.astype(np.float32)
    near = _near_colour(x, mask, 20, 10)
    if near is None:
        return none  # a subject too thin to tell its colour from its edge's
    contrast = _contrast(pixels)
    back = cv2.medianBlur(pixels, 7).astype(np.float32)
    along = near - back
    length2 = (along * along).sum(axis=2)
    share = ((x - back) * along).sum(axis=2) / np.maximum(length2, 1e-6)
    off2 = ((x - back - share[..., None] * along) ** 2).sum(axis=2)
    candidates = (
        (contrast > STRAND_CONTRAST)
        & (length2 > STRAND_SEPARATION**2)
        & (share > STRAND_FIT)
        & (off2 < 0.25 * length2)
        & ~mask
        & (outside <= reach)
    )
    # a line leaves the subject when, unbroken (8-connected), it runs from within 3 px of the
    # edge to further than twice the band; the lines within 1 px of such a line go with it
    lines, n = ndimage.label(candidates, structure=np.ones((3, 3)))
    if n == 0:
        return none
    index = np.arange(1, n + 1)
    leaves = np.zeros(n + 1, bool)
    leaves[1:] = (np.asarray(ndimage.minimum(outside, lines, index)) <= 3) & (
        np.asarray(ndimage.maximum(outside, lines, index)) > 2 * band
    )
    groups, _ = ndimage.label(masks.grow(candidates, 1), structure=np.ones((3, 3)))
    kept = np.zeros(groups.max() + 1, bool)
    kept[groups[leaves[lines]]] = True
    kept[0] = False
    strands = candidates & kept[groups]
    if not strands.any():
        return none
    zones, n_zones = ndimage.label(masks.grow(strands, 6), structure=np.ones((3, 3)))
    pairs = np.unique(np.stack([zones[strands], lines[strands]]), axis=1)
    group = np.bincount(pairs[0], minlength=n_zones + 1) >= STRAND_GROUP
    grouped = strands & group[zones]
    loose = (contrast > STRAND_CONTRAST) & (length2 > 400) & (share > 0) & (off2 < length2)
    loose &= ~mask & (outside <= reach)  # hysteresis: loose lines near a group's strands
    near_group, _ = ndimage.label(masks.grow(loose, STRAND_JOIN) | grouped, np.ones((3, 3)))
    joined = np.zeros(near_group.max() + 1, bool)
    joined[near_group[grouped]] = True
    grouped |= loose & joined[near_group]
    widened = masks.grow(strands, 2) | masks.grow(grouped, STRAND_MARGIN)
    return widened & ~mask & (outside <= reach)


def _contrast(pixels: np.ndarray) -> np.ndarray:
    """How far each pixel stands out of its surroundings, 0..255: the larger of a 5x5 disc's
    white and black top-hats, the largest over the channels (``HxW uint8``)."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    return np.maximum(
        cv2.morphologyEx(pixels, cv2.MORPH_TOPHAT, disc),
        cv2.morphologyEx(pixels, cv2.MORPH_BLACKHAT, disc),
    ).max(axis=2)


def _near_colour(x: np.ndarray, mask: np.ndarray, depth: float, sigma: float):
    """The subject's colour near each pixel (``HxWx3 float32``): a Gaussian mean (``sigma``
    px) of the subject 2-``depth`` px inside its edge, carried outwards from the nearest such
    pixel; ``None`` for a subject too thin for that."""
    inside = ndimage.distance_transform_edt(mask)
    ring = mask & (inside > 2) & (inside <= depth)
    if not ring.any():
        return None
    weight = ring.astype(np.float32)
    near = cv2.GaussianBlur(x * weight[..., None], (0, 0), sigma)
    near /= np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma), 1e-6)[..., None]
    _, (iy, ix) = ndimage.distance_transform_edt(~ring, return_indices=True)
    return near[iy, ix]


STRAND_PULL = 0.005
"""Strength of closed-form matting's pull, on a strand's line pixels, towards the alpha their
colours say (:func:`_strand_alpha`): the Laplacian alone gives strands over a busy background
too little alpha (mean 0.39-0.60 against a true 0.64 on their cores, seed-1 scenes below).
Chosen with the samples' window (5x5, 5 samples) and the line contrast (30) on strand scenes the
edge benchmark does not use (those of :data:`STRAND_MARGIN`): composite error (0..255) 5.14
without it, 4.74 with 0.01 (7x7, 8 samples, contrast 20), 4.65 (5x5, 5, 30; pulling every
pixel of the band instead of the lines: worse); later (joining across 6 px, 4 px around, the
colours' smoothing 0.1), 5.13 / 4.41 / 4.20 / 4.22 with 0 / 0.001 / 0.005 / 0.01, and with
the gap pull 4.13 / 4.11 / 4.14 / 4.23 with 0.003 / 0.005 / 0.01 / 0.02."""
STRAND_GAP_PULL = 0.03
"""Strength of the pull towards 0 where the strands' band shows no line (contrast under 5,
:func:`_contrast`): the background between and beside the strands, to which the Laplacian gave
alpha. On the scenes of :data:`STRAND_PULL` (at 0.01, 4 px around): composite error 4.22
without it; 4.18 / 4.14 / 4.15 with 0.01 / 0.03 / 0.1 (under 5); 4.29 with 1 (under 3)."""
STRAND_FLOOR, STRAND_CORE = 0.35, 0.5
"""On the strands' band, an alpha under STRAND_FLOOR is set to 0 unless it lies within 1 px of
an alpha of STRAND_CORE or more (a strand's soft side): the Laplacian leaks alpha into the
background's own lines and texture between the strands (on the benchmark's strand scenes, seed
0: 0.03-0.07 on average over the background pixels there, a third to nearly half of the
composite's error). Chosen on strand scenes the benchmark does not report (seeds 4, 5, 6, its
photograph pairs): composite error (0..255) 3.97 without it; every alpha under 0.1 / 0.2 / 0.3
set to 0: 3.71 / 3.60 / 3.66; with the soft sides kept (core 0.5, 1 px around), 3.54 / 3.42 /
3.40 / 3.40 / 3.44 / 3.50 with a floor of 0.2 / 0.3 / 0.35 / 0.4 / 0.45 / 0.5 (2 px around: 3.69
at 0.5); core 0.4: 3.44 at 0.4; core 0.6: 3.41 / 3.46 / 4.00 at 0.3 / 0.4 / 0.6. Soft and hair
there: 1.832 / 1.501 without it, 1.830 / 1.501 with it."""


def _strand_alpha(
    pixels: np.ndarray, mask: np.ndarray, strands: np.ndarray, ranks: np.ndarray | None = None
) -> tuple:
    """``(alpha, weight)`` (``HxW``) that the colours of the line pixels in ``strands`` say, as
    sampling matting does: the pixel's colour projected on the segment from the local
    background ``B`` to the subject's colour nearby ``F`` (2-8 px inside the edge, sigma 3 px).
    ``B`` is the mean of the 5 pixels of the 5x5 window around the pixel that hold the least of
    ``F``'s colour, or, given ``ranks`` (``HxW``, a first alpha), the least alpha (thin strands
    cover fewer than half of them: the background between them; a median takes in the strands
    where they are dense). The weight is :data:`STRAND_PULL` on
    line pixels (contrast over 30, :func:`_contrast`) where ``F`` and ``B`` differ by 60 or
    more (0..255, less below) and the colour lies near the segment (``exp(-d^2 / (0.25
    |F - B|^2))``, ``d`` its distance from the segment's line); :data:`STRAND_GAP_PULL`
    (alpha 0) on the pixels of ``strands`` that stand out by less than 5; 0 elsewhere."""
    alpha, weight = np.zeros(mask.shape), np.zeros(mask.shape)
    x = pixels.astype(np.float32)
    near = _near_colour(x, mask, 8, 3)
    contrast = _contrast(pixels)
    weight[strands & (contrast < 5) & ~mask] = STRAND_GAP_PULL  # no line: the background
    lines = strands & (contrast > 30) & ~mask
    if near is None or not lines.any():
        return alpha, weight
    ys, xs = np.nonzero(lines)
    fg, colour = near[ys, xs], x[ys, xs]
    along = fg - cv2.medianBlur(pixels, 7)[ys, xs]
    padded = np.pad(x, ((2, 2), (2, 2), (0, 0)), mode="symmetric")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5), axis=(0, 1))
    windows = windows[ys, xs].reshape(len(ys), 3, 25)  # N x RGB x 25 samples
    if ranks is None:
        shares = (windows * along[..., None]).sum(axis=1)  # the median's offset sorts nothing
    else:
        shares = np.pad(ranks, 2, mode="symmetric")
        shares = np.lib.stride_tricks.sliding_window_view(shares, (5, 5))[ys, xs].reshape(-1, 25)
    lowest = np.argpartition(shares, 5, axis=1)[:, None, :5]
    along = fg - np.take_along_axis(windows, lowest, axis=2).mean(axis=2)  # F - B
    length2 = np.maximum((along * along).sum(axis=1), 1e-6)
    share = ((colour - fg) * along).sum(axis=1) / length2 + 1.0  # (I - B).(F - B) / |F - B|^2
    off2 = ((colour - fg - (share - 1.0)[:, None] * along) ** 2).sum(axis=1)
    alpha[ys, xs] = np.clip(share, 0.0, 1.0)
    weight[ys, xs] = STRAND_PULL * np.clip(length2 / 60.0**2, 0, 1) * np.exp(-off2 / length2 / 0.25)
    return alpha, weight


# --------------------------------------------------------------------------- alpha matting


def _closed_form(
    pixels: np.ndarray,
    tri: np.ndarray,
    *,
    mask: np.ndarray,
    band: float,
    strands: np.ndarray | None = None,
    model=None,
    device=None,
) -> np.ndarray:
    """Closed-form matting (Levin et al. 2008) with a weak prior towards the binary mask.

    Minimises ``a' L a + sum_i w_i (a_i - p_i)^2`` (``p``: the mask) over the unknown pixels,
    ``L`` being the matting Laplacian (pymatting's ``cf_laplacian``, 3x3 windows, epsilon
    1e-7), solved with pymatting's conjugate gradients and incomplete-Cholesky preconditioner.
    The prior's weight ``w = PRIOR_WEIGHT * d / band`` grows with the distance ``d`` to the
    mask's edge: nothing at the edge, where the picture decides, and enough deep in the band to
    stop the alpha from drifting through textured regions where the colour-line model fails
    (plain closed-form matting's error grows with the band's width; with the prior it does
    not). On ``strands`` (:func:`strand_band`) the pull towards the mask is released (even 0.01
    fades a strand out): the Laplacian carries a strand's alpha along it from the subject, and
    its line pixels are pulled, by :data:`STRAND_PULL`, towards the alpha their colours say
    (:func:`_strand_alpha`), where no line is towards 0 (:data:`STRAND_GAP_PULL`); solved twice, the
    second time with the background sampled where the first alpha is least (on the seed-1
    scenes of :data:`STRAND_MARGIN`: composite error 3.94 -> 3.86; once without strands). On
    the strands' band an alpha under :data:`STRAND_FLOOR` away from a strand's core (the
    Laplacian's leak into the background) is set to 0.
    """
    from scipy import sparse

    cf_laplacian, cg, ichol = _pymatting("cf_laplacian", "cg", "ichol")

    known = tri != UNKNOWN
    unknown = ~known.ravel()
    laplacian = cf_laplacian(pixels.astype(np.float64) / 255.0, is_known=known)
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    edge = np.where(mask, inside, outside) - 0.5  # distance from the pixel's centre to the edge
    weight = PRIOR_WEIGHT * np.clip(edge / band, 0.0, 1.0)
    prior = mask.astype(np.float64)
    rows = laplacian[unknown]
    sure_fg = (tri == FOREGROUND).ravel()[known.ravel()].astype(np.float64)
    alpha = (tri == FOREGROUND).astype(np.float64).ravel()
    first, preconditioner = None, None
    for _ in range(2 if strands is not None and strands.any() else 1):
        if strands is not None and strands.any():  # the second pass ranks samples by alpha
            sampled, pull = _strand_alpha(pixels, mask, strands, first)
            weight[strands] = pull[strands]
            prior[strands] = sampled[strands]
        w = weight.ravel()[unknown]
        system = (rows[:, unknown] + sparse.diags(w)).tocsr()
        rhs = -rows[:, known.ravel()].dot(sure_fg) + w * prior.ravel()[unknown]
        preconditioner = ichol(system) if preconditioner is None else preconditioner
        alpha[unknown] = cg(system, rhs, x0=alpha[unknown], M=preconditioner)
        first = np.clip(alpha, 0.0, 1.0).reshape(tri.shape)
    alpha = np.clip(alpha, 0.0, 1.0).reshape(tri.shape)
    if strands is not None:
        core = masks.grow(alpha >= STRAND_CORE, 1)
        alpha[strands & (alpha < STRAND_FLOOR) & ~core] = 0.0
    return alpha.astype(np.float32)


def _vitmatte(
    pixels: np.ndarray,
    tri: np.ndarray,
    *,
    mask=None,
    band=None,
    strands=None,
    model=None,
    device=None,
) -> np.ndarray:
    """ViTMatte (transformers): ``model`` is a loaded :class:`~sdsam_nb.models.matting.VitMatte`,
    a hub id, a folder or ``"tiny"`` (``None``: the default checkpoint)."""
    from .models.matting import DEFAULT_VITMATTE, VitMatte, load_vitmatte

    net = model if isinstance(model, VitMatte) else None
    if net is None:
        net = load_vitmatte(DEFAULT_VITMATTE if model is None else model, device=device)
    return net(pixels, tri)


MATTING_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "closed_form": _closed_form,
    "vitmatte": _vitmatte,
}
"""Method name -> ``fn(pixels HxWx3 uint8, trimap HxW uint8, *, mask HxW bool, band px, strands
HxW bool, model, device) -> HxW float32 alpha`` (read only on the trimap's unknown pixels), on a
crop."""


def pick_method(method: str = "auto", device=None) -> str:
    """The matting method ``method`` stands for: ``"auto"`` is ``"vitmatte"`` when ``device``
    (``None``: the automatic device, see :func:`sdsam_nb.models.devices.pick_device`) is a
    CUDA GPU, else ``"closed_form"``; any other name must be a key of
    :data:`MATTING_METHODS`."""
    if method == "auto":
        return "vitmatte" if pick_device(device).type == "cuda" else "closed_form"
    if not isinstance(method, str) or method not in MATTING_METHODS:
        names = ", ".join(repr(n) for n in ("auto", *MATTING_METHODS))
        raise ValueError(f"method must be one of {names}, not {method!r}")
    return method


def _box(region: np.ndarray, margin: int) -> tuple[slice, slice]:
    """``(rows, cols)`` slices of ``region``'s bounding box grown by ``margin`` px, clipped to
    the picture."""
    x0, y0, x1, y1 = masks.bbox(region)
    h, w = region.shape
    return (
        slice(max(0, y0 - margin), min(h, y1 + margin)),
        slice(max(0, x0 - margin), min(w, x1 + margin)),
    )


def matte(
    image: ImageLike,
    mask,
    *,
    band: float = DEFAULT_BAND,
    reach: float = DEFAULT_REACH,
    method: str = "auto",
    model=None,
    device=None,
) -> np.ndarray:
    """A soft alpha matte of the subject ``mask`` marks in ``image``.

    The alpha is exactly 1 on the :func:`trimap`'s sure subject and exactly 0 on its sure
    background; in the unknown band (``band`` px either side of the mask's edge, widened up to
    ``reach`` px outside it where :func:`strand_band` finds strands) it is estimated by
    ``method``, on a crop of the picture around that band, so the cost follows the subject's
    size, not the picture's.

    Args:
        image: the picture (``HxWx3 uint8`` RGB, a ``PIL.Image`` or a path).
        mask: ``HxW`` binary subject mask of the same size, e.g. from SAM.
        band: half-width of the unknown band in pixels, > 0 (default 8). It must cover the
            mask's error: a soft edge further than ``band`` px outside the mask is cut off.
        reach: how far outside the mask's edge the band may grow where strands (hair, fur)
            continue, pixels (default 40); strands further out are cut off. At most ``band``:
            a band of fixed width (the kit's behaviour before).
        method: ``"closed_form"`` (closed-form matting with a weak pull towards the mask,
            pymatting, CPU; see :data:`PRIOR_WEIGHT`), ``"vitmatte"`` (transformers ViTMatte)
            or ``"auto"`` (the default: ViTMatte on a CUDA GPU, closed-form elsewhere).
        model: the ViTMatte to use: a loaded :class:`~sdsam_nb.models.matting.VitMatte`, a
            hub id, a folder or ``"tiny"``; ``None`` is
            ``hustvl/vitmatte-small-composition-1k``. Ignored by closed-form matting.
        device: where ViTMatte runs, and what ``"auto"`` looks at; ``None`` picks CUDA,
            then MPS, then the CPU.

    Returns:
        ``HxW float32`` alpha in ``[0, 1]``.

    Raises:
        ValueError: a bad ``band``, ``reach``, ``method`` or mask (see :func:`trimap`).
    """
    name = pick_method(method, device)
    rgb = np.asarray(to_rgb(image))
    h, w = rgb.shape[:2]
    m = to_mask(mask, (w, h))
    strands = strand_band(rgb, m, band=band, reach=reach)
    tri = trimap(m, band, strands=strands)
    band = float(band)
    if not (tri == UNKNOWN).any():  # a band under 1 px: no pixel is in doubt
        return (tri == FOREGROUND).astype(np.float32)
    rows, cols = _box(tri != BACKGROUND, math.ceil(band))
    crop = tri[rows, cols]
    estimate = MATTING_METHODS[name](
        rgb[rows, cols],
        crop,
        mask=m[rows, cols],
        band=band,
        strands=strands[rows, cols],
        model=model,
        device=device,
    )
    alpha = (tri == FOREGROUND).astype(np.float32)
    unknown = crop == UNKNOWN
    alpha[rows, cols][unknown] = np.clip(estimate[unknown], 0.0, 1.0)
    return alpha


# --------------------------------------------------------------------------- colours


def check_alpha(alpha, shape: tuple[int, int] | None, name: str = "alpha") -> np.ndarray:
    """``alpha`` as ``HxW float64`` in ``[0, 1]`` (of ``shape`` unless ``None``), or a one-line
    ``ValueError``."""
    if not isinstance(alpha, np.ndarray) or not (
        alpha.dtype == bool or np.issubdtype(alpha.dtype, np.floating)
    ):
        what = alpha.dtype if isinstance(alpha, np.ndarray) else type(alpha).__name__
        raise ValueError(f"{name} must be an HxW float array in 0..1, not {what}")
    if alpha.ndim != 2:
        raise ValueError(f"{name} must be HxW, got shape {alpha.shape}")
    if shape is not None and alpha.shape != tuple(shape):
        raise ValueError(
            f"{name} is {'x'.join(map(str, alpha.shape))} but the picture is "
            f"{shape[0]}x{shape[1]} (HxW): make it from this picture"
        )
    a = alpha.astype(np.float64)
    if not np.isfinite(a).all() or a.min(initial=0) < 0 or a.max(initial=0) > 1:
        raise ValueError(f"{name} must be finite values in 0..1, got {a.min()}..{a.max()}")
    return a


def estimate_foreground(image: ImageLike, alpha: np.ndarray) -> np.ndarray:
    """The subject's own colours, with the old background's colour taken out where the
    subject is see-through (``0 < alpha < 1``): pymatting's multi-level foreground estimation
    (Germer et al. 2020; smoothing :data:`FOREGROUND_SMOOTHING`), run on a crop around those
    pixels.

    Args:
        image: the picture the alpha was estimated on.
        alpha: ``HxW`` float alpha in ``[0, 1]``, e.g. from :func:`matte`.

    Returns:
        ``HxWx3 uint8`` RGB: the estimated subject colour where ``0 < alpha < 1``, the
        picture's own pixels everywhere else (unchanged where ``alpha == 1``).
    """
    rgb = np.asarray(to_rgb(image))
    a = check_alpha(alpha, rgb.shape[:2])
    out = rgb.copy()
    soft = (a > 0) & (a < 1)
    if not soft.any():
        return out
    (estimate_foreground_ml,) = _pymatting("estimate_foreground_ml")
    rows, cols = _box(soft, FOREGROUND_MARGIN)
    fg = estimate_foreground_ml(
        rgb[rows, cols] / 255.0,
        a[rows, cols],
        gradient_weight=FOREGROUND_SMOOTHING,
        n_big_iterations=FOREGROUND_ITERATIONS,
    )
    fg = np.clip(np.rint(fg * 255.0), 0, 255).astype(np.uint8)
    region = soft[rows, cols]
    out[rows, cols][region] = fg[region]
    return out


def _pymatting(*names: str) -> tuple:
    """pymatting's functions ``names``, imported without changing torch's CPU thread count.

    pymatting's import starts numba's OpenMP threads, which set the process's OpenMP thread
    count to numba's (every core); torch shares that count, so a process whose torch ran on
    fewer threads (``OMP_NUM_THREADS=1``, ``torch.set_num_threads``) would compute everything
    after its first soft edge with other sums than before it: an item's pictures would depend
    on its place in a batch or on which Ray worker ran it.
    """
    import torch

    threads = torch.get_num_threads()
    import pymatting

    torch.set_num_threads(threads)
    return tuple(getattr(pymatting, name) for name in names)


# --------------------------------------------------------------------------- shadow, blend


def contact_shadow(
    alpha: np.ndarray,
    *,
    direction: Sequence[float] = (0.0, 1.0),
    distance: float = 4.0,
    softness: float = 8.0,
    squash: float = 0.2,
    opacity: float = 0.4,
) -> np.ndarray:
    """A soft shadow where the subject meets the ground, to darken the new background with.

    The subject's alpha is squashed along ``direction`` to ``squash`` of its extent, towards
    its far edge in that direction (its base: the feet, for the default "down"), moved
    ``distance`` px further along ``direction``, blurred with a Gaussian of ``softness`` px
    (sigma), scaled to ``opacity`` and multiplied by ``1 - alpha`` so that it never covers
    the subject itself.

    Args:
        alpha: ``HxW`` float alpha of the subject in ``[0, 1]``.
        direction: ``(dx, dy)`` in picture axes (x right, y down), any non-zero length;
            default ``(0, 1)``: the light is above, the shadow falls downwards.
        distance: how far the shadow is moved along ``direction``, pixels (default 4), at
            most the picture's longer side either way (further, it would leave the picture).
        softness: Gaussian blur sigma in pixels, >= 0 (default 8; 0 is a hard shadow), at
            most the picture's longer side (wider, the shadow would be an even haze).
        squash: the shadow's extent along ``direction`` as a fraction of the subject's, in
            ``(0, 1]`` (default 0.2; 1 is the full silhouette, a cast shadow).
        opacity: the darkest the shadow gets, in ``[0, 1]`` (default 0.4).

    Returns:
        ``HxW float32`` shadow strength in ``[0, opacity]``: the fraction of the background's
        light taken away (``B * (1 - shadow)`` in :func:`blend`); 0 where ``alpha == 1``.

    Raises:
        ValueError: a bad argument (named in the message), e.g. a ``distance`` or
            ``softness`` beyond the picture's longer side.
    """
    a = check_alpha(alpha, None)
    try:
        d = np.asarray(direction, dtype=np.float64).ravel()
    except (TypeError, ValueError, OverflowError):
        d = np.array([np.nan])
    if d.size != 2 or not np.isfinite(d).all() or not np.abs(d).max() > 0:
        raise ValueError(f"direction must be a non-zero (dx, dy) pair, got {direction!r}")
    d = d / np.abs(d).max()  # first to at most 1: hypot cannot overflow or underflow
    d = d / np.hypot(*d)
    reach = max(a.shape)  # beyond the picture's longer side the arguments mean nothing here
    distance = check_pixels(distance, "distance")
    if abs(distance) > reach:
        raise ValueError(
            f"distance={distance:g} px moves the shadow off the {a.shape[1]}x{a.shape[0]} "
            f"picture: use at most {reach} px either way"
        )
    softness = check_number(softness, "softness", low=0, high=reach)
    squash = check_number(squash, "squash", low=0, high=1, open_low=True)
    opacity = check_fraction(opacity, "opacity")
    solid = a > 0.5
    if not solid.any():
        return np.zeros(a.shape, np.float32)
    ys, xs = np.nonzero(solid)
    base = float(np.max(xs * d[0] + ys * d[1]))  # the subject's far edge along d
    # forward map p -> p + (squash - 1) * ((p . d) - base) * d + distance * d
    squeeze = np.eye(2) + (squash - 1.0) * np.outer(d, d)
    shift = (-(squash - 1.0) * base + distance) * d
    forward = np.hstack([squeeze, shift[:, None]]).astype(np.float64)
    h, w = a.shape
    shadow = cv2.warpAffine(a.astype(np.float32), forward, (w, h), flags=cv2.INTER_LINEAR)
    if softness > 0:
        shadow = _gaussian_blur(shadow, softness)
    shadow = np.clip(shadow, 0.0, 1.0) * opacity * (1.0 - a)
    return np.minimum(shadow, opacity).astype(np.float32)


_BLUR_SIGMA = 16.0
"""Above this sigma (pixels) :func:`_gaussian_blur` blurs a reduced copy of the picture."""


def _gaussian_blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """``values`` (``HxW float32``) blurred with a Gaussian of ``sigma`` px, zero outside.

    OpenCV's kernel is about ``8 * sigma`` px wide, so the cost grows with ``sigma`` (a
    2048x2048 picture: 0.03 s at sigma 8, 9 s at 256, 270 s at 1024). Above
    :data:`_BLUR_SIGMA` the picture is reduced ``k = sigma / _BLUR_SIGMA`` times (area
    average), blurred with sigma ``_BLUR_SIGMA`` and enlarged back (bilinear): the same
    smooth result to within 3 % of its peak (measured up to sigma = the picture's side), at
    the cost of a sigma-16 blur (0.1 s on 2048x2048)."""
    if sigma <= _BLUR_SIGMA:
        return cv2.GaussianBlur(values, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    h, w = values.shape
    k = sigma / _BLUR_SIGMA
    small = (max(1, round(w / k)), max(1, round(h / k)))
    reduced = cv2.resize(values, small, interpolation=cv2.INTER_AREA)
    sx, sy = small[0] / w, small[1] / h  # the sigma in the reduced picture, per axis
    blurred = cv2.GaussianBlur(
        reduced, (0, 0), sigma * sx, sigmaY=sigma * sy, borderType=cv2.BORDER_CONSTANT
    )
    return cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)


def blend(
    foreground: ImageLike,
    background: ImageLike,
    alpha: np.ndarray,
    *,
    shadow: np.ndarray | None = None,
) -> np.ndarray:
    """Composite ``alpha * F + (1 - alpha) * B``, rounded to the nearest integer.

    Args:
        foreground: the subject's colours ``F`` (ideally from :func:`estimate_foreground`).
        background: the new background ``B``, the same size.
        alpha: ``HxW`` float alpha in ``[0, 1]`` (from :func:`matte`).
        shadow: optional ``HxW`` float shadow strength in ``[0, 1]`` (from
            :func:`contact_shadow`); the background becomes ``B * (1 - shadow)`` first.

    Returns:
        ``HxWx3 uint8`` RGB.
    """
    f = np.asarray(to_rgb(foreground, name="foreground"), dtype=np.float64)
    b = np.asarray(to_rgb(background, name="background"), dtype=np.float64)
    if f.shape != b.shape:
        raise ValueError(
            f"background is {b.shape[1]}x{b.shape[0]} but the foreground is "
            f"{f.shape[1]}x{f.shape[0]}: resize one to the other"
        )
    a = check_alpha(alpha, f.shape[:2])[..., None]
    if shadow is not None:
        b = b * (1.0 - check_alpha(shadow, f.shape[:2], "shadow")[..., None])
    out = a * f + (1.0 - a) * b
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def paste(base: np.ndarray, top: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha * top + (1 - alpha) * base`` (``HxWx3 uint8`` pictures, ``HxW`` alpha) in
    float32, rounded to uint8: exactly ``top`` where alpha is 1 (the arithmetic is exact there).
    What the background functions paste a subject with; :func:`blend` is the checked, float64
    form for any two pictures."""
    a = alpha[..., None]
    blended = np.rint(a * top.astype(np.float32) + (1.0 - a) * base.astype(np.float32))
    return np.clip(blended, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- pasting a subject


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
    picture: Image.Image, mask: np.ndarray, edge, *, feather: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha, foreground)`` for pasting ``picture``'s subject: ``HxW float`` alpha in
    ``[0, 1]`` and the ``HxWx3 uint8`` colours to paste.

    * ``"feather"``: ``masks.feather(mask, feather)`` and the picture's own pixels (a
      ``feather`` at least as wide as the subject is refused, :func:`check_feather`);
    * ``"matte"``: :func:`matte` (:data:`DEFAULT_BAND` px either side of the mask's edge,
      narrowed by :func:`fit_band` for a thin subject, widened up to :data:`DEFAULT_REACH` px
      outside it where strands continue) and :func:`estimate_foreground` (decontaminated
      colours);
    * an ``HxW`` float array in ``[0, 1]``: that alpha and the picture's own pixels (the
      textbook ``alpha * F + (1 - alpha) * B``).

    Raises:
        ValueError: another ``edge``, an alpha of the wrong size or outside ``[0, 1]``, or a
            ``feather`` the subject is too thin for.
    """
    pixels = np.asarray(picture)
    if isinstance(edge, str) and edge == "matte":
        fitted = fit_band(mask, DEFAULT_BAND)
        if fitted is not None:
            alpha = matte(picture, mask, band=fitted)
            return alpha, estimate_foreground(picture, alpha)
        edge = "feather"  # no band fits (see fit_band): the feather is used
    if isinstance(edge, str) and edge == "feather":
        check_feather(mask, feather)
        return masks.feather(mask, feather), pixels
    if isinstance(edge, np.ndarray):
        return check_alpha(edge, mask.shape, "edge").astype(np.float32), pixels
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
        alpha, colours = subject_alpha(picture, mask, edge, feather=feather)
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
