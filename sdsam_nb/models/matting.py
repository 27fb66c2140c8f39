"""ViTMatte (transformers) for :func:`sdsam_nb.edges.matte`: a trimap-guided alpha matting
network, loaded once per process (``"tiny"``: :mod:`sdsam_nb.models.tiny.vitmatte`).
"""

from __future__ import annotations

import numpy as np
import torch

from .cache import MODELS, load_pair, resolve_model
from .devices import pick_device
from .tiny import vitmatte_folder

DEFAULT_VITMATTE = "hustvl/vitmatte-small-composition-1k"


class VitMatte:
    """A ViTMatte image processor + model pair, callable on a picture and its trimap.

    Attributes:
        processor: the ``transformers`` ``VitMatteImageProcessor`` (rescale, normalise, pad to
            a multiple of 32, image and trimap stacked into 4 channels).
        model: the ``VitMatteForImageMatting`` in eval mode on ``device``.
        source: the model id, folder or ``"tiny"`` it was loaded from (for ``run.json``).
    """

    def __init__(self, processor, model, source: str):
        self.processor = processor
        self.model = model
        self.source = source

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        return f"VitMatte(source={self.source!r}, device={str(self.device)!r})"

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        """The alpha matte of ``image`` (``HxWx3 uint8`` RGB) given ``trimap`` (``HxW uint8``:
        0 background, 128 unknown, 255 foreground).

        Returns:
            ``HxW float32`` in ``[0, 1]`` over the whole picture; the network's values also
            on the known pixels (:func:`sdsam_nb.edges.matte` keeps only the unknown ones).
        """
        h, w = trimap.shape
        # writable copies: torch warns about (and may not use) read-only arrays such as PIL's
        image, trimap = np.array(image, dtype=np.uint8), np.array(trimap, dtype=np.uint8)
        inputs = self.processor(images=image, trimaps=trimap, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, next(self.model.parameters()).dtype)
        alphas = self.model(pixel_values=pixels).alphas
        return alphas[0, 0, :h, :w].float().cpu().numpy().astype(np.float32)


def load_vitmatte(
    model: str = DEFAULT_VITMATTE, *, device: str | torch.device | None = None
) -> VitMatte:
    """Load a ViTMatte matting model, once per process.

    Args:
        model: a hub id (default ``hustvl/vitmatte-small-composition-1k``, 25 M parameters,
            ~0.1 GB), a local folder written by ``save_pretrained``, or ``"tiny"`` for the
            built-in offline model (random weights: its alphas are arbitrary).
        device: ``None`` picks CUDA, then MPS, then CPU. Weights are loaded as saved (fp32).

    Returns:
        A :class:`VitMatte` (``.processor``, ``.model``; callable as
        ``vitmatte(image, trimap)``). Calling again with the same arguments returns the same
        object.

    Raises:
        ValueError: ``model`` or ``device`` is malformed.
        ModelUnavailableError: a hub id that is neither cached nor downloadable.
    """
    from transformers import VitMatteForImageMatting, VitMatteImageProcessor

    dev = pick_device(device)
    key = ("vitmatte", str(model), str(dev))
    if key in MODELS:
        return MODELS.get(key)
    source, local = resolve_model(
        model, "model", build_tiny=vitmatte_folder, marker="config.json", example=DEFAULT_VITMATTE
    )
    processor, net = load_pair(
        VitMatteImageProcessor, VitMatteForImageMatting, source, local=local, model=str(model)
    )
    net.to(dev).eval()
    return MODELS.put(key, VitMatte(processor, net, str(model)))
