"""Text detectors loaded for :func:`sdsam_nb.text_mask`: Grounding DINO (transformers), as a
callable that meets the :data:`sdsam_nb.segment.detect.Detector` contract.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from ..images import ImageLike, to_rgb
from .cache import Loaded, load_once
from .tiny import grounding_dino_folder

DEFAULT_GROUNDING_DINO = "IDEA-Research/grounding-dino-tiny"


def grounding_prompt(text: str) -> str:
    """``text`` as Grounding DINO expects it: lower case, stripped, ending in ``"."``.

    Several phrases are separated by dots: ``"red shoes. hat"`` -> ``"red shoes. hat."``.
    """
    prompt = " ".join(text.lower().split())
    return prompt if prompt.endswith(".") else prompt + "."


class GroundingDinoDetector(Loaded):
    """A Grounding DINO ``GroundingDinoProcessor`` (image processor + BERT tokenizer) and
    ``GroundingDinoForObjectDetection`` pair (:class:`~sdsam_nb.models.cache.Loaded`),
    callable as a :data:`Detector`."""

    def __init__(self, processor, model, source: str):
        super().__init__(processor, model, source)
        params = inspect.signature(processor.post_process_grounded_object_detection).parameters
        # older transformers call the box threshold `box_threshold`
        self._box_kw = "threshold" if "threshold" in params else "box_threshold"
        self._special = set(getattr(processor.tokenizer, "all_special_tokens", []))

    def _clean(self, label: str) -> str:
        words = [w for w in label.split() if w not in self._special]
        return " ".join(words).strip(" .")

    @torch.inference_mode()
    def __call__(
        self,
        image: ImageLike,
        text: str,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
    ) -> tuple[np.ndarray, list[str], list[float]]:
        """Boxes for ``text`` in ``image``.

        Returns:
            ``(boxes, labels, scores)``: an ``Nx4 float32`` array of XYXY boxes in image
            pixels, the phrase each box matched (special tokens removed) and its score
            (max sigmoid over the prompt's tokens). A box is kept when its score is strictly
            above ``box_threshold`` (so 1.0 keeps nothing); a token belongs to its label when
            its probability is above ``text_threshold``.
        """
        rgb = to_rgb(image)
        inputs = self.processor(images=rgb, text=grounding_prompt(text), return_tensors="pt")
        inputs = inputs.to(self.device)
        outputs = self.model(**inputs)
        w, h = rgb.size
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            text_threshold=text_threshold,
            target_sizes=[(h, w)],
            **{self._box_kw: box_threshold},
        )[0]
        labels = result["text_labels"] if "text_labels" in result else result["labels"]
        boxes = result["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
        # transformers 4.40 does not clip the boxes to the picture (5.x does): clip them here
        boxes = np.clip(boxes, 0, np.array([w, h, w, h], dtype=boxes.dtype))
        scores = result["scores"].detach().float().cpu().tolist()
        # batch_decode([]) gives [""]: with no boxes transformers returns one empty label
        labels = [self._clean(str(label)) for label in list(labels)[: len(scores)]]
        return boxes, labels, scores


def load_grounding_dino(
    model: str = DEFAULT_GROUNDING_DINO,
    *,
    device: str | torch.device | None = None,
) -> GroundingDinoDetector:
    """Load a Grounding DINO zero-shot detector, once per process.

    Args:
        model: a hub id (default ``IDEA-Research/grounding-dino-tiny``, 172 M parameters,
            ~0.7 GB), a local folder written by ``save_pretrained``, or ``"tiny"`` for the
            built-in offline model (random weights: its boxes are arbitrary).
        device: ``None`` picks CUDA, then MPS, then CPU. Weights are loaded as saved
            (fp32 for the hub checkpoint).

    Returns:
        A :class:`GroundingDinoDetector` (``.processor``, ``.model``; callable as
        ``detector(image, text, box_threshold, text_threshold)``). Calling again with the
        same arguments returns the same object.

    Raises:
        ValueError: ``model`` or ``device`` is malformed.
        ModelUnavailableError: a hub id that is neither cached nor downloadable.
    """
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    return load_once(
        "grounding_dino",
        GroundingDinoDetector,
        AutoProcessor,
        AutoModelForZeroShotObjectDetection,
        model,
        device,
        build_tiny=grounding_dino_folder,
        example=DEFAULT_GROUNDING_DINO,
    )
