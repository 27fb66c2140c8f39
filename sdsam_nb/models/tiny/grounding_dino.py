"""The tiny Grounding DINO (``load_grounding_dino("tiny")``).

It keeps the real architecture (Swin backbone, BERT text encoder, deformable encoder/decoder
with text-image fusion, two-stage query selection) with small widths, and a BERT WordPiece
vocabulary this module writes. Grounding DINO hard-codes the bert-base-uncased ids of [CLS]
(101), [SEP] (102), "." (1012) and "?" (1029) to split the prompt into phrases, so the
vocabulary puts those tokens at the same ids.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .build import build_folder, saved

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
        (Path(tmp) / "vocab.txt").write_text(
            "\n".join(bert_vocab_tokens()) + "\n", encoding="utf-8"
        )
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
    # a short side of 128 px: the backbone divides by 32 and the extra level by 2 more, so the
    # coarsest map is at least 2x2 (GroupNorm fails on a 1x1 map)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 256})
    processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return processor, model


def grounding_dino_folder(root: Path) -> Path:
    """The tiny Grounding DINO folder under ``root`` (``save_pretrained``'s model, processor
    and tokenizer), built on first use (<1 s)."""
    return build_folder(Path(root) / GD_RECIPE, "config.json", saved(_build_grounding_dino))
