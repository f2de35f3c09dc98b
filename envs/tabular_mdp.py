"""Random tabular MDPs as in Duan et al. (2016).

|S| states, |A| actions; per task, reward means mu(s, a) ~ N(1, 1) and transitions
P(. | s, a) ~ flat Dirichlet; a reward is drawn from N(mu(s, a), 1). Episodes start in state 0
and last ``horizon`` steps; the observation is the one-hot state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from metajax.envs.core import MetaEnv, TaskDistribution


@struct.dataclass
class MDPParams:
    transitions: jax.Array  # [S, A, S] P(s' | s, a)
    reward_means: jax.Array  # [S, A]


@struct.dataclass
class MDPState:
    time: jax.Array
    position: jax.Array  # current state index


class TabularMDP(MetaEnv):
    """A random finite MDP with Gaussian rewards and a fixed horizon."""

    def __init__(self, num_states: int = 10, num_actions: int = 5, horizon: int = 10):
        self.num_states = num_states
        self.num_actions_ = num_actions
        self.horizon = horizon

    def _obs(self, position: jax.Array) -> jax.Array:
        return jax.nn.one_hot(position, self.num_states, dtype=jnp.float32)

    def reset_env(self, key, params: MDPParams):
        del key, params
        state = MDPState(time=jnp.int32(0), position=jnp.int32(0))
        return self._obs(state.position), state

    def step_env(self, key, state: MDPState, action, params: MDPParams):
        key_reward, key_next = jax.random.split(key)
        mean = params.reward_means[state.position, action]
        reward = mean + jax.random.normal(key_reward)
        probs = params.transitions[state.position, action]
        position = jax.random.choice(key_next, self.num_states, p=probs).astype(jnp.int32)
        state = MDPState(time=state.time + 1, position=position)
        return self._obs(position), state, reward, jnp.bool_(False), {}

    def observation_space(self, params=None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self.num_states,), jnp.float32)

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions_)

    def optimal_values(self, params: MDPParams) -> jax.Array:
        """Finite-horizon optimal state values [horizon + 1, S] by backward induction."""

        def backup(next_values, _):
            q = params.reward_means + params.transitions @ next_values  # [S, A]
            values = jnp.max(q, axis=-1)
            return values, values

        terminal = jnp.zeros((self.num_states,), jnp.float32)
        _, values = jax.lax.scan(backup, terminal, None, length=self.horizon)
        return jnp.concatenate([values[::-1], terminal[None]], axis=0)

    def oracle_episode_return(self, params: MDPParams) -> jax.Array:
        """Expected return of the optimal policy that knows the MDP, from state 0."""
        if params.reward_means.ndim == 3:
            return jax.vmap(self.oracle_episode_return)(params)
        return self.optimal_values(params)[0, 0]


def make_tabular_mdp(
    num_states: int = 10,
    num_actions: int = 5,
    horizon: int = 10,
    num_test_tasks: int = 1000,
    split_seed: int = 0,
) -> tuple[TabularMDP, TaskDistribution]:
    """A random tabular MDP family with Duan et al.'s defaults (10 states, 5 actions, T = 10)."""
    if num_states < 1 or num_actions < 1 or horizon < 1:
        raise ValueError(
            f"num_states, num_actions and horizon must be positive, "
            f"got {num_states}, {num_actions}, {horizon}"
        )

    def sample_task(key: jax.Array) -> MDPParams:
        key_p, key_r = jax.random.split(key)
        alpha = jnp.ones((num_states, num_actions, num_states))
        return MDPParams(
            transitions=jax.random.dirichlet(key_p, alpha),
            reward_means=1.0 + jax.random.normal(key_r, (num_states, num_actions)),
        )

    env = TabularMDP(num_states, num_actions, horizon)
    return env, TaskDistribution(sample_task, num_test_tasks=num_test_tasks, split_seed=split_seed)
