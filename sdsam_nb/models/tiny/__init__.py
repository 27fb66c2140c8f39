"""Built-in tiny models: the real diffusers / segment-anything / transformers classes with
small configs, one module per family.

They exist so that tests and the offline demo run the *same* loading code as real weights:
each is built once, deterministically (:func:`build_folder`: fixed seed, no network), saved in
the standard format (a diffusers pipeline folder, a SAM state-dict ``.pth``, a
``save_pretrained`` folder) under a recipe name that changes whenever its builder does, and
then loaded back by the kit's loaders exactly like a downloaded model. Their weights are
random: pictures, masks and mattes from them are noise. Never judge quality with them.

==================  =====================================================================
module              builds
==================  =====================================================================
``build``           :func:`build_folder`, :data:`SEED`: how every one is written
``sd``              :func:`sd_folder` (``"tiny"``), :func:`sd_inpainting_folder`
                    (``"tiny-inpainting"``), the CLIP vocabulary (:func:`write_clip_vocab`)
``lora``            :func:`lora_folder`: a few-step LoRA of each kind of ``fast.FAST`` for
                    ``"tiny"`` (``load_sd("tiny", fast=...)``)
``iclight``         :func:`iclight_folder`: IC-Light's two offset files for ``"tiny"``
                    (:func:`sdsam_nb.relight`)
``sam``             :func:`build_sam_model`, :func:`sam_checkpoint` (segment_anything)
``hf_sam``          :func:`hf_sam_folder`: ``"tiny-sam"``, ``"tiny-slimsam"``,
                    ``"tiny-sam-hq"``, ``"tiny-sam2"`` (transformers)
``grounding_dino``  :func:`grounding_dino_folder`
``sam3``            :func:`sam3_folder`
``vitmatte``        :func:`vitmatte_folder`
``salient``         :func:`salient_folder` (the salient-object ControlNet replica)
==================  =====================================================================
"""

from .build import SEED, build_folder, save_model_and_processor
from .grounding_dino import GD_RECIPE, grounding_dino_folder
from .hf_sam import HF_SAM_VARIANTS, hf_sam_folder
from .iclight import ICLIGHT_FILES, ICLIGHT_RECIPE, iclight_folder, iclight_offsets
from .lora import LORA_RECIPE, lora_folder
from .salient import SALIENT_RECIPE, salient_folder
from .sam import SAM_RECIPE, build_sam_model, sam_checkpoint
from .sam3 import SAM3_RECIPE, sam3_folder
from .sd import SD_INPAINTING_RECIPE, SD_RECIPE, sd_folder, sd_inpainting_folder, write_clip_vocab
from .vitmatte import VITMATTE_RECIPE, vitmatte_folder

__all__ = [
    "GD_RECIPE",
    "HF_SAM_VARIANTS",
    "ICLIGHT_FILES",
    "ICLIGHT_RECIPE",
    "LORA_RECIPE",
    "SALIENT_RECIPE",
    "SAM3_RECIPE",
    "SAM_RECIPE",
    "SD_INPAINTING_RECIPE",
    "SD_RECIPE",
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
    "save_model_and_processor",
    "sd_folder",
    "sd_inpainting_folder",
    "vitmatte_folder",
    "write_clip_vocab",
]
