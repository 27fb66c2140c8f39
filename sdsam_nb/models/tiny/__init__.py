"""Built-in tiny models: the real diffusers / segment-anything / transformers classes with small
configs and random weights (never judge quality with them), one module per family. Each is built
once (:func:`build_folder`) under a recipe name that changes whenever its builder does, and
loaded back through the same code as a downloaded model.
"""

from .build import SEED, build_folder
from .grounding_dino import GD_RECIPE, grounding_dino_folder
from .hf_sam import HF_SAM_VARIANTS, hf_sam_folder
from .iclight import ICLIGHT_FILES, iclight_folder, iclight_offsets
from .lora import lora_folder
from .salient import salient_folder
from .sam import SAM_RECIPE, build_sam_model, sam_checkpoint
from .sam3 import SAM3_RECIPE, sam3_folder
from .sd import sd_folder, sd_inpainting_folder, write_clip_vocab
from .vitmatte import VITMATTE_RECIPE, vitmatte_folder

__all__ = [
    "GD_RECIPE",
    "HF_SAM_VARIANTS",
    "ICLIGHT_FILES",
    "SAM3_RECIPE",
    "SAM_RECIPE",
    "SEED",
    "VITMATTE_RECIPE",
    "build_folder",
    "build_sam_model",
    "grounding_dino_folder",
    "hf_sam_folder",
    "iclight_folder",
    "iclight_offsets",
    "lora_folder",
    "salient_folder",
    "sam3_folder",
    "sam_checkpoint",
    "sd_folder",
    "sd_inpainting_folder",
    "vitmatte_folder",
    "write_clip_vocab",
]
