"""Segment Anything checkpoints (segment_anything's ``vit_b`` / ``vit_l`` / ``vit_h`` and the
built-in ``"tiny"``): the official files, downloaded once and checked against the sha256 in
their names, and :func:`load_sam`.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch
from segment_anything import SamPredictor

from ..recording import recorded
from ..validate import check_text_or_none
from .cache import MODELS, TINY, ModelUnavailableError, cache_dir, remember, sha256_file
from .devices import autocast, pick_device, pick_embed_dtype
from .hf_sam import TINY_VARIANTS, load_transformers_sam
from .tiny import build_sam_model, sam_checkpoint

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


def sam_builders() -> dict:
    """model type -> builder: segment_anything's ``sam_model_registry`` (with ``checkpoint=None``
    the architecture only: :func:`load_sam` reads the weights, as its loader calls ``torch.load``
    without ``map_location``) and the tiny model's."""
    from segment_anything import sam_model_registry

    builders = {name: sam_model_registry[name] for name in SAM_CHECKPOINTS}
    return {**builders, TINY: lambda checkpoint=None: build_sam_model()}


def _verify_hash_in_name(path: Path) -> None:
    """If ``path``'s name ends in ``_<hex>.pth``, check that its sha256 starts with that hex."""
    match = _HASH_IN_NAME.search(path.name)
    if match and not sha256_file(path).startswith(match.group(1)):
        raise ValueError(
            f"checkpoint {str(path)!r} is corrupt or not the official file: its sha256 does not "
            f"start with {match.group(1)!r} as its name says. Delete it and download it again."
        )


def sam_checkpoint_path(model_type: str = "vit_b") -> Path:
    """Path of the official checkpoint for ``model_type`` in :func:`cache_dir`.

    Downloads it once if missing (``$SDSAM_SAM_URL`` overrides the base URL); the download is
    written to a temporary file, checked against the sha256 prefix in its name, and only then
    moved into place, so a failed or corrupt download leaves nothing behind.
    """
    if model_type == TINY:
        return sam_checkpoint(cache_dir() / "tiny")
    if model_type not in SAM_CHECKPOINTS:
        raise ValueError(
            f"model_type={model_type!r} is not one of {sorted([*SAM_CHECKPOINTS, TINY])}"
        )
    name = SAM_CHECKPOINTS[model_type]
    target = cache_dir() / "sam" / name
    if target.is_file():
        return target
    url = os.environ.get("SDSAM_SAM_URL", SAM_URL).rstrip("/") + "/" + name
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelUnavailableError(
            f"SAM checkpoint {name} is not in {target.parent} and downloading is off "
            "(HF_HUB_OFFLINE=1). "
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


def sam_type_of(state: dict) -> str | None:
    pos = state.get("image_encoder.pos_embed")
    return _SAM_WIDTH.get(int(pos.shape[-1])) if pos is not None else None


@recorded("load_sam", model=("sam", "model_type"))
def load_sam(
    model_type: str = "vit_b",
    checkpoint: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    revision: str | None = None,
    dtype: torch.dtype | str | None = None,
):
    """A Segment Anything model for clicks: segment_anything's, or one of transformers'.

    Args:
        model_type: which model.

            * ``"vit_b"`` / ``"vit_l"`` / ``"vit_h"``: segment_anything's official SAM;
              ``"tiny"`` its built-in offline model.
            * a Hugging Face id or a folder written by ``save_pretrained`` of a transformers
              family: SAM (``facebook/sam-vit-base|large|huge``), SlimSAM
              (``Zigeng/SlimSAM-uniform-77``, ``-50``), SAM-HQ (``SamHQModel`` checkpoints such
              as ``syscv-community/sam-hq-vit-base``), SAM 2.1
              (``facebook/sam2.1-hiera-tiny|small|base-plus|large``). The family is read from
              the checkpoint's ``config.json``.
            * ``"tiny-sam"``, ``"tiny-slimsam"``, ``"tiny-sam-hq"``, ``"tiny-sam2"``: built-in
              offline transformers models of each family (random weights).
        checkpoint: segment_anything only: a state-dict ``.pth``; ``None`` uses the official
            one, downloaded once into ``cache_dir()/sam`` and verified against the sha256
            prefix in its name.
        device: ``None`` picks CUDA, then MPS, then CPU. segment_anything weights are read on
            the CPU (``weights_only=True``) and then moved, so GPU-saved files load anywhere.
        revision: transformers only: a hub revision (branch, tag or commit) to pin.
        dtype: what the image encoder computes the embedding in (the weights stay fp32; clicks
            decode in fp32): ``None`` picks bfloat16 on a CPU that computes it natively, else
            fp32 (:func:`~sdsam_nb.models.devices.pick_embed_dtype`); ``"float32"`` keeps
            SAM's own precision.

    Returns:
        For segment_anything a new :class:`Predictor` (a ``SamPredictor``, its own image
        state); for transformers a :class:`sdsam_nb.models.hf_sam.TransformersSam`. Either
        way the weights are loaded once per process, and :class:`sdsam_nb.ClickSegmenter`
        and the picker take it as it is.

    Raises:
        ValueError: an unknown name, a checkpoint of another architecture or family (the
            message names what was given and what is accepted), a SAM 3 checkpoint (it takes
            text, not clicks), or a file whose hash does not match its name.
        FileNotFoundError: ``checkpoint`` does not exist (``ModelUnavailableError`` when the
            model can neither be found nor downloaded).
    """
    check_text_or_none(revision, "revision")
    builders = sam_builders()
    if model_type not in builders:
        if checkpoint is not None:
            raise ValueError(
                f"checkpoint= is for segment_anything's {sorted(builders)}; "
                f"{model_type!r} is loaded from its own folder or hub id"
            )
        name = str(model_type) if isinstance(model_type, (str, os.PathLike)) else ""
        if not name or (  # a bare word that is none of ours (paths and ids go on)
            name not in TINY_VARIANTS and "/" not in name and not Path(name).is_dir()
        ):
            raise ValueError(
                f"model_type={model_type!r} is not a SAM model: give one of "
                f"{sorted(builders)} (segment_anything), {list(TINY_VARIANTS)} (built-in "
                "transformers models), a hub id such as 'facebook/sam2.1-hiera-tiny' or a "
                "folder written by save_pretrained"
            )
        return load_transformers_sam(str(model_type), device=device, revision=revision, dtype=dtype)
    if revision is not None:
        raise ValueError("revision= is for transformers models; segment_anything files have none")
    dev = pick_device(device)
    embed_dtype = pick_embed_dtype(dev, dtype)
    if checkpoint is None:
        path = sam_checkpoint_path(model_type)
    else:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise ValueError(f"checkpoint must be a file path or None, not {checkpoint!r}")
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
        found = sam_type_of(state) if isinstance(state, dict) else None
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
        remember(sam, model_type=model_type, checkpoint=path.name, checkpoint_path=str(path))
        MODELS.put(key, sam)
    return Predictor(sam, dtype=embed_dtype)


class Predictor(SamPredictor):
    """segment_anything's ``SamPredictor`` whose image encoder runs in ``dtype`` (under
    ``torch.autocast``; the embedding is kept in fp32, so clicks decode as in fp32)."""

    def __init__(self, sam_model, *, dtype: torch.dtype = torch.float32):
        super().__init__(sam_model)
        self.dtype = dtype

    def set_torch_image(self, transformed_image, original_image_size) -> None:
        with autocast(self.device, self.dtype):
            super().set_torch_image(transformed_image, original_image_size)
        self.features = self.features.float()
