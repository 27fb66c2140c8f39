"""The per-process model cache (:data:`MODELS`), what the kit remembers of each model
(:func:`provenance`), where models live (:func:`cache_dir`), and what the loaders share:
:func:`resolve_model` (a ``model=`` argument -> what ``from_pretrained`` reads), the hub
(:func:`hub_file`, :func:`hub_config`, and :func:`unavailable`, the one error of a model that
can be neither found nor downloaded), and :func:`load_once` with :class:`Loaded` (a
transformers processor + model pair).
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


TINY = "tiny"


class ModelCache(dict):
    """The per-process cache of loaded models: loader arguments -> model.

    A cache hit returns the object an earlier call returned and never changes it: a different
    sampler or progress setting gets its own pipeline object sharing the same weights.
    :data:`MODELS` is the one the loaders use; ``MODELS.clear()`` forgets everything (the
    memory is freed once nothing else refers to the models).
    """

    def put(self, key: tuple, model: Any) -> Any:
        self[key] = model
        return model

    def clear(self) -> None:
        import torch

        super().clear()
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


def remember(obj: Any, **info) -> Any:
    _PROVENANCE[obj] = info
    return obj


class ModelUnavailableError(FileNotFoundError):
    """A model is neither on disk nor downloadable. The message says how to provide it."""


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


def unavailable(model: str, exc: BaseException) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"Cannot load {model!r}: it is not in the Hugging Face cache and the hub could not be "
        f"reached ({type(exc).__name__}). Download it once where there is network "
        f"(`hf download {model}`; it lands in the HF cache, HF_HOME), or pass a local folder "
        "made with save_pretrained, or 'tiny' for the built-in offline model. "
        "With HF_HUB_OFFLINE=1 only the cache is looked at."
    )


@contextmanager
def loading_bars(show: bool):
    """diffusers' and transformers' loading progress bars off for one load (``show=False``),
    then put back as they were (their switch is module-wide); ``show=True`` changes nothing."""
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


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_errors() -> tuple[type[BaseException], ...]:
    """What loading a hub id raises when it is neither cached nor downloadable (``except
    hub_errors()``: huggingface_hub is imported only when something was raised)."""
    from huggingface_hub.utils import HfHubHTTPError, OfflineModeIsEnabled

    return (OSError, ConnectionError, HfHubHTTPError, OfflineModeIsEnabled)


def snapshot_commit(folder: Path) -> str | None:
    """The commit of the Hugging Face cache snapshot ``folder`` is (or lies in), else ``None``."""
    parts = Path(folder).resolve().parts
    if "snapshots" in parts[:-1]:
        return parts[parts.index("snapshots") + 1]
    return None


def hub_file(repo: str, name: str, revision: str, *, what: str, instead: str):
    """``(path, commit)``: file ``name`` of hub repo ``repo`` at ``revision`` from the Hugging
    Face cache (downloaded once) and the commit of that snapshot.

    Raises:
        ModelUnavailableError: neither cached nor downloadable; the message names ``what``
            and what to do ``instead``.
    """
    from huggingface_hub import hf_hub_download

    try:
        path = Path(hf_hub_download(repo, name, revision=revision))
    except hub_errors() as exc:
        raise ModelUnavailableError(
            f"Cannot load {what} ({repo}, {name} at revision {revision[:7]}): it is not in the "
            f"Hugging Face cache and the hub could not be reached ({type(exc).__name__}). "
            f"Download it once where there is network (`hf download {repo} {name} --revision "
            f"{revision}`), or {instead}."
        ) from None
    return path, snapshot_commit(path.parent)


def hub_config(model, source: str, local: bool, *, subfolder: str = "", revision=None):
    """The checkpoint's ``subfolder/config.json`` as a dict (of a hub id only that file is
    downloaded), or ``None`` when it has none.

    Raises:
        ModelUnavailableError: a hub id that is neither cached nor downloadable.
        ValueError: the file is not JSON.
    """
    if local:
        path = Path(source, subfolder, "config.json")
        if not path.is_file():
            return None
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

        try:
            path = hf_hub_download(
                source, "config.json", subfolder=subfolder or None, revision=revision
            )
        except LocalEntryNotFoundError as exc:  # offline and not cached: not a missing file
            raise unavailable(str(model), exc) from None
        except EntryNotFoundError:
            return None
        except hub_errors() as exc:
            raise unavailable(str(model), exc) from None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"model={str(model)!r}: its config.json is unreadable ({exc})") from None


def load_pair(processor_cls, model_cls, source: str, *, local: bool, model: str, **kwargs):
    """``(processor, net)``: ``processor_cls`` and ``model_cls`` ``.from_pretrained(source)``.

    A hub id that is neither cached nor downloadable raises :func:`unavailable`'s one-line
    error naming ``model``; a local folder's own error passes through.
    """
    try:
        return (
            processor_cls.from_pretrained(source, **kwargs),
            model_cls.from_pretrained(source, **kwargs),
        )
    except hub_errors() as exc:
        if local:
            raise
        raise unavailable(model, exc) from None


def load_once(cls, model, device):
    """A :class:`Loaded` subclass ``cls`` of a transformers checkpoint, loaded once per process.

    ``model`` is a hub id, a folder or ``"tiny"`` (``cls.build_tiny(root)`` builds it); the
    pair is read with :func:`load_pair` once ``cls.check`` let it pass, and the net put in eval
    mode on ``device`` (``None``: see :func:`~sdsam_nb.models.devices.pick_device`), its
    :func:`provenance` recorded. A transformers without ``cls.classes`` is refused.
    """
    import transformers

    from .devices import pick_device

    dev = pick_device(device)
    key = (cls.kind, str(model), str(dev))
    if key not in MODELS:
        missing = [name for name in cls.classes if not hasattr(transformers, name)]
        if missing:
            raise ValueError(
                f"model={str(model)!r}: {cls.__name__} needs transformers' {missing[0]} (not in "
                f"transformers {transformers.__version__}): pip install -U transformers"
            )
        source, local = resolve_model(
            model, "model", build_tiny=cls.build_tiny, marker="config.json", example=cls.example
        )
        cls.check(model, source, local)
        processor_cls, model_cls = (getattr(transformers, name) for name in cls.classes)
        processor, net = load_pair(processor_cls, model_cls, source, local=local, model=str(model))
        remember(net.to(dev).eval(), model=str(model), revision=None, path=source)
        MODELS.put(key, cls(processor, net, str(model)))
    return MODELS[key]


class Loaded:
    """A transformers processor + model pair, as :func:`load_once` returns it.

    A subclass says how it is loaded: ``kind`` (its :data:`MODELS` key), ``classes`` (the
    processor's and the model's class names in transformers), ``build_tiny(root)`` (the
    built-in tiny model's folder), ``example`` (a hub id for error messages) and ``check``.

    Attributes:
        processor: the model's ``transformers`` processor.
        model: the model, in eval mode on :attr:`device`.
        source: the model id, folder or ``"tiny"`` it was loaded from (for ``run.json``).
    """

    kind: str
    classes: tuple[str, str]
    example: str
    build_tiny = None

    def __init__(self, processor, model, source: str):
        self.processor = processor
        self.model = model
        self.source = source

    @classmethod
    def check(cls, model, source: str, local: bool) -> None:
        """Refuse a checkpoint before its weights are read (a one-line ``ValueError``)."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source={self.source!r}, device={str(self.device)!r})"
