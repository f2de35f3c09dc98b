"""Classic Bernoulli-bandit baselines (Duan et al. 2016, Table 1), vmapped over tasks.

Every policy acts from the posterior sufficient statistics of each arm (successes ``s``,
failures ``f``) under a Beta(1, 1) prior, so an arm's posterior is Beta(1 + s, 1 + f) and its
posterior mean is (s + 1) / (s + f + 2). Ties go to the lowest arm index.

- ``random``: a uniformly random arm.
- ``greedy``: the highest posterior mean.
- ``eps-greedy``: a random arm with probability ``eps``, else greedy.
- ``ucb1``: posterior mean + c * sqrt(2 ln t / n_i), where the Beta(1, 1) prior counts as two
  pseudo-pulls: n_i = pulls of arm i + 2 and t = the sum of the n_i (so no arm is forced first;
  with plain counts an untried arm gets an infinite bonus and n = 10, k = 5 spends half its
  pulls trying every arm once).
- ``thompson``: the arm with the highest draw from its Beta posterior.
- ``optimistic-thompson``: the same with each draw raised to at least the posterior mean.
- ``gittins``: the highest Gittins index for discount ``gamma`` (see ``gittins_table``).
- ``bayes-optimal``: the exact finite-horizon Bayes-optimal policy for p ~ U[0, 1]^k by dynamic
  programming over posterior states (see ``bayes_optimal_policy``); small (k, n) only.

``run_bandit_baseline`` evaluates any of them: a ``lax.scan`` over pulls, vmapped over tasks,
pure and jit-able with ``name`` and ``pulls`` static.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metajax.errors import ConfigError

BANDIT_BASELINES: tuple[str, ...] = (
    "random",
    "greedy",
    "eps-greedy",
    "ucb1",
    "thompson",
    "optimistic-thompson",
    "gittins",
    "bayes-optimal",
)

# name -> its options with their defaults
BASELINE_OPTIONS: dict[str, dict[str, float]] = {
    "random": {},
    "greedy": {},
    "eps-greedy": {"eps": 0.1},
    "ucb1": {"c": 1.0},
    "thompson": {},
    "optimistic-thompson": {},
    "gittins": {"gamma": 0.9},
    "bayes-optimal": {},
}

# name -> (option, grid) searched by ``tune_baseline``
TUNING_GRIDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "eps-greedy": ("eps", (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)),
    "ucb1": ("c", (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)),
    "gittins": ("gamma", (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)),
}

# The Bayes-optimal DP visits every posterior state; beyond this many it is refused.
MAX_BAYES_OPTIMAL_STATES = 1_000_000


class BanditStats(NamedTuple):
    """Posterior statistics of one task: per-arm counts and the Bayes-optimal DP node."""

    successes: jax.Array  # [arms] int32
    failures: jax.Array  # [arms] int32
    node: jax.Array  # int32 node of ``bayes_optimal_policy`` (0 for the other policies)


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

    def child(state: tuple, position: int, success: bool) -> tuple:
        s, f = state[position]
        pair = (s + 1, f) if success else (s, f + 1)
        return tuple(sorted(state[:position] + (pair,) + state[position + 1 :]))

    def solve(state: tuple, remaining: int) -> float:
        if remaining == 0:
            return 0.0
        if state in memo:
            return memo[state][0]
        best, best_pair = -1.0, state[0]
        for position, (s, f) in enumerate(state):
            if position and state[position - 1] == (s, f):
                continue  # same pair as the previous arm: same value
            mean = (s + 1) / (s + f + 2)
            value = mean * (1.0 + solve(child(state, position, True), remaining - 1)) + (
                1.0 - mean
            ) * solve(child(state, position, False), remaining - 1)
            if value > best + 1e-12:
                best, best_pair = value, (s, f)
        memo[state] = (best, best_pair)
        return best

    root = tuple((0, 0) for _ in range(arms))
    value = solve(root, pulls)

    # Number the nodes reachable under the optimal policy, breadth first from the root.
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
            nxt = child(state, state.index(pair), success)
            if nxt not in index:
                index[nxt] = len(order)
                order.append(nxt)
            links.append(index[nxt])
        next_node.append(links)
    arrays = [np.asarray(x, np.int32) for x in (pull_s, pull_f, next_node)]
    for array in arrays:
        array.setflags(write=False)  # cached: shared by every caller
    return BayesOptimalPolicy(*arrays, value)


# POLICIES


def _posterior_mean(stats: BanditStats) -> jax.Array:
    s, f = stats.successes.astype(jnp.float32), stats.failures.astype(jnp.float32)
    return (s + 1.0) / (s + f + 2.0)


def _check_options(name: str, options: dict) -> dict:
    if name not in BASELINE_OPTIONS:
        raise ConfigError(
            f"unknown bandit baseline '{name}'; known baselines: {', '.join(BANDIT_BASELINES)}"
        )
    allowed = BASELINE_OPTIONS[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        shown = ", ".join(f"{k}={v}" for k, v in allowed.items()) or "none"
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for baseline '{name}'; allowed: {shown}"
        )
    merged = {**allowed, **options}
    bounds = {"eps": (0.0, 1.0, "[0, 1]"), "c": (0.0, math.inf, ">= 0")}
    for option, value in merged.items():
        if option in bounds and isinstance(value, (int, float)):
            low, high, text = bounds[option]
            if not low <= value <= high:
                raise ConfigError(f"baseline '{name}': {option} must be {text}, got {value}")
    return merged


def _make_policy(
    name: str, arms: int, pulls: int, options: dict
) -> Callable[[jax.Array, BanditStats], jax.Array]:
    """``act(key, stats) -> arm`` for one task."""
    if name == "random":
        return lambda key, stats: jax.random.randint(key, (), 0, arms)
    if name == "greedy":
        return lambda key, stats: jnp.argmax(_posterior_mean(stats))
    if name == "eps-greedy":
        eps = jnp.asarray(options["eps"], jnp.float32)

        def act(key, stats):
            key_explore, key_arm = jax.random.split(key)
            explore = jax.random.uniform(key_explore) < eps
            random_arm = jax.random.randint(key_arm, (), 0, arms)
            return jnp.where(explore, random_arm, jnp.argmax(_posterior_mean(stats)))

        return act
    if name == "ucb1":
        c = jnp.asarray(options["c"], jnp.float32)

        def act(key, stats):
            del key
            n = (stats.successes + stats.failures).astype(jnp.float32) + 2.0  # prior: 2 pulls
            bonus = c * jnp.sqrt(2.0 * jnp.log(jnp.sum(n)) / n)
            return jnp.argmax(_posterior_mean(stats) + bonus)

        return act
    if name in ("thompson", "optimistic-thompson"):
        optimistic = name == "optimistic-thompson"

        def act(key, stats):
            s, f = stats.successes.astype(jnp.float32), stats.failures.astype(jnp.float32)
            draw = jax.random.beta(key, 1.0 + s, 1.0 + f)
            if optimistic:
                draw = jnp.maximum(draw, _posterior_mean(stats))
            return jnp.argmax(draw)

        return act
    if name == "gittins":
        table = jnp.asarray(gittins_table(float(options["gamma"]), pulls), jnp.float32)
        return lambda key, stats: jnp.argmax(table[stats.successes, stats.failures])
    if name == "bayes-optimal":
        policy = bayes_optimal_policy(arms, pulls)
        want_s, want_f = jnp.asarray(policy.pull_successes), jnp.asarray(policy.pull_failures)

        def act(key, stats):
            del key
            match = (stats.successes == want_s[stats.node]) & (stats.failures == want_f[stats.node])
            return jnp.argmax(match)

        return act
    raise AssertionError(name)  # _check_options rejects unknown names


def bandit_baseline_rewards(
    name: str,
    arm_probs: jax.Array,
    pulls: int,
    key: jax.Array,
    *,
    reward_uniforms: jax.Array | None = None,
    **options: float | jax.Array,
) -> jax.Array:
    """Per-pull rewards [tasks, pulls] of baseline ``name`` on Bernoulli tasks [tasks, arms].

    Pull t of task i pays 1 when ``reward_uniforms[i, t]`` < the chosen arm's probability;
    the uniforms are drawn from ``key`` unless given (pass them to share reward draws across
    policies or with another implementation). Options (``eps``, ``c``) may be traced arrays,
    so a grid of constants can be vmapped; ``gamma`` must be a Python float.
    """
    options = _check_options(name, options)
    if arm_probs.ndim != 2 or arm_probs.shape[1] < 2:
        raise ConfigError(f"arm_probs must have shape [tasks, arms>=2], got {arm_probs.shape}")
    if pulls < 1:
        raise ConfigError(f"pulls must be at least 1, got {pulls}")
    tasks, arms = arm_probs.shape
    act = _make_policy(name, arms, pulls, options)
    next_node = (
        jnp.asarray(bayes_optimal_policy(arms, pulls).next_node)
        if name == "bayes-optimal"
        else None
    )
    key_rewards, key_policy = jax.random.split(key)
    if reward_uniforms is None:
        reward_uniforms = jax.random.uniform(key_rewards, (tasks, pulls))
    elif reward_uniforms.shape != (tasks, pulls):
        raise ConfigError(
            f"reward_uniforms must have shape {(tasks, pulls)}, got {reward_uniforms.shape}"
        )

    def run_task(probs: jax.Array, key: jax.Array, uniforms: jax.Array) -> jax.Array:
        def pull(stats: BanditStats, inputs):
            key, uniform = inputs
            arm = act(key, stats)
            success = uniform < probs[arm]
            node = stats.node if next_node is None else next_node[stats.node, success.astype(int)]
            stats = BanditStats(
                successes=stats.successes.at[arm].add(success.astype(jnp.int32)),
                failures=stats.failures.at[arm].add(1 - success.astype(jnp.int32)),
                node=node,
            )
            return stats, success.astype(jnp.float32)

        zeros = jnp.zeros((arms,), jnp.int32)
        init = BanditStats(zeros, zeros, jnp.int32(0))
        _, rewards = jax.lax.scan(pull, init, (jax.random.split(key, pulls), uniforms))
        return rewards  # [pulls]

    return jax.vmap(run_task)(arm_probs, jax.random.split(key_policy, tasks), reward_uniforms)


def run_bandit_baseline(
    name: str,
    arm_probs: jax.Array,
    pulls: int,
    key: jax.Array,
    *,
    reward_uniforms: jax.Array | None = None,
    **options: float | jax.Array,
) -> jax.Array:
    """Total reward per task [tasks] of baseline ``name`` over ``pulls`` pulls per task.

    See ``bandit_baseline_rewards`` for the arguments; jit with ``name`` and ``pulls`` static.
    """
    rewards = bandit_baseline_rewards(
        name, arm_probs, pulls, key, reward_uniforms=reward_uniforms, **options
    )
    return jnp.sum(rewards, axis=-1)


class TunedBaseline(NamedTuple):
    """The result of ``tune_baseline``: the best options, and the mean return of each grid value."""

    options: dict[str, float]
    grid: tuple[float, ...]
    means: np.ndarray  # [grid] mean total reward on the training tasks


def tune_baseline(
    name: str,
    train_arm_probs: jax.Array,
    pulls: int,
    key: jax.Array,
    grid: tuple[float, ...] | None = None,
) -> TunedBaseline:
    """Picks the constant of ``name`` (eps, c or gamma) with the best mean on training tasks.

    Every grid value runs on the same tasks and reward draws. Baselines without a constant
    return their (empty) options with one mean.
    """
    _check_options(name, {})
    if name not in TUNING_GRIDS:
        mean = run_bandit_baseline(name, train_arm_probs, pulls, key).mean()
        return TunedBaseline({}, (), np.asarray([mean]))
    option, default_grid = TUNING_GRIDS[name]
    grid = tuple(default_grid if grid is None else grid)
    if option == "gamma":  # tabulated offline: one run per value
        means = [
            run_bandit_baseline(name, train_arm_probs, pulls, key, gamma=float(g)).mean()
            for g in grid
        ]
    else:  # traced constant: one vmapped run over the grid

        def mean_for(value):
            return run_bandit_baseline(name, train_arm_probs, pulls, key, **{option: value}).mean()

        means = jax.vmap(mean_for)(jnp.asarray(grid, jnp.float32))
    means = np.asarray(means)
    return TunedBaseline({option: grid[int(np.argmax(means))]}, grid, means)
