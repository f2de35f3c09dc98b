"""SAC: losses against hand-worked values, the tanh-Gaussian log-prob, and learning a 1-D task."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import spaces

from metajax.envs.core import EnvState, MetaEnv, TaskDistribution
from metajax.errors import ConfigError
from metajax.learners import sac

# ----------------------------------------------------------------------------- a tiny task


@struct.dataclass
class GoalParams:
    goal: jax.Array  # scalar


@struct.dataclass
class LineState(EnvState):
    x: jax.Array


class LineReach(MetaEnv):
    """A point on a line starts at 0 and moves by 0.25 * action (action in [-1, 1]) per step;
    reward -|x' - goal|; 20 steps. Reaching goal 1 at full speed returns -1.5 (4 steps of
    -0.75, -0.5, -0.25, 0); standing still returns -20; random actions about -19."""

    horizon = 20

    def reset_env(self, key, params):
        del key, params
        return jnp.zeros((1,), jnp.float32), LineState(time=jnp.int32(0), x=jnp.float32(0.0))

    def step_env(self, key, state, action, params):
        del key
        x = jnp.clip(state.x + 0.25 * jnp.clip(action[0], -1.0, 1.0), -3.0, 3.0)
        reward = -jnp.abs(x - params.goal)
        return x[None], LineState(time=state.time + 1, x=x), reward, jnp.bool_(False), {}

    def observation_space(self, params=None):
        return spaces.Box(-3.0, 3.0, (1,), jnp.float32)

    def action_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)


def line_reach():
    tasks = TaskDistribution(lambda key: GoalParams(goal=jnp.float32(1.0)), num_test_tasks=4)
    return LineReach(), tasks


# ----------------------------------------------------------------------------- losses


def test_tanh_gaussian_log_prob_by_hand():
    # mean 0, std 1. u = 0: N(0; 0, 1) = -0.5 log(2 pi) = -0.918939, tanh'(0) = 1 -> -0.918939.
    # u = 1: -0.5 - 0.918939 = -1.418939; log(1 - tanh(1)^2) = log(0.419974) = -0.867562,
    # so log pi = -1.418939 + 0.867562 = -0.551377.
    mean, log_std = jnp.zeros((2, 1)), jnp.zeros((2, 1))
    got = sac.tanh_gaussian_log_prob(mean, log_std, jnp.array([[0.0], [1.0]]))
    np.testing.assert_allclose(got, [-0.918939, -0.551377], atol=1e-5)
    # far in the tail the stable form stays finite: log(1 - tanh(u)^2) ~ 2 log 2 - 2u
    far = sac.tanh_gaussian_log_prob(jnp.zeros((1,)), jnp.zeros((1,)), jnp.array([30.0]))
    expected = -0.5 * 900 - 0.5 * math.log(2 * math.pi) - (2 * math.log(2) - 60.0)
    np.testing.assert_allclose(far, expected, rtol=1e-5)


def test_tanh_gaussian_density_integrates_to_one():
    # p(a) on a grid of (-1, 1) for mean 0.3, std 0.8: the corrected density integrates to 1
    a = jnp.linspace(-1 + 1e-6, 1 - 1e-6, 200_001)
    u = jnp.arctanh(a)
    logp = sac.tanh_gaussian_log_prob(jnp.full((1,), 0.3), jnp.log(jnp.full((1,), 0.8)), u[:, None])
    np.testing.assert_allclose(jnp.trapezoid(jnp.exp(logp), a), 1.0, atol=2e-3)


def test_sample_tanh_gaussian_matches_log_prob():
    noise = jnp.array([[0.5, -1.0]])
    mean, log_std = jnp.array([[0.1, 0.2]]), jnp.array([[-0.5, 0.3]])
    action, logp = sac.sample_tanh_gaussian(noise, mean, log_std)
    u = mean + jnp.exp(log_std) * noise
    np.testing.assert_allclose(action, jnp.tanh(u))
    np.testing.assert_allclose(logp, sac.tanh_gaussian_log_prob(mean, log_std, u))


def test_soft_q_target_by_hand():
    # r = 1, scale 5, gamma 0.9, alpha 0.5, next Q = (2, 3) -> min 2, log pi' = -1:
    # 5 * 1 + 0.9 * (2 + 0.5 * 1) = 7.25; terminated -> 5.
    got = sac.soft_q_target(
        jnp.array([1.0, 1.0]),
        jnp.array([0.0, 1.0]),
        jnp.array([[2.0, 2.0], [3.0, 3.0]]),
        jnp.array([-1.0, -1.0]),
        jnp.float32(0.5),
        0.9,
        5.0,
    )
    np.testing.assert_allclose(got, [7.25, 5.0], rtol=1e-6)


def test_critic_actor_temperature_losses_by_hand():
    # critics (1, 2) and (3, 4) against target (2, 2): (1 + 0) / 2 + (1 + 4) / 2 = 3
    q = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    assert float(sac.critic_loss(q, jnp.array([2.0, 2.0]))) == pytest.approx(3.0)
    # alpha 2, log pi (-1, 1), min Q (1, 0): mean(-2 - 1, 2 - 0) = -0.5
    q = jnp.array([[1.0, 2.0], [3.0, 0.0]])
    got = sac.actor_loss(jnp.array([-1.0, 1.0]), q, jnp.float32(2.0))
    assert float(got) == pytest.approx(-0.5)
    # log alpha 0.5, log pi (-1, -3), target entropy -1: -0.5 * mean(-2, -4) = 1.5; its gradient
    # +3 lowers alpha, since the entropy 2 exceeds the target -1
    loss, grad = jax.value_and_grad(sac.temperature_loss)(
        jnp.float32(0.5), jnp.array([-1.0, -3.0]), -1.0
    )
    assert float(loss) == pytest.approx(1.5)
    assert float(grad) == pytest.approx(3.0)


def test_polyak_by_hand():
    # (1 - 0.25) * 1 + 0.25 * 3 = 1.5
    got = sac.polyak({"w": jnp.array(1.0)}, {"w": jnp.array(3.0)}, 0.25)
    assert float(got["w"]) == pytest.approx(1.5)


def test_config_errors_are_one_line():
    env, tasks = line_reach()
    with pytest.raises(ConfigError, match="divisible"):
        sac.make_learner(sac.Config(num_tasks=3, batch_size=64), env, tasks)


# ----------------------------------------------------------------------------- learning


def test_sac_learns_line_reach():
    env, tasks = line_reach()
    config = sac.Config(
        num_tasks=4,
        steps_per_update=2,
        gradient_steps=2,
        batch_size=128,
        warmup_steps=100,
        hidden_sizes=(64, 64),
        actor_lr=1e-3,
        critic_lr=1e-3,
        temperature_lr=1e-3,
        gamma=0.9,
        init_temperature=0.1,
    )
    learner = sac.make_learner(config, env, tasks)
    state = jax.jit(learner.init)(jax.random.key(0))
    evaluate = jax.jit(learner.evaluate)
    test = tasks.test_tasks(4)
    before = float(jnp.mean(evaluate(state, jax.random.key(1), test)))

    def chunk(state, key):
        return jax.lax.scan(learner.train_step, state, jax.random.split(key, 100))

    chunk = jax.jit(chunk)
    for i in range(6):
        state, metrics = chunk(state, jax.random.key(10 + i))
    after = float(jnp.mean(evaluate(state, jax.random.key(1), test)))
    assert np.all(np.isfinite(jax.tree.leaves(metrics)))
    # random is about -19, the optimum -1.5
    assert before < -10.0
    assert after > -3.0, (before, after)


def test_sharded_step_matches_single_device():
    from tests.metajax.learner_checks import check_sharded_matches_single

    options = dict(
        num_tasks=8,
        steps_per_update=2,
        gradient_steps=2,
        batch_size=64,
        warmup_steps=20,
        hidden_sizes=[32, 32],
        same_task=False,
    )
    result = check_sharded_matches_single("sac", "point-robot-dense", options, steps=2)
    assert result["ok"]
