"""The sweep end to end on the smoke preset: outputs, resume after a crash, determinism, failures."""

import contextlib
import json
import subprocess
from types import SimpleNamespace

import pytest
import torch

from lowrank_audit import run_step, sweep as sweep_module
from lowrank_audit.config.spec import MethodSpec
from lowrank_audit.errors import AuditError
from lowrank_audit.executors import EXECUTORS, LocalExecutor
from lowrank_audit.store import Store
from lowrank_audit.sweep import run_sweep
from lowrank_audit.train import TrainingDiverged

TIMING = {"train_seconds", "seconds_per_step", "tokens_per_second", "peak_rss_mb", "eval_seconds"}


def results(out):
    """Every non-timing metric, keyed so two stores can be compared row by row."""
    store = Store.in_dir(out)
    return {(m["run_id"], m["metric"], m["group_name"], m["split"], m["layer"]): (m["value"], m["ci_low"], m["ci_high"])
            for m in store.metrics() if m["metric"] not in TIMING}


def test_smoke_sweep_end_to_end(smoke_spec, tmp_path):
    result = run_sweep(smoke_spec, tmp_path, progress=False)
    assert result.failed == [] and result.finished == result.planned == 4
    runs = {(r["method"], r["rank"]): r for r in Store.in_dir(tmp_path).runs()}
    assert set(runs) == {("base", None), ("full", None), ("lora", 1), ("lora", 4)}
    assert all(r["status"] == "finished" for r in runs.values())
    assert (tmp_path / runs["lora", 4]["artifact"] / "adapter_config.json").is_file()
    assert not (tmp_path / runs["full", None]["artifact"]).exists() and not (tmp_path / "cache").exists()
    assert set(result.pruned.removed) == {"full-rank weights", "observation cache"}  # removed once all finished
    metrics = {(m["run_id"], m["metric"], m["split"]) for m in Store.in_dir(tmp_path).metrics() if m["group_name"] is None}
    params = {m["run_id"]: m["value"] for m in Store.in_dir(tmp_path).metrics() if m["metric"] == "trainable_params"}
    assert params[runs["lora", 1]["run_id"]] < params[runs["lora", 4]["run_id"]] < params[runs["full", None]["run_id"]]
    for method in [("full", None), ("lora", 1)]:
        rid = runs[method]["run_id"]
        for name in ("shift_recovered", "target_fit", "group_gap", "group_js"):
            assert (rid, name, "heldout_templates") in metrics
        assert (rid, "kl_to_full", None) in metrics and (rid, "drift_neutral", None) in metrics
        for name in ("weight_intruders", "forgetting", "general_loss", "general_accuracy"):  # every trained run has them
            assert (rid, name, None) in metrics
    assert (runs["base", None]["run_id"], "kl_to_full", None) in metrics
    weights = {(m["run_id"], m["metric"]): m["value"] for m in Store.in_dir(tmp_path).metrics()
               if m["metric"].startswith("weight_") and m["group_name"] is None and m["layer"] is None}
    lora1, full = runs["lora", 1]["run_id"], runs["full", None]["run_id"]
    assert 0.0 < weights[lora1, "weight_energy_outside"] < 1.0
    assert 0.0 <= weights[lora1, "weight_subspace_overlap"] <= 1.0
    assert weights[lora1, "weight_effective_rank"] <= 1.0 + 1e-3 < weights[full, "weight_effective_rank"]
    assert (full, "weight_subspace_overlap") not in weights

    again = run_sweep(smoke_spec, tmp_path, progress=False)
    assert again.finished == 0 and again.skipped == 4


def test_same_config_and_seed_give_the_same_numbers(smoke_spec, tmp_path):
    run_sweep(smoke_spec, tmp_path / "a", progress=False)
    run_sweep(smoke_spec, tmp_path / "b", progress=False)
    assert results(tmp_path / "a") == results(tmp_path / "b")


