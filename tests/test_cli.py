"""The command line: the smoke preset end to end, listings, and one-line errors with exit code 2."""

import os
import subprocess
import sys

import pytest


def cli(*args, cwd=None, env_home=None):
    env = dict(os.environ)
    if env_home:
        env["LOWRANK_AUDIT_HOME"] = str(env_home)
    return subprocess.run([sys.executable, "-m", "lowrank_audit", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_run_smoke_preset_writes_store_report_and_weights(tmp_path):
    out = tmp_path / "out"
    proc = cli("run", "--preset", "smoke", "--out", str(out), "--no-progress", env_home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # the tool's own lines only: no library warnings (transformers' FutureWarnings, ...)
    for name in ("results.sqlite", "report.html", "report.md"):
        assert (out / name).is_file()
    assert list((out / "runs").glob("*/adapter_model.safetensors"))
    assert "lora" in proc.stdout and "report:" in proc.stdout

    proc = cli("report", str(out))
    assert proc.returncode == 0 and "report.html" in proc.stdout


def test_narrowing_to_one_method(tmp_path):
    out = tmp_path / "out"
    proc = cli("run", "--preset", "smoke", "--method", "full", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "runs").exists() or not list((out / "runs").glob("*/adapter_config.json"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--preset", "quik"], "unknown preset 'quik'. Did you mean 'quick'?"),
        (["run", "--preset", "smoke", "--method", "lorra"], "unknown method 'lorra'. Did you mean 'lora'"),
        (["run", "--preset", "smoke", "--task", "toxic"], "unknown task 'toxic'"),
        (["run", "missing.yaml"], "config file missing.yaml does not exist"),
        (["report", "nowhere"], "nowhere"),
        (["run", "--preset", "smoke", "--precision", "fp16"], "command line: precision: Input should be 'auto', 'fp32' or 'bf16'"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, args, message):
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr.replace("\n", " ")
    assert "Traceback" not in proc.stderr


def test_bad_config_names_the_key(tmp_path):
    (tmp_path / "c.yaml").write_text("name: x\nmodel: {source: tiny}\ntasks: [{name: debias}]\n"
                                     "methods: [{name: lora, options: {rank: 2, alpah: 3}}]\nbudget: {steps: 2}\n")
    proc = cli("run", "c.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "methods[0].alpah: Extra inputs are not permitted" in proc.stderr


def test_missing_model_path_is_a_clear_error(tmp_path):
    (tmp_path / "c.yaml").write_text("name: x\nmodel: {source: hf, path: ./no/such/model}\ntasks: [{name: debias}]\n"
                                     "methods: [{name: full}]\nbudget: {steps: 2}\n")
    proc = cli("run", "c.yaml", "--out", "o", cwd=tmp_path)
    assert proc.returncode == 2 and "model path ./no/such/model does not exist" in proc.stderr


def test_methods_and_tasks_list_options():
    methods = cli("methods")
    assert methods.returncode == 0
    for word in ("full", "lora", "rank", "alpha", "base"):
        assert word in methods.stdout
    tasks = cli("tasks")
    assert tasks.returncode == 0 and "debias" in tasks.stdout and "samples_per_prompt" in tasks.stdout


def test_help_shows_no_value_placeholder_after_a_flag():
    from typer.testing import CliRunner

    from lowrank_audit.cli import app

    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│ --")}
    assert "<bool>" not in result.output  # typer's placeholder after a flag without a metavar
    assert lines["--progress"].split()[2:4] == ["--no-progress", "Show"]  # nothing between the flag and its help
    assert lines["--help"].split()[2] == "Show"
    assert lines["--out"].split()[2] == "DIR"  # options that take a value keep theirs


BARS = """
import sys
from lowrank_audit.noise import quiet_libraries
if sys.argv[1] == "quiet":
    quiet_libraries()
from transformers import modeling_gguf_pytorch_utils as gguf  # the tqdm that converts the default model's GGUF file
for _ in gguf.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."):
    pass
for _ in gguf.tqdm(range(3), desc="own bar", disable=False):  # the tool's bars say whether they show
    pass
"""


@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_library_progress_bars_show_only_when_verbose(mode):
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    proc = subprocess.run([sys.executable, "-c", BARS, mode], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert ("Converting and de-quantizing GGUF tensors" in proc.stderr) is (mode == "verbose")
    assert "own bar" in proc.stderr
