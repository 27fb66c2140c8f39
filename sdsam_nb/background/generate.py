"""Text-to-image: a subject, or a background at a picture's own aspect ratio."""

from __future__ import annotations

from PIL import Image

from ..images import MIN_SIDE, ImageLike, check_min_size, check_pixel_limit, to_rgb
from ..models.fast import sampling
from ..recording import recorded
from ..validate import check_flag, check_int
from .common import (
    Variations,
    check_sampling,
    processing_size,
    sample,
    scheduler_swapped,
)


@recorded("generate")
def generate(
    pipe,
    prompt: str,
    *,
    negative_prompt: str | None = None,
    seed: int = 0,
    n: int = 1,
    steps: int | None = None,
    guidance: float | None = None,
    width: int = 512,
    height: int = 512,
    scheduler=None,
    cache: bool = True,
) -> Variations:
    """Text to image: ``n`` variations of ``prompt``.

    Args:
        pipe: a ``StableDiffusionPipeline`` (e.g. from :func:`sdsam_nb.load_sd`).
        prompt: what to draw, a non-empty string; ``negative_prompt``: what to avoid.
        seed: variation ``i`` uses ``torch.Generator(device).manual_seed(seed + i)``, so
            ``generate(..., seed=s, n=3)[2]`` equals ``generate(..., seed=s + 2)[0]``.
        n: number of variations (>= 1), one pipeline call each.
        steps: denoising steps (>= 1); ``guidance``: classifier-free guidance scale (>= 0;
            <= 1 turns guidance off). ``None`` (default): 25 and 7.5, or what the pipeline's
            few-step adapter needs (``load_sd(fast=...)``, :func:`sdsam_nb.models.fast.sampling`).
        width, height: in pixels, multiples of 8 and >= 64, ``width * height`` at most
            :func:`~sdsam_nb.images.max_pixels`. SD v1 is trained at 512x512.
        scheduler: ``None`` keeps the pipeline's; a name from :data:`SCHEDULERS` is built from
            the pipeline's scheduler config; an instance is used as is. ``pipe`` is left
            unchanged (the scheduler is swapped in for this call only).
        cache: take each variation from the disk cache of generated pictures when it holds
            it (:mod:`sdsam_nb.caching.generations` says what the key holds), else make and
            store it. ``False`` neither reads nor writes it; ``$SDSAM_CACHE_GB=0`` turns it
            off everywhere.

    Returns:
        :class:`Variations`: ``n`` ``RGB`` ``PIL.Image`` of ``width x height``, each with
        ``info["seed"]``, ``info["nsfw"]`` and ``info["cache"]`` (``"hit"``, ``"miss"`` or
        ``"off"``). Blacked-out images also raise a :class:`SafetyCheckerWarning`.

    Raises:
        ValueError: a bad argument (the message names it).
    """
    steps, guidance, extra = sampling(pipe, steps, guidance, scheduler)
    check_sampling(prompt, negative_prompt, seed, n, steps, guidance)
    check_flag(cache, "cache")
    width = check_int(width, "width", low=MIN_SIDE, multiple=8)
    height = check_int(height, "height", low=MIN_SIDE, multiple=8)
    check_pixel_limit(width, height, f"width={width}, height={height}", fix="lower them")
    with scheduler_swapped(pipe, scheduler):
        return sample(
            pipe,
            seed=seed,
            n=n,
            cache=bool(cache),
            prompt=prompt,
            negative_prompt=negative_prompt,
            num_inference_steps=steps,
            guidance_scale=guidance,
            width=width,
            height=height,
            **extra,
        )


@recorded("generate_background")
def generate_background(
    pipe,
    prompt: str,
    like: ImageLike | None = None,
    *,
    size: int = 512,
    negative_prompt: str | None = None,
    seed: int = 0,
    n: int = 1,
    steps: int | None = None,
    guidance: float | None = None,
    scheduler=None,
    cache: bool = True,
) -> Variations:
    """A background for a subject picture, at that picture's aspect ratio and exact size.

    The picture is generated at :func:`processing_size` of ``like`` (long side ``size``,
    multiples of 8) and resized (LANCZOS) to ``like``'s size; ``like=None`` gives
    ``size x size``. The other arguments are :func:`generate`'s (``cache``: the picture at
    the processing size is what is cached; the resize is redone).

    Returns:
        :class:`Variations` of ``n`` ``RGB`` images of ``like``'s size, ready for
        :func:`composite`.
    """
    if like is None:
        target = None
        width = height = check_int(size, "size", low=MIN_SIDE, multiple=8)
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
        cache=cache,
    )
    if target is None or target == (width, height):
        return images
    return Variations(image.resize(target, Image.LANCZOS) for image in images)
