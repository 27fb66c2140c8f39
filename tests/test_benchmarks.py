"""Smoke test of the benchmark harness on the tiny models: shapes of the table and JSON only.

Timings are not asserted (the tiny models' numbers mean nothing); the full-size benchmarks
are run by ``python -m benchmarks`` (see benchmarks/README.md).
"""

from __future__ import annotations

import json

import pytest

from benchmarks import BENCHMARKS, Section  # benchmarks/ on sys.path: see conftest.py
from benchmarks.__main__ import main
from benchmarks.harness import update_results_md

ROW_KEYS = {"metric", "value", "unit", "target", "met", "note"}


@pytest.fixture(autouse=True)
def _keep_loaded_models():
    """The benchmarks empty the per-process model cache to measure loads; give it back after,
    so that the session's tiny models stay the ones later tests hold."""
    from sdsam_nb import models

    saved = models.MODELS.copy()
    yield
    models.MODELS.clear()
    models.MODELS.update(saved)


# reruns' quick pass is nine `sdsam-nb run` kernels (two minutes): its parts are checked by
# test_reruns_settings_and_cache_counts, and the command by the CLI and notebook tests
SMOKED = [name for name in BENCHMARKS if name != "reruns"]


def test_quick_run_prints_table_and_writes_json(tmp_path, capsys):
    results_md = tmp_path / "RESULTS.md"
    only = [a for name in SMOKED for a in ("--only", name)]
    rc = main(
        [
            "--quick",
            "--device",
            "cpu",
            "--results-dir",
            str(tmp_path),
            "--results-md",
            str(results_md),
            *only,
        ]
    )
    out = capsys.readouterr().out

    assert rc == 0, out
    assert not results_md.exists(), "a --quick run must leave RESULTS.md alone"
    lines = out.splitlines()
    header = lines.index("| benchmark | measurement | value | target | met |")
    assert lines[header + 1] == "| --- | --- | --- | --- | --- |"
    table = [ln for ln in lines[header + 2 :] if ln.startswith("| ")]
    assert {ln.split(" | ")[0][2:] for ln in table} == set(SMOKED)
    assert all(ln.count(" | ") == 4 for ln in table)

    (path,) = tmp_path.glob("*_cpu_quick.json")
    record = json.loads(path.read_text())
    assert record["schema"] == 1 and record["quick"] is True
    assert record["environment"]["device"] == "cpu"
    assert record["environment"]["device_name"].startswith("CPU, ")
    assert record["date"][:2] == "20" and "T" in record["date"]
    assert record["versions"]["torch"] and record["versions"]["diffusers"]
    assert set(record["git"]) == {"commit", "dirty"}
    assert list(record["benchmarks"]) == SMOKED
    for name, bench in record["benchmarks"].items():
        assert bench["status"] == "ok", (name, bench["reason"])
        assert bench["rows"], name
        for row in bench["rows"]:
            assert set(row) == ROW_KEYS
            assert row["value"] is None or isinstance(row["value"], float)
    metrics = {n: [r["metric"] for r in b["rows"]] for n, b in record["benchmarks"].items()}
    assert "ratio naive / cached (medians)" in metrics["click_latency"]
    assert "weights (b)/(a)" in metrics["weight_sharing"]
    assert "ours: end to end" in metrics["end_to_end"]
    assert "SDPA speed-up over classic attention" in metrics["speedups"]
    # a guarded measurement that raised shows up as a "...: failed" row: none may
    failed = [m for ms in metrics.values() for m in ms if m.endswith(": failed")]
    assert failed == [], failed
    assert any("SAM" in m and "encoder" in m for m in metrics["speedups"])
    assert any("channels_last" in m for m in metrics["speedups"])


def test_results_md_keeps_other_blocks(tmp_path):
    md = tmp_path / "RESULTS.md"
    sec = Section("click_latency", "Click latency")
    sec.add("ratio", 60.0, "x", target="≥ 50", met=True)
    update_results_md(md, "cpu", [sec], "CPU, 2 cores, 2025-01-01")
    text = md.read_text()
    assert "pending a GPU run" in text and "python -m benchmarks --device cuda" in text
    assert "| click_latency | ratio | 60.0x | ≥ 50 | yes |" in text

    skipped = Section("end_to_end", "End to end", status="skipped", reason="GPU only")
    sec.rows[0].value = 70.0
    update_results_md(md, "cpu", [sec, skipped], "CPU, 2 cores, 2025-01-02")
    text = md.read_text()
    assert text.count("<!-- BEGIN cpu/click_latency -->") == 1
    assert "70.0x" in text and "60.0x" not in text
    assert "Skipped: GPU only" in text
    update_results_md(md, "cuda", [sec], "H100, 2025-01-03")
    text = md.read_text()
    assert "pending a GPU run" not in text
    assert text.index("<!-- BEGIN cuda/click_latency -->") < text.index("## CPU")
    assert "<!-- BEGIN cpu/end_to_end -->" in text


