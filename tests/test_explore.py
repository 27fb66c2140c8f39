"""Exploring a notebook in a live kernel, as a JupyterLab user does: change a value, rerun a
cell. The value changed is the value used and recorded; the setup cell run again keeps the
run folder; a replay names the calls that the edits made differ."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from jupyter_client.manager import start_new_kernel
from PIL import Image

from sdsam_nb import runs
from sdsam_nb.recording import describe
from sdsam_nb.runs.chain import replay

NOTEBOOK = runs.kit_dir("notebooks") / "01_generate_subject.ipynb"
TINY = {"sd_model": "tiny", "steps": 2, "width": 64, "height": 64, "n_variations": 2}


class Kernel:
    """A python3 kernel driven cell by cell; ``run`` raises on a cell's error."""

    def __init__(self, cwd: Path):
        self.manager, self.client = start_new_kernel(kernel_name="python3", cwd=str(cwd))

    def run(self, source: str) -> str:
        printed = []

        def output(msg):
            if msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])

        reply = self.client.execute_interactive(source, timeout=300, output_hook=output)
        content = reply["content"]
        if content["status"] != "ok":
            raise AssertionError(f"{content.get('ename')}: {content.get('evalue')}\n{source}")
        return "".join(printed)

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path):
    k = Kernel(tmp_path)
    yield k
    k.stop()


def _cells() -> dict[str, str]:
    """01's code cells by what they do."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"][1:]  # the Colab cell aside
    parameters, setup, load, make, save = code
    return {"parameters": parameters, "setup": setup, "load": load, "make": make, "save": save}


@pytest.mark.slow
def test_a_value_changed_in_the_kernel_is_used_recorded_and_named_by_replay(kernel, tmp_path):
    cells = _cells()
    out = tmp_path / "outputs"
    kernel.run(cells["parameters"])
    kernel.run("\n".join(f"{k} = {v!r}" for k, v in {**TINY, "output_root": str(out)}.items()))
    kernel.run(cells["setup"])
    said = kernel.run(cells["setup"])  # the setup cell run again: the same run folder
    assert "goes on" in said
    (folder,) = out.iterdir()
    kernel.run(cells["load"])
    kernel.run(cells["make"])
    kernel.run("seed = 5")  # the reader changes the seed and reruns the step's cell
    kernel.run(cells["make"])
    kernel.run(cells["save"])

    run = runs.open_run(folder)
    record = run.record
    executions = record["executions"]
    assert len(executions) == 2 and executions[-1]["status"] == "done"
    generated = [c for c in executions[-1]["calls"] if c["call"] == "generate"]
    assert [c["args"]["seed"] for c in generated] == [0, 5]  # the value used, recorded
    assert [p["info"]["seed"] for p in generated[-1]["returned"]] == [5, 6]
    # what was saved is what the rerun cell made: seed 5's pictures
    with Image.open(run.file("subject-variation-0")) as saved:
        assert describe(saved)["sha256"] == generated[-1]["returned"][0]["sha256"]
    assert json.loads((folder / "run.json").read_text()) == record

    # a replay runs the recorded parameters (seed 0): it says so rather than claim identity
    new, comparison = replay(folder, output_root=tmp_path / "replays", progress=False, here=True)
    assert not comparison.identical
    assert "subject" in comparison.differ
    assert comparison.calls == ["01_generate_subject call 3 generate: not made by the replay"]
    assert "calls differ" in comparison.summary()
    with Image.open(new.file("subject-variation-0")) as replayed:
        first = [c for c in new.record["executions"][-1]["calls"] if c["call"] == "generate"]
        assert describe(replayed)["sha256"] == first[0]["returned"][0]["sha256"]
        assert not np.array_equal(np.asarray(replayed), np.asarray(Image.open(run.file("subject"))))
