"""Per-task circular replay buffers: wrap-around, per-task isolation, sampling, clearing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metajax import replay
from metajax.errors import ConfigError


def items(values: np.ndarray) -> dict:
    """Items whose ``x`` is the value and ``y`` a 2-vector derived from it: [tasks, n, ...]."""
    values = jnp.asarray(values, jnp.float32)
    return {"x": values, "y": jnp.stack([values, -values], axis=-1)}


def example() -> dict:
    return {"x": jnp.zeros(()), "y": jnp.zeros((2,))}


def test_wraps_around_and_keeps_the_newest():
    buffer = replay.init(example(), num_tasks=2, capacity=5)
    # task 0 gets 0..6, task 1 gets 100..106, written 3 + 4 at a time
    first = np.array([[0, 1, 2], [100, 101, 102]])
    second = np.array([[3, 4, 5, 6], [103, 104, 105, 106]])
    buffer = replay.add(buffer, items(first))
    np.testing.assert_array_equal(buffer.insert, [3, 3])
    np.testing.assert_array_equal(buffer.size, [3, 3])
    buffer = replay.add(buffer, items(second))
    # 7 items in 5 slots: slots 0, 1 were overwritten by 5, 6; the next write goes to slot 2
    np.testing.assert_array_equal(buffer.data["x"][0], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buffer.data["x"][1], [105, 106, 102, 103, 104])
    np.testing.assert_array_equal(buffer.data["y"][0, :, 1], [-5, -6, -2, -3, -4])
    np.testing.assert_array_equal(buffer.insert, [2, 2])
    np.testing.assert_array_equal(buffer.size, [5, 5])
    latest, valid = replay.latest(buffer, 4)
    np.testing.assert_array_equal(latest["x"][0], [3, 4, 5, 6])
    assert bool(jnp.all(valid))


@settings(max_examples=15, deadline=None)
@given(chunks=st.lists(st.integers(1, 5), min_size=1, max_size=6))
def test_matches_a_python_deque(chunks):
    capacity = 5
    buffer = replay.init(example(), num_tasks=1, capacity=capacity)
    reference: list[float] = []
    counter = 0
    for c in chunks:
        values = np.arange(counter, counter + c, dtype=np.float32)[None]
        counter += c
        buffer = replay.add(buffer, items(values))
        reference = (reference + list(values[0]))[-capacity:]
    latest, valid = replay.latest(buffer, capacity)
    got = np.asarray(latest["x"][0])[np.asarray(valid[0])]
    np.testing.assert_array_equal(got, reference)
    assert int(buffer.size[0]) == len(reference)


def test_sample_only_valid_items_of_own_task():
    buffer = replay.init(example(), num_tasks=3, capacity=10)
    buffer = replay.add(buffer, items(np.array([[1, 2, 3], [10, 20, 30], [7, 8, 9]])))
    keys = jax.random.split(jax.random.key(0), 3)
    batch = replay.sample(buffer, keys, 200)
    assert batch["x"].shape == (3, 200) and batch["y"].shape == (3, 200, 2)
    assert set(np.asarray(batch["x"][0]).tolist()) == {1, 2, 3}  # never an empty slot (0)
    assert set(np.asarray(batch["x"][1]).tolist()) == {10, 20, 30}
    np.testing.assert_array_equal(batch["y"][..., 0], batch["x"])  # items stay whole
    # a task's sample depends only on its own key (sharding-independent)
    alone = replay.sample_at(buffer, jnp.array([1]), keys[1:2], 200)
    np.testing.assert_array_equal(alone["x"][0], batch["x"][1])


def test_add_at_clear_at_touch_only_the_named_tasks():
    buffer = replay.init(example(), num_tasks=4, capacity=3)
    buffer = replay.add(buffer, items(np.arange(4)[:, None] * np.ones((4, 2))))
    buffer = replay.add_at(buffer, jnp.array([3, 1]), items(np.array([[7, 8, 9], [5, 5, 5]])))
    np.testing.assert_array_equal(buffer.size, [2, 3, 2, 3])
    # task 3 held 2 items (next slot 2), so 7, 8, 9 go to slots 2, 0, 1
    np.testing.assert_array_equal(buffer.data["x"][3], [8, 9, 7])
    np.testing.assert_array_equal(buffer.data["x"][1], [5, 5, 5])
    np.testing.assert_array_equal(buffer.data["x"][0], [0, 0, 0])
    buffer = replay.clear_at(buffer, jnp.array([1]))
    np.testing.assert_array_equal(buffer.size, [2, 0, 2, 3])
    buffer = replay.add_at(buffer, jnp.array([1]), items(np.array([[42]])))
    batch = replay.sample_at(buffer, jnp.array([1]), jax.random.split(jax.random.key(1), 1), 50)
    assert set(np.asarray(batch["x"][0]).tolist()) == {42}  # cleared items are never sampled


def test_jit_and_errors():
    buffer = replay.init(example(), num_tasks=2, capacity=4)
    add = jax.jit(replay.add)
    buffer = add(buffer, items(np.ones((2, 4))))
    assert int(buffer.insert[0]) == 0
    with pytest.raises(ConfigError):
        replay.add(buffer, items(np.ones((2, 5))))
    with pytest.raises(ConfigError):
        replay.init(example(), num_tasks=0, capacity=4)
