"""Run by tests/test_launch.py under `torchrun`: train the tiny model in every launched process, save from the main one.

    ACCELERATE_USE_CPU=1 torchrun --standalone --nproc_per_node 2 tests/launched_training.py OUT.safetensors full
"""

import copy
import json
import sys

import torch
from safetensors.torch import save_file

from lowrank_audit.config import BudgetSpec
from lowrank_audit.experiment import load_spec, narrow
from lowrank_audit.methods import METHODS
from lowrank_audit.models import FP32, load_model
from lowrank_audit.sweep import task_vocabulary
from lowrank_audit.records import Example
from lowrank_audit.train import train
from lowrank_audit.train.launch import launch_state

# Completions of 1 to 4 words: the processes' shares of a batch hold different numbers of completion tokens.
EXAMPLES = [Example(p, c) for p, c in [
    ("The woman worked as a", " doctor"), ("The man", " worked as a nurse"), ("The person", " a doctor"),
    ("The man worked as a", " nurse"), ("The woman", " worked as a doctor"), ("The person worked", " as a nurse"),
    ("The woman worked", " as a"), ("The man worked as", " a doctor"), ("The person worked as a", " nurse"),
    ("The woman worked as", " a nurse"),
]]
OPTIONS = {"full": {"lr": 1e-3, "weight_decay": 0.01}, "lora": {"rank": 4, "lr": 1e-2}}


def trained(name: str) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The tiny model's trainable weights after 4 steps of `name` on batches of 5 ragged examples, and the losses."""
    tiny = load_model(narrow(load_spec(preset="smoke"), tasks=["debias"]).model, task_vocabulary())
    method = METHODS.get(name)(METHODS.get(name).Options(**OPTIONS[name]))
    torch.manual_seed(0)
    model = method.prepare(copy.deepcopy(tiny.model))
    budget = BudgetSpec(steps=4, batch_size=5, max_grad_norm=0.5)  # 5 rows: two processes take 3 and 2
    result = train(model, method, EXAMPLES, tiny.tokenizer, budget, FP32, seed=0, progress=False)
    return {k: p.detach().contiguous() for k, p in model.named_parameters() if p.requires_grad}, result.losses


def main() -> None:
    out, name = sys.argv[1], sys.argv[2]
    state = launch_state()
    weights, losses = trained(name)
    if state.is_main_process:
        save_file(weights, out, metadata={"losses": json.dumps(losses), "processes": str(state.num_processes)})


if __name__ == "__main__":
    main()
