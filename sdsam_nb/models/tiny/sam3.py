"""The tiny SAM 3 (``load_sam3("tiny")``).

It keeps the real architecture (RoPE ViT with windowed and global attention, FPN neck at
4x/2x/1x/0.5x, CLIP text encoder, DETR encoder/decoder with a presence token, dot-product
scoring, the mask decoder) with 32-wide layers, a 112-px input (8x8 patches of 14 px, as the
real 1008 px gives 72x72) and the byte-level CLIP vocabulary of :mod:`.sd`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .build import build_folder, saved
from .sd import write_clip_vocab

SAM3_RECIPE = "sam3-tiny-r1"


def _build_sam3():
    """The tiny SAM 3 ``(processor, model)``, random weights (seed the caller's RNG)."""
    from transformers import CLIPTextConfig, CLIPTokenizer, Sam3Config, Sam3Model, Sam3Processor
    from transformers.models.sam3 import configuration_sam3 as c
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    image_size, dim, heads, ffn = 112, 32, 2, 64
    with tempfile.TemporaryDirectory() as tmp:
        write_clip_vocab(Path(tmp))
        # SAM 3's processor pads every prompt to 32 tokens
        tokenizer = CLIPTokenizer.from_pretrained(tmp, model_max_length=32)
    small = dict(hidden_size=dim, num_attention_heads=heads, intermediate_size=ffn)
    config = Sam3Config(
        vision_config=c.Sam3VisionConfig(
            backbone_config=c.Sam3ViTConfig(
                num_hidden_layers=2,
                image_size=image_size,
                patch_size=14,
                window_size=4,
                global_attn_indexes=[1],
                pretrain_image_size=56,  # position embeddings are tiled, as in the real model
                **small,
            ),
            fpn_hidden_size=dim,
            backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
        ),
        text_config=CLIPTextConfig(
            vocab_size=len(tokenizer),
            projection_dim=dim,
            num_hidden_layers=1,
            max_position_embeddings=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **small,
        ),
        geometry_encoder_config=c.Sam3GeometryEncoderConfig(num_layers=1, roi_size=2, **small),
        detr_encoder_config=c.Sam3DETREncoderConfig(num_layers=1, **small),
        detr_decoder_config=c.Sam3DETRDecoderConfig(num_layers=2, num_queries=10, **small),
        mask_decoder_config=c.Sam3MaskDecoderConfig(
            hidden_size=dim, num_attention_heads=heads, num_upsampling_stages=2
        ),
    )
    model = Sam3Model(config).eval()
    image_processor = Sam3ImageProcessor(
        size={"height": image_size, "width": image_size}, mask_size={"height": 32, "width": 32}
    )
    processor = Sam3Processor(image_processor=image_processor, tokenizer=tokenizer)
    return processor, model


def sam3_folder(root: Path) -> Path:
    """The tiny SAM 3 folder under ``root`` (``save_pretrained``'s model, processor and
    tokenizer), built on first use (<1 s)."""
    return build_folder(Path(root) / SAM3_RECIPE, "config.json", saved(_build_sam3))
