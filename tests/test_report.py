"""The report reads a synthetic store and writes escaped, self-contained HTML, markdown and plots."""

from __future__ import annotations

import csv
import html as htmllib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from lowrank_audit.errors import AuditError
from lowrank_audit.catalogue import DEFINITIONS
from lowrank_audit.report import ReportPaths, build_report, report_is_current, summary_table
from lowrank_audit.report.catalogue import task_metrics
from lowrank_audit.report.data import Run, Value, load
from lowrank_audit.report.degenerate import DEFINITION as DEGENERATE_DEFINITION, degenerate_reason
from lowrank_audit.report.render import md_escape
from lowrank_audit.report.tables import MAX_VALUE_COLUMNS, long_table, metric_columns
from lowrank_audit.records import MetricRow
from lowrank_audit.store import RunRecord, Store
from lowrank_audit.tasks.debias_card import TRAINING_DATA
from lowrank_audit.tasks.lexicon import PROVENANCE

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


def _add(store: Store, task: str, method: str, rank: int | None, seed: int, metrics: list[MetricRow],
         **cost: float) -> None:
    """One finished run; `cost` (trainable_params=..., train_seconds=...) as the metric rows a sweep writes."""
    run_id = f"{task}-{method}-r{rank}-s{seed}"
    store.start_run(RunRecord(run_id, task, method, rank, seed, config={"method": method, "rank": rank}))
    store.finish_run(run_id, [*metrics, *(MetricRow(name, float(value)) for name, value in cost.items())])


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


def _md_tables(markdown: str, task: str, what: str) -> tuple[list[str], list[list[str]]]:
    """The task's results tables `what` ('per run', 'mean over seeds'), split over several, joined back into one: the
    identity columns once, then every table's metric columns (each table has the same rows in the same order)."""
    titles = [line.lstrip("# ") for line in markdown.splitlines()
              if line.startswith("### ") and line.lstrip("# ").startswith(f"{task}: ") and line.endswith(f"({what})")]
    assert titles, (task, what)
    header, rows = _md_table(markdown, titles[0])
    for title in titles[1:]:
        more_header, more_rows = _md_table(markdown, title)
        assert [r[:3] for r in more_rows] == [r[:3] for r in rows]
        header += more_header[3:]
        rows = [r + m[3:] for r, m in zip(rows, more_rows)]
    return header, rows


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
    header, rows = _md_tables(markdown, "debias", "per run")
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
    assert f'>{value:.2f}<br><span class="ci">[{low:.2f}, {high:.2f}]</span></td>' in html  # interval: second line


def test_undefined_metric_is_na_not_zero(report) -> None:
    _, html, markdown = report
    header, rows = _md_tables(markdown, "debias", "per run")
    assert _row(header, rows, Method="lora", Rank="1", Seed="0")["Shift recovered (heldout_terms)"] == "n/a"
    assert _row(header, rows, Method="lora", Rank="1", Seed="1")["Shift recovered (heldout_terms)"] == "0.30 [0.20, 0.40]"
    assert '<td class="num na">n/a</td>' in html


def test_seed_mean_matches_hand_computation(report) -> None:
    _, _, markdown = report
    header, rows = _md_tables(markdown, "debias", "mean over seeds")
    values = np.array([LORA4_SR_TRAIN[s][0] for s in (0, 1)])
    mean = values.mean()
    half = 12.706 * values.std(ddof=1) / np.sqrt(2)
    row = _row(header, rows, Method="lora", Rank="4")
    assert row["Seeds"] == "2"
    assert row["Shift recovered (train)"] == f"{mean:.2f} [{mean - half:.2f}, {mean + half:.2f}]"
    # one undefined seed: the mean is over the defined seed only, never a 0 standing in for n/a
    assert _row(header, rows, Method="lora", Rank="1")["Shift recovered (heldout_terms)"] == "0.30 [0.20, 0.40] (1 of 2 seeds)"


