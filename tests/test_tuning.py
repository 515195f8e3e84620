"""Tuning in the sweep, on the smoke preset's debias task: every grid point at the first seed, the point with the lowest
validation loss chosen per (method, rank), the other seeds at it; reported splits never enter the choice; a diverged
point is recorded and never chosen; a killed tuning sweep resumes to the same choice; the verdict on top of it."""

import logging
import math

import numpy as np
import pytest
import torch
from scipy import stats

from lowrank_audit import run_step
from lowrank_audit.experiment import load_spec, narrow
from lowrank_audit.report import build_report
from lowrank_audit.report.data import load
from lowrank_audit.report.verdict import lr_plot, task_verdict
from lowrank_audit.store import Store
from lowrank_audit.sweep import run_sweep
from lowrank_audit.tasks import base as task_base
from lowrank_audit.tasks.debias import SPLITS, DebiasOptions, DebiasTask

FULL_GRID, LORA_GRID = [1.0e-4, 1.0e-3], [3.0e-3, 3.0e-2, 1.0e30]  # 1e30 diverges


def tuned_spec(seeds):
    spec = narrow(load_spec(None, "smoke"), ["debias"])
    task = spec.tasks[0].model_copy(update={"options": {**spec.tasks[0].options, "lens_prompts": 0,
                                                         "bootstrap_resamples": 20, "token_kl_sequences": 8}})
    budget = spec.budget.model_copy(update={"steps": 5})
    methods = [spec.methods[0].model_copy(update={"options": {}, "tune": {"lr": FULL_GRID}}),
               spec.methods[1].model_copy(update={"options": {}, "sweep": {"rank": [1]}, "tune": {"lr": LORA_GRID}})]
    return spec.model_copy(update={"tasks": [task], "methods": methods, "seeds": seeds, "budget": budget})


def sr(out, run_id, split):
    return next(m["value"] for m in Store.in_dir(out).metrics() if m["run_id"] == run_id and m["group_name"] is None
                and m["metric"] == "shift_recovered" and m["split"] == split)


def selections(out):
    return {(s.method, s.rank): s for s in Store.in_dir(out).selections()}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned")
    result = run_sweep(tuned_spec([0, 1]), out, progress=False)
    return out, result


def test_selection_picks_the_lowest_validation_loss_and_later_seeds_run_at_it(tuned):
    out, result = tuned
    store = Store.in_dir(out)
    runs = {r["run_id"]: r for r in store.runs()}
    chosen = selections(out)
    assert set(chosen) == {("full", None), ("lora", 1)}
    for (method, rank), s in chosen.items():
        assert s.metric == "validation_loss"
        for c in s.candidates:  # each candidate's score is its run's stored validation loss
            assert runs[c.run_id]["family"] == s.family and runs[c.run_id]["seed"] == 0
            if c.score is not None:
                assert c.score == store.metric_value(c.run_id, "validation_loss")
        finite = {c.point["lr"]: c.score for c in s.candidates if c.score is not None}
        assert s.chosen.point["lr"] == min(finite, key=finite.get)
        later = [r for r in runs.values() if r["method"] == method and r["rank"] == rank and r["seed"] == 1]
        assert len(later) == 1 and later[0]["family"] is None  # one run at seed 1, at the chosen point
        assert Store.in_dir(out).status(later[0]["run_id"]) == "finished"
        assert f'"lr": {s.chosen.point["lr"]}' in later[0]["config_json"]
    # 2 + 3 grid runs and the base at seed 0, then base, full and lora at seed 1; the diverged one failed
    assert result.planned == 9 and result.finished == 8 and len(result.failed) == 1


def test_a_diverged_grid_point_is_recorded_and_never_chosen(tuned):
    out, _ = tuned
    lora = selections(out)["lora", 1]
    diverged = next(c for c in lora.candidates if c.point["lr"] == 1.0e30)
    assert diverged.status == "failed" and diverged.score is None and lora.chosen != diverged
    assert "loss became" in next(r["error"] for r in Store.in_dir(out).runs() if r["run_id"] == diverged.run_id)


