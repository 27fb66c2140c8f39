"""segment_anything's ``SamPredictor`` behind the segmenter interface (the first backend)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .base import Prediction, register


@dataclass(frozen=True)
class SamEmbedding:
    """A picture's embedding as ``SamPredictor`` holds it: features and the two sizes."""

    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]


class SamBackend:
    """A ``segment_anything.SamPredictor`` as a :class:`~sdsam_nb.segment.PromptSegmenter`.

    The predictor holds one picture at a time: :meth:`predict` puts the given embedding back
    when it holds another (no recomputation; :attr:`restores` counts these).
    """

    backend = "segment_anything"

    def __init__(self, predictor):
        self.predictor = predictor
        self.restores = 0

    @staticmethod
    def accepts(model: Any) -> bool:
        return all(hasattr(model, a) for a in ("set_image", "predict", "predict_torch", "model"))

    @property
    def model(self):
        """The ``segment_anything.Sam`` model."""
        return self.predictor.model

    def embed(self, image: np.ndarray) -> SamEmbedding:
        p = self.predictor
        p.set_image(image)
        return SamEmbedding(p.features, tuple(p.original_size), tuple(p.input_size))

    def _load(self, emb: SamEmbedding) -> None:
        p = self.predictor
        if (
            p.is_image_set
            and p.features is emb.features
            and tuple(p.original_size) == emb.original_size
            and tuple(p.input_size) == emb.input_size
        ):
            return
        p.features = emb.features
        p.original_size = emb.original_size
        p.input_size = emb.input_size
        p.is_image_set = True
        self.restores += 1

    def predict(self, embedding, *, points, labels, box, mask_input, multimask) -> Prediction:
        self._load(embedding)
        masks, scores, low_res = self.predictor.predict(
            point_coords=points,
            point_labels=labels,
            box=box,
            mask_input=mask_input,
            multimask_output=multimask,
        )
        return Prediction(np.asarray(masks), np.asarray(scores), np.asarray(low_res))

    def predict_boxes(self, embedding, boxes: np.ndarray, *, batch: int = 16) -> np.ndarray:
        """One candidate per box (a box is unambiguous), ``batch`` boxes at a time."""
        self._load(embedding)
        p = self.predictor
        h, w = embedding.original_size
        tboxes = p.transform.apply_boxes_torch(torch.as_tensor(boxes, device=p.device), (h, w))
        out = []
        with torch.inference_mode():
            for start in range(0, len(tboxes), batch):
                masks, _, _ = p.predict_torch(
                    point_coords=None,
                    point_labels=None,
                    boxes=tboxes[start : start + batch],
                    multimask_output=False,
                )
                out.append(masks[:, 0].cpu().numpy().astype(bool))
        return np.concatenate(out) if out else np.zeros((0, h, w), dtype=bool)

    def automatic_masks(self, image: np.ndarray, **settings) -> list[dict]:
        """``segment_anything.SamAutomaticMaskGenerator``'s proposals for ``image``; the
        predictor's own picture is left as it was."""
        from segment_anything import SamAutomaticMaskGenerator

        generator = SamAutomaticMaskGenerator(self.model, output_mode="binary_mask", **settings)
        with torch.inference_mode():
            return generator.generate(image)

    def info(self) -> dict:
        dtype = getattr(self.predictor, "dtype", torch.float32)  # a plain SamPredictor: fp32
        return {"backend": self.backend, "embed_dtype": str(dtype).removeprefix("torch.")}


register(SamBackend.accepts, SamBackend)
