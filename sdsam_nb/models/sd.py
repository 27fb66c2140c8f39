"""Stable Diffusion v1 pipelines: :func:`load_sd`, and the inpainting and image-to-image
pipelines that share its weights (:func:`inpainting`, :func:`img2img`).

Every loader takes a real model id *or* ``"tiny"`` (the built-in tiny models of
:mod:`sdsam_nb.models.tiny`) and goes through the same code either way. A pipeline is loaded
once per process (:data:`~sdsam_nb.models.cache.MODELS`); a different sampler or progress
setting is another pipeline object on the same weights, so a cache hit never changes what
another caller holds. Nothing moves to a GPU unless ``device`` says so or one is available
and ``device`` is left to ``None``.
"""

from __future__ import annotations

import torch

from . import tiny
from .cache import (
    MODELS,
    loading_bars,
    provenance,
    remember,
    resolve_model,
    unavailable,
)
from .devices import pick_device, pick_dtype
from .schedulers import DEFAULT_SCHEDULER, SCHEDULERS, make_scheduler

DEFAULT_SD = "CompVis/stable-diffusion-v1-4"


INPAINTING_SD = "stable-diffusion-v1-5/stable-diffusion-inpainting"


def _resolve_sd(model: str, name: str) -> tuple[str, bool]:
    return resolve_model(
        model, name, build_tiny=tiny.sd_folder, marker="model_index.json", example=DEFAULT_SD
    )


def _from_pretrained(cls, model: str, name: str, *, progress: bool = True, **kwargs):
    """``cls.from_pretrained`` with one short error for a model that cannot be had."""
    from huggingface_hub.utils import HfHubHTTPError, OfflineModeIsEnabled

    source, local = _resolve_sd(model, name)
    if local:
        kwargs.pop("variant", None)  # a local folder holds whatever it holds
    try:
        with loading_bars(progress):
            return cls.from_pretrained(source, **kwargs)
    except (OSError, ConnectionError, HfHubHTTPError, OfflineModeIsEnabled) as exc:
        if local:
            raise
        if kwargs.get("variant") and "variant" in str(exc):
            # The repo has no fp16 files: load the full-precision ones and cast.
            return _from_pretrained(
                cls, model, name, progress=progress, **{**kwargs, "variant": None}
            )
        raise unavailable(model, exc) from None
    except ValueError as exc:
        if kwargs.get("variant") and "variant" in str(exc):
            return _from_pretrained(
                cls, model, name, progress=progress, **{**kwargs, "variant": None}
            )
        raise


def _dtype_kwarg() -> str:
    """diffusers 0.42 renamed ``torch_dtype`` to ``dtype`` (the old name warns)."""
    import diffusers

    major, minor = (int(p) for p in diffusers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (0, 42) else "torch_dtype"


def _pipeline_kwargs(device: torch.device, dtype: torch.dtype, safety_checker: bool, **extra):
    kwargs = {_dtype_kwarg(): dtype, "low_cpu_mem_usage": True, **extra}
    if dtype == torch.float16 and "variant" not in extra:
        kwargs["variant"] = "fp16"
    if not safety_checker:
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return kwargs


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
):
    """Load a Stable Diffusion v1 text-to-image pipeline, once per process.

    Args:
        model: a hub id (default ``CompVis/stable-diffusion-v1-4``), a local folder written
            by ``save_pretrained``, or ``"tiny"`` for the built-in offline model.
        device: ``None`` picks CUDA, then MPS, then CPU (see :func:`pick_device`).
        dtype: ``None`` gives fp16 on a GPU (with the repo's ``fp16`` weight variant when it
            has one) and fp32 on the CPU.
        safety_checker: keep the model's safety checker (when it has one). It blacks out images
            it flags; :func:`sdsam_nb.generate` reports that.
        revision: a hub revision (branch, tag or commit) to pin.
        variant: weight variant; ``None`` means ``"fp16"`` for fp16 on a hub id.
        progress: show diffusers' progress bars.
        offload: for small GPUs, keep the models on the CPU and move each one to the GPU only
            while it runs (diffusers' ``enable_model_cpu_offload``): far less GPU memory, a
            little slower. Needs a GPU ``device``. :func:`inpainting` and :func:`img2img` of
            an offloaded pipeline are offloaded too.
        compile_unet: compile the UNet in place with ``torch.compile`` (the weights stay the
            ones the other pipelines share). The first call compiles (a minute or more);
            later calls may be faster on a GPU: ``benchmarks/`` measures it.
        scheduler: the sampler, a name from :data:`SCHEDULERS`; default ``"dpm++"``
            (DPM-Solver++ multistep: 20-25 steps where SD v1-4's own PNDM wants about 50,
            diffusers' recommendation); ``None`` keeps the model's own. It is built from the
            model's scheduler config (same noise schedule). :func:`inpainting` and
            :func:`img2img` use it too. Calling again with another scheduler (or another
            ``progress``) returns another pipeline object on the same weights, without
            loading them again; the pipeline returned before is not changed.

    Returns:
        A ``diffusers.StableDiffusionPipeline`` on ``device``. Calling again with the same
        arguments returns the same object (:data:`MODELS` keeps it); :func:`provenance`
        tells what it was loaded from.

    Raises:
        ValueError: ``model``, ``device`` or ``dtype`` is malformed, or ``offload`` without a
            GPU.
        ModelUnavailableError: a hub id that is neither cached nor downloadable.
    """
    from diffusers import StableDiffusionPipeline

    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    for name, flag in (("offload", offload), ("compile_unet", compile_unet)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    if offload and dev.type == "cpu":
        raise ValueError(
            "offload=True needs a GPU device: it keeps the models on the CPU and moves each to "
            "the GPU while it runs; on the CPU leave offload=False"
        )
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise ValueError(
            f"scheduler={scheduler!r} is not one of {list(SCHEDULERS)} or None (the model's own)"
        )
    key = ("sd", str(model), str(dev), dt, bool(safety_checker), revision, variant)
    key += (bool(offload), bool(compile_unet))
    base = MODELS.get(key)
    if base is None:
        extra = {"revision": revision} if revision else {}
        if variant is not None:
            extra["variant"] = variant
        base = _from_pretrained(
            StableDiffusionPipeline,
            model,
            "model",
            progress=progress,
            **_pipeline_kwargs(dev, dt, safety_checker, **extra),
        )
        _place(base, model, revision, dev if offload else None, dev)
        if compile_unet:
            base.unet.compile()  # in place: the same parameters, so sharing still holds
        MODELS.put(key, base)
    return _cached_view(key, base, type(base), scheduler, progress)


def _place(base, model, revision, offload_device, device) -> None:
    """Put a freshly loaded pipeline on its device (or under model CPU offload to
    ``offload_device``) and record where it came from."""
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
    )


