"""Inpainting around the subject: the mask inverted, the picture at its own aspect ratio."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from .. import masks
from ..edges import paste, subject_alpha
from ..images import ImageLike
from ..models.fast import sampling
from ..recording import recorded
from ..validate import check_flag, check_number
from .common import (
    DEFAULT_FEATHER,
    Variations,
    check_sampling,
    checked_subject,
    processing_size,
    resize_mask,
    sample,
    scheduler_swapped,
)
from .methods import BackgroundMethod, method_for
from .methods.auto import AUTO, auto_model


@recorded("inpaint_background")
def inpaint_background(
    pipe,
    image: ImageLike,
    subject_mask,
    prompt: str,
    *,
    negative_prompt: str | None = None,
    seed: int = 0,
    n: int = 1,
    steps: int | None = None,
    guidance: float | None = None,
    strength: float = 1.0,
    size: int = 512,
    grow: float = 0,
    keep_subject: bool = True,
    feather: float = DEFAULT_FEATHER,
    model: str | os.PathLike | BackgroundMethod | None = None,
    scheduler=None,
    edge="feather",
) -> Variations:
    """Repaint everything around the subject from ``prompt``.

    The picture is painted at :func:`processing_size` (its own aspect ratio, long side
    ``size``) with the mask, grown by ``grow`` px, resized there (half or more = subject) and
    inverted (white = repaint); each result is resized (LANCZOS) back to the picture's size and,
    with ``keep_subject``, the original subject pasted over it at full resolution.

    Args:
        pipe: the text-to-image pipeline of :func:`sdsam_nb.load_sd`.
        image: the subject picture (:func:`~sdsam_nb.images.to_rgb` converts), both sides >= 64.
        subject_mask: ``HxW bool`` of ``image``'s size, True = subject; not empty, not full.
        prompt, negative_prompt, seed, n, steps, guidance: as in :func:`generate` (``None``:
            25 and 7.5, or what ``pipe``'s few-step adapter needs).
        strength: how much of the background is re-noised, ``0 < strength <= 1``; 1 starts
            from pure noise, lower values keep the old background's layout and colours
            (``steps * strength`` must be >= 1).
        size: long side in pixels the model works at (a multiple of 8, >= 64; SD v1: 512).
        grow: pixels (>= 0) the *protected* region extends beyond the mask: a ring of old
            background left to the model as context, which keeps soft edges (hair, fur, a
            tight mask) from being painted over or haloed.
        keep_subject: paste the original subject back: pixel-identical on
            ``masks.shrink(subject_mask, feather)``, its outer ``feather`` px blended. Without
            it the whole picture is the model's output (the subject through the VAE).
        feather: width in pixels (>= 0) of that blend; 0 pastes with a hard edge.
        edge: how the subject's edge is pasted back: ``"feather"`` (the mask feathered by
            ``feather``), ``"matte"`` (a soft alpha matte with decontaminated edge colours,
            :mod:`sdsam_nb.edges`), or an ``HxW`` float alpha in 0..1 of your own. The
            subject stays pixel-identical where the alpha is 1.
        model: the background method (:func:`~sdsam_nb.background.methods.method_for`;
            ``docs/models.md``): ``None`` or ``"own"`` (``pipe``'s own weights), a dedicated
            inpainting checkpoint (e.g. ``sdsam_nb.INPAINTING_SD``), ``"auto"`` (that on a GPU,
            the own weights on the CPU), ``"salient"`` or a method object.
            ``info["method"]`` names it.
        scheduler: as in :func:`generate`.

    Returns:
        :class:`Variations`: ``n`` ``RGB`` images of ``image``'s original size.

    Raises:
        ValueError: a bad argument (named in the message), a mask of another size than the
            image, an empty or full mask, a picture under 64 px.
    """
    steps, guidance, extra = sampling(pipe, steps, guidance, scheduler)
    check_sampling(prompt, negative_prompt, seed, n, steps, guidance)
    strength = check_number(strength, "strength", low=0.0, high=1.0, open_low=True)
    if int(steps * strength) < 1:
        raise ValueError(
            f"strength={strength:g} with steps={steps} leaves no denoising step: "
            "raise steps or strength so that steps * strength >= 1"
        )
    grow = check_number(grow, "grow", low=0.0)
    feather = check_number(feather, "feather", low=0.0)
    keep_subject = check_flag(keep_subject, "keep_subject")
    picture, mask = checked_subject(image, subject_mask)
    # the paste-back's alpha first: a bad edge fails before any sampling
    alpha, original = (
        subject_alpha(picture, mask, edge, feather=feather) if keep_subject else (None, None)
    )
    work = processing_size(*picture.size, size)

    protected = masks.grow(mask, grow) if grow else mask
    repaint = ~resize_mask(protected, work)
    if not repaint.any():
        raise ValueError(f"grow={grow:g} covers the whole picture: nothing is left to repaint")
    mask_image = Image.fromarray(repaint.astype(np.uint8) * 255, mode="L")  # white = repaint
    work_image = picture if picture.size == work else picture.resize(work, Image.LANCZOS)

    method = method_for(auto_model(pipe) if model == AUTO else model)
    painter = method.pipeline(pipe)
    with scheduler_swapped(painter, scheduler):
        results = sample(
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
            **method.inputs(work_image, mask_image),
            **extra,
        )

    out = Variations()
    out.painted = [] if alpha is not None else None
    for result in results:
        info = dict(result.info)
        if result.size != picture.size:
            result = result.resize(picture.size, Image.LANCZOS)
        if alpha is not None:
            out.painted.append(result)
            result = Image.fromarray(paste(np.asarray(result), original, alpha), mode="RGB")
        result.info.update(info, method=method.name)
        out.append(result)
    return out
