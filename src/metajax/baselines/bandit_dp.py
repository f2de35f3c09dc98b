"""Offline dynamic programs of the Bernoulli bandit with Beta(1, 1) priors (numpy, cached).

- ``gittins_table``: Gittins indices for a discount ``gamma``, by calibration against a
  retirement reward (one batched backward induction over a grid of retirement rewards).
- ``bayes_optimal_policy``: the exact finite-horizon Bayes-optimal policy for p ~ U[0, 1]^k, by
  dynamic programming over posterior states (multisets of per-arm counts); small (k, n) only.

``metajax.baselines.bandits`` turns both into policies that act inside ``jit``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from metajax.errors import ConfigError

# The Bayes-optimal DP visits every posterior state; beyond this many it is refused.
MAX_BAYES_OPTIMAL_STATES = 1_000_000


# GITTINS INDICES


@functools.lru_cache(maxsize=16)
def gittins_table(
    gamma: float, pulls: int, horizon: int | None = None, grid: int = 2048
) -> np.ndarray:
    """Gittins indices of Bernoulli arms with a Beta(1, 1) prior, discount ``gamma``.

    Entry ``[s, f]`` (for s + f < pulls) is the index of an arm with posterior Beta(1 + s, 1 + f):
    the retirement reward per step ``lam`` at which pulling the arm once more (and then acting
    optimally) is worth exactly as much as retiring for ``lam / (1 - gamma)`` (the calibration
    definition). Approximations: the arm's future is truncated ``horizon`` pulls below the
    deepest tabulated state (default: where gamma^horizon < 1e-3, at most 1000), where its value
    is taken as max(lam, mean) / (1 - gamma) (no further learning); ``lam`` runs over a grid of
    ``grid`` values in [0, 1] in one batched backward induction, and each state's index is the
    linear interpolation of the zero of its continue-minus-retire advantage, which is piecewise
    linear in ``lam`` (errors ~1e-5 against bisection). Returns a float64 array [pulls, pulls];
    unused entries (s + f >= pulls) are 0.
    """
    if not 0.0 < gamma < 1.0:
        raise ConfigError(f"gittins gamma must be in (0, 1), got {gamma}")
    if pulls < 1:
        raise ConfigError(f"pulls must be at least 1, got {pulls}")
    if horizon is None:
        horizon = min(1000, math.ceil(math.log(1e-3) / math.log(gamma)))
    lam = np.linspace(0.0, 1.0, grid)[:, None]  # [grid, 1]
    retire = lam / (1.0 - gamma)
    deepest = pulls - 1 + horizon  # level = s + f
    successes = np.arange(deepest + 1)
    values = np.maximum(lam, (successes + 1) / (deepest + 2)) / (1.0 - gamma)  # [grid, level + 1]
    table = np.zeros((pulls, pulls))
    for level in range(deepest - 1, -1, -1):
        successes = np.arange(level + 1)
        mean = (successes + 1) / (level + 2)
        # values[:, i] is the state with i successes at level + 1
        pull = mean * (1.0 + gamma * values[:, 1:]) + (1.0 - mean) * gamma * values[:, :-1]
        if level < pulls:
            advantage = pull - retire  # [grid, level + 1], decreasing in lam
            above = np.clip((advantage > 0).sum(axis=0), 1, grid - 1)
            a0, a1 = advantage[above - 1, successes], advantage[above, successes]
            l0, l1 = lam[above - 1, 0], lam[above, 0]
            table[successes, level - successes] = l0 + a0 / (a0 - a1) * (l1 - l0)
        values = np.maximum(retire, pull)
    table.setflags(write=False)  # cached: shared by every caller
    return table


# BAYES-OPTIMAL DYNAMIC PROGRAMMING


def num_posterior_states(arms: int, pulls: int) -> int:
    """The number of posterior states (multisets of per-arm (s, f) with at most ``pulls`` pulls)."""
    # counts[j][t]: multisets of j arms whose pulls sum to t; a pair (s, f) weighs s + f
    counts = [[0] * (pulls + 1) for _ in range(arms + 1)]
    counts[0][0] = 1
    for weight in range(pulls + 1):
        for _ in range(weight + 1):  # weight + 1 distinct pairs weigh `weight`
            for j in range(1, arms + 1):
                for t in range(weight, pulls + 1):
                    counts[j][t] += counts[j - 1][t - weight]
    return sum(counts[arms])


class BayesOptimalPolicy(NamedTuple):
    """The finite-horizon Bayes-optimal policy as a table over DP nodes (node 0 is the root).

    At node i pull an arm whose counts are (``pull_successes[i]``, ``pull_failures[i]``), then
    move to ``next_node[i, reward]``. ``value`` is the expected total reward for p ~ U[0, 1]^k.
    """

    pull_successes: np.ndarray  # [nodes] int32
    pull_failures: np.ndarray  # [nodes] int32
    next_node: np.ndarray  # [nodes, 2] int32
    value: float


@functools.lru_cache(maxsize=8)
def bayes_optimal_policy(arms: int, pulls: int) -> BayesOptimalPolicy:
    """Solves the k-armed, n-pull Bernoulli bandit with Beta(1, 1) priors exactly (offline DP).

    The state is the multiset of per-arm (successes, failures) pairs (arms are exchangeable), so
    V(state) = max over distinct pairs (s, f) of m (1 + V(s + 1)) + (1 - m) V(f + 1), with
    m = (s + 1) / (s + f + 2) and V = 0 after ``pulls`` pulls. Raises ConfigError beyond
    ``MAX_BAYES_OPTIMAL_STATES`` posterior states.
    """
    if arms < 1 or pulls < 1:
        raise ConfigError(f"bayes-optimal needs arms >= 1 and pulls >= 1, got {arms}, {pulls}")
    states = num_posterior_states(arms, pulls)
    if states > MAX_BAYES_OPTIMAL_STATES:
        raise ConfigError(
            f"bayes-optimal with {arms} arms and {pulls} pulls has {states:.3g} posterior states; "
            f"at most {MAX_BAYES_OPTIMAL_STATES:,} are allowed (e.g. k=2: n<=70, k=5: n<=25)"
        )
    memo: dict[tuple, tuple[float, tuple[int, int]]] = {}
    root = tuple((0, 0) for _ in range(arms))
    value = _solve(root, pulls, memo)
    arrays = [np.asarray(x, np.int32) for x in _number_nodes(root, pulls, memo)]
    for array in arrays:
        array.setflags(write=False)  # cached: shared by every caller
    return BayesOptimalPolicy(*arrays, value)


def _child(state: tuple, position: int, success: bool) -> tuple:
    """The sorted posterior state after pulling the arm at ``position``."""
    s, f = state[position]
    pair = (s + 1, f) if success else (s, f + 1)
    return tuple(sorted(state[:position] + (pair,) + state[position + 1 :]))


def _solve(state: tuple, remaining: int, memo: dict) -> float:
    """V(state) with ``remaining`` pulls left; ``memo`` gets each state's (value, best pair)."""
    if remaining == 0:
        return 0.0
    if state in memo:
        return memo[state][0]
    best, best_pair = -1.0, state[0]
    for position, (s, f) in enumerate(state):
        if position and state[position - 1] == (s, f):
            continue  # same pair as the previous arm: same value
        mean = (s + 1) / (s + f + 2)
        value = mean * (1.0 + _solve(_child(state, position, True), remaining - 1, memo)) + (
            1.0 - mean
        ) * _solve(_child(state, position, False), remaining - 1, memo)
        if value > best + 1e-12:
            best, best_pair = value, (s, f)
    memo[state] = (best, best_pair)
    return best


def _number_nodes(root: tuple, pulls: int, memo: dict) -> tuple[list, list, list]:
    """Per node reachable under the optimal policy (breadth first from the root, node 0).

    Returns the pulled arm's successes, its failures, and [next node on failure, on success].
    """
    index = {root: 0}
    order = [root]
    pull_s, pull_f, next_node = [], [], []
    for state in order:  # grows while iterating
        done = sum(s + f for s, f in state) == pulls
        pair = state[0] if done else memo[state][1]
        pull_s.append(pair[0])
        pull_f.append(pair[1])
        links = []
        for success in (False, True):
            if done:
                links.append(index[state])
                continue
            nxt = _child(state, state.index(pair), success)
            if nxt not in index:
                index[nxt] = len(order)
                order.append(nxt)
            links.append(index[nxt])
        next_node.append(links)
    return pull_s, pull_f, next_node
