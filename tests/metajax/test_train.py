"""The trainer: exact resume, NaN stops with the last good checkpoint, bad run dirs."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax.envs as envs
from metajax.errors import ConfigError
from metajax.learners import rl2
from metajax.learners.base import Learner
from metajax.train import TrainConfig, TrainingDiverged, train

TIMING = {"env_steps_per_s", "chunk_seconds"}


def _rows(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def _tiny_rl2():
    env, tasks = envs.make("bernoulli-bandit", arms=3)
    config = rl2.Config(
        num_tasks=8,
        episodes_per_trial=4,
        core_size=8,
        hidden_sizes=(8,),
        num_minibatches=2,
        update_epochs=2,
    )
    return rl2.make_learner(config, env, tasks)


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    learner = _tiny_rl2()
    common = dict(updates_per_chunk=2, checkpoint_every=1, progress=False, tensorboard=False)
    straight, _ = train(
        learner, TrainConfig(run_dir=str(tmp_path / "a"), num_updates=6, **common), 8
    )
    train(learner, TrainConfig(run_dir=str(tmp_path / "b"), num_updates=2, **common), 8)
    resumed, _ = train(
        learner, TrainConfig(run_dir=str(tmp_path / "b"), num_updates=6, resume=True, **common), 8
    )
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
    assert len(_rows(tmp_path / "b")) == 6
    chex_equal = jax.tree.map(
        lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)), straight, resumed
    )
    assert all(jax.tree.leaves(chex_equal))


def _counting_learner(nan_at: int) -> Learner:
    """A learner whose loss becomes NaN at update ``nan_at``."""

    def init(key):
        return {"count": jnp.int32(0), "w": jax.random.normal(key, (3,))}

    def make_train_step(axis_name):
        def step(state, key):
            count = state["count"] + 1
            w = state["w"] + jax.random.normal(key, (3,))
            loss = jnp.where(count == nan_at, jnp.nan, jnp.sum(w))
            return {"count": count, "w": w}, {"loss": loss}

        return step

    return Learner(
        name="counting",
        init=init,
        make_train_step=make_train_step,
        evaluate=lambda s, k, t: s["w"][None],
        adaptation_unit="episode",
        env_steps_per_update=1,
        return_metric="loss",
    )


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path):
    config = TrainConfig(
        run_dir=str(tmp_path),
        num_updates=10,
        updates_per_chunk=2,
        checkpoint_every=1,
        progress=False,
        tensorboard=False,
    )
    with pytest.raises(TrainingDiverged, match="loss"):
        train(_counting_learner(nan_at=5), config, 1)
    checkpoints = sorted(
        int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()
    )
    assert checkpoints[-1] == 4  # updates 5-6 held the NaN; update 4 is the last good state
    assert [r["update"] for r in _rows(tmp_path)] == [1, 2, 3, 4]


def test_occupied_run_dir_needs_resume_and_resume_needs_a_checkpoint(tmp_path):
    config = TrainConfig(
        run_dir=str(tmp_path), num_updates=2, updates_per_chunk=2, progress=False, tensorboard=False
    )
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(_counting_learner(99), TrainConfig(**{**config.__dict__, "resume": True}), 1)
    train(_counting_learner(99), config, 1)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train(_counting_learner(99), config, 1)


def test_corrupt_checkpoint_is_a_clear_error_and_is_left_in_place(tmp_path):
    config = TrainConfig(
        run_dir=str(tmp_path), num_updates=2, updates_per_chunk=2, progress=False, tensorboard=False
    )
    train(_counting_learner(99), config, 1)
    step_dir = tmp_path / "checkpoints" / "2"
    for path in step_dir.rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name:
            path.write_bytes(b"garbage")
    shutil.rmtree(step_dir / "default" / "ocdbt.process_0", ignore_errors=True)
    with pytest.raises(ConfigError, match="cannot be restored"):
        train(
            _counting_learner(99),
            TrainConfig(**{**config.__dict__, "resume": True, "num_updates": 4}),
            1,
        )
    assert step_dir.exists()


def test_bad_train_config_values(tmp_path):
    with pytest.raises(ConfigError, match="num_updates"):
        train(_counting_learner(99), TrainConfig(run_dir=str(tmp_path), num_updates=0), 1)
    with pytest.raises(ConfigError, match="devices"):
        train(_counting_learner(99), TrainConfig(run_dir=str(tmp_path), num_devices=64), 1)
