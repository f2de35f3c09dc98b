"""The evaluator: AdaptationReport statistics by hand, shot summaries, and agreement of
``evaluate_learner`` with an independent NumPy computation for classic bandit baselines."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import spaces

import metajax.envs as envs
from metajax.baselines.bandits import bandit_baseline_rewards, gittins_table
from metajax.envs.core import EnvState, MetaEnv
from metajax.evaluate import (
    AdaptationReport,
    evaluate_learner,
    mean_and_ci95,
    shot_columns,
    shot_summary,
    shots_markdown,
)
from metajax.learners.base import Learner


@struct.dataclass
class FixedParams:
    reward: jax.Array  # what every episode pays (so a random policy's return is known)
    oracle: jax.Array  # the declared oracle return


class OneActionEnv(MetaEnv):
    """One action, one step per episode, a fixed reward per task: every return is known."""

    horizon = 1

    def reset_env(self, key, params):
        return jnp.zeros((1,), jnp.float32), EnvState(time=jnp.int32(0))

    def step_env(self, key, state, action, params):
        obs = jnp.zeros((1,), jnp.float32)
        return obs, EnvState(time=state.time + 1), params.reward, jnp.bool_(True), {}

    def observation_space(self, params=None):
        return spaces.Box(0.0, 0.0, (1,), jnp.float32)

    def action_space(self, params=None):
        return spaces.Discrete(1)

    def oracle_episode_return(self, params):
        return params.oracle


def fixed_learner(returns, unit: str = "episode") -> Learner:
    """A learner whose evaluation returns the given [tasks, units] array."""
    table = jnp.asarray(returns, jnp.float32)
    return Learner(
        name="fixed",
        init=lambda key: {},
        evaluate=lambda state, key, tasks: table,
        adaptation_unit=unit,
        env_steps_per_update=0,
        make_train_step=lambda axis_name: None,
        return_metric="return",
    )


def fixed_tasks(reward, oracle):
    return FixedParams(jnp.asarray(reward, jnp.float32), jnp.asarray(oracle, jnp.float32))


def test_mean_and_ci95_by_hand():
    # values 1, 2, 3, 4: mean 2.5; sample variance (2.25 + .25 + .25 + 2.25) / 3 = 5/3;
    # half-width 1.96 * sqrt(5/3) / sqrt(4) = 1.96 * 1.290994 / 2 = 1.265174
    mean, ci = mean_and_ci95(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == pytest.approx(2.5)
    assert ci == pytest.approx(1.265174, abs=1e-6)
    mean, ci = mean_and_ci95(np.array([[7.0, -1.0]]))  # one task: no spread, zero width
    np.testing.assert_allclose(mean, [7.0, -1.0])
    np.testing.assert_allclose(ci, [0.0, 0.0])


def test_report_values_and_normalization_by_hand():
    # two tasks paying 0 and 1 to any policy -> random = 0.5; oracles 2 and 4 -> oracle = 3.
    # learner returns [[1, 2], [2, 4]]:
    #   means 1.5 and 3.0; sample stds 0.7071 and 1.4142; / sqrt(2) -> 0.5 and 1.0;
    #   x 1.96 -> half-widths 0.98 and 1.96.
    #   normalized (1.5 - 0.5) / (3 - 0.5) = 0.4 and (3 - 0.5) / 2.5 = 1.0.
    #   totals 3 and 6: mean 4.5, std 2.1213 / sqrt(2) = 1.5, x 1.96 = 2.94.
    report = evaluate_learner(
        fixed_learner([[1.0, 2.0], [2.0, 4.0]]),
        {},
        OneActionEnv(),
        fixed_tasks([0.0, 1.0], [2.0, 4.0]),
        jax.random.key(0),
        "one-action",
    )
    assert report.env == "one-action" and report.learner == "fixed"
    assert report.steps == [1, 2] and report.num_tasks == 2
    np.testing.assert_allclose(report.mean, [1.5, 3.0], rtol=1e-6)
    np.testing.assert_allclose(report.ci95, [0.98, 1.96], rtol=1e-6)
    assert report.random == pytest.approx(0.5)
    assert report.oracle == pytest.approx(3.0)
    np.testing.assert_allclose(report.normalized, [0.4, 1.0], rtol=1e-6)
    assert report.total_mean == pytest.approx(4.5)
    assert report.total_ci95 == pytest.approx(2.94, rel=1e-6)
    assert "| 1 | 1.500 ± 0.980 | 0.400 |" in report.to_markdown()


def test_gradient_step_units_start_at_zero_and_no_normalization_without_gap():
    # oracle == random (both 1): normalizing would divide by zero, so it is left out
    report = evaluate_learner(
        fixed_learner([[0.0, 1.0, 2.0]] * 3, unit="gradient step"),
        {},
        OneActionEnv(),
        fixed_tasks([1.0] * 3, [1.0] * 3),
        jax.random.key(1),
    )
    assert report.steps == [0, 1, 2]
    assert report.normalized is None
    np.testing.assert_allclose(report.ci95, [0.0, 0.0, 0.0])
    assert "| 0 | 0.000 ± 0.000 | n/a |" in report.to_markdown()


def make_report(unit: str, steps: list[int], normalized=True) -> AdaptationReport:
    n = len(steps)
    return AdaptationReport(
        learner="x",
        env="e",
        unit=unit,
        steps=steps,
        mean=[float(i) for i in range(n)],
        ci95=[0.1] * n,
        random=0.0,
        oracle=float(n) if normalized else None,
        normalized=[i / n for i in range(n)] if normalized else None,
        num_tasks=10,
        total_mean=0.0,
        total_ci95=0.0,
    )


def test_shot_columns_for_episodes_and_gradient_steps():
    # episode k follows k - 1 episodes of experience; k gradient steps are k shots
    assert shot_columns(make_report("episode", [1, 2, 3, 4, 5])) == {
        "0-shot": 0,
        "1-shot": 1,
        "few-shot": 4,
    }
    assert shot_columns(make_report("gradient step", [0, 1, 2, 3])) == {
        "0-shot": 0,
        "1-shot": 1,
        "few-shot": 3,
    }
    # two episodes hold no few-shot column; one gradient step neither
    assert shot_columns(make_report("episode", [1, 2]))["few-shot"] is None
    assert shot_columns(make_report("gradient step", [0, 1]))["few-shot"] is None
    summary = shot_summary(make_report("gradient step", [0, 1, 2, 3]))
    assert summary["few-shot"] == {"shots": 3, "mean": 3.0, "ci95": 0.1, "normalized": 0.75}


def test_shots_markdown_puts_splits_side_by_side():
    text = shots_markdown(
        {
            "in_distribution": make_report("episode", [1, 2, 3]),
            "out_of_distribution": make_report("episode", [1, 2, 3], normalized=False),
        }
    )
    lines = text.splitlines()
    assert lines[0] == "| split | 0-shot | 1-shot | few-shot (2 shots) |"
    assert lines[2] == (
        "| in distribution | 0.000 ± 0.100 [0.00] | 1.000 ± 0.100 [0.33] | 2.000 ± 0.100 [0.67] |"
    )
    assert lines[3] == ("| out of distribution | 0.000 ± 0.100 | 1.000 ± 0.100 | 2.000 ± 0.100 |")
    mixed = shots_markdown(
        {"a": make_report("episode", [1, 2, 3]), "b": make_report("episode", [1, 2, 3, 4])}
    )
    assert "| few-shot |" in mixed and "(3 shots)" in mixed and "(2 shots)" in mixed


# CLASSIC BANDIT BASELINES: evaluate_learner against a plain NumPy loop on the same draws

PULLS, ARMS, TASKS = 10, 5, 1000


def baseline_learner(name: str, uniforms: jax.Array, **options) -> Learner:
    """A bandit baseline as a learner: reward of pull k on each task, [tasks, pulls]."""

    def evaluate(state, key, tasks):
        return bandit_baseline_rewards(
            name, tasks.arm_probs, PULLS, key, reward_uniforms=uniforms, **options
        )

    return Learner(
        name=name,
        init=lambda key: {},
        evaluate=evaluate,
        adaptation_unit="episode",
        env_steps_per_update=0,
        make_train_step=lambda axis_name: None,
        return_metric="return",
    )


def numpy_rewards(probs: np.ndarray, uniforms: np.ndarray, score) -> np.ndarray:
    """Pull by pull, task by task: the arm with the highest ``score(s, f)`` (lowest index on
    ties); pull t pays 1 when uniforms[i, t] < the arm's probability."""
    rewards = np.zeros(uniforms.shape, np.float32)
    for i in range(probs.shape[0]):
        s = np.zeros(probs.shape[1], np.int64)
        f = np.zeros(probs.shape[1], np.int64)
        for t in range(uniforms.shape[1]):
            arm = int(np.argmax(score(s, f)))
            win = uniforms[i, t] < probs[i, arm]
            rewards[i, t] = float(win)
            s[arm] += win
            f[arm] += not win
    return rewards


