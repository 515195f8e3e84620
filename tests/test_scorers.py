"""Scorers: the shipped profanity classifier on obvious strings; an HF classifier built here; clear errors."""

import importlib.util

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from lowrank_audit.errors import AuditError
from lowrank_audit.models.tiny import tiny_tokenizer
from lowrank_audit.scorers import SCORERS, ScorerOptions, build_scorer

CLEAN = ["Thank you so much, have a lovely day.", "The library opens at nine.", "She is a kind and helpful nurse."]
TOXIC = ["You are a fucking idiot.", "shut up you stupid bitch", "what a piece of shit"]


def test_profanity_scorer_on_obvious_strings():
    scorer = build_scorer(ScorerOptions(name="profanity"))
    clean, toxic = scorer.score(CLEAN), scorer.score(TOXIC)
    assert clean.shape == (3,) and toxic.shape == (3,)
    assert (clean < 0.5).all() and (toxic > 0.9).all()  # on either side of the default threshold 0.5
    assert scorer.score([]).shape == (0,)


def test_batching_does_not_change_scores():
    texts = CLEAN + TOXIC + [""]
    one = build_scorer(ScorerOptions(batch_size=1)).score(texts)
    np.testing.assert_allclose(one, build_scorer(ScorerOptions(batch_size=64)).score(texts))


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """A tiny random BERT classifier with labels (clean, toxic), saved as a local folder."""
    words = sorted({w.strip(".,").lower() for t in CLEAN + TOXIC for w in t.split()})
    tok = tiny_tokenizer(words)
    config = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
                        id2label={0: "clean", 1: "toxic"}, label2id={"clean": 0, "toxic": 1})
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    path = tmp_path_factory.mktemp("classifier")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, model, tok


def test_hf_scorer_equals_the_classifiers_softmax(classifier_dir):
    path, model, tok = classifier_dir
    texts = [t.lower() for t in CLEAN + TOXIC]
    scores = build_scorer(ScorerOptions(name="hf", model=str(path), toxic_label="toxic", batch_size=2)).score(texts)
    expected = []
    for text in texts:  # one at a time, no padding: an independent computation
        with torch.no_grad():
            logits = model(**tok(text, return_tensors="pt")).logits[0].double()
        expected.append(float(torch.softmax(logits, -1)[1]))
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    clean = build_scorer(ScorerOptions(name="hf", model=str(path), toxic_label="clean")).score(texts)
    np.testing.assert_allclose(scores + clean, 1.0, atol=1e-9)


def test_hf_scorer_errors_name_the_fix(classifier_dir, tmp_path):
    path, _, _ = classifier_dir
    with pytest.raises(AuditError, match=r"no label 'TOXIC'.*\['clean', 'toxic'\].*toxic_label"):
        build_scorer(ScorerOptions(name="hf", model=str(path), toxic_label="TOXIC"))
    with pytest.raises(AuditError, match="needs options.scorer.model"):
        build_scorer(ScorerOptions(name="hf"))
    with pytest.raises(AuditError, match="could not load"):
        build_scorer(ScorerOptions(name="hf", model=str(tmp_path)))


@pytest.mark.skipif(importlib.util.find_spec("detoxify") is not None, reason="detoxify is installed here")
def test_detoxify_without_the_package_is_a_clear_error():
    with pytest.raises(AuditError, match=r"needs the package detoxify.*pip install detoxify"):
        build_scorer(ScorerOptions(name="detoxify"))


def test_unknown_scorer_suggests_close_names():
    assert SCORERS.names() == ["detoxify", "hf", "profanity"]
    with pytest.raises(AuditError, match="unknown scorer 'profanty'.*Did you mean 'profanity'"):
        build_scorer(ScorerOptions(name="profanty"))
