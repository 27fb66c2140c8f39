"""Background methods compared: object expansion of own weights, a dedicated inpainting
checkpoint and the salient-object-aware ControlNet on the same subjects, seeds and prompts (the
comparison of *Salient Object-Aware Background Generation using Text-Guided Diffusion Models*).
It needs real weights, so it runs only on a CUDA GPU whose Hugging Face cache holds (or can
download) them: :data:`COMMAND`. ``--quick`` runs the same code on the tiny models.
"""

from __future__ import annotations

import os

import numpy as np

from .harness import Context, Section

NAME = "background_methods"
TITLE = "Background methods: object expansion (own weights, dedicated inpainting, salient)"
COMMAND = "HF_HUB_OFFLINE=0 python -m benchmarks --device cuda --only background_methods"
PROMPTS = (
    "a sunlit living room with wooden floor and plants, photo",
    "a beach at sunset, photo",
    "a marble kitchen counter, studio lighting, photo",
)
SUBJECTS = (
    "a red leather armchair, studio photo, plain background",
    "a ceramic teapot, product photo, plain background",
    "a white sneaker, product photo, plain background",
)


def _subjects(pipe, predictor, quick: bool) -> list[tuple]:
    from PIL import Image

    import sdsam_nb
    from sdsam_nb import runs

    sample = Image.open(runs.sample_subject()).convert("RGB")
    mask = np.asarray(Image.open(runs.sample_mask())) > 127
    out = [("sample", sample, mask)]
    if quick:
        return out
    for k, prompt in enumerate(SUBJECTS):
        picture = sdsam_nb.generate(pipe, prompt, seed=k, steps=25)[0]
        found = sdsam_nb.auto_subject_mask(predictor, picture)
        if found.found:
            out.append((prompt, picture, found.mask))
    return out


def _methods(quick: bool) -> list[str]:
    import sdsam_nb

    return ["own", "tiny-inpainting" if quick else sdsam_nb.INPAINTING_SD, "salient"]


def run(ctx: Context) -> Section:
    sec = Section(NAME, TITLE)
    if not ctx.quick and not ctx.cuda:
        return sec.skip(f"pending a GPU run with real weights: `{COMMAND}`")
    import sdsam_nb

    try:
        pipe = sdsam_nb.load_sd(
            "tiny" if ctx.quick else sdsam_nb.DEFAULT_SD, device=ctx.device, progress=False
        )
        predictor = sdsam_nb.load_sam("tiny" if ctx.quick else "vit_b", device=ctx.device)
    except sdsam_nb.ModelUnavailableError as exc:
        return sec.skip(f"pending a GPU run with real weights ({exc}); `{COMMAND}`")
    steps, size = (2, 128) if ctx.quick else (25, 512)
    seeds = (0,) if ctx.quick else (0, 1, 2, 3)
    prompts = PROMPTS[:1] if ctx.quick else PROMPTS
    subjects = _subjects(pipe, predictor, ctx.quick)
    per_method: dict[str, dict] = {}
    for method in _methods(ctx.quick):
        scores, seconds, pictures = [], {}, 0
        kw = {"seed": seeds[0], "n": len(seeds), "steps": steps, "size": size, "model": method}
        for _, picture, mask in subjects:
            for prompt in prompts:
                with ctx.timing(seconds, method):
                    results = sdsam_nb.inpaint_background(pipe, picture, mask, prompt, **kw)
                pictures += len(results)
                scores += sdsam_nb.score_results(picture, results, mask, predictor=predictor)
        summary = sdsam_nb.expansion_by_method(scores)
        name = next(iter(summary))
        grown = [s["object_expansion"] - s["object_expansion_original"] for s in scores]
        per_method[name] = {
            "pictures": pictures,
            "expansion": float(np.mean(grown)),
            "expansion_worst": float(np.max(grown)),
            "fidelity_max_abs": float(max(s["max_abs"] for s in scores)),
            "seconds_per_picture": seconds[method] / pictures,
        }
        ctx.log(f"{NAME}: {name}: {per_method[name]}")
    sec.extra.update(methods=per_method, subjects=[s[0] for s in subjects], prompts=prompts)
    for name, r in per_method.items():
        sec.add(f"{name}: object expansion, mean (model's part)", r["expansion"])
        sec.add(f"{name}: object expansion, worst picture", r["expansion_worst"])
        sec.add(f"{name}: subject fidelity, max abs difference", r["fidelity_max_abs"])
        sec.add(f"{name}: time per picture", r["seconds_per_picture"], "s")
    own = per_method.get("own", {}).get("expansion")
    for name, r in per_method.items():
        if name != "own" and own is not None and r["expansion"] > 0:
            sec.add(f"object expansion own / {name}", own / r["expansion"], "x")
    sec.notes.append(
        ("quick: tiny models, numbers mean nothing; " if ctx.quick else "")
        + f"{len(subjects)} subjects x {len(prompts)} prompts x {len(seeds)} seeds per method, "
        f"{steps} steps at long side {size}; object expansion = area the re-segmented subject "
        "grew into / its area, minus the same measure on the unedited picture"
    )
    if os.environ.get("HF_HUB_OFFLINE") == "1" and not ctx.quick:
        sec.notes.append("offline: the weights came from the Hugging Face cache")
    return sec
