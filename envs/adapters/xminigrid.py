"""XLand-MiniGrid as task families (optional extra ``metajax[xminigrid]``).

XLand-MiniGrid keeps the task in ``EnvParams.ruleset`` ("you can vmap on rulesets"): a goal,
rules that transform objects, and the objects placed at reset. Here the task is
``XMiniGridTask(ruleset, layout_key)``:

- XLand envs (``XLand-MiniGrid-R{1,2,4,6,9}-{size}``): the ruleset is the task; each reset
  draws a fresh layout (object and agent positions, door colors), as in XLand-MiniGrid's own
  RL² setup. Rulesets come from ``benchmark``: a registered benchmark name whose file is
  already in ``$XLAND_MINIGRID_DATA`` (this package never downloads), a path to a benchmark
  file, or ``"single-goal"`` (default): rulesets generated here, in JAX, without rules -- a goal
  "hold object X" or "stand next to object X" for a random object X (one of 7 shapes x 10
  colors) and ``num_distractors`` other objects (the flavour of XLand's trivial benchmark).
  With a benchmark file the test split is a held-out tail of its rulesets (split by index);
  generated rulesets are held out by a content hash of the ruleset (``TaskDistribution``).
- MiniGrid envs (``MiniGrid-*``): the layout is the only thing that varies, so the task is the
  layout: ``layout_key`` seeds every reset (``fixed_layout=True``), and the env repeats the
  same maze, doors and start across the episodes of a trial; the hash of the layout key
  holds layouts out.

Observation: the agent's egocentric view (tile and color ids), flattened to float32. Reward:
XLand-MiniGrid's ``1 - 0.9 * t / max_steps`` on success; ``max_steps`` is our ``horizon``.
No oracle: the optimal return of a ruleset needs a planner over the grid (returns None).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import xminigrid
from flax import struct
from gymnax.environments import spaces
from xminigrid import benchmarks
from xminigrid.core.constants import NUM_COLORS, NUM_TILES, TILES_REGISTRY, Colors, Tiles
from xminigrid.core.goals import AgentHoldGoal, AgentNearGoal
from xminigrid.core.rules import EmptyRule
from xminigrid.types import RuleSet, StepType

from metajax.envs.core import TEST_SPLIT, MetaEnv, TaskDistribution, check_splits, tagged_key

# objects a generated goal can name: shapes that can be picked up, in the usual colors
GOAL_TILES = jnp.array(
    [Tiles.BALL, Tiles.SQUARE, Tiles.PYRAMID, Tiles.KEY, Tiles.STAR, Tiles.HEX, Tiles.GOAL]
)
GOAL_COLORS = jnp.array(
    [
        Colors.RED,
        Colors.GREEN,
        Colors.BLUE,
        Colors.PURPLE,
        Colors.YELLOW,
        Colors.GREY,
        Colors.WHITE,
        Colors.BROWN,
        Colors.PINK,
        Colors.ORANGE,
    ]
)


@struct.dataclass
class XMiniGridTask:
    """A task: the ruleset (None for MiniGrid envs) and the key of its layout."""

    ruleset: Any  # xminigrid RuleSet, or None
    layout_key: jax.Array  # [2] uint32 raw key data; seeds every reset when fixed_layout


@struct.dataclass
class XMiniGridState:
    """xminigrid's TimeStep and our step count."""

    time: jax.Array
    timestep: Any


def sample_single_goal_ruleset(key: jax.Array, num_distractors: int = 3) -> RuleSet:
    """A ruleset without rules: hold, or stand next to, one object among distractors."""
    key_kind, key_tiles, key_colors, key_shift = jax.random.split(key, 4)
    tiles = jax.random.choice(key_tiles, GOAL_TILES, (num_distractors + 1,))
    colors = jax.random.choice(key_colors, GOAL_COLORS, (num_distractors + 1,))
    # a distractor never equals the goal object: shift a clashing color to another one
    clash = (tiles == tiles[0]) & (colors == colors[0]) & (jnp.arange(num_distractors + 1) > 0)
    shift = jax.random.randint(key_shift, (num_distractors + 1,), 1, len(GOAL_COLORS))
    index = jnp.argmax(GOAL_COLORS[None, :] == colors[:, None], axis=-1)
    colors = jnp.where(clash, GOAL_COLORS[(index + shift) % len(GOAL_COLORS)], colors)
    objects = TILES_REGISTRY[tiles, colors]  # [objects, 2] uint8
    hold = AgentHoldGoal(tile=objects[0]).encode()
    near = AgentNearGoal(tile=objects[0]).encode()
    goal = jnp.where(jax.random.bernoulli(key_kind), hold, near)
    return RuleSet(goal=goal, rules=EmptyRule().encode()[None, :], init_tiles=objects)


