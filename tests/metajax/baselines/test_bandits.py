"""Bernoulli-bandit baselines: exact agreement with NumPy loops, the Bayes-optimal DP, Gittins."""

import functools
import itertools
import math

import jax
import numpy as np
import pytest

from metajax.baselines import (
    BANDIT_BASELINES,
    bayes_optimal_policy,
    gittins_table,
    num_posterior_states,
    run_bandit_baseline,
    tune_baseline,
)
from metajax.errors import ConfigError


def _draws(tasks: int, arms: int, pulls: int, seed: int):
    key_p, key_u = jax.random.split(jax.random.key(seed))
    probs = jax.random.uniform(key_p, (tasks, arms))
    uniforms = jax.random.uniform(key_u, (tasks, pulls))
    return probs, uniforms


def _numpy_totals(policy: str, probs: np.ndarray, uniforms: np.ndarray, c: float = 0.0):
    """Plain NumPy, float64, a loop over pulls (tasks side by side): greedy or UCB1 on Beta(1, 1)
    posterior means, lowest index on ties. Also flags tasks where UCB1 once met a near-tie
    (best two distinct scores within 1e-6), where float32 and float64 may pick different arms."""
    tasks, arms = probs.shape
    rows = np.arange(tasks)
    s, f = np.zeros((tasks, arms)), np.zeros((tasks, arms))
    totals, near_tie = np.zeros(tasks), np.zeros(tasks, bool)
    for t in range(uniforms.shape[1]):
        mean = (s + 1) / (s + f + 2)
        n = s + f
        if policy == "greedy":
            score = mean
        else:
            # the prior counts as two pseudo-pulls per arm
            score = mean + c * np.sqrt(2 * np.log(t + 2 * arms) / (n + 2))
            top = score.max(axis=1, keepdims=True)
            runner_up = np.where(score < top, score, -np.inf).max(axis=1)
            near_tie |= top[:, 0] - runner_up < 1e-6
        arm = np.argmax(score, axis=1)
        reward = uniforms[rows, t] < probs[rows, arm]
        s[rows, arm] += reward
        f[rows, arm] += 1 - reward
        totals += reward
    return totals, near_tie


@pytest.mark.parametrize(
    "policy, c, arms, pulls",
    [
        ("greedy", 0.0, 5, 100),
        ("greedy", 0.0, 10, 10),
        ("ucb1", 0.2, 5, 100),
        ("ucb1", 1.0, 10, 10),
    ],
)
def test_matches_numpy_loop_on_shared_draws(policy, c, arms, pulls):
    probs, uniforms = _draws(1000, arms, pulls, seed=arms)
    options = {"c": c} if policy == "ucb1" else {}
    totals = run_bandit_baseline(
        policy, probs, pulls, jax.random.key(0), reward_uniforms=uniforms, **options
    )
    expected, near_tie = _numpy_totals(policy, np.asarray(probs), np.asarray(uniforms), c)
    assert near_tie.mean() < 0.01
    np.testing.assert_array_equal(np.asarray(totals)[~near_tie], expected[~near_tie])


def test_jit_gives_the_same_totals():
    probs, uniforms = _draws(200, 5, 20, seed=3)
    run = jax.jit(run_bandit_baseline, static_argnums=(0, 2))
    key = jax.random.key(1)
    for name in ("eps-greedy", "gittins"):
        np.testing.assert_array_equal(
            run(name, probs, 20, key, reward_uniforms=uniforms),
            run_bandit_baseline(name, probs, 20, key, reward_uniforms=uniforms),
        )


def test_thompson_beats_random():
    probs, uniforms = _draws(500, 5, 50, seed=4)
    key = jax.random.key(2)
    ts = run_bandit_baseline("thompson", probs, 50, key, reward_uniforms=uniforms)
    rand = run_bandit_baseline("random", probs, 50, key, reward_uniforms=uniforms)
    diff = np.asarray(ts - rand)
    assert diff.mean() > 5 * diff.std() / math.sqrt(diff.size)
    assert diff.mean() > 7  # Duan et al. at n = 100: 74.7 vs 49.9


