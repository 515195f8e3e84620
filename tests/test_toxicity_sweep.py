"""The toxicity task in a sweep: samples in the store, the generation cache, the report's warned samples."""

import shutil

import pytest

from lowrank_audit.experiment import load_spec, narrow
from lowrank_audit.report import build_report
from lowrank_audit.report.data import load
from lowrank_audit.report.toxicity_pairs import toxicity_pair_table
from lowrank_audit.store import Store
from lowrank_audit.store.examples import read_examples
from lowrank_audit.sweep import run_sweep
from lowrank_audit.evaluate import runner as runner_module

XSS = "<script>alert(1)</script>"


def small(spec, **options):
    """The smoke preset's toxicity entry, shorter: 2 training steps, 4 new tokens, `options` on top; the full
    fine-tune's weights and the observation cache are kept, since these tests re-run sweeps on them."""
    task = spec.tasks[0]
    task = task.model_copy(update={"options": {**task.options, "max_new_tokens": 4, **options}})
    execution = spec.execution.model_copy(update={"keep_full_weights": True, "keep_cache": True})
    return spec.model_copy(update={"tasks": [task], "budget": spec.budget.model_copy(update={"steps": 2}),
                                   "execution": execution})


@pytest.fixture(scope="module")
def smoke_toxicity():
    return narrow(load_spec(preset="smoke"), tasks=["toxicity"])


@pytest.fixture(scope="module")
def counted():
    """Records the settings of every call of the sampler (one per observed model, one per rejection pool)."""
    calls = []
    real = runner_module.generate

    def generate(model, tokenizer, prompts, settings, *args, **kwargs):
        calls.append(settings)
        return real(model, tokenizer, prompts, settings, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner_module, "generate", generate)  # the sampler every Runner.generate calls
        yield calls


@pytest.fixture(scope="module")
def swept(smoke_toxicity, counted, tmp_path_factory):
    """Base and full fine-tuning on the toxicity task; the number of sampler calls it made."""
    out = tmp_path_factory.mktemp("toxicity-sweep")
    result = run_sweep(small(narrow(smoke_toxicity, methods=["full"])), out, progress=False)
    assert result.failed == [] and result.finished == 2
    n_calls = len(counted)
    counted.clear()
    return out, n_calls


def test_sweep_stores_samples_and_metrics(swept, smoke_toxicity):
    out, n_calls = swept
    assert n_calls == 5  # base samples and rejection pool, the validation prompts' own two, full fine-tune samples
    store = Store.in_dir(out)
    runs = {r["method"]: r["run_id"] for r in store.runs()}
    train = store.samples(runs["base"], kind="train")
    assert train and all(s["score"] < smoke_toxicity.tasks[0].options["threshold"] for s in train)
    assert {s["note"] for s in train} <= {"kept", "rewritten", "resampled"}
    assert store.samples(runs["full"], kind="train") == []
    n_eval = len(store.samples(runs["full"], kind="eval"))
    assert n_eval > 0 and n_eval == len(store.samples(runs["base"], kind="eval"))
    metrics = {(m["run_id"], m["metric"], m["split"], m["group_name"]): m["value"] for m in store.metrics()}
    assert (runs["full"], "kl_to_full", None, None) in metrics
    assert metrics[runs["full"], "validation_loss", "validation", None] > 0  # what tuning would select on
    assert not [k for k in metrics if k[2] == "validation" and k[1] != "validation_loss"]
    assert metrics[runs["full"], "toxicity_rate_vs_full", "heldout", None] == 0.0
    kept = metrics[runs["base"], "counterfactual_kept", None, None]
    assert kept + metrics[runs["base"], "counterfactual_resampled", None, None] == len(train)


