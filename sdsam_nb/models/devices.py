"""Devices: which one to run on, its dtype, and what a notebook prints first."""

from __future__ import annotations

import sys

import torch


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA, then Apple MPS, then the CPU."""
    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device={device!r} is not a torch device (try 'cuda' or 'cpu')"
            ) from None
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: torch.dtype | str | None = None) -> torch.dtype:
    """``dtype`` as a ``torch.dtype``; ``None`` gives fp16 on CUDA and MPS, fp32 on the CPU."""
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        if not isinstance(getattr(torch, name, None), torch.dtype):
            raise ValueError(f"dtype={dtype!r} is not a torch dtype (try 'float16' or 'float32')")
        dtype = getattr(torch, name)
    if dtype is not None:
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"dtype must be a torch.dtype or its name, not {dtype!r}")
        return dtype
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


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
