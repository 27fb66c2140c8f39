"""The few-step mode of :func:`sdsam_nb.load_sd` (``fast=...``): distilled LoRAs for SD 1.x
that sample in 4 to 8 steps (:data:`FAST`), the adapter file behind a name (:class:`FastAdapter`:
read, checked against the model, fused), and the steps, guidance and call arguments a pipeline
with one needs (:func:`sampling`). Adding an adapter is one entry in :data:`FAST`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .cache import TINY, cache_dir, hub_file, provenance, sha256_file
from .schedulers import DEFAULT_SCHEDULER
from .tiny import lora_folder

DEFAULT_STEPS = 25
"""Denoising steps when a call gives none and the pipeline has no few-step adapter."""
DEFAULT_GUIDANCE = 7.5
"""Classifier-free guidance scale when a call gives none and the pipeline has no adapter."""


@dataclass(frozen=True)
class FastMode:
    """A few-step LoRA for SD 1.x and how its model card samples with it.

    ``adapter``: the hub repo (or a local folder); ``weight_name``: the file in it;
    ``revision``: the commit pinned (the hub file is read at that commit); ``scheduler``: a
    sampler name (:data:`~sdsam_nb.models.schedulers.SCHEDULERS`); ``steps`` / ``guidance``:
    the defaults of a call that gives none; ``call``: further pipeline-call arguments it
    needs, as ``(name, value)`` pairs; ``card``: where it is described.
    """

    adapter: str
    weight_name: str
    revision: str
    scheduler: str
    steps: int
    guidance: float
    call: tuple[tuple[str, object], ...] = ()
    card: str = ""


FAST: dict[str, FastMode] = {
    # "2 - 8 steps"; "disable guidance_scale or use values between 1.0 and 2.0"
    "lcm": FastMode(
        adapter="latent-consistency/lcm-lora-sdv1-5",
        weight_name="pytorch_lora_weights.safetensors",
        revision="cf2fced511dbe7e26c8d1d397e728fbab875db4b",
        scheduler="lcm",
        steps=4,
        guidance=1.0,
        card="https://huggingface.co/latent-consistency/lcm-lora-sdv1-5",
    ),
    # 4 steps, guidance 0, eta (the paper's gamma) 0.3: "A value of 0.3 often yields good
    # results" (diffusers' pipelines pass eta=0 unless told, so it is passed)
    "tcd": FastMode(
        adapter="h1t/TCD-SD15-LoRA",
        weight_name="pytorch_lora_weights.safetensors",
        revision="449a99f6bbded2bdbbc66386b2a4fbf8db8d3807",
        scheduler="tcd",
        steps=4,
        guidance=0.0,
        call=(("eta", 0.3),),
        card="https://huggingface.co/h1t/TCD-SD15-LoRA",
    ),
    # the N-step SD1.5 LoRAs: DDIM with "trailing" timestep spacing, N steps, guidance 0
    "hyper-sd": FastMode(
        adapter="ByteDance/Hyper-SD",
        weight_name="Hyper-SD15-8steps-lora.safetensors",
        revision="d0e3aae44029cca2cd1ba683484490c27cdd75a1",
        scheduler="ddim_trailing",
        steps=8,
        guidance=0.0,
        card="https://huggingface.co/ByteDance/Hyper-SD",
    ),
}
"""``load_sd(fast=NAME)``: a few-step adapter for SD 1.x, fused into a UNet of the pipeline's
own (see :func:`sdsam_nb.load_sd`). Values from each adapter's model card (``card``)."""


def fast_mode(fast: str | None, scheduler: str | None = DEFAULT_SCHEDULER) -> FastMode | None:
    """The :data:`FAST` entry ``fast`` names (``None``: off), checked with the ``scheduler``
    it is loaded with.

    Raises:
        ValueError: ``fast`` is not a name from :data:`FAST` or ``None``, or ``scheduler`` is
            neither the default nor the adapter's own sampler.
    """
    if fast is None:
        return None
    if not isinstance(fast, str) or fast not in FAST:
        raise ValueError(f"fast={fast!r} is not one of {list(FAST)} or None (no few-step mode)")
    mode = FAST[fast]
    if scheduler not in (DEFAULT_SCHEDULER, mode.scheduler):
        raise ValueError(
            f"fast={fast!r} samples with scheduler {mode.scheduler!r} (what its adapter was "
            f"distilled for), not scheduler={scheduler!r}: leave scheduler at its default"
        )
    return mode


def sampling(pipe, steps=None, guidance=None, scheduler=None, *, defaults=None) -> tuple:
    """``(steps, guidance, extra)`` for a call of ``pipe`` (a pipeline of
    :func:`sdsam_nb.load_sd`, or one built from it): ``steps`` and ``guidance`` as given, or,
    where ``None``, the few-step adapter's (:data:`FAST`) when ``pipe`` has one, else
    ``defaults``' (an object with ``steps`` and ``guidance``; ``None``: :data:`DEFAULT_STEPS`
    and :data:`DEFAULT_GUIDANCE`). ``extra``: further pipeline-call arguments the adapter's
    sampler needs (TCD's ``eta``), none when the call swaps in a ``scheduler`` of its own.
    Values are not checked here."""
    mode = FAST.get((provenance(pipe).get("fast") or {}).get("name"))
    own = mode or defaults
    steps = (own.steps if own else DEFAULT_STEPS) if steps is None else steps
    guidance = (own.guidance if own else DEFAULT_GUIDANCE) if guidance is None else guidance
    return steps, guidance, dict(mode.call) if mode and scheduler is None else {}