def test_killed_sweep_resumes_and_matches_an_uninterrupted_one(smoke_spec, tmp_path, monkeypatch):
    run_sweep(smoke_spec, tmp_path / "clean", progress=False)
    real_train, calls = run_step.train, {"n": 0}

    def dies_on_second_run(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # what a kill looks like to the code in flight
        return real_train(*args, **kwargs)

    monkeypatch.setattr(run_step, "train", dies_on_second_run)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(smoke_spec, tmp_path / "crash", progress=False)
    store = Store.in_dir(tmp_path / "crash")
    statuses = sorted(r["status"] for r in store.runs())
    assert statuses == ["finished", "finished", "running"]  # full and base finished; the killed LoRA run left no metrics
    running = [r["run_id"] for r in store.runs() if r["status"] == "running"]
    assert not [m for m in store.metrics() if m["run_id"] in running]

    monkeypatch.setattr(run_step, "train", real_train)
    resumed = run_sweep(smoke_spec, tmp_path / "crash", progress=False)
    assert resumed.skipped == 2 and resumed.finished == 2
    assert results(tmp_path / "crash") == results(tmp_path / "clean")


def test_killed_after_saving_its_weights_a_run_evaluates_them_instead_of_retraining(smoke_spec, tmp_path, monkeypatch,
                                                                                     caplog, tool_lines):
    """Killed between saving the weights and the store's record of the run: the re-run loads the saved weights and
    ends with a clean run's numbers, without training that run again."""
    run_sweep(smoke_spec, tmp_path / "clean", progress=False)

    def killed(folder):
        raise KeyboardInterrupt  # the first trained run (the full fine-tune) dies right after its weights are saved

    monkeypatch.setattr(run_step, "remove_checkpoints", killed)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(smoke_spec, tmp_path / "crash", progress=False)
    assert [r["status"] for r in Store.in_dir(tmp_path / "crash").runs()] == ["running"]

    monkeypatch.undo()
    real_train_run, trained = run_step.train_run, []
    monkeypatch.setattr(run_step, "train_run", lambda job, *a: trained.append(job.run.method) or real_train_run(job, *a))
    caplog.clear()  # only the lines of the re-run
    resumed = run_sweep(smoke_spec, tmp_path / "crash", progress=False)
    assert resumed.finished == 4 and sorted(trained) == ["lora", "lora"]  # the full fine-tune was not trained again
    assert any("evaluating the weights an interrupted attempt trained" in line for line in tool_lines())
    assert results(tmp_path / "crash") == results(tmp_path / "clean")


def test_nan_loss_fails_one_run_and_the_sweep_goes_on(smoke_spec, tmp_path, monkeypatch):
    real_train = run_step.train

    def diverges_at_rank_1(model, method, *args, **kwargs):
        if method.rank == 1:
            raise TrainingDiverged(7, float("nan"))
        return real_train(model, method, *args, **kwargs)

    monkeypatch.setattr(run_step, "train", diverges_at_rank_1)
    result = run_sweep(smoke_spec, tmp_path, progress=False)
    assert len(result.failed) == 1 and "step 7" in result.failed[0][1]
    runs = {(r["method"], r["rank"]): r for r in Store.in_dir(tmp_path).runs()}
    assert runs["lora", 1]["status"] == "failed" and "loss became nan at step 7" in runs["lora", 1]["error"]
    assert runs["lora", 4]["status"] == "finished"


class ReferenceLast(LocalExecutor):
    """Measures every run first and hands over the full fine-tune's measurement last, an order Ray may give."""

    def run(self, work, jobs, context):
        measured = [(job, work(job, shared, context)) for job, shared in jobs]
        assert measured[0][0].is_reference  # the order the sweep hands jobs out in, reversed below
        yield from sorted(measured, key=lambda pair: pair[0].is_reference)


def test_runs_measured_before_the_full_fine_tune_are_scored_against_it(smoke_spec, tmp_path, monkeypatch, caplog,
                                                                       tool_lines):
    expected = results_of_clean(smoke_spec, tmp_path / "in-order")
    monkeypatch.setitem(EXECUTORS._items, "local", ReferenceLast)
    caplog.clear()  # only the lines of the sweep below
    result = run_sweep(smoke_spec, tmp_path / "reference-last", progress=False)
    assert result.failed == [] and result.finished == 4
    assert len([m for m in tool_lines() if "scored and stored once its group's full fine-tune is" in m]) == 3
    got = results(tmp_path / "reference-last")
    assert sum(key[1] == "kl_to_full" for key in got) == 4  # base, full, LoRA r=1 and r=4
    assert got == expected


@pytest.mark.parametrize("order", ["reference first", "reference last"])
def test_a_failed_full_fine_tune_leaves_the_others_scored_without_it(smoke_spec, tmp_path, monkeypatch, order):
    if order == "reference last":
        monkeypatch.setitem(EXECUTORS._items, "local", ReferenceLast)
    real_train = run_step.train

    def full_diverges(model, method, *args, **kwargs):
        if method.name == "full":
            raise TrainingDiverged(3, float("inf"))
        return real_train(model, method, *args, **kwargs)

    monkeypatch.setattr(run_step, "train", full_diverges)
    result = run_sweep(smoke_spec, tmp_path, progress=False)
    assert [e.split(";")[0] for _, e in result.failed] == ["loss became inf at step 3"]
    metrics = {}
    for m in Store.in_dir(tmp_path).metrics():
        metrics.setdefault(m["run_id"], set()).add(m["metric"])
    runs = {(r["method"], r["rank"]): r for r in Store.in_dir(tmp_path).runs()}
    assert {k: r["status"] for k, r in runs.items()} == {("full", None): "failed", ("base", None): "finished",
                                                         ("lora", 1): "finished", ("lora", 4): "finished"}
    for key in [("base", None), ("lora", 1), ("lora", 4)]:
        names = metrics[runs[key]["run_id"]]
        assert "shift_recovered" in names and "kl_to_full" not in names  # nothing measured against a missing run
    assert "weight_update_norm" in metrics[runs["lora", 1]["run_id"]]
    assert "weight_subspace_overlap" not in metrics[runs["lora", 1]["run_id"]]


def test_references_take_the_full_fine_tunes_measurement_only_if_it_succeeded():
    base, refs = {"x": 1}, run_step.References({"x": 1})
    done = run_step.Measured(observation={"x": 2}, spectra={"w": 3})
    assert refs.with_reference(done) == run_step.References(base, {"x": 2}, {"w": 3})
    assert refs.with_reference(run_step.Measured(error="boom")) is refs


def test_a_method_that_changes_nothing_is_an_error_not_a_result(smoke_spec, tmp_path, monkeypatch):
    real_train = run_step.train

    def never_steps(model, method, examples, tokenizer, budget, *args, **kwargs):
        return real_train(model, method, examples, tokenizer, budget.model_copy(update={"steps": 1}), *args, **kwargs)

    def frozen(self, model):  # an optimizer that never updates (SGD at rate 0): the LoRA B matrices stay zero
        return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)

    monkeypatch.setattr(run_step, "train", never_steps)
    from lowrank_audit.methods.lora import Lora

    monkeypatch.setattr(Lora, "optimizer", frozen)
    result = run_sweep(smoke_spec, tmp_path, progress=False)
    errors = [e for _, e in result.failed]
    assert len(errors) == 2 and all("changed nothing" in e for e in errors)