def test_fine_tuning_data_is_saved_beside_the_store(swept):
    out, _ = swept
    files = list((out / "data").glob("toxicity-*-seed0.jsonl"))
    assert len(files) == 1
    saved = read_examples(files[0])
    store = Store.in_dir(out)
    base_id = next(r["run_id"] for r in store.runs() if r["method"] == "base")
    stored = store.samples(base_id, kind="train")
    store.close()
    key = lambda r: (r["prompt"], r["completion"])  # noqa: E731
    assert sorted(map(key, saved)) == sorted(map(key, stored))
    meta = {key(r): (r["score"], r["note"], r["group_name"]) for r in stored}
    assert all(meta[key(r)] == (r["score"], r["source"], r["group"]) for r in saved)


def test_unchanged_settings_reuse_generations_and_changed_ones_regenerate(swept, smoke_toxicity, counted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(swept[0], out)
    with_lora = small(narrow(smoke_toxicity, methods=["full", "lora"]))
    with_lora = with_lora.model_copy(update={"methods": [with_lora.methods[0], with_lora.methods[1].model_copy(
        update={"sweep": {"rank": [1]}})]})
    again = run_sweep(with_lora, out, progress=False)
    assert again.skipped == 2 and again.finished == 1 and len(counted) == 1  # only the new LoRA run samples
    counted.clear()
    hotter = small(narrow(smoke_toxicity, methods=["full"]), temperature=0.7)
    run_sweep(hotter, out, progress=False)
    assert [s.temperature for s in counted] == [0.7] * 5  # the base's four generations, then the full fine-tune
    counted.clear()


def test_report_shows_escaped_samples_behind_a_content_warning(swept, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(swept[0], out)
    store = Store.in_dir(out)
    run_id = next(r["run_id"] for r in store.runs() if r["method"] == "full")
    store.db.execute("INSERT INTO samples VALUES (?, 'eval', 'The man likes to', ?, 0.99, 'gender/men', 'heldout', NULL)",
                     (run_id, XSS))
    store.close()
    paths = build_report(out)
    html = paths.html.read_text()
    warned = html[html.index('<details class="content-warning">'):]
    warned = warned[: warned.index("</details>")]
    assert "Content warning" in warned and "most toxic completions, full" in warned
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in warned and XSS not in html
    assert XSS not in paths.markdown.read_text()
    assert any(p.name.endswith("toxicity-by-group.png") for p in paths.plots)
    assert "own bias on neutral sentences" in html and "Toxicity rate (identity masked)" in html


def test_report_pairs_every_two_methods_from_the_stored_scores(swept):
    """The report's full-vs-base difference, computed from stored samples, equals the run's own paired metric."""
    out, _ = swept
    data = load(out)
    table = toxicity_pair_table(data, "toxicity")
    assert table is not None and [c.group for c in table.columns][:3] == ["Method A", "Method B", "Split"]
    store = Store.in_dir(out)
    full_id = next(r["run_id"] for r in store.runs() if r["method"] == "full")
    stored = {(m["metric"], m["split"]): m for m in store.metrics() if m["run_id"] == full_id and m["group_name"] is None}
    store.close()
    by_split = {row[2]: row for row in table.rows}
    assert set(by_split) == {"train", "heldout"}
    for split, row in by_split.items():
        assert row[:2] == ["full", "base"]
        m = stored["toxicity_rate_vs_base", split]
        assert float(row[4]) == pytest.approx(m["value"], abs=5e-4)
        lo, hi = (float(x) for x in row[5].strip("[]").split(", "))
        assert lo <= float(row[4]) <= hi
        assert (lo, hi) == pytest.approx((m["ci_low"], m["ci_high"]), abs=0.05)  # same data, another resample order
        assert row[6] == ("yes" if lo > 0 or hi < 0 else "no")


def test_no_pair_table_without_scored_samples(tmp_path, smoke_spec):
    out = tmp_path / "debias"
    assert run_sweep(narrow(smoke_spec, methods=["full"]).model_copy(update={"budget": smoke_spec.budget.model_copy(
        update={"steps": 2})}), out, progress=False).failed == []
    assert toxicity_pair_table(load(out), "debias") is None
    (data_file,) = (out / "data").glob("debias-*-seed0.jsonl")
    rows = read_examples(data_file)
    assert rows and all(set(r) == {"prompt", "completion"} and r["completion"].strip() for r in rows)
