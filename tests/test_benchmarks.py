"""Smoke test of the benchmark harness on the tiny models: shapes of the table and JSON only.

Timings are not asserted (the tiny models' numbers mean nothing); the full-size benchmarks
are run by ``python -m benchmarks`` (see benchmarks/README.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# benchmarks/ is a top-level package of the checkout, not installed: make it importable under a
# bare `pytest` too (`python -m pytest` from the root already has it on sys.path).
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import BENCHMARKS, Section  # noqa: E402
from benchmarks.__main__ import main  # noqa: E402
from benchmarks.harness import update_results_md  # noqa: E402

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


def test_quick_run_prints_table_and_writes_json(tmp_path, capsys):
    results_md = tmp_path / "RESULTS.md"
    rc = main(
        [
            "--quick",
            "--device",
            "cpu",
            "--results-dir",
            str(tmp_path),
            "--results-md",
            str(results_md),
        ]
    )
    out = capsys.readouterr().out

    assert rc == 0, out
    assert not results_md.exists(), "a --quick run must leave RESULTS.md alone"
    lines = out.splitlines()
    header = lines.index("| benchmark | measurement | value | target | met |")
    assert lines[header + 1] == "| --- | --- | --- | --- | --- |"
    table = [ln for ln in lines[header + 2 :] if ln.startswith("| ")]
    assert {ln.split(" | ")[0][2:] for ln in table} == set(BENCHMARKS)
    assert all(ln.count(" | ") == 4 for ln in table)

    (path,) = tmp_path.glob("*_cpu_quick.json")
    record = json.loads(path.read_text())
    assert record["schema"] == 1 and record["quick"] is True
    assert record["environment"]["device"] == "cpu"
    assert record["environment"]["device_name"].startswith("CPU, ")
    assert record["date"][:2] == "20" and "T" in record["date"]
    assert record["versions"]["torch"] and record["versions"]["diffusers"]
    assert set(record["git"]) == {"commit", "dirty"}
    assert list(record["benchmarks"]) == list(BENCHMARKS)
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
