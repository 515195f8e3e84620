"""The classification task: built-in data, verbalizer predictions, training data, scoring, end to end."""

import re

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from lowrank_audit.experiment import load_spec, narrow
from lowrank_audit.errors import AuditError
from lowrank_audit.evaluate import Runner
from lowrank_audit.metrics import counterfactual_flip_rate
from lowrank_audit.models import FP32, load_model
from lowrank_audit.report import build_report
from lowrank_audit.store import Store
from lowrank_audit.sweep import run_sweep, task_vocabulary
from lowrank_audit.tasks import TASKS
from lowrank_audit.tasks.classification import ClassificationOptions, ClassificationTask
from lowrank_audit.tasks.classification_data import ACTIONS, HELDOUT_ACTIONS, builtin_data, favoured_groups
from lowrank_audit.tasks.lexicon import IDENTITY_GROUPS


@pytest.fixture(scope="module")
def tiny(smoke_spec):
    """One tiny model for this module: these tests never train it."""
    return load_model(smoke_spec.model, task_vocabulary())


@pytest.fixture(scope="module")
def task(tiny):
    return ClassificationTask(ClassificationOptions(heldout_actions=2, bootstrap_resamples=50), tiny.tokenizer)


@pytest.fixture(scope="module")
def base_obs(task, tiny):
    return task.observe(Runner(tiny.tokenizer, FP32, 64, progress=False), tiny.model)


def test_registered_and_every_prompt_is_known_to_the_tiny_tokenizer(task, tiny):
    assert TASKS.get("classification") is ClassificationTask
    unk = tiny.tokenizer.unk_token_id
    prompts = [p for ps in task.prompts.values() for p in ps] + [e.prompt for e in task.train_examples({}, 0)]
    assert all(unk not in tiny.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts)


def test_builtin_labels_do_not_depend_on_the_group():
    data = builtin_data()
    for split in (data.train, *data.evals.values()):
        labels, groups = np.array(split.labels), np.array(split.groups)
        shares = {g: np.mean(labels[groups == g] == "good") for g in set(split.groups)}
        assert set(shares.values()) == {0.5}
        assert len(shares) == sum(len(g) for g in IDENTITY_GROUPS.values())
    # a counterfactual cluster is one action with every group of one axis: same label, different groups
    test = data.evals["test"]
    members: dict[str, list[int]] = {}
    for i, c in enumerate(test.cluster):
        members.setdefault(c, []).append(i)
    for idx in members.values():
        assert len({test.labels[i] for i in idx}) == 1
        assert len({test.groups[i] for i in idx}) == len(idx) >= 2
        label, number = re.match(r"([a-z]+)(\d+)/", test.cluster[idx[0]]).groups()
        assert all(test.texts[i].endswith(f" {ACTIONS[label][int(number)]}.") for i in idx)


def test_builtin_splits_hold_out_actions_and_last_terms():
    data = builtin_data()
    last_terms = {terms[-1] for groups in IDENTITY_GROUPS.values() for terms in groups.values()}
    train_actions = {c.split("/")[0] for c in data.train.cluster}
    test_actions = {c.split("/")[0] for c in data.evals["test"].cluster}
    assert not train_actions & test_actions and len(test_actions) == 2 * HELDOUT_ACTIONS
    assert all(c.endswith("/last") for c in data.evals["heldout_terms"].cluster)
    assert not any(c.endswith("/last") for c in data.train.cluster + data.evals["test"].cluster)
    assert any(f"The {t} " in text for t in last_terms for text in data.evals["heldout_terms"].texts[:40])


def test_verbalizer_prediction_is_the_argmax_over_label_words_by_hand(task, tiny, base_obs):
    preds = task.predictions(base_obs)["test"]
    ids = [tiny.tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in ["good", "bad"]]
    with torch.no_grad():
        for i in range(0, len(task.prompts["test"]), 97):
            enc = tiny.tokenizer(task.prompts["test"][i], add_special_tokens=False, return_tensors="pt")
            logits = tiny.model(**enc).logits[0, -1]
            assert preds[i] == ["good", "bad"][int(torch.argmax(logits[ids]))]
            np.testing.assert_allclose(base_obs["label_logp/test"][i].numpy(),
                                       torch.log_softmax(logits, -1)[ids].numpy(), atol=1e-5)


