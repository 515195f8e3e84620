"""Every registered method, and every `init` of `lora`, trains, saves and is scored through the real sweep path."""

import typing

from test_method_zoo import ZOO

from lowrank_audit.config import BudgetSpec, MethodSpec
from lowrank_audit.methods import METHODS
from lowrank_audit.methods.lora_card import LoraOptions
from lowrank_audit.plan import BASE
from lowrank_audit.store import Store
from lowrank_audit.sweep import run_sweep
from lowrank_audit.train import load_trained


def test_every_method_and_lora_init_trains_and_saves_in_a_sweep(smoke_spec, tmp_path):
    assert set(ZOO) | {BASE} == {name for name, _ in METHODS}, "a registered method has no tiny-model options in ZOO"
    inits = typing.get_args(LoraOptions.model_fields["init"].annotation)
    methods = [MethodSpec(name=name, options=options) for name, options in ZOO.items() if name != "lora"]
    methods.append(MethodSpec(name="lora", options=ZOO["lora"], sweep={"init": list(inits)}))
    task = smoke_spec.tasks[0].model_copy(update={"options": {  # debias at its cheapest: the test is about the methods
        "samples_per_prompt": 1, "token_kl_sequences": 2, "bootstrap_resamples": 20, "lens_prompts": 0}})
    execution = smoke_spec.execution.model_copy(update={"keep_full_weights": True})  # the full-rank runs' weights too
    spec = smoke_spec.model_copy(update={"methods": methods, "tasks": [task], "budget": BudgetSpec(steps=2, batch_size=4),
                                         "execution": execution})
    result = run_sweep(spec, tmp_path, progress=False)
    assert result.failed == []
    store = Store.in_dir(tmp_path)
    runs = store.runs()
    assert {r["status"] for r in runs} == {"finished"}
    trained = [r for r in runs if r["method"] != BASE]
    assert sorted(r["method"] for r in trained) == sorted([n for n in ZOO if n != "lora"] + ["lora"] * len(inits))
    assert {"default", "gaussian", "pissa", "olora"} <= set(inits)
    for r in trained:  # saved completely (trained.json is written last), and scored: metric rows in the store
        assert load_trained(tmp_path / r["artifact"]) is not None, r["method"]
    scored = {m["run_id"] for m in store.metrics() if m["metric"] == "shift_recovered"}
    assert {r["run_id"] for r in runs} <= scored
