"""metajax.envs: pure-JAX meta-RL task distributions, batched over tasks with ``vmap``.

``make(name, **options)`` returns ``(env, tasks)``: a gymnax-compatible env whose
``EnvParams`` is the task, and the ``TaskDistribution`` that samples tasks and holds the
held-out test split. ``names()`` lists what ``make`` knows.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from metajax.envs.adapters.gymnax import make_gymnax_cartpole, make_gymnax_pendulum
from metajax.envs.bandits import BernoulliBandit, make_bernoulli_bandit
from metajax.envs.core import EnvState, MetaEnv, TaskDistribution, num_tasks
from metajax.envs.errors import ConfigError
from metajax.envs.lazy import LazyFactory
from metajax.envs.maze import Maze, make_maze, make_random_maze
from metajax.envs.navigation import (
    PointNavigation,
    make_nav2d,
    make_point_robot_dense,
    make_point_robot_sparse,
)
from metajax.envs.tabular_mdp import TabularMDP, make_tabular_mdp
from metajax.envs.wrappers import TrialWrapper, UnitBoxActions, unit_box_actions


@dataclass(frozen=True)
class EnvSpec:
    """A registered task family: its factory and a one-line description."""

    factory: Callable[..., tuple[MetaEnv, TaskDistribution]]
    description: str


_REGISTRY: dict[str, EnvSpec] = {}


def register(name: str, factory: Callable[..., tuple[MetaEnv, TaskDistribution]], description: str):
    """Adds a task family to the registry under ``name``."""
    _REGISTRY[name] = EnvSpec(factory, description)


def names() -> list[str]:
    """The names ``make`` accepts, sorted."""
    return sorted(_REGISTRY)


def describe(name: str) -> str:
    """The one-line description of a registered family."""
    return _REGISTRY[name].description


def options(name: str) -> dict[str, object]:
    """The options of a family with their defaults."""
    signature = inspect.signature(_REGISTRY[name].factory)
    return {k: p.default for k, p in signature.parameters.items()}


def make(name: str, **kwargs) -> tuple[MetaEnv, TaskDistribution]:
    """Builds the env and task distribution registered as ``name``.

    Raises:
        ConfigError: unknown name, unknown option, or an impossible option value.
    """
    if name not in _REGISTRY:
        raise ConfigError(f"unknown env '{name}'; known envs: {', '.join(names())}")
    allowed = options(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for env '{name}'; "
            f"allowed: {', '.join(f'{k}={v!r}' for k, v in allowed.items())}"
        )
    try:
        return _REGISTRY[name].factory(**kwargs)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"env '{name}': {error}") from None


register(
    "bernoulli-bandit",
    make_bernoulli_bandit,
    "k-armed Bernoulli bandit, p ~ U[0,1] (Duan et al.)",
)
register(
    "tabular-mdp",
    make_tabular_mdp,
    "random tabular MDP, Dirichlet P, N(1,1) reward means (Duan et al.)",
)
register(
    "nav2d",
    make_nav2d,
    "2D point navigation, goal ~ U[-0.5,0.5]^2, reward -distance (Finn et al. MAML)",
)
register(
    "point-robot-sparse",
    make_point_robot_sparse,
    "point robot, goals on a half circle, reward only within 0.2 of the goal (Rakelly et al.)",
)
register(
    "point-robot-dense",
    make_point_robot_dense,
    "point robot, goals on a half circle, reward -distance (Rakelly et al.)",
)
register(
    "maze",
    make_maze,
    "grid maze with a hidden goal, local 3x3 view, pillar layout (MetaMaze-like)",
)
register(
    "random-maze",
    make_random_maze,
    "grid maze with a hidden goal and a DFS-carved layout per task, local 3x3 view",
)
register(
    "gymnax-cartpole",
    make_gymnax_cartpole,
    "gymnax CartPole-v1, pole length, pole mass and cart mass drawn per task (adapters.gymnax)",
)
register(
    "gymnax-pendulum",
    make_gymnax_pendulum,
    "gymnax Pendulum-v1, pendulum mass and length ~ U[0.5, 2] per task (adapters.gymnax)",
)

# XLand-MiniGrid (optional extra metajax[xminigrid]): registered only where it is installed
if importlib.util.find_spec("xminigrid") is not None:
    _XMINIGRID = "metajax.envs.adapters.xminigrid"
    register(
        "xland-single-goal",
        LazyFactory(_XMINIGRID, "make_xminigrid"),
        "XLand-MiniGrid, a task is a ruleset (generated single-goal or a benchmark file)",
    )
    register(
        "minigrid-fourrooms",
        LazyFactory(_XMINIGRID, "make_minigrid"),
        "XLand-MiniGrid's MiniGrid-FourRooms, a task is a layout (doors, start, goal)",
    )

# brax families: imported on first use (brax is slow and noisy to import)
_LOCOMOTION = "metajax.envs.locomotion"
_LOCOMOTION_PARAMS = "metajax.envs.locomotion_params"
_BRAX_ADAPTER = "metajax.envs.adapters.brax"
register(
    "cheetah-vel",
    LazyFactory(_LOCOMOTION, "make_cheetah_vel"),
    "brax half-cheetah, run at a target velocity ~ U[0,2] (Finn et al., Rakelly et al.)",
)
register(
    "cheetah-dir",
    LazyFactory(_LOCOMOTION, "make_cheetah_dir"),
    "brax half-cheetah, run forward or backward: 2 tasks (Finn et al., Rothfuss et al.)",
)
register(
    "ant-dir",
    LazyFactory(_LOCOMOTION, "make_ant_dir"),
    "brax ant, walk along a direction angle ~ U[0, 2pi] (Rothfuss et al.)",
)
register(
    "ant-goal",
    LazyFactory(_LOCOMOTION, "make_ant_goal"),
    "brax ant, walk to a goal in a disc of radius 3 (Rakelly et al.)",
)
register(
    "humanoid-dir",
    LazyFactory(_LOCOMOTION, "make_humanoid_dir"),
    "brax humanoid, walk along a direction angle ~ U[0, 2pi] (Rakelly et al.)",
)
register(
    "walker-params",
    LazyFactory(_LOCOMOTION_PARAMS, "make_walker_params"),
    "brax walker2d, mass/inertia/friction x 1.5^u, damping x 1.3^u, u ~ U[-3,3] (ProMP)",
)
register(
    "hopper-params",
    LazyFactory(_LOCOMOTION_PARAMS, "make_hopper_params"),
    "brax hopper, mass/inertia/friction x 1.5^u, damping x 1.3^u, u ~ U[-3,3] (ProMP)",
)
register(
    "brax-ant",
    LazyFactory(_BRAX_ADAPTER, "make_brax_ant"),
    "brax ant, body masses and friction x U[0.5,1.5] (any brax env: adapters.brax)",
)
register(
    "brax-halfcheetah",
    LazyFactory(_BRAX_ADAPTER, "make_brax_halfcheetah"),
    "brax half-cheetah, body masses and friction x U[0.5,1.5] (adapters.brax)",
)

__all__ = [
    "BernoulliBandit",
    "EnvState",
    "Maze",
    "MetaEnv",
    "PointNavigation",
    "TabularMDP",
    "TaskDistribution",
    "TrialWrapper",
    "UnitBoxActions",
    "unit_box_actions",
    "describe",
    "make",
    "names",
    "num_tasks",
    "options",
    "register",
]
