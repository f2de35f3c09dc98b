"""Any gymnax environment as a task family: ``GymnaxTaskAdapter`` and ``make_gymnax_task_family``.

A task is a declared set of the gymnax env's ``EnvParams`` fields, each drawn from
``U[low, high]`` (``randomize={field: (low, high)}``); the other fields keep their defaults as
compile-time constants. The task pytree (``GymnaxTask``) holds only the drawn values, so a
batch of tasks is small and ``vmap`` runs over it; the full gymnax params are rebuilt inside
``reset``/``step``. An optional ``derive`` function restores fields computed from others
(CartPole's ``total_mass`` and ``polemass_length``).

Time limit: the episode is truncated at our static ``horizon`` (default: the gymnax default
params' ``max_steps_in_episode``), and the inner params' ``max_steps_in_episode`` is set to the
same value, so envs that read it inside ``step`` (time features) agree with the truncation.
Observations are flattened to float32; the declared observation space is the gymnax one at the
default params, widened to cover it at the corners of the randomized ranges.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment as gymnax_env
from gymnax.environments import spaces

from metajax.envs.core import MetaEnv, TaskDistribution, check_splits


@struct.dataclass
class GymnaxTask:
    """The randomized ``EnvParams`` fields of one task: {field: value}."""

    values: dict[str, jax.Array]


@struct.dataclass
class GymnaxState:
    """The gymnax env's state and our step count."""

    time: jax.Array
    inner: Any


def _flat_box(space: spaces.Space) -> tuple[np.ndarray, np.ndarray] | None:
    """(low, high) of a Box flattened to float32 vectors; None for other spaces."""
    if not isinstance(space, spaces.Box):
        return None
    shape = tuple(space.shape)
    low = np.broadcast_to(np.asarray(space.low, np.float32), shape).reshape(-1)
    high = np.broadcast_to(np.asarray(space.high, np.float32), shape).reshape(-1)
    return low, high


class GymnaxTaskAdapter(MetaEnv):
    """A gymnax env whose randomized ``EnvParams`` fields are the task.

    Args:
        env: a gymnax env id (``gymnax.registered_envs``) or an ``Environment`` instance.
        randomize: {field of the env's EnvParams: (low, high)}, each drawn uniformly per task.
        derive: maps full gymnax params to consistent ones after the fields are set.
        horizon: episode length; default the env's default ``max_steps_in_episode``.
        default_params: the env's params to start from (default: the env's defaults).
        oracle_return: the task-aware optimal episode return, where one is known.
    """

    def __init__(
        self,
        env: str | gymnax_env.Environment,
        randomize: Mapping[str, tuple[float, float]] | None = None,
        derive: Callable[[Any], Any] | None = None,
        horizon: int | None = None,
        default_params: Any | None = None,
        oracle_return: Callable[[GymnaxTask], jax.Array] | None = None,
    ):
        if isinstance(env, str):
            if env not in gymnax.registered_envs:
                raise ValueError(
                    f"unknown gymnax env '{env}'; known: {', '.join(gymnax.registered_envs)}"
                )
            env, params = gymnax.make(env)
        else:
            params = env.default_params
        params = params if default_params is None else default_params
        self.inner = env
        self.randomize = {k: (float(lo), float(hi)) for k, (lo, hi) in (randomize or {}).items()}
        if not self.randomize:
            raise ValueError("randomize must name at least one EnvParams field (the task)")
        fields = list(params.__dataclass_fields__)
        for field, (low, high) in self.randomize.items():
            if field not in fields or field == "max_steps_in_episode":
                raise ValueError(
                    f"cannot randomize '{field}' of {env.name}; EnvParams fields: "
                    f"{', '.join(f for f in fields if f != 'max_steps_in_episode')}"
                )
            if not low <= high:
                raise ValueError(f"randomize['{field}'] needs low <= high, got ({low}, {high})")
        self.derive = derive
        self.oracle_return = oracle_return
        if horizon is None:
            horizon = int(getattr(params, "max_steps_in_episode", 0))
            if horizon < 1:
                raise ValueError(f"{env.name} has no max_steps_in_episode; pass horizon")
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1, got {horizon}")
        self.horizon = horizon
        if "max_steps_in_episode" in fields:
            params = params.replace(max_steps_in_episode=horizon)
        self.base_params = params
        self._action_space = env.action_space(params)
        self._obs_space = self._declared_obs_space()

    @property
    def name(self) -> str:
        return f"Gymnax[{self.inner.name}]"

    def full_params(self, task: GymnaxTask) -> Any:
        """The gymnax params of a task: defaults with the task's fields set, then derived."""
        params = self.base_params.replace(**task.values)
        return params if self.derive is None else self.derive(params)

    def _declared_obs_space(self) -> spaces.Box:
        corners = [self.base_params]
        for values in itertools.product(*self.randomize.values()):
            task = GymnaxTask(dict(zip(self.randomize, values, strict=True)))
            corners.append(self.full_params(task))
        boxes = [_flat_box(self.inner.observation_space(p)) for p in corners]
        if any(box is None for box in boxes):
            size = int(np.prod(self.inner.observation_space(self.base_params).shape))
            return spaces.Box(-jnp.inf, jnp.inf, (size,), jnp.float32)
        low = np.min([box[0] for box in boxes], axis=0)
        high = np.max([box[1] for box in boxes], axis=0)
        return spaces.Box(jnp.asarray(low), jnp.asarray(high), low.shape, jnp.float32)

    @staticmethod
    def _flat(obs: jax.Array) -> jax.Array:
        return jnp.reshape(obs, (-1,)).astype(jnp.float32)

    def reset_env(self, key: jax.Array, params: GymnaxTask) -> tuple[jax.Array, GymnaxState]:
        obs, inner = self.inner.reset_env(key, self.full_params(params))
        return self._flat(obs), GymnaxState(time=jnp.int32(0), inner=inner)

    def step_env(self, key: jax.Array, state: GymnaxState, action, params: GymnaxTask):
        obs, inner, reward, terminated, info = self.inner.step_env(
            key, state.inner, action, self.full_params(params)
        )
        state = GymnaxState(time=state.time + 1, inner=inner)
        reward = jnp.asarray(reward, jnp.float32).reshape(())
        terminated = jnp.asarray(terminated, jnp.bool_).reshape(())
        return self._flat(obs), state, reward, terminated, info

    def observation_space(self, params: GymnaxTask | None = None) -> spaces.Box:
        return self._obs_space

    def action_space(self, params: GymnaxTask | None = None) -> spaces.Space:
        return self._action_space

    def oracle_episode_return(self, params: GymnaxTask) -> jax.Array | None:
        """The family's known optimal return (``oracle_return``), else None."""
        return None if self.oracle_return is None else self.oracle_return(params)

    def sample_task(self, key: jax.Array) -> GymnaxTask:
        """Draws each randomized field from its ``U[low, high]``."""
        keys = jax.random.split(key, len(self.randomize))
        return GymnaxTask(
            {
                field: jax.random.uniform(k, minval=low, maxval=high)
                for k, (field, (low, high)) in zip(keys, self.randomize.items(), strict=True)
            }
        )


