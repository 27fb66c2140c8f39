"""New backgrounds: generate a picture, repaint around a subject, or paste a subject onto one.

Conventions (see :mod:`sdsam_nb.images`): pictures are ``PIL.Image`` / ``HxWx3 uint8 RGB`` and go
through :func:`~sdsam_nb.images.to_rgb`; masks are ``HxW bool`` with ``True`` = subject. Only
where a mask is handed to diffusers is it inverted into an ``L`` image, white = repaint.

Reproducibility: every function that samples makes **one pipeline call and one
``torch.Generator`` per variation**, seeded ``seed + i`` on the pipeline's execution device.
Variation ``i`` of ``n`` is therefore the same picture as variation ``0`` of a single run with
``seed + i``, bit for bit, on the same machine, because the batch size (1) never changes.
Each returned image carries ``info["seed"]`` and ``info["nsfw"]``; the returned
:class:`Variations` list has ``.seeds`` and ``.nsfw`` as well.

The safety checker (when the pipeline has one) blacks out images it flags: those images get
``info["nsfw"] = True`` and a :class:`SafetyCheckerWarning` names the variations.

The scores at the end (:func:`object_expansion`, :func:`subject_fidelity`) measure how well a
result kept the subject. To get a result's own mask, segment the result with the same clicks
or box as the original: ``ClickSegmenter.from_dict(predictor, result, segmenter.to_dict())``.

Nothing here writes files or changes a pipeline's settings (progress bars included).
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from . import masks
from .clicks import ClickSegmenter
from .images import MIN_SIDE, ImageLike, check_min_size, check_subject, to_mask, to_rgb
from .loaders import SCHEDULERS as SCHEDULERS  # re-exported: the names scheduler= takes
from .loaders import inpainting, make_scheduler

DEFAULT_FEATHER = 3
"""Default width in pixels of the soft edge through which a subject is pasted."""

HARMONIZE_STRENGTH = 0.5
"""How far ``harmonize=True`` moves the subject's colour statistics towards the background's."""

_MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed's upper limit


class SafetyCheckerWarning(UserWarning):
    """The safety checker blacked out one or more generated images."""


class Variations(list):
    """A list of ``RGB`` ``PIL.Image``, one per variation, each with ``info["seed"]`` and
    ``info["nsfw"]``."""

    @property
    def seeds(self) -> list[int]:
        """The seed of each variation (``seed + i``)."""
        return [image.info.get("seed") for image in self]

    @property
    def nsfw(self) -> list[bool]:
        """Whether the safety checker blacked out each variation."""
        return [bool(image.info.get("nsfw", False)) for image in self]


# --------------------------------------------------------------------------- schedulers
# SCHEDULERS and make_scheduler live in loaders (load_sd sets the default sampler) and are
# re-exported here, where the per-call ``scheduler=`` arguments use them.


@contextmanager
def _scheduler_swapped(pipe, scheduler) -> Iterator[None]:
    """Run ``pipe`` with ``scheduler`` for the duration of the block, then put its own back.

    Why a swap and not a copy of the pipeline: in diffusers 0.42 ``from_pipe`` casts every
    shared module to its ``dtype`` argument, which defaults to float32, so a per-call copy would
    silently upcast an fp16 pipeline in place; a pipeline rebuilt from ``pipe.components`` lacks
    the pipe's ``enable_model_cpu_offload`` bookkeeping. The swap touches one attribute (and
    its config entry) and is undone in ``finally``, also when the call fails or is interrupted.
    Pipelines built with ``from_pipe`` (``inpainting(pipe)``) keep their own reference to the
    original scheduler and never see the swapped one. Not for concurrent calls on one pipe
    from several threads (a notebook runs one cell at a time).
    """
    if scheduler is None:
        yield
        return
    original = pipe.scheduler
    pipe.scheduler = scheduler
    try:
        yield
    finally:
        pipe.scheduler = original


# --------------------------------------------------------------------------- validation


def _check_int(value, name: str, *, low: int, multiple: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if value % multiple:
        raise ValueError(
            f"{name}={value} must be a multiple of {multiple} "
            f"(e.g. {value // multiple * multiple or multiple})"
        )
    return value


def _check_number(
    value, name: str, *, low: float, high: float | None = None, open_low: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, not {value!r}")
    value = float(value)
    bad = not math.isfinite(value) or value < low or (open_low and value == low)
    if bad or (high is not None and value > high):
        lower = f"> {low:g}" if open_low else f">= {low:g}"
        upper = f" and <= {high:g}" if high is not None else ""
        raise ValueError(f"{name} must be {lower}{upper}, got {value!r}")
    return value


def _check_sampling(prompt, negative_prompt, seed, n, steps, guidance) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise ValueError(f"negative_prompt must be a string or None, got {negative_prompt!r}")
    _check_int(seed, "seed", low=0)
    _check_int(n, "n", low=1)
    if seed + n - 1 > _MAX_SEED:
        raise ValueError(f"seed + n - 1 must be <= 2**64 - 1 (torch's seed range), got seed={seed}")
    _check_int(steps, "steps", low=1)
    _check_number(guidance, "guidance", low=0.0)


def _check_pixels(value, name: str) -> float:
    return _check_number(value, name, low=0.0)


def processing_size(width: int, height: int, size: int = 512) -> tuple[int, int]:
    """The ``(width, height)`` at which a ``width x height`` picture is sent through SD.

    The long side becomes ``size`` (a multiple of 8, >= 64); the short side is scaled by the
    same factor and rounded to the *nearest* multiple of 8 (halves round up), at least 64 px.
    The aspect ratio is thus kept to within 4 px on the short side: no letterbox, no squash,
    except that a picture longer than ``size:64`` gets the 64-px floor. ``300x200`` at
    ``size=128`` gives ``128x88`` (85.3 rounds to 88).
    """
    size = _check_int(size, "size", low=MIN_SIDE, multiple=8)
    width = _check_int(width, "width", low=1)
    height = _check_int(height, "height", low=1)
    long_side = max(width, height)

    def side(length: int) -> int:
        if length == long_side:
            return size
        return max(MIN_SIDE, math.floor(length * size / long_side / 8 + 0.5) * 8)

    return side(width), side(height)


# --------------------------------------------------------------------------- sampling


def _generator_device(pipe) -> torch.device:
    """Where the pipeline runs (the GPU also under CPU offload), for the generators."""
    device = getattr(pipe, "_execution_device", None)
    return torch.device(device) if device is not None else torch.device(pipe.device)


def _sample(pipe, *, seed: int, n: int, **call) -> Variations:
    """``n`` pipeline calls of batch 1, generator ``seed + i`` each; flags what was blacked out."""
    device = _generator_device(pipe)
    images = Variations()
    for i in range(n):
        generator = torch.Generator(device=device).manual_seed(seed + i)
        out = pipe(generator=generator, num_images_per_prompt=1, **call)
        image = out.images[0]
        flags = getattr(out, "nsfw_content_detected", None)
        image.info.update(seed=seed + i, nsfw=bool(flags[0]) if flags else False)
        images.append(image)
    _warn_nsfw(images)
    return images


def _warn_nsfw(images: Variations) -> None:
    hit = [i for i, flagged in enumerate(images.nsfw) if flagged]
    if hit:
        seeds = [images.seeds[i] for i in hit]
        warnings.warn(
            f"the safety checker blacked out variation(s) {hit} (seeds {seeds}) of {len(images)}: "
            "try another seed or prompt; those images have info['nsfw'] = True",
            SafetyCheckerWarning,
            stacklevel=4,
        )


def generate(
    pipe,
    prompt: str,
    *,
    negative_prompt: str | None = None,
    seed: int = 0,
    n: int = 1,
    steps: int = 25,
    guidance: float = 7.5,
    width: int = 512,
    height: int = 512,
    scheduler=None,
) -> Variations:
    """Text to image: ``n`` variations of ``prompt``.

    Args:
        pipe: a ``StableDiffusionPipeline`` (e.g. from :func:`sdsam_nb.load_sd`).
        prompt: what to draw, a non-empty string; ``negative_prompt``: what to avoid.
        seed: variation ``i`` uses ``torch.Generator(device).manual_seed(seed + i)``, so
            ``generate(..., seed=s, n=3)[2]`` equals ``generate(..., seed=s + 2)[0]``.
        n: number of variations (>= 1), one pipeline call each.
        steps: denoising steps (>= 1); ``guidance``: classifier-free guidance scale (>= 0;
            <= 1 turns guidance off).
        width, height: in pixels, multiples of 8 and >= 64. SD v1 is trained at 512x512.
        scheduler: ``None`` keeps the pipeline's; a name from :data:`SCHEDULERS` (``"dpm++"``,
            ``"euler_a"``, ``"ddim"``, ``"pndm"``, ...) is built from the pipeline's scheduler
            config; a scheduler instance is used as is. ``pipe`` itself is left unchanged: the
            scheduler is swapped in for this call only (see :func:`_scheduler_swapped`).

    Returns:
        :class:`Variations`: ``n`` ``RGB`` ``PIL.Image`` of ``width x height``, each with
        ``info["seed"]`` and ``info["nsfw"]``. Blacked-out images also raise a
        :class:`SafetyCheckerWarning`.

    Raises:
        ValueError: a bad argument (the message names it).
    """
    _check_sampling(prompt, negative_prompt, seed, n, steps, guidance)
    width = _check_int(width, "width", low=MIN_SIDE, multiple=8)
    height = _check_int(height, "height", low=MIN_SIDE, multiple=8)
    own = None if scheduler is None else make_scheduler(scheduler, pipe)
    with _scheduler_swapped(pipe, own):
        return _sample(
            pipe,
            seed=seed,
            n=n,
            prompt=prompt,
            negative_prompt=negative_prompt,
            num_inference_steps=steps,
            guidance_scale=guidance,
            width=width,
            height=height,
        )


def generate_background(
    pipe,
    prompt: str,
    like: ImageLike | None = None,
    *,
    size: int = 512,
    negative_prompt: str | None = None,
    seed: int = 0,
    n: int = 1,
    steps: int = 25,
    guidance: float = 7.5,
    scheduler=None,
) -> Variations:
    """A background for a subject picture, at that picture's aspect ratio and exact size.

    The picture is generated at :func:`processing_size` of ``like`` (long side ``size``,
    multiples of 8) and resized (LANCZOS) to ``like``'s size; ``like=None`` gives
    ``size x size``. The other arguments are :func:`generate`'s.

    Returns:
        :class:`Variations` of ``n`` ``RGB`` images of ``like``'s size, ready for
        :func:`composite`.
    """
    if like is None:
        target = None
        width = height = _check_int(size, "size", low=MIN_SIDE, multiple=8)
    else:
        picture = to_rgb(like, name="like")
        check_min_size(picture, name="like")
        target = picture.size
        width, height = processing_size(*target, size)
    images = generate(
        pipe,
        prompt,
        negative_prompt=negative_prompt,
        seed=seed,
        n=n,
        steps=steps,
        guidance=guidance,
        width=width,
        height=height,
        scheduler=scheduler,
    )
    if target is None or target == (width, height):
        return images
    return Variations(image.resize(target, Image.LANCZOS) for image in images)


# --------------------------------------------------------------------------- inpainting


def _subject(image: ImageLike, subject_mask, name: str = "image") -> tuple[Image.Image, np.ndarray]:
    """The checked picture and its checked subject mask."""
    picture = to_rgb(image, name=name)
    check_min_size(picture, name=name)
    mask = to_mask(subject_mask, picture.size, name="subject_mask")
    check_subject(mask, name="subject_mask")
    return picture, mask


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``mask`` at ``size`` (w, h): area average (PIL ``BOX``), True where half or more."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    scaled = Image.fromarray(mask.astype(np.uint8) * 255, mode="L").resize(size, Image.BOX)
    return np.asarray(scaled) >= 128


def _paste(base: np.ndarray, top: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha * top + (1 - alpha) * base`` rounded to uint8; exactly ``top`` where alpha is 1."""
    a = alpha[..., None]
    blended = np.rint(a * top.astype(np.float32) + (1.0 - a) * base.astype(np.float32))
    out = np.clip(blended, 0, 255).astype(np.uint8)
    out[alpha == 1.0] = top[alpha == 1.0]
    return out


