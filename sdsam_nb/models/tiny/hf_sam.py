"""The tiny transformers segmenters: ``SamModel`` (SAM and SlimSAM), ``SamHQModel`` and
``Sam2Model`` with small configs and random weights (masks arbitrary: enough to test shapes,
prompts, undo, replay and errors, never quality), read back by :func:`sdsam_nb.load_sam`
through ``from_pretrained`` as ``facebook/sam-vit-base`` or ``facebook/sam2.1-hiera-tiny`` are.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from .build import build_folder, saved

IMAGE = 256  # the tiny encoders' input side (the real ones take 1024)

# SAM's ViT image encoder, shared by the SAM, SlimSAM and SAM-HQ tiny variants
_VIT = {
    "hidden_size": 64,
    "output_channels": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": IMAGE,
    "window_size": 8,
    "global_attn_indexes": [1],
    "num_pos_feats": 16,
}
_PROMPT = {"hidden_size": 32, "image_size": IMAGE, "mask_input_channels": 16}
_DECODER = {
    "hidden_size": 32,
    "mlp_dim": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "iou_head_hidden_dim": 32,
}


def _sam(vision=_VIT, family: str = "Sam"):
    """SAM (``family="Sam"``) or SAM-HQ (``"SamHQ"``): ``(processor, model)``."""
    import transformers

    decoder = {**_DECODER, "vit_dim": vision["hidden_size"]} if family == "SamHQ" else _DECODER
    config = getattr(transformers, f"{family}Config")(
        vision_config=vision, prompt_encoder_config=_PROMPT, mask_decoder_config=decoder
    )
    image_processor = transformers.SamImageProcessor(
        size={"longest_edge": IMAGE}, pad_size={"height": IMAGE, "width": IMAGE}
    )
    processor = getattr(transformers, f"{family}Processor")(image_processor=image_processor)
    return processor, getattr(transformers, f"{family}Model")(config)


def _sam2():
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor

    side = IMAGE // 4  # the Hiera stem's stride
    backbone = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": 16,
        "num_attention_heads": 1,
        "image_size": [IMAGE, IMAGE],
        "blocks_per_stage": [1, 1, 2, 1],
        "embed_dim_per_stage": [16, 32, 64, 128],
        "num_attention_heads_per_stage": [1, 1, 2, 2],
        "window_size_per_stage": [4, 4, 8, 4],
        "global_attention_blocks": [3],
        "window_positional_embedding_background_size": [4, 4],
    }
    vision = {
        "backbone_config": backbone,
        "backbone_channel_list": [128, 64, 32, 16],
        "backbone_feature_sizes": [[side, side], [side // 2, side // 2], [side // 4, side // 4]],
        "fpn_hidden_size": 32,
    }
    config = Sam2Config(
        vision_config=vision,
        prompt_encoder_config={**_PROMPT, "mask_input_channels": 8},
        mask_decoder_config=_DECODER,
    )
    model = Sam2Model(config)
    image_processor = Sam2ImageProcessor(
        size={"height": IMAGE, "width": IMAGE}, mask_size={"height": side, "width": side}
    )
    return Sam2Processor(image_processor=image_processor), model


# name -> (recipe folder, builder, config model_type); the recipe changes whenever a
# builder does
HF_SAM_VARIANTS = {
    "tiny-sam": ("sam-hf-tiny-r1", _sam, "sam"),
    # SlimSAM is SAM pruned: the same classes with narrower, uneven widths
    "tiny-slimsam": (
        "slimsam-hf-tiny-r1",
        partial(_sam, {**_VIT, "hidden_size": 48, "mlp_dim": 72}),
        "sam",
    ),
    "tiny-sam-hq": ("sam-hq-hf-tiny-r1", partial(_sam, family="SamHQ"), "sam_hq"),
    "tiny-sam2": ("sam2-hf-tiny-r1", _sam2, "sam2"),
}


def hf_sam_folder(name: str, root: Path) -> Path:
    """The folder of tiny variant ``name`` (a key of :data:`HF_SAM_VARIANTS`) under ``root``,
    built on first use: processor and model written with ``save_pretrained``."""
    import transformers

    recipe, build, _ = HF_SAM_VARIANTS[name]
    # transformers 5 writes processor_config.json, which 4.x cannot read: one build per major
    major = transformers.__version__.split(".")[0]
    final = Path(root) / f"{recipe}-transformers{major}"
    return build_folder(final, "config.json", saved(build))
