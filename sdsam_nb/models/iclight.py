"""IC-Light for a loaded SD 1.x pipeline (:func:`load_iclight`): a UNet of its own, built as
IC-Light's reference code builds it, beside the pipeline's text encoder, tokenizer and VAE.

IC-Light (Zhang, Rao, Agrawala, ICLR 2025; https://github.com/lllyasviel/IC-Light) ships
*offsets* to an SD 1.5 UNet whose ``conv_in`` is widened to 8 or 12 input channels (the noisy
latents, then the condition's latents; the new channels start at zero). Here that UNet is a new
``UNet2DConditionModel`` holding base + offsets; the pipeline's own UNet is not changed.
:func:`sdsam_nb.relight` runs the denoising loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .cache import MODELS, TINY, cache_dir, hub_file, provenance, sha256_file
from .sd import pipeline_info
from .tiny import iclight_folder

REPO = "lllyasviel/ic-light"
"""The hub repository of IC-Light's SD 1.5 weights."""
REVISION = "9cad1878695f546a7fb9eaca14e2a89131ba5ffe"
"""The commit of :data:`REPO` the files are read at (its ``main`` when pinned)."""


@dataclass(frozen=True)
class ICLightMode:
    """One IC-Light model: ``weight_name`` in :data:`REPO`, the UNet input ``channels`` it
    takes (4 noisy latents + the condition's), and the ``steps`` and ``guidance`` its
    reference demo samples with (``gradio_demo.py`` / ``gradio_demo_bg.py``)."""

    weight_name: str
    channels: int
    steps: int
    guidance: float


MODES: dict[str, ICLightMode] = {
    # foreground + text: "Steps" 25, "CFG Scale" 2
    "text": ICLightMode("iclight_sd15_fc.safetensors", 8, 25, 2.0),
    # foreground + background (+ text): "Steps" 20, "CFG Scale" 7
    "background": ICLightMode("iclight_sd15_fbc.safetensors", 12, 20, 7.0),
}
"""``relight(mode=...)``: which IC-Light model, keyed by what it is conditioned on."""


@dataclass(frozen=True, eq=False)
class ICLight:
    """An IC-Light model for one pipeline: ``unet`` is its own (base weights + offsets,
    ``in_channels`` 8 or 12), ``text_encoder``, ``tokenizer``, ``vae`` and ``scheduler`` are
    the pipeline's own objects (not copies; the scheduler is only read, each pass samples
    with a new one made from its config). ``identity``: what ``run.json`` records of the
    weights (mode, hub id and revision or file and sha256)."""

    mode: str
    unet: Any
    text_encoder: Any
    tokenizer: Any
    vae: Any
    scheduler: Any
    identity: dict
    base_unet: Any = field(repr=False)  # the pipeline's UNet, held so the cache key stays valid


def load_iclight(pipe, mode: str = "text", weights: str | os.PathLike | None = None) -> ICLight:
    """The IC-Light model of ``mode`` for ``pipe`` (an SD 1.x text-to-image pipeline, e.g.
    :func:`sdsam_nb.load_sd`'s), built once per pipeline UNet, mode and weights file and kept
    in :data:`~sdsam_nb.models.cache.MODELS`.

    ``weights``: ``None`` reads :data:`MODES`' file from :data:`REPO` at :data:`REVISION`
    (the Hugging Face cache, downloaded once), or the built-in tiny one when ``pipe`` is the
    tiny model; a local ``.safetensors`` file of offsets, or a folder holding the mode's file
    under its hub name, is read instead. The UNet is put on ``pipe``'s device in its UNet's
    dtype (the offsets are added in float32); under model CPU offload on its GPU, where it
    stays (not offloaded). Keys in the file that the UNet lacks are ignored, as the reference
    does.

    Raises:
        ValueError: one line: a bad ``mode``, ``weights`` or ``pipe`` (no 4-channel UNet), or
            offsets that do not fit ``pipe``'s UNet (a tensor missing or of another shape: a
            checkpoint made for another base model).
        ModelUnavailableError: the hub file is neither cached nor downloadable.
    """
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, not {mode!r}")
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None, a file or a folder, not {type(weights).__name__}")
    unet = getattr(pipe, "unet", None)
    parts = ("text_encoder", "tokenizer", "vae", "scheduler")
    if not isinstance(unet, torch.nn.Module) or any(getattr(pipe, p, None) is None for p in parts):
        raise ValueError(
            "pipe must be a Stable Diffusion 1.x pipeline (sdsam_nb.load_sd), with a UNet, text "
            f"encoder, tokenizer, VAE and scheduler; got {type(pipe).__name__}"
        )
    if unet.config.in_channels != 4:
        raise ValueError(
            f"pipe's UNet takes {unet.config.in_channels} input channels (an inpainting "
            "checkpoint?): IC-Light's offsets are for a text-to-image UNet of 4"
        )
    spec = MODES[mode]
    path, identity = _offsets_file(pipe, mode, spec, weights)
    device = pipeline_info(pipe)[2]  # its GPU under model CPU offload, else its UNet's device
    key = ("iclight", id(unet), str(device), unet.dtype, mode, str(path))
    cached = MODELS.get(key)
    if cached is None:
        built = _build_unet(unet, spec.channels, path, weights, device)
        cached = MODELS.put(
            key,
            ICLight(
                mode=mode,
                unet=built,
                text_encoder=pipe.text_encoder,
                tokenizer=pipe.tokenizer,
                vae=pipe.vae,
                scheduler=pipe.scheduler,
                identity={"mode": mode, **identity},
                base_unet=unet,
            ),
        )
    return cached


