"""Stable Diffusion v1 pipelines: :func:`load_sd`, and the inpainting and image-to-image
pipelines that share its weights (:func:`inpainting`, :func:`img2img`). Each takes a hub id, a
folder or ``"tiny"`` through the same code, and is loaded once per process
(:data:`~sdsam_nb.models.cache.MODELS`).
"""

from __future__ import annotations

import json

import torch

from ..recording import recorded
from ..validate import check_flag, check_text_or_none
from .cache import (
    MODELS,
    cache_dir,
    hub_errors,
    loading_bars,
    provenance,
    remember,
    resolve_model,
    unavailable,
)
from .devices import pick_device, pick_dtype
from .fast import FastAdapter, fast_mode
from .schedulers import DEFAULT_SCHEDULER, SCHEDULERS, make_scheduler
from .tiny import sd_folder, sd_inpainting_folder

DEFAULT_SD = "CompVis/stable-diffusion-v1-4"
INPAINTING_SD = "stable-diffusion-v1-5/stable-diffusion-inpainting"
SALIENT_BG = "yahoo-inc/photo-background-generation"  # the salient method (.salient)

# built-in tiny checkpoints besides "tiny" (the text-to-image one): name -> builder(root)
TINY_SD = {"tiny-inpainting": sd_inpainting_folder}
# components a dedicated checkpoint may take from the loaded text-to-image pipeline when they
# are the same class, configuration and weights (never the UNet or the scheduler)
SHAREABLE = ("text_encoder", "tokenizer", "vae", "safety_checker", "feature_extractor")


def _resolve_sd(model: str) -> tuple[str, bool]:
    if isinstance(model, str) and model in TINY_SD:
        return str(TINY_SD[model](cache_dir() / "tiny")), True
    return resolve_model(
        model, "model", build_tiny=sd_folder, marker="model_index.json", example=DEFAULT_SD
    )


def from_pretrained(cls, model: str, *, progress: bool = True, **kwargs):
    """``cls.from_pretrained`` of ``model=`` (a hub id, a folder or a tiny name) with one
    short error for a model that cannot be had; fp32 files cast when there is no fp16 variant."""
    source, local = _resolve_sd(model)
    if local:
        kwargs.pop("variant", None)  # a local folder holds whatever it holds
    try:
        with loading_bars(progress):
            return cls.from_pretrained(source, **kwargs)
    except (*hub_errors(), ValueError) as exc:
        if kwargs.get("variant") and "variant" in str(exc):
            return from_pretrained(cls, model, progress=progress, **{**kwargs, "variant": None})
        if local or isinstance(exc, ValueError):
            raise
        raise unavailable(model, exc) from None


def dtype_kwarg(cls=None) -> str:
    """The name of ``from_pretrained``'s dtype argument for ``cls`` (a diffusers class by
    default): ``dtype`` since diffusers 0.42 and transformers 4.56, ``torch_dtype`` before."""
    import diffusers
    import transformers

    lib, since = diffusers, (0, 42)
    if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
        lib, since = transformers, (4, 56)
    version = tuple(int(p) for p in lib.__version__.split(".")[:2])
    return "dtype" if version >= since else "torch_dtype"


def weights_kwargs(dtype: torch.dtype, cls=None, **extra) -> dict:
    """``from_pretrained``'s arguments for weights in ``dtype`` (the ``fp16`` variant for fp16
    unless ``extra`` names one), and ``extra``."""
    kwargs = {dtype_kwarg(cls): dtype, **extra}
    if dtype == torch.float16 and "variant" not in extra:
        kwargs["variant"] = "fp16"
    return kwargs


def _pipeline_kwargs(dtype: torch.dtype, safety_checker: bool, **extra) -> dict:
    kwargs = weights_kwargs(dtype, low_cpu_mem_usage=True, **extra)
    if not safety_checker:
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return kwargs


