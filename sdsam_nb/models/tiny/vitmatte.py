"""The tiny ViTMatte (``load_vitmatte("tiny")``, ``edges.matte(..., model="tiny")``).

It keeps the real architecture (a ViTDet backbone over image + trimap, 4 input channels,
windowed and global attention with relative positions and residual blocks; the ConvStream +
fusion detail-capture decoder) with small widths. Its weights are random: its alphas are
arbitrary inside the trimap's unknown band. Never judge matte quality with it.
"""

from __future__ import annotations

from pathlib import Path

from .build import build_folder, saved

VITMATTE_RECIPE = "vitmatte-tiny-r1"


def _build_vitmatte():
    """The tiny ViTMatte ``(processor, model)``, random weights (seed the caller's RNG)."""
    from transformers import (
        VitDetConfig,
        VitMatteConfig,
        VitMatteForImageMatting,
        VitMatteImageProcessor,
    )

    width = 32
    config = VitMatteConfig(
        backbone_config=VitDetConfig(
            hidden_size=width,
            num_hidden_layers=2,
            num_attention_heads=2,
            mlp_ratio=2,
            num_channels=4,  # RGB + trimap, as the real model
            image_size=64,
            pretrain_image_size=64,
            patch_size=16,
            window_size=2,
            window_block_indices=[0],  # block 1 attends globally, as blocks 2, 5, 8, 11 do
            residual_block_indices=[1],
            use_relative_position_embeddings=True,
            out_features=["stage2"],
        ),
        hidden_size=width,
        convstream_hidden_sizes=[8, 16, 16],
        fusion_hidden_sizes=[32, 16, 8, 8],
        initializer_range=0.2,  # at the default 0.02 the random head gives 0.5 everywhere
    )
    model = VitMatteForImageMatting(config).eval()
    return VitMatteImageProcessor(), model


def vitmatte_folder(root: Path) -> Path:
    """The tiny ViTMatte folder under ``root`` (``save_pretrained``'s model and image
    processor), built on first use (<1 s)."""
    return build_folder(Path(root) / VITMATTE_RECIPE, "config.json", saved(_build_vitmatte))
