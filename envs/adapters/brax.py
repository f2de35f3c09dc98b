"""The brax glue: a brax ``PipelineEnv`` as a ``MetaEnv``, and any brax env as a task family.

``BraxTaskEnv`` wraps a brax ``PipelineEnv`` as a ``MetaEnv``: ``reset_env`` / ``step_env`` run
the brax env's own reset and step (its physics pipeline, observation and health check), and a
family (``metajax.envs.locomotion``) replaces the reward with the task's. Families with random
dynamics build a per-task ``System`` from scale leaves in the params inside ``step``; the shared
brax env and its ``sys`` are never mutated (a per-task shallow copy of the env object carries the
task's ``sys``, as brax's own domain randomization swaps ``sys`` in).

Auto-reset restarts from the start state cached at ``reset`` (as brax's ``AutoResetWrapper``
does), not from a fresh brax reset: a fresh one (``pipeline_init``) at every step, kept only
where an episode ended, is what gymnax's ``step`` would pay. So every episode of an env slot,
and of an RL² trial, starts from the same initial state until the next ``reset``; the task
(the params) is kept.

``make_brax_task_family`` turns any brax env into a task family over its physics: the task is
a ``DynamicsTask`` of multiplicative scales (body masses, principal inertias, joint damping,
geom friction), each element drawn independently from ``U[lo, hi]`` of its ``randomize`` entry;
quantities not named stay at scale 1. Reward, observation and termination are the brax env's
own. The per-task ``System`` is built inside ``step`` from the params, so a batch of tasks is
one ``vmap``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from brax import base as brax_base
from brax import envs as brax_envs
from brax.envs.base import PipelineEnv
from brax.envs.base import State as BraxState
from flax import struct
from gymnax.environments import spaces

from metajax.envs.core import EnvParams, EnvState, MetaEnv, TaskDistribution, check_splits

BACKENDS = ("spring", "generalized", "positional", "mjx")
INFO_METRICS = ("x_velocity",)  # brax metrics copied into every step's info


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
        # brax's forward velocity over the step (the posteriors of velocity tasks read it)
        info = {k: after.metrics[k].astype(jnp.float32) for k in INFO_METRICS if k in after.metrics}
        return after.obs.astype(jnp.float32), next_state, reward, terminated, info

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self.obs_size,), jnp.float32)

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self.action_size,), jnp.float32)

    def oracle_episode_return(self, params: EnvParams) -> jax.Array | None:
        """None: no closed form; the oracle is a policy trained per task (see the README)."""
        del params
        return None


# ---------------------------------------------------------------------------------------------
# PHYSICS SCALES
# ---------------------------------------------------------------------------------------------


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


class RandomDynamicsEnv(BraxTaskEnv):
    """A brax env whose physics (mass, inertia, damping, friction) is scaled per task.

    The reward and termination are the brax env's own (Walker2DRandParams, HopperRandParams:
    forward velocity + 1 alive - 1e-3 |a|^2).
    """

    def task_system(self, params: DynamicsTask) -> brax_base.System:
        return scaled_system(self.brax_env.sys, params)


# ---------------------------------------------------------------------------------------------
# ANY BRAX ENV AS A TASK FAMILY
# ---------------------------------------------------------------------------------------------


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
    check_splits(num_train_tasks, num_test_tasks)
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
