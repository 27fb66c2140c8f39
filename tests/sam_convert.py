"""Convert a ``segment_anything`` SAM into transformers' ``SamModel`` + ``SamProcessor``, so
that the same weights run in either library: :func:`sam_config_for` reads the architecture
off a ``Sam``, :func:`sam_to_transformers` renames its state dict (:data:`RENAMES`),
:func:`save_as_transformers` writes a ``from_pretrained`` folder. Test code, not part of the
kit: ``tests/test_cross_library.py`` checks with it that both libraries agree on the same weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import torch

_POS = "shared_image_embedding.positional_embedding"

# (pattern, replacement) applied in order, each once, to every segment_anything key. A
# replacement is a ``re.sub`` string or a function of the match. The MLP heads are handled
# apart (:func:`_mlp_renames`) because where their last layer sits depends on the depth.
RENAMES: list[tuple[str, str | Callable[[re.Match], str]]] = [
    (r"^image_encoder\.", "vision_encoder."),
    (r"^vision_encoder\.blocks\.", "vision_encoder.layers."),
    (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
    (r"\.norm(\d)\.", r".layer_norm\1."),  # encoder blocks (1-2) and decoder blocks (1-4)
    (r"\.neck\.0\.", ".neck.conv1."),
    (r"\.neck\.1\.", ".neck.layer_norm1."),
    (r"\.neck\.2\.", ".neck.conv2."),
    (r"\.neck\.3\.", ".neck.layer_norm2."),
    (r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$", _POS),
    (r"\.point_embeddings\.", ".point_embed."),
    (r"\.mask_downscaling\.0\.", ".mask_embed.conv1."),
    (r"\.mask_downscaling\.1\.", ".mask_embed.layer_norm1."),
    (r"\.mask_downscaling\.3\.", ".mask_embed.conv2."),
    (r"\.mask_downscaling\.4\.", ".mask_embed.layer_norm2."),
    (r"\.mask_downscaling\.6\.", ".mask_embed.conv3."),
    (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
    (r"\.output_upscaling\.0\.", ".upscale_conv1."),
    (r"\.output_upscaling\.1\.", ".upscale_layer_norm."),
    (r"\.output_upscaling\.3\.", ".upscale_conv2."),
]

# transformers keeps one positional-embedding matrix under two names (tied weights).
_TIED = {"prompt_encoder.shared_embedding.positional_embedding": _POS}


def _mlp_renames(iou_head_depth: int) -> list[tuple[str, str | Callable[[re.Match], str]]]:
    """``MLP.layers.0..n-1`` -> ``proj_in``, ``layers.0..n-3``, ``proj_out``: the mask
    hypernetworks always have 3 layers, the IoU head ``iou_head_depth``."""
    head = r"(output_hypernetworks_mlps\.\d+|iou_prediction_head)"
    return [
        (r"(output_hypernetworks_mlps\.\d+)\.layers\.2\.", r"\1.proj_out."),
        (rf"(iou_prediction_head)\.layers\.{iou_head_depth - 1}\.", r"\1.proj_out."),
        (rf"{head}\.layers\.0\.", r"\1.proj_in."),
        (rf"{head}\.layers\.(\d+)\.", lambda m: f"{m[1]}.layers.{int(m[2]) - 1}."),
    ]


def sam_config_for(sam: torch.nn.Module):
    """The ``transformers.SamConfig`` of a ``segment_anything`` ``Sam``, every size read off
    the module (any ``Sam`` converts), LayerNorm epsilons too: segment_anything's decoder
    blocks use torch's 1e-5, transformers' default is 1e-6."""
    from transformers import (
        SamConfig,
        SamMaskDecoderConfig,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    enc, prompt, dec = sam.image_encoder, sam.prompt_encoder, sam.mask_decoder
    blocks, proj = enc.blocks, enc.patch_embed.proj
    windows = {b.window_size for b in blocks if b.window_size > 0}
    vision = SamVisionConfig(
        hidden_size=proj.out_channels,
        output_channels=enc.neck[0].out_channels,
        num_hidden_layers=len(blocks),
        num_attention_heads=blocks[0].attn.num_heads,
        image_size=enc.img_size,
        patch_size=proj.kernel_size[0],
        layer_norm_eps=blocks[0].norm1.eps,
        qkv_bias=blocks[0].attn.qkv.bias is not None,
        mlp_dim=blocks[0].mlp.lin1.out_features,
        use_abs_pos=enc.pos_embed is not None,
        use_rel_pos=blocks[0].attn.use_rel_pos,
        window_size=windows.pop() if windows else 0,
        global_attn_indexes=[i for i, b in enumerate(blocks) if b.window_size == 0],
        num_pos_feats=prompt.pe_layer.positional_encoding_gaussian_matrix.shape[1],
    )
    prompt_config = SamPromptEncoderConfig(
        hidden_size=prompt.embed_dim,
        image_size=prompt.input_image_size[0],
        patch_size=prompt.input_image_size[0] // prompt.image_embedding_size[0],
        mask_input_channels=prompt.mask_downscaling[3].out_channels,
        num_point_embeddings=prompt.num_point_embeddings,
        layer_norm_eps=prompt.mask_downscaling[1].eps,
    )
    block = dec.transformer.layers[0]
    decoder = SamMaskDecoderConfig(
        hidden_size=dec.transformer_dim,
        mlp_dim=block.mlp.lin1.out_features,
        num_hidden_layers=dec.transformer.depth,
        num_attention_heads=block.self_attn.num_heads,
        attention_downsample_rate=block.cross_attn_token_to_image.embedding_dim
        // block.cross_attn_token_to_image.internal_dim,
        num_multimask_outputs=dec.num_multimask_outputs,
        iou_head_depth=dec.iou_prediction_head.num_layers,
        iou_head_hidden_dim=dec.iou_prediction_head.layers[0].out_features,
        layer_norm_eps=block.norm1.eps,
    )
    return SamConfig(
        vision_config=vision, prompt_encoder_config=prompt_config, mask_decoder_config=decoder
    )


def _rename(key: str, table) -> str:
    for pattern, replacement in table:
        key = re.sub(pattern, replacement, key, count=1)
    return key


def _some(names: list[str], shown: int = 3) -> str:
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def sam_to_transformers(state_dict: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """``state_dict`` (``Sam.state_dict()`` or an official ``sam_vit_*.pth``; ``pixel_mean`` /
    ``pixel_std`` are dropped: they belong to the processor) renamed for ``SamModel(config)``:
    a new dict of the same tensors that ``load_state_dict(..., strict=True)`` accepts.

    Raises:
        ValueError: one line naming the missing, left-over or mis-shaped keys.
    """
    from transformers import SamModel

    table = RENAMES + _mlp_renames(config.mask_decoder_config.iou_head_depth)
    skip = {"pixel_mean", "pixel_std"}
    source = {_rename(k, table): k for k in state_dict if k not in skip}
    out = {new: state_dict[old] for new, old in source.items()}
    for alias, key in _TIED.items():
        if key in out:
            out[alias] = out[key]
    with torch.device("meta"):  # names and shapes only: nothing allocated, nothing initialised
        expected = {k: v.shape for k, v in SamModel(config).state_dict().items()}
    problems = []
    if missing := sorted(expected.keys() - out.keys()):
        problems.append(f"missing {_some(missing)}")
    if extra := sorted(source[k] for k in out.keys() - expected.keys()):
        problems.append(f"left over {_some(extra)}")
    if shapes := sorted(
        f"{source.get(k, k)} {tuple(out[k].shape)} != {tuple(expected[k])}"
        for k in out.keys() & expected.keys()
        if out[k].shape != expected[k]
    ):
        problems.append(f"wrong shape {_some(shapes)}")
    if problems:
        raise ValueError(
            "state dict does not match the SamConfig "
            f"(image {config.vision_config.image_size}px, width {config.vision_config.hidden_size},"
            f" depth {config.vision_config.num_hidden_layers}): " + "; ".join(problems)
        )
    return out


def sam_processor_for(sam: torch.nn.Module):
    """A ``SamProcessor`` that preprocesses like ``SamPredictor`` does for ``sam``: longest
    side resized (PIL bilinear on uint8) to the encoder's ``img_size``, normalised with
    ``sam.pixel_mean`` / ``pixel_std``, zero-padded bottom-right to a square; low-res masks
    ``img_size / 4`` px. Saved, it reads back as the torchvision backend unless loaded with
    ``backend="pil"`` (transformers stores the base class name): about one grey level apart.
    """
    import transformers

    # transformers 5 has a PIL and a torchvision image processor; older ones only the former
    pil = getattr(transformers, "SamImageProcessorPil", transformers.SamImageProcessor)
    size, low = sam.image_encoder.img_size, sam.image_encoder.img_size // 4
    image_processor = pil(
        size={"longest_edge": size},
        pad_size={"height": size, "width": size},
        mask_size={"longest_edge": low},
        mask_pad_size={"height": low, "width": low},
        image_mean=(sam.pixel_mean.flatten() / 255).tolist(),
        image_std=(sam.pixel_std.flatten() / 255).tolist(),
    )
    return transformers.SamProcessor(image_processor=image_processor)


def save_as_transformers(checkpoint_path: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Write a SAM state-dict ``.pth`` (``vit_b`` / ``vit_l`` / ``vit_h`` or the built-in tiny
    one, recognised from the encoder's width) into ``folder`` as a transformers ``SamModel`` +
    ``SamProcessor`` (see :func:`sam_processor_for`); returns ``folder``.

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: not a SAM state dict, or keys that do not fit its architecture.
    """
    import warnings

    from transformers import SamModel

    from sdsam_nb.models.sam import sam_builders, sam_type_of

    path = Path(checkpoint_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint_path={str(checkpoint_path)!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and format errors all mean "not a state dict"
        raise ValueError(f"{str(path)!r} is not a SAM state dict ({exc})") from None
    model_type = sam_type_of(state) if isinstance(state, dict) else None
    if model_type is None:
        raise ValueError(f"{str(path)!r} is not a SAM state dict of a known architecture")
    with warnings.catch_warnings(), torch.device("meta"):  # the structure only, no weights
        warnings.simplefilter("ignore")
        sam = sam_builders()[model_type](checkpoint=None)
    config = sam_config_for(sam)
    weights = sam_to_transformers(state, config)
    with torch.device("meta"):
        model = SamModel(config)
    model.load_state_dict(weights, strict=True, assign=True)
    model.tie_weights()
    folder = Path(folder)
    model.eval().save_pretrained(folder)
    # Sam builds pixel_mean / pixel_std with torch.Tensor(list), which stays on the CPU with
    # its values even under the meta device; they are not in the state dict.
    sam_processor_for(sam).save_pretrained(folder)
    return folder