def _offsets_file(pipe, mode: str, spec: ICLightMode, weights) -> tuple[Path, dict]:
    """The offsets file to read and what identifies it."""
    name = spec.weight_name
    if weights is None and provenance(pipe).get("model") == TINY:
        path = iclight_folder(cache_dir() / "tiny") / name
        return path, {"weights": TINY, "file": name, "sha256": sha256_file(path)}
    if weights is None:
        what, instead = f"IC-Light for mode={mode!r}", "pass weights=<file>"
        path, commit = hub_file(REPO, name, REVISION, what=what, instead=instead)
        return path, {"weights": REPO, "file": name, "revision": REVISION, "commit": commit}
    path = Path(weights).expanduser()
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise ValueError(
            f"weights={os.fspath(weights)!r} is neither a .safetensors file of IC-Light offsets "
            f"nor a folder holding {name}"
        )
    return path, {"weights": str(path), "sha256": sha256_file(path)}


def _build_unet(base, channels: int, path: Path, weights, device: torch.device):
    """A new ``UNet2DConditionModel`` of ``base``'s config with ``channels`` inputs whose
    weights are ``base``'s (``conv_in`` widened with zeros) plus the file's offsets, on
    ``device`` in ``base``'s dtype."""
    from diffusers import UNet2DConditionModel
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    dtype = base.dtype
    with torch.device("meta"):  # shapes only; the weights are assigned below
        unet = UNet2DConditionModel.from_config({**dict(base.config), "in_channels": channels})
    wanted = unet.state_dict()
    try:
        offsets = load_file(path)
    except (SafetensorError, OSError) as exc:
        where = "weights" if weights is not None else f"the IC-Light file {path.name}"
        raise ValueError(f"{where}: not a readable safetensors file ({exc})") from None
    for key, tensor in wanted.items():
        found = offsets.get(key)
        if found is None or found.shape != tensor.shape:
            got = "missing" if found is None else f"of shape {tuple(found.shape)}"
            where = "weights" if weights is not None else f"pipe (for {path.name})"
            raise ValueError(
                f"{where}: the IC-Light offsets do not fit this model: {key} is {got} where "
                f"this UNet needs {tuple(tensor.shape)}; they are made for another base model "
                "(an SD 1.5 UNet needed)"
            )
    own = base.state_dict()
    merged = {}
    with torch.no_grad():
        for key, tensor in wanted.items():
            weight = own[key].to(device="cpu", dtype=torch.float32)
            if weight.shape != tensor.shape:  # conv_in: the new input channels start at zero
                widened = torch.zeros(tensor.shape, dtype=torch.float32)
                widened[:, : weight.shape[1]] = weight
                weight = widened
            merged[key] = (weight + offsets[key].float()).to(device=device, dtype=dtype)
    unet.load_state_dict(merged, strict=True, assign=True)
    unet.eval()
    unet.requires_grad_(False)
    return unet
