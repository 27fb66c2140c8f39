"""Relighting a subject with IC-Light (:func:`relight`, following IC-Light's demos; the model
is :mod:`sdsam_nb.models.iclight`'s)."""

from __future__ import annotations

import inspect
import os
from functools import partial
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps

from ..edges import paste
from ..images import ImageLike, check_min_size, to_rgb
from ..models.fast import sampling
from ..models.iclight import MODES, ICLight, load_iclight
from ..recording import recorded
from ..validate import check_int, check_number, short_repr
from .common import check_subject_alpha, processing_size
from .scores import relight_score

LIGHTS = ("none", "left", "right", "top", "bottom")
"""``relight(light=...)``: where text mode's light comes from at the start (IC-Light's
"Lighting Preference"); ``"none"`` starts from noise."""
QUALITY_PROMPT = "best quality"
"""Appended to the prompt (``prompt + ", best quality"``), as IC-Light's demos do."""
NEGATIVE_PROMPT = "lowres, bad anatomy, bad hands, cropped, worst quality"
"""The negative prompt of IC-Light's demos, :func:`relight`'s default."""


class Relit(NamedTuple):
    """What :func:`relight` returns: ``image`` (``RGB`` ``PIL.Image`` of the subject
    picture's size, the subject relit), ``alpha`` (the alpha or mask that was given,
    unchanged: paste with it as before) and ``score`` (:func:`relight_score` of the picture
    before and after)."""

    image: Image.Image
    alpha: np.ndarray
    score: dict