def load_rulesets(benchmark: str) -> benchmarks.Benchmark:
    """A benchmark from a file path, or by name if its file is already downloaded."""
    if os.path.isfile(benchmark):
        return benchmarks.load_benchmark_from_path(benchmark)
    if benchmark not in benchmarks.NAME2HFFILENAME:
        raise ValueError(
            f"benchmark '{benchmark}' is neither a file nor one of "
            f"{', '.join(benchmarks.registered_benchmarks())}, 'single-goal'"
        )
    path = os.path.join(benchmarks.DATA_PATH, benchmarks.NAME2HFFILENAME[benchmark])
    if not os.path.isfile(path):
        raise ValueError(
            f"benchmark '{benchmark}' is not downloaded: expected {path} "
            "(fetch it with xminigrid.load_benchmark on a machine with internet)"
        )
    return benchmarks.load_benchmark_from_path(path)


class XMiniGridAdapter(MetaEnv):
    """An xminigrid env with the task (ruleset, layout key) as ``EnvParams``.

    Args:
        env_id: an id of ``xminigrid.registered_environments()``.
        horizon: steps per episode (xminigrid's ``max_steps``); default the env's own.
        fixed_layout: every reset uses the task's layout key, so the layout is part of the
            task; otherwise each reset draws a new layout (the ruleset stays).
        view_size: side of the agent's egocentric view (odd); default the env's own.
    """

    def __init__(
        self,
        env_id: str,
        horizon: int | None = None,
        fixed_layout: bool = False,
        view_size: int | None = None,
    ):
        if env_id not in xminigrid.registered_environments():
            raise ValueError(
                f"unknown xminigrid env '{env_id}'; known: "
                f"{', '.join(xminigrid.registered_environments())}"
            )
        env, params = xminigrid.make(env_id)
        if view_size is not None:
            if view_size < 1 or view_size % 2 == 0:
                raise ValueError(f"view_size must be odd and positive, got {view_size}")
            params = params.replace(view_size=view_size)
        horizon = params.max_steps if horizon is None else horizon
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1, got {horizon}")
        self.env_id = env_id
        self.inner = env
        self.base_params = params.replace(max_steps=horizon)
        self.horizon = horizon
        self.has_ruleset = hasattr(params, "ruleset")
        self.fixed_layout = fixed_layout
        self._obs_size = params.view_size * params.view_size * 2

    @property
    def name(self) -> str:
        return f"XMiniGrid[{self.env_id}]"

    def _params(self, task: XMiniGridTask) -> Any:
        if self.has_ruleset:
            return self.base_params.replace(ruleset=task.ruleset)
        return self.base_params

    @staticmethod
    def _flat(observation: jax.Array) -> jax.Array:
        return jnp.reshape(observation, (-1,)).astype(jnp.float32)

    def reset_env(self, key: jax.Array, params: XMiniGridTask):
        if self.fixed_layout:
            key = jax.random.wrap_key_data(params.layout_key)
        timestep = self.inner.reset(self._params(params), key)
        state = XMiniGridState(time=jnp.int32(0), timestep=timestep)
        return self._flat(timestep.observation), state

    def step_env(self, key: jax.Array, state: XMiniGridState, action, params: XMiniGridTask):
        del key  # xminigrid's step is deterministic
        timestep = self.inner.step(self._params(params), state.timestep, action)
        terminated = (timestep.step_type == StepType.LAST) & (timestep.discount == 0.0)
        reward = jnp.asarray(timestep.reward, jnp.float32)
        state = XMiniGridState(time=state.time + 1, timestep=timestep)
        return self._flat(timestep.observation), state, reward, terminated, {}

    def observation_space(self, params: XMiniGridTask | None = None) -> spaces.Box:
        high = float(max(NUM_TILES, NUM_COLORS) - 1)
        return spaces.Box(0.0, high, (self._obs_size,), jnp.float32)

    def action_space(self, params: XMiniGridTask | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.inner.num_actions(self.base_params))


@dataclass(frozen=True)
class _HeldOutTasks(TaskDistribution):
    """A task distribution whose test split is a fixed, disjoint set of benchmark rulesets.

    The split is by index (training draws the first rulesets, testing the tail), not by hash.
    """

    test_sampler: Any = None  # draws the i-th held-out task from (key, i)

    def is_held_out(self, params: XMiniGridTask) -> jax.Array:
        """Training never draws a tail ruleset, so no training draw is rejected."""
        del params
        return jnp.bool_(False)

    def test_tasks(self, n: int | None = None) -> XMiniGridTask:
        n = self.num_test_tasks if n is None else n
        if n > self.num_test_tasks:
            raise ValueError(f"only {self.num_test_tasks} held-out rulesets, asked for {n}")
        keys = jax.random.split(tagged_key(TEST_SPLIT, self.split_seed), n)
        return jax.vmap(self.test_sampler)(keys, jnp.arange(n))


