"""Shared fixtures: the built-in tiny models, built once per test session into a private cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# benchmarks/ is a top-level package of the checkout, not installed: importable under a bare
# `pytest` too (`python -m pytest` from the root already has it on sys.path)
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


# The files that take longest, first: with pytest-xdist (make test: a file per process) the
# two processes then end at about the same time instead of one finishing a long file alone.
SLOW_FILES_FIRST = (
    "test_notebook_options.py",
    "test_notebooks.py",
    "test_cli.py",
    "test_batch.py",
    "test_sweep.py",
    "test_benchmarks.py",
    "test_browser.py",
    "test_caching.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: k for k, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Tests build the tiny models into their own cache, never the user's."""
    if "SDSAM_TEST_CACHE" in os.environ:  # reuse a warm cache between local runs
        os.environ["SDSAM_CACHE"] = os.environ["SDSAM_TEST_CACHE"]
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        # pytest-xdist's processes of one run share one cache: a model is built once (two
        # processes building it at once publish atomically and keep one of the two)
        shared = tmp_path_factory.getbasetemp().parent / "sdsam-cache"
        shared.mkdir(exist_ok=True)
        os.environ["SDSAM_CACHE"] = str(shared)
    else:
        os.environ["SDSAM_CACHE"] = str(tmp_path_factory.mktemp("sdsam-cache"))
    # the disk caches of embeddings and pictures: never the reused SDSAM_TEST_CACHE
    os.environ["SDSAM_RESULTS_CACHE"] = str(tmp_path_factory.mktemp("results-cache"))
    os.environ.pop("SDSAM_CACHE_GB", None)
    yield


@pytest.fixture(autouse=True)
def _own_results_cache(_private_cache, tmp_path_factory, monkeypatch):
    """Each test starts with empty disk caches of its own: what one test computed never
    turns into another test's cache hit (which would change what it counts)."""
    folder = tmp_path_factory.mktemp("results") / "cache"  # not there until written
    monkeypatch.setenv("SDSAM_RESULTS_CACHE", str(folder))


@pytest.fixture(scope="session")
def tiny_sd(_private_cache):
    import sdsam_nb

    return sdsam_nb.load_sd("tiny", progress=False)


@pytest.fixture(scope="session")
def tiny_sam(_private_cache):
    import sdsam_nb

    return sdsam_nb.load_sam("tiny")


def load_or_skip(name: str):
    """``load_sam(name)``, or a skip when the installed transformers lacks the family (the
    oldest transformers the kit allows has SAM but not SAM-HQ or SAM 2)."""
    import sdsam_nb
    from sdsam_nb.models import hf_sam

    if name in hf_sam.TINY_VARIANTS and not hf_sam.available(name):
        pytest.skip(
            f"{name}: this transformers has no {hf_sam.FAMILIES[hf_sam._tiny_type(name)][1]}"
        )
    return sdsam_nb.load_sam(name)


@pytest.fixture
def models():
    """An empty model cache for the test (what it loads is dropped after), the session's
    models put back."""
    from sdsam_nb.models import MODELS

    saved = MODELS.copy()
    MODELS.clear()
    yield MODELS
    MODELS.clear()
    MODELS.update(saved)


@pytest.fixture
def subject_image() -> Image.Image:
    """A 300x200 RGB picture: a red disc (the subject) on a blue-green gradient."""
    h, w = 200, 300
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 1] = (xx * 255 // w).astype(np.uint8)
    img[..., 2] = (yy * 255 // h).astype(np.uint8)
    disc = (xx - 150) ** 2 + (yy - 100) ** 2 < 50**2
    img[disc] = (220, 30, 30)
    return Image.fromarray(img)


@pytest.fixture
def subject_mask() -> np.ndarray:
    """The disc of ``subject_image`` as an HxW bool mask."""
    yy, xx = np.mgrid[0:200, 0:300]
    return (xx - 150) ** 2 + (yy - 100) ** 2 < 50**2


@pytest.fixture(scope="module")
def ray_local():
    """A Ray instance on this machine for one test module, on the loopback address only,
    stopped after it. Skipped without ``ray[data]``; under CI, where ``make setup`` installs
    the ``ray`` extra, its absence fails."""
    from sdsam_nb.batch.ray_pool import import_ray

    try:
        ray = import_ray("local")
    except ValueError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (make setup installs it)")
        pytest.skip(str(exc))
    # two logical CPUs, as on this machine: the pool must not hold every one of them
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def python_says(code: str, **env: str) -> list[str]:
    """What ``code`` prints (its words), run by this Python in a fresh process with ``env``
    added to the environment; fails the test with its stderr if it fails."""
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()