def make_gymnax_task_family(
    env: str | gymnax_env.Environment,
    randomize: Mapping[str, tuple[float, float]] | None = None,
    derive: Callable[[Any], Any] | None = None,
    horizon: int | None = None,
    num_train_tasks: int | None = None,
    num_test_tasks: int = 1000,
    split_seed: int = 0,
    oracle_return: Callable[[GymnaxTask], jax.Array] | None = None,
) -> tuple[GymnaxTaskAdapter, TaskDistribution]:
    """A gymnax env as a task family over its ``randomize``d EnvParams fields."""
    check_splits(num_train_tasks, num_test_tasks)
    adapter = GymnaxTaskAdapter(env, randomize, derive, horizon, oracle_return=oracle_return)
    tasks = TaskDistribution(
        adapter.sample_task,
        num_train_tasks=num_train_tasks,
        num_test_tasks=num_test_tasks,
        split_seed=split_seed,
    )
    return adapter, tasks


def cartpole_derive(params: Any) -> Any:
    """CartPole's dependent fields: total mass and pole mass x half-length."""
    return params.replace(
        total_mass=params.masscart + params.masspole,
        polemass_length=params.masspole * params.length,
    )


def make_gymnax_cartpole(
    length: tuple[float, float] = (0.25, 1.0),
    masspole: tuple[float, float] = (0.05, 0.5),
    masscart: tuple[float, float] = (0.5, 2.0),
    horizon: int | None = None,
    num_train_tasks: int | None = None,
    num_test_tasks: int = 1000,
    split_seed: int = 0,
) -> tuple[GymnaxTaskAdapter, TaskDistribution]:
    """gymnax CartPole-v1 with pole half-length, pole mass and cart mass drawn per task.

    Oracle: every step pays 1 until the pole falls, so the best return is the horizon; a
    task-aware LQR controller (force sign of -K s) attains it on every task in the default
    ranges (tests/envs/adapters/test_gymnax.py).
    """
    randomize = {"length": length, "masspole": masspole, "masscart": masscart}
    for field, (low, _) in randomize.items():
        if low <= 0:
            raise ValueError(f"{field} range must be positive, got {randomize[field]}")
    env, tasks = make_gymnax_task_family(
        "CartPole-v1",
        randomize,
        cartpole_derive,
        horizon,
        num_train_tasks,
        num_test_tasks,
        split_seed,
    )

    def oracle_return(task: GymnaxTask) -> jax.Array:
        return jnp.full(jnp.shape(task.values["length"]), float(env.horizon), jnp.float32)

    env.oracle_return = oracle_return
    return env, tasks


def make_gymnax_pendulum(
    m: tuple[float, float] = (0.5, 2.0),
    l: tuple[float, float] = (0.5, 2.0),  # noqa: E741 - gymnax's field name
    horizon: int | None = None,
    num_train_tasks: int | None = None,
    num_test_tasks: int = 1000,
    split_seed: int = 0,
) -> tuple[GymnaxTaskAdapter, TaskDistribution]:
    """gymnax Pendulum-v1 with the pendulum's mass ``m`` and length ``l`` drawn per task."""
    for field, bounds in (("m", m), ("l", l)):
        if bounds[0] <= 0:
            raise ValueError(f"{field} range must be positive, got {bounds}")
    return make_gymnax_task_family(
        "Pendulum-v1",
        {"m": m, "l": l},
        None,
        horizon,
        num_train_tasks,
        num_test_tasks,
        split_seed,
    )
