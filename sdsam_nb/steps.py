"""The notebooks' steps, one function each, so that every notebook is a parameters cell, one
setup call (:func:`sdsam_nb.start`) and one call per step, and ``00_walkthrough`` is the
same calls as 01-04 in one place.

Each step takes the run (:class:`sdsam_nb.runs.Run`) and the checked parameters ``p`` that
:func:`sdsam_nb.start` returned, times itself in ``run.json`` (``steps``) and records the
models it loads; the ``save_*`` steps write the pictures into the run folder. The steps that
generate pictures or embed them use the disk caches unless ``p["cache"]`` is False, and their
entry under ``steps`` says what came from the cache (``"cache"``: hits, misses, and each
lookup's key; see :mod:`sdsam_nb.caching`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from . import caching
from . import masks as mask_tools
from .background import (
    composite,
    generate,
    generate_background,
    inpaint_background,
    score_results,
)
from .background import reframe as reframe_subject
from .background.edge import DEFAULT_BAND, fit_band, subject_alpha
from .background.edge import edge_closeups as edge_views
from .images import check_subject
from .models import load_sam, load_sd
from .runs import Run, load_subject, model_info, record_mask_made
from .segment.clicks import ClickSegmenter
from .segment.text import load_text_detector


def _cache(p: dict) -> bool:
    """The ``cache`` parameter; True for parameters that predate it (a batch item's)."""
    return p.get("cache", True)


def stable_diffusion(run: Run, p: dict):
    """Load ``p["sd_model"]`` with ``p["scheduler"]`` (once per process) and record it."""
    with run.step("load_sd"):
        pipe = load_sd(p["sd_model"], scheduler=p["scheduler"], progress=p["progress"])
    run.log_model("sd", model_info(pipe, p["sd_model"]))
    return pipe


def subject_variations(run: Run, pipe, p: dict) -> tuple[list[Image.Image], Image.Image]:
    """``(variations, subject)``: the photo at ``p["image_path"]`` (one variation), or
    ``p["n_variations"]`` generated from ``p["subject_prompt"]`` (seed ``seed + i``), of
    which variation ``p["pick"]`` is the subject.

    Raises:
        ValueError: ``pick`` not below ``n_variations``.
    """
    if p.get("image_path"):
        image = load_subject(run, p["image_path"])
        return [image], image
    if p["pick"] >= p["n_variations"]:
        raise ValueError(
            f"parameter pick must be below n_variations={p['n_variations']}, got {p['pick']}"
        )
    with run.step("generate_subject") as entry, caching.recorded(entry):
        variations = generate(
            pipe,
            p["subject_prompt"],
            negative_prompt=p["subject_negative"],
            seed=p["seed"],
            n=p["n_variations"],
            steps=p["steps"],
            guidance=p["guidance"],
            width=p["width"],
            height=p["height"],
            cache=_cache(p),
        )
    return variations, variations[p["pick"]]


def segmenter(run: Run, subject: Image.Image, p: dict):
    """``(predictor, segmenter)``: SAM ``p["sam_model"]`` loaded and recorded, the picture
    embedded once, and the prompts replayed: a recorded ``clicks`` history exactly, else a
    ``text_prompt`` (``detector_model`` of ``text_method``, Grounding DINO or SAM 3, finds the
    box, best score first), else ``points`` and ``box``; ``candidate`` picks among SAM's
    candidates."""
    with run.step("load_sam"):
        predictor = load_sam(p["sam_model"])
    run.log_model("sam", model_info(predictor, p["sam_model"]))
    cache = _cache(p)
    with run.step("embed_and_replay_clicks") as entry, caching.recorded(entry):
        if p.get("clicks"):
            seg = ClickSegmenter.from_dict(predictor, subject, p["clicks"], cache=cache)
        elif p.get("text_prompt"):
            seg = ClickSegmenter.from_prompts(
                predictor,
                subject,
                text=p["text_prompt"],
                detector=load_text_detector(
                    p.get("text_method", "grounding_dino"), p["detector_model"]
                ),
                box_threshold=p["box_threshold"],
                text_threshold=p["text_threshold"],
                chosen=p["candidate"],
                cache=cache,
            )
        else:
            seg = ClickSegmenter.from_prompts(
                predictor,
                subject,
                points=p["points"],
                box=p["box"],
                chosen=p["candidate"],
                cache=cache,
            )
    return predictor, seg


def clean_mask(
    mask: np.ndarray, seg: ClickSegmenter, subject: Image.Image, p: dict
) -> tuple[np.ndarray, Image.Image]:
    """``(mask, overlay)``: holes filled (``fill_holes``), islands under ``min_island`` px
    dropped, checked to be neither empty nor full; the overlay shows the prompts.

    Raises:
        ValueError: the mask is empty or covers the whole picture.
    """
    if p["fill_holes"]:
        mask = mask_tools.fill_holes(mask)
    if p["min_island"]:
        mask = mask_tools.remove_small(mask, p["min_island"])
    check_subject(mask, name="mask (from your clicks)")
    overlay = mask_tools.overlay(subject, mask, points=seg.points, labels=seg.labels, box=seg.box)
    return mask, overlay


def inpaint(run: Run, pipe, subject: Image.Image, mask: np.ndarray, p: dict):
    """``n_variations`` pictures with the background around ``mask`` repainted by the method
    ``inpaint_model`` names (recorded as ``inpaint_method``)."""
    with run.step("inpaint"):
        results = inpaint_background(
            pipe,
            subject,
            mask,
            p["background_prompt"],
            negative_prompt=p["background_negative"],
            seed=p["seed"],
            n=p["n_variations"],
            steps=p["steps"],
            guidance=p["guidance"],
            strength=p["strength"],
            size=p["size"],
            grow=p["grow"],
            feather=p["feather"],
            keep_subject=p["keep_subject"],
            model=p["inpaint_model"],
            edge=p.get("edge", "feather"),
        )
    run.set("inpaint_method", results[0].info["method"])  # what "auto" stood for, too
    return results


def reframe(run: Run, pipe, subject: Image.Image, mask: np.ndarray, p: dict):
    """The subject on a new canvas (``reframe_size`` or ``reframe_aspect``, at
    ``reframe_scale``, placed at ``reframe_position``), the rest painted from
    ``background_prompt`` by ``inpaint_model``'s method; ``[]`` when neither size nor aspect
    is set."""
    if not p.get("reframe_size") and not p.get("reframe_aspect"):
        return []
    with run.step("reframe"):
        results = reframe_subject(
            pipe,
            subject,
            mask,
            p["background_prompt"],
            size=p["reframe_size"] or None,
            aspect=None if p["reframe_size"] else p["reframe_aspect"],
            scale=p["reframe_scale"],
            position=p["reframe_position"],
            negative_prompt=p["background_negative"],
            seed=p["seed"],
            n=p["n_variations"],
            steps=p["steps"],
            guidance=p["guidance"],
            strength=p["strength"],
            work_size=p["size"],
            grow=p["grow"],
            feather=p["feather"],
            keep_subject=p["keep_subject"],
            model=p["inpaint_model"],
            edge=p.get("edge", "feather"),
        )
    run.set("reframe", results[0].info["reframe"])
    return results


def edge_closeups(subject: Image.Image, mask: np.ndarray, background, p: dict) -> list:
    """Two close-ups of the softest stretch of the subject's edge pasted on ``background``
    (a picture of the subject's size, or inpainted variations: the model's first picture
    before the paste-back): feathered by ``feather`` px, and matted."""
    if isinstance(background, list):
        painted = getattr(background, "painted", None)
        background = painted[0] if painted else background[0]
    return edge_views(subject, mask, background, feather=p["feather"])


def _kept(p: dict, mask: np.ndarray) -> float:
    """How far inside the mask the subject's pixels are kept exactly: the feather's width,
    or, for a matted edge, its band (where the matte's alpha is exactly 1)."""
    fitted = fit_band(mask, DEFAULT_BAND) if p.get("edge") == "matte" else None
    return p["feather"] if fitted is None else fitted


def score(
    run: Run, subject, inpainted, mask, p: dict, *, predictor=None, clicks=None
) -> list[dict]:
    """Fidelity and object expansion of each inpainted picture, recorded as
    ``inpaint_scores``. ``clicks``: the segmenter (its embedding is reused) or a click
    record; ``None`` re-segments with the mask's box. ``predictor`` defaults to SAM
    ``p["sam_model"]``."""
    with run.step("score") as entry, caching.recorded(entry):
        scores = score_results(
            subject,
            inpainted,
            mask,
            predictor=predictor if predictor is not None else load_sam(p["sam_model"]),
            clicks=clicks,
            shrink=_kept(p, mask),
            cache=_cache(p),
        )
    run.set("inpaint_scores", scores)
    return scores


def backgrounds(run: Run, pipe, subject: Image.Image, p: dict):
    """``n_variations`` backgrounds at ``subject``'s aspect ratio and size."""
    with run.step("generate_backgrounds") as entry, caching.recorded(entry):
        return generate_background(
            pipe,
            p["background_prompt"],
            like=subject,
            negative_prompt=p["background_negative"],
            seed=p["seed"],
            n=p["n_variations"],
            steps=p["steps"],
            guidance=p["guidance"],
            size=p["size"],
            cache=_cache(p),
        )


def composites(run: Run, subject: Image.Image, mask: np.ndarray, bgs, p: dict) -> list:
    """The subject pasted onto each background (``scale``, ``position``, ``feather``,
    ``harmonize``, ``edge``, ``shadow``); a matte is estimated once for all of them."""
    with run.step("composite"):
        edge, picture = p.get("edge", "feather"), subject
        if edge == "matte":  # the matted alpha and its decontaminated colours, once
            alpha, colours = subject_alpha(subject, mask, "matte", feather=p["feather"])
            edge, picture = alpha, Image.fromarray(colours, mode="RGB")
        return [
            composite(
                picture,
                mask,
                bg,
                scale=p["scale"],
                position=p["position"],
                feather=p["feather"],
                harmonize=p["harmonize"],
                edge=edge,
                shadow=p.get("shadow", False),
            )
            for bg in bgs
        ]


def save_subject(run: Run, variations, subject: Image.Image) -> None:
    for i, image in enumerate(variations):
        run.save_image(f"subject-variation-{i}", image)
    run.save_image("subject", subject)


def save_mask(run: Run, mask: np.ndarray, overlay: Image.Image, seg: ClickSegmenter) -> None:
    """The mask, its overlay and the click history (enough to replay)."""
    clicks = seg.to_dict()
    run.save_mask("mask", mask)
    run.save_image("mask-overlay", overlay)
    run.set("clicks", clicks)
    texts = [a["text"] for a in clicks["actions"] if a.get("op") == "text"]
    if texts:
        record_mask_made(run, "text", text_prompt=texts[-1])
    else:
        record_mask_made(run, "clicks")


def save_inpainted(run: Run, inpainted, reframed=()) -> None:
    for i, image in enumerate(inpainted):
        run.save_image(f"inpaint-{i}", image)
    for i, image in enumerate(reframed):
        run.save_image(f"reframe-{i}", image)


def save_composites(run: Run, bgs, composed) -> None:
    for i, (bg, image) in enumerate(zip(bgs, composed, strict=True)):
        run.save_image(f"background-{i}", bg)
        run.save_image(f"composite-{i}", image)
