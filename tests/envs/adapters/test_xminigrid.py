"""The XLand-MiniGrid adapter (optional extra): rulesets, layouts as tasks, faithfulness."""

from __future__ import annotations

import jax
import numpy as np
import pytest

pytest.importorskip("xminigrid")

import xminigrid  # noqa: E402
from xminigrid import benchmarks  # noqa: E402
from xminigrid.core.constants import TILES_REGISTRY, Colors, Tiles  # noqa: E402

import metajax.envs as envs  # noqa: E402
from metajax.envs.adapters.xminigrid import (  # noqa: E402
    make_xminigrid,
    sample_single_goal_ruleset,
)
from metajax.errors import ConfigError  # noqa: E402


def test_single_goal_rulesets():
    """The goal names the first object; hold (1) or near (3); no distractor equals it; no
    empty or wall tiles; both goal kinds occur."""
    keys = jax.random.split(jax.random.key(0), 512)
    rulesets = jax.jit(jax.vmap(lambda k: sample_single_goal_ruleset(k, 4)))(keys)
    goal, objects = np.asarray(rulesets.goal), np.asarray(rulesets.init_tiles)
    assert objects.shape == (512, 5, 2) and rulesets.rules.shape == (512, 1, 7)
    assert set(goal[:, 0]) == {1, 3}
    np.testing.assert_array_equal(goal[:, 1:3], objects[:, 0])
    assert not np.any(np.all(objects[:, 1:] == objects[:, :1], axis=-1))
    empty = np.asarray(TILES_REGISTRY[Tiles.EMPTY, Colors.EMPTY])
    wall = np.asarray(TILES_REGISTRY[Tiles.WALL, Colors.GREY])
    assert not np.any(np.all(objects == empty, -1)) and not np.any(np.all(objects == wall, -1))
    assert np.all(np.asarray(rulesets.rules) == 0)


def test_adapter_steps_like_xminigrid():
    """Same ruleset, same reset key, same actions: our observations, rewards and ends equal
    xminigrid's own ``reset``/``step``; a success pays 1 - 0.9 t / horizon."""
    env, tasks = make_xminigrid(horizon=30)
    inner, params = xminigrid.make("XLand-MiniGrid-R1-9x9", max_steps=30)
    task = jax.tree.map(lambda x: x[0], tasks.test_tasks(1))
    params = params.replace(ruleset=task.ruleset)
    actions = jax.random.randint(jax.random.key(1), (30,), 0, 6)

    @jax.jit
    def run(key):
        obs, state = env.reset_env(key, task)
        timestep = inner.reset(params, key)

        def one_step(carry, action):
            state, timestep = carry
            obs, state, reward, terminated, _ = env.step_env(key, state, action, task)
            timestep = inner.step(params, timestep, action)
            ref = (timestep.observation, timestep.reward, timestep.discount == 0)
            return (state, timestep), (obs, reward, terminated, *ref)

        return obs, timestep.observation, jax.lax.scan(one_step, (state, timestep), actions)[1]

    obs0, ref_obs0, (obs, reward, terminated, ref_obs, ref_reward, ref_term) = run(
        jax.random.key(2)
    )
    np.testing.assert_array_equal(obs0, np.reshape(ref_obs0, -1).astype(np.float32))
    alive = np.cumsum(np.asarray(terminated)) <= 1  # up to and including the first success
    np.testing.assert_array_equal(obs[alive], np.reshape(ref_obs, (30, -1))[alive])
    np.testing.assert_allclose(reward[alive], np.asarray(ref_reward)[alive])
    np.testing.assert_array_equal(terminated[alive], np.asarray(ref_term)[alive])


def test_layout_is_the_task_only_when_fixed():
    """MiniGrid: every reset of a task shows the same layout, different tasks differ.
    XLand (fixed_layout=False): the ruleset stays, the layout changes between resets."""
    env, tasks = envs.make("minigrid-fourrooms")
    task = jax.tree.map(lambda x: x[0], tasks.test_tasks(2))
    other = jax.tree.map(lambda x: x[1], tasks.test_tasks(2))
    reset = jax.jit(env.reset_env)
    first = reset(jax.random.key(0), task)[1].timestep.state.grid
    again = reset(jax.random.key(1), task)[1].timestep.state.grid
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, reset(jax.random.key(0), other)[1].timestep.state.grid)

    env, tasks = make_xminigrid(env_id="XLand-MiniGrid-R4-9x9")
    task = jax.tree.map(lambda x: x[0], tasks.test_tasks(1))
    reset = jax.jit(env.reset_env)
    states = [reset(jax.random.key(i), task)[1].timestep.state for i in range(3)]
    assert not all(np.array_equal(states[0].grid, s.grid) for s in states[1:])
    for s in states:
        np.testing.assert_array_equal(s.goal_encoding, task.ruleset.goal)


def _write_benchmark(path, n):
    keys = jax.random.split(jax.random.key(5), n)
    rulesets = jax.jit(jax.vmap(sample_single_goal_ruleset))(keys)
    benchmarks.save_bz2_pickle(
        {
            "goals": np.asarray(rulesets.goal),
            "rules": np.asarray(rulesets.rules),
            "init_tiles": np.asarray(rulesets.init_tiles),
            "num_rules": np.ones((n,), np.int32),
        },
        str(path),
    )


def test_benchmark_file_holds_out_its_tail(tmp_path):
    """A benchmark file's rulesets split into training and a disjoint held-out test split."""
    path = tmp_path / "tiny_benchmark"
    _write_benchmark(path, 12)
    _, tasks = make_xminigrid(benchmark=str(path), num_test_tasks=4, horizon=10)
    test, train = jax.jit(lambda: (tasks.test_tasks(), tasks.sample(jax.random.key(0), 200)))()
    test = np.asarray(test.ruleset.init_tiles).reshape(4, -1)
    train = np.asarray(train.ruleset.init_tiles).reshape(200, -1)
    assert len({row.tobytes() for row in test}) == 4
    assert len({row.tobytes() for row in train}) == 8
    assert not {row.tobytes() for row in test} & {row.tobytes() for row in train}
    with pytest.raises(ValueError, match="held-out"):
        tasks.test_tasks(5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"env_id": "XLand-MiniGrid-R3-9x9"}, "unknown xminigrid env"),
        ({"env_id": "MiniGrid-Empty-5x5", "fixed_layout": False}, "fixed_layout=True"),
        ({"benchmark": "no-such-benchmark"}, "neither a file"),
        ({"horizon": 0}, "horizon"),
        ({"view_size": 4}, "view_size"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        make_xminigrid(**kwargs)
    assert "\n" not in str(error.value)


def test_missing_benchmark_file_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmarks, "DATA_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="not downloaded"):
        envs.make("xland-single-goal", benchmark="trivial-21k")
