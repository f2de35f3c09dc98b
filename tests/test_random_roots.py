"""Independent random roots: equal seeds under different tags never give equal keys."""

from __future__ import annotations

import itertools

import jax
import numpy as np

from metajax import train
from metajax.envs import core

SEED = SPLIT_SEED = 0


def _data(keys) -> set[bytes]:
    data = np.asarray(jax.random.key_data(keys)).reshape(-1, 2)
    return {row.tobytes() for row in data}


def _roots() -> dict[str, jax.Array]:
    base = jax.random.key(SEED)
    roots = {tag: core.tagged_key(tag, SPLIT_SEED) for tag in core_split_tags()}
    roots |= {
        "train/init": jax.random.fold_in(base, train.INIT_STREAM),
        "train/updates": jax.random.fold_in(base, train.TRAIN_STREAM),
        "train/eval": jax.random.fold_in(base, train.EVAL_STREAM),
        "key(seed)": base,
    }
    for bench, part in [
        ("bandit_baselines", "tuning"),
        ("bandit_baselines", "train"),
        ("bandit_baselines", "eval"),
        ("mdp_baselines", "tuning"),
    ]:
        roots[f"{bench}/{part}"] = core.tagged_key(f"benchmarks/{bench}/{part}", SEED)
    return roots


def core_split_tags() -> tuple[str, ...]:
    return core.TRAIN_SPLIT, core.TEST_SPLIT, core.OOD_SPLIT


def test_train_streams_are_the_tagged_keys():
    for stream, tag in [
        (train.INIT_STREAM, "train/init"),
        (train.TRAIN_STREAM, "train/updates"),
        (train.EVAL_STREAM, "train/eval"),
    ]:
        want = jax.random.key_data(core.tagged_key(tag, SEED))
        got = jax.random.key_data(jax.random.fold_in(jax.random.key(SEED), stream))
        np.testing.assert_array_equal(got, want)


def test_all_roots_are_pairwise_distinct_at_equal_seeds():
    roots = _roots()
    for (a, ka), (b, kb) in itertools.combinations(roots.items(), 2):
        assert _data(ka) != _data(kb), f"{a} == {b}"


def test_update_keys_share_nothing_with_split_keys():
    roots = _roots()
    updates = jax.vmap(jax.random.fold_in, (None, 0))(roots["train/updates"], np.arange(1000))
    update_keys = _data(updates) | _data(jax.vmap(jax.random.split)(updates))
    n = 1000
    test_keys = jax.random.split(roots[core.TEST_SPLIT], n)
    retries = jax.vmap(jax.vmap(jax.random.fold_in, (None, 0)), (0, None))(
        test_keys, np.arange(1, 8)
    )
    split_keys = (
        _data(test_keys)
        | _data(retries)
        | _data(jax.random.split(roots[core.OOD_SPLIT], n))
        | _data(jax.random.split(roots[core.TRAIN_SPLIT], n))
    )
    assert not update_keys & split_keys
    init_and_eval = _data(roots["train/init"]) | _data(roots["train/eval"])
    assert not init_and_eval & split_keys