def keeping(spec):
    """`spec` with the full fine-tunes' weights and the observation cache kept once the sweep has finished."""
    return spec.model_copy(update={"execution": spec.execution.model_copy(
        update={"keep_full_weights": True, "keep_cache": True})})


def test_missing_reference_cache_is_rebuilt_from_saved_weights(smoke_spec, tmp_path):
    first = keeping(smoke_spec.model_copy(update={"methods": smoke_spec.methods[:1]}))
    run_sweep(first, tmp_path, progress=False)
    for f in (tmp_path / "cache").glob("*"):
        f.unlink()
    result = run_sweep(smoke_spec, tmp_path, progress=False)
    assert result.finished == 2 and result.skipped == 2
    assert results(tmp_path) == results_of_clean(smoke_spec, tmp_path / "clean")


def test_removed_reference_weights_are_trained_again_for_a_later_sweep(smoke_spec, tmp_path):
    first = smoke_spec.model_copy(update={"methods": smoke_spec.methods[:1]})
    done = run_sweep(first, tmp_path, progress=False)
    assert set(done.pruned.removed) == {"full-rank weights", "observation cache"}
    assert not list((tmp_path / "runs").glob("*/model.safetensors")) and not (tmp_path / "cache").exists()
    result = run_sweep(smoke_spec, tmp_path, progress=False)
    assert result.finished == 3 and result.skipped == 1  # the full fine-tune again (the new runs' reference), 2 LoRAs
    assert results(tmp_path) == results_of_clean(smoke_spec, tmp_path / "clean")


def test_a_sweep_with_a_failed_run_keeps_the_weights_and_the_cache(smoke_spec, tmp_path, monkeypatch):
    real_train = run_step.train

    def diverges_at_rank_1(model, method, *args, **kwargs):
        if method.rank == 1:
            raise TrainingDiverged(3, float("nan"))
        return real_train(model, method, *args, **kwargs)

    monkeypatch.setattr(run_step, "train", diverges_at_rank_1)
    result = run_sweep(smoke_spec, tmp_path, progress=False)
    assert len(result.failed) == 1 and result.pruned is None  # the re-run that retries it needs both
    assert list((tmp_path / "runs").glob("*/model.safetensors")) and (tmp_path / "cache").is_dir()


def results_of_clean(spec, out):
    run_sweep(spec, out, progress=False)
    return results(out)


