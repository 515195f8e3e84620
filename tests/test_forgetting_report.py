"""The intruder and forgetting figures and columns, from a synthetic store."""

from __future__ import annotations

from pathlib import Path

from lowrank_audit.records import MetricRow
from lowrank_audit.report import build_report
from lowrank_audit.report.data import load
from lowrank_audit.report.forgetting_plots import shift_metric
from lowrank_audit.store import RunRecord, Store

INTRUDERS = {("full", None): 0, ("lora", 1): 6, ("lora", 8): 2}  # per matrix of the 2 layers x 2 modules


def _rows(method: str, rank: int | None) -> list[MetricRow]:
    rows = [MetricRow("shift_recovered", 0.9 if rank is None else 0.1 * rank, split="heldout_both")]
    if method == "base":
        return rows
    per = INTRUDERS[method, rank]
    rows += [MetricRow("weight_intruders", per, group_name=m, layer=layer) for m in ("q_proj", "v_proj") for layer in (1, 2)]
    rows += [MetricRow("weight_intruders", 2 * per, group_name=m) for m in ("q_proj", "v_proj")]
    rows += [MetricRow("weight_intruders", 4 * per),
             MetricRow("forgetting", 0.05 * (rank or 10), ci_low=0.0, ci_high=1.0),
             MetricRow("general_accuracy", 0.3, ci_low=0.2, ci_high=0.4)]
    return rows


def _store(tmp_path: Path) -> Path:
    store = Store.in_dir(tmp_path)
    store.bind_experiment("fp", "intruders")
    for method, rank in (("base", None), ("full", None), ("lora", 1), ("lora", 8)):
        rid = f"{method}-{rank}"
        store.start_run(RunRecord(rid, "debias", method, rank, 0, config={"m": rid}))
        store.finish_run(rid, _rows(method, rank))
    store.close()
    return tmp_path


def test_figures_and_columns(tmp_path: Path) -> None:
    out = _store(tmp_path)
    paths = build_report(out)
    names = {p.name for p in paths.plots}
    for name in ("intruders", "forgetting", "intruders-heatmap", "shift-vs-intruders-forgetting"):
        assert f"debias-{name}.png" in names
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert "intruder dimensions per matrix, lora r=1" in markdown  # the run with the most intruders
    header = next(line for line in markdown.splitlines() if line.startswith("| Method"))
    assert "Intruder dims" in header and "Forgetting" in header
    lora1 = next(line for line in markdown.splitlines() if line.startswith("| lora | 1 |"))
    assert "| 24 |" in lora1  # 4 matrices x 6, summed


def test_shift_captured_is_the_tasks_first_shift_metric(tmp_path: Path) -> None:
    runs = load(_store(tmp_path)).runs
    assert shift_metric(runs) == ("shift_recovered", "heldout_both")
    assert shift_metric([r for r in runs if False]) is None


def test_no_intruder_figure_when_every_count_is_zero(tmp_path: Path, monkeypatch) -> None:
    """All-zero counts (the default audit's case) draw no flat intruder figure; the forgetting caption says why."""
    monkeypatch.setitem(INTRUDERS, ("lora", 1), 0)
    monkeypatch.setitem(INTRUDERS, ("lora", 8), 0)
    paths = build_report(_store(tmp_path))
    names = {p.name for p in paths.plots}
    assert "debias-forgetting.png" in names and "debias-shift-vs-intruders-forgetting.png" in names
    assert not names & {"debias-intruders.png", "debias-intruders-heatmap.png"}
    markdown = paths.markdown.read_text(encoding="utf-8")
    assert "No run has an intruder dimension" in markdown
    assert "shift captured vs forgetting" in markdown and "intruder dimensions per matrix" not in markdown
