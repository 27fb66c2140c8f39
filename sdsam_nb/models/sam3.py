"""SAM 3 (transformers ``Sam3Model``): every instance of a concept named in text, with masks.

:func:`load_sam3` loads ``facebook/sam3`` (or a folder, or ``"tiny"``) once per process and
returns a :class:`Sam3TextSegmenter`: ``segment(image, text)`` gives per-instance masks, boxes
and scores; called as ``segmenter(image, text, box_threshold, text_threshold)`` it meets the
:data:`sdsam_nb.models.detectors.Detector` contract (boxes only), so a click segmenter can
start from its best box. The tiny offline SAM 3 is built by :mod:`sdsam_nb.models.tiny.sam3`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..images import ImageLike, to_rgb
from .cache import Loaded, hub_config, load_once
from .tiny import sam3_folder

DEFAULT_SAM3 = "facebook/sam3"


def sam3_phrases(text: str) -> list[str]:
    """The noun phrases of ``text``: split at dots, whitespace collapsed, empty ones dropped.

    ``"red shoes. hat"`` -> ``["red shoes", "hat"]``; SAM 3 takes one concept per prompt.
    """
    phrases = (" ".join(part.split()) for part in text.split("."))
    return [p for p in phrases if p]


class Sam3TextSegmenter(Loaded):
    """A ``Sam3Processor`` (image processor + CLIP tokenizer) and ``Sam3Model`` pair
    (:class:`~sdsam_nb.models.cache.Loaded`): text -> instance masks, boxes and scores."""

    kind, example = "sam3", DEFAULT_SAM3
    classes = ("Sam3Processor", "Sam3Model")
    build_tiny = staticmethod(sam3_folder)

    @classmethod
    def check(cls, model, source: str, local: bool) -> None:
        model_type = (hub_config(model, source, local) or {}).get("model_type")
        # "sam3_video" checkpoints (facebook/sam3 itself) hold the image model: Sam3Model loads it
        if model_type not in ("sam3", "sam3_video"):
            raise ValueError(
                f"{str(model)!r} is a {model_type!r} checkpoint, not SAM 3: text masks with SAM 3 "
                f"need a SAM 3 checkpoint such as {DEFAULT_SAM3!r} (or 'tiny' offline)"
            )

    @torch.inference_mode()
    def segment(
        self,
        image: ImageLike,
        text: str,
        threshold: float = 0.35,
        mask_threshold: float = 0.5,
    ) -> tuple[np.ndarray, np.ndarray, list[float], list[str]]:
        """Every instance of what ``text`` names in ``image``.

        ``text`` is one noun phrase (``"red shoes"``) or several separated by dots; the image
        encoder runs once and each phrase is decoded on its own.

        Returns:
            ``(masks, boxes, scores, labels)``: ``NxHxW bool`` masks at the picture's size,
            an ``Nx4 float32`` array of XYXY boxes in image pixels (clipped to the picture),
            each instance's score (query score x presence score, 0..1) and the phrase it
            matched, highest score first. An instance is kept when its score is strictly
            above ``threshold`` (so 1.0 keeps nothing); a pixel belongs to its mask when its
            probability is above ``mask_threshold``.
        """
        rgb = to_rgb(image)
        w, h = rgb.size
        phrases = sam3_phrases(text)
        if not phrases:
            raise ValueError(f"text must name what to mask, e.g. 'red shoes', not {text!r}")
        images = self.processor(images=rgb, return_tensors="pt")
        pixels = images["pixel_values"].to(self.device, self.model.dtype)
        vision = self.model.get_vision_features(pixel_values=pixels)
        masks, boxes, scores, labels = [], [], [], []
        for phrase in phrases:
            words = self.processor(text=phrase, return_tensors="pt").to(self.device)
            outputs = self.model(
                vision_embeds=vision,
                input_ids=words["input_ids"],
                attention_mask=words["attention_mask"],
            )
            found = self.processor.post_process_instance_segmentation(
                outputs, threshold=threshold, mask_threshold=mask_threshold, target_sizes=[(h, w)]
            )[0]
            n = len(found["scores"])
            # with nothing kept, transformers returns the masks at the model's mask size
            masks.append(found["masks"].bool().cpu().numpy().reshape(n, h, w) if n else None)
            boxes.append(found["boxes"].float().cpu().numpy().reshape(n, 4))
            scores += found["scores"].float().cpu().tolist()
            labels += [phrase] * n
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        kept = [m for m in masks if m is not None]
        mask_array = np.concatenate(kept) if kept else np.zeros((0, h, w), dtype=bool)
        # SAM 3's boxes are not clipped to the picture
        box_array = np.clip(np.concatenate(boxes), 0, np.array([w, h, w, h], dtype=np.float32))
        return (
            mask_array[order],
            box_array[order].astype(np.float32),
            [scores[i] for i in order],
            [labels[i] for i in order],
        )

    def __call__(
        self,
        image: ImageLike,
        text: str,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
    ) -> tuple[np.ndarray, list[str], list[float]]:
        """SAM 3's boxes as a :data:`~sdsam_nb.models.detectors.Detector`: ``(boxes Nx4 XYXY
        image pixels, labels, scores)``, best first. ``box_threshold`` is SAM 3's score
        threshold; ``text_threshold`` is not used (SAM 3 labels each instance with its
        phrase)."""
        _, boxes, scores, labels = self.segment(image, text, threshold=box_threshold)
        return boxes, labels, scores


def load_sam3(
    model: str = DEFAULT_SAM3,
    *,
    device: str | torch.device | None = None,
) -> Sam3TextSegmenter:
    """SAM 3 for text prompts (:class:`Sam3TextSegmenter`: ``.segment(image, text)``, callable
    as a detector) of ``model`` (a hub id, default ``facebook/sam3``, gated: accept its licence
    on the hub and log in once; a ``save_pretrained`` folder; ``"tiny"``), loaded once per
    process on ``device`` (``None``: CUDA, then MPS, then CPU) with its weights as saved.

    Raises:
        ValueError: ``model`` or ``device`` is malformed, not a SAM 3 checkpoint, or this
            transformers has no ``Sam3Model``.
        ModelUnavailableError: a hub id that is neither cached nor downloadable.
    """
    return load_once(Sam3TextSegmenter, model, device)
