"""Inpainting with the text-to-image model's own weights (SD v1-4: a 4-channel UNet that
diffusers' inpainting pipeline drives by blending latents). No second copy of any weight."""

from __future__ import annotations

from ...models import inpainting


class OwnWeights:
    name = "own"

    def pipeline(self, pipe):
        return inpainting(pipe)

    def inputs(self, image, mask_image) -> dict:
        return {}
