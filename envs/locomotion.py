"""Brax locomotion task families: the task (velocity, direction, goal) in ``EnvParams``.

Each family is a ``BraxTaskEnv`` (``metajax.envs.adapters.brax``, the brax glue: brax's physics,
observation and health check, auto-reset to the start state cached at ``reset``) with the task's
reward. The families with random physics (Walker2DRandParams, HopperRandParams) are in
``metajax.envs.locomotion_params``; their names are re-exported here.

The families follow MAML (Finn et al. 2017), ProMP (Rothfuss et al. 2019, ``rand_param_envs``)
and PEARL (Rakelly et al. 2019); see each class for its reward. Differences from the MuJoCo
originals: the physics is brax's (``backend``), actions are clipped to [-1, 1], and brax does
not compute contact forces, so the originals' small contact-cost terms are absent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from metajax.envs.adapters.brax import (
    BACKENDS,
    BraxTaskEnv,
    BraxTaskState,
    DynamicsTask,
    RandomDynamicsEnv,
    dynamics_shapes,
    make_brax_env,
    scaled_system,
)
from metajax.envs.core import EnvParams, TaskDistribution, check_splits
from metajax.envs.locomotion_params import (
    LOG_SCALE_LIMIT,
    RAND_PARAM_BASES,
    make_hopper_params,
    make_walker_params,
    rand_param_sampler,
)

__all__ = [
    "BACKENDS",
    "LOG_SCALE_LIMIT",
    "RAND_PARAM_BASES",
    "AntDir",
    "AntGoal",
    "BraxTaskEnv",
    "BraxTaskState",
    "DirectionTask",
    "DynamicsTask",
    "EnumeratedTasks",
    "GoalTask",
    "HalfCheetahDir",
    "HalfCheetahVel",
    "HumanoidDir",
    "PlanarDirectionTask",
    "RandomDynamicsEnv",
    "VelocityTask",
    "dynamics_shapes",
    "enumerated_tasks",
    "make_ant_dir",
    "make_ant_goal",
    "make_brax_env",
    "make_cheetah_dir",
    "make_cheetah_vel",
    "make_hopper_params",
    "make_humanoid_dir",
    "make_walker_params",
    "rand_param_sampler",
    "scaled_system",
]

# ---------------------------------------------------------------------------------------------
# TASK PARAMS
# ---------------------------------------------------------------------------------------------


@struct.dataclass
class VelocityTask:
    """A target running velocity."""

    target_velocity: jax.Array  # [] m/s along +x


@struct.dataclass
class DirectionTask:
    """A running direction along x."""

    direction: jax.Array  # [] +1 forward, -1 backward


@struct.dataclass
class PlanarDirectionTask:
    """A walking direction in the plane."""

    direction: jax.Array  # [2] unit vector in the xy-plane


@struct.dataclass
class GoalTask:
    """A goal position in the plane."""

    goal: jax.Array  # [2] xy position of the goal


# ---------------------------------------------------------------------------------------------
# FAMILIES
# ---------------------------------------------------------------------------------------------

CHEETAH_CTRL_COST = 0.05  # ProMP / MAML half_cheetah_rand_vel: 0.5 * 1e-1 * |a|^2


class HalfCheetahVel(BraxTaskEnv):
    """HalfCheetahVel (MAML, ProMP, PEARL): run at the target velocity.

    reward = -|v_x - v_target| - 0.05 |a|^2, v_x the torso's x-velocity over the step.
    """

    def task_reward(self, before, after, action, params: VelocityTask) -> jax.Array:
        velocity = after.metrics["x_velocity"]
        return -jnp.abs(velocity - params.target_velocity) - CHEETAH_CTRL_COST * jnp.sum(
            jnp.square(action)
        )


class HalfCheetahDir(BraxTaskEnv):
    """HalfCheetahFwdBack (MAML, ProMP, PEARL): run forward (+1) or backward (-1).

    reward = direction * v_x - 0.05 |a|^2.
    """

    def task_reward(self, before, after, action, params: DirectionTask) -> jax.Array:
        velocity = after.metrics["x_velocity"]
        return params.direction * velocity - CHEETAH_CTRL_COST * jnp.sum(jnp.square(action))


class AntDir(BraxTaskEnv):
    """AntRandDirec2D (ProMP): walk along a direction in the plane.

    reward = <v_xy, direction> + 1 (alive) - 0.5 |a|^2; ends when the torso leaves z in
    [0.2, 1.0].
    """

    def task_reward(self, before, after, action, params: PlanarDirectionTask) -> jax.Array:
        velocity = jnp.stack([after.metrics["x_velocity"], after.metrics["y_velocity"]])
        forward = jnp.dot(velocity, params.direction)
        return forward + after.metrics["reward_survive"] + after.metrics["reward_ctrl"]


class AntGoal(BraxTaskEnv):
    """AntGoal (PEARL): walk to a goal in the plane; never terminates.

    reward = -|xy_torso - goal|_1 - 0.1 |a|^2. Observations include the torso's xy position.
    """

    def task_reward(self, before, after, action, params: GoalTask) -> jax.Array:
        position = jnp.stack([after.metrics["x_position"], after.metrics["y_position"]])
        return -jnp.sum(jnp.abs(position - params.goal)) + after.metrics["reward_ctrl"]


class HumanoidDir(BraxTaskEnv):
    """HumanoidDir (PEARL; ProMP's HumanoidRandDirec): walk along a direction in the plane.

    reward = 1.25 <v_com_xy, direction> + 5 (alive) - 0.1 |ctrl|^2; ends when the torso
    leaves z in [1, 2].
    """

    def task_reward(self, before, after, action, params: PlanarDirectionTask) -> jax.Array:
        velocity = jnp.stack([after.metrics["x_velocity"], after.metrics["y_velocity"]])
        forward = 1.25 * jnp.dot(velocity, params.direction)
        return forward + after.metrics["reward_alive"] + after.metrics["reward_quadctrl"]


# ---------------------------------------------------------------------------------------------
# TASK DISTRIBUTIONS
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # its tasks are arrays: compare by identity
class EnumeratedTasks(TaskDistribution):
    """A few fixed tasks, all used for training and for testing (the Fwd/Back families).

    No disjoint held-out split: with two tasks (forward, backward) the reference protocol
    trains and tests on both, so does this. ``test_tasks(n)`` cycles through the list, so
    every task is in any split of size >= its length.
    """

    disjoint_test_split: ClassVar[bool] = False

    tasks: EnvParams = None

    def is_held_out(self, params: EnvParams) -> jax.Array:
        """No task is held out from training."""
        del params
        return jnp.bool_(False)

    def _cycle(self, n: int) -> EnvParams:
        count = jax.tree.leaves(self.tasks)[0].shape[0]
        return jax.tree.map(lambda x: x[jnp.arange(n) % count], self.tasks)

    def train_tasks(self) -> EnvParams:
        """Every task, in order."""
        return self._cycle(self.num_train_tasks)

    def test_tasks(self, n: int | None = None) -> EnvParams:
        """The tasks in order, cycled to ``n`` (the same tasks as training)."""
        return self._cycle(self.num_test_tasks if n is None else n)


def enumerated_tasks(tasks: EnvParams) -> EnumeratedTasks:
    """A distribution drawing uniformly from the stacked ``tasks``."""
    count = jax.tree.leaves(tasks)[0].shape[0]

    def sample_task(key: jax.Array) -> EnvParams:
        index = jax.random.randint(key, (), 0, count)
        return jax.tree.map(lambda x: x[index], tasks)

    return EnumeratedTasks(sample_task, num_train_tasks=count, num_test_tasks=count, tasks=tasks)


def _planar_direction(key: jax.Array) -> PlanarDirectionTask:
    angle = jax.random.uniform(key, (), minval=0.0, maxval=2 * math.pi)
    return PlanarDirectionTask(direction=jnp.stack([jnp.cos(angle), jnp.sin(angle)]))


def _disc_goal(key: jax.Array, inner: float, outer: float) -> GoalTask:
    key_angle, key_radius = jax.random.split(key)
    angle = jax.random.uniform(key_angle, (), minval=0.0, maxval=2 * math.pi)
    # uniform over the area: r^2 ~ U[inner^2, outer^2]
    radius = jnp.sqrt(jax.random.uniform(key_radius, (), minval=inner**2, maxval=outer**2))
    return GoalTask(goal=radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)]))


def make_cheetah_vel(
    horizon: int = 200,
    backend: str = "spring",
    min_velocity: float = 0.0,
    max_velocity: float = 2.0,
    num_train_tasks: int | None = None,
    num_test_tasks: int = 30,
    split_seed: int = 0,
) -> tuple[HalfCheetahVel, TaskDistribution]:
    """HalfCheetahVel: target velocity ~ U[min, max] (default U[0, 2]); OOD U[max, max + 1].

    ``num_train_tasks=100`` gives PEARL's fixed pool (100 train / 30 test); None (MAML,
    ProMP) draws fresh targets.
    """
    if not 0.0 <= min_velocity < max_velocity:
        raise ValueError(
            f"need 0 <= min_velocity < max_velocity, got {min_velocity}, {max_velocity}"
        )
    check_splits(num_train_tasks, num_test_tasks)
    env = HalfCheetahVel(make_brax_env("halfcheetah", backend), horizon, "halfcheetah")

    def uniform_velocity(low: float, high: float) -> Callable[[jax.Array], VelocityTask]:
        return lambda key: VelocityTask(jax.random.uniform(key, (), minval=low, maxval=high))

    tasks = TaskDistribution(
        uniform_velocity(min_velocity, max_velocity),
        num_train_tasks=num_train_tasks,
        num_test_tasks=num_test_tasks,
        split_seed=split_seed,
        sample_ood_task=uniform_velocity(max_velocity, max_velocity + 1.0),
    )
    return env, tasks


def make_cheetah_dir(
    horizon: int = 200, backend: str = "spring"
) -> tuple[HalfCheetahDir, EnumeratedTasks]:
    """HalfCheetahFwdBack: two tasks, direction +1 and -1, both in train and test."""
    env = HalfCheetahDir(make_brax_env("halfcheetah", backend), horizon, "halfcheetah")
    return env, enumerated_tasks(DirectionTask(direction=jnp.array([1.0, -1.0])))


def make_ant_dir(
    horizon: int = 200,
    backend: str = "spring",
    num_train_tasks: int | None = None,
    num_test_tasks: int = 30,
    split_seed: int = 0,
) -> tuple[AntDir, TaskDistribution]:
    """AntRandDirec2D: direction angle ~ U[0, 2 pi]."""
    check_splits(num_train_tasks, num_test_tasks)
    env = AntDir(make_brax_env("ant", backend), horizon, "ant")
    return env, TaskDistribution(
        _planar_direction, num_train_tasks, num_test_tasks, split_seed=split_seed
    )


def make_ant_goal(
    horizon: int = 200,
    backend: str = "spring",
    radius: float = 3.0,
    num_train_tasks: int | None = 150,
    num_test_tasks: int = 30,
    split_seed: int = 0,
) -> tuple[AntGoal, TaskDistribution]:
    """AntGoal (PEARL): goal uniform in the disc of ``radius`` 3; OOD in the ring [r, r + 1]."""
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    check_splits(num_train_tasks, num_test_tasks)
    brax_env = make_brax_env(
        "ant",
        backend,
        ctrl_cost_weight=0.1,
        healthy_reward=0.0,
        terminate_when_unhealthy=False,
        exclude_current_positions_from_observation=False,
    )
    env = AntGoal(brax_env, horizon, "ant")
    return env, TaskDistribution(
        lambda key: _disc_goal(key, 0.0, radius),
        num_train_tasks,
        num_test_tasks,
        split_seed=split_seed,
        sample_ood_task=lambda key: _disc_goal(key, radius, radius + 1.0),
    )


def make_humanoid_dir(
    horizon: int = 200,
    backend: str = "spring",
    num_train_tasks: int | None = 100,
    num_test_tasks: int = 30,
    split_seed: int = 0,
) -> tuple[HumanoidDir, TaskDistribution]:
    """HumanoidDir (PEARL): direction angle ~ U[0, 2 pi]; 100 train / 30 test tasks."""
    check_splits(num_train_tasks, num_test_tasks)
    env = HumanoidDir(make_brax_env("humanoid", backend), horizon, "humanoid")
    return env, TaskDistribution(
        _planar_direction, num_train_tasks, num_test_tasks, split_seed=split_seed
    )