@recorded("relight")
def relight(
    pipe,
    subject: ImageLike,
    alpha,
    *,
    mode: str = "text",
    prompt: str = "",
    light: str = "none",
    background: ImageLike | None = None,
    negative_prompt: str | None = NEGATIVE_PROMPT,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    size: int = 512,
    light_strength: float = 0.9,
    highres_scale: float | None = None,
    highres_denoise: float = 0.5,
    weights: str | os.PathLike | None = None,
) -> Relit:
    """Relight the subject of ``subject`` with IC-Light: to a described light
    (``mode="text"``) or to match ``background`` (``mode="background"``).

    The foreground (``subject`` over grey through ``alpha``) and, in background mode,
    ``background`` (scaled to cover, centre-cropped) condition IC-Light's UNet at
    :func:`processing_size`; the result is resized back and blended over ``subject`` through
    ``alpha`` (``docs/api.md``, "Relighting the subject").

    Args:
        pipe: the text-to-image pipeline of :func:`sdsam_nb.load_sd` (SD 1.x); its UNet plus
            IC-Light's offsets makes IC-Light's (:func:`~sdsam_nb.models.iclight.load_iclight`).
        subject: the subject picture (:func:`~sdsam_nb.images.to_rgb`), both sides >= 64.
        alpha: where the subject is: an ``HxW bool`` mask (True = subject) or an ``HxW``
            float alpha in 0..1 of ``subject``'s size; not empty. Returned unchanged.
        mode: ``"text"`` (IC-Light fc: the foreground and ``prompt``) or ``"background"``
            (fbc: the foreground, ``background`` and ``prompt``).
        prompt: the light, e.g. ``"warm sunset light from the left"``; required (non-empty)
            in text mode, optional in background mode.
        light: text mode's initial light, one of :data:`LIGHTS`: ``"left"`` etc. start from
            a grey gradient bright on that side (an image-to-image start re-noised by
            ``light_strength``), ``"none"`` from noise. Background mode takes ``"none"``.
        background: background mode's picture (required there, refused in text mode).
        negative_prompt: IC-Light's demos' by default; ``None`` is empty.
        seed: the ``torch.Generator`` seed (the same arguments give the same picture).
        steps, guidance: denoising steps and guidance scale (<= 1: off); ``None`` takes
            IC-Light's demo values for the mode (text 25 and 2, background 20 and 7), or the
            few-step adapter's when ``pipe`` has one.
        size: long side in pixels the model works at (a multiple of 8, >= 64).
        light_strength: how much of the initial light picture is re-noised, in (0, 1]
            (IC-Light's "lowres denoise", 0.9); only with a ``light`` direction.
        highres_scale: ``None`` (default): one pass. A number >= 1: IC-Light's second pass,
            the result enlarged by that factor and re-noised by ``highres_denoise`` (the
            demos: 1.5 and 0.5).
        highres_denoise: the second pass's strength, in (0, 1].
        weights: ``None`` (IC-Light's hub file for ``mode``, pinned; the tiny one for the
            tiny pipeline) or a local offsets file or folder.

    Returns:
        :class:`Relit` ``(image, alpha, score)``; ``image.info`` holds ``seed``, ``mode``,
        ``light`` and ``iclight`` (which weights).

    Raises:
        ValueError: one line naming the argument: a bad argument, an ``alpha`` of another
            size or empty, offsets for another base model.
        ModelUnavailableError: IC-Light's hub file is neither cached nor downloadable.
    """
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, not {short_repr(mode)}")
    picture = to_rgb(subject, name="subject")
    check_min_size(picture, name="subject")
    weight = check_subject_alpha(alpha, picture.size)
    if not isinstance(prompt, str) or (mode == "text" and not prompt.strip()):
        need = "a non-empty string (the light)" if mode == "text" else "a string"
        raise ValueError(f"prompt must be {need} with mode={mode!r}, got {short_repr(prompt)}")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        got = short_repr(negative_prompt)
        raise ValueError(f"negative_prompt must be a string or None, got {got}")
    if not isinstance(light, str) or light not in LIGHTS:
        raise ValueError(f"light must be one of {list(LIGHTS)}, not {short_repr(light)}")
    if mode == "background":
        if light != "none":
            raise ValueError(
                f"light={light!r} is text mode's initial light; background mode takes its "
                "light from the background: leave light='none'"
            )
        if background is None:
            raise ValueError("background is required with mode='background' (a picture)")
        back = to_rgb(background, name="background")
    elif background is not None:
        raise ValueError("background is only for mode='background'; text mode takes none")
    check_int(seed, "seed", low=0)
    if seed > 2**64 - 1:
        raise ValueError(f"seed must be <= 2**64 - 1 (torch's seed range), got {seed}")
    steps, guidance, _ = sampling(pipe, steps, guidance, defaults=MODES[mode])
    check_int(steps, "steps", low=1)
    check_number(guidance, "guidance", low=0.0)
    work = processing_size(*picture.size, size)
    light_strength = check_number(light_strength, "light_strength", low=0, high=1, open_low=True)
    if highres_scale is not None:
        highres_scale = check_number(highres_scale, "highres_scale", low=1.0)
    highres_denoise = check_number(highres_denoise, "highres_denoise", low=0, high=1, open_low=True)

    model = load_iclight(pipe, mode, weights)
    device = model.unet.device  # the pipeline's (its GPU under model CPU offload)
    generator = torch.Generator(device=device).manual_seed(seed)
    original = np.asarray(picture)
    # the foreground on neutral grey, as IC-Light's demos prepare it: 127 where the alpha is 0
    grey = 127.0 + (original.astype(np.float32) - 127.0) * weight[..., None]
    foreground = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), mode="RGB")
    sources = [foreground] if mode == "text" else [foreground, back]

    with torch.no_grad():
        embeds = _embed(model, prompt, negative_prompt or "", guidance > 1, device)
        sample = partial(_sample, pipe, model, sources, embeds, steps, guidance, generator)
        if light == "none":
            latents = sample(work, None, 1.0)
        else:
            latents = sample(work, _gradient(light, work), light_strength)
        if highres_scale is not None:
            big = processing_size(*picture.size, max(64, round(size * highres_scale / 8) * 8))
            enlarged = _decode(model, latents).resize(big, Image.LANCZOS)
            latents = sample(big, enlarged, highres_denoise)
        relit = _decode(model, latents)
    if relit.size != picture.size:
        relit = relit.resize(picture.size, Image.LANCZOS)
    image = Image.fromarray(paste(original, np.asarray(relit), weight), mode="RGB")
    image.info.update(seed=seed, mode=mode, light=light, iclight=dict(model.identity))
    return Relit(image, alpha, relight_score(picture, image, alpha))


def _gradient(light: str, size: tuple[int, int]) -> Image.Image:
    """A grey ramp of ``size``, 255 on the ``light`` side down to 0 on the other side."""
    w, h = size
    bright_first = light in ("left", "top")
    line = np.linspace(255, 0, w if light in ("left", "right") else h)
    line = line if bright_first else line[::-1]
    grid = np.tile(line, (h, 1)) if light in ("left", "right") else np.tile(line[:, None], (1, w))
    return Image.fromarray(np.repeat(grid[..., None], 3, axis=2).astype(np.uint8), mode="RGB")