def test_a_grid_point_whose_drift_explodes_is_recorded_and_loses_the_selection(tuned, tmp_path, monkeypatch, caplog):
    """The default divergence rule (drift on neutral text above the base model's entropy there) with the limit set
    between each family's chosen point and the rest: the point the validation loss chose loses, the next best wins,
    and the later seed runs at it. Only the limit is set here; the drifts and the rule are the sweep's own."""
    out, _ = tuned
    store = Store.in_dir(out)
    before = selections(out)
    chosen = [store.metric_value(s.chosen.run_id, "drift_neutral") for s in before.values()]
    others = [store.metric_value(c.run_id, "drift_neutral") for s in before.values() for c in s.candidates
              if c.score is not None and c != s.chosen]
    assert max(others) < min(chosen)  # the fixture leaves room for a limit between them
    limit = (max(others) + min(chosen)) / 2
    monkeypatch.setattr(task_base, "sequence_entropy", lambda logp, mask: np.full(len(logp), limit))
    caplog.set_level(logging.INFO, logger="lowrank_audit")
    run_sweep(tuned_spec([0, 1]), tmp_path, progress=False)
    after, runs = selections(tmp_path), {r["run_id"]: r for r in Store.in_dir(tmp_path).runs()}
    for key, s in after.items():
        lost = next(c for c in s.candidates if c.run_id == before[key].chosen.run_id)
        assert lost.score == before[key].chosen.score and lost.diverged.startswith("drift on neutral text")
        scored = {c.point["lr"]: c.score for c in s.candidates if c.score is not None and not c.diverged}
        assert s.chosen.point["lr"] == min(scored, key=scored.get) != lost.point["lr"]
        later = [r for r in runs.values() if r["method"] == key[0] and r["seed"] == 1]
        assert len(later) == 1 and f'"lr": {s.chosen.point["lr"]}' in later[0]["config_json"]
    assert sum("diverged (drift on neutral text" in r.getMessage() for r in caplog.records) == 2
    plot = lr_plot(load(tmp_path), "debias", tmp_path / "plots", "debias")
    assert plot.caption.count("drift on neutral text") == 2 and "could not be chosen" in plot.caption


def test_the_default_divergence_rule_is_drift_above_the_base_entropy_on_neutral_text(tiny):
    """Hand-worked: the base predicts uniformly over 8 tokens on neutral text (entropy ln 8 at every position)."""
    task = DebiasTask(DebiasOptions(), tiny.tokenizer)
    base = {"neutral/logp": torch.full((2, 3, 8), -math.log(8.0)), "neutral/mask": torch.ones(2, 3, dtype=torch.bool)}
    assert task.divergence(base, {"drift_neutral": 2.0}.get) == ""
    assert task.divergence(base, {"drift_neutral": 2.1}.get) == ("drift on neutral text 2.1 > the base model's "
                                                                  "entropy there 2.08 nats")
    assert task.divergence(base, {}.get) == ""  # no drift stored: nothing to judge
    assert task.divergence({}, {"drift_neutral": 9.0}.get) == ""  # no neutral text: no rule


def test_the_reference_is_the_chosen_full_fine_tune(tuned):
    """Seed 0's runs are scored against the chosen full fine-tune: a run's KL to full is 0 only for the chosen one."""
    out, _ = tuned
    store = Store.in_dir(out)
    full = selections(out)["full", None]
    assert store.metric_value(full.chosen.run_id, "kl_to_full") == 0.0
    base0 = next(r for r in store.runs() if r["method"] == "base" and r["seed"] == 0)
    base1 = next(r for r in store.runs() if r["method"] == "base" and r["seed"] == 1)
    assert store.metric_value(base0["run_id"], "kl_to_full") > 0
    assert store.metric_value(base1["run_id"], "kl_to_full") > 0  # seed 1's base waited for seed 1's full


def test_reported_splits_never_enter_selection(tuned, tmp_path, monkeypatch):
    """Corrupting every model's outputs on the reported held-out prompts (their rows of every observation, the base's
    included) changes no validation loss and no choice."""
    out, _ = tuned
    observe = DebiasTask.observe

    def corrupted(self, runner, model):
        obs = observe(self, runner, model)
        for lex in self.lexicons:
            rows = [i for i, p in enumerate(self.prompts[lex.name]) if p.split in SPLITS[1:]]
            noise = torch.randn(len(rows), obs[f"lexicon/{lex.name}"].shape[1], generator=torch.Generator().manual_seed(1))
            obs[f"lexicon/{lex.name}"][rows] = torch.log_softmax(noise, -1)
        return obs

    monkeypatch.setattr(DebiasTask, "observe", corrupted)
    run_sweep(tuned_spec([0]), tmp_path, progress=False)
    for key, s in selections(tmp_path).items():
        reference = selections(out)[key]
        assert s.chosen.run_id == reference.chosen.run_id
        scores = [math.nan if c.score is None else c.score for c in s.candidates]
        assert scores == pytest.approx([math.nan if c.score is None else c.score for c in reference.candidates],
                                       rel=1e-12, nan_ok=True)
    lora_run = selections(tmp_path)["lora", 1].chosen.run_id  # the corruption did reach the reported metrics
    assert sr(tmp_path, lora_run, "heldout_templates") != pytest.approx(sr(out, lora_run, "heldout_templates"))
    assert sr(tmp_path, lora_run, "train") == pytest.approx(sr(out, lora_run, "train"), rel=1e-9)


