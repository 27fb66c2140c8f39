"""Segment Anything families through transformers: SAM and SlimSAM (``SamModel``), SAM-HQ
(``SamHQModel``) and SAM 2.1 (``Sam2Model``), from a hub id, a local folder or a built-in
``"tiny-*"`` variant, each served to the click segmenter by :class:`TransformersSam`, a
:class:`sdsam_nb.segment.PromptSegmenter`.

The family is read from the checkpoint's ``config.json`` (``model_type``), the way
transformers' Auto classes pick a class: :data:`FAMILIES` is that table. Adding a family is
one entry there (and, if its prompt call differs, one entry in :data:`_DECODING`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .cache import (
    MODELS,
    TINY,
    cache_dir,
    hub_config,
    load_pair,
    loading_bars,
    remember,
    resolve_model,
)
from .devices import autocast, pick_device, pick_embed_dtype
from .prediction import Prediction
from .tiny import HF_SAM_VARIANTS, hf_sam_folder

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
TINY_VARIANTS = tuple(HF_SAM_VARIANTS)


def family_of(model: str, revision: str | None = None) -> tuple[str, str, bool]:
    """``(family, path-or-id, is_local)`` of a transformers segmenter ``model``.

    Raises:
        ValueError: not a SAM-family checkpoint, or one that cannot take clicks (SAM 3); the
            message names what was given and what is accepted.
    """
    if model in HF_SAM_VARIANTS:
        return FAMILIES[_tiny_type(model)][0], str(hf_sam_folder(model, cache_dir() / "tiny")), True
    if model == TINY:  # segment_anything's tiny model: load_sam serves it before this
        raise ValueError(f"model_type='tiny' is not a transformers model; try {TINY_VARIANTS}")
    source, local = resolve_model(
        model, "model_type", build_tiny=None, marker="config.json", example=EXAMPLES[-1]
    )
    kind = str((hub_config(model, source, local, revision=revision) or {}).get("model_type"))
    if kind in NOT_FOR_CLICKS:
        raise ValueError(f"model_type={model!r} cannot take clicks: {NOT_FOR_CLICKS[kind]}")
    if kind not in FAMILIES:
        raise ValueError(
            f"model_type={model!r} is a {kind!r} checkpoint, not a Segment Anything model: "
            f"give one of the families {sorted(FAMILIES)} (e.g. {', '.join(EXAMPLES)})"
        )
    return FAMILIES[kind][0], source, local


def _tiny_type(name: str) -> str:
    return HF_SAM_VARIANTS[name][2]


def available(name: str) -> bool:
    """Whether the installed transformers has the classes of tiny variant or family ``name``."""
    import transformers

    kind = _tiny_type(name) if name in HF_SAM_VARIANTS else name
    return all(hasattr(transformers, n) for n in FAMILIES[kind][1:])


def load_transformers_sam(
    model: str,
    *,
    device: str | torch.device | None = None,
    revision: str | None = None,
    dtype: torch.dtype | str | None = None,
):
    """A :class:`TransformersSam` for ``model`` (see :func:`load_sam`).

    The weights are loaded once per process (fp32, like segment_anything's models) and
    shared by every backend object returned for the same arguments.
    """
    import transformers

    dev = pick_device(device)
    embed_dtype = pick_embed_dtype(dev, dtype)
    key = ("sam-transformers", str(model), revision, str(dev))
    loaded = MODELS.get(key)
    if loaded is None:
        family, source, local = family_of(str(model), revision)
        _, model_cls, processor_cls = FAMILIES[family]
        missing = [n for n in (model_cls, processor_cls) if not hasattr(transformers, n)]
        if missing:
            raise ValueError(
                f"model_type={model!r} is a {family} model, which needs transformers' "
                f"{missing[0]} (not in transformers {transformers.__version__}): "
                "pip install -U transformers"
            )
        extra = {} if local or revision is None else {"revision": revision}
        classes = (getattr(transformers, processor_cls), getattr(transformers, model_cls))
        with loading_bars(not local):  # a download shows its bar; reading a folder is quick
            processor, net = load_pair(*classes, source, local=local, model=str(model), **extra)
        info = {"backend": "transformers", "family": family, "model": str(model)}
        remember(net.to(dev).eval(), **info, revision=revision, path=source)
        loaded = MODELS.put(key, (family, net, processor))
    family, net, processor = loaded
    return TransformersSam(net, processor, family=family, source=str(model), dtype=embed_dtype)


def _cast(features, dtype: torch.dtype):
    """``features`` (a tensor, or SAM 2's list of them) in ``dtype``."""
    if isinstance(features, torch.Tensor):
        return features.to(dtype)
    return type(features)(_cast(f, dtype) for f in features)


@dataclass(frozen=True)
class TransformersEmbedding:
    """A picture's embedding: the image encoder's output and the two sizes, ``(h, w)``.

    ``input_size`` is the resized picture inside the model's (padded) input, which prompt
    coordinates are scaled to.
    """

    features: Any
    original_size: tuple[int, int]
    input_size: tuple[int, int]


# family -> (decoder inputs from the encoder's output, whether post_process_masks takes the
# resized picture's size): how the families differ once loaded. The model's own processor
# prepares the picture (resize, normalise, pad) so that each family sees its input as in its
# reference code; prompts are scaled from image pixels to the resized picture the same way the
# processor scales them.
_DECODING: dict[str, tuple[Callable[[Any], dict], bool]] = {
    "sam": (lambda f: {"image_embeddings": f}, True),
    "sam_hq": (lambda f: {"image_embeddings": f[0], "intermediate_embeddings": f[1]}, True),
    "sam2": (lambda f: {"image_embeddings": f}, False),
}


class TransformersSam:
    """A transformers Segment Anything model and its processor as a
    :class:`~sdsam_nb.segment.PromptSegmenter`.

    Stateless towards its callers: :meth:`embed` returns the embedding as a value, so one
    loaded model serves any number of click segmenters. Made by :func:`sdsam_nb.load_sam`
    for a hub id, a folder or a ``"tiny-*"`` variant.

    Attributes:
        model: the transformers model (``SamModel``, ``SamHQModel`` or ``Sam2Model``).
        processor: its processor.
        family: ``"sam"`` (SAM, SlimSAM), ``"sam_hq"`` or ``"sam2"``.
        source: what it was loaded from (hub id, folder or tiny variant name).
        dtype: what the image encoder computes the embedding in (under ``torch.autocast``;
            the embedding is kept in the weights' dtype).
    """

    backend = "transformers"

    def __init__(
        self, model, processor, *, family: str, source: str, dtype: torch.dtype = torch.float32
    ):
        if family not in _DECODING:
            raise ValueError(f"family={family!r} is not one of {sorted(_DECODING)}")
        self.model = model
        self.processor = processor
        self.family = family
        self.source = source
        self.dtype = dtype
        self._decoder_inputs, self._padded = _DECODING[family]

    def __repr__(self) -> str:
        return f"TransformersSam(family={self.family!r}, source={self.source!r})"

    @property
    def _param(self) -> torch.Tensor:
        return next(self.model.parameters())

    def embed(self, image: np.ndarray) -> TransformersEmbedding:
        # the processor hands the array to torch, which wants it writable
        writable = image if image.flags.writeable else image.copy()
        inputs = self.processor(images=writable, return_tensors="pt")
        p = self._param
        pixels = inputs["pixel_values"].to(p.device, p.dtype)
        with torch.inference_mode(), autocast(p.device, self.dtype):
            features = self.model.get_image_embeddings(pixels)
        features = _cast(features, p.dtype)
        if "reshaped_input_sizes" in inputs:  # SAM: longest side resized, then padded
            input_size = tuple(int(v) for v in inputs["reshaped_input_sizes"][0])
        else:  # SAM 2: resized to the square input, no padding
            input_size = tuple(int(v) for v in pixels.shape[-2:])
        return TransformersEmbedding(features, tuple(image.shape[:2]), input_size)

    def _scale(self, emb: TransformersEmbedding, xy: np.ndarray) -> torch.Tensor:
        """Image-pixel ``(x, y)`` pairs (last axis) to the resized picture's pixels."""
        (h, w), (ih, iw) = emb.original_size, emb.input_size
        scaled = np.asarray(xy, dtype=np.float64) * np.array([iw / w, ih / h])
        return torch.as_tensor(scaled, dtype=torch.float32, device=self._param.device)

    def _decode(self, emb, *, points=None, labels=None, boxes=None, mask_input=None, multi):
        kwargs = self._decoder_inputs(emb.features)
        p = self._param
        if points is not None and len(points):
            kwargs["input_points"] = self._scale(emb, points)[None, None].to(p.dtype)
            kwargs["input_labels"] = torch.as_tensor(labels, dtype=torch.long, device=p.device)[
                None, None
            ]
        if boxes is not None:
            pairs = np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2)
            kwargs["input_boxes"] = self._scale(emb, pairs).reshape(1, -1, 4).to(p.dtype)
        if mask_input is not None:
            kwargs["input_masks"] = torch.as_tensor(
                np.asarray(mask_input, dtype=np.float32), device=p.device
            )[None].to(p.dtype)
        with torch.inference_mode():
            out = self.model(multimask_output=multi, **kwargs)
        logits = out.pred_masks[0]  # (prompts, candidates, h, w)
        padded = [[emb.input_size]] if self._padded else []  # SAM: the picture inside the pad
        masks = self.processor.post_process_masks(
            logits[None].float().cpu(), [emb.original_size], *padded
        )[0]
        return masks.numpy().astype(bool), out.iou_scores[0].float().cpu().numpy(), logits

    def predict(self, embedding, *, points, labels, box, mask_input, multimask) -> Prediction:
        masks, scores, logits = self._decode(
            embedding,
            points=points,
            labels=labels,
            boxes=None if box is None else np.asarray(box)[None],
            mask_input=mask_input,
            multi=multimask,
        )
        low_res = logits[0].float().cpu().numpy()
        return Prediction(masks[0], scores[0], low_res)

    def predict_boxes(self, embedding, boxes: np.ndarray, *, batch: int = 16) -> np.ndarray:
        """Decoded in batches of ``batch`` with one candidate each (a box is unambiguous)."""
        h, w = embedding.original_size
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = [
            self._decode(embedding, boxes=boxes[start : start + batch], multi=False)[0][:, 0]
            for start in range(0, len(boxes), batch)
        ]
        return np.concatenate(out) if out else np.zeros((0, h, w), dtype=bool)

    def info(self) -> dict:
        return {
            "backend": self.backend,
            "family": self.family,
            "model": self.source,
            "embed_dtype": str(self.dtype).removeprefix("torch."),
        }
