"""The salient-object-aware ControlNet (*Salient Object-Aware Background Generation using
Text-Guided Diffusion Models*, CVPR 2024 workshops; ``yahoo-inc/photo-background-generation``):
SD 2 inpainting plus a ControlNet conditioned on the background mask, trained to keep the
subject from growing into the new background ("object expansion").

As in the authors' notebook, the pipeline's ``mask_image`` is the background to repaint
(white = repaint) and the ControlNet's ``control_image`` is that same mask.
"""

from __future__ import annotations

import os

from ...models import TINY, provenance
from ...models.sd import SALIENT_BG
from ...validate import check_number


class SalientControlNet:
    """Args:
    checkpoint: a hub id or folder with the checkpoint's layout, or ``"tiny"`` (the built-in
        replica). ``None`` (what ``model="salient"`` gives): :data:`SALIENT_BG`, or the tiny
        replica when the text-to-image pipeline is the tiny one.
    conditioning_scale: diffusers' ``controlnet_conditioning_scale``, a finite number >= 0;
        0 turns the ControlNet off (plain SD 2 inpainting).
    """

    name = "salient"

    def __init__(
        self, checkpoint: str | os.PathLike | None = None, conditioning_scale: float = 1.0
    ):
        self.checkpoint = checkpoint
        self.conditioning_scale = check_number(conditioning_scale, "conditioning_scale", low=0.0)

    def pipeline(self, pipe):
        checkpoint = self.checkpoint
        if checkpoint is None:
            checkpoint = TINY if provenance(pipe).get("model") == TINY else SALIENT_BG
        from ...models.salient import salient_inpainting  # imports diffusers

        return salient_inpainting(pipe, checkpoint)

    def inputs(self, image, mask_image) -> dict:
        return {
            "control_image": mask_image,
            "controlnet_conditioning_scale": self.conditioning_scale,
        }
