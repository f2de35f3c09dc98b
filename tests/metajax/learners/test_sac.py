"""SAC: config errors, learning a 1-D task, sharded == single device (the update: test_soft_ac)."""

from __future__ import annotations

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


# ----------------------------------------------------------------------------- config


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