@recorded("load_sd", model=("sd", "model"))
def load_sd(
    model: str = DEFAULT_SD,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    safety_checker: bool = True,
    revision: str | None = None,
    variant: str | None = None,
    progress: bool = True,
    offload: bool = False,
    compile_unet: bool = False,
    scheduler: str | None = DEFAULT_SCHEDULER,
    fast: str | None = None,
):
    """Load a Stable Diffusion v1 text-to-image pipeline, once per process.

    Args:
        model: a hub id (default ``CompVis/stable-diffusion-v1-4``), a local folder written
            by ``save_pretrained``, or ``"tiny"`` for the built-in offline model.
        device: ``None`` picks CUDA, then MPS, then CPU (see :func:`pick_device`).
        dtype: ``None`` gives fp16 on a GPU (with the repo's ``fp16`` weight variant when it
            has one), on the CPU :func:`pick_dtype`'s choice. ``run.json`` records it.
        safety_checker: keep the model's safety checker (when it has one). It blacks out images
            it flags; :func:`sdsam_nb.generate` reports that.
        revision: a hub revision (branch, tag or commit) to pin.
        variant: weight variant; ``None`` means ``"fp16"`` for fp16 on a hub id.
        progress: show diffusers' progress bars.
        offload: diffusers' ``enable_model_cpu_offload`` for small GPUs (needs a GPU
            ``device``); :func:`inpainting` and :func:`img2img` of it are offloaded too.
        compile_unet: ``torch.compile`` the UNet in place (the first call compiles).
        scheduler: the sampler, a name from :data:`SCHEDULERS` built from the model's own
            scheduler config; default ``"dpm++"`` (DPM-Solver++ multistep); ``None`` keeps
            the model's own. :func:`inpainting` and :func:`img2img` use it too.
        fast: a few-step mode from :data:`~sdsam_nb.models.fast.FAST` (``"lcm"``, ``"tcd"``,
            ``"hyper-sd"``; ``None``: off; ``docs/models.md``): its LoRA fused into a UNet of
            this pipeline's own, sampling with the adapter's scheduler (leave ``scheduler`` at
            its default) and, by default, its steps and guidance.

    Returns:
        A ``diffusers.StableDiffusionPipeline`` on ``device``. The same arguments return the
        same object (:data:`MODELS` keeps it); another ``scheduler`` or ``progress`` gives
        another pipeline object on the same weights. :func:`provenance` tells what it was
        loaded from (with ``fast``: ``provenance(pipe)["fast"]``).

    Raises:
        ValueError: ``model``, ``device`` or ``dtype`` is malformed, ``offload`` without a
            GPU, an unknown ``fast`` or a ``scheduler`` that does not go with it, or an
            adapter that does not fit the model (made for another base model).
        ModelUnavailableError: a hub id (model or adapter) that is neither cached nor
            downloadable.
    """
    from diffusers import StableDiffusionPipeline

    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    offload, compile_unet = check_flag(offload, "offload"), check_flag(compile_unet, "compile_unet")
    check_flag(safety_checker, "safety_checker")
    check_flag(progress, "progress")
    check_text_or_none(revision, "revision")
    check_text_or_none(variant, "variant")
    if offload and dev.type == "cpu":
        raise ValueError(
            "offload=True needs a GPU device: it keeps the models on the CPU and moves each to "
            "the GPU while it runs; on the CPU leave offload=False"
        )
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise ValueError(
            f"scheduler={scheduler!r} is not one of {list(SCHEDULERS)} or None (the model's own)"
        )
    mode = fast_mode(fast, scheduler)
    key = ("sd", str(model), str(dev), dt, bool(safety_checker), revision, variant)
    key += (bool(offload), bool(compile_unet))
    plain = MODELS.get(key)
    if mode is not None:
        key, scheduler = (*key, "fast", fast), mode.scheduler
    base = MODELS.get(key)
    if base is None:
        extra = {"revision": revision} if revision else {}
        if variant is not None:
            extra["variant"] = variant
        kwargs = _pipeline_kwargs(dt, safety_checker, **extra)
        adapter = None if mode is None else FastAdapter(model, fast)
        if adapter is not None and plain is not None:  # share what the adapter leaves alone
            for part in set(SHAREABLE) - set(adapter.parts) - set(kwargs):
                if getattr(plain, part, None) is not None:
                    kwargs[part] = getattr(plain, part)
        base = from_pretrained(StableDiffusionPipeline, model, progress=progress, **kwargs)
        if adapter is not None:
            adapter.fuse_into(base)
        fused = {} if adapter is None else {"fast": adapter.identity}
        place(base, model, revision, dev if offload else None, dev, **fused)
        if compile_unet:
            base.unet.compile()  # in place: the same parameters, so sharing still holds
        MODELS.put(key, base)
    return cached_view(key, base, type(base), scheduler, progress)


def place(base, model, revision, offload_device, device, **info) -> None:
    """Put a freshly loaded pipeline on its device (or under model CPU offload to
    ``offload_device``) and record where it came from (and ``info``)."""
    if offload_device is not None:
        base.enable_model_cpu_offload(device=offload_device)
    else:
        base.to(device)
    remember(
        base,
        model=str(model),
        revision=revision,
        path=str(base.config._name_or_path),
        scheduler=None,
        own_scheduler=base.scheduler,
        offload_device=offload_device,
        progress=True,
        **info,
    )


