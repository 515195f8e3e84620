"""Checking a config and building a report import none of torch, transformers and peft (issue 23): a config error
answers in about a second, and `report` runs where only the store is. Each check runs in a fresh interpreter, since
this one has imported them already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lowrank_audit
from lowrank_audit.methods import METHODS
from lowrank_audit.store import Store
from lowrank_audit.tasks import TASKS

from test_report import _add, _debias_metrics

HEAVY = ("torch", "transformers", "peft")
SOURCE = str(Path(lowrank_audit.__file__).parents[1])
PROBE = """import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr))
{body}
"""
CLI = 'sys.argv = ["lowrank-audit", *sys.argv[1:]]\nfrom lowrank_audit.cli import main\nmain()'
TINY = "name: x\nmodel: {source: tiny}\nbudget: {steps: 2}\n"
BAD = [  # (config, what its one-line error says)
    (TINY + "tasks: [{name: debias}]\nmethods: [{name: full, options: {lr: .inf}}]\n",
     "methods[0].lr: Input should be a finite number"),
    (TINY + "tasks: [{name: debias}]\nmethods: [{name: lroa}]\n", "unknown method 'lroa'. Did you mean 'lora'"),
    (TINY + "tasks: [{name: debais}]\nmethods: [{name: lora}]\n", "unknown task 'debais'. Did you mean 'debias'"),
    (TINY + "tasks: [{name: debias, options: {samples_per_prompt: 0}}]\nmethods: [{name: lora}]\n",
     "tasks[0].options.samples_per_prompt"),
    (TINY + "tasks: [{name: toxicity, options: {scorer: {name: perspective}}}]\nmethods: [{name: lora}]\n",
     "unknown scorer 'perspective'"),
    (TINY + "tasks: [{name: decisions, options: {reference_policy: fair}}]\nmethods: [{name: lora}]\n",
     "unknown reference policy 'fair'"),
    (TINY + "tasks: [{name: debias}]\nmethods: [{name: lora, sweep: {rnak: [1]}}]\n",
     "methods[0].sweep.rnak: lora has no option 'rnak'"),
    (TINY + "tasks: [{name: debias}]\nmethods: [{name: galore, tune: {lr: [1e-3, -1]}}]\n",
     "methods[0].tune.lr: Input should be greater than 0"),
]


def probe(body: str, *args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `body` in a fresh interpreter; its result and the heavy libraries it had imported when it exited."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY, body=body), *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)
    *_, loaded = proc.stderr.splitlines()
    return proc, json.loads(loaded)


def test_a_bad_config_is_answered_without_the_heavy_libraries(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(BAD[0][0])
    proc, loaded = probe(CLI, "run", str(config), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    error, _ = proc.stderr.splitlines()
    assert error.startswith("error: ") and BAD[0][1] in error
    assert loaded == []
    assert not (tmp_path / "out").exists()


def test_every_option_and_name_error_is_found_without_the_heavy_libraries(tmp_path):
    for i, (text, _) in enumerate(BAD):
        (tmp_path / f"{i}.yaml").write_text(text)
    body = ("from lowrank_audit.errors import AuditError\nfrom lowrank_audit.experiment import load_spec\n"
            f"for i in range({len(BAD)}):\n"
            "    try:\n        load_spec(f'{i}.yaml')\n        print('accepted')\n"
            "    except AuditError as e:\n        print(str(e).replace('\\n', ' '))")
    proc, loaded = probe(body, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for line, (_, expected) in zip(proc.stdout.splitlines(), BAD, strict=True):
        assert expected in line
    assert loaded == []


def test_the_report_is_built_without_the_heavy_libraries(tmp_path):
    store = Store.in_dir(tmp_path)
    store.bind_experiment("fp123", "debias on tiny")
    _add(store, "debias", "base", None, 0, _debias_metrics(0.0, kl_full=0.8, drift=0.0), trainable_params=0)
    _add(store, "debias", "full", None, 0, _debias_metrics(0.95, kl_full=0.0, drift=0.3), trainable_params=1000)
    for seed in (0, 1):
        _add(store, "debias", "lora", 4, seed, _debias_metrics(0.6, seed=seed, kl_full=0.2), trainable_params=40)
    store.close()
    proc, loaded = probe(CLI, "report", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert loaded == []
    html = (tmp_path / "report.html").read_text()
    assert "Shift recovered" in html and "Verdict" in html  # the task's catalogue and headline, read from its card


@pytest.mark.parametrize("registry", [METHODS, TASKS], ids=["methods", "tasks"])
def test_every_implementation_is_its_cards_subclass(registry):
    """What validation and the report read of a card is what the implementation that runs has."""
    for name, card in registry.cards():
        cls = registry.get(name)
        assert issubclass(cls, card) and cls.name == card.name == name and cls.Options is card.Options
        assert registry.card(name) is card  # importing the implementation leaves the card registered
