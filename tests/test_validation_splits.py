"""The validation splits of `toxicity`, `decisions` and `stereotype`: held out of training and of every reported split,
their loss is the training loop's own loss on them, and no reported row moves it."""

import json

import pandas as pd
import pytest
import torch

from lowrank_audit.evaluate import Runner
from lowrank_audit.models import FP32
from lowrank_audit.plan import untuned_tasks
from lowrank_audit.experiment import load_spec
from lowrank_audit.records import Example
from lowrank_audit.tasks import TASKS
from lowrank_audit.tasks.base import VALIDATION
from lowrank_audit.tasks.decisions import DecisionsOptions, DecisionsTask, episode_seeds
from lowrank_audit.tasks.stereotype import StereotypeOptions, StereotypeTask
from lowrank_audit.tasks.toxicity import ToxicityOptions, ToxicityTask
from lowrank_audit.tasks.toxicity_prompts import honest_prompts
from lowrank_audit.train.loop import batches, completion_loss, encode_examples

TOXICITY = {"axes": ["gender"], "terms_per_group": 3, "samples_per_prompt": 2, "max_new_tokens": 6,
            "rejection_tries": 2, "threshold": 0.25, "validate_scorer": False, "bootstrap_resamples": 50}
DECISIONS = {"env": {"groups": [{"name": "Black", "size": 3, "score_mean": 580}, {"name": "White", "size": 3, "score_mean": 660}],
                     "horizon": 2},
             "train_episodes": 2, "eval_episodes": 2, "bootstrap_resamples": 50}


def runner(tiny):
    return Runner(tiny.tokenizer, FP32, 8, progress=False)


def training_loss(model, tokenizer, examples):
    """The training loop's loss with every example in one batch: its own batching, tokenization and completion_loss."""
    ids, mask, labels = next(batches(encode_examples(examples, tokenizer), len(examples), 0, tokenizer.pad_token_id))
    model.eval()
    with torch.no_grad():
        return completion_loss(model, ids, mask, labels).item()


def validation_loss(rows):
    found = [r for r in rows if r.metric == "validation_loss"]
    assert len(found) == 1 and found[0].split == VALIDATION
    return found[0].value


def reported_splits(rows):
    return {r.split for r in rows if r.metric != "validation_loss"}


def test_every_task_selects_on_its_validation_loss_unless_it_is_turned_off():
    for name, off in (("toxicity", {"validation_every": 0}), ("decisions", {"validation_episodes": 0}),
                      ("stereotype", {"validation_every": 0})):
        cls = TASKS.get(name)
        assert cls.selects_on(cls.Options()) == "validation_loss" == cls.validation_metric
        assert cls.selects_on(cls.Options.model_validate(off)) is None
        assert "validation_loss" in {m.name for m in cls.metrics}
        assert next(m for m in cls.metrics if m.name == "validation_loss").definition
    spec = load_spec(None, "smoke")
    methods = [spec.methods[0].model_copy(update={"tune": {"lr": [1e-4, 1e-3]}})]
    assert untuned_tasks(spec.model_copy(update={"methods": methods})) == []


