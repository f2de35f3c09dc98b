"""Brax locomotion task families: the task (velocity, direction, goal, physics) in ``EnvParams``.

``BraxTaskEnv`` wraps a brax ``PipelineEnv`` as a ``MetaEnv``: ``reset_env`` / ``step_env`` run
the brax env's own reset and step (its physics pipeline, observation and health check), and a
family replaces the reward with the task's. Families with random dynamics build a per-task
``System`` from scale leaves in the params inside ``step``; the shared brax env and its ``sys``
are never mutated (a per-task shallow copy of the env object carries the task's ``sys``, as
brax's own domain randomization swaps ``sys`` in).

Auto-reset restarts from the start state cached at ``reset`` (as brax's ``AutoResetWrapper``
does), not from a fresh brax reset: a fresh one (``pipeline_init``) at every step, kept only
where an episode ended, is what gymnax's ``step`` would pay. So every episode of an env slot,
and of an RL² trial, starts from the same initial state until the next ``reset``; the task
(the params) is kept.

The families follow MAML (Finn et al. 2017), ProMP (Rothfuss et al. 2019, ``rand_param_envs``)
and PEARL (Rakelly et al. 2019); see each class for its reward. Differences from the MuJoCo
originals: the physics is brax's (``backend``), actions are clipped to [-1, 1], and brax does
not compute contact forces, so the originals' small contact-cost terms are absent.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from brax import base as brax_base
from brax import envs as brax_envs
from brax.envs.base import PipelineEnv
from brax.envs.base import State as BraxState
from flax import struct
from gymnax.environments import spaces

from metajax.envs.core import EnvParams, EnvState, MetaEnv, TaskDistribution

BACKENDS = ("spring", "generalized", "positional", "mjx")


def make_brax_env(env_name: str, backend: str = "spring", **kwargs) -> PipelineEnv:
    """A raw brax env by name; raises ValueError for an unknown name or backend."""
    if env_name not in brax_envs._envs:  # brax has no public list of its names
        known = ", ".join(sorted(brax_envs._envs))
        raise ValueError(f"unknown brax env '{env_name}'; known: {known}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    with warnings.catch_warnings():  # brax warns on every model load that it is unmaintained
        warnings.filterwarnings("ignore", message="Brax System", category=UserWarning)
        return brax_envs.get_environment(env_name, backend=backend, **kwargs)


@struct.dataclass
class BraxTaskState(EnvState):
    """Step counter, the brax env's own state (physics state, obs, metrics) and the start state.

    ``first`` is the brax state that ``reset`` produced; auto-reset returns to it.
    """

    brax: BraxState
    first: BraxState


class BraxTaskEnv(MetaEnv):
    """A brax env as a meta-env: brax physics and health check, the family's task reward.

    Subclasses override ``task_reward`` (the reward of one step given the brax states before
    and after it) and, for random dynamics, ``task_system`` (the task's physics ``System``).
    An episode ends when brax reports the robot unhealthy (terminated) or after ``horizon``
    steps (truncated). The next episode starts from the state ``reset`` produced (cached in
    the state, as brax's ``AutoResetWrapper`` does), with the same task; the start state was
    built with the params given to ``reset``, so pass new params together with a new
    ``reset``.
    """

    reuses_reset_state = True

    def __init__(self, brax_env: PipelineEnv, horizon: int = 200, env_name: str = "brax"):
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1, got {horizon}")
        self.brax_env = brax_env
        self.horizon = horizon
        self.env_name = env_name
        self.action_size = brax_env.action_size
        self.obs_size = jax.eval_shape(brax_env.reset, jax.random.key(0)).obs.shape[-1]

    @property
    def name(self) -> str:
        return f"{type(self).__name__}[{self.env_name}, {self.brax_env.backend}]"

    @property
    def dt(self) -> float:
        """Seconds of simulated time per env step."""
        return float(self.brax_env.dt)

    def task_system(self, params: EnvParams) -> brax_base.System | None:
        """The task's physics system, or None to use the brax env's own."""
        del params
        return None

    def task_reward(
        self, before: BraxState, after: BraxState, action: jax.Array, params: EnvParams
    ) -> jax.Array:
        """The reward of one step; the default is brax's own reward."""
        del before, action, params
        return after.reward

    def _env_for(self, params: EnvParams) -> PipelineEnv:
        system = self.task_system(params)
        if system is None:
            return self.brax_env
        task_env = copy.copy(self.brax_env)  # a per-task view; the shared env keeps its sys
        task_env.sys = system
        return task_env

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, BraxTaskState]:
        state = self._env_for(params).reset(key)
        return state.obs.astype(jnp.float32), BraxTaskState(
            time=jnp.int32(0), brax=state, first=state
        )

    def auto_reset(self, key: jax.Array, state: BraxTaskState, params: EnvParams):
        """The cached start state: no brax reset (``pipeline_init``) at every step."""
        del key, params
        start = BraxTaskState(time=jnp.zeros_like(state.time), brax=state.first, first=state.first)
        return state.first.obs.astype(jnp.float32), start

    def step_env(self, key: jax.Array, state: BraxTaskState, action: jax.Array, params: EnvParams):
        del key  # brax dynamics are deterministic
        action = jnp.clip(action.astype(jnp.float32), -1.0, 1.0)
        # brax updates metrics in place; copies keep the cached start state's dicts intact
        before = state.brax.replace(metrics=dict(state.brax.metrics), info=dict(state.brax.info))
        after = self._env_for(params).step(before, action)
        reward = self.task_reward(state.brax, after, action, params).astype(jnp.float32)
        terminated = after.done > 0.5
        next_state = BraxTaskState(time=state.time + 1, brax=after, first=state.first)
        return after.obs.astype(jnp.float32), next_state, reward, terminated, {}

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self.obs_size,), jnp.float32)

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self.action_size,), jnp.float32)

    def oracle_episode_return(self, params: EnvParams) -> jax.Array | None:
        """None: no closed form; the oracle is a policy trained per task (see the README)."""
        del params
        return None


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