def test_end_to_end_cpu_mode_is_full_size_and_reports_ratios_only():
    """The CPU's default end_to_end mode: full-size models at the GPU's step ratio, run in a
    worker whose command line carries the settings; its section states that its seconds are
    the CPU's and derives no GPU or T4 time. No model is built here."""
    import torch

    from benchmarks import end_to_end as e2e
    from benchmarks.harness import Context

    cpu = Context(device=torch.device("cpu"))
    cfg = e2e._settings(cpu)
    assert cfg == e2e.CPU_SETTINGS and cfg["sam"] in ("vit_b", "vit_h")
    assert cfg["naive_steps"] / cfg["steps"] == (
        e2e.GPU_SETTINGS["naive_steps"] / e2e.GPU_SETTINGS["steps"]
    )
    assert cfg["size"] % 8 == 0 and cfg["size"] <= 256
    assert e2e._settings(Context(device=torch.device("cpu"), quick=True))["sam"] == "tiny"
    # the timed pass never reads a disk cache of pictures or embeddings, where one exists
    assert e2e._no_cache(lambda image, cache=True: image) == {"cache": False}
    assert e2e._no_cache(lambda image: image) == {}
    # what run() hands the worker is what the worker measures
    args = e2e._worker_args({**cfg, "size": 128, "steps": 5, "naive_steps": 10})
    assert vars(e2e._parser().parse_args(args)) == {
        **cfg,
        "size": 128,
        "steps": 5,
        "naive_steps": 10,
    }

    measured = {
        "loads": {"SD load": 3.0, "SAM load": 1.0},
        "ours": {
            "1 subject": 30.0,
            "2 SAM embedding": 5.0,
            "3 three clicks": 0.2,
            "4 inpainted background": 34.8,
            "5 composite": 0.0,
        },
        "naive": {
            "load text-to-image pipeline (per call)": 5.0,
            "1 subject": 120.0,
            "2+3 three clicks, embedding each": 45.0,
            "load inpainting pipeline (per call)": 5.0,
            "4 inpainted background": 125.0,
            "5 composite": 0.0,
        },
        "peak_ours": None,
        "peak_naive": None,
        "unet_dtype": cfg["dtype"],
        "other_cpu_share": {"ours": 0.02, "naive": 0.03},
        "notes": [],
    }
    sec = e2e.report(cpu, cfg, measured)
    rows = {r.metric: r for r in sec.rows}
    assert rows["ours: end to end"].value == pytest.approx(70.0)
    assert rows["ours: end to end"].target == ""  # absolute targets are the GPU's
    assert rows["speed-up, naive / ours"].value == pytest.approx(300 / 70)
    assert rows["speed-up, naive / ours"].met is True
    assert rows["speed-up without the naive loads"].value == pytest.approx(290 / 70)
    assert not any("T4" in m or "GPU" in m for m in rows), list(rows)
    cpu_note = next(n for n in sec.notes if n.startswith("CPU run"))
    assert "only the ratios" in cpu_note and "ours 2%, naive 3%" in cpu_note


def test_reruns_settings_and_cache_counts():
    """The reruns benchmark's shared parameters (a click inside the subject, sizes the
    notebooks accept, the notebooks' own n_variations outside --quick) and its reading of a
    run.json ``steps`` block. No notebook is run here."""
    from benchmarks import reruns

    for quick, cuda in ((True, False), (False, False), (False, True)):
        p = reruns.settings(quick=quick, cuda=cuda, sd_model="sd", sam_model="sam")
        assert (p["sd_model"], p["sam_model"]) == ("sd", "sam")
        width, height = p.get("width", 512), p.get("height", 512)
        assert width % 8 == 0 and height % 8 == 0 and p.get("size", 512) % 8 == 0
        ((x, y, label),) = p["points"]
        assert 0 <= x < width and 0 <= y < height and label == 1
        x0, y0, x1, y1 = p["box"]
        assert 0 <= x0 < x < x1 <= width and 0 <= y0 < y < y1 <= height
        assert ("n_variations" in p) == quick  # full runs keep 01's 4 and 03's 3
        assert ("steps" in p) == (not cuda or quick)  # a GPU keeps the notebooks' steps
    assert reruns.settings(quick=False, cuda=False, sd_model="", sam_model="")["size"] <= 256

    steps = {
        "01_generate_subject/load_sd": {"seconds": 9.0},
        "01_generate_subject/generate_subject": {
            "seconds": 0.5,
            "cache": {"hits": 4, "misses": 0, "off": 0, "entries": []},
        },
        "03_inpaint_background/score": {
            "seconds": 30.0,
            "cache": {"hits": 1, "misses": 3, "off": 0, "entries": []},
        },
    }
    counts = reruns._cache_counts(steps)
    assert counts["01_generate_subject/load_sd"] == {
        "hits": 0,
        "lookups": 0,
        "off": 0,
        "seconds": 9.0,
    }
    assert counts["03_inpaint_background/score"]["lookups"] == 4
    assert reruns._short("03_inpaint_background/score") == "03 score"
    assert "reruns" in BENCHMARKS
