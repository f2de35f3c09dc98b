"""Grid mazes with a hidden goal: explore in the first episodes of a trial, exploit in the rest.

The maze is a square grid of ``maze_size`` x ``maze_size`` open-or-wall squares inside an outer
wall (``maze_size`` odd). Cells sit at odd grid coordinates; the squares between two cells are
passages; squares at two even coordinates are always walls (pillars). Two layouts:

- fixed (``random_layout=False``): every passage open, the MetaMaze layout of Miconi et al.
  (2019) and gymnax's ``misc/meta_maze.py``: a room of pillars.
- random (``random_layout=True``): each task carves its own perfect maze (a random spanning
  tree of the cells) by depth-first search with backtracking, a fixed-length ``fori_loop``
  (2 x cells iterations: every cell is pushed and popped once), so it jits and vmaps.

A task is the wall layout, the goal square (uniform over open squares) and the start square
(the central cell, or uniform over open squares with ``random_start=True``). The agent sees
only the ``view_size`` x ``view_size`` walls around it (and, with ``observe_position``, its
normalized position), never the goal. Actions: up, right, down, left; walking into a wall stays.
Reaching the goal pays ``1 - reward_decay * t / horizon`` (t = steps so far, MiniGrid's
reward; ``reward_decay=0`` pays 1) and ends the episode.

Oracle: a policy that knows the task walks a shortest path; its return is
``1 - reward_decay * d / horizon`` where d is the shortest-path length from start to goal
(0 if d > horizon). d comes from a breadth-first search written as repeated relaxation of a
distance map over the grid (``goal_distances``).

Splits: the fixed layout is a finite family (39 goals at the default size, from the centre);
a content hash holds out a fixed subset of its tasks (about 20%, at least one: checked at
``make``) that training never draws. Random layouts hold tasks out by the same hash.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from metajax.envs.core import MetaEnv, TaskDistribution, check_splits

# up, right, down, left as (row, column) steps
DIRECTIONS = jnp.array([[-1, 0], [0, 1], [1, 0], [0, -1]], jnp.int32)


@struct.dataclass
class MazeParams:
    """A maze task: its layout, the hidden goal and the start."""

    walls: jax.Array  # [side, side] bool, True = wall; side = maze_size + 2 (outer wall)
    goal: jax.Array  # [2] int32 (row, column)
    start: jax.Array  # [2] int32


@struct.dataclass
class MazeState:
    """Where the agent is and how many steps it has taken this episode."""

    time: jax.Array
    position: jax.Array  # [2] int32


def pillar_layout(maze_size: int) -> jax.Array:
    """The fixed layout: outer wall plus pillars at even coordinates; ``[side, side]`` bool."""
    side = maze_size + 2
    index = jnp.arange(side)
    border = (index == 0) | (index == side - 1)
    even = index % 2 == 0
    return border[:, None] | border[None, :] | (even[:, None] & even[None, :])


def carve_maze(key: jax.Array, maze_size: int) -> jax.Array:
    """A random perfect maze by depth-first search with backtracking; ``[side, side]`` bool."""
    cells = (maze_size + 1) // 2  # cells per side, at grid coordinates 1, 3, ..., maze_size
    num_cells = cells * cells
    side = maze_size + 2
    key_first, key_loop = jax.random.split(key)
    first = jax.random.randint(key_first, (), 0, num_cells)

    def open_cell(walls, cell):
        return walls.at[2 * (cell // cells) + 1, 2 * (cell % cells) + 1].set(False)

    walls = open_cell(jnp.ones((side, side), jnp.bool_), first)
    visited = jnp.zeros((num_cells,), jnp.bool_).at[first].set(True)
    stack = jnp.zeros((num_cells,), jnp.int32).at[0].set(first)

    def body(i, carry):
        walls, visited, stack, top = carry
        active = top >= 0
        current = stack[jnp.maximum(top, 0)]
        row, col = current // cells, current % cells
        next_row, next_col = row + DIRECTIONS[:, 0], col + DIRECTIONS[:, 1]  # [4]
        inside = (next_row >= 0) & (next_row < cells) & (next_col >= 0) & (next_col < cells)
        neighbor = jnp.clip(next_row, 0, cells - 1) * cells + jnp.clip(next_col, 0, cells - 1)
        free = inside & ~visited[neighbor]  # [4]
        noise = jax.random.uniform(jax.random.fold_in(key_loop, i), (4,))
        choice = jnp.argmax(jnp.where(free, noise, -1.0))
        carve = active & jnp.any(free)
        chosen = neighbor[choice]
        # open the chosen cell and the passage between it and the current cell
        passage = (2 * row + 1 + DIRECTIONS[choice, 0], 2 * col + 1 + DIRECTIONS[choice, 1])
        carved = open_cell(walls, chosen).at[passage].set(False)
        walls = jnp.where(carve, carved, walls)
        visited = visited.at[chosen].set(visited[chosen] | carve)
        push = jnp.minimum(top + 1, num_cells - 1)
        stack = stack.at[push].set(jnp.where(carve, chosen, stack[push]))
        top = jnp.where(carve, top + 1, jnp.where(active, top - 1, top))
        return walls, visited, stack, top

    walls, *_ = jax.lax.fori_loop(0, 2 * num_cells, body, (walls, visited, stack, jnp.int32(0)))
    return walls


def goal_distances(walls: jax.Array, goal: jax.Array) -> jax.Array:
    """Shortest-path steps from every square to ``goal``: BFS as repeated relaxation.

    Returns ``[side, side]`` int32; walls and unreachable squares hold ``side * side``.
    """
    side = walls.shape[-1]
    unreachable = side * side
    distance = jnp.full(walls.shape, unreachable, jnp.int32).at[goal[0], goal[1]].set(0)

    def relax(carry):
        distance, _ = carry
        padded = jnp.pad(distance, 1, constant_values=unreachable)
        neighbors = jnp.stack(
            [
                padded[:-2, 1:-1],
                padded[2:, 1:-1],
                padded[1:-1, :-2],
                padded[1:-1, 2:],
            ]
        )
        relaxed = jnp.minimum(distance, jnp.min(neighbors, axis=0) + 1)
        relaxed = jnp.where(walls, unreachable, jnp.minimum(relaxed, unreachable))
        return relaxed, jnp.any(relaxed != distance)

    distance, _ = jax.lax.while_loop(lambda carry: carry[1], relax, (distance, jnp.bool_(True)))
    return distance


def greedy_action(distance: jax.Array, position: jax.Array) -> jax.Array:
    """The move towards the neighbor closest to the goal in a ``goal_distances`` map."""
    target = position + DIRECTIONS  # [4, 2]; never off the grid: the border is wall
    return jnp.argmin(distance[target[:, 0], target[:, 1]]).astype(jnp.int32)


class Maze(MetaEnv):
    """A grid maze with a hidden goal; the agent sees only its surroundings.

    Args:
        maze_size: side of the area inside the outer wall (odd, at least 3).
        horizon: steps per episode.
        view_size: side of the square of walls the agent sees around itself (odd).
        observe_position: append the agent's normalized (row, column) to the observation.
        reward_decay: the goal pays ``1 - reward_decay * t / horizon``.
    """

    def __init__(
        self,
        maze_size: int = 7,
        horizon: int = 50,
        view_size: int = 3,
        observe_position: bool = False,
        reward_decay: float = 0.9,
    ):
        if maze_size < 3 or maze_size % 2 == 0:
            raise ValueError(f"maze_size must be odd and at least 3, got {maze_size}")
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1, got {horizon}")
        if view_size < 1 or view_size % 2 == 0:
            raise ValueError(f"view_size must be odd and positive, got {view_size}")
        if not 0.0 <= reward_decay <= 1.0:
            raise ValueError(f"reward_decay must be in [0, 1], got {reward_decay}")
        self.maze_size = maze_size
        self.side = maze_size + 2
        self.horizon = horizon
        self.view_size = view_size
        self.observe_position = observe_position
        self.reward_decay = reward_decay

    def _obs(self, position: jax.Array, params: MazeParams) -> jax.Array:
        radius = self.view_size // 2
        padded = jnp.pad(params.walls, radius, constant_values=True)
        view = jax.lax.dynamic_slice(padded, (position[0], position[1]), (self.view_size,) * 2)
        obs = view.reshape(-1).astype(jnp.float32)
        if self.observe_position:
            obs = jnp.concatenate([obs, position.astype(jnp.float32) / (self.side - 1)])
        return obs

    def reset_env(self, key: jax.Array, params: MazeParams) -> tuple[jax.Array, MazeState]:
        del key
        state = MazeState(time=jnp.int32(0), position=params.start)
        return self._obs(state.position, params), state

    def step_env(self, key: jax.Array, state: MazeState, action: jax.Array, params: MazeParams):
        del key
        target = state.position + DIRECTIONS[action]
        position = jnp.where(params.walls[target[0], target[1]], state.position, target)
        at_goal = jnp.all(position == params.goal)
        time = state.time + 1
        reward = jnp.where(at_goal, 1.0 - self.reward_decay * time / self.horizon, 0.0)
        state = MazeState(time=time, position=position)
        return self._obs(position, params), state, reward.astype(jnp.float32), at_goal, {}

    def observation_space(self, params: MazeParams | None = None) -> spaces.Box:
        size = self.view_size**2 + (2 if self.observe_position else 0)
        return spaces.Box(0.0, 1.0, (size,), jnp.float32)

    def action_space(self, params: MazeParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(4)

    def oracle_action(self, position: jax.Array, params: MazeParams) -> jax.Array:
        """A first step of a shortest path to the goal (computes the goal's distance map;
        to act many times in one task, compute ``goal_distances`` once, use ``greedy_action``)."""
        return greedy_action(goal_distances(params.walls, params.goal), position)

    def oracle_episode_return(self, params: MazeParams) -> jax.Array:
        """Return of a shortest path from start to goal; works on batched params."""
        if params.walls.ndim == 3:
            return jax.vmap(self.oracle_episode_return)(params)
        steps = goal_distances(params.walls, params.goal)[params.start[0], params.start[1]]
        value = 1.0 - self.reward_decay * steps / self.horizon
        return jnp.where(steps <= self.horizon, value, 0.0).astype(jnp.float32)


def _central_cell(maze_size: int) -> jax.Array:
    cells = (maze_size + 1) // 2
    center = 2 * (cells // 2) + 1
    return jnp.array([center, center], jnp.int32)


def _pick_open(key: jax.Array, open_squares: jax.Array) -> jax.Array:
    """A uniformly random square among ``open_squares`` [side, side]; (row, column) int32."""
    side = open_squares.shape[0]
    flat = jax.random.choice(key, side * side, p=open_squares.reshape(-1) / open_squares.sum())
    return jnp.stack([flat // side, flat % side]).astype(jnp.int32)


def make_maze(
    maze_size: int = 7,
    horizon: int = 50,
    random_layout: bool = False,
    random_start: bool = False,
    view_size: int = 3,
    observe_position: bool = False,
    reward_decay: float = 0.9,
    num_train_tasks: int | None = None,
    num_test_tasks: int = 1000,
    split_seed: int = 0,
) -> tuple[Maze, TaskDistribution]:
    """A maze with a hidden goal per task; the layout is fixed or random per task."""
    env = Maze(maze_size, horizon, view_size, observe_position, reward_decay)
    check_splits(num_train_tasks, num_test_tasks)
    fixed_walls = pillar_layout(maze_size)
    center = _central_cell(maze_size)

    def sample_task(key: jax.Array) -> MazeParams:
        key_layout, key_start, key_goal = jax.random.split(key, 3)
        walls = carve_maze(key_layout, maze_size) if random_layout else fixed_walls
        open_squares = ~walls
        start = _pick_open(key_start, open_squares) if random_start else center
        goal = _pick_open(key_goal, open_squares.at[start[0], start[1]].set(False))
        return MazeParams(walls=walls, goal=goal, start=start)

    tasks = TaskDistribution(
        sample_task,
        num_train_tasks=num_train_tasks,
        num_test_tasks=num_test_tasks,
        split_seed=split_seed,
    )
    if not random_layout:  # finite: both sides of the split must hold a task
        tasks.check_finite_split(_fixed_layout_tasks(fixed_walls, center, random_start))
    return env, tasks


def _fixed_layout_tasks(walls: jax.Array, center: jax.Array, random_start: bool) -> MazeParams:
    """Every task of a fixed layout: each (start, goal) pair of distinct open squares."""
    side = walls.shape[0]
    squares = jnp.stack(jnp.divmod(jnp.arange(side * side), side), -1).astype(jnp.int32)
    squares = squares[~walls.reshape(-1)]  # [open, 2]
    starts = squares if random_start else center[None]
    start = jnp.repeat(starts, squares.shape[0], axis=0)  # [pairs, 2]
    goal = jnp.tile(squares, (starts.shape[0], 1))
    distinct = jnp.any(start != goal, axis=-1)
    start, goal = start[distinct], goal[distinct]
    return MazeParams(
        walls=jnp.broadcast_to(walls, (start.shape[0], side, side)), goal=goal, start=start
    )


def make_random_maze(
    maze_size: int = 7,
    horizon: int = 50,
    random_start: bool = False,
    view_size: int = 3,
    observe_position: bool = False,
    reward_decay: float = 0.9,
    num_train_tasks: int | None = None,
    num_test_tasks: int = 1000,
    split_seed: int = 0,
) -> tuple[Maze, TaskDistribution]:
    """``make_maze`` with a freshly carved maze layout per task."""
    return make_maze(
        maze_size,
        horizon,
        True,
        random_start,
        view_size,
        observe_position,
        reward_decay,
        num_train_tasks,
        num_test_tasks,
        split_seed,
    )
