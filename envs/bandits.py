"""Bernoulli multi-armed bandits as in Duan et al. (2016): k arms, p_i ~ U[0, 1] per task.

Each pull is one episode (horizon 1); an RL² trial of n pulls is n episodes of the same task
(see ``envs.wrappers.TrialWrapper``). Unlike gymnax's bandit, ``reset`` keeps the task.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from metajax.envs.core import EnvState, MetaEnv, TaskDistribution


@struct.dataclass
class BanditParams:
    arm_probs: jax.Array  # [arms] success probability of each arm


class BernoulliBandit(MetaEnv):
    """k-armed Bernoulli bandit; observation is a constant, each episode one pull."""

    horizon = 1

    def __init__(self, arms: int = 5):
        self.arms = arms

    def reset_env(self, key: jax.Array, params: BanditParams) -> tuple[jax.Array, EnvState]:
        del key, params
        return jnp.zeros((1,), jnp.float32), EnvState(time=jnp.int32(0))

    def step_env(self, key, state, action, params: BanditParams):
        reward = jax.random.bernoulli(key, params.arm_probs[action]).astype(jnp.float32)
        state = EnvState(time=state.time + 1)
        return jnp.zeros((1,), jnp.float32), state, reward, jnp.bool_(True), {}

    def observation_space(self, params=None) -> spaces.Box:
        return spaces.Box(0.0, 0.0, (1,), jnp.float32)

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(self.arms)

    def oracle_episode_return(self, params: BanditParams) -> jax.Array:
        """The best arm's success probability: the expected reward of always pulling it."""
        return jnp.max(params.arm_probs, axis=-1)


def make_bernoulli_bandit(
    arms: int = 5, num_test_tasks: int = 1000, split_seed: int = 0
) -> tuple[BernoulliBandit, TaskDistribution]:
    """A Bernoulli bandit with ``arms`` arms and its task distribution (p ~ U[0, 1])."""
    if arms < 2:
        raise ValueError(f"arms must be at least 2, got {arms}")

    def sample_task(key: jax.Array) -> BanditParams:
        return BanditParams(arm_probs=jax.random.uniform(key, (arms,)))

    return BernoulliBandit(arms), TaskDistribution(
        sample_task, num_test_tasks=num_test_tasks, split_seed=split_seed
    )