# a LoRA key: component, module path, which half (diffusers' and peft's spellings)
_LORA_KEY = re.compile(
    r"^(?P<part>[A-Za-z0-9_]+)\.(?P<path>.+?)\."
    r"(?:lora_(?P<ab>[AB])|lora\.(?P<du>down|up)|lora_linear_layer\.(?P<lin>down|up))\.weight$"
)
# the pipeline components an SD v1 LoRA may hold weights for
_LORA_PARTS = ("unet", "text_encoder")


class FastAdapter:
    """The LoRA file of few-step mode ``fast`` for ``model``: the hub file at the pinned
    revision (from the Hugging Face cache, downloaded once), the file in the entry's local
    folder, or the built-in tiny one for ``"tiny"``; its state dict as diffusers reads it,
    the components it changes, and what identifies it in ``run.json`` (:attr:`identity`).

    Raises:
        ValueError: the file holds no LoRA weights, or weights of a component an SD v1
            pipeline does not have (e.g. SDXL's ``text_encoder_2``).
        ModelUnavailableError: the hub file is neither cached nor downloadable.
    """

    def __init__(self, model, fast: str):
        from diffusers import StableDiffusionPipeline

        self.fast, self.mode = fast, FAST[fast]
        mode, weight = self.mode, self.mode.weight_name
        if str(model) == TINY:
            self.folder = lora_folder(cache_dir() / "tiny", fast, weight)
            found = {"adapter": TINY, "sha256": sha256_file(self.folder / weight)}
        elif Path(mode.adapter).is_dir():  # a folder of one's own
            self.folder = Path(mode.adapter)
            found = {"adapter": str(self.folder), "sha256": sha256_file(self.folder / weight)}
        else:
            what, instead = f"the fast={fast!r} adapter", "use fast=None"
            path, commit = hub_file(mode.adapter, weight, mode.revision, what=what, instead=instead)
            self.folder = path.parent
            found = {"adapter": mode.adapter, "revision": mode.revision, "commit": commit}
        self.identity = {"name": fast, **found, "weight_name": weight, "fused": True}
        self.state_dict, _ = StableDiffusionPipeline.lora_state_dict(
            str(self.folder), weight_name=weight
        )
        self.parts = sorted({key.split(".", 1)[0] for key in self.state_dict})
        if not self.parts:
            raise ValueError(f"fast={fast!r}: {weight} holds no LoRA weights")
        foreign = [p for p in self.parts if p not in _LORA_PARTS]
        if foreign:
            raise ValueError(
                f"fast={fast!r}: the adapter holds weights for {foreign[0]!r}, which an SD "
                "v1 pipeline does not have: it is made for another base model (e.g. SDXL)"
            )

    def check(self, pipe) -> None:
        """Raise a one-line ``ValueError`` unless every layer the adapter changes is in
        ``pipe`` with the shape its LoRA matrices expect."""
        for key, tensor in self.state_dict.items():
            found = _LORA_KEY.match(key)
            if found is None:  # another spelling: diffusers checks it when loading
                continue
            root, module = getattr(pipe, found["part"], None), None
            if isinstance(root, torch.nn.Module):
                try:
                    module = root.get_submodule(found["path"])
                except AttributeError:
                    pass
            down = found["ab"] == "A" or "down" in (found["du"], found["lin"])
            if module is None:
                problem = "a layer this model does not have"
            else:
                weight = getattr(module, "weight", None)
                want = None if weight is None else weight.shape[1 if down else 0]
                got = tensor.shape[1 if down else 0]
                if want == got:
                    continue
                problem = f"{got} {'inputs' if down else 'outputs'} where this model's has {want}"
            raise ValueError(
                f"fast={self.fast!r}: the adapter does not fit this model: {found['part']}."
                f"{found['path']} ({problem}); it is made for another base model (SD 1.x needed)"
            )

    def fuse_into(self, pipe) -> None:
        """Check the adapter against ``pipe``, load it with ``load_lora_weights`` and fuse it
        into ``pipe``'s own modules (``fuse_lora``, then ``unload_lora_weights``: plain
        modules with the adapter added to their weights, no LoRA layers left to slow each
        step). ``pipe`` must hold the components the adapter changes alone."""
        from diffusers.utils import logging as dlogging

        self.check(pipe)
        level = dlogging.get_verbosity()
        dlogging.set_verbosity_error()  # "No LoRA keys associated to CLIPTextModel" notes
        try:
            pipe.load_lora_weights(
                str(self.folder), weight_name=self.mode.weight_name, adapter_name="fast"
            )
        except (RuntimeError, ValueError, KeyError) as exc:
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
            raise ValueError(
                f"fast={self.fast!r}: the adapter does not fit this model ({line}); it is made "
                "for another base model (SD 1.x needed)"
            ) from None
        finally:
            dlogging.set_verbosity(level)
        pipe.fuse_lora(components=self.parts, adapter_names=["fast"])
        pipe.unload_lora_weights()
