"""Mazes: carved layouts are perfect mazes, BFS and dynamics against NumPy, the oracle, trials."""

from __future__ import annotations

import functools
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metajax.envs as envs
from metajax.envs.maze import (
    DIRECTIONS,
    MazeParams,
    carve_maze,
    goal_distances,
    greedy_action,
)
from metajax.errors import ConfigError
from metajax.rollout import episode_returns, reset, rollout

MOVES = np.asarray(DIRECTIONS)

# one env per family for the tests below (random starts, position observed for the oracle)
FAMILIES = {
    name: envs.make(name, random_start=True, observe_position=True)
    for name in ["maze", "random-maze"]
}


@functools.cache
def split_of(name: str, n: int) -> MazeParams:
    """The family's first ``n`` test tasks, sampled under one jit (faster than eager)."""
    return jax.jit(lambda: FAMILIES[name][1].test_tasks(n))()


@functools.cache
def oracle_values(name: str, n: int) -> jax.Array:
    env = FAMILIES[name][0]
    return jax.jit(env.oracle_episode_return)(split_of(name, n))


def numpy_bfs(walls: np.ndarray, goal) -> np.ndarray:
    """Plain breadth-first search from the goal; -1 marks walls and unreachable squares."""
    distance = np.full(walls.shape, -1)
    distance[tuple(goal)] = 0
    queue = deque([tuple(goal)])
    while queue:
        row, col = queue.popleft()
        for dr, dc in MOVES:
            nxt = (row + dr, col + dc)
            if not walls[nxt] and distance[nxt] < 0:
                distance[nxt] = distance[row, col] + 1
                queue.append(nxt)
    return distance


_carve = jax.jit(carve_maze, static_argnums=1)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), maze_size=st.sampled_from([3, 9]))
def test_carved_maze_is_a_perfect_maze(seed, maze_size):
    """Every cell is open and reachable, pillars and the border stay walls, and the open squares
    form a tree: cells + (cells - 1) passages, so exactly one path between any two squares."""
    walls = np.asarray(_carve(jax.random.key(seed), maze_size))
    side = maze_size + 2
    assert walls.shape == (side, side)
    assert walls[0].all() and walls[-1].all() and walls[:, 0].all() and walls[:, -1].all()
    assert walls[::2, ::2].all()  # pillars
    assert not walls[1::2, 1::2].any()  # cells
    cells = ((maze_size + 1) // 2) ** 2
    assert (~walls).sum() == 2 * cells - 1
    distance = numpy_bfs(walls, (1, 1))
    assert np.all(distance[~walls] >= 0), "a part of the maze is cut off"


def test_carved_layouts_differ_between_tasks():
    keys = jax.random.split(jax.random.key(0), 16)
    distinct = {np.asarray(_carve(key, 9)).tobytes() for key in keys}  # reuses the size-9 jit
    assert len(distinct) > 12


@pytest.mark.parametrize("name", ["maze", "random-maze"])
def test_bfs_matches_numpy(name):
    params = split_of(name, 16)
    ours = np.asarray(jax.jit(jax.vmap(goal_distances))(params.walls, params.goal))
    for walls, goal, distance in zip(
        np.asarray(params.walls), np.asarray(params.goal), ours, strict=True
    ):
        reference = numpy_bfs(walls, goal)
        reachable = reference >= 0
        np.testing.assert_array_equal(distance[reachable], reference[reachable])
        assert np.all(distance[~reachable] == walls.size)


def numpy_step(walls, goal, position, action, time, horizon, decay=0.9):
    """The maze's dynamics in NumPy: blocked moves stay, the goal pays 1 - decay * t / H."""
    target = position + MOVES[action]
    position = position if walls[tuple(target)] else target
    at_goal = bool(np.all(position == goal))
    reward = 1.0 - decay * (time + 1) / horizon if at_goal else 0.0
    padded = np.pad(walls, 1, constant_values=True)
    view = padded[position[0] : position[0] + 3, position[1] : position[1] + 3]
    return position, reward, at_goal, view.reshape(-1).astype(np.float32)


def _episode_fn(name):
    """Jitted once per family: sample a task from a seed, run a fixed action sequence."""
    env, tasks = FAMILIES[name]

    @jax.jit
    def run(seed, actions):
        params = jax.tree.map(lambda x: x[0], tasks.sample(jax.random.key(seed), 1))
        obs, state = env.reset_env(jax.random.key(0), params)

        def one_step(state, action):
            obs, state, reward, terminated, _ = env.step_env(
                jax.random.key(0), state, action, params
            )
            inside = env.observation_space().contains(obs)
            return state, (obs, state.position, reward, terminated, inside)

        return params, jax.lax.scan(one_step, state, actions)[1]

    return env, run


_EPISODE_FNS = {name: _episode_fn(name) for name in ["maze", "random-maze"]}


@pytest.mark.parametrize("name", ["maze", "random-maze"])
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_dynamics_match_numpy(name, seed):
    """Random start, goal, layout and actions: positions, views, rewards and ends = NumPy's."""
    env, run = _EPISODE_FNS[name]
    actions = np.random.default_rng(seed).integers(0, 4, env.horizon).astype(np.int32)
    params, (obs, positions, rewards, terminated, inside) = run(seed, actions)
    walls, goal = np.asarray(params.walls), np.asarray(params.goal)
    position = np.asarray(params.start)
    assert not walls[tuple(goal)] and not walls[tuple(position)]
    assert not np.array_equal(goal, position)
    assert obs.dtype == jnp.float32 and np.all(np.asarray(inside))
    for t, action in enumerate(actions):
        position, ref_reward, ref_done, ref_obs = numpy_step(
            walls, goal, position, action, t, env.horizon
        )
        np.testing.assert_array_equal(np.asarray(positions[t]), position)
        ref_obs = np.concatenate([ref_obs, position / (env.side - 1)]).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(obs[t]), ref_obs)
        np.testing.assert_allclose(float(rewards[t]), ref_reward, rtol=1e-6)
        assert bool(terminated[t]) == ref_done
        if ref_done:
            break


