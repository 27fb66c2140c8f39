"""Segment Anything families in transformers behind the segmenter interface: SAM and SlimSAM
(``SamModel``), SAM-HQ (``SamHQModel``) and SAM 2.1 (``Sam2Model``).

One class serves them all; what differs between families is how the image encoder's output
is handed to the prompt decoder and how the processor brings low-res logits back to the
picture's size, which is the small :data:`_FAMILY` table below. The model's own processor
prepares the picture (resize, normalise, pad) so that each family sees its input exactly as
in its reference code; prompts are scaled from image pixels to the resized picture the same
way the processor scales them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .base import Prediction


@dataclass(frozen=True)
class TransformersEmbedding:
    """A picture's embedding: the image encoder's output and the two sizes, ``(h, w)``.

    ``input_size`` is the resized picture inside the model's (padded) input, which prompt
    coordinates are scaled to.
    """

    features: Any
    original_size: tuple[int, int]
    input_size: tuple[int, int]


def _sam_post(processor, logits, emb: TransformersEmbedding):
    return processor.post_process_masks(logits, [emb.original_size], [emb.input_size])


def _sam2_post(processor, logits, emb: TransformersEmbedding):
    return processor.post_process_masks(logits, [emb.original_size])


# family -> (decoder inputs from the encoder's output, low-res logits -> full-size masks)
_FAMILY: dict[str, tuple[Callable[[Any], dict], Callable]] = {
    "sam": (lambda f: {"image_embeddings": f}, _sam_post),
    "sam_hq": (
        lambda f: {"image_embeddings": f[0], "intermediate_embeddings": f[1]},
        _sam_post,
    ),
    "sam2": (lambda f: {"image_embeddings": f}, _sam2_post),
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
    """

    backend = "transformers"

    def __init__(self, model, processor, *, family: str, source: str):
        if family not in _FAMILY:
            raise ValueError(f"family={family!r} is not one of {sorted(_FAMILY)}")
        self.model = model
        self.processor = processor
        self.family = family
        self.source = source
        self._decoder_inputs, self._post = _FAMILY[family]

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
        with torch.inference_mode():
            features = self.model.get_image_embeddings(pixels)
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
        masks = self._post(self.processor, logits[None].float().cpu(), emb)[0]
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
        return {"backend": self.backend, "family": self.family, "model": self.source}
