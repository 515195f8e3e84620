"""Run by tests/test_launch.py under `torchrun`: a launched smoke sweep in which one process (FAIL_PROCESS) fails
alone when it trains the LoRA run, as an out-of-memory error in one process would.

    FAIL_PROCESS=1 ACCELERATE_USE_CPU=1 torchrun --standalone --nproc_per_node 2 tests/launched_failure.py OUT
"""

import os
import sys

from lowrank_audit import run_step
from lowrank_audit.cli import main
from lowrank_audit.train.launch import launch_state

real_train = run_step.train


def train(model, method, *args, **kwargs):
    if method.name == "lora" and launch_state().process_index == int(os.environ["FAIL_PROCESS"]):
        raise RuntimeError(f"out of memory in process {launch_state().process_index}")
    return real_train(model, method, *args, **kwargs)


if __name__ == "__main__":
    run_step.train = train
    sys.argv = ["lowrank-audit", "run", "--preset", "smoke", "--task", "debias", "--out", sys.argv[1], "--no-progress"]
    main()