def test_unknown_metric_of_other_task_in_generic_table(report, out_dir: Path) -> None:
    _, html, markdown = report
    assert "Task: probe" in markdown and "Task: probe" in html
    data = load(out_dir)
    other = long_table("probe", data.finished("probe"), covered=[])
    row = dict(zip([c.title for c in other.columns], other.rows[0]))
    assert (row["Metric"], row["Split"], row["Layer"], row["Value"]) == ("probe_accuracy", "val", "3", "0.8125")
    assert "probe_accuracy" in html  # the HTML page lists it (collapsed); the markdown page links the CSV instead
    # rows the debias tables do not show also land in the generic table
    cols = metric_columns(data.finished("debias"), task_metrics("debias"))
    other = long_table("debias", data.finished("debias"), covered=[c.key for c in cols])
    metrics = {r[[c.title for c in other.columns].index("Metric")] for r in other.rows}
    assert metrics >= {"category_mass", "group_gap", "group_js", "final_loss"} and "shift_recovered" not in metrics
    assert "more values in [metrics.csv](metrics.csv)" in markdown and "| category_mass |" not in markdown


def test_missing_store_or_runs_raise(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match=re.escape(str(tmp_path))):
        build_report(tmp_path)
    assert not (tmp_path / "results.sqlite").exists()  # the report never creates a store
    Store.in_dir(tmp_path).close()
    with pytest.raises(AuditError, match="no runs"):
        build_report(tmp_path)


def test_summary_table_fits_80_columns_with_intervals(out_dir: Path) -> None:
    console = Console(record=True, width=80, file=io.StringIO())
    console.print(summary_table(out_dir, width=80))
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    value, low, high = LORA4_SR_TRAIN[0]
    assert f"{value:.2f}" in text and f"{low:.2f}–{high:.2f}" in text  # the interval, on the line below the value
    assert text.count("lora r=4") == 2 * 2 and "failed" in text and "n/a" in text and "probe" in text  # 2 tables x 2 seeds


def _add_degenerate_run(out_dir: Path) -> None:
    """lora r=8: KL to full 1.5 > the base's 0.8 (the fixture's base), drift 0.01."""
    store = Store.in_dir(out_dir)
    _add(store, "debias", "lora", 8, 0, _debias_metrics(0.9, kl_full=1.5), trainable_params=80_000)
    store.close()


def test_degenerate_rule_against_the_base() -> None:
    base = Run("b", "debias", "base", None, 0, "finished", None, {("kl_to_full", None, None, None): Value(0.8)})
    def run(kl: float | None, drift: float | None) -> Run:
        metrics = {k: Value(v) for k, v in ((("kl_to_full", None, None, None), kl), (("drift_neutral", None, None, None), drift))
                   if v is not None}
        return Run("r", "debias", "lora", 4, 0, "finished", None, metrics)
    assert degenerate_reason(run(0.79, 0.79), base) == ""
    assert "KL to full 0.81" in degenerate_reason(run(0.81, 0.1), base)
    assert degenerate_reason(run(None, 4.83), base).startswith("drift 4.83")
    assert degenerate_reason(run(5.0, 5.0), None) == ""  # no base to judge against
    assert degenerate_reason(Run("f", "debias", "full", None, 0, "finished", None, {}), base) == ""


def test_a_degenerate_run_is_marked_in_tables_plots_and_terminal(out_dir: Path) -> None:
    _add_degenerate_run(out_dir)
    paths = build_report(out_dir)
    markdown, html = paths.markdown.read_text(encoding="utf-8"), paths.html.read_text(encoding="utf-8")
    header, rows = _md_tables(markdown, "debias", "per run")
    assert _row(header, rows, Rank="8")["Method"] == "lora (degenerate)"
    assert _row(header, rows, Rank="4", Seed="0")["Method"] == "lora"  # KL 0.2 < 0.8
    assert DEGENERATE_DEFINITION in markdown and '<tr class="degenerate">' in html
    assert "Red X: " in html  # the divergence plot's caption explains its mark
    console = Console(record=True, width=80, file=io.StringIO())
    console.print(summary_table(out_dir, width=80))
    text = console.export_text()
    assert "lora r=8 !" in text and "lora r=4 !" not in text and DEGENERATE_DEFINITION[:30] in " ".join(text.split())


def test_main_tables_are_split_and_metrics_defined(report) -> None:
    _, html, markdown = report
    titles = [line for line in markdown.splitlines() if line.startswith("### debias: ") and "(per run)" in line]
    assert len(titles) >= 2
    for title in titles:
        header, _ = _md_table(markdown, title.lstrip("# "))
        assert len(header) - 3 <= MAX_VALUE_COLUMNS
    assert f"**Shift recovered**: {md_escape(DEFINITIONS['shift_recovered'])}" in markdown
    assert "<dt>Drift on neutral text</dt>" in html