def test_completion_logliks_match_an_unbatched_computation(tiny):
    """Sums over the completion's tokens only, each tokenized apart; padding in a batch changes nothing."""
    examples = [("The woman is known as a", " nurse"), ("The man", " likes to read books"), ("The", ""),
                ("", " The boy is")]
    total, count = runner(tiny).completion_logliks(tiny.model, examples)
    tiny.model.eval()
    for i, (prompt, completion) in enumerate(examples):
        p = tiny.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tiny.tokenizer(completion, add_special_tokens=False)["input_ids"]
        ids = p + c
        with torch.no_grad():
            logp = torch.log_softmax(tiny.model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
        scored = range(max(len(p), 1), len(ids))
        assert count[i].item() == len(scored)
        assert total[i].item() == pytest.approx(sum(float(logp[t - 1, ids[t]]) for t in scored), abs=1e-4)


# toxicity ------------------------------------------------------------------------------------------------
@pytest.fixture()
def toxicity(tiny):
    task = ToxicityTask(ToxicityOptions.model_validate(TOXICITY), tiny.tokenizer)
    base = task.observe_base(runner(tiny), tiny.model)
    task.bind(base)
    return task, base


def test_toxicity_validation_prompts_are_every_fourth_train_prompt_and_nowhere_else(toxicity, tiny):
    task, base = toxicity
    every = honest_prompts(["gender"], 3)
    train = [p.text for p in every if p.split == "train"]
    assert [p.text for p in task.validation_prompts] == train[3::4] and len(task.validation_prompts) == 9
    assert {p.split for p in task.validation_prompts} == {VALIDATION}
    validation = {p.text for p in task.validation_prompts}
    assert not validation & {p.text for p in task.prompts}  # neither trained on, nor sampled, nor reported
    assert [p.text for p in task.prompts] == [p.text for p in every if p.text not in validation]
    assert not validation & {e.prompt for e in task.train_examples(base, 0)}
    assert {e.prompt for e in task.validation_examples} <= validation
    assert (task.masked_score([e.completion for e in task.validation_examples]) < 0.25).all()
    obs = task.observe(runner(tiny), tiny.model)
    assert obs["gen/ids"].shape[0] == len(task.prompts)
    rows = task.score(obs, base, None, seed=0)
    assert VALIDATION not in reported_splits(rows) and {"train", "heldout"} <= reported_splits(rows)


def test_toxicity_validation_loss_is_the_training_loss_on_the_validation_counterfactuals(toxicity, tiny):
    task, base = toxicity
    obs = task.observe(runner(tiny), tiny.model)
    expected = training_loss(tiny.model, tiny.tokenizer, task.validation_examples)
    assert validation_loss(task.score(obs, base, None, seed=0)) == pytest.approx(expected, rel=1e-5)
    off = ToxicityTask(ToxicityOptions.model_validate({**TOXICITY, "validation_every": 0}), tiny.tokenizer)
    assert off.validation_prompts == [] and len(off.prompts) == len(task.prompts) + len(task.validation_prompts)
    off_base = off.observe_base(runner(tiny), tiny.model)
    off.bind(off_base)
    assert not [r for r in off.score(off.observe(runner(tiny), tiny.model), off_base, None, 0)
                if r.metric == "validation_loss"]


def test_toxicity_a_changed_heldout_prompt_changes_no_validation_loss(tmp_path, tiny):
    """Texts of a data source (every 4th held out): rewriting a held-out text changes what is reported, not the
    validation prompts, their counterfactuals or their loss."""
    words = ["The woman is known as a good friend", "The man likes to read books at night",
             "The girl dreams of being a doctor one day", "The boy is very good at math and music"]
    texts = [f"{i} {words[i % 4]}" for i in range(16)]  # each cut into a distinct prompt
    losses, validation, heldout = [], [], []
    for changed in (texts, texts[:3] + ["The mother should work as a teacher here"] + texts[4:]):
        path = tmp_path / f"texts{len(losses)}.jsonl"
        path.write_text("\n".join(json.dumps({"text": t}) for t in changed))
        task = ToxicityTask(ToxicityOptions.model_validate({**TOXICITY, "prompts": str(path), "axes": None,
                                                            "terms_per_group": None}), tiny.tokenizer)
        base = task.observe_base(runner(tiny), tiny.model)
        task.bind(base)
        losses.append(validation_loss(task.score(task.observe(runner(tiny), tiny.model), base, None, 0)))
        validation.append([(e.prompt, e.completion) for e in task.validation_examples])
        heldout.append([p.text for p in task.prompts if p.split == "heldout"])
    assert heldout[0] != heldout[1] and validation[0] == validation[1] and validation[0]
    assert losses[0] == losses[1]


# decisions -----------------------------------------------------------------------------------------------
@pytest.fixture()
def decisions(tiny):
    return DecisionsTask(DecisionsOptions.model_validate(DECISIONS), tiny.tokenizer)


def test_decisions_validation_episodes_are_seeded_apart_from_training_and_evaluation(decisions):
    validation = set(episode_seeds(2, 0, 2))
    assert len(validation) == 2 and not validation & set(episode_seeds(0, 0, 100))
    assert not validation & {s for seed in range(100) for s in episode_seeds(1, seed, 100)}
    expected = decisions.examples(decisions.reference_rollout(episode_seeds(2, 0, 2)))
    assert decisions.validation_examples == expected and len(expected) == 2 * 2 * 6
    assert expected != decisions.examples(decisions.reference_rollout(episode_seeds(1, 0, 2)))
    assert decisions.train_examples({}, 0) == decisions.examples(decisions.reference_rollout(episode_seeds(1, 0, 2)))
    off = DecisionsTask(DecisionsOptions.model_validate({**DECISIONS, "validation_episodes": 0}), decisions.tokenizer)
    assert off.validation_examples == [] and off.fingerprint() != decisions.fingerprint()


def test_decisions_validation_loss_is_the_training_loss_on_the_validation_episodes(decisions, tiny):
    obs = decisions.observe(runner(tiny), tiny.model)
    rows = decisions.score(obs, obs, None, seed=0)
    expected = training_loss(tiny.model, tiny.tokenizer, decisions.validation_examples)
    assert validation_loss(rows) == pytest.approx(expected, rel=1e-5)
    assert VALIDATION not in reported_splits(rows)
    # one token per decision: the loss is the mean of -log p(the reference's word) over the decisions
    logp = runner(tiny).next_token_logprobs(tiny.model, [e.prompt for e in decisions.validation_examples],
                                            decisions.action_ids)
    column = [0 if e.completion == " approve" else 1 for e in decisions.validation_examples]
    assert validation_loss(rows) == pytest.approx(-logp[range(len(column)), column].double().mean().item(), rel=1e-5)


def test_decisions_other_evaluation_episodes_change_no_validation_loss(decisions, tiny):
    more = DecisionsTask(DecisionsOptions.model_validate({**DECISIONS, "eval_episodes": 3}), tiny.tokenizer)
    obs, obs_more = (t.observe(runner(tiny), tiny.model) for t in (decisions, more))
    assert obs["scores"].shape[0] == 2 and obs_more["scores"].shape[0] == 3
    assert validation_loss(decisions.score(obs, obs, None, 0)) == validation_loss(more.score(obs_more, obs_more, None, 0))


# stereotype ----------------------------------------------------------------------------------------------
def crows_file(path, changed_heldout=False):
    """2 bias types x 16 pairs: positions 2, 4, .. held out (heldout_every 2); of the 8 train pairs per type the 4th and
    8th (positions 7 and 15) are validation."""
    rows = []
    for bias, (more, less) in (("gender", ("woman", "man")), ("race", ("Black", "White"))):
        for k in range(1, 17):
            ending = "is known as a good friend" if k % 2 else "likes to read books"
            if changed_heldout and bias == "gender" and k == 2:
                ending = "should work as a doctor"
            rows.append({"sentence": f"The [MASK] {ending} {k}", "mask1": more, "mask2": less, "bias_type": bias})
    pd.DataFrame(rows).to_csv(path)
    return path


def stereotype(tiny, path, **options):
    return StereotypeTask(StereotypeOptions(crows_pairs=str(path), stereoset=None, **options), tiny.tokenizer)


def test_stereotype_validation_pairs_are_every_fourth_train_pair_per_bias_type(tmp_path, tiny):
    task = stereotype(tiny, crows_file(tmp_path / "crows.csv"))
    assert task.splits.count("crows-pairs/train") == 12 and task.splits.count("crows-pairs/heldout") == 16
    assert VALIDATION not in {s.split("/")[-1] for s in task.splits}
    start = tiny.tokenizer.decode([task.prefix_id])
    validation = {e.prompt.removeprefix(start) + e.completion for e in task.validation_examples}
    assert validation == {f"The {w} is known as a good friend {k}" for w in ("woman", "man", "Black", "White")
                          for k in (7, 15)}
    assert not validation & set(task.texts)  # not scored, so in no reported split
    trained = {e.prompt.removeprefix(start) + e.completion for e in task.train_examples({}, 0)}
    assert len(trained) == 24 and not validation & trained
    obs = task.observe(runner(tiny), tiny.model)
    rows = task.score(obs, obs, None, seed=0)
    assert reported_splits(rows) == {"crows-pairs/train", "crows-pairs/heldout"}
    off = stereotype(tiny, tmp_path / "crows.csv", validation_every=0)
    assert off.validation_examples == [] and off.splits.count("crows-pairs/train") == 16
    assert "validation/loglik" not in off.observe(runner(tiny), tiny.model)


def test_stereotype_validation_loss_is_the_training_loss_on_the_validation_pairs(tmp_path, tiny):
    for sentences in ("both", "anti"):
        task = stereotype(tiny, crows_file(tmp_path / "crows.csv"), train_sentences=sentences)
        assert len(task.validation_examples) == (8 if sentences == "both" else 4)
        assert all(isinstance(e, Example) for e in task.validation_examples)
        obs = task.observe(runner(tiny), tiny.model)
        expected = training_loss(tiny.model, tiny.tokenizer, task.validation_examples)
        assert validation_loss(task.score(obs, obs, None, seed=0)) == pytest.approx(expected, rel=1e-5)


def test_stereotype_a_changed_heldout_pair_changes_no_validation_loss(tmp_path, tiny):
    tasks = [stereotype(tiny, crows_file(tmp_path / f"crows{i}.csv", changed_heldout=bool(i))) for i in (0, 1)]
    assert tasks[0].texts != tasks[1].texts
    assert tasks[0].validation_examples == tasks[1].validation_examples
    obs = [t.observe(runner(tiny), tiny.model) for t in tasks]
    losses = [validation_loss(t.score(o, o, None, 0)) for t, o in zip(tasks, obs)]
    assert losses[0] == losses[1]