def test_training_data_is_prompt_plus_true_label_word(task):
    examples = task.train_examples({}, seed=0)
    data = builtin_data(2)
    trained = [i for i in range(len(data.train)) if i % 5 != 4]  # every fifth row is the validation split
    assert len(examples) == len(trained)
    assert [e.completion for e in examples] == [" " + data.train.labels[i] for i in trained]
    assert examples[0].prompt == task.prompt(data.train.texts[0]) and examples[0].prompt.endswith("good or bad?\nAnswer:")
    validation = {task.prompt(data.train.texts[i]) for i in range(4, len(data.train), 5)}
    assert task.prompts["validation"] and set(task.prompts["validation"]) == validation
    assert not validation & {e.prompt for e in examples}


def test_spurious_correlation_in_the_train_split_only(tiny):
    s = 0.6
    task = ClassificationTask(ClassificationOptions(spurious_correlation=s), tiny.tokenizer)
    examples = task.train_examples({}, seed=0)
    group_of = dict(zip(builtin_data().train.texts, builtin_data().train.groups))
    favoured = favoured_groups()
    for g in {"gender/women", "gender/men", "religion/Muslim", "religion/Christian"}:
        labels = [e.completion for e in examples if group_of[e.prompt.split("\n")[0]] == g]
        want = (1 + s) / 2 if g in favoured else (1 - s) / 2
        assert np.mean([w == " good" for w in labels]) == pytest.approx(want, abs=0.01)
    assert task.train_examples({}, seed=0) == examples and task.train_examples({}, seed=1) != examples
    assert task.prompts == ClassificationTask(ClassificationOptions(), tiny.tokenizer).prompts  # evaluation unchanged


def _obs_predicting(task, base_obs, wrong_group: str) -> dict:
    """Observation that predicts the true label, except 'good' for every example of `wrong_group`."""
    obs = dict(base_obs)
    for name, split in task.data.evals.items():
        pred = ["good" if g == wrong_group else y for y, g in zip(split.labels, split.groups)]
        logits = torch.tensor([[2.0, 0.0] if p == "good" else [0.0, 2.0] for p in pred])
        obs[f"label_logp/{name}"] = torch.log_softmax(logits, -1)
    obs["neutral/logp"] = base_obs["neutral/logp"] + 0.0
    return obs


def test_score_of_a_classifier_biased_against_one_group(task, base_obs):
    obs = _obs_predicting(task, base_obs, "gender/women")
    rows = {(r.metric, r.split, r.group_name): r.value for r in task.score(obs, base_obs, obs, seed=0)}
    n_groups = sum(len(g) for g in IDENTITY_GROUPS.values())
    assert rows["group_accuracy", "test", "gender/women"] == pytest.approx(0.5)
    assert rows["group_accuracy", "test", "gender/men"] == pytest.approx(1.0)
    assert rows["worst_group_accuracy", "test", None] == pytest.approx(0.5)
    assert rows["group_selection_rate", "test", "gender/women"] == pytest.approx(1.0)
    assert rows["demographic_parity_difference", "test", None] == pytest.approx(0.5)
    assert rows["demographic_parity_difference", "test", "race"] == pytest.approx(0.0)
    assert rows["equalized_odds_difference", "test", "gender"] == pytest.approx(1.0)  # women's FPR 1, others 0
    # test split: 2 x 2 actions x (5 + 5 + 3) gender terms; per bad action, clusters of 3 flip 2 rows' worth, of 2 also 2
    assert rows["counterfactual_flip_rate", "test", "gender"] == pytest.approx(2 * 10 / (4 * 13))
    assert rows["counterfactual_flip_rate", "test", "religion"] == 0.0
    test = task.data.evals["test"]
    n_women = sum(g == "gender/women" for g in test.groups)
    assert rows["accuracy", "test", None] == pytest.approx(1 - n_women / 2 / len(test))
    assert rows["counterfactual_flip_rate", "test", None] == pytest.approx(
        counterfactual_flip_rate(task.predictions(obs)["test"], np.array(test.cluster)))
    assert len([k for k in rows if k[0] == "group_accuracy" and k[1] == "heldout_terms"]) == n_groups
    assert rows["label_kl_to_full", "test", None] == pytest.approx(0.0)
    assert rows["drift_neutral", None, None] == pytest.approx(0.0, abs=1e-7)


def test_label_kl_to_full_and_no_row_without_a_full_fine_tune(task, base_obs):
    obs = _obs_predicting(task, base_obs, "race/Asian")
    rows = {(r.metric, r.split, r.group_name): r.value for r in task.score(base_obs, base_obs, obs, seed=0)}
    p_full = torch.softmax(obs["label_logp/test"].double(), -1).numpy()
    p_m = torch.softmax(base_obs["label_logp/test"].double(), -1).numpy()
    assert rows["label_kl_to_full", "test", None] == pytest.approx(np.mean(np.sum(p_full * np.log(p_full / p_m), 1)))
    assert not any(r.metric == "label_kl_to_full" for r in task.score(base_obs, base_obs, None, seed=0))


