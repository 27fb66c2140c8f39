"""Samplers: the names :func:`sdsam_nb.load_sd` and the background functions accept, and
:func:`make_scheduler`, which builds one from a model's own scheduler config.
"""

from __future__ import annotations

from .cache import provenance

# name -> (diffusers scheduler class, config overrides); "lcm", "tcd" and "ddim_trailing" are
# the samplers of load_sd's few-step adapters (fast.FAST), as their model cards set them
_CLASSES = {
    "pndm": ("PNDMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {}),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
    "ddim_trailing": ("DDIMScheduler", {"timestep_spacing": "trailing"}),
}

SCHEDULERS = tuple(_CLASSES)
"""Sampler names for :func:`load_sd` and the ``scheduler=`` of the background functions.
``"dpm++"`` is DPM-Solver++ (multistep), the default; ``"pndm"`` is SD v1-4's own;
``"lcm"``, ``"tcd"`` and ``"ddim_trailing"`` are what ``load_sd(fast=...)`` samples with."""


DEFAULT_SCHEDULER = "dpm++"


def make_scheduler(scheduler, pipe):
    """A new scheduler for ``pipe``: a name from :data:`SCHEDULERS`, built from the config of
    the scheduler the model came with (so it keeps the model's beta schedule and timestep
    spacing), or a scheduler instance, returned as is. ``pipe`` is not changed."""
    import diffusers

    if isinstance(scheduler, diffusers.SchedulerMixin):
        return scheduler
    if not isinstance(scheduler, str) or scheduler not in _CLASSES:
        raise ValueError(
            f"scheduler={scheduler!r} is not one of {list(SCHEDULERS)}, a diffusers scheduler "
            "instance or None (the pipeline's own)"
        )
    name, extra = _CLASSES[scheduler]
    own = provenance(pipe).get("own_scheduler") or pipe.scheduler
    return getattr(diffusers, name).from_config(own.config, **extra)
