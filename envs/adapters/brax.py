"""Any brax environment as a task family over its physics: ``make_brax_task_family``.

The task is a ``DynamicsTask`` of multiplicative scales (body masses, principal inertias, joint
damping, geom friction), each element drawn independently from ``U[lo, hi]`` of its
``randomize`` entry; quantities not named stay at scale 1. Reward, observation and termination
are the brax env's own. The per-task ``System`` is built inside ``step`` from the params, so a
batch of tasks is one ``vmap``. Auto-reset restarts from the start state cached at ``reset``
(``metajax.envs.locomotion.BraxTaskEnv``), as brax's ``AutoResetWrapper`` does.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax

from metajax.envs.core import TaskDistribution
from metajax.envs.locomotion import (
    DynamicsTask,
    RandomDynamicsEnv,
    dynamics_shapes,
    make_brax_env,
)

RANDOMIZABLE = ("mass", "inertia", "damping", "friction")

# The spec registered for ``brax-<name>``: +-50% mass and friction per body / geom.
DEFAULT_RANDOMIZE = {"mass": (0.5, 1.5), "friction": (0.5, 1.5)}


def _check_randomize(randomize: Mapping[str, tuple[float, float]]) -> None:
    unknown = sorted(set(randomize) - set(RANDOMIZABLE))
    if unknown:
        raise ValueError(
            f"cannot randomize {', '.join(unknown)}; randomizable: {', '.join(RANDOMIZABLE)}"
        )
    for field, bounds in randomize.items():
        if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1]:
            raise ValueError(
                f"randomize['{field}'] must be (lo, hi) with 0 < lo <= hi, got {bounds}"
            )


def make_brax_task_family(
    env_name: str,
    randomize: Mapping[str, tuple[float, float]] | None = None,
    horizon: int = 200,
    backend: str = "spring",
    num_train_tasks: int | None = None,
    num_test_tasks: int = 100,
    split_seed: int = 0,
) -> tuple[RandomDynamicsEnv, TaskDistribution]:
    """The brax env ``env_name`` with physics scales ~ U[lo, hi] per ``randomize`` entry.

    Args:
        env_name: a brax env name (``brax.envs.get_environment``), e.g. "ant", "hopper".
        randomize: {"mass" | "inertia" | "damping" | "friction": (lo, hi)}; None or {}
            gives a single task, the unmodified env.
    """
    randomize = dict(randomize or {})
    _check_randomize(randomize)
    if num_train_tasks is not None and num_train_tasks < 1:
        raise ValueError(f"num_train_tasks must be at least 1 or None, got {num_train_tasks}")
    if num_test_tasks < 1:
        raise ValueError(f"num_test_tasks must be at least 1, got {num_test_tasks}")
    env = RandomDynamicsEnv(make_brax_env(env_name, backend), horizon, env_name)
    ones = dynamics_shapes(env.brax_env.sys)

    def sample_task(key: jax.Array) -> DynamicsTask:
        keys = dict(zip(RANDOMIZABLE, jax.random.split(key, len(RANDOMIZABLE)), strict=True))
        scales = {}
        for field in RANDOMIZABLE:
            shape = getattr(ones, field).shape
            if field in randomize:
                lo, hi = randomize[field]
                scales[field] = jax.random.uniform(keys[field], shape, minval=lo, maxval=hi)
            else:
                scales[field] = getattr(ones, field)
        return DynamicsTask(**scales)

    return env, TaskDistribution(
        sample_task, num_train_tasks, num_test_tasks, split_seed=split_seed
    )


def make_brax_ant(
    randomize: Mapping[str, tuple[float, float]] | None = None,
    horizon: int = 200,
    backend: str = "spring",
    num_train_tasks: int | None = None,
    num_test_tasks: int = 100,
    split_seed: int = 0,
) -> tuple[RandomDynamicsEnv, TaskDistribution]:
    """brax's ant with random physics (default: mass and friction x U[0.5, 1.5])."""
    return make_brax_task_family(
        "ant",
        DEFAULT_RANDOMIZE if randomize is None else randomize,
        horizon,
        backend,
        num_train_tasks,
        num_test_tasks,
        split_seed,
    )


def make_brax_halfcheetah(
    randomize: Mapping[str, tuple[float, float]] | None = None,
    horizon: int = 200,
    backend: str = "spring",
    num_train_tasks: int | None = None,
    num_test_tasks: int = 100,
    split_seed: int = 0,
) -> tuple[RandomDynamicsEnv, TaskDistribution]:
    """brax's halfcheetah with random physics (default: mass and friction x U[0.5, 1.5])."""
    return make_brax_task_family(
        "halfcheetah",
        DEFAULT_RANDOMIZE if randomize is None else randomize,
        horizon,
        backend,
        num_train_tasks,
        num_test_tasks,
        split_seed,
    )
