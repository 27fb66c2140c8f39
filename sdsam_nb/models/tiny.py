"""Built-in tiny models: the real diffusers / segment-anything classes with small configs.

They exist so that tests and the offline demo run the *same* loading code as real weights:
each is built once, deterministically (fixed seed, no network), saved in the standard format
(a diffusers pipeline folder; a SAM state-dict ``.pth``) and then loaded back by
:func:`sdsam_nb.load_sd` / :func:`sdsam_nb.load_sam` exactly like a downloaded model.
Their weights are random: pictures from them are noise. Never judge image quality with them.

The SD recipe keeps the real v1 geometry where it matters: a VAE that downsamples 8x
(latents are ``H/8 x W/8``, 4 channels), a UNet with cross-attention on the text encoder's
states, a CLIP tokenizer (byte-level BPE whose vocabulary this module writes), and the
v1-4 PNDM scheduler config. The SAM recipe is a 256-px ``ImageEncoderViT`` with the real
prompt encoder and mask decoder, so ``SamPredictor`` works unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from functools import partial
from pathlib import Path

import torch

SD_RECIPE = "sd-v1-tiny-r1"
SD_INPAINTING_RECIPE = "sd-v1-inpainting-tiny-r1"
SAM_RECIPE = "sam-tiny-r1"
SEED = 0


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-to-symbol table: printable bytes map to themselves, others above 255."""
    keep = list(range(ord("!"), ord("~") + 1))
    keep += list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


# A few merges so that common words in our prompts become single tokens, like real CLIP.
_MERGES = ["t h", "th e</w>", "a n", "an d</w>", "o n</w>", "i n", "e r</w>", "o f</w>"]


def write_clip_vocab(folder: Path) -> tuple[Path, Path]:
    """Write a byte-level CLIP ``vocab.json`` and ``merges.txt`` into ``folder``."""
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(m.split()) for m in _MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n", encoding="utf-8")
    return vocab_file, merges_file


def _build_sd_pipeline():
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        sample_size=64,  # 64 latents = 512 px, the v1 default size
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 16, 32, 32),  # four levels: 8x downsampling, as in SD v1
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=512,
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_clip_vocab(Path(tmp))
        # from_pretrained reads vocab.json + merges.txt the same way in transformers 4 and 5
        tokenizer = CLIPTokenizer.from_pretrained(tmp, model_max_length=77)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=1000,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = PNDMScheduler(  # the scheduler config of CompVis/stable-diffusion-v1-4
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


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


def _publish(tmp: Path, final: Path) -> Path:
    """Move a finished build into place; if another process won the race, keep theirs."""
    try:
        os.replace(tmp, final) if tmp.is_file() else tmp.rename(final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    return final


def build_folder(final: Path, marker: str, write) -> Path:
    """``final``, written once: unless ``final / marker`` exists, ``write(tmp)`` fills a
    temporary folder beside it (torch's RNG seeded with :data:`SEED` and restored after)
    and the folder is moved into place (:func:`_publish`: another process may win the race)."""
    final = Path(final)
    if (final / marker).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        write(tmp)
    return _publish(tmp, final)


def save_model_and_processor(build):
    """A ``write(folder)`` for :func:`build_folder` that saves ``build()``'s
    ``(processor, model)`` as ``save_pretrained`` does for a real checkpoint."""

    def write(folder: Path) -> None:
        processor, model = build()
        model.save_pretrained(folder, safe_serialization=True)
        processor.save_pretrained(folder)

    return write


def sd_folder(root: Path) -> Path:
    """Return the tiny SD pipeline folder under ``root``, building it on first use (~1 s)."""
    return build_folder(
        Path(root) / SD_RECIPE,
        "model_index.json",
        lambda tmp: _build_sd_pipeline().save_pretrained(tmp, safe_serialization=True),
    )


def _build_sd_inpainting_pipeline(text_to_image):
    """The tiny dedicated inpainting checkpoint: a 9-channel UNet (latents, mask, masked
    picture) of its own, with ``text_to_image``'s text encoder, tokenizer and VAE, as the
    real SD 1.5 inpainting checkpoint shares SD v1's CLIP text encoder and VAE weights."""
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    torch.manual_seed(SEED + 1)
    unet = UNet2DConditionModel.from_config({**dict(text_to_image.unet.config), "in_channels": 9})
    return StableDiffusionInpaintPipeline(
        vae=text_to_image.vae,
        text_encoder=text_to_image.text_encoder,
        tokenizer=text_to_image.tokenizer,
        unet=unet,
        scheduler=text_to_image.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def sd_inpainting_folder(root: Path) -> Path:
    """Return the tiny inpainting checkpoint's folder under ``root`` (``"tiny-inpainting"``),
    building it on first use from the tiny SD folder's own components."""
    from diffusers import StableDiffusionPipeline

    final = Path(root) / SD_INPAINTING_RECIPE
    if (final / "model_index.json").is_file():
        return final
    from .cache import loading_bars

    with loading_bars(False):
        text_to_image = StableDiffusionPipeline.from_pretrained(sd_folder(root))
    return build_folder(
        final,
        "model_index.json",
        lambda tmp: _build_sd_inpainting_pipeline(text_to_image).save_pretrained(
            tmp, safe_serialization=True
        ),
    )


def sam_checkpoint(root: Path) -> Path:
    """Return the tiny SAM state-dict file under ``root``, building it on first use."""
    final = Path(root) / f"{SAM_RECIPE}.pth"
    if final.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".build-", suffix=".pth", dir=final.parent)
    os.close(fd)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        torch.save(build_sam_model().state_dict(), name)
    return _publish(Path(name), final)


# --------------------------------------------------------------------------- Grounding DINO
# The tiny Grounding DINO keeps the real architecture (Swin backbone, BERT text encoder,
# deformable encoder/decoder with text-image fusion, two-stage query selection) with small
# widths, and a BERT WordPiece vocabulary this module writes. Grounding DINO hard-codes the
# bert-base-uncased ids of [CLS] (101), [SEP] (102), "." (1012) and "?" (1029) to split the
# prompt into phrases, so the vocabulary puts those tokens at the same ids.

GD_RECIPE = "grounding-dino-tiny-r2"
_BERT_WORDS = [
    "the", "a", "an", "and", "of", "on", "in", "with",
    "red", "green", "blue", "white", "black", "yellow",
    "shoes", "shoe", "dress", "shirt", "hat", "bag", "cat", "dog", "person", "car",
    "cup", "bottle", "chair", "disc", "ball", "flower", "subject", "object",
]  # fmt: skip


def bert_vocab_tokens() -> list[str]:
    """The tiny BERT vocabulary, one token per id, laid out like bert-base-uncased.

    ``[PAD]`` 0, ``[UNK]`` 100, ``[CLS]`` 101, ``[SEP]`` 102, ``[MASK]`` 103, ``[unusedN]``
    fillers, then from id 999 the printable ASCII punctuation and digits (``"."`` at 1012,
    ``"?"`` at 1029), lowercase letters, ``##``-letters (so every lowercase word tokenizes)
    and a few common words.
    """
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)]
    tokens += ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [f"[unused{i}]" for i in range(99, 99 + 999 - len(tokens))]
    tokens += [chr(c) for c in range(ord("!"), ord("@") + 1)]  # ids 999..1030
    tokens += [chr(c) for c in range(ord("["), ord("~") + 1)]  # [ \ ] ^ _ ` a..z { | } ~
    tokens += ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += _BERT_WORDS
    assert tokens[101:103] == ["[CLS]", "[SEP]"] and tokens[1012] == "." and tokens[1029] == "?"
    return tokens


