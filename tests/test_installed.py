"""The kit as ``pip install`` puts it (Colab's cell, a wheel), used from outside any checkout.

The test builds a wheel of this checkout and installs it, not editable, into a new virtual
environment. Its dependencies are the test environment's own (a ``.pth`` line points at
them; they are not copied, to keep the test quick): only sdsam-nb comes from the wheel.
``.ci/run`` also installs the wheel with every dependency into an environment of its own
(``.ci/floors``) and runs the fast tests there.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from PIL import Image

from sdsam_nb import runs

CHECKOUT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.installed]


def _run(args, cwd, timeout=900) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("SDSAM_OUTPUTS", None)
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtual environment with the kit installed from a wheel; returns its bin folder."""
    root = tmp_path_factory.mktemp("installed")
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", root / "dist", CHECKOUT],
        cwd=root,
    )
    (wheel,) = (root / "dist").glob("sdsam_nb-*.whl")
    _run([sys.executable, "-m", "venv", root / "venv"], cwd=root)
    bin_dir = root / "venv" / "bin"
    purelib = purelib_of(bin_dir)
    ours = sysconfig.get_paths()["purelib"]
    shared = [p for p in {ours, *site.getsitepackages()} if Path(p).is_dir()]
    (Path(purelib) / "_test_dependencies.pth").write_text("\n".join(shared) + "\n")
    # --force-reinstall: a kit already installed where the shared dependencies are (the floor
    # environment of make test-floors) would otherwise count as "already satisfied"
    _run(
        [bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", wheel],
        cwd=root,
    )
    return bin_dir


def purelib_of(bin_dir: Path) -> str:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return _run([bin_dir / "python", "-c", code], cwd=bin_dir).stdout.strip()


def test_the_wheel_holds_the_notebooks_and_the_sample_data(installed, tmp_path):
    done = _run(
        [
            installed / "python",
            "-c",
            "import sdsam_nb; from sdsam_nb import runs; "
            "print(sdsam_nb.__file__); print(runs.kit_dir('notebooks')); "
            "print(runs.sample_subject()); print(runs.default_output_root())",
        ],
        cwd=tmp_path,
    )
    package, notebooks, sample, outputs = done.stdout.split()
    assert Path(package).parent == Path(purelib_of(installed)) / "sdsam_nb"  # not the checkout
    assert Path(notebooks) == Path(package).parent / "notebooks"
    assert Path(sample).is_file() and Path(sample).parent == Path(package).parent / "data"
    assert Path(outputs) == tmp_path.resolve() / "outputs"  # an installed kit: ./outputs


def test_notebook_02_alone_from_an_installed_kit(installed, tmp_path):
    """The user's path: copy the notebooks out, run one with papermill anywhere."""
    _run([installed / "sdsam-nb", "notebooks", "nbs"], cwd=tmp_path)
    assert (tmp_path / "nbs" / "02_click_to_mask.ipynb").is_file()
    _run(
        [
            installed / "python", "-m", "papermill", "-k", "python3", "--no-progress-bar",
            "nbs/02_click_to_mask.ipynb", "nbs/02-out.ipynb", "-p", "sam_model", "tiny",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    (folder,) = (tmp_path / "outputs").iterdir()
    run = runs.open_run(folder)
    assert run.status == "done"
    assert {"mask", "mask-overlay"} <= set(run.record["files"])
    with Image.open(run.file("mask")) as mask:  # the sample picture, shipped in the wheel
        assert mask.size == (512, 384)


def test_sdsam_nb_run_tiny_from_an_installed_kit(installed, tmp_path):
    _run(
        [
            installed / "sdsam-nb", "run", "--tiny", "--no-progress",
            "-p", "steps", "2", "-p", "size", "128", "-p", "n_variations", "1",
            "-p", "width", "128", "-p", "height", "128", "-p", "points", "[[64, 64, 1]]",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    (folder,) = (tmp_path / "outputs").iterdir()
    run = runs.open_run(folder)
    record = run.record
    assert run.status == "done"
    assert {"subject", "mask", "inpaint-0", "background-0", "composite-0"} <= set(record["files"])
    assert [e["notebook"] for e in record["executions"]] == [
        "01_generate_subject",
        "02_click_to_mask",
        "03_inpaint_background",
        "04_composite_background",
    ]
    for entry in record["executions"]:
        assert (folder / entry["executed_notebook"]).is_file()
    assert record["packages"]["sdsam-nb"] == runs.package_versions()["sdsam-nb"]