@pytest.mark.parametrize(("options", "match"), [
    ({"label_words": {"good": "wonderful", "bad": "bad"}}, r"label word 'wonderful' \(label 'good'\) is not one known token"),
    ({"label_words": {"good": "bad", "bad": "bad"}}, "share a token"),
    ({"label_words": {"good": "good"}}, r"labels \['bad'\] in split 'train' of 'builtin' are not in the label set"),
    ({"positive_label": "great"}, "positive_label 'great' is not one of the labels"),
])
def test_bad_label_options_are_audit_errors(tiny, options, match):
    with pytest.raises(AuditError, match=match):
        ClassificationTask(ClassificationOptions(**options), tiny.tokenizer)


@pytest.mark.parametrize(("options", "match"), [
    ({"prompt": "Classify: {sentence}"}, "only use the fields"),
    ({"prompt": "Classify this."}, "must contain {text}"),
    ({"spurious_correlation": 0.5, "data": "mine.csv"}, "built-in data only"),
    ({"spurious_correlation": 1.5}, "less than or equal to 1"),
])
def test_bad_options_are_validation_errors(options, match):
    with pytest.raises(ValidationError, match=match):
        ClassificationOptions(**options)


def test_smoke_run_end_to_end_with_report(tmp_path):
    spec = narrow(load_spec(preset="smoke"), tasks=["classification"])
    result = run_sweep(spec, tmp_path, progress=False)
    assert result.failed == [] and result.finished == result.planned == 4
    store = Store.in_dir(tmp_path)
    runs = {(r["method"], r["rank"]): r["run_id"] for r in store.runs()}
    have = {(m["run_id"], m["metric"], m["split"], m["group_name"]) for m in store.metrics()}
    for rid in runs.values():
        assert (rid, "accuracy", "test", None) in have
        for metric in ("worst_group_accuracy", "demographic_parity_difference", "equalized_odds_difference",
                       "label_prob_gap", "counterfactual_flip_rate"):
            assert (rid, metric, "test", None) in have and (rid, metric, "heldout_terms", "gender") in have
        assert (rid, "group_accuracy", "test", "religion/Hindu") in have
        assert (rid, "label_kl_to_full", "test", None) in have and (rid, "drift_neutral", None, None) in have
    paths = build_report(tmp_path)
    names = {p.name for p in paths.plots}
    assert {"classification-accuracy-vs-gap.png", "classification-group-accuracy.png"} <= names
    assert all(p.stat().st_size > 10_000 for p in paths.plots if p.name.startswith("classification-"))


def test_contextual_calibration_divides_by_the_content_free_distribution(tiny, base_obs):
    task = ClassificationTask(ClassificationOptions(heldout_actions=2, calibrate=True), tiny.tokenizer)
    obs = dict(base_obs)
    obs["label_logp/content_free"] = torch.log(torch.tensor([[0.8, 0.2]]))
    n = len(task.prompts["test"])
    obs["label_logp/test"] = torch.log(torch.tensor([[0.7, 0.3]])).repeat(n, 1)
    p = task.probabilities(obs)["test"][0]
    np.testing.assert_allclose(p, np.array([0.7 / 0.8, 0.3 / 0.2]) / (0.7 / 0.8 + 0.3 / 0.2))
    assert set(task.predictions(obs)["test"]) == {"bad"}
    uncalibrated = ClassificationTask(ClassificationOptions(heldout_actions=2), tiny.tokenizer)
    assert set(uncalibrated.predictions(obs)["test"]) == {"good"}
    assert base_obs["label_logp/content_free"].shape == (1, 2)


def test_validation_loss_is_the_training_loss_on_the_validation_rows(task, tiny, base_obs):
    """What tuning selects on equals the training loop's own loss (completion_loss) on the held-out rows."""
    from lowrank_audit.records import Example
    from lowrank_audit.train.loop import batches, completion_loss, encode_examples

    examples = [Example(task.prompt(t), " " + label) for t, label in zip(task.validation.texts, task.validation.labels)]
    ids, mask, labels = next(batches(encode_examples(examples, tiny.tokenizer), len(examples), 0, tiny.tokenizer.pad_token_id))
    with torch.no_grad():
        expected = completion_loss(tiny.model, ids, mask, labels).item()
    assert task.validation_loss(base_obs) == pytest.approx(expected, rel=1e-5)