@struct.dataclass
class DynamicsTask:
    """Multiplicative scales of the physics, one per body / dof / geom (1 leaves it as is)."""

    mass: jax.Array  # [links]
    inertia: jax.Array  # [links, 3] principal moments
    damping: jax.Array  # [dofs]
    friction: jax.Array  # [geoms, 3] sliding, torsional, rolling


def scaled_system(system: brax_base.System, scales: DynamicsTask) -> brax_base.System:
    """``system`` with masses, inertias, joint damping and friction multiplied by ``scales``.

    Both brax's own fields (``link.inertia``, ``dof.damping``, used by spring / positional /
    generalized) and the MuJoCo fields (``body_mass``, ``body_inertia``, ``dof_damping``, used
    by mjx) are scaled. The spring and positional pipelines ignore joint damping.
    """
    inertia = system.link.inertia
    body_scale = jnp.concatenate([jnp.ones((1,)), scales.mass])  # MuJoCo's body 0 is the world
    inertia_body_scale = jnp.concatenate([jnp.ones((1, 3)), scales.inertia])
    link = system.link.replace(
        inertia=inertia.replace(
            mass=inertia.mass * scales.mass,
            i=inertia.i * scales.inertia[:, None, :],  # diagonal: scales each principal moment
        )
    )
    return system.replace(
        link=link,
        dof=system.dof.replace(damping=system.dof.damping * scales.damping),
        body_mass=system.body_mass * body_scale,
        body_inertia=system.body_inertia * inertia_body_scale,
        dof_damping=system.dof_damping * scales.damping,
        geom_friction=system.geom_friction * scales.friction,
    )


def dynamics_shapes(system: brax_base.System) -> DynamicsTask:
    """The shapes of a ``DynamicsTask`` for ``system``, as arrays of ones."""
    return DynamicsTask(
        mass=jnp.ones(system.link.inertia.mass.shape),
        inertia=jnp.ones(system.link.inertia.i.shape[:2]),
        damping=jnp.ones(system.dof.damping.shape),
        friction=jnp.ones(system.geom_friction.shape),
    )


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


class RandomDynamicsEnv(BraxTaskEnv):
    """A brax env whose physics (mass, inertia, damping, friction) is scaled per task.

    The reward and termination are the brax env's own (Walker2DRandParams, HopperRandParams:
    forward velocity + 1 alive - 1e-3 |a|^2).
    """

    def task_system(self, params: DynamicsTask) -> brax_base.System:
        return scaled_system(self.brax_env.sys, params)


# ---------------------------------------------------------------------------------------------
# TASK DISTRIBUTIONS
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # its tasks are arrays: compare by identity
class EnumeratedTasks(TaskDistribution):
    """A few fixed tasks, all used for training and for testing (the Fwd/Back families).

    ``test_tasks(n)`` cycles through the list, so every task is in any split of size >= its
    length.
    """

    tasks: EnvParams = None

    def _pool(self, split: int, n: int, sampler: Callable[[jax.Array], EnvParams]) -> EnvParams:
        del split, sampler
        count = jax.tree.leaves(self.tasks)[0].shape[0]
        return jax.tree.map(lambda x: x[jnp.arange(n) % count], self.tasks)


def enumerated_tasks(tasks: EnvParams) -> EnumeratedTasks:
    """A distribution drawing uniformly from the stacked ``tasks``."""
    count = jax.tree.leaves(tasks)[0].shape[0]

    def sample_task(key: jax.Array) -> EnvParams:
        index = jax.random.randint(key, (), 0, count)
        return jax.tree.map(lambda x: x[index], tasks)

    return EnumeratedTasks(sample_task, num_train_tasks=count, num_test_tasks=count, tasks=tasks)


def _check_splits(num_train_tasks: int | None, num_test_tasks: int) -> None:
    if num_train_tasks is not None and num_train_tasks < 1:
        raise ValueError(f"num_train_tasks must be at least 1 or None, got {num_train_tasks}")
    if num_test_tasks < 1:
        raise ValueError(f"num_test_tasks must be at least 1, got {num_test_tasks}")


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
    _check_splits(num_train_tasks, num_test_tasks)
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
    _check_splits(num_train_tasks, num_test_tasks)
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
    _check_splits(num_train_tasks, num_test_tasks)
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
    _check_splits(num_train_tasks, num_test_tasks)
    env = HumanoidDir(make_brax_env("humanoid", backend), horizon, "humanoid")
    return env, TaskDistribution(
        _planar_direction, num_train_tasks, num_test_tasks, split_seed=split_seed
    )


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
    _check_splits(num_train_tasks, num_test_tasks)
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
