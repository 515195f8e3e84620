"""Forgetting on general text: the metric functions by hand, the rows against transformers' own loss."""

import copy

import numpy as np
import pytest
import torch

from lowrank_audit.evaluate import Runner
from lowrank_audit.evaluate.general import GENERAL_TEXT, base_general, forgetting_rows, general_rows, observe_general
from lowrank_audit.metrics import sequence_accuracy, sequence_nll
from lowrank_audit.models import FP32
from lowrank_audit.tasks.lexicon import NEUTRAL_TEXT


def test_sequence_nll_and_accuracy_by_hand():
    logp = np.log([[0.5, 0.25, 0.9], [0.1, 0.2, 0.3]])
    mask = np.array([[True, True, False], [True, False, False]])
    np.testing.assert_allclose(sequence_nll(logp, mask), [-(np.log(0.5) + np.log(0.25)) / 2, -np.log(0.1)])
    correct = np.array([[True, False, True], [True, True, True]])
    np.testing.assert_allclose(sequence_accuracy(correct, mask), [0.5, 1.0])


def test_general_text_is_held_out_from_the_neutral_text():
    assert not set(GENERAL_TEXT) & set(NEUTRAL_TEXT) and len(set(GENERAL_TEXT)) == len(GENERAL_TEXT)


def _reference(model, tokenizer) -> tuple[float, float]:
    """Mean over sentences of transformers' own causal-LM loss and of the argmax accuracy, one sentence at a time."""
    losses, accs = [], []
    with torch.no_grad():
        for text in GENERAL_TEXT:
            ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
            out = model(input_ids=ids, labels=ids)
            losses.append(float(out.loss))
            accs.append(float((out.logits[0, :-1].argmax(-1) == ids[0, 1:]).double().mean()))
    return float(np.mean(losses)), float(np.mean(accs))


def test_rows_match_transformers_loss_and_forgetting_is_the_loss_increase(tiny):
    runner = Runner(tiny.tokenizer, FP32, batch_size=8, progress=False)  # several right-padded batches
    tuned = copy.deepcopy(tiny.model)
    with torch.no_grad():
        tuned.model.layers[0].mlp.down_proj.weight.mul_(3.0)
    rows = {r.metric: r for r in general_rows(runner, tuned, tiny.model, seed=0)}
    loss, acc = _reference(tuned, tiny.tokenizer)
    base_loss, _ = _reference(tiny.model, tiny.tokenizer)
    assert rows["general_loss"].value == pytest.approx(loss, rel=1e-5)
    assert rows["general_accuracy"].value == pytest.approx(acc, abs=1e-9)
    assert rows["forgetting"].value == pytest.approx(loss - base_loss, rel=1e-4, abs=1e-6)
    assert rows["forgetting"].value != 0.0
    for row in rows.values():
        assert row.ci_low <= row.value <= row.ci_high


def test_the_base_forgets_nothing_and_its_observation_is_computed_once(tiny):
    runner = Runner(tiny.tokenizer, FP32, batch_size=32, progress=False)
    first = base_general(runner, tiny.model)
    assert base_general(runner, tiny.model) is first
    rows = {r.metric: r for r in forgetting_rows(observe_general(runner, tiny.model), first, seed=0)}
    assert rows["forgetting"].value == 0.0 and (rows["forgetting"].ci_low, rows["forgetting"].ci_high) == (0.0, 0.0)