def make_xminigrid(
    env_id: str = "XLand-MiniGrid-R1-9x9",
    benchmark: str = "single-goal",
    num_distractors: int = 3,
    horizon: int | None = None,
    fixed_layout: bool | None = None,
    view_size: int | None = None,
    num_train_tasks: int | None = None,
    num_test_tasks: int = 1000,
    split_seed: int = 0,
) -> tuple[XMiniGridAdapter, TaskDistribution]:
    """An xminigrid env as a task family (see the module docstring for what a task is).

    Args:
        benchmark: "single-goal" (generated here), a downloaded benchmark name, or a file path.
        fixed_layout: default False for XLand envs (the ruleset is the task), True for
            MiniGrid envs (the layout is the task; False there is an error).
    """
    check_splits(num_train_tasks, num_test_tasks)
    if num_distractors < 0:
        raise ValueError(f"num_distractors must be non-negative, got {num_distractors}")
    is_xland = env_id.startswith("XLand-MiniGrid")
    fixed_layout = (not is_xland) if fixed_layout is None else fixed_layout
    if not is_xland and not fixed_layout:
        raise ValueError(f"{env_id} has no ruleset: its task is the layout; use fixed_layout=True")
    env = XMiniGridAdapter(env_id, horizon, fixed_layout, view_size)

    def layout(key: jax.Array) -> jax.Array:
        return jax.random.key_data(jax.random.fold_in(key, 1))

    if not is_xland:
        return env, TaskDistribution(
            lambda key: XMiniGridTask(ruleset=None, layout_key=layout(key)),
            num_train_tasks=num_train_tasks,
            num_test_tasks=num_test_tasks,
            split_seed=split_seed,
        )
    if benchmark == "single-goal":

        def sample_task(key: jax.Array) -> XMiniGridTask:
            ruleset = sample_single_goal_ruleset(jax.random.fold_in(key, 0), num_distractors)
            return XMiniGridTask(ruleset=ruleset, layout_key=layout(key))

        return env, TaskDistribution(
            sample_task,
            num_train_tasks=num_train_tasks,
            num_test_tasks=num_test_tasks,
            split_seed=split_seed,
            # the ruleset is the task unless the layout is fixed too
            task_content=None if fixed_layout else (lambda task: task.ruleset),
        )

    rulesets = load_rulesets(benchmark)
    total = rulesets.num_rulesets()
    if num_test_tasks >= total:
        raise ValueError(
            f"num_test_tasks={num_test_tasks} leaves no training rulesets of the {total} in "
            f"'{benchmark}'; use fewer than {total}"
        )
    rulesets = rulesets.shuffle(tagged_key("envs/split/rulesets", split_seed))
    num_train = total - num_test_tasks  # the first rulesets train, the tail is held out

    def sample_train(key: jax.Array) -> XMiniGridTask:
        index = jax.random.randint(jax.random.fold_in(key, 0), (), 0, num_train)
        return XMiniGridTask(ruleset=rulesets.get_ruleset(index), layout_key=layout(key))

    def sample_test(key: jax.Array, i: jax.Array) -> XMiniGridTask:
        return XMiniGridTask(ruleset=rulesets.get_ruleset(num_train + i), layout_key=layout(key))

    return env, _HeldOutTasks(
        sample_train,
        num_train_tasks=num_train_tasks,
        num_test_tasks=num_test_tasks,
        split_seed=split_seed,
        test_sampler=sample_test,
    )


def make_minigrid(
    env_id: str = "MiniGrid-FourRooms",
    horizon: int | None = None,
    view_size: int | None = None,
    num_train_tasks: int | None = None,
    num_test_tasks: int = 1000,
    split_seed: int = 0,
) -> tuple[XMiniGridAdapter, TaskDistribution]:
    """A MiniGrid env of XLand-MiniGrid whose task is the layout (maze, doors, start, goal)."""
    if env_id.startswith("XLand-MiniGrid"):
        raise ValueError(f"{env_id} is an XLand env; use make_xminigrid for rulesets")
    return make_xminigrid(
        env_id,
        horizon=horizon,
        fixed_layout=True,
        view_size=view_size,
        num_train_tasks=num_train_tasks,
        num_test_tasks=num_test_tasks,
        split_seed=split_seed,
    )