def pipeline_info(pipe) -> tuple[dict, torch.device | None, torch.device, torch.dtype]:
    """``(info, offload_device, device, dtype)`` of ``pipe``: its :func:`provenance` (of a
    pipeline the kit did not load only whether model CPU offload is on: diffusers has no public
    accessor for it, so its bookkeeping is read), the GPU of its model CPU offload (else
    ``None``), the device it runs on and its UNet's dtype."""
    info = provenance(pipe)
    if not info:
        hooked = getattr(pipe, "_all_hooks", None)
        offload = getattr(pipe, "_offload_device", None) if hooked else None
        info = {"offload_device": None if offload is None else torch.device(offload)}
    offload = info.get("offload_device")
    param = next(iter(pipe.unet.parameters()))
    return info, offload, torch.device(offload or param.device), param.dtype


def cached_view(key: tuple, base, cls, scheduler: str | None, progress: bool):
    """The ``cls`` view of ``base`` with ``scheduler`` (built from ``base``'s own scheduler
    config) and ``progress``, made once and kept in :data:`MODELS`."""
    view_key = (*key, "view", scheduler, bool(progress))
    if view_key not in MODELS:
        sampler = None if scheduler is None else make_scheduler(scheduler, base)
        MODELS.put(view_key, _view(base, cls, sampler, scheduler, progress))
    return MODELS.get(view_key)


def _view(base, cls, sampler, scheduler_name, progress: bool):
    """A new ``cls`` pipeline on ``base``'s modules (no second copy of any weight) with
    ``sampler`` (``None``: ``base``'s own) and its own progress setting; ``base`` is not
    changed."""
    from diffusers.utils import logging as dlogging

    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()  # from_pipe's .to() warns about an empty fp32-module list
    try:
        # from_pipe casts every shared module to its dtype argument (float32 by default):
        # pass the base's own, or an fp16 pipe would be turned to fp32 in place
        extra = {} if sampler is None else {"scheduler": sampler}
        view = cls.from_pipe(base, **{dtype_kwarg(): base.unet.dtype}, **extra)
    finally:
        dlogging.set_verbosity(level)
    info, offload, _, _ = pipeline_info(base)
    if offload is not None:  # the shared modules move to the GPU to run
        view.enable_model_cpu_offload(device=offload)
    view.set_progress_bar_config(disable=not progress)
    return remember(view, **{**info, "scheduler": scheduler_name, "progress": bool(progress)})


def _dedicated(pipe, cls, model: str):
    """Checkpoint ``model`` as a ``cls`` pipeline for ``pipe``: loaded once, on ``pipe``'s
    device, dtype, offload, safety checker and few-step adapter, with its sampler."""
    info, offload_device, dev, dt = pipeline_info(pipe)
    safety = getattr(pipe, "safety_checker", None) is not None
    progress = info.get("progress", True)
    shareable = tuple(id(getattr(pipe, sub, None)) for sub in SHAREABLE)
    fast = info.get("fast")
    key = (cls.__name__, str(model), str(dev), dt, safety, offload_device is not None)
    key += (shareable,)  # shares modules with this text-to-image pipeline (and its views)
    key += () if fast is None else ("fast", fast["name"])
    base = MODELS.get(key)
    if base is None:
        adapter = None if fast is None else FastAdapter(info.get("model"), fast["name"])
        kwargs = _pipeline_kwargs(dt, safety)
        components = _components_for(pipe, cls, model, progress, kwargs)
        shared = sorted(k for k, v in components.items() if v is getattr(pipe, k, None))
        base = from_pretrained(cls, model, progress=progress, **kwargs, **components)
        if adapter is not None:
            adapter.fuse_into(base)
        fused = {} if fast is None else {"fast": fast}
        place(base, model, None, offload_device, dev, shared=shared, **fused)
        MODELS.put(key, base)
    return cached_view(key, base, cls, info.get("scheduler"), progress)


