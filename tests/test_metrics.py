"""Every metric against an independent computation: scipy, hand-worked numbers, float64 loops."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import bootstrap, entropy

from lowrank_audit.metrics import (
    bootstrap_ci,
    category_mass,
    group_gap,
    js_divergence,
    kl_divergence,
    sequence_entropy,
    sequence_kl,
    shift_recovered,
    token_kl,
)

rng = np.random.default_rng(0)


def test_kl_matches_scipy_entropy():
    p, q = rng.dirichlet(np.ones(7), size=5), rng.dirichlet(np.ones(7), size=5)
    expected = [entropy(pi, qi) for pi, qi in zip(p, q)]
    np.testing.assert_allclose(kl_divergence(p, q), expected, rtol=1e-12)


def test_kl_hand_worked_and_support_edge_cases():
    # KL([1/2, 1/2] || [1/4, 3/4]) = 1/2 ln 2 + 1/2 ln(2/3)
    assert kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    assert kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2))  # 0 log 0 = 0
    assert math.isinf(kl_divergence([0.5, 0.5], [1.0, 0.0]))
    # unnormalised inputs are compared on their support
    assert kl_divergence([2.0, 2.0], [1.0, 3.0]) == pytest.approx(kl_divergence([0.5, 0.5], [0.25, 0.75]))


def test_js_two_distributions_matches_scipy():
    p, q = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
    assert js_divergence(np.stack([p, q])) == pytest.approx(jensenshannon(p, q) ** 2, rel=1e-10)


def test_js_many_distributions_hand_worked():
    # three point masses on distinct outcomes: H(mean) = ln 3, each H = 0
    assert js_divergence(np.eye(3)) == pytest.approx(math.log(3))
    assert js_divergence(np.tile([0.2, 0.3, 0.5], (4, 1))) == pytest.approx(0.0, abs=1e-15)


def test_shift_recovered():
    assert shift_recovered(np.array([0.1, 0.3]), np.array([0.4, 0.4])) == pytest.approx(0.5)
    assert shift_recovered(np.array([0.4, 0.4]), np.array([0.4, 0.4])) == pytest.approx(0.0)
    assert shift_recovered(np.zeros(2), np.array([0.4, 0.4])) == pytest.approx(1.0)
    assert math.isnan(shift_recovered(np.array([0.1]), np.array([0.0])))


def test_token_kl_against_float64_loop():
    ref = torch.log_softmax(torch.randn(2, 3, 11, dtype=torch.float64), -1)
    other = torch.log_softmax(torch.randn(2, 3, 11, dtype=torch.float64), -1)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    got = token_kl(ref, other, mask)
    for i in range(2):
        for t in range(3):
            want = rel_entr(ref[i, t].exp().numpy(), other[i, t].exp().numpy()).sum() if mask[i, t] else 0.0
            assert float(got[i, t]) == pytest.approx(want, rel=1e-5, abs=1e-7)


def test_sequence_kl_is_the_mean_over_each_sequences_kept_positions():
    ref = torch.log_softmax(torch.randn(3, 4, 9, dtype=torch.float64), -1)
    other = torch.log_softmax(torch.randn(3, 4, 9, dtype=torch.float64), -1)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0]], dtype=torch.bool)
    want = [np.mean([rel_entr(ref[i, t].exp().numpy(), other[i, t].exp().numpy()).sum() for t in range(4) if mask[i, t]])
            for i in range(3)]
    got = sequence_kl(ref, other, mask)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-6)  # token_kl computes in float32


def test_sequence_entropy_is_the_mean_entropy_over_each_sequences_kept_positions():
    logp = torch.log_softmax(3 * torch.randn(3, 4, 9, dtype=torch.float64), -1)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0]], dtype=torch.bool)
    want = [np.mean([entropy(logp[i, t].exp().numpy()) for t in range(4) if mask[i, t]]) for i in range(3)]
    got = sequence_entropy(logp, mask)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-6)
    uniform = torch.full((1, 2, 8), -math.log(8.0))  # hand-worked: ln 8 at every position
    assert sequence_entropy(uniform, torch.ones(1, 2, dtype=torch.bool))[0] == pytest.approx(math.log(8.0), rel=1e-6)


def test_category_mass_and_group_gap_hand_worked():
    p = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.4, 0.1, 0.1]])
    cats = np.array([0, 0, 1, 1])
    np.testing.assert_allclose(category_mass(p, cats, 2), [[0.3, 0.7], [0.8, 0.2]])
    np.testing.assert_allclose(group_gap(np.array([[0.3, 0.7], [0.8, 0.2], [0.5, 0.5]])), [0.5, 0.5])


def test_bootstrap_mean_close_to_scipy_percentile():
    x = rng.normal(size=400)
    lo, hi = bootstrap_ci(np.mean, x, n_resamples=4000, seed=1)
    ref = bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=1).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.02) and hi == pytest.approx(ref.high, abs=0.02)
    # and both close to the normal-theory interval mean +- 1.96 sd / sqrt(n)
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)


def test_bootstrap_is_paired():
    # two methods with a constant difference on the same prompts: the paired interval has zero width
    a = rng.normal(size=100)
    b = a + 0.25
    lo, hi = bootstrap_ci(lambda x, y: float(np.mean(y - x)), a, b, n_resamples=200)
    assert lo == pytest.approx(0.25) and hi == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same length"):
        bootstrap_ci(np.mean, a, b[:10])


def test_cluster_bootstrap_matches_the_enumerated_bootstrap_distribution():
    """Crossed factors (3 templates x 4 terms, terms in two strata): the Monte Carlo interval matches the quantiles of
    the exact bootstrap distribution, enumerated over every equally likely draw of templates and terms."""
    import itertools

    from lowrank_audit.metrics import cluster_bootstrap_ci

    rng = np.random.default_rng(3)
    templates, terms = np.repeat(np.arange(3), 4), np.tile(np.arange(4), 3)
    x = rng.normal(size=3)[templates] + 0.5 * rng.normal(size=4)[terms] + 0.1 * rng.normal(size=12)
    strata = terms // 2  # terms 0, 1 belong to one group, 2, 3 to another
    exact = []
    for t_draw in itertools.product(range(3), repeat=3):
        for a in itertools.product((0, 1), repeat=2):
            for b in itertools.product((2, 3), repeat=2):
                rows = [i for t in t_draw for k in a + b for i in range(12) if templates[i] == t and terms[i] == k]
                exact.append(x[rows].mean())
    lo, hi = cluster_bootstrap_ci(np.mean, x, factors=[(templates, np.zeros(12)), (terms, strata)],
                                  n_resamples=20000, seed=0)
    assert lo == pytest.approx(np.quantile(exact, 0.025), abs=0.03)
    assert hi == pytest.approx(np.quantile(exact, 0.975), abs=0.03)
    iid = bootstrap_ci(np.mean, x, n_resamples=2000, seed=0)
    assert hi - lo > 1.5 * (iid[1] - iid[0])  # rows that share a template are not independent
