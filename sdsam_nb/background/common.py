"""What the background functions share: checks, sizes, seeded sampling, pasting."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch
from PIL import Image

from .. import caching
from ..edges import check_alpha
from ..images import (
    MIN_SIDE,
    ImageLike,
    check_min_size,
    check_pixel_limit,
    check_subject,
    to_mask,
    to_rgb,
)
from ..models.schedulers import make_scheduler
from ..models.sd import pipeline_info
from ..validate import check_int, check_number

DEFAULT_FEATHER = 3
"""Default width in pixels of the soft edge through which a subject is pasted."""

HARMONIZE_STRENGTH = 0.5
"""How far ``harmonize=True`` moves the subject's colour statistics towards the background's."""

_MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed's upper limit


class SafetyCheckerWarning(UserWarning):
    """The safety checker blacked out one or more generated images."""


class Variations(list):
    """A list of ``RGB`` ``PIL.Image``, one per variation, each with ``info["seed"]`` and
    ``info["nsfw"]``.

    ``painted``: for :func:`~sdsam_nb.background.inpaint_background` with ``keep_subject``,
    the model's own pictures before the subject was pasted back (at the same size), e.g. to
    compare edges on them; ``None`` otherwise.
    """

    painted: list | None = None

    @property
    def seeds(self) -> list[int]:
        """The seed of each variation (``seed + i``)."""
        return [image.info.get("seed") for image in self]

    @property
    def nsfw(self) -> list[bool]:
        """Whether the safety checker blacked out each variation."""
        return [bool(image.info.get("nsfw", False)) for image in self]

    def pick(self, index: int) -> Image.Image:
        """Variation ``index`` (0 is the first, made with ``seed``).

        Raises:
            ValueError: ``index`` is not one of the variations (the message names ``pick``).
        """
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self):
            raise ValueError(
                f"pick must be one of the {len(self)} variations, 0 to {len(self) - 1}, got "
                f"{index!r}: make more variations (n) or pick another"
            )
        return self[index]


@contextmanager
def scheduler_swapped(pipe, scheduler) -> Iterator[None]:
    """Run ``pipe`` with ``scheduler`` (a name or an instance: :func:`make_scheduler`; ``None``:
    its own) for the block, then put its own back, also when the call fails. Not a copy of the
    pipeline: ``from_pipe`` would cast an fp16 pipe to fp32 in place, and a pipe rebuilt from
    its components loses its CPU offload. Pipelines built with ``from_pipe`` keep their own
    scheduler and never see the swapped one.
    """
    if scheduler is None:
        yield
        return
    original, pipe.scheduler = pipe.scheduler, make_scheduler(scheduler, pipe)
    try:
        yield
    finally:
        pipe.scheduler = original


def check_sampling(prompt, negative_prompt, seed, n, steps, guidance) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise ValueError(f"negative_prompt must be a string or None, got {negative_prompt!r}")
    check_int(seed, "seed", low=0)
    check_int(n, "n", low=1)
    if seed + n - 1 > _MAX_SEED:
        raise ValueError(f"seed + n - 1 must be <= 2**64 - 1 (torch's seed range), got seed={seed}")
    check_int(steps, "steps", low=1)
    check_number(guidance, "guidance", low=0.0)


def processing_size(width: int, height: int, size: int = 512) -> tuple[int, int]:
    """The ``(width, height)`` at which a ``width x height`` picture is sent through SD.

    The long side becomes ``size`` (a multiple of 8, >= 64); the short side is scaled by the
    same factor and rounded to the *nearest* multiple of 8 (halves round up), at least 64 px.
    The aspect ratio is thus kept to within 4 px on the short side: no letterbox, no squash,
    except that a picture longer than ``size:64`` gets the 64-px floor. ``300x200`` at
    ``size=128`` gives ``128x88`` (85.3 rounds to 88). A result over
    :func:`~sdsam_nb.images.max_pixels` (50 megapixels by default) is refused, naming ``size``.
    """
    size = check_int(size, "size", low=MIN_SIDE, multiple=8)
    width = check_int(width, "width", low=1)
    height = check_int(height, "height", low=1)
    long_side = max(width, height)

    def side(length: int) -> int:
        if length == long_side:
            return size
        return max(MIN_SIDE, math.floor(length * size / long_side / 8 + 0.5) * 8)

    work = side(width), side(height)
    check_pixel_limit(*work, f"at size={size} the picture to paint", fix="lower size")
    return work


def sample(pipe, *, seed: int, n: int, cache: bool | None = None, **call) -> Variations:
    """``n`` pipeline calls of batch 1, generator ``seed + i`` each; flags what was blacked out.

    ``cache``: ``None`` always calls the pipeline (the call's arguments are not all plain
    values, e.g. pictures); ``True`` / ``False`` is :func:`sdsam_nb.caching.picture`'s switch,
    one entry per variation.
    """
    device = pipeline_info(pipe)[2]  # where it runs (its GPU under CPU offload): the generators'

    def make(s: int) -> Image.Image:
        generator = torch.Generator(device=device).manual_seed(s)
        out = pipe(generator=generator, num_images_per_prompt=1, **call)
        image = out.images[0]
        flags = getattr(out, "nsfw_content_detected", None)
        image.info.update(seed=s, nsfw=bool(flags[0]) if flags else False)
        return image

    images = Variations(
        make(s)
        if cache is None
        else caching.picture(
            pipe, seed=s, call=call, device=device, make=partial(make, s), cache=cache
        )
        for s in range(seed, seed + n)
    )
    hit = [i for i, flagged in enumerate(images.nsfw) if flagged]
    if hit:
        warnings.warn(
            f"the safety checker blacked out variation(s) {hit} (seeds "
            f"{[images.seeds[i] for i in hit]}) of {len(images)}: try another seed or prompt; "
            "those images have info['nsfw'] = True",
            SafetyCheckerWarning,
            stacklevel=3,
        )
    return images


def checked_subject(
    image: ImageLike, subject_mask, name: str = "image"
) -> tuple[Image.Image, np.ndarray]:
    """The checked picture and its checked subject mask."""
    picture = to_rgb(image, name=name)
    check_min_size(picture, name=name)
    mask = to_mask(subject_mask, picture.size, name="subject_mask")
    check_subject(mask, name="subject_mask")
    return picture, mask


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``mask`` at ``size`` (w, h): area average (PIL ``BOX``), True where half or more."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    scaled = Image.fromarray(mask.astype(np.uint8) * 255, mode="L").resize(size, Image.BOX)
    return np.asarray(scaled) >= 128


def check_subject_alpha(alpha, size: tuple[int, int]) -> np.ndarray:
    """``alpha`` (an ``HxW`` float alpha in 0..1, or any mask :func:`~sdsam_nb.images.to_mask`
    takes, of a picture of ``size`` (w, h)) as ``HxW float32`` weights, checked: not empty."""
    w, h = size
    if isinstance(alpha, np.ndarray) and np.issubdtype(alpha.dtype, np.floating):
        weight = check_alpha(alpha, (h, w)).astype(np.float32)
    else:
        weight = to_mask(alpha, size, name="alpha").astype(np.float32)
    if not (weight > 0).any():
        raise ValueError("alpha is empty: select the subject first (clicks, a box, a matte)")
    return weight
