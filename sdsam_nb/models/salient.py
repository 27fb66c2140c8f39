"""The salient-object-aware ControlNet of *Salient Object-Aware Background Generation using
Text-Guided Diffusion Models* (CVPR 2024 workshops): :func:`salient_inpainting`.

The checkpoint (:data:`~sdsam_nb.models.sd.SALIENT_BG`; ``"tiny"``:
:mod:`sdsam_nb.models.tiny.salient`) is SD 2 inpainting plus a ControlNet conditioned on the
background mask, assembled from its component folders, each loaded with its own diffusers or
transformers class (no code from the hub runs). Its ControlNet takes the inpainting UNet's 9
input channels, which diffusers' ``StableDiffusionControlNetInpaintPipeline`` does not feed it
(diffusers issue #4374): :class:`SalientInpaintPipeline` does, and changes nothing else. This
module imports diffusers: the background methods import it when the method is used.
"""

from __future__ import annotations

import os

import diffusers
import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from .cache import MODELS, hub_config, resolve_model, unavailable
from .sd import SALIENT_BG, cached_view, from_pretrained, pipeline_info, place, weights_kwargs
from .tiny import salient_folder


class SalientInpaintPipeline(diffusers.StableDiffusionControlNetInpaintPipeline):
    """diffusers' ControlNet inpainting pipeline whose ControlNet, when it takes 9 input
    channels, gets the inpainting UNet's input: latents + mask + masked-picture latents."""

    _unet_extra = None  # (mask, masked-picture latents) of the call under way

    def prepare_mask_latents(self, *args, **kwargs):
        mask, masked = super().prepare_mask_latents(*args, **kwargs)
        self._unet_extra = (mask, masked)
        return mask, masked

    def __call__(self, *args, **kwargs):
        hook = self.controlnet.register_forward_pre_hook(self._full_input, with_kwargs=True)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            hook.remove()
            self._unet_extra = None

    def _full_input(self, controlnet, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        if self._unet_extra is None or sample.shape[1] == controlnet.config.in_channels:
            return None
        n = sample.shape[0]  # guess mode runs the ControlNet on the conditional half only
        mask, masked = (t[-n:] for t in self._unet_extra)
        sample = torch.cat([sample, mask.to(sample.dtype), masked.to(sample.dtype)], dim=1)
        if args:
            return (sample, *args[1:]), kwargs
        return args, {**kwargs, "sample": sample}


def _check_layout(model, source: str, local: bool) -> None:
    """Raise a one-line ``ValueError`` unless ``source`` holds a ``controlnet/`` folder and a
    9-channel inpainting ``unet/`` (with a ControlNet taking 4 or those 9 channels)."""
    need = (
        f"a ControlNet-inpainting checkpoint is needed (a controlnet/ folder and a 9-channel "
        f"inpainting unet/, like {SALIENT_BG!r})"
    )
    controlnet = hub_config(model, source, local, subfolder="controlnet")
    if controlnet is None:
        raise ValueError(f"model={str(model)!r} has no controlnet/ folder: {need}")
    unet = hub_config(model, source, local, subfolder="unet")
    unet_in = None if unet is None else unet.get("in_channels")
    if unet_in != 9:
        got = "no unet/ folder" if unet is None else f"a unet with in_channels={unet_in}"
        raise ValueError(f"model={str(model)!r} has {got}: {need}")
    if controlnet.get("in_channels") not in (4, 9):
        raise ValueError(
            f"model={str(model)!r} has a controlnet with in_channels="
            f"{controlnet.get('in_channels')}: {need}"
        )


def salient_inpainting(pipe, model: str | os.PathLike = SALIENT_BG):
    """The salient ControlNet inpainting pipeline (a :class:`SalientInpaintPipeline`) for the
    text-to-image ``pipe`` of :func:`sdsam_nb.load_sd`, loaded once per process: on ``pipe``'s
    device and dtype, offloaded when it is, with the sampler :func:`~sdsam_nb.load_sd` chose
    for it (built from the checkpoint's own scheduler config; the checkpoint's own, UniPC,
    when it kept the model's), its progress setting, and its safety checker when it has one
    (shared: the checkpoint has none of its own).

    ``model``: a hub id (default :data:`SALIENT_BG`), a folder with the same layout, or
    ``"tiny"`` for the built-in replica.

    Raises:
        ValueError: ``model`` is malformed or not a ControlNet-inpainting checkpoint, or
            ``pipe`` has a few-step adapter (``load_sd(fast=...)``: it is for SD 1.x and this
            checkpoint is SD 2).
        ModelUnavailableError: a hub id that is neither cached nor downloadable.
    """
    info, offload_device, dev, dtype = pipeline_info(pipe)
    if info.get("fast"):
        raise ValueError(
            f"the salient method is SD 2 inpainting: the fast={info['fast']['name']!r} adapter is "
            "for SD 1.x and does not apply to it; load_sd with fast=None, or another method"
        )
    checker = getattr(pipe, "safety_checker", None)
    progress = info.get("progress", True)
    key = ("salient", str(model), str(dev), dtype, id(checker), offload_device is not None)
    base = MODELS.get(key)
    if base is None:
        source, local = resolve_model(
            model, "model", build_tiny=salient_folder, marker="model_index.json", example=SALIENT_BG
        )
        _check_layout(model, source, local)
        parts = {}
        for name, cls in (
            ("controlnet", ControlNetModel),
            ("unet", UNet2DConditionModel),
            ("vae", AutoencoderKL),
            ("text_encoder", CLIPTextModel),
            ("tokenizer", CLIPTokenizer),
            ("scheduler", _scheduler_class(source, local, model)),
        ):
            weights = weights_kwargs(dtype, cls) if issubclass(cls, torch.nn.Module) else {}
            parts[name] = from_pretrained(cls, source, progress=progress, subfolder=name, **weights)
        base = SalientInpaintPipeline(
            **parts,
            safety_checker=checker,
            feature_extractor=getattr(pipe, "feature_extractor", None) if checker else None,
            requires_safety_checker=False,
        )
        base.register_to_config(_name_or_path=source)  # what from_pretrained records
        place(base, str(model), None, offload_device, dev)
        MODELS.put(key, base)
    return cached_view(key, base, SalientInpaintPipeline, info.get("scheduler"), progress)


def _scheduler_class(source: str, local: bool, model):
    """The diffusers scheduler class the checkpoint's ``scheduler/scheduler_config.json`` names
    (UniPC for :data:`SALIENT_BG`)."""
    try:
        # load_config only reads scheduler_config.json: any scheduler class does
        config = diffusers.UniPCMultistepScheduler.load_config(source, subfolder="scheduler")
    except (OSError, ConnectionError) as exc:
        if local:
            raise ValueError(
                f"model={str(model)!r} has no scheduler/scheduler_config.json"
            ) from None
        raise unavailable(str(model), exc) from None
    name = config.get("_class_name", "")
    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        raise ValueError(f"model={str(model)!r} names an unknown scheduler {name!r}")
    return cls
