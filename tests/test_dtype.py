"""The automatic dtype (``pick_dtype(device, None)``): bfloat16 on a CPU with native bfloat16
(Linux flags ``avx512_bf16`` / ``amx_bf16``), else float32; fp16 on a GPU. The dtype SD was
loaded in is recorded in ``run.json`` and a replay loads it so, whatever this CPU's own
choice; a run recorded before the dtype was replays in float32 on the CPU. Tiny models, in
this process (the flag reader monkeypatched; one replay under papermill), 64-px pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import sdsam_nb
from sdsam_nb import runs
from sdsam_nb.models import MODELS, devices
from sdsam_nb.runs.chain import execute_chain, replay
from sdsam_nb.segment import as_segmenter

CPU, CUDA, MPS = (torch.device(d) for d in ("cpu", "cuda", "mps"))
NATIVE = frozenset({"fpu", "avx512f", "avx512_bf16"})  # a Zen 4 / Sapphire Rapids-like CPU
PLAIN = frozenset({"fpu", "avx2", "avx512f"})  # AVX-512 without its bfloat16 instructions


@pytest.fixture
def flags(monkeypatch):
    """Make this CPU report the given flags: ``flags(NATIVE)``."""

    def set_flags(value: frozenset[str]) -> None:
        monkeypatch.setattr(devices, "cpu_flags", lambda: value)

    return set_flags


@pytest.mark.parametrize(
    ("cpu_flags", "expected"),
    [
        (NATIVE, torch.bfloat16),
        (frozenset({"amx_tile", "amx_bf16"}), torch.bfloat16),
        (PLAIN, torch.float32),
        (frozenset(), torch.float32),  # macOS, Windows, an unreadable /proc/cpuinfo
    ],
)
def test_the_automatic_cpu_dtype_follows_the_flags(cpu_flags, expected, flags):
    flags(cpu_flags)
    assert sdsam_nb.pick_dtype(CPU) == expected
    assert sdsam_nb.device_report("cpu")["dtype"] == str(expected).removeprefix("torch.")
    # a GPU keeps float16, and a dtype given is the one used, whatever the flags
    assert sdsam_nb.pick_dtype(CUDA) == sdsam_nb.pick_dtype(MPS) == torch.float16
    assert sdsam_nb.pick_dtype(CPU, "float32") == torch.float32
    assert sdsam_nb.pick_dtype(CPU, torch.bfloat16) == torch.bfloat16


def test_the_flag_reader_reads_linux_flags_only(monkeypatch, tmp_path):
    read = devices.cpu_flags.__wrapped__  # the reader without its per-process cache
    monkeypatch.setattr(devices.sys, "platform", "darwin")
    assert read() == frozenset()
    monkeypatch.setattr(devices.sys, "platform", "linux")
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n\nflags\t\t: fpu\n")
    real = devices.Path

    def fake(path, *args):
        return real(info) if str(path) == "/proc/cpuinfo" else real(path, *args)

    monkeypatch.setattr(devices, "Path", fake)
    assert read() == frozenset({"fpu", "avx512f", "avx512_bf16"})
    info.unlink()
    assert read() == frozenset()


@pytest.mark.parametrize("bad", ["int8", "float99", "bf16", torch.int64, 16])
def test_a_bad_dtype_is_one_line_naming_it(bad, models):
    for call in (
        lambda: sdsam_nb.pick_dtype(CPU, bad),
        lambda: sdsam_nb.load_sd("tiny", dtype=bad, progress=False),
    ):
        with pytest.raises(ValueError, match="^dtype") as err:
            call()
        assert "\n" not in str(err.value) and "bfloat16" in str(err.value)
    with pytest.raises(ValueError, match=r"^parameter dtype must be None \(the automatic"):
        runs.check_params(dtype=str(bad))
    assert runs.check_params(dtype="bfloat16", sd_model="tiny")["dtype"] == "bfloat16"
    assert runs.check_params(dtype=None)["dtype"] is None


def test_the_pipeline_is_loaded_in_the_automatic_dtype_and_records_it(flags, models):
    flags(NATIVE)
    pipe = sdsam_nb.load_sd("tiny", progress=False)
    assert pipe.unet.dtype == pipe.vae.dtype == pipe.text_encoder.dtype == torch.bfloat16
    assert runs.model_info(pipe, "tiny")["dtype"] == "bfloat16"
    inpainting = sdsam_nb.inpainting(pipe)  # shares the weights: the same dtype
    assert inpainting.unet is pipe.unet and pipe.unet.dtype == torch.bfloat16
    flags(PLAIN)
    plain = sdsam_nb.load_sd("tiny", progress=False)
    assert plain is not pipe and plain.unet.dtype == torch.float32
    assert runs.model_info(plain, "tiny")["dtype"] == "float32"


def _run_01(tmp_path, **params):
    params = {
        "sd_model": "tiny",
        "width": 64,
        "height": 64,
        "n_variations": 1,
        "steps": 2,
        **params,
    }
    return execute_chain(
        ["01_generate_subject"], params, output_root=tmp_path, progress=False, echo=False, here=True
    )


def _subject(run) -> np.ndarray:
    with Image.open(run.file("subject")) as picture:
        return np.asarray(picture.convert("RGB"))


def test_the_recorded_dtype_is_the_one_a_replay_uses(tmp_path, flags, models):
    """01 on a CPU with native bfloat16 records bfloat16; replayed where the automatic choice
    would be float32, it loads bfloat16 again and makes the same pixels."""
    flags(NATIVE)
    run = _run_01(tmp_path)
    execution = run.record["executions"][-1]
    assert execution["params"]["dtype"] is None  # the automatic choice...
    assert run.record["models"]["sd"]["dtype"] == "bfloat16"  # ...and what it gave
    assert execution["models"]["sd"]["dtype"] == execution["device"]["dtype"] == "bfloat16"

    flags(PLAIN)
    MODELS.clear()
    new, comparison = replay(run.path, output_root=tmp_path / "replays", progress=False, here=True)
    assert comparison.identical, comparison
    assert new.record["executions"][-1]["params"]["dtype"] == "bfloat16"
    assert new.record["models"]["sd"]["dtype"] == "bfloat16"
    assert np.array_equal(_subject(new), _subject(run))
    # the same notebook left to this CPU's choice makes float32's (other) pixels
    fresh = _run_01(tmp_path / "fresh")
    assert fresh.record["models"]["sd"]["dtype"] == "float32"
    assert not np.array_equal(_subject(fresh), _subject(run))


def test_a_dtype_given_is_recorded_and_replayed(tmp_path, flags, models):
    flags(PLAIN)
    run = _run_01(tmp_path, dtype="bfloat16")
    assert run.record["executions"][-1]["params"]["dtype"] == "bfloat16"
    assert run.record["models"]["sd"]["dtype"] == "bfloat16"
    new, comparison = replay(run.path, output_root=tmp_path / "replays", progress=False, here=True)
    assert comparison.identical, comparison
    assert new.record["models"]["sd"]["dtype"] == "bfloat16"


@pytest.mark.slow
def test_a_run_recorded_before_the_dtype_replays_in_float32_on_the_cpu(tmp_path, flags, models):
    """A record without the dtype parameter, SD's dtype or the device report's (as runs were
    before): replayed on a CPU whose automatic choice is bfloat16, it computes in float32 and
    makes the same pixels."""
    flags(PLAIN)
    run = _run_01(tmp_path)

    def forget(record):
        for where in (record, *record["executions"]):
            where.get("models", {}).get("sd", {}).pop("dtype", None)
        for execution in record["executions"]:
            execution["params"].pop("dtype")
            execution.get("device", {}).pop("dtype", None)
        for entry in record["notebooks"].values():
            entry["params"].pop("dtype")
            entry.get("device", {}).pop("dtype", None)

    run.update(forget)
    assert "dtype" not in str(run.record["executions"][-1]["params"])
    flags(NATIVE)
    MODELS.clear()
    new, comparison = replay(run.path, output_root=tmp_path / "replays", progress=False, here=True)
    assert comparison.identical, comparison
    assert new.record["executions"][-1]["params"]["dtype"] == "float32"
    assert new.record["models"]["sd"]["dtype"] == "float32"


@pytest.mark.parametrize("model", ["tiny", "tiny-sam"])
@pytest.mark.parametrize(("cpu_flags", "expected"), [(NATIVE, "bfloat16"), (PLAIN, "float32")])
def test_sam_embeds_in_the_automatic_dtype_keeps_fp32_weights_and_says_so(
    model, cpu_flags, expected, flags
):
    flags(cpu_flags)
    sam = sdsam_nb.load_sam(model, device="cpu")
    picture = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    assert as_segmenter(sam).info()["embed_dtype"] == expected
    assert next(sam.model.parameters()).dtype == torch.float32
    segmenter = sdsam_nb.ClickSegmenter(sam, picture, cache=False)
    segmenter.add_point(32, 24)
    assert segmenter.mask.shape == (48, 64)


def test_a_bf16_embedding_is_close_to_fp32s_and_decodes_in_fp32():
    sam32 = sdsam_nb.load_sam("tiny", device="cpu", dtype="float32")
    sam16 = sdsam_nb.load_sam("tiny", device="cpu", dtype="bfloat16")
    assert sam32.model is sam16.model  # one copy of the weights
    picture = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    sam32.set_image(picture)
    sam16.set_image(picture)
    assert sam16.features.dtype == torch.float32
    error = (sam16.features - sam32.features).norm() / sam32.features.norm()
    assert 0 < error < 0.05  # computed in bfloat16 (not the same numbers), yet close


def test_sam_refuses_a_bad_dtype_in_one_line():
    with pytest.raises(ValueError, match="dtype"):
        sdsam_nb.load_sam("tiny", device="cpu", dtype="int8")
