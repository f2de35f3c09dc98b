"""Wrappers over meta-envs: the RL² trial, and Box actions in [-1, 1].

A trial is K episodes of one task. ``TrialWrapper`` turns an env into one whose episode is a
whole trial: the inner env is reset between its episodes with the same params (the task never
changes inside a trial), and the observation is augmented with what RL² feeds its memory:
the previous action (one-hot when discrete), the previous reward and a flag that the previous
step ended an inner episode. With ``time_inputs`` it also appends where the next step falls, as
fractions: of the trial (t / (K H)), of the trial's episodes (episodes done / K) and of the
inner episode (steps into it / H). A memory can count these itself from the done flags, but
the value of a finite trial depends on them directly. With ``transition_inputs`` it also appends
the observation the previous action was taken in (zeros at a trial's start), so every input
holds a whole transition (s, a, r, done, s'); a memory otherwise has to carry s itself to
bind a reward to the state it came from.

Inner episodes restart through the inner env's ``auto_reset``: a fresh ``reset_env`` for most
envs; for the brax families, the start state cached at ``reset``, so every episode of a trial
starts from the trial's first initial state (as brax's ``AutoResetWrapper`` does).

``UnitBoxActions`` lets a Gaussian policy act in [-1, 1] whatever the env's box: the env gets
the action clipped to [-1, 1] and mapped affinely onto its bounds. A unit-variance Gaussian then
spans the box; on the point robots (bounds +-0.1) it would otherwise be clipped nearly always.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from metajax.envs.core import EnvParams, MetaEnv, encode_action, flat_action_dim, is_discrete


@struct.dataclass
class TrialState:
    inner: object  # the inner env's state
    time: jax.Array  # steps taken in this trial
    episode: jax.Array  # inner episodes finished in this trial
    last_obs: jax.Array | None = None  # flat observation acted in (only with transition_inputs)


class TrialWrapper(MetaEnv):
    """K episodes of the same task as one episode, with RL² inputs appended to observations."""

    def __init__(
        self,
        env: MetaEnv,
        episodes_per_trial: int,
        time_inputs: bool = False,
        transition_inputs: bool = False,
    ):
        if episodes_per_trial < 1:
            raise ValueError(f"episodes_per_trial must be at least 1, got {episodes_per_trial}")
        self.env = env
        self.episodes_per_trial = episodes_per_trial
        self.time_inputs = time_inputs
        self.transition_inputs = transition_inputs
        self.horizon = episodes_per_trial * env.horizon
        self._action_space = env.action_space()
        self._obs_space = env.observation_space()
        self.reuses_reset_state = env.reuses_reset_state

    @property
    def name(self) -> str:
        return f"Trial[{self.env.name}, K={self.episodes_per_trial}]"

    def _augment(
        self, obs, encoded_action, reward, episode_done, state: TrialState, acted_in=None
    ) -> jax.Array:
        """The augmented observation; ``acted_in`` is the flat observation the previous action
        was taken in (``transition_inputs`` only)."""
        parts = [
            _flat(obs),
            encoded_action,
            jnp.reshape(reward, (1,)).astype(jnp.float32),
            jnp.reshape(episode_done, (1,)).astype(jnp.float32),
        ]
        if self.time_inputs:
            fractions = (
                state.time / self.horizon,
                state.episode / self.episodes_per_trial,
                state.inner.time / self.env.horizon,  # every EnvState counts its steps
            )
            parts.append(jnp.stack(fractions).astype(jnp.float32))
        if self.transition_inputs:
            parts.append(acted_in)
        return jnp.concatenate(parts)

    def reset_env(self, key: jax.Array, params: EnvParams):
        return self._start(*self.env.reset_env(key, params))

    def auto_reset(self, key: jax.Array, state: TrialState, params: EnvParams):
        """A new trial, same task: the inner env's ``auto_reset``, no previous action."""
        obs, inner = self.env.auto_reset(key, state.inner, params)
        return self._start(obs, inner)

    def _start(self, obs, inner):
        no_action = jnp.zeros((flat_action_dim(self._action_space),), jnp.float32)
        last_obs = _flat(obs) if self.transition_inputs else None
        state = TrialState(inner=inner, time=jnp.int32(0), episode=jnp.int32(0), last_obs=last_obs)
        acted_in = None if last_obs is None else jnp.zeros_like(last_obs)
        return self._augment(obs, no_action, 0.0, False, state, acted_in), state

    def step_env(self, key: jax.Array, state: TrialState, action, params: EnvParams):
        key_step, key_reset = jax.random.split(key)
        obs, inner, reward, terminated, info = self.env.step_env(
            key_step, state.inner, action, params
        )
        episode_done = jnp.logical_or(terminated, self.env.is_truncated(inner, params))
        obs_reset, inner_reset = self.env.auto_reset(key_reset, inner, params)
        next_inner = jax.tree.map(lambda r, s: jnp.where(episode_done, r, s), inner_reset, inner)
        next_obs = jnp.where(episode_done, obs_reset, obs)
        episode = state.episode + episode_done.astype(jnp.int32)
        trial_done = episode >= self.episodes_per_trial
        info = {
            **info,
            "episode_done": episode_done,
            "episode_terminated": terminated,
            "episode_final_obs": _flat(obs),
            "episode_index": state.episode,
        }
        last_obs = _flat(next_obs) if self.transition_inputs else None
        new_state = TrialState(next_inner, state.time + 1, episode, last_obs)
        encoded = encode_action(self._action_space, action)
        augmented = self._augment(
            next_obs, encoded, reward, episode_done, new_state, state.last_obs
        )
        return augmented, new_state, reward, trial_done, info

    def observation_space(self, params=None) -> spaces.Box:
        inner = self._obs_space
        extra = flat_action_dim(self._action_space) + 2 + (3 if self.time_inputs else 0)
        extra += int(np.prod(inner.shape)) if self.transition_inputs else 0

        def bound(value, fill):
            inner_bound = jnp.broadcast_to(jnp.asarray(value, jnp.float32), inner.shape)
            return jnp.concatenate([inner_bound.reshape(-1), jnp.full((extra,), fill)])

        low, high = bound(inner.low, -jnp.inf), bound(inner.high, jnp.inf)
        return spaces.Box(low, high, low.shape, jnp.float32)

    def action_space(self, params=None) -> spaces.Space:
        return self._action_space

    def oracle_episode_return(self, params: EnvParams) -> jax.Array | None:
        """The oracle's return over a whole trial: K times its per-episode return."""
        per_episode = self.env.oracle_episode_return(params)
        return None if per_episode is None else self.episodes_per_trial * per_episode


