"""ViTMatte (transformers) for :func:`sdsam_nb.edges.matte`: a trimap-guided alpha matting
network, loaded once per process (``"tiny"``: :mod:`sdsam_nb.models.tiny.vitmatte`).
"""

from __future__ import annotations

import numpy as np
import torch

from .cache import Loaded, load_once
from .tiny import vitmatte_folder

DEFAULT_VITMATTE = "hustvl/vitmatte-small-composition-1k"


class VitMatte(Loaded):
    """A ``VitMatteImageProcessor`` (rescale, normalise, pad to a multiple of 32, image and
    trimap stacked into 4 channels) and ``VitMatteForImageMatting`` pair
    (:class:`~sdsam_nb.models.cache.Loaded`), callable on a picture and its trimap."""

    kind, example = "vitmatte", DEFAULT_VITMATTE
    classes = ("VitMatteImageProcessor", "VitMatteForImageMatting")
    build_tiny = staticmethod(vitmatte_folder)

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
    """A ViTMatte matting model (:class:`VitMatte`, callable as ``vitmatte(image, trimap)``) of
    ``model`` (a hub id, default ``hustvl/vitmatte-small-composition-1k``, 25 M parameters; a
    ``save_pretrained`` folder; ``"tiny"``), loaded once per process on ``device`` (``None``:
    CUDA, then MPS, then CPU) with its weights as saved (fp32).

    Raises:
        ValueError: ``model`` or ``device`` is malformed.
        ModelUnavailableError: a hub id that is neither cached nor downloadable.
    """
    return load_once(VitMatte, model, device)