@pytest.mark.parametrize(
    "arms, pulls, value",
    [
        # n = 1: both arms have posterior mean 1/2.
        (2, 1, 1 / 2),
        # n = 2: pull arm A (1/2). Success (1/2): A's mean is 2/3 > 1/2, pull it: 2/3.
        # Failure (1/2): A's mean is 1/3, pull B: 1/2. Total 1/2 + 1/3 + 1/4 = 13/12.
        (2, 2, 13 / 12),
        # A third arm changes nothing with two pulls: the second pull still sees 2/3 or 1/2.
        (3, 2, 13 / 12),
        # n = 3, first pull 1/2. After a success, A = (1, 0) with two pulls left:
        #   pull A: 2/3 (1 + 3/4) + 1/3 (1/2) = 4/3;  pull B: 1/2 (1 + 2/3) + 1/2 (2/3) = 7/6.
        # After a failure, A = (0, 1):
        #   pull B: 1/2 (1 + 2/3) + 1/2 (1/3) = 1;  pull A: 1/3 (1 + 1/2) + 2/3 (1/2) = 5/6.
        # Total 1/2 + 1/2 (4/3) + 1/2 (1) = 5/3.
        (2, 3, 5 / 3),
    ],
)
def test_bayes_optimal_value_by_hand(arms, pulls, value):
    assert bayes_optimal_policy(arms, pulls).value == pytest.approx(value, abs=1e-12)


def test_num_posterior_states_by_enumeration():
    for arms, pulls in [(2, 3), (3, 4), (4, 2)]:
        pairs = [(s, n - s) for n in range(pulls + 1) for s in range(n + 1)]
        brute = sum(
            1
            for combo in itertools.combinations_with_replacement(pairs, arms)
            if sum(s + f for s, f in combo) <= pulls
        )
        assert num_posterior_states(arms, pulls) == brute


def test_bayes_optimal_refuses_intractable_sizes():
    with pytest.raises(ConfigError, match="posterior states"):
        bayes_optimal_policy(5, 100)


def test_bayes_optimal_monte_carlo_equals_dp_value():
    arms, pulls = 3, 10
    probs, uniforms = _draws(40_000, arms, pulls, seed=5)
    totals = np.asarray(
        run_bandit_baseline(
            "bayes-optimal", probs, pulls, jax.random.key(0), reward_uniforms=uniforms
        )
    )
    standard_error = totals.std() / math.sqrt(totals.size)
    assert abs(totals.mean() - bayes_optimal_policy(arms, pulls).value) < 4 * standard_error


@pytest.mark.parametrize("arms", [pytest.param(k, marks=pytest.mark.slow) for k in (2, 4, 5)] + [3])
def test_bayes_optimal_is_the_ceiling(arms):
    pulls, tasks = 10, 4_000
    probs, uniforms = _draws(tasks, arms, pulls, seed=10 + arms)
    value = bayes_optimal_policy(arms, pulls).value
    key = jax.random.key(3)
    best = np.asarray(
        run_bandit_baseline("bayes-optimal", probs, pulls, key, reward_uniforms=uniforms)
    )
    others = {
        "ucb1": {"c": 0.1},
        "eps-greedy": {"eps": 0.02},
        "gittins": {"gamma": 0.9},
        "greedy": {},
        "thompson": {},
        "optimistic-thompson": {},
    }
    for name, options in others.items():
        totals = np.asarray(
            run_bandit_baseline(name, probs, pulls, key, reward_uniforms=uniforms, **options)
        )
        diff = best - totals
        assert diff.mean() > -4 * diff.std() / math.sqrt(tasks), name
        assert totals.mean() < value + 4 * totals.std() / math.sqrt(tasks), name