def inpaint_background(
    pipe,
    image: ImageLike,
    subject_mask,
    prompt: str,
    *,
    negative_prompt: str | None = None,
    seed: int = 0,
    n: int = 1,
    steps: int = 25,
    guidance: float = 7.5,
    strength: float = 1.0,
    size: int = 512,
    grow: float = 0,
    keep_subject: bool = True,
    feather: float = DEFAULT_FEATHER,
    model: str | os.PathLike | None = None,
    scheduler=None,
) -> Variations:
    """Repaint everything around the subject from ``prompt``.

    Steps: the picture is resized (LANCZOS) to :func:`processing_size` (its own aspect ratio,
    long side ``size``, multiples of 8; no letterbox, no squash). The subject mask, grown by
    ``grow`` px, is resized there (area average, half or more = subject) and inverted into an
    ``L`` mask, white = repaint, for ``loaders.inpainting(pipe, model)``, which is called with
    that ``height``/``width``. Each result is resized (LANCZOS) back to the picture's original
    size. With ``keep_subject`` the original subject is then pasted over it through
    ``masks.feather(subject_mask, feather)``, at the original resolution.

    Args:
        pipe: the text-to-image pipeline of :func:`sdsam_nb.load_sd`.
        image: the subject picture (:func:`~sdsam_nb.images.to_rgb` converts), both sides >= 64.
        subject_mask: ``HxW bool`` of ``image``'s size, True = subject; not empty, not full.
        prompt, negative_prompt, seed, n, steps, guidance: as in :func:`generate`.
        strength: how much of the background is re-noised, ``0 < strength <= 1``; 1 starts
            from pure noise, lower values keep the old background's layout and colours
            (``steps * strength`` must be >= 1).
        size: long side in pixels the model works at (a multiple of 8, >= 64; SD v1: 512).
        grow: pixels (>= 0) the *protected* region extends beyond the mask. A ring of the old
            background around the subject is then left to the model as context instead of
            being repainted: it keeps soft edges (hair, fur, a mask that is a little tight)
            from being painted over or haloed, at the price of that ring of old background.
        keep_subject: paste the original subject back. The subject is then pixel-identical
            on ``masks.shrink(subject_mask, feather)``; its outer ``feather`` px blend into the
            new picture. Without it the whole picture is the model's output, whose subject
            went through the VAE (close to the original, not identical).
        feather: width in pixels (>= 0) of that blend; 0 pastes with a hard edge.
        model: ``None`` inpaints with ``pipe``'s own weights (SD v1-4 inpaints by latent
            blending); a dedicated inpainting checkpoint (a 9-channel UNet, e.g.
            ``sdsam_nb.INPAINTING_SD`` or a local folder) is loaded once and used instead.
        scheduler: ``None`` samples with the pipeline's scheduler (:func:`sdsam_nb.load_sd`'s
            choice, DPM-Solver++ by default); a name from :data:`SCHEDULERS` or a scheduler
            instance is used for this call only, as in :func:`generate`.

    Returns:
        :class:`Variations`: ``n`` ``RGB`` images of ``image``'s original size.

    Raises:
        ValueError: a bad argument (named in the message), a mask of another size than the
            image, an empty or full mask, a picture under 64 px.
    """
    _check_sampling(prompt, negative_prompt, seed, n, steps, guidance)
    strength = _check_number(strength, "strength", low=0.0, high=1.0, open_low=True)
    if int(steps * strength) < 1:
        raise ValueError(
            f"strength={strength:g} with steps={steps} leaves no denoising step: "
            "raise steps or strength so that steps * strength >= 1"
        )
    grow = _check_pixels(grow, "grow")
    feather = _check_pixels(feather, "feather")
    if not isinstance(keep_subject, bool):
        raise ValueError(f"keep_subject must be True or False, not {keep_subject!r}")
    picture, mask = _subject(image, subject_mask)
    work = processing_size(*picture.size, size)

    protected = masks.grow(mask, grow) if grow else mask
    repaint = ~_resize_mask(protected, work)
    if not repaint.any():
        raise ValueError(f"grow={grow:g} covers the whole picture: nothing is left to repaint")
    mask_image = Image.fromarray(repaint.astype(np.uint8) * 255, mode="L")  # white = repaint
    work_image = picture if picture.size == work else picture.resize(work, Image.LANCZOS)

    painter = inpainting(pipe, model)
    own = None if scheduler is None else make_scheduler(scheduler, painter)
    with _scheduler_swapped(painter, own):
        results = _sample(
            painter,
            seed=seed,
            n=n,
            prompt=prompt,
            negative_prompt=negative_prompt,
            image=work_image,
            mask_image=mask_image,
            width=work[0],
            height=work[1],
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=guidance,
        )

    alpha = masks.feather(mask, feather) if keep_subject else None
    original = np.asarray(picture)
    out = Variations()
    for result in results:
        info = dict(result.info)
        if result.size != picture.size:
            result = result.resize(picture.size, Image.LANCZOS)
        if alpha is not None:
            result = Image.fromarray(_paste(np.asarray(result), original, alpha), mode="RGB")
        result.info.update(info)
        out.append(result)
    return out


