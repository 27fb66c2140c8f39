"""What a promptable segmentation model gives for one prompt (:class:`Prediction`); below
``segment``, so that the model wrappers here return it without importing ``segment``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """One decoding of a prompt.

    Attributes:
        masks: ``CxHxW bool`` candidate masks at the embedded picture's size.
        scores: ``C`` float, the model's own quality estimate of each candidate.
        low_res: ``Cx256x256 float32`` logits; one of them is given back as ``mask_input``
            with the next prompt, so that a click refines the mask it sees.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res: np.ndarray