def _cached_view(key: tuple, base, cls, scheduler: str | None, progress: bool):
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
        view = cls.from_pipe(base, **{_dtype_kwarg(): base.unet.dtype}, **extra)
    finally:
        dlogging.set_verbosity(level)
    info = provenance(base) or _foreign(base)
    if info.get("offload_device") is not None:  # the shared modules move to the GPU to run
        view.enable_model_cpu_offload(device=info["offload_device"])
    view.set_progress_bar_config(disable=not progress)
    return remember(view, **{**info, "scheduler": scheduler_name, "progress": bool(progress)})


def _foreign(pipe) -> dict:
    """What the kit can tell of a pipeline it did not load: whether model CPU offload is on,
    and where. diffusers has no public accessor for it, so its bookkeeping is read."""
    hooks = getattr(pipe, "_all_hooks", None)
    device = getattr(pipe, "_offload_device", None) if hooks else None
    return {"offload_device": None if device is None else torch.device(device)}


def _same_weights(pipe, cls):
    """A pipeline of class ``cls`` built from ``pipe``'s modules and sampler: no second copy
    of any weight, offloaded and quiet as ``pipe`` is."""
    info = provenance(pipe)
    return _view(pipe, cls, None, info.get("scheduler"), info.get("progress", True))


def _dedicated(pipe, cls, model: str, name: str):
    info = provenance(pipe) or _foreign(pipe)
    offload_device = info.get("offload_device")
    param = next(iter(pipe.unet.parameters()))
    dev, dt = offload_device or param.device, param.dtype
    safety = getattr(pipe, "safety_checker", None) is not None
    progress = info.get("progress", True)
    key = (cls.__name__, str(model), str(dev), dt, safety, offload_device is not None)
    base = MODELS.get(key)
    if base is None:
        base = _from_pretrained(
            cls, model, name, progress=progress, **_pipeline_kwargs(dev, dt, safety)
        )
        _place(base, model, None, offload_device, dev)
        MODELS.put(key, base)
    # the sampler load_sd chose for pipe, built from this checkpoint's own scheduler config
    return _cached_view(key, base, cls, info.get("scheduler"), progress)


def inpainting(pipe, model: str | None = None):
    """An inpainting pipeline for ``pipe``'s device and dtype.

    With ``model=None`` it is built from ``pipe``'s own modules (the same tensors, the same
    scheduler object: no second copy in memory); SD v1-4's 4-channel UNet inpaints by latent
    blending. With a model id such as ``stable-diffusion-v1-5/stable-diffusion-inpainting``
    (a 9-channel inpainting UNet) that checkpoint is loaded once per process and samples with
    the scheduler :func:`load_sd` chose for ``pipe``.
    """
    from diffusers import StableDiffusionInpaintPipeline

    if model is None:
        return _same_weights(pipe, StableDiffusionInpaintPipeline)
    return _dedicated(pipe, StableDiffusionInpaintPipeline, model, "model")


def img2img(pipe, model: str | None = None):
    """An image-to-image pipeline sharing ``pipe``'s weights (or ``model``'s, loaded once)."""
    from diffusers import StableDiffusionImg2ImgPipeline

    if model is None:
        return _same_weights(pipe, StableDiffusionImg2ImgPipeline)
    return _dedicated(pipe, StableDiffusionImg2ImgPipeline, model, "model")