# --------------------------------------------------------------------------- compositing


def _harmonize(pixels: np.ndarray, where: np.ndarray, target: np.ndarray, t: float) -> np.ndarray:
    """Move the LAB mean and std of ``pixels[where]`` a fraction ``t`` towards ``target``'s."""
    lab = cv2.cvtColor(pixels.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    ref = cv2.cvtColor(target.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    src = lab[where]
    mean_s, std_s = src.mean(axis=0), src.std(axis=0)
    mean_t, std_t = ref.mean(axis=0), ref.std(axis=0)
    mean_new = mean_s + t * (mean_t - mean_s)
    std_new = std_s + t * (std_t - std_s)
    gain = np.where(std_s > 1e-6, std_new / np.maximum(std_s, 1e-6), 1.0)
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
) -> Image.Image | tuple[Image.Image, np.ndarray]:
    """Paste the subject of ``image`` onto ``background``.

    The cut-out is the mask's bounding box (:func:`sdsam_nb.masks.bbox`). With ``scale != 1``
    its pixels are resized with LANCZOS and its mask by area average (half or more =
    subject); with ``scale == 1`` pixels are copied exactly. The edge is feathered over
    ``feather`` px inside the mask (the cut-out's border counts as an edge), so with
    ``scale == 1`` and no harmonizing the subject is pixel-identical on
    ``masks.shrink(placed_mask, feather)``.

    Args:
        image: the subject picture; ``subject_mask``: its ``HxW bool`` mask (True = subject).
        background: the new background (any size, both sides >= 64); it sets the output size.
        scale: size factor of the cut-out (> 0).
        position: ``"center"`` (the bounding box's centre on the background's centre),
            ``"bottom"`` (centred horizontally, resting on the bottom edge: products), or
            ``(x, y)``: the bounding box's top-left corner in background pixels. Whatever falls
            outside the background is clipped; a subject entirely outside is an error.
        feather: soft-edge width in pixels (>= 0).
        harmonize: ``True`` moves the subject's per-channel mean and std in CIE LAB (OpenCV)
            ``HARMONIZE_STRENGTH`` (half) of the way towards the background's; a number in
            ``[0, 1]`` sets that fraction. The subject's pixels then change by design.
        return_mask: also return where the subject went.

    Returns:
        An ``RGB`` ``PIL.Image`` of the background's size; with ``return_mask`` a tuple
        ``(image, placed_mask)`` where ``placed_mask`` is ``HxW bool`` at the background's
        size (the scaled, clipped subject mask), e.g. for :func:`object_expansion`.

    Raises:
        ValueError: a bad argument (named in the message), a mask of another size than the
            image, an empty or full mask, or a subject placed entirely outside the background.
    """
    picture, mask = _subject(image, subject_mask)
    back = to_rgb(background, name="background")
    check_min_size(back, name="background")
    scale = _check_number(scale, "scale", low=0.0, open_low=True)
    feather = _check_pixels(feather, "feather")
    if harmonize is True:
        strength = HARMONIZE_STRENGTH
    elif harmonize is False:
        strength = 0.0
    else:
        strength = _check_number(harmonize, "harmonize", low=0.0, high=1.0)
    if not isinstance(return_mask, bool):
        raise ValueError(f"return_mask must be True or False, not {return_mask!r}")

    x0, y0, x1, y1 = masks.bbox(mask)
    cut = picture.crop((x0, y0, x1, y1))
    cut_mask = mask[y0:y1, x0:x1]
    if scale != 1.0:
        new = (round((x1 - x0) * scale), round((y1 - y0) * scale))
        cut_mask = _resize_mask(cut_mask, new) if min(new) >= 1 else cut_mask[:0, :0]
        if not cut_mask.any():
            raise ValueError(
                f"scale={scale:g} shrinks the {x1 - x0}x{y1 - y0} px subject to nothing"
            )
        cut = cut.resize(new, Image.LANCZOS)
    pixels = np.asarray(cut)
    if strength > 0:
        pixels = _harmonize(pixels, cut_mask, np.asarray(back), strength)
    # One px of padding makes the cut-out's border an edge of the mask for feathering.
    alpha = masks.feather(np.pad(cut_mask, 1), feather)[1:-1, 1:-1]

    bw, bh = back.size
    ch, cw = cut_mask.shape
    x, y = _position(position, (bw, bh), (cw, ch))
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
    out[region] = _paste(out[region], pixels[inside], alpha[inside])
    result = Image.fromarray(out, mode="RGB")
    if not return_mask:
        return result
    placed = np.zeros((bh, bw), dtype=bool)
    placed[region] = cut_mask[inside]
    return result, placed


# --------------------------------------------------------------------------- scores


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
    picture, mask = _subject(image, subject_mask)
    other = to_rgb(result, name="result")
    if other.size != picture.size:
        raise ValueError(
            f"result is {other.size[0]}x{other.size[1]} but image is "
            f"{picture.size[0]}x{picture.size[1]}: compare pictures of the same size"
        )
    inner = masks.shrink(mask, _check_pixels(shrink, "shrink"))
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


def score_results(
    image: ImageLike,
    results: Sequence[ImageLike],
    subject_mask,
    *,
    predictor=None,
    clicks: Mapping[str, Any] | ClickSegmenter | None = None,
    shrink: float = DEFAULT_FEATHER,
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

    SAM embeds ``image`` at most once and each result once.

    Args:
        image: the original picture; ``results``: pictures of the same size.
        subject_mask: ``HxW bool`` of ``image``, True = subject, not empty or full.
        predictor: a ``SamPredictor`` (:func:`sdsam_nb.load_sam`), or ``None`` for fidelity only.
        clicks: the click record or segmenter that made the mask, or ``None``.
        shrink: pixels the subject mask is shrunk by before comparing (use the ``feather``
            the results were made with).

    Returns:
        One dict per result, in order; the expansion values rounded to 4 decimals.

    Raises:
        ValueError: a result of another size, a bad mask, or a ``clicks`` record made on a
            picture of another size.
    """
    picture, mask = _subject(image, subject_mask)
    if isinstance(results, (Image.Image, np.ndarray, str)) or not isinstance(results, Sequence):
        raise ValueError("results must be a list of pictures, e.g. what inpaint_background returns")
    baseline = record = None
    if predictor is not None:
        if isinstance(clicks, ClickSegmenter):
            original = clicks
        elif clicks is None:
            x0, y0, x1, y1 = masks.bbox(mask)
            original = ClickSegmenter.from_prompts(predictor, picture, box=[x0, y0, x1, y1])
        else:
            original = ClickSegmenter.from_dict(predictor, picture, clicks)
        record = original.to_dict()
        baseline = round(object_expansion(mask, original.mask), 4)
    scores = []
    for i, result in enumerate(results):
        score = {"variation": i, **subject_fidelity(picture, result, mask, shrink=shrink)}
        if record is not None:
            again = ClickSegmenter.from_dict(predictor, to_rgb(result, name="result"), record).mask
            score["object_expansion"] = round(object_expansion(mask, again), 4)
            score["object_expansion_original"] = baseline
        scores.append(score)
    return scores