def _encode(model: ICLight, image: Image.Image, device) -> torch.Tensor:
    """The VAE latents of ``image`` (the distribution's mode, scaled), as the UNet's dtype."""
    # IC-Light's scaling: x / 127 - 1, so that its neutral grey 127 is exactly 0
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.0 - 1.0)
    pixels = array.permute(2, 0, 1)[None].to(device=device, dtype=model.vae.dtype)
    latents = model.vae.encode(pixels).latent_dist.mode()
    return (latents * model.vae.config.scaling_factor).to(device=device, dtype=model.unet.dtype)


def _decode(model: ICLight, latents: torch.Tensor) -> Image.Image:
    scaled = (latents / model.vae.config.scaling_factor).to(model.vae.dtype)
    pixels = model.vae.decode(scaled).sample[0].float()
    array = ((pixels.permute(1, 2, 0) + 1.0) * 127.5).clamp(0, 255).round()
    return Image.fromarray(array.to(torch.uint8).cpu().numpy(), mode="RGB")


def _condition(model: ICLight, sources, size: tuple[int, int], device) -> torch.Tensor:
    """The foreground's (and background's) latents at ``size``, side by side in channels."""
    fitted = [sources[0].resize(size, Image.LANCZOS)]
    fitted += [ImageOps.fit(s, size, Image.LANCZOS) for s in sources[1:]]  # cover, centre crop
    return torch.cat([_encode(model, s, device) for s in fitted], dim=1)


def _embed(model: ICLight, prompt: str, negative: str, guided: bool, device) -> torch.Tensor:
    """The text encoder's states of ``[negative, prompt]`` (guided) or of ``prompt`` alone."""
    texts = [f"{prompt}, {QUALITY_PROMPT}" if prompt.strip() else QUALITY_PROMPT]
    texts = [negative, *texts] if guided else texts
    tokens = model.tokenizer(
        texts,
        padding="max_length",
        max_length=model.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    states = model.text_encoder(tokens.input_ids.to(device))[0]
    return states.to(device=device, dtype=model.unet.dtype)


def _sample(pipe, model, sources, embeds, steps, guidance, generator, size, start, strength):
    """Denoise at ``size`` from noise (``start`` None) or from the picture ``start`` re-noised
    by ``strength``, the latents of ``sources`` at ``size`` concatenated to the UNet's input at
    each step; the final latents."""
    cond = _condition(model, sources, size, model.unet.device)
    if start is not None:
        start = _encode(model, start, cond.device)
    scheduler = type(model.scheduler).from_config(model.scheduler.config)
    total = steps if start is None else int(round(steps / strength))  # as the demo
    scheduler.set_timesteps(total, device=cond.device)
    skip = 0 if start is None else total - min(int(total * strength), total)
    timesteps = scheduler.timesteps[skip * scheduler.order :]
    if len(timesteps) == 0:
        raise ValueError(f"steps={steps} leaves no denoising step at strength {strength:g}")
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(skip * scheduler.order)
    shape = (1, 4, size[1] // 8, size[0] // 8)
    noise = torch.randn(shape, generator=generator, device=cond.device, dtype=model.unet.dtype)
    if start is None:
        latents = noise * scheduler.init_noise_sigma
    else:
        latents = scheduler.add_noise(start, noise, timesteps[:1])
    takes = inspect.signature(scheduler.step).parameters
    extra = {"generator": generator} if "generator" in takes else {}
    batch = embeds.shape[0]
    with pipe.progress_bar(total=len(timesteps)) as bar:
        for t in timesteps:
            x = scheduler.scale_model_input(torch.cat([latents] * batch), t)
            x = torch.cat([x, cond.expand(batch, -1, -1, -1)], dim=1)
            eps = model.unet(x, t, encoder_hidden_states=embeds).sample
            if batch == 2:  # classifier-free guidance: [negative, prompt]
                negative, positive = eps.chunk(2)
                eps = negative + guidance * (positive - negative)
            latents = scheduler.step(eps, t, latents, **extra).prev_sample
            bar.update()
    return latents
