"""Segment Anything families through transformers: SAM and SlimSAM (``SamModel``), SAM-HQ
(``SamHQModel``) and SAM 2.1 (``Sam2Model``), from a hub id, a local folder or a built-in
``"tiny-*"`` variant, each served to the click segmenter by
:class:`sdsam_nb.segment.hf.TransformersSam`.

The family is read from the checkpoint's ``config.json`` (``model_type``), the way
transformers' Auto classes pick a class: :data:`FAMILIES` is that table. Adding a family is
one entry there (and, if its prompt call differs, one adapter in ``segment/hf.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import tiny_hf
from .cache import (
    MODELS,
    TINY,
    cache_dir,
    load_pair,
    loading_bars,
    remember,
    resolve_model,
    unavailable,
)
from .devices import pick_device

# config model_type -> (family, model class, processor class) in transformers
FAMILIES = {
    "sam": ("sam", "SamModel", "SamProcessor"),
    "sam_hq": ("sam_hq", "SamHQModel", "SamHQProcessor"),
    "sam2": ("sam2", "Sam2Model", "Sam2Processor"),
}
# checkpoints of these families segment from text or video, not from clicks
NOT_FOR_CLICKS = {
    "sam3": "a SAM 3 checkpoint segments what a text names: use text_mask(image, text, "
    "method='sam3') (notebook 02: text_method='sam3')",
    "sam3_video": "a SAM 3 video checkpoint: use text_mask(image, text, method='sam3')",
    "sam2_video": "a SAM 2 video checkpoint: use its image model (facebook/sam2.1-hiera-*)",
}
EXAMPLES = (
    "facebook/sam-vit-base",
    "Zigeng/SlimSAM-uniform-77",
    "syscv-community/sam-hq-vit-base",
    "facebook/sam2.1-hiera-tiny",
)
TINY_VARIANTS = tuple(tiny_hf.VARIANTS)


def _config_type(source: str, local: bool, revision: str | None, model: str) -> str:
    """The ``model_type`` in the checkpoint's ``config.json`` (downloads only that file)."""
    if local:
        path = Path(source) / "config.json"
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import HfHubHTTPError, OfflineModeIsEnabled

        try:
            path = hf_hub_download(source, "config.json", revision=revision)
        except (OSError, ConnectionError, HfHubHTTPError, OfflineModeIsEnabled) as exc:
            raise unavailable(model, exc) from None
    try:
        return str(json.loads(Path(path).read_text()).get("model_type"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"model={model!r}: its config.json is unreadable ({exc})") from None


def family_of(model: str, revision: str | None = None) -> tuple[str, str, bool]:
    """``(family, path-or-id, is_local)`` of a transformers segmenter ``model``.

    Raises:
        ValueError: not a SAM-family checkpoint, or one that cannot take clicks (SAM 3); the
            message names what was given and what is accepted.
    """
    if model in tiny_hf.VARIANTS:
        return FAMILIES[_tiny_type(model)][0], str(_tiny_folder(model)), True
    if model == TINY:  # segment_anything's tiny model: load_sam serves it before this
        raise ValueError(f"model_type='tiny' is not a transformers model; try {TINY_VARIANTS}")
    source, local = resolve_model(
        model, "model_type", build_tiny=None, marker="config.json", example=EXAMPLES[-1]
    )
    kind = _config_type(source, local, revision, model)
    if kind in NOT_FOR_CLICKS:
        raise ValueError(f"model_type={model!r} cannot take clicks: {NOT_FOR_CLICKS[kind]}")
    if kind not in FAMILIES:
        raise ValueError(
            f"model_type={model!r} is a {kind!r} checkpoint, not a Segment Anything model: "
            f"give one of the families {sorted(FAMILIES)} (e.g. {', '.join(EXAMPLES)})"
        )
    return FAMILIES[kind][0], source, local


def _tiny_type(name: str) -> str:
    return tiny_hf.VARIANTS[name][2]


def _tiny_folder(name) -> Path:
    return tiny_hf.folder(str(name), cache_dir() / "tiny")


def available(name: str) -> bool:
    """Whether the installed transformers has the classes of tiny variant or family ``name``."""
    import transformers

    kind = _tiny_type(name) if name in tiny_hf.VARIANTS else name
    return all(hasattr(transformers, n) for n in FAMILIES[kind][1:])


def load_transformers_sam(
    model: str,
    *,
    device: str | torch.device | None = None,
    revision: str | None = None,
):
    """A :class:`~sdsam_nb.segment.hf.TransformersSam` for ``model`` (see :func:`load_sam`).

    The weights are loaded once per process (fp32, like segment_anything's models) and
    shared by every backend object returned for the same arguments.
    """
    import transformers

    from ..segment.hf import TransformersSam

    dev = pick_device(device)
    key = ("sam-transformers", str(model), revision, str(dev))
    loaded = MODELS.get(key)
    if loaded is None:
        family, source, local = family_of(str(model), revision)
        kind = next(k for k, v in FAMILIES.items() if v[0] == family)
        _, model_cls, processor_cls = FAMILIES[kind]
        missing = [n for n in (model_cls, processor_cls) if not hasattr(transformers, n)]
        if missing:
            raise ValueError(
                f"model_type={model!r} is a {family} model, which needs transformers' "
                f"{missing[0]} (not in transformers {transformers.__version__}): "
                "pip install -U transformers"
            )
        extra = {} if local or revision is None else {"revision": revision}
        with loading_bars(not local):  # a download shows its bar; reading a folder is quick
            processor, net = load_pair(
                getattr(transformers, processor_cls),
                getattr(transformers, model_cls),
                source,
                local=local,
                model=str(model),
                **extra,
            )
        net.to(dev).eval()
        remember(
            net,
            backend="transformers",
            family=family,
            model=str(model),
            revision=revision,
            path=source,
        )
        loaded = MODELS.put(key, (family, net, processor))
    family, net, processor = loaded
    return TransformersSam(net, processor, family=family, source=str(model))
