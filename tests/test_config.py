"""Config loading: every preset validates; bad input gets a one-line error that names the key path."""

import pytest

from lowrank_audit.config import PRESETS
from lowrank_audit.experiment import load_spec, narrow
from lowrank_audit.errors import AuditError


def write(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


VALID = """
name: t
model: {source: tiny}
tasks: [{name: debias}]
methods:
  - {name: full}
  - {name: lora, sweep: {rank: [1, 2]}}
budget: {steps: 3}
"""


@pytest.mark.parametrize("name", PRESETS)
def test_every_shipped_preset_loads(name):
    spec = load_spec(preset=name)
    assert spec.name == name


def test_presets_are_the_documented_ones():
    assert {"smoke", "quick", "paper"} <= set(PRESETS)


def test_valid_file_loads(tmp_path):
    spec = load_spec(write(tmp_path, VALID))
    assert [m.name for m in spec.methods] == ["full", "lora"]


@pytest.mark.parametrize(
    "text, message",
    [
        (VALID.replace("budget: {steps: 3}", "budget: {steps: 3, stepz: 4}"), r"budget\.stepz: Extra inputs"),
        (VALID.replace("{name: full}", "{name: full, options: {rnk: 3}}"), r"methods\[0\]\.rnk: Extra inputs"),
        (VALID.replace("rank: [1, 2]", "rnk: [1, 2]"), r"methods\[1\]\.sweep\.rnk: lora has no option 'rnk'"),
        (VALID.replace("rank: [1, 2]", "rank: [0]"), r"methods\[1\]\.rank: Input should be greater than 0"),
        (VALID.replace("{name: full}", "{name: lora_x}"), r"unknown method 'lora_x'.*Did you mean 'lora'"),
        (VALID.replace("name: debias", "name: debias2"), r"unknown task 'debias2'.*Known tasks: .*debias"),
        (VALID.replace("{steps: 3}", "{steps: 0}"), r"budget\.steps: Input should be greater than 0"),
        (VALID.replace("{source: tiny}", "{source: hf}"), r"model: Value error, source 'hf' needs 'path'"),
        (VALID.replace("name: debias}", "name: debias, options: {target: median}}"), r"tasks\[0\]\.options\.target"),
        (VALID.replace("{name: full}", "{name: base}"), r"'base' is added to every sweep"),
        (VALID + "execution: {ray_address: 'ray://head:10001'}\n", r"execution: Value error, 'ray_address' is only used"),
        (VALID + "execution: {checkpoint_every: -1}\n", r"execution\.checkpoint_every: Input should be greater than"),
        (VALID + "analysis: {intruder_epsilon: 0}\n", r"analysis\.intruder_epsilon: Input should be greater than 0"),
        (VALID + "analysis: {intruder_top_k: 0}\n", r"analysis\.intruder_top_k: Input should be greater than 0"),
        ("name: [unclosed", r"is not valid YAML"),
        ("- just\n- a list\n", r"must hold a YAML mapping"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, text, message):
    with pytest.raises(AuditError, match=message):
        load_spec(write(tmp_path, text))


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(AuditError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(AuditError, match=r"unknown preset 'quik'.*Did you mean 'quick'"):
        load_spec(preset="quik")


def test_yaml_is_loaded_safely(tmp_path):
    with pytest.raises(AuditError, match="not valid YAML"):
        load_spec(write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n"))


def test_narrow_keeps_named_tasks_and_methods(tmp_path):
    spec = load_spec(write(tmp_path, VALID))
    assert [m.name for m in narrow(spec, methods=["lora"]).methods] == ["lora"]
    assert [t.name for t in narrow(spec, tasks=["debias"]).tasks] == ["debias"]
    with pytest.raises(AuditError, match="unknown method 'nosuch'"):
        narrow(spec, methods=["nosuch"])


def test_analysis_options_change_only_trained_runs_ids_and_only_when_not_default(tmp_path):
    from lowrank_audit.plan import plan_runs

    def ids(text):
        return {(r.method, r.run_id) for r in plan_runs(load_spec(write(tmp_path, text)), "m", "fp32")}

    default = ids(VALID)
    assert ids(VALID + "analysis: {intruder_top_k: 10, intruder_epsilon: 0.5}\n") == default
    changed = ids(VALID + "analysis: {intruder_epsilon: 0.3}\n")
    assert {m for m, _ in changed - default} == {"full", "lora"} and ("base", dict(default)["base"]) in changed