def test_the_debias_section_says_where_its_data_came_from(report) -> None:
    _, html, markdown = report
    debias = markdown[markdown.index("## Task: debias"):markdown.index("## Task: probe")]
    assert f"**Fine-tuning data**: {md_escape(TRAINING_DATA)}" in debias
    for what, where in PROVENANCE.items():
        assert f"**Data: {md_escape(what)}**: {md_escape(where)}" in debias
    assert "Sheng et al. (2019)" in PROVENANCE["templates"] and "Fine-tuning data" not in markdown.split("## Task: probe")[1]
    assert "<dt>Fine-tuning data</dt>" in html and "base model&#39;s own next-word distribution" in html


def test_captions_promise_intervals_only_where_stored(tmp_path: Path) -> None:
    store = Store.in_dir(tmp_path)  # one seed: the group gap has no interval (none stored, none across seeds)
    _add(store, "debias", "base", None, 0, _debias_metrics(0.0, kl_full=0.8, drift=0.0))
    _add(store, "debias", "full", None, 0, _debias_metrics(0.95, kl_full=0.0))
    _add(store, "debias", "lora", 4, 0, _debias_metrics(0.6, kl_full=0.2))
    store.close()
    html = build_report(tmp_path).html.read_text(encoding="utf-8")
    captions = dict(re.findall(r"<figcaption><strong>debias: (.*?)\.</strong> (.*?)</figcaption>", html))
    assert "no interval is stored" in captions["group gap vs rank"] and "error bars" not in captions["group gap vs rank"]
    assert "error bars = 95% interval" in captions["shift recovered vs rank"]


def test_report_is_current_until_the_store_changes(out_dir: Path) -> None:
    build_report(out_dir)
    assert report_is_current(out_dir)
    _add_degenerate_run(out_dir)
    assert not report_is_current(out_dir)


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
    assert {r["metric"] for r in rows if r["method"] == "full"} >= {"trainable_params", "train_seconds"}  # cost rows
    probe = next(r for r in rows if r["metric"] == "probe_accuracy")
    assert (probe["task"], probe["split"], probe["layer"], float(probe["value"])) == ("probe", "val", "3", 0.8125)
    assert "[metrics.csv](metrics.csv)" in markdown


_PAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const out = {tables: [], images: [], titles: []};
  for (const d of document.querySelectorAll(".table-block.main .scroll"))
    out.tables.push([d.parentElement.querySelector("h3").textContent, d.scrollWidth, d.clientWidth]);
  for (const img of document.images) out.images.push([img.alt, img.complete && img.naturalWidth > 0]);
  for (const e of document.querySelectorAll("h1, h2, h3, figcaption strong, img, dl.definitions dd")) out.titles.push(e.alt || e.textContent);
  out.page = [document.documentElement.scrollWidth, document.documentElement.clientWidth];
  const pre = document.createElement("pre");
  pre.id = "page-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""
RAW_MARKUP = re.compile(r"[$^\\]|\b[pq]_\w")
"""TeX or subscript markup that should have been rendered (mathtext in a figure) or written as words."""


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="needs Chromium (Debian: apt-get update && apt-get install -y chromium; .ci/run installs it)")
def test_report_in_a_real_browser_at_1400_px(out_dir: Path, tmp_path: Path) -> None:
    """Headless Chromium loads report.html at 1,400 px; a page script (added to a copy) measures what a reader sees."""
    _add_degenerate_run(out_dir)
    html = build_report(out_dir).html.read_text(encoding="utf-8")
    page = tmp_path / "checked.html"
    page.write_text(html.replace("</body>", _PAGE_CHECK + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,2000",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(r'<pre id="page-check">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    check = json.loads(htmllib.unescape(found.group(1)))
    assert len(check["tables"]) >= 2
    assert [t for t in check["tables"] if t[1] > t[2]] == []  # no main table scrolls sideways
    assert check["page"][0] <= check["page"][1]  # nor does the page
    assert check["images"] and all(ok for _, ok in check["images"]), check["images"]
    assert [t for t in check["titles"] if RAW_MARKUP.search(t)] == []
