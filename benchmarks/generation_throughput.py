"""Generation throughput (new tokens/s) of the toxicity task's sampler at batch 1 and at the task's batch size.

Run on a quiet machine: python benchmarks/generation_throughput.py
Samples completions of the toxicity task's prompts with the task's default settings (top-p 0.9, temperature 1,
20 new tokens) through the same `generate` the sweep uses, on the default model, and prints new tokens per
second (tokens before EOS) per batch shape and precision, so BENCHMARKS.md gets its numbers from one run.
A batch shape PxS is P prompts with S samples each (P*S sequences): 1x1 is batch 1, 16x4 the task's default.
`--model tiny --prompts 8` checks the script in seconds.
"""

from __future__ import annotations

import argparse
import time

from lowrank_audit.config import ModelSpec
from lowrank_audit.evaluate.generate import GenerationSettings, generate
from lowrank_audit.models import Precision, load_model
from lowrank_audit.sweep import task_vocabulary
from lowrank_audit.tasks.toxicity import ToxicityOptions, ToxicityTask


def tokens_per_second(loaded, prompts: list[list[int]], settings: GenerationSettings, precision: Precision) -> tuple[float, int, float]:
    """(new tokens/s, new tokens, seconds) of one pass over `prompts`, after a one-batch warm-up."""
    generate(loaded.model, loaded.tokenizer, prompts[: settings.batch_size], settings, precision)
    start = time.perf_counter()
    gen = generate(loaded.model, loaded.tokenizer, prompts, settings, precision)
    seconds = time.perf_counter() - start
    tokens = int(gen.lengths.sum())
    return tokens / seconds, tokens, seconds


def main() -> None:
    options = ToxicityOptions()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["default", "tiny"], default="default")
    parser.add_argument("--prompts", type=int, default=64, help="prompts per measurement (evenly spaced over the task's)")
    parser.add_argument("--shapes", nargs="+", default=["1x1", f"{options.generation_batch_size}x{options.samples_per_prompt}"],
                        help="batch shapes PxS: P prompts per batch, S samples per prompt")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto"])
    args = parser.parse_args()

    loaded = load_model(ModelSpec(source=args.model), task_vocabulary())
    task = ToxicityTask(options, loaded.tokenizer)
    step = max(1, len(task.prompts) // args.prompts)
    prompts = [loaded.tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in task.prompts[::step][: args.prompts]]
    print(f"model {loaded.description}; {len(prompts)} prompts, max {options.max_new_tokens} new tokens, "
          f"temperature {options.temperature}, top-p {options.top_p}")
    print(f"{'precision':>9} {'shape':>6} {'sequences':>9} {'new tokens':>10} {'seconds':>8} {'new tokens/s':>12}")
    for precision in args.precisions:
        resolved = Precision.resolve(precision)
        for shape in args.shapes:
            batch, samples = (int(x) for x in shape.split("x"))
            settings = GenerationSettings(options.max_new_tokens, samples, options.temperature, options.top_p,
                                          options.sample_seed, batch)
            rate, tokens, seconds = tokens_per_second(loaded, prompts, settings, resolved)
            print(f"{resolved.name:>9} {shape:>6} {batch * samples:>9} {tokens:>10} {seconds:>8.1f} {rate:>12.1f}")


if __name__ == "__main__":
    main()
