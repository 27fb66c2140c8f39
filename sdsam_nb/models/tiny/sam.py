"""The tiny segment_anything SAM (``"tiny"``): a 256-px ``ImageEncoderViT`` with the real
prompt encoder and mask decoder, so ``SamPredictor`` works unchanged; saved as a state-dict
``.pth`` like the official checkpoints.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from .build import build_folder

SAM_RECIPE = "sam-tiny-r1"


def build_sam_model():
    """The tiny SAM architecture (random weights): 256-px ViT encoder, real decoder."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    img_size, dim = 256, 32
    encoder = ImageEncoderViT(
        img_size=img_size,
        patch_size=16,
        embed_dim=64,
        depth=2,
        num_heads=2,
        mlp_ratio=4.0,
        out_chans=dim,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=8,
        global_attn_indexes=(1,),
    )
    prompt_encoder = PromptEncoder(
        embed_dim=dim,
        image_embedding_size=(img_size // 16, img_size // 16),
        input_image_size=(img_size, img_size),
        mask_in_chans=16,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=64, num_heads=2),
        transformer_dim=dim,
        iou_head_depth=3,
        iou_head_hidden_dim=32,
    )
    return Sam(
        image_encoder=encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=decoder,
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def sam_checkpoint(root: Path) -> Path:
    """The tiny SAM state-dict file under ``root``, built on first use."""
    name = f"{SAM_RECIPE}.pth"

    def write(folder: Path) -> None:
        torch.save(build_sam_model().state_dict(), folder / name)

    return build_folder(Path(root) / SAM_RECIPE, name, write) / name
