"""Devices: which one to run on, its dtype, and what a notebook prints first."""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

import torch

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""Linux ``/proc/cpuinfo`` flags of a CPU that computes bfloat16 natively (AVX512-BF16 dot
products, AMX tiles): where :func:`pick_dtype` gives bfloat16 on the CPU."""

DTYPES = ("float32", "bfloat16", "float16")
"""The dtypes a model may be loaded in (``dtype=`` and the notebooks' ``dtype`` parameter)."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA, then Apple MPS, then the CPU.

    Raises:
        ValueError: ``device`` is not a torch device, is ``"meta"`` (no data to compute on),
            or is a CUDA or MPS device this machine does not have.
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a torch device (try 'cuda' or 'cpu')") from None
    instead = "use device='cpu', or None for the best one there is"
    if dev.type == "meta":
        raise ValueError(f"device={device!r} holds no data to compute with: {instead}")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"device={device!r}, but torch finds no CUDA GPU here (torch.cuda.is_available() "
                f"is False; on Colab: Runtime > Change runtime type > a GPU): {instead}"
            )
        if (dev.index or 0) >= count:
            raise ValueError(f"device={device!r}, but this machine has {count} CUDA GPU(s)")
    if dev.type == "mps" and not _mps_available():
        raise ValueError(f"device={device!r}, but Apple's MPS is not available here: {instead}")
    return dev


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux lists them (``/proc/cpuinfo``, its first ``flags``
    line); empty on other systems or when the file cannot be read."""
    if not sys.platform.startswith("linux"):
        return frozenset()
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return frozenset()
    for line in lines:
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def pick_embed_dtype(device: torch.device, dtype: torch.dtype | str | None = None) -> torch.dtype:
    """The dtype a SAM image encoder computes its embedding in (weights stay fp32; the
    encoder runs under ``torch.autocast``, its output is returned as fp32).

    ``None``, the automatic choice: on the CPU :func:`pick_dtype`'s, on a GPU fp32 (as SAM's
    authors run it). A name or dtype is checked as :func:`pick_dtype` checks it.
    """
    if dtype is None and device.type != "cpu":
        return torch.float32
    return pick_dtype(device, dtype)


def autocast(device: torch.device, dtype: torch.dtype):
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def pick_dtype(device: torch.device, dtype: torch.dtype | str | None = None) -> torch.dtype:
    """``dtype`` as a ``torch.dtype`` (a floating-point one; a name such as ``"bfloat16"``
    works too). ``None``, the automatic choice: fp16 on CUDA and MPS; on the CPU bfloat16
    where it computes bfloat16 natively (one of :data:`CPU_BF16_FLAGS`, Linux only), else
    fp32: the measured rule (``python -m benchmarks --only cpu_dtype``, ``docs/models.md``).

    Raises:
        ValueError: ``dtype`` is neither ``None`` nor a floating-point torch dtype or its name.
    """
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        if not isinstance(getattr(torch, name, None), torch.dtype):
            raise ValueError(
                f"dtype={dtype!r} is not a torch dtype (try one of {', '.join(DTYPES)})"
            )
        dtype = getattr(torch, name)
    if dtype is not None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(
                f"dtype must be a floating-point torch.dtype or its name (one of "
                f"{', '.join(DTYPES)}), not {dtype!r}"
            )
        return dtype
    if device.type in ("cuda", "mps"):
        return torch.float16
    native = any(flag in cpu_flags() for flag in CPU_BF16_FLAGS)
    return torch.bfloat16 if native else torch.float32


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def device_report(device: str | torch.device | None = None) -> dict:
    """What a notebook should print first: device, GPU name and free memory, dtype, Colab.

    Returns a dict with ``device``, ``dtype``, ``gpu`` (name or ``None``), ``gpu_free_gb``,
    ``gpu_total_gb``, ``colab``, ``torch`` and ``cuda`` versions; memory in GiB.
    """
    dev = pick_device(device)
    report = {
        "device": str(dev),
        "dtype": str(pick_dtype(dev)).removeprefix("torch."),
        "gpu": None,
        "gpu_free_gb": None,
        "gpu_total_gb": None,
        "colab": in_colab(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    if dev.type == "cuda":
        free, total = torch.cuda.mem_get_info(dev)
        report.update(
            gpu=torch.cuda.get_device_name(dev),
            gpu_free_gb=round(free / 2**30, 2),
            gpu_total_gb=round(total / 2**30, 2),
        )
    return report
