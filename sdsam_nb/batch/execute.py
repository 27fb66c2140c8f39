"""One batch item's steps, run in its run folder as its notebooks' cells run them.

Each notebook of the item's :class:`~sdsam_nb.batch.plan.Plan` is one execution in
``run.json``, as if ``sdsam-nb run`` had chained the notebooks: its parameters recorded by
:meth:`Run.log_params <sdsam_nb.runs.Run.log_params>`, then the same :mod:`sdsam_nb.steps`
calls as the notebook's cells, in the same order, then ``finish()``. All of the item's
executions are recorded (``"running"``) before the first step runs, so the run's
:attr:`~sdsam_nb.runs.Run.status` reads ``"done"`` only once the last one has finished: a
batch stopped at any moment leaves a run that resume recognises as unfinished.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from .. import runs, steps
from ..images import check_subject, to_mask, to_rgb
from ..models import load_sam, sha256_file
from ..runs import Run
from .plan import CLICK, GENERATE, Plan


def one_line(exc: BaseException) -> str:
    """``"TypeName: message"``, first line only (what ``run.json`` and the index hold)."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def execute(run: Run, plan: Plan, before_done: Callable[[], None] | None = None) -> None:
    """Run ``plan``'s notebooks' steps in ``run`` (a new run folder).

    ``before_done`` is called after the last step, before the last execution is marked
    done: whatever it records is in ``run.json`` once the run reads ``"done"``, and nothing
    changes it after.

    Raises:
        Exception: the first step's error, after its execution (and every later one, as
            not run) is marked ``"failed"`` with the error line.
    """
    params = plan.params_for(run.path)
    handles = {}
    for name, p in params.items():  # one handle per notebook, as each notebook has its own
        handles[name] = Run(run.path)
        handles[name].log_params(name, p)
    names = list(handles)
    for i, name in enumerate(names):
        try:
            STEPS[name](handles[name], params[name], plan)
        except BaseException as exc:
            handles[name].fail(one_line(exc))
            for later in names[i + 1 :]:
                handles[later].fail(f"not run: {name} failed")
            raise
        if i == len(names) - 1 and before_done is not None:
            before_done()
        handles[name].finish()


def _generate_subject(run: Run, p: dict, plan: Plan) -> None:
    pipe = steps.stable_diffusion(run, p)
    variations, subject = steps.subject_variations(run, pipe, p)
    steps.save_subject(run, variations, subject)


def _click_to_mask(run: Run, p: dict, plan: Plan) -> None:
    subject = _subject(run, p)
    _predictor, segmenter = steps.segmenter(run, subject, p)
    mask, overlay = steps.clean_mask(segmenter.mask, segmenter, subject, p)
    steps.save_mask(run, mask, overlay, segmenter)


def _inpaint_background(run: Run, p: dict, plan: Plan) -> None:
    subject = _subject(run, p)
    mask = _mask(run, p, plan, subject)
    pipe = steps.stable_diffusion(run, p)
    inpainted = steps.inpaint(run, pipe, subject, mask, p)
    # notebook 03's rule: the run's clicks made the run's mask, not another picture's or mask's
    clicks = None if (p["image_path"] or p["mask_path"]) else run.record.get("clicks")
    steps.score(run, subject, inpainted, mask, p, clicks=clicks)
    reframed = steps.reframe(run, pipe, subject, mask, p)
    steps.save_inpainted(run, inpainted, reframed)


def _composite_background(run: Run, p: dict, plan: Plan) -> None:
    subject = _subject(run, p)
    mask = _mask(run, p, plan, subject)
    pipe = steps.stable_diffusion(run, p)
    backgrounds = steps.backgrounds(run, pipe, subject, p)
    composed = steps.composites(run, subject, mask, backgrounds, p)
    steps.save_composites(run, backgrounds, composed)


STEPS = {
    GENERATE: _generate_subject,
    CLICK: _click_to_mask,
    "03_inpaint_background": _inpaint_background,
    "04_composite_background": _composite_background,
}


def _subject(run: Run, p: dict) -> Image.Image:
    """The notebooks' ``runs.load_subject``, except that the item's picture is copied into the
    run once (``input.png``), not once per notebook: the same pixels either way."""
    if p["image_path"] and run.file("input") is not None:
        return to_rgb(p["image_path"], name="image_path")
    return runs.load_subject(run, p["image_path"])


def _mask(run: Run, p: dict, plan: Plan, subject: Image.Image) -> np.ndarray:
    """The notebooks' ``runs.load_subject_mask``; a mask the batch makes (``mask: auto``) or
    is given as a file is first kept in the run as ``mask.png``, which ``mask_path`` names."""
    if plan.mask == "auto":
        from ..segment import auto_subject_mask

        with run.step("load_sam"):
            predictor = load_sam(plan.sam_model)
        run.log_model("sam", runs.model_info(predictor, plan.sam_model))
        with run.step("auto_mask"):
            result = auto_subject_mask(predictor, subject, **plan.auto_mask)
        run.set("auto_mask", result.to_dict())
        if not result.found:
            raise ValueError(f"mask: auto: {result.message}")
        runs.record_mask_made(run, "automatic")
        _keep(run, result.mask, p)
    elif plan.mask is not None:
        with Image.open(plan.mask) as opened:
            mask = to_mask(opened, subject.size, name="mask")
        check_subject(mask, name="mask")
        runs.record_mask_made(run, "file", path=str(plan.mask), sha256=sha256_file(plan.mask))
        _keep(run, mask, p)
    return runs.load_subject_mask(run, subject, p["mask_path"])


def _keep(run: Run, mask: np.ndarray, p: dict) -> None:
    path = run.save_mask("mask", mask)
    if str(path) != p["mask_path"]:  # a new run folder: the first mask is mask.png
        raise RuntimeError(f"the batch's mask went to {path}, not to mask_path {p['mask_path']}")