def write_bert_vocab(folder: Path) -> Path:
    """Write the tiny BERT WordPiece ``vocab.txt`` (:func:`bert_vocab_tokens`) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(bert_vocab_tokens()) + "\n", encoding="utf-8")
    return vocab_file


def _build_grounding_dino():
    """The tiny Grounding DINO ``(processor, model)``, random weights (seed the caller's RNG)."""
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    max_text_len = 64
    with tempfile.TemporaryDirectory() as tmp:
        write_bert_vocab(Path(tmp))
        # from_pretrained reads vocab.txt the same way in transformers 4 and 5 (the 5.x
        # constructor no longer takes vocab_file).
        tokenizer = BertTokenizer.from_pretrained(
            tmp, do_lower_case=True, model_max_length=max_text_len
        )
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            image_size=64,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 2, 2],
            window_size=4,
            out_features=["stage2", "stage3", "stage4"],  # as the real model: 3 levels + 1 conv
        ),
        text_config=BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=max_text_len,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,  # the box head is shared across decoder layers: needs at least two
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_n_points=2,
        decoder_n_points=2,
        num_queries=10,
        max_text_len=max_text_len,
    )
    model = GroundingDinoForObjectDetection(config).eval()
    # Pictures are resized to a short side of 128 px: the backbone divides by 32 and the extra
    # level by 2 more, so the coarsest map is at least 2x2 (GroupNorm fails on a 1x1 map: a
    # short side of 64 broke every square picture).
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 256})
    processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return processor, model


def grounding_dino_folder(root: Path) -> Path:
    """Return the tiny Grounding DINO folder under ``root``, building it on first use (<1 s).

    The folder holds what ``save_pretrained`` writes for a real checkpoint (config, weights,
    processor, tokenizer), so ``AutoProcessor`` / ``AutoModelForZeroShotObjectDetection``
    ``.from_pretrained(folder)`` load it like a downloaded model.
    """
    return build_folder(
        Path(root) / GD_RECIPE, "config.json", save_model_and_processor(_build_grounding_dino)
    )