def _components_for(pipe, cls, model: str, progress: bool, kwargs: dict) -> dict:
    """The components of checkpoint ``model`` that can be handed to ``cls.from_pretrained``:
    ``pipe``'s own module where the checkpoint's is the same class, configuration and
    weights (so it is held once: each candidate is loaded as ``from_pretrained`` would and
    compared tensor by tensor), else the checkpoint's, loaded here once."""
    index = cls.load_config(_resolve_sd(model)[0])
    out = {}
    for sub in SHAREABLE:
        mine = getattr(pipe, sub, None)
        entry = index.get(sub)
        if mine is None or not isinstance(entry, (list, tuple)) or entry[1] != type(mine).__name__:
            continue
        extra = {"variant": kwargs["variant"]} if "variant" in kwargs else {}
        theirs = from_pretrained(type(mine), model, progress=progress, subfolder=sub, **extra)
        if _same_module(mine, theirs):
            out[sub] = mine
        else:  # loaded anyway: hand it over in the dtype the pipeline would have given it
            dtype = kwargs[dtype_kwarg()]
            out[sub] = theirs.to(dtype=dtype) if isinstance(theirs, torch.nn.Module) else theirs
    return out


def _same_module(mine, theirs) -> bool:
    """Whether ``theirs`` (just loaded) is ``mine``: same class and configuration, and every
    tensor equal once cast to ``mine``'s dtype; tokenizers and image processors by content."""

    def without(d: dict, *keys: str) -> dict:
        return {k: v for k, v in d.items() if k not in keys}

    if type(mine) is not type(theirs):
        return False
    if hasattr(mine, "backend_tokenizer"):  # a fast tokenizer; padding, truncation: per call
        a, b = (json.loads(t.backend_tokenizer.to_str()) for t in (mine, theirs))
        return without(a, "padding", "truncation") == without(b, "padding", "truncation")
    if hasattr(mine, "get_vocab"):  # a slow tokenizer: vocabulary and merges
        ranks = [getattr(t, "bpe_ranks", None) for t in (mine, theirs)]
        return mine.get_vocab() == theirs.get_vocab() and ranks[0] == ranks[1]
    if not isinstance(mine, torch.nn.Module):  # an image processor
        return mine.to_dict() == theirs.to_dict()
    drop = ("_name_or_path", "_diffusers_version", "transformers_version", "torch_dtype", "dtype")
    a, b = (
        m.config.to_dict() if hasattr(m.config, "to_dict") else dict(m.config)
        for m in (mine, theirs)
    )
    if without(a, *drop) != without(b, *drop):
        return False
    a, b = mine.state_dict(), theirs.state_dict()
    return a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and torch.equal(a[k].detach().cpu(), b[k].to(a[k].dtype))
        for k in a
    )


def inpainting(pipe, model: str | None = None):
    """An inpainting pipeline for ``pipe``'s device and dtype.

    With ``model=None`` it is built from ``pipe``'s own modules (no second copy in memory);
    SD v1-4's 4-channel UNet inpaints by latent blending. With a 9-channel inpainting
    checkpoint (e.g. :data:`INPAINTING_SD`; ``"tiny-inpainting"`` built in) that is loaded once
    per process, sampling with ``pipe``'s sampler, sharing ``pipe``'s text encoder, tokenizer
    and VAE where they are the same weights, and with ``pipe``'s few-step adapter fused in.

    Raises:
        ValueError: ``model`` is not an inpainting checkpoint (its UNet does not take the 9
            channels of latents, mask and masked picture), or ``pipe``'s adapter does not fit
            it.
    """
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    if model is None:
        return _same_weights(pipe, StableDiffusionInpaintPipeline)
    source, _ = _resolve_sd(model)
    try:
        unet = UNet2DConditionModel.load_config(source, subfolder="unet")
    except (OSError, ValueError):  # not cached and offline, or no unet: from_pretrained says
        unet = {}
    channels = unet.get("in_channels", 9)
    if channels != 9:
        raise ValueError(
            f"model={model!r} is not an inpainting checkpoint: its UNet takes {channels} "
            "channels where a dedicated inpainting UNet takes 9 (latents, mask, masked "
            f"picture), e.g. {INPAINTING_SD!r}; None inpaints with the loaded model's weights"
        )
    return _dedicated(pipe, StableDiffusionInpaintPipeline, model)


def img2img(pipe, model: str | None = None):
    """An image-to-image pipeline sharing ``pipe``'s weights (or ``model``'s, loaded once)."""
    from diffusers import StableDiffusionImg2ImgPipeline

    if model is None:
        return _same_weights(pipe, StableDiffusionImg2ImgPipeline)
    return _dedicated(pipe, StableDiffusionImg2ImgPipeline, model)


def _same_weights(pipe, cls):
    """A ``cls`` pipeline on ``pipe``'s modules and sampler, offloaded and quiet as it is."""
    info = provenance(pipe)
    return _view(pipe, cls, None, info.get("scheduler"), info.get("progress", True))