def greedy_score(s, f):
    return (s.astype(np.float32) + 1) / (s + f + 2).astype(np.float32)


def ucb1_score(c):
    def score(s, f):
        n = (s + f + 2).astype(np.float64)  # the Beta(1, 1) prior counts as two pulls
        return (s + 1) / n + c * np.sqrt(2.0 * np.log(n.sum()) / n)

    return score


def gittins_score(gamma):
    table = gittins_table(gamma, PULLS).astype(np.float32)
    return lambda s, f: table[s, f]


@pytest.mark.parametrize(
    "name, options, score",
    [
        ("greedy", {}, greedy_score),
        ("ucb1", {"c": 0.2}, ucb1_score(0.2)),
        ("gittins", {"gamma": 0.9}, gittins_score(0.9)),
    ],
)
def test_evaluator_matches_numpy_loop_for_bandit_baselines(name, options, score):
    env, tasks = envs.make("bernoulli-bandit", arms=ARMS, num_test_tasks=TASKS)
    test_tasks = tasks.test_tasks()
    uniforms = jax.random.uniform(jax.random.key(42), (TASKS, PULLS))
    learner = baseline_learner(name, uniforms, **options)
    report = evaluate_learner(learner, {}, env, test_tasks, jax.random.key(7))

    probs = np.asarray(test_tasks.arm_probs)
    rewards = numpy_rewards(probs, np.asarray(uniforms), score)  # [tasks, pulls]
    totals = rewards.sum(axis=1).astype(np.float64)
    assert report.num_tasks == TASKS and report.steps == list(range(1, PULLS + 1))
    np.testing.assert_allclose(report.mean, rewards.mean(axis=0), atol=1e-6)
    ci = 1.96 * rewards.astype(np.float64).std(axis=0, ddof=1) / math.sqrt(TASKS)
    np.testing.assert_allclose(report.ci95, ci, atol=1e-6)
    assert report.total_mean == pytest.approx(totals.mean(), abs=1e-6)
    assert report.total_ci95 == pytest.approx(1.96 * totals.std(ddof=1) / math.sqrt(TASKS))
    # oracle: always the best arm; random: a uniformly random arm (a different draw, so within
    # 4 standard errors of the mean arm probability)
    oracle = probs.max(axis=1).mean()
    assert report.oracle == pytest.approx(oracle, abs=1e-6)
    assert abs(report.random - probs.mean()) < 4 * 0.5 / math.sqrt(TASKS)
    expected = (rewards.mean(axis=0) - report.random) / (oracle - report.random)
    np.testing.assert_allclose(report.normalized, expected, atol=1e-5)
    # anchor: Duan et al. Table 1, n = 10, k = 5: greedy 6.6, UCB1 6.7, Gittins 6.6 (1000
    # tasks, SE ~0.07; constants not tuned here, so within 0.3)
    assert abs(totals.mean() - {"greedy": 6.6, "ucb1": 6.7, "gittins": 6.6}[name]) < 0.3