def test_store_of_another_experiment_is_refused(smoke_spec, tmp_path):
    run_sweep(smoke_spec.model_copy(update={"methods": smoke_spec.methods[:1]}), tmp_path, progress=False)
    other = smoke_spec.model_copy(update={"name": "other"})
    with pytest.raises(AuditError, match="different experiment"):
        run_sweep(other, tmp_path, progress=False)


def test_unwritable_output_folder_is_refused_before_loading(smoke_spec, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AuditError, match="not writable"):
        run_sweep(smoke_spec, blocker / "out", progress=False)


def test_run_config_is_stored_and_ids_are_stable(smoke_spec, tmp_path):
    run_sweep(smoke_spec.model_copy(update={"methods": smoke_spec.methods[:1]}), tmp_path, progress=False)
    (full,) = [r for r in Store.in_dir(tmp_path).runs() if r["method"] == "full"]
    config = json.loads(full["config_json"])
    assert config["method"] == {"name": "full", "options": {"lr": 1e-3, "weight_decay": 0.0}}
    assert config["budget"]["steps"] == 10 and config["precision"] == "fp32"
    from lowrank_audit.plan import run_id

    assert run_id(config) == full["run_id"]


def test_too_little_disk_space_is_refused_before_training(smoke_spec, tmp_path, monkeypatch):
    free = {"bytes": 10 * 2**20}
    monkeypatch.setattr(sweep_module.shutil, "disk_usage", lambda path: SimpleNamespace(free=free["bytes"]))
    with pytest.raises(AuditError, match=r"has 10 MB free, but the pending runs will save about \d+ MB"):
        run_sweep(smoke_spec, tmp_path, progress=False)
    assert Store.in_dir(tmp_path).runs() == []  # nothing started
    free["bytes"] = 2**40
    assert run_sweep(smoke_spec.model_copy(update={"methods": smoke_spec.methods[:1]}), tmp_path, progress=False).failed == []


@contextlib.contextmanager
def tmpfs(path, options):
    """A real small (or read-only) file system: root in a sandbox that allows mounts, else the test is skipped."""
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)  # weights the test still maps do not block it


@pytest.mark.parametrize("options, message", [("size=1m", "MB free"), ("size=1m,ro", "Read-only file system")])
def test_full_or_read_only_disk_is_refused(smoke_spec, tmp_path, options, message):
    with tmpfs(tmp_path / "disk", options) as disk:
        with pytest.raises(AuditError, match=message):
            run_sweep(smoke_spec, disk / "out", progress=False)


def test_rerunning_a_finished_sweep_says_nothing_to_do_without_loading_the_model(tmp_path, monkeypatch, capsys):
    from lowrank_audit.cli import main

    args = ["lowrank-audit", "--verbose", "run", "--preset", "smoke", "--task", "debias", "--method", "lora",
            "--out", str(tmp_path / "out"), "--no-progress"]
    monkeypatch.setattr("sys.argv", args)
    with pytest.raises(SystemExit) as first:
        main()
    assert first.value.code == 0 and "3 run(s) finished" in capsys.readouterr().out

    def no_model(*args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(sweep_module, "load_model", no_model)
    with pytest.raises(SystemExit) as again:
        main()
    out = capsys.readouterr()
    assert again.value.code == 0, out.err
    assert "nothing to do: all 3 run(s) are in the store and the report is up to date." in out.out
    assert "loading model" not in out.out


def test_a_finished_sweep_with_a_parameter_budget_reruns_without_loading_the_model(smoke_spec, tmp_path, monkeypatch):
    """Under `budget.params` the runs' sizes are chosen on the model; the re-run answers from the plan the sweep
    recorded, and a run of that plan that is not finished sends it back to the model."""
    spec = smoke_spec.model_copy(update={"methods": [MethodSpec(name="vera")],
                                         "budget": smoke_spec.budget.model_copy(update={"params": 300})})
    first = run_sweep(spec, tmp_path, progress=False)
    assert first.planned == 2 and not first.failed  # base and vera, vera's size chosen on the model

    def no_model(*args):
        raise AssertionError("the model was loaded")

    with monkeypatch.context() as m:
        m.setattr(sweep_module, "load_model", no_model)
        again = run_sweep(spec, tmp_path, progress=False)
    assert (again.planned, again.skipped) == (2, 2)

    store = Store.in_dir(tmp_path)
    vera = next(r["run_id"] for r in store.runs() if r["method"] == "vera")
    store.fail_run(vera, "killed")
    store.close()
    with monkeypatch.context() as m, pytest.raises(AssertionError, match="the model was loaded"):
        m.setattr(sweep_module, "load_model", no_model)
        run_sweep(spec, tmp_path, progress=False)
