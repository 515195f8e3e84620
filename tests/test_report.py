"""The report reads a synthetic store and writes escaped, self-contained HTML, markdown and plots."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from lowrank_audit.errors import AuditError
from lowrank_audit.report import ReportPaths, build_report, summary_table
from lowrank_audit.report.render import md_escape
from lowrank_audit.records import MetricRow
from lowrank_audit.store import RunRecord, Store

SPLITS = ("train", "heldout_templates", "heldout_terms")
XSS = "<script>alert(1)</script>"
# lora r=4 shift recovered on train, per seed: (value, ci_low, ci_high)
LORA4_SR_TRAIN = {0: (0.42, 0.30, 0.55), 1: (0.58, 0.47, 0.69)}


def _debias_metrics(sr: float | None, *, seed: int = 0, kl_full: float = 0.1, drift: float = 0.01) -> list[MetricRow]:
    """A plausible full set of debias rows; `sr` is the shift recovered on every split."""
    rows = []
    for i, split in enumerate(SPLITS):
        value = sr if sr is None else sr - 0.05 * i
        rows.append(MetricRow("shift_recovered", value, split=split,
                              ci_low=None if value is None else value - 0.1, ci_high=None if value is None else value + 0.1))
        rows.append(MetricRow("target_fit", 0.5 - 0.3 * (sr or 0), split=split, ci_low=0.1, ci_high=0.9))
        rows.append(MetricRow("group_gap", 0.2 - 0.1 * (sr or 0), split=split))
        rows.append(MetricRow("group_gap", 0.3, group_name="gender/professional", split=split))
        rows.append(MetricRow("group_js", 0.02, split=split))
        rows.append(MetricRow("group_js", 0.03, group_name="gender", split=split))
        for axis, groups in (("gender", ("women", "men")), ("age", ("young", "old"))):
            for g, group in enumerate(groups):
                masses = np.array([0.5 + 0.2 * g * (1 - (sr or 0)), 0.3, 0.2 - 0.2 * g * (1 - (sr or 0))])
                for cat, mass in zip(("professional", "domestic", "appearance"), masses / masses.sum()):
                    rows.append(MetricRow("category_mass", float(mass), group_name=f"{axis}/{group}/{cat}", split=split))
    rows += [
        MetricRow("kl_to_full", kl_full, ci_low=kl_full * 0.8, ci_high=kl_full * 1.2),
        MetricRow("drift_neutral", drift, ci_low=drift * 0.5, ci_high=drift * 1.5),
        MetricRow("seconds_per_step", 0.25 + 0.01 * seed),
        MetricRow("tokens_per_second", 1234.5),
        MetricRow("final_loss", 1.5),
    ]
    return rows


def _add(store: Store, task: str, method: str, rank: int | None, seed: int, metrics: list[MetricRow], **cost) -> None:
    run_id = f"{task}-{method}-r{rank}-s{seed}"
    store.start_run(RunRecord(run_id, task, method, rank, seed, config={"method": method, "rank": rank}))
    store.finish_run(run_id, metrics, **cost)


def _with_sr_train(rows: list[MetricRow], value: float, low: float, high: float) -> list[MetricRow]:
    return [MetricRow("shift_recovered", value, split="train", ci_low=low, ci_high=high)
            if (r.metric, r.split) == ("shift_recovered", "train") else r for r in rows]


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    store = Store.in_dir(tmp_path)
    store.bind_experiment("fp123", "debias on SmolLM2 <tiny>")
    _add(store, "debias", "base", None, 0, _debias_metrics(0.0, kl_full=0.8, drift=0.0), trainable_params=0)
    _add(store, "debias", "full", None, 0, _debias_metrics(0.95, kl_full=0.0, drift=0.3),
         trainable_params=134_515_008, train_seconds=120.0, peak_rss_mb=2048.0)
    for seed in (0, 1):
        r1 = _debias_metrics(0.3 + 0.1 * seed, seed=seed, kl_full=0.4)
        if seed == 0:  # undefined: the held-out-terms SR of this run is NULL
            r1 = [MetricRow("shift_recovered", None, split="heldout_terms")
                  if (r.metric, r.split) == ("shift_recovered", "heldout_terms") else r for r in r1]
        _add(store, "debias", "lora", 1, seed, r1, trainable_params=10_000, train_seconds=30.0)
        r4 = _with_sr_train(_debias_metrics(0.6, seed=seed, kl_full=0.2), *LORA4_SR_TRAIN[seed])
        _add(store, "debias", "lora", 4, seed, r4, trainable_params=40_000, train_seconds=31.5)
    store.start_run(RunRecord("debias-lora-r16-s0", "debias", "lora", 16, 0))
    store.fail_run("debias-lora-r16-s0", f"CUDA error {XSS}")
    _add(store, "probe", "lora", 2, 0, [MetricRow("probe_accuracy", 0.8125, split="val", layer=3)])
    store.close()
    return tmp_path


def _md_table(markdown: str, title: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the markdown table under the heading `title`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and line.lstrip("# ") == title)
    table = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return table[0], table[2:]


def _row(header: list[str], rows: list[list[str]], **match: str) -> dict[str, str]:
    found = [dict(zip(header, r)) for r in rows if all(dict(zip(header, r))[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, rows)
    return found[0]


@pytest.fixture
def report(out_dir: Path) -> tuple[ReportPaths, str, str]:
    paths = build_report(out_dir)
    return paths, paths.html.read_text(encoding="utf-8"), paths.markdown.read_text(encoding="utf-8")


def test_files_exist(report, out_dir: Path) -> None:
    paths, _, markdown = report
    assert paths.html == out_dir / "report.html" and paths.markdown == out_dir / "report.md"
    assert len(paths.plots) == 4  # shift recovered, group gap, divergence, category mass (probe task has none)
    for png in paths.plots:
        assert png.parent == out_dir / "plots" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(plots/{png.name})" in markdown


def test_html_is_self_contained(report) -> None:
    paths, html, _ = report
    assert html.count('<img src="data:image/png;base64,') == len(paths.plots)
    assert 'src="http' not in html and 'href="http' not in html and '.png"' not in html
    assert "<link" not in html and "<script" not in html


def test_store_text_is_escaped(report) -> None:
    _, html, markdown = report
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "debias on SmolLM2 &lt;tiny&gt;" in html
    assert XSS not in markdown and "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown


def test_markdown_lists_each_run_with_stored_numbers(report) -> None:
    _, _, markdown = report
    header, rows = _md_table(markdown, "debias: results per run")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("base", "—", "0"), ("full", "—", "0"), ("lora", "1", "0"), ("lora", "1", "1"), ("lora", "4", "0"), ("lora", "4", "1")
    ]
    lora4 = _row(header, rows, Method="lora", Rank="4", Seed="0")
    assert lora4["Shift recovered (train)"] == "0.42 [0.30, 0.55]"
    assert lora4["KL to full"] == "0.2000 [0.1600, 0.2400]"
    assert lora4["Trainable params"] == "40,000"
    full = _row(header, rows, Method="full")
    assert full["Trainable params"] == "134,515,008" and full["Peak MB"] == "2,048"
    _, failed = _md_table(markdown, "Runs without results")
    assert len(failed) == 1 and failed[0][4] == "failed"


def test_numbers_in_html_match_store(report) -> None:
    _, html, _ = report
    value, low, high = LORA4_SR_TRAIN[0]
    assert f">{value:.2f} [{low:.2f}, {high:.2f}]</td>" in html


def test_undefined_metric_is_na_not_zero(report) -> None:
    _, html, markdown = report
    header, rows = _md_table(markdown, "debias: results per run")
    assert _row(header, rows, Method="lora", Rank="1", Seed="0")["Shift recovered (heldout_terms)"] == "n/a"
    assert _row(header, rows, Method="lora", Rank="1", Seed="1")["Shift recovered (heldout_terms)"] == "0.30 [0.20, 0.40]"
    assert '<td class="num na">n/a</td>' in html


def test_seed_mean_matches_hand_computation(report) -> None:
    _, _, markdown = report
    header, rows = _md_table(markdown, "debias: mean over seeds")
    values = np.array([LORA4_SR_TRAIN[s][0] for s in (0, 1)])
    mean = values.mean()
    half = 12.706 * values.std(ddof=1) / np.sqrt(2)
    row = _row(header, rows, Method="lora", Rank="4")
    assert row["Seeds"] == "2"
    assert row["Shift recovered (train)"] == f"{mean:.2f} [{mean - half:.2f}, {mean + half:.2f}]"
    # one undefined seed: the mean is over the defined seed only, never a 0 standing in for n/a
    assert _row(header, rows, Method="lora", Rank="1")["Shift recovered (heldout_terms)"] == "0.30 [0.20, 0.40] (1 of 2 seeds)"


def test_unknown_metric_of_other_task_in_generic_table(report) -> None:
    _, html, markdown = report
    assert "Task: probe" in markdown and "Task: probe" in html
    header, rows = _md_table(markdown, "probe: all other metrics")
    row = _row(header, rows, Metric="probe_accuracy")
    assert (row["Split"], row["Layer"], row["Value"]) == ("val", "3", "0.8125")
    # rows the debias tables do not show also land in the generic table
    header, rows = _md_table(markdown, "debias: all other metrics")
    assert {r[header.index("Metric")] for r in rows} >= {"category_mass", "group_gap", "group_js", "final_loss"}
    assert not any(r[header.index("Metric")] == "shift_recovered" for r in rows)


def test_missing_store_or_runs_raise(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match=re.escape(str(tmp_path))):
        build_report(tmp_path)
    assert not (tmp_path / "results.sqlite").exists()  # the report never creates a store
    Store.in_dir(tmp_path).close()
    with pytest.raises(AuditError, match="no runs"):
        build_report(tmp_path)


def test_summary_table(out_dir: Path) -> None:
    console = Console(record=True, width=250)
    console.print(summary_table(out_dir))
    text = console.export_text()
    assert text.count("debias") >= 7 and "probe" in text
    assert "failed" in text and "0.42" in text and "n/a" in text


def test_md_escape_blocks_links_and_cell_breaks() -> None:
    assert md_escape("a|b") == "a\\|b"
    assert "](" not in md_escape("[x](javascript:alert(1))")
    assert md_escape("line1\nline2") == "line1 line2"


def test_an_error_cell_is_one_line_and_the_whole_text_is_beside_the_report(out_dir: Path) -> None:
    traceback = "RuntimeError: out of memory\nTraceback (most recent call last):\n  File \"loop.py\", line 9"
    store = Store.in_dir(out_dir)
    store.start_run(RunRecord("debias-lora-r8-s0", "debias", "lora", 8, 0))
    store.fail_run("debias-lora-r8-s0", traceback)
    store.close()
    markdown = build_report(out_dir).markdown.read_text(encoding="utf-8")
    header, failed = _md_table(markdown, "Runs without results")
    cell = _row(header, failed, Rank="8")["Error"]
    assert cell == "RuntimeError: out of memory (full text: errors.txt)"
    assert _row(header, failed, Rank="16")["Error"] == md_escape(f"CUDA error {XSS}")  # one line: shown whole
    assert traceback in (out_dir / "errors.txt").read_text(encoding="utf-8")


def test_every_stored_value_of_the_finished_runs_is_in_the_csv(report, out_dir: Path) -> None:
    paths, _, markdown = report
    with paths.csv.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    store = Store.in_dir(out_dir)
    finished = {r["run_id"] for r in store.runs() if r["status"] == "finished"}
    stored = [m for m in store.metrics() if m["run_id"] in finished]
    store.close()
    key = lambda r, group: (r["run_id"], r["metric"], r[group] or "", r["split"] or "", str(r["layer"] or ""))  # noqa: E731
    assert {key(m, "group_name") for m in stored} <= {key(r, "group") for r in rows}
    assert {r["metric"] for r in rows if r["method"] == "full"} >= {"trainable_params", "train_seconds"}  # run columns
    probe = next(r for r in rows if r["metric"] == "probe_accuracy")
    assert (probe["task"], probe["split"], probe["layer"], float(probe["value"])) == ("probe", "val", "3", 0.8125)
    assert "all values: metrics.csv" in markdown
