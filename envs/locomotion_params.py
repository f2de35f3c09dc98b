"""Brax families with random physics, as in ``rand_param_envs`` (ProMP, PEARL).

Walker2DRandParams and HopperRandParams: each body mass, principal inertia, joint damping and
geom friction is multiplied by ``base ** u``, u ~ U[-3, 3] per element. Reward, observation and
termination are the brax env's own (forward velocity + 1 alive - 1e-3 |a|^2); the per-task
``System`` is built inside ``step`` (``metajax.envs.adapters.brax.RandomDynamicsEnv``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from brax import base as brax_base

from metajax.envs.adapters.brax import (
    DynamicsTask,
    RandomDynamicsEnv,
    dynamics_shapes,
    make_brax_env,
)
from metajax.envs.core import TaskDistribution, check_splits

# rand_param_envs (used by ProMP and PEARL): each scale is base ** u, u ~ U[-3, 3] per element
LOG_SCALE_LIMIT = 3.0
RAND_PARAM_BASES = {"mass": 1.5, "inertia": 1.5, "damping": 1.3, "friction": 1.5}


def rand_param_sampler(
    system: brax_base.System, log_scale_limit: float = LOG_SCALE_LIMIT
) -> Callable[[jax.Array], DynamicsTask]:
    """Samples ``DynamicsTask`` as rand_param_envs does: scale = base ** U[-limit, limit]."""
    shapes = dynamics_shapes(system)

    def sample_task(key: jax.Array) -> DynamicsTask:
        keys = dict(
            zip(RAND_PARAM_BASES, jax.random.split(key, len(RAND_PARAM_BASES)), strict=True)
        )
        scales = {
            field: RAND_PARAM_BASES[field]
            ** jax.random.uniform(
                keys[field],
                getattr(shapes, field).shape,
                minval=-log_scale_limit,
                maxval=log_scale_limit,
            )
            for field in RAND_PARAM_BASES
        }
        return DynamicsTask(**scales)

    return sample_task


def _make_rand_params(
    env_name: str,
    horizon: int,
    backend: str,
    log_scale_limit: float,
    num_train_tasks: int | None,
    num_test_tasks: int,
    split_seed: int,
) -> tuple[RandomDynamicsEnv, TaskDistribution]:
    if log_scale_limit < 0:
        raise ValueError(f"log_scale_limit must be non-negative, got {log_scale_limit}")
    check_splits(num_train_tasks, num_test_tasks)
    env = RandomDynamicsEnv(make_brax_env(env_name, backend), horizon, env_name)
    sampler = rand_param_sampler(env.brax_env.sys, log_scale_limit)
    return env, TaskDistribution(sampler, num_train_tasks, num_test_tasks, split_seed=split_seed)


def make_walker_params(
    horizon: int = 200,
    backend: str = "spring",
    log_scale_limit: float = LOG_SCALE_LIMIT,
    num_train_tasks: int | None = 40,
    num_test_tasks: int = 10,
    split_seed: int = 0,
) -> tuple[RandomDynamicsEnv, TaskDistribution]:
    """Walker2DRandParams: mass, inertia, friction x 1.5^u, damping x 1.3^u, u ~ U[-3, 3]."""
    return _make_rand_params(
        "walker2d", horizon, backend, log_scale_limit, num_train_tasks, num_test_tasks, split_seed
    )


def make_hopper_params(
    horizon: int = 200,
    backend: str = "spring",
    log_scale_limit: float = LOG_SCALE_LIMIT,
    num_train_tasks: int | None = 40,
    num_test_tasks: int = 10,
    split_seed: int = 0,
) -> tuple[RandomDynamicsEnv, TaskDistribution]:
    """HopperRandParams: mass, inertia, friction x 1.5^u, damping x 1.3^u, u ~ U[-3, 3]."""
    return _make_rand_params(
        "hopper", horizon, backend, log_scale_limit, num_train_tasks, num_test_tasks, split_seed
    )
