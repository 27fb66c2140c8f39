"""A dedicated inpainting checkpoint (a 9-channel UNet that takes the masked picture and the
mask as input), loaded once per process and sampling with the text-to-image pipeline's
sampler, e.g. ``stable-diffusion-v1-5/stable-diffusion-inpainting``."""

from __future__ import annotations

from ...models import inpainting


class DedicatedInpainting:
    def __init__(self, model: str):
        self.model = model
        self.name = model

    def pipeline(self, pipe):
        return inpainting(pipe, self.model)

    def inputs(self, image, mask_image) -> dict:
        return {}