def test_a_killed_tuning_sweep_resumes_to_the_same_choice(tuned, tmp_path, monkeypatch):
    out, _ = tuned
    calls = []
    train = run_step.train

    def killed_on_the_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # in the lora grid, after full's grid has been chosen
            raise KeyboardInterrupt
        return train(*args, **kwargs)

    monkeypatch.setattr(run_step, "train", killed_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tuned_spec([0]), tmp_path, progress=False)
    assert set(selections(tmp_path)) == {("full", None)}
    monkeypatch.setattr(run_step, "train", train)
    run_sweep(tuned_spec([0]), tmp_path, progress=False)
    for key, s in selections(tmp_path).items():
        assert s.chosen.run_id == selections(out)[key].chosen.run_id


def test_the_verdict_pairs_each_method_with_full_by_seed(tuned):
    """Share of full's shift: mean over seeds of SR_lora / SR_full with a Student-t interval, recomputed here."""
    out, _ = tuned
    data = load(out)
    verdict = task_verdict(data, "debias")
    store = Store.in_dir(out)
    sr = {}
    for r in store.runs():
        if r["status"] == "finished" and r["method"] in ("full", "lora") and not (
                r["family"] and r["run_id"] not in {s.chosen.run_id for s in store.selections()}):
            sr[r["method"], r["seed"]] = next(m["value"] for m in store.metrics() if m["run_id"] == r["run_id"]
                                              and m["metric"] == "shift_recovered" and m["split"] == "train"
                                              and m["group_name"] is None)
    lora = next(m for m in verdict.methods if m.variant.method == "lora")
    assert lora.seeds == 2
    shares = [sr["lora", s] / sr["full", s] for s in (0, 1) if sr["full", s] > 0]
    if len(shares) == 2:
        half = stats.t.ppf(0.975, 1) * np.std(shares, ddof=1) / math.sqrt(2)
        assert lora.share.value == pytest.approx(np.mean(shares))
        assert (lora.share.low, lora.share.high) == pytest.approx((np.mean(shares) - half, np.mean(shares) + half))
    else:
        assert lora.share.value is None or len(shares) == 1
    diff = [sr["lora", s] - sr["full", s] for s in (0, 1)]
    assert lora.shift_difference.value == pytest.approx(np.mean(diff))
    assert "reference" in verdict.reference and "data ceiling" in verdict.reference
    paths = build_report(out)
    html = paths.html.read_text()
    assert html.index("Verdict") < html.index("Task: debias") and "learning-rate sensitivity" in html
    assert any(p.name.endswith("lr-sensitivity.png") for p in paths.plots)


def test_a_task_without_a_validation_split_runs_the_grids_middle_at_every_seed():
    from lowrank_audit.plan import plan_runs, untuned_tasks

    spec = narrow(load_spec(None, "smoke"), ["decisions"])
    methods = [spec.methods[0].model_copy(update={"tune": {"lr": [1e-4, 1e-3, 1e-2]}, "options": {}})]
    spec = spec.model_copy(update={"methods": methods, "seeds": [0, 1]})
    assert untuned_tasks(spec) == []  # decisions tunes on its validation episodes unless they are turned off
    task = spec.tasks[0].model_copy(update={"options": {**spec.tasks[0].options, "validation_episodes": 0}})
    spec = spec.model_copy(update={"tasks": [task]})
    assert untuned_tasks(spec) == ["decisions"]
    full = [r for r in plan_runs(spec, "m", "fp32") if r.method == "full"]
    assert [(r.seed, r.method_options.lr, r.family) for r in full] == [(0, 1e-3, None), (1, 1e-3, None)]
