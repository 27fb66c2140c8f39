"""Image and mask conventions, written down once and used by every module.

* An image is a ``PIL.Image`` in mode ``RGB`` or an ``HxWx3 uint8`` RGB array; anything else
  goes through :func:`to_rgb`.
* A mask is an ``HxW bool`` array, ``True`` = subject; :func:`to_mask` converts the rest.
* Points are ``(x, y)`` in image pixels, boxes are ``(x0, y0, x1, y1)`` (XYXY) in image pixels.
* "White = repaint" exists only at the diffusers boundary (:mod:`sdsam_nb.background`).
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

ImageLike = Image.Image | np.ndarray | str | os.PathLike
MIN_SIDE = 64

# The largest picture (width x height) the kit takes or makes by default: 50 megapixels, e.g.
# 8660x5773 (150 MB as RGB; the steps on it need ten to twenty times that).
MAX_PIXELS = 50_000_000
ENV_MAX_PIXELS = "SDSAM_MAX_PIXELS"


def max_pixels() -> int:
    """The pixel limit: ``$SDSAM_MAX_PIXELS`` (whole pixels, e.g. ``100000000`` or ``1e8``)
    if set, else :data:`MAX_PIXELS` (50 megapixels). Read at each call.

    Raises:
        ValueError: ``$SDSAM_MAX_PIXELS`` is not a whole number >= 1 (the message names it).
    """
    text = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if not text:
        return MAX_PIXELS
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (1 <= value < 2**63) or value != int(value):
        raise ValueError(
            f"{ENV_MAX_PIXELS}={text!r} must be a whole number of pixels >= 1, e.g. 100000000"
        )
    return int(value)


def check_pixel_limit(width: float, height: float, what: str, *, fix: str = "downscale it") -> None:
    """Raise a one-line ``ValueError`` if ``width x height`` (floats allowed) is above
    :func:`max_pixels`; the message starts with ``what`` (e.g. ``"image"``) and ends with
    ``fix``."""
    limit = max_pixels()
    if not width * height <= limit:  # also refuses NaN
        raise ValueError(
            f"{what} is {width:.0f}x{height:.0f} px ({width * height / 1e6:.4g} megapixels), "
            f"above the limit of {limit / 1e6:g} megapixels: {fix}, or raise ${ENV_MAX_PIXELS}"
        )


def to_rgb(image: ImageLike, *, name: str = "image") -> Image.Image:
    """Return ``image`` as an 8-bit ``RGB`` ``PIL.Image``.

    The rule, for every input:

    * a path is opened with PIL; EXIF orientation is applied (a phone photo comes out upright);
    * transparency (``RGBA``, ``LA``, ``P`` with a transparent colour) is composited onto
      white, as a viewer would show it;
    * 16-bit and 32-bit greyscale (``I;16``, ``I``) are scaled to 8 bits from their full
      range (``I;16``: divided by 257); float images (``F``) are taken as 0..1 (an overshoot
      of up to 0.1 is clipped; a 0..255 or -1..1 float picture is refused);
    * ``L``, ``1``, ``P``, ``CMYK``, ``YCbCr`` and ``HSV`` go through PIL's own conversion,
      ``LAB`` through littlecms (PIL's ``ImageCms``, D50 CIE LAB to sRGB);
    * a numpy array may be ``HxW``, ``HxWx1``, ``HxWx3`` or ``HxWx4``, uint8 (0..255),
      uint16 (0..65535) or float (0..1, as for ``F``).

    Size: at least one pixel, at most :func:`max_pixels` (a file's is read from its header,
    before it is decoded).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the input cannot be read as an image, has no pixel, or is over the pixel
            limit (the message names ``name``).
    """
    if isinstance(image, (str, os.PathLike)):
        pil = _open(image, name)
    elif isinstance(image, np.ndarray):
        if image.ndim in (2, 3):
            check_pixel_limit(image.shape[1], image.shape[0], name)
        pil = _array_to_pil(image, name)
    elif isinstance(image, Image.Image):
        check_pixel_limit(*image.size, name)
        pil = ImageOps.exif_transpose(image) if image.getexif() else image
    else:
        raise ValueError(
            f"{name} must be a PIL image, a numpy array or a path, not {type(image).__name__}"
        )
    if min(pil.size) < 1:
        raise ValueError(f"{name} is {pil.size[0]}x{pil.size[1]}: a picture needs pixels")
    return _pil_to_rgb(pil, name)


def _open(image: str | os.PathLike, name: str) -> Image.Image:
    """The picture at ``image``, decoded once its header's size is checked. PIL's own
    decompression-bomb guard comes second: its warning is silenced, its error (only where
    ``$SDSAM_MAX_PIXELS`` is above PIL's limit) becomes a one-line ``ValueError``."""
    path = Path(image)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no image file at {str(path)!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                check_pixel_limit(*opened.size, f"{name} {str(path)!r}")
                opened.load()
                return ImageOps.exif_transpose(opened)
    except Image.DecompressionBombError as exc:
        raise ValueError(
            f"{name}: {str(path)!r} is over PIL's decompression-bomb limit ({exc}): downscale "
            "it, or raise PIL.Image.MAX_IMAGE_PIXELS as well as $" + ENV_MAX_PIXELS
        ) from None
    except OSError as exc:
        raise ValueError(f"{name}: {str(path)!r} is not an image PIL can read ({exc})") from None


def _array_to_pil(array: np.ndarray, name: str) -> Image.Image:
    a = array
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"{name} array must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = (a.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        a = _unit_floats(a, f"{name} array")
    else:
        raise ValueError(f"{name} array must be uint8, uint16 or float, not {a.dtype}")
    mode = "L" if a.ndim == 2 else ("RGB" if a.shape[2] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(a), mode=mode)


# how far float pixels may stray outside 0..1 (a resampling filter's overshoot) and be clipped
FLOAT_OVERSHOOT = 0.1


def _unit_floats(a: np.ndarray, what: str) -> np.ndarray:
    """Float pixels taken as 0..1, as 8 bits: an overshoot of up to :data:`FLOAT_OVERSHOOT` is
    clipped; values further out (a 0..255 or -1..1 array) are refused, not clipped to white or
    black."""
    if not np.isfinite(a).all():
        raise ValueError(f"{what} has NaN or infinite values")
    low, high = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if low < -FLOAT_OVERSHOOT or high > 1 + FLOAT_OVERSHOOT:
        raise ValueError(
            f"{what} holds floats from {low:.4g} to {high:.4g}, but float pixels are taken as "
            "0..1: divide a 0..255 array by 255 (or pass it as uint8), map a -1..1 array "
            "with (x + 1) / 2"
        )
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@functools.cache
def _lab_to_srgb() -> ImageCms.ImageCmsTransform:
    lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
    return ImageCms.buildTransform(lab, srgb, "LAB", "RGB")


def _pil_to_rgb(pil: Image.Image, name: str) -> Image.Image:
    mode = pil.mode
    if mode == "RGB":
        return pil
    if mode == "LAB":
        return ImageCms.applyTransform(pil, _lab_to_srgb())
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):  # as a uint16 array
        return _array_to_pil(np.asarray(pil, dtype=np.uint16), name).convert("RGB")
    if mode == "I":
        a = np.asarray(pil, dtype=np.int64)
        top = 65535 if a.max(initial=0) > 255 else 255
        a = np.clip(a, 0, top) * 255 // top
        return Image.fromarray(a.astype(np.uint8), mode="L").convert("RGB")
    if mode == "F":
        a = _unit_floats(np.asarray(pil, dtype=np.float32), f"{name} (a PIL image of mode F)")
        return Image.fromarray(a, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in pil.info
    )
    if has_alpha:
        rgba = pil.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    try:
        return pil.convert("RGB")
    except ValueError as exc:  # a mode PIL cannot convert ("conversion ... not supported")
        raise ValueError(f"{name}: a PIL image of mode {mode} cannot be read ({exc})") from None


def check_min_size(image: Image.Image, *, name: str = "image") -> None:
    """Raise ``ValueError`` if either side of ``image`` is below :data:`MIN_SIDE` (64) pixels."""
    w, h = image.size
    if min(w, h) < MIN_SIDE:
        raise ValueError(
            f"{name} is {w}x{h}; both sides must be at least {MIN_SIDE} px "
            "(upscale it first, e.g. image.resize(...))"
        )


def to_mask(mask, size: tuple[int, int] | None = None, *, name: str = "mask") -> np.ndarray:
    """Return ``mask`` as an ``HxW bool`` array (``True`` = subject).

    Accepts a bool array, a 0/1 or 0/255 integer array, a float array (> 0.5 is True; not NaN
    or infinite), an ``HxWx1`` array, or a PIL image (as ``L``, > 127 is True), within
    :func:`max_pixels`. ``size``: the expected ``(width, height)``. Raises ``ValueError``
    naming ``name``.
    """
    if isinstance(mask, Image.Image):
        check_pixel_limit(*mask.size, name)
        try:
            a = np.asarray(mask.convert("L")) > 127
        except ValueError as exc:  # a mode PIL cannot convert ("conversion ... not supported")
            raise ValueError(
                f"{name}: a PIL image of mode {mask.mode} cannot be read as a mask ({exc}); "
                "give an L or 1 image or an HxW array"
            ) from None
    elif isinstance(mask, np.ndarray):
        a = mask[:, :, 0] if mask.ndim == 3 and mask.shape[2] == 1 else mask
        if a.ndim != 2:
            raise ValueError(f"{name} must be HxW, got shape {mask.shape}")
        check_pixel_limit(a.shape[1], a.shape[0], name)
        if a.dtype == bool:
            pass
        elif np.issubdtype(a.dtype, np.integer):
            a = a > (127 if a.max(initial=0) > 1 else 0)
        elif np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                raise ValueError(f"{name} has NaN or infinite values: give 0/1 or True/False")
            a = a > 0.5
        else:
            raise ValueError(f"{name} must be bool, integer or float, not {a.dtype}")
    else:
        raise ValueError(f"{name} must be a numpy array or PIL image, not {type(mask).__name__}")
    if size is not None and (a.shape[1], a.shape[0]) != tuple(size):
        raise ValueError(
            f"{name} is {a.shape[1]}x{a.shape[0]} but the image is {size[0]}x{size[1]}: "
            "make the mask from this image (or resize it with Image.NEAREST)"
        )
    return np.ascontiguousarray(a, dtype=bool)


def check_subject(mask: np.ndarray, *, name: str = "subject_mask") -> None:
    """Raise ``ValueError`` if ``mask`` is empty or covers the whole picture."""
    if not mask.any():
        raise ValueError(
            f"{name} is empty: select the subject first (clicks, a box or a text prompt)"
        )
    if mask.all():
        raise ValueError(f"{name} covers the whole picture: there is no background to replace")