@pytest.mark.parametrize("name", ["maze", "random-maze"])
def test_oracle_return_matches_oracle_rollout(name):
    """The shortest-path value equals the return of a policy that follows the distance map
    (it reads its position from ``observe_position``); a random policy never beats it."""
    env, _ = FAMILIES[name]
    params = split_of(name, 16)
    keys = jax.random.split(jax.random.key(0), 16)

    distance = jax.vmap(goal_distances)(params.walls, params.goal)  # [tasks, side, side]

    def oracle_policy(carry, obs, first, keys):
        position = jnp.round(obs[:, -2:] * (env.side - 1)).astype(jnp.int32)
        return carry, jax.vmap(greedy_action)(distance, position), {}

    def random_policy(carry, obs, first, keys):
        return carry, jax.vmap(env.action_space().sample)(keys), {}

    @jax.jit
    def first_returns():
        state = reset(env, params, keys)
        return [
            episode_returns(rollout(env, policy, state, params, keys, env.horizon)[1], 1)[:, 0]
            for policy in (oracle_policy, random_policy)
        ]

    oracle_returns, random_returns = first_returns()
    oracle_value = oracle_values(name, 16)
    assert np.all(np.asarray(oracle_value) > 0)
    np.testing.assert_allclose(oracle_returns, oracle_value, rtol=1e-6)
    # oracle_action (which computes its own map) agrees with the greedy step on the start
    start_actions = jax.vmap(env.oracle_action)(params.start, params)
    np.testing.assert_array_equal(start_actions, jax.vmap(greedy_action)(distance, params.start))
    assert np.all(random_returns <= oracle_value + 1e-6)
    assert np.mean(random_returns) < np.mean(oracle_value)


def test_task_stays_fixed_across_resets_in_a_trial():
    """In a 3-episode trial every episode restarts at the task's start with the same goal and
    layout: the oracle earns its shortest-path value in each episode."""
    env, _ = FAMILIES["random-maze"]
    trial = envs.TrialWrapper(env, episodes_per_trial=3)
    params = split_of("random-maze", 16)
    width = env.observation_space().shape[0]
    distance = jax.vmap(goal_distances)(params.walls, params.goal)  # [tasks, side, side]

    def policy(carry, obs, first, keys):
        position = jnp.round(obs[:, width - 2 : width] * (env.side - 1)).astype(jnp.int32)
        return carry, jax.vmap(greedy_action)(distance, position), {}

    keys = jax.random.split(jax.random.key(0), 16)
    run = jax.jit(
        lambda keys: rollout(
            trial, policy, reset(trial, params, keys), params, keys, trial.horizon
        )[1]
    )
    transitions = run(keys)
    inner_done = transitions.info["episode_done"].astype(jnp.int32)  # [T, B]
    index = jnp.cumsum(inner_done, axis=0) - inner_done
    per_episode = jnp.einsum(
        "tb,tbk->bk", transitions.reward, jax.nn.one_hot(index, 3, dtype=jnp.float32)
    )
    oracle = oracle_values("random-maze", 16)
    np.testing.assert_allclose(per_episode, jnp.stack([oracle] * 3, -1), rtol=1e-6)
    np.testing.assert_allclose(episode_returns(transitions, 1)[:, 0], 3 * oracle, rtol=1e-5)


def test_fixed_layout_is_the_pillar_room():
    _, tasks = envs.make("maze")
    params = jax.jit(lambda: tasks.test_tasks(4))()
    walls = np.asarray(params.walls)
    assert np.all(walls == walls[0])
    inner = walls[0, 1:-1, 1:-1]
    assert inner[1::2, 1::2].all() and (~inner).sum() == 49 - 9
    np.testing.assert_array_equal(np.asarray(params.start), [[5, 5]] * 4)


def test_oracle_value_by_hand():
    """A 3x3 room with no inner walls, start (1,1), goal (3,3): 4 steps with H = 50, so the value
    is 1 - 0.9 * 4 / 50 = 0.928."""
    env, _ = envs.make("maze", maze_size=3)
    walls = jnp.ones((5, 5), jnp.bool_).at[1:4, 1:4].set(False)
    params = MazeParams(walls=walls, goal=jnp.array([3, 3]), start=jnp.array([1, 1]))
    np.testing.assert_allclose(env.oracle_episode_return(params), 0.928, rtol=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        {"maze_size": 4},
        {"maze_size": 1},
        {"horizon": 0},
        {"view_size": 2},
        {"reward_decay": 2.0},
        {"num_train_tasks": 0},
    ],
)
def test_bad_options_raise_one_line(options):
    with pytest.raises(ConfigError) as error:
        envs.make("maze", **options)
    assert "\n" not in str(error.value)