# Gittins' table for Bernoulli arms, discount 0.9 (Gittins, Glazebrook & Weber 2011):
# (successes, failures) after a Beta(1, 1) prior -> index, to four decimals.
GITTINS_09 = {(0, 0): 0.7029, (1, 1): 0.6346, (2, 2): 0.6010, (9, 1): 0.8695}


def test_gittins_matches_published_table():
    table = gittins_table(0.9, 11)
    for (s, f), index in GITTINS_09.items():
        assert table[s, f] == pytest.approx(index, abs=6e-5)
    # With discount 0.99 an untried arm is worth 0.8699 (same source).
    assert gittins_table(0.99, 1, horizon=500, grid=1024)[0, 0] == pytest.approx(0.8699, abs=1e-4)


def _advantage_of_pulling(a: int, b: int, lam: float, gamma: float, depth: int) -> float:
    """Pull-once-then-optimal minus retire-at-lam for Beta(a, b), plain recursion to ``depth``."""

    @functools.cache
    def value(extra_s: int, extra_f: int) -> float:
        mean = (a + extra_s) / (a + b + extra_s + extra_f)
        if extra_s + extra_f == depth:
            return max(lam, mean) / (1 - gamma)
        return max(lam / (1 - gamma), pull(extra_s, extra_f))

    def pull(extra_s: int, extra_f: int) -> float:
        mean = (a + extra_s) / (a + b + extra_s + extra_f)
        return mean * (1 + gamma * value(extra_s + 1, extra_f)) + (1 - mean) * gamma * value(
            extra_s, extra_f + 1
        )

    return pull(0, 0) - lam / (1 - gamma)


def test_gittins_calibration_and_monotonicity():
    gamma, pulls = 0.8, 12
    table = gittins_table(gamma, pulls)
    for s, f in [(0, 0), (3, 1), (0, 5), (6, 5)]:
        index = table[s, f]
        assert _advantage_of_pulling(s + 1, f + 1, index - 1e-4, gamma, 80) > 0
        assert _advantage_of_pulling(s + 1, f + 1, index + 1e-4, gamma, 80) < 0
    s, f = np.meshgrid(np.arange(pulls), np.arange(pulls), indexing="ij")
    used = s + f < pulls - 1
    assert (table[used] > ((s + 1) / (s + f + 2))[used]).all()  # exploration bonus
    assert (np.diff(table, axis=0)[used[:-1]] > 0).all()  # more successes, higher index
    assert (np.diff(table, axis=1)[used[:, :-1]] < 0).all()  # more failures, lower index


def test_tune_picks_the_best_grid_value():
    probs, _ = _draws(500, 5, 50, seed=6)
    key = jax.random.key(4)
    tuned = tune_baseline("ucb1", probs, 50, key, grid=(0.1, 1.0))
    direct = [float(run_bandit_baseline("ucb1", probs, 50, key, c=c).mean()) for c in tuned.grid]
    np.testing.assert_allclose(tuned.means, direct, rtol=1e-6)
    assert tuned.options == {"c": tuned.grid[int(np.argmax(direct))]}
    assert direct[0] > direct[1]  # c = 1 over-explores badly at n = 50


def test_bad_input_raises_config_error():
    probs, _ = _draws(4, 3, 5, seed=7)
    key = jax.random.key(0)
    assert "ucb1" in BANDIT_BASELINES
    with pytest.raises(ConfigError, match="known baselines"):
        run_bandit_baseline("ucb2", probs, 5, key)
    with pytest.raises(ConfigError, match="allowed: c=1.0"):
        run_bandit_baseline("ucb1", probs, 5, key, eps=0.1)
    with pytest.raises(ConfigError, match=r"eps must be \[0, 1\]"):
        run_bandit_baseline("eps-greedy", probs, 5, key, eps=1.5)
    with pytest.raises(ConfigError, match="shape"):
        run_bandit_baseline("greedy", probs[0], 5, key)
    with pytest.raises(ConfigError, match="gamma"):
        gittins_table(1.0, 5)