def _flat(obs) -> jax.Array:
    return jnp.reshape(obs, (-1,)).astype(jnp.float32)


class UnitBoxActions(MetaEnv):
    """``env`` with its finite Box action space presented as [-1, 1]^A (see the module doc)."""

    def __init__(self, env: MetaEnv):
        space = env.action_space()
        if not has_finite_box(space):
            raise ValueError(f"{env.name} has no finite Box action space to rescale")
        self.env = env
        self.horizon = env.horizon
        self.reuses_reset_state = env.reuses_reset_state
        self._low, self._high = box_bounds(space)

    @property
    def name(self) -> str:
        return f"UnitBoxActions[{self.env.name}]"

    def env_action(self, action: jax.Array) -> jax.Array:
        """The env's action for a unit action: clipped to [-1, 1], mapped onto [low, high]."""
        unit = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
        return scale_unit_action(unit, self._low, self._high)

    def reset_env(self, key: jax.Array, params: EnvParams):
        return self.env.reset_env(key, params)

    def auto_reset(self, key: jax.Array, state, params: EnvParams):
        return self.env.auto_reset(key, state, params)

    def step_env(self, key: jax.Array, state, action, params: EnvParams):
        return self.env.step_env(key, state, self.env_action(action), params)

    def is_truncated(self, state, params: EnvParams) -> jax.Array:
        return self.env.is_truncated(state, params)

    def observation_space(self, params=None) -> spaces.Box:
        return self.env.observation_space(params)

    def action_space(self, params=None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, self._low.shape, jnp.float32)

    def oracle_episode_return(self, params: EnvParams) -> jax.Array | None:
        return self.env.oracle_episode_return(params)


def box_bounds(space: spaces.Box) -> tuple[jax.Array, jax.Array]:
    """Low and high of a Box space, float32, broadcast to its shape."""
    low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), space.shape)
    high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), space.shape)
    return low, high


def scale_unit_action(unit_action: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """Maps an action in [-1, 1] affinely onto the Box [low, high]."""
    return low + 0.5 * (unit_action + 1.0) * (high - low)


def has_finite_box(space: spaces.Space) -> bool:
    """A continuous action space whose bounds are all finite (so it can be rescaled)."""
    if is_discrete(space) or not isinstance(space, spaces.Box):
        return False
    bounds = jnp.stack(jnp.broadcast_arrays(jnp.asarray(space.low), jnp.asarray(space.high)))
    return bool(jnp.all(jnp.isfinite(bounds)))


def unit_box_actions(env: MetaEnv) -> MetaEnv:
    """``env`` in ``UnitBoxActions`` when its actions are a finite Box, else ``env`` itself."""
    return UnitBoxActions(env) if has_finite_box(env.action_space()) else env
