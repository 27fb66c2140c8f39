"""Model loaders: Stable Diffusion v1 pipelines and Segment Anything predictors.

Every loader takes a real model id *or* ``"tiny"`` (the built-in tiny models of
:mod:`sdsam_nb.tiny`) and goes through the same code either way. Loading is cached per
process: calling a loader again with the same arguments (re-running a notebook cell) returns
the weights already in memory. Nothing moves to a GPU unless ``device`` says so or one is
available and ``device`` is left to ``None``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import warnings
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from . import tiny

DEFAULT_SD = "CompVis/stable-diffusion-v1-4"
INPAINTING_SD = "stable-diffusion-v1-5/stable-diffusion-inpainting"
TINY = "tiny"

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
# Official file names; the hex suffix is the start of the file's sha256 (torch.hub's convention).
SAM_CHECKPOINTS = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}
# Image-encoder width of each architecture, to name the type a wrong checkpoint belongs to.
_SAM_WIDTH = {1280: "vit_h", 1024: "vit_l", 768: "vit_b", 64: TINY}
_HASH_IN_NAME = re.compile(r"_([0-9a-f]{6,64})\.pth$")


class ModelCache:
    """The per-process cache of loaded models: loader arguments -> model.

    Each loader loads a model once per process and returns what is here for the same
    arguments (re-running a notebook cell costs nothing). A cache hit returns the object an
    earlier call returned and never changes it: a different sampler or progress setting
    gets its own pipeline object sharing the same weights. :data:`MODELS` is the one the
    loaders use; ``MODELS.clear()`` forgets everything (the memory is freed once nothing
    else refers to the models).
    """

    def __init__(self) -> None:
        self._models: dict[tuple, Any] = {}

    def get(self, key: tuple) -> Any | None:
        return self._models.get(key)

    def put(self, key: tuple, model: Any) -> Any:
        self._models[key] = model
        return model

    def __contains__(self, key: tuple) -> bool:
        return key in self._models

    def __len__(self) -> int:
        return len(self._models)

    def copy(self) -> dict[tuple, Any]:
        """A shallow copy of the entries (to put back later with :meth:`update`)."""
        return dict(self._models)

    def update(self, models: dict[tuple, Any]) -> None:
        self._models.update(models)

    def clear(self) -> None:
        self._models.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


MODELS = ModelCache()

# What the kit knows of each model it loaded (id, revision, sampler, offload device...), kept
# beside the model rather than glued onto third-party objects; read with provenance().
_PROVENANCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def provenance(model: Any) -> dict:
    """What the kit recorded when it loaded ``model`` (a copy; ``{}`` for other objects).

    Keys: ``model`` (id, folder or ``"tiny"``), ``revision``, ``path`` (the folder it was
    read from, or the hub id), ``scheduler`` (the sampler's name, ``None`` for the model's
    own), ``offload_device`` (the GPU of model CPU offload, else ``None``), ``progress``;
    for SAM ``model_type``, ``checkpoint``, ``checkpoint_path``.
    """
    try:
        return dict(_PROVENANCE.get(model, {}))
    except TypeError:  # not weak-referenceable: not ours
        return {}


def _remember(obj: Any, **info) -> Any:
    _PROVENANCE[obj] = info
    return obj


class ModelUnavailableError(FileNotFoundError):
    """A model is neither on disk nor downloadable. The message says how to provide it."""


# --------------------------------------------------------------------------- devices


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA, then Apple MPS, then the CPU."""
    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device={device!r} is not a torch device (try 'cuda' or 'cpu')"
            ) from None
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: torch.dtype | str | None = None) -> torch.dtype:
    """``dtype`` as a ``torch.dtype``; ``None`` gives fp16 on CUDA and MPS, fp32 on the CPU."""
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        if not isinstance(getattr(torch, name, None), torch.dtype):
            raise ValueError(f"dtype={dtype!r} is not a torch dtype (try 'float16' or 'float32')")
        dtype = getattr(torch, name)
    if dtype is not None:
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"dtype must be a torch.dtype or its name, not {dtype!r}")
        return dtype
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def device_report(device: str | torch.device | None = None) -> dict:
    """What a notebook should print first: device, GPU name and free memory, dtype, Colab.

    Returns a dict with ``device``, ``dtype``, ``gpu`` (name or ``None``), ``gpu_free_gb``,
    ``gpu_total_gb``, ``colab``, ``torch`` and ``cuda`` versions; memory in GiB.
    """
    dev = pick_device(device)
    report = {
        "device": str(dev),
        "dtype": str(pick_dtype(dev)).removeprefix("torch."),
        "gpu": None,
        "gpu_free_gb": None,
        "gpu_total_gb": None,
        "colab": in_colab(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    if dev.type == "cuda":
        free, total = torch.cuda.mem_get_info(dev)
        report.update(
            gpu=torch.cuda.get_device_name(dev),
            gpu_free_gb=round(free / 2**30, 2),
            gpu_total_gb=round(total / 2**30, 2),
        )
    return report


def cache_dir() -> Path:
    """Where sdsam-nb keeps the tiny models and SAM checkpoints.

    ``$SDSAM_CACHE`` if set, else ``$XDG_CACHE_HOME/sdsam_nb``, else ``~/.cache/sdsam_nb``.
    """
    if os.environ.get("SDSAM_CACHE"):
        return Path(os.environ["SDSAM_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sdsam_nb"


def clear_loaded() -> None:
    """Forget every model this process loaded: ``MODELS.clear()``."""
    MODELS.clear()


# --------------------------------------------------------------------------- Stable Diffusion


def resolve_model(model, name: str, *, build_tiny, marker: str, example: str) -> tuple[str, bool]:
    """Return ``(path-or-hub-id, is_local)`` for a ``model`` argument.

    ``"tiny"`` builds (once) and returns the built-in model's folder via ``build_tiny(root)``;
    an existing folder must hold ``marker`` (``model_index.json`` for a diffusers pipeline,
    ``config.json`` for a transformers model); anything else must look like a hub id
    ``org/name``. ``name`` and ``example`` go into the error messages.
    """
    if not isinstance(model, (str, os.PathLike)) or not str(model):
        raise ValueError(f"{name} must be a hub id, a local folder or 'tiny', not {model!r}")
    model = str(model)
    if model == TINY:
        return str(build_tiny(cache_dir() / "tiny")), True
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / marker).is_file():
            raise ValueError(f"{name}={model!r} is a folder but not a saved model (no {marker})")
        return str(path), True
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ValueError(
            f"{name}={model!r} is neither an existing folder nor a hub id like "
            f"'{example}' (or use 'tiny' for the built-in test model)"
        )
    return model, False


def _resolve_sd(model: str, name: str) -> tuple[str, bool]:
    return resolve_model(
        model, name, build_tiny=tiny.sd_folder, marker="model_index.json", example=DEFAULT_SD
    )


def _unavailable(model: str, exc: BaseException) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"Cannot load {model!r}: it is not in the Hugging Face cache and the hub could not be "
        f"reached ({type(exc).__name__}). Download it once where there is network "
        f"(`hf download {model}`; it lands in the HF cache, HF_HOME), or pass a local folder "
        "made with save_pretrained, or 'tiny' for the built-in offline model. "
        "With HF_HUB_OFFLINE=1 only the cache is looked at."
    )


@contextmanager
def _loading_bars(show: bool):
    """diffusers' and transformers' loading progress bars off for one load (``show=False``).

    Their switch is a module-wide flag with no per-call argument: it is turned off for the
    load and put back as it was, so ``progress=False`` leaves no stale ``Loading pipeline
    components...`` bar in an executed notebook and changes nothing for other callers.
    ``show=True`` leaves the libraries' own settings (and ``HF_HUB_DISABLE_PROGRESS_BARS``).
    """
    if show:
        yield
        return
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    before = [(m, m.is_progress_bar_enabled()) for m in (dlogging, tlogging)]
    for module, enabled in before:
        if enabled:
            module.disable_progress_bar()
    try:
        yield
    finally:
        for module, enabled in before:
            if enabled:
                module.enable_progress_bar()


def _from_pretrained(cls, model: str, name: str, *, progress: bool = True, **kwargs):
    """``cls.from_pretrained`` with one short error for a model that cannot be had."""
    from huggingface_hub.utils import HfHubHTTPError, OfflineModeIsEnabled

    source, local = _resolve_sd(model, name)
    if local:
        kwargs.pop("variant", None)  # a local folder holds whatever it holds
    try:
        with _loading_bars(progress):
            return cls.from_pretrained(source, **kwargs)
    except (OSError, ConnectionError, HfHubHTTPError, OfflineModeIsEnabled) as exc:
        if local:
            raise
        if kwargs.get("variant") and "variant" in str(exc):
            # The repo has no fp16 files: load the full-precision ones and cast.
            return _from_pretrained(
                cls, model, name, progress=progress, **{**kwargs, "variant": None}
            )
        raise _unavailable(model, exc) from None
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


# --------------------------------------------------------------------------- samplers


def _scheduler_classes() -> dict[str, tuple[type, dict[str, Any]]]:
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        LMSDiscreteScheduler,
        PNDMScheduler,
        UniPCMultistepScheduler,
    )

    return {
        "pndm": (PNDMScheduler, {}),
        "ddim": (DDIMScheduler, {}),
        "euler": (EulerDiscreteScheduler, {}),
        "euler_a": (EulerAncestralDiscreteScheduler, {}),
        "lms": (LMSDiscreteScheduler, {}),
        "dpm++": (DPMSolverMultistepScheduler, {}),
        "dpm++_karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
        "unipc": (UniPCMultistepScheduler, {}),
    }


SCHEDULERS = ("pndm", "ddim", "euler", "euler_a", "lms", "dpm++", "dpm++_karras", "unipc")
"""Sampler names for :func:`load_sd` and the ``scheduler=`` of the background functions.
``"dpm++"`` is DPM-Solver++ (multistep), the default; ``"pndm"`` is SD v1-4's own."""
DEFAULT_SCHEDULER = "dpm++"


def make_scheduler(scheduler, pipe):
    """A new scheduler for ``pipe``: a name from :data:`SCHEDULERS`, built from the config of
    the scheduler the model came with (so it keeps the model's beta schedule and timestep
    spacing), or a scheduler instance, returned as is. ``pipe`` is not changed."""
    from diffusers import SchedulerMixin

    if isinstance(scheduler, SchedulerMixin):
        return scheduler
    classes = _scheduler_classes()
    if not isinstance(scheduler, str) or scheduler not in classes:
        raise ValueError(
            f"scheduler={scheduler!r} is not one of {list(SCHEDULERS)}, a diffusers scheduler "
            "instance or None (the pipeline's own)"
        )
    cls, extra = classes[scheduler]
    own = provenance(pipe).get("own_scheduler") or pipe.scheduler
    return cls.from_config(own.config, **extra)


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
    _remember(
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
    return _remember(view, **{**info, "scheduler": scheduler_name, "progress": bool(progress)})


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


# --------------------------------------------------------------------------- Segment Anything


def _sam_builders() -> dict:
    from segment_anything import build_sam_vit_b, build_sam_vit_h, build_sam_vit_l

    # segment-anything's builders with checkpoint=None build the architecture only; we load
    # the weights ourselves (its own loader calls torch.load without map_location).
    return {
        "vit_h": build_sam_vit_h,
        "vit_l": build_sam_vit_l,
        "vit_b": build_sam_vit_b,
        TINY: lambda checkpoint=None: tiny.build_sam_model(),
    }


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_hash_in_name(path: Path) -> None:
    """If ``path``'s name ends in ``_<hex>.pth``, check that its sha256 starts with that hex."""
    match = _HASH_IN_NAME.search(path.name)
    if match and not sha256_file(path).startswith(match.group(1)):
        raise ValueError(
            f"checkpoint {str(path)!r} is corrupt or not the official file: its sha256 does not "
            f"start with {match.group(1)!r} as its name says. Delete it and download it again."
        )


def sam_checkpoint_path(model_type: str = "vit_b", *, download: bool = True) -> Path:
    """Path of the official checkpoint for ``model_type`` in :func:`cache_dir`.

    Downloads it once if missing (``$SDSAM_SAM_URL`` overrides the base URL); the download is
    written to a temporary file, checked against the sha256 prefix in its name, and only then
    moved into place, so a failed or corrupt download leaves nothing behind.
    """
    if model_type == TINY:
        return tiny.sam_checkpoint(cache_dir() / "tiny")
    if model_type not in SAM_CHECKPOINTS:
        raise ValueError(
            f"model_type={model_type!r} is not one of {sorted([*SAM_CHECKPOINTS, TINY])}"
        )
    name = SAM_CHECKPOINTS[model_type]
    target = cache_dir() / "sam" / name
    if target.is_file():
        return target
    url = os.environ.get("SDSAM_SAM_URL", SAM_URL).rstrip("/") + "/" + name
    if not download or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelUnavailableError(
            f"SAM checkpoint {name} is not in {target.parent} and downloading is off. "
            f"Download {url} there, or pass checkpoint='/path/to/{name}', "
            "or use model_type='tiny' for the built-in offline model."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    match = _HASH_IN_NAME.search(name)
    try:
        # torch.hub writes to a temporary file, checks the hash prefix, then moves it into place.
        torch.hub.download_url_to_file(url, str(target), hash_prefix=match.group(1), progress=True)
    except RuntimeError as exc:  # hash mismatch: torch.hub has already removed the temporary file
        target.unlink(missing_ok=True)
        raise ValueError(f"download of {url} failed its sha256 check ({exc}); try again") from None
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise ModelUnavailableError(
            f"Cannot download SAM checkpoint {url} ({exc}). Download it where there is network "
            f"into {target.parent}, or pass checkpoint='/path/to/{name}', "
            "or use model_type='tiny' for the built-in offline model."
        ) from None
    return target


def _sam_type_of(state: dict) -> str | None:
    pos = state.get("image_encoder.pos_embed")
    return _SAM_WIDTH.get(int(pos.shape[-1])) if pos is not None else None


def load_sam(
    model_type: str = "vit_b",
    checkpoint: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
):
    """A ``segment_anything.SamPredictor`` for ``vit_b`` / ``vit_l`` / ``vit_h`` or ``"tiny"``.

    Args:
        model_type: the architecture; ``"tiny"`` is the built-in offline model.
        checkpoint: a state-dict ``.pth``; ``None`` uses the official one, downloaded once
            into ``cache_dir()/sam`` and verified against the sha256 prefix in its name.
        device: ``None`` picks CUDA, then MPS, then CPU. The weights are read on the CPU
            (``weights_only=True``) and then moved, so GPU-saved files load anywhere.

    Returns:
        A new ``SamPredictor`` (its own image state) around a model loaded once per process.

    Raises:
        ValueError: unknown ``model_type``, a checkpoint of another architecture (the message
            names both), or a file whose hash does not match its name.
        FileNotFoundError: ``checkpoint`` does not exist (``ModelUnavailableError`` when the
            official file can neither be found nor downloaded).
    """
    from segment_anything import SamPredictor

    builders = _sam_builders()
    if model_type not in builders:
        raise ValueError(f"model_type={model_type!r} is not one of {sorted(builders)}")
    dev = pick_device(device)
    if checkpoint is None:
        path = sam_checkpoint_path(model_type)
    else:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint={str(checkpoint)!r}: no such file")
    key = ("sam", model_type, str(path.resolve()), str(dev))
    sam = MODELS.get(key)
    if sam is None:
        _verify_hash_in_name(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle, zip and format errors all mean "not a state dict"
            raise ValueError(f"checkpoint {str(path)!r} is not a SAM state dict ({exc})") from None
        found = _sam_type_of(state) if isinstance(state, dict) else None
        if found != model_type:
            raise ValueError(
                f"checkpoint {str(path)!r} does not match model_type={model_type!r}: "
                + (f"it holds a {found!r} model" if found else "it is not a SAM checkpoint")
                + (f"; call load_sam({found!r}, checkpoint=...)" if found else "")
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sam = builders[model_type](checkpoint=None)
        sam.load_state_dict(state)
        sam.to(dev).eval()
        _remember(sam, model_type=model_type, checkpoint=path.name, checkpoint_path=str(path))
        MODELS.put(key, sam)
    return SamPredictor(sam)
