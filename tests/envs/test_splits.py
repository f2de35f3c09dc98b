"""Disjoint splits by construction: no held-out test task (nor OOD task) is ever a training draw.

For every registered family: the test split and N training draws (plus the fixed pool where the
family has one) are compared by exact task content (every leaf's bytes). ``task_hash`` and the
held-out rule are tested on their own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax.envs as envs
from metajax.envs import core

# brax families: env construction is slow; two in the default suite, the rest marked slow
_BRAX_DEFAULT = {"cheetah-vel", "cheetah-dir"}
_BRAX_SLOW = {
    "ant-dir",
    "ant-goal",
    "humanoid-dir",
    "walker-params",
    "hopper-params",
    "brax-ant",
    "brax-halfcheetah",
}
# small sizes where a family's default tasks are large (the 20 x 512 draws stay quick)
_SMALL = {"tabular-mdp": {"num_states": 3, "num_actions": 2}}
# families that declare no disjoint held-out split (README: the task-family table)
_NOT_DISJOINT = {"cheetah-dir"}


def _family_params(name: str):
    marks = [pytest.mark.slow] if name in _BRAX_SLOW else []
    return pytest.param(name, marks=marks, id=name)


def _rows(tasks: core.TaskDistribution, batch) -> set[bytes]:
    """Each task of a batch as the bytes of its identifying content."""
    content = batch if tasks.task_content is None else jax.vmap(tasks.task_content)(batch)
    leaves = [
        np.asarray(jax.random.key_data(x) if _is_key(x) else x) for x in jax.tree.leaves(content)
    ]
    n = leaves[0].shape[0]
    flat = np.concatenate([x.reshape(n, -1).view(np.uint8).reshape(n, -1) for x in leaves], axis=1)
    return {row.tobytes() for row in flat}


def _is_key(x) -> bool:
    return jnp.issubdtype(jnp.asarray(x).dtype, jax.dtypes.prng_key)


@pytest.mark.parametrize("name", [_family_params(n) for n in envs.names()])
def test_no_test_task_is_ever_a_training_draw(name):
    brax = name in _BRAX_DEFAULT | _BRAX_SLOW
    options = {"horizon": 5} if brax else _SMALL.get(name, {})
    _, tasks = envs.make(name, **options)
    if name in _NOT_DISJOINT:
        assert not tasks.disjoint_test_split
        return
    assert tasks.disjoint_test_split
    batches, size, num_test = (4, 256, 50) if brax else (20, 512, 200)
    sample = jax.jit(tasks.sample, static_argnums=1)  # learners sample inside jit
    train: set[bytes] = set()
    for i in range(batches):
        batch = sample(jax.random.key(i), size)
        assert not np.any(jax.vmap(tasks.is_held_out)(batch))
        train |= _rows(tasks, batch)
    if tasks.num_train_tasks is not None:
        train |= _rows(tasks, tasks.train_tasks())
    test = tasks.test_tasks(num_test)
    assert np.all(jax.vmap(tasks.is_held_out)(test))
    assert not _rows(tasks, test) & train
    ood = tasks.ood_test_tasks(num_test)
    if ood is not None:
        assert not _rows(tasks, ood) & train
    # reproducible: a fresh distribution draws the same split (float sampling may differ in the
    # last bit between batch sizes, and a task's hash with it, so compare equal sizes)
    _, fresh = envs.make(name, **options)
    jax.tree.map(np.testing.assert_array_equal, test, fresh.test_tasks(num_test))


def test_the_fixed_maze_holds_out_a_fixed_subset_of_its_39_goals():
    _, tasks = envs.make("maze")
    test_goals = {tuple(g) for g in np.asarray(tasks.test_tasks(200).goal)}
    train_goals = set()
    for i in range(20):
        train_goals |= {tuple(g) for g in np.asarray(tasks.sample(jax.random.key(i), 512).goal)}
    assert test_goals and train_goals
    assert not test_goals & train_goals
    assert len(test_goals | train_goals) == 39


def test_another_split_seed_holds_out_other_tasks():
    _, a = envs.make("maze", split_seed=0)
    _, b = envs.make("maze", split_seed=1)
    goals = lambda t: {tuple(g) for g in np.asarray(t.test_tasks(200).goal)}  # noqa: E731
    assert goals(a) != goals(b)


def test_task_hash_sees_every_bit_and_position_and_vmaps():
    x = {"a": jnp.array([1.0, 2.0], jnp.float32), "b": jnp.array(3, jnp.int32)}
    h = core.task_hash(x)
    assert h.dtype == jnp.uint32
    assert int(h) == int(core.task_hash(x))
    flipped = {"a": jnp.array([1.0, jnp.nextafter(2.0, 3.0)], jnp.float32), "b": x["b"]}
    swapped = {"a": jnp.array([2.0, 1.0], jnp.float32), "b": x["b"]}
    assert int(core.task_hash(flipped)) != int(h)
    assert int(core.task_hash(swapped)) != int(h)
    assert int(core.task_hash(x, seed=1)) != int(h)
    mixed = {
        "bool": jnp.array([True, False]),
        "u8": jnp.array([7], jnp.uint8),
        "f16": jnp.array([0.5], jnp.float16),
        "key": jax.random.key(3),
    }
    assert core.task_hash(mixed).shape == ()
    batch = jax.tree.map(lambda v: jnp.stack([v, v]), x)
    hashes = jax.jit(jax.vmap(core.task_hash))(batch)
    assert hashes.shape == (2,) and int(hashes[0]) == int(hashes[1]) == int(h)


def test_the_held_out_share_is_about_the_permille():
    tasks = core.TaskDistribution(lambda key: jax.random.uniform(key, (3,)), held_out_permille=200)
    batch = jax.vmap(tasks.sample_task)(jax.random.split(jax.random.key(0), 20_000))
    share = float(jnp.mean(jax.vmap(tasks.is_held_out)(batch)))
    assert 0.18 < share < 0.22


def test_held_out_permille_must_leave_both_sides():
    for permille in (0, 1000):
        with pytest.raises(ValueError, match="held_out_permille"):
            core.TaskDistribution(lambda key: key, held_out_permille=permille)


def test_a_finite_family_with_an_empty_side_is_refused():
    tasks = core.TaskDistribution(lambda key: jnp.int32(0), held_out_permille=1)
    with pytest.raises(ValueError, match="no held-out task"):
        tasks.check_finite_split(jnp.arange(3, dtype=jnp.int32))
