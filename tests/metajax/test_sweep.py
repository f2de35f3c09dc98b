"""Sweeps: vmapped seeds equal seeds run alone; the TOML sweep runner at tiny sizes.

Most tests use ``softmax-bandit``, a small real learner defined here (policy gradient of a
softmax policy over bandit arms, exact expected-reward gradient on sampled tasks) that
compiles in well under a second; the RL² versions are marked slow.
"""

import json
import subprocess
import sys
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax.envs as envs
from metajax import cli, distributed, learners, sweep
from metajax.errors import ConfigError
from metajax.learners import rl2
from metajax.learners.base import Learner
from metajax.seeds import seed_state, train_seeds
from metajax.train import TrainConfig, to_host, train

TINY_RL2 = dict(
    num_tasks=8,
    episodes_per_trial=3,
    core_size=8,
    hidden_sizes=(8,),
    num_minibatches=2,
    update_epochs=1,
)


@dataclass(frozen=True)
class Config:
    """softmax-bandit: one softmax policy over arms for every task (no adaptation)."""

    num_tasks: int = 16
    pulls: int = 4  # episodes of an evaluation trial
    learning_rate: float = 0.5
    noise: float = 0.1  # scale of a random perturbation of each step (makes seeds differ)

    def validate(self) -> None:
        """Raises ConfigError for impossible sizes."""
        if self.num_tasks < 1:
            raise ConfigError(f"num_tasks must be at least 1, got {self.num_tasks}")


def make_learner(config: Config, env, tasks) -> Learner:
    """Gradient ascent on the mean over sampled tasks of sum_i softmax(logits)_i p_i."""
    config.validate()
    arms = env.arms

    def init(key):
        return {"logits": 0.01 * jax.random.normal(key, (arms,))}

    def make_train_step(axis_name):
        def train_step(state, key):
            key_tasks, key_noise = jax.random.split(key)
            probs = tasks.sample(key_tasks, config.num_tasks).arm_probs  # [tasks, arms]
            probs = distributed.local_slice(probs, axis_name)

            def value(logits):
                return jnp.mean(jax.nn.softmax(logits) @ probs.T)

            expected, grad = jax.value_and_grad(value)(state["logits"])
            grad = distributed.pmean(grad, axis_name)
            noise = config.noise * jax.random.normal(key_noise, (arms,))
            logits = state["logits"] + config.learning_rate * grad + noise
            return {"logits": logits}, {"return": distributed.pmean(expected, axis_name)}

        return train_step

    def evaluate(state, key, eval_tasks):
        n = eval_tasks.arm_probs.shape[0]
        key_arm, key_reward = jax.random.split(key)
        arm = jax.random.categorical(key_arm, state["logits"], shape=(n, config.pulls))
        p = jnp.take_along_axis(eval_tasks.arm_probs, arm, axis=1)
        return jax.random.bernoulli(key_reward, p).astype(jnp.float32)  # [tasks, pulls]

    return Learner(
        name="softmax-bandit",
        init=init,
        evaluate=evaluate,
        adaptation_unit="episode",
        env_steps_per_update=config.num_tasks,
        make_train_step=make_train_step,
        return_metric="return",
    )


@pytest.fixture
def softmax_registered(monkeypatch):
    monkeypatch.setitem(learners._LEARNER_MODULES, "softmax-bandit", __name__)


def tiny_learner():
    env, tasks = envs.make("bernoulli-bandit", arms=3)
    return make_learner(Config(), env, tasks)


def assert_seeds_match_alone(learner, tmp_path, seeds, num_tasks, metric):
    seen = []
    together = train_seeds(
        learner, seeds, 4, updates_per_chunk=2, on_chunk=lambda done, m: seen.append(done)
    )
    assert together.seeds == tuple(seeds) and seen == [2, 4]
    assert together.metrics[metric].shape == (len(seeds), 4)
    assert len(together.chunk_seconds) == 2
    assert together.env_steps == len(seeds) * 4 * learner.env_steps_per_update
    for index, seed in enumerate(seeds):
        config = TrainConfig(
            run_dir=str(tmp_path / f"seed{seed}"),
            num_updates=4,
            updates_per_chunk=2,
            seed=seed,
            progress=False,
            tensorboard=False,
        )
        alone, history = train(learner, config, num_tasks=num_tasks)
        mine = seed_state(together, index)
        for a, b in zip(jax.tree.leaves(to_host(alone)), jax.tree.leaves(mine), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            together.metrics[metric][index, -1], history[-1][metric], rtol=1e-4, atol=1e-5
        )
    # the seeds really differ, so the comparison above is not between copies
    first, second = (jax.tree.leaves(seed_state(together, i))[0] for i in (0, 1))
    assert not np.allclose(first, second)


def test_vmapped_seeds_equal_each_seed_trained_alone(tmp_path):
    assert_seeds_match_alone(tiny_learner(), tmp_path, (3, 7, 11), 16, "return")


@pytest.mark.slow
def test_vmapped_rl2_seeds_equal_each_seed_trained_alone(tmp_path):
    env, tasks = envs.make("bernoulli-bandit", arms=3)
    learner = rl2.make_learner(rl2.Config(**TINY_RL2), env, tasks)
    assert_seeds_match_alone(learner, tmp_path, (3, 7), 8, "trial_return")


def test_train_seeds_rejects_bad_sizes():
    learner = tiny_learner()
    with pytest.raises(ConfigError, match="seeds must differ"):
        train_seeds(learner, [1, 1], 2)
    with pytest.raises(ConfigError, match="num_updates must be at least 1"):
        train_seeds(learner, 2, 0)
    with pytest.raises(ConfigError, match="seeds must be in 0.."):
        train_seeds(learner, [0, 2**40], 2)


# vmap(learner.init) of RL² with the memory core at width 64 (2 seeds) hung for good on 2 CPU
# cores: jaxlib's LAPACK QR (orthogonal init) waits for the intra-op pool from inside it. The
# check runs in a child process so that a hang fails this test instead of stalling the suite.
INIT_SEEDS_CHILD = """
import jax, numpy as np
import metajax.envs as envs
from metajax.learners import rl2
from metajax.seeds import init_seeds, seed_keys
env, tasks = envs.make("bernoulli-bandit", arms=5)
config = rl2.Config(core="memory", core_size=64, hidden_sizes=(64,), num_tasks=8,
                    episodes_per_trial=5, num_minibatches=2)
learner = rl2.make_learner(config, env, tasks)
keys = seed_keys((0, 1), 0)
states = jax.block_until_ready(init_seeds(learner, keys))
for index, key in enumerate(keys):
    alone = jax.jit(learner.init)(key)
    for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(states), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[index])
print("ok")
"""


def test_init_seeds_is_each_seeds_own_init_without_hanging():
    try:
        child = subprocess.run(
            [sys.executable, "-c", INIT_SEEDS_CHILD], capture_output=True, text=True, timeout=240
        )
    except subprocess.TimeoutExpired:
        pytest.fail("init_seeds hung (RL², memory core, width 64, 2 seeds)")
    assert child.returncode == 0 and child.stdout.strip() == "ok", child.stderr[-3000:]


def write_sweep(tmp_path, body: str, name: str = "sweep.toml"):
    path = tmp_path / name
    path.write_text(body)
    return path


BASE = """
learner = "{learner}"
name = "tiny"
{extra}
[base]
env = "bernoulli-bandit"
env_options = {{ arms = 3 }}
num_updates = 4
updates_per_chunk = 2
eval_tasks = 16
{options}
[grid]
{grid}
"""
SOFTMAX = "num_tasks = 16\npulls = 3\n"
RL2 = "num_tasks = 8\nepisodes_per_trial = 3\ncore_size = 8\nhidden_sizes = [8]\n"
RL2 += "num_minibatches = 2\nupdate_epochs = 1\n"


def softmax_sweep(tmp_path, grid: str, extra: str = "", name: str = "sweep.toml"):
    body = BASE.format(learner="softmax-bandit", extra=extra, options=SOFTMAX, grid=grid)
    return write_sweep(tmp_path, body, name)


def test_sweep_runs_grid_points_through_train_and_evaluation(tmp_path, softmax_registered):
    path = softmax_sweep(tmp_path, "learning_rate = [0.5, 2.0]\nnoise = [0.0]")
    out = tmp_path / "out"
    results = sweep.run_sweep(path, out)
    points = [{"learning_rate": 0.5, "noise": 0.0}, {"learning_rate": 2.0, "noise": 0.0}]
    assert [r["point"] for r in results] == points
    for r in results:
        run_dir = out / sweep.point_name(r["point"])
        assert r["mode"] == "train"
        saved = json.loads((run_dir / "result.json").read_text())
        assert saved["eval"]["in_distribution"]["num_tasks"] == 16
        assert saved["shots"]["in_distribution"]["0-shot"]["shots"] == 0
        assert saved["shots"]["in_distribution"]["few-shot"]["shots"] == 2
        metadata = json.loads((run_dir / "run.json").read_text())
        assert metadata["learner_config"]["learning_rate"] == r["point"]["learning_rate"]
        assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 4
        assert r["env_steps"] == 4 * 16
    # same seed: the same first update; then the step sizes (the grid values) part the runs
    rows = [
        [json.loads(line) for line in (out / sweep.point_name(p) / "metrics.jsonl").open()]
        for p in points
    ]
    assert rows[0][0]["return"] == rows[1][0]["return"]
    assert rows[0][-1]["return"] != rows[1][-1]["return"]
    summary = (out / "summary.md").read_text()
    assert (
        "| learning_rate | noise | 0-shot | 1-shot | few-shot | OOD few-shot | total |" in summary
    )
    assert summary.count("\n| 0.5 | 0.0 |") == 1 and summary.count("\n| 2.0 | 0.0 |") == 1
    assert json.loads((out / "summary.json").read_text())["meta"]["jax_version"] == jax.__version__
    # a second call finds every result and trains nothing
    assert sweep.run_sweep(path, out) == results


def test_sweep_vmapped_seeds_match_sequential_runs(tmp_path, softmax_registered):
    grid = "seed = [0, 1]"
    vmapped = sweep.run_sweep(softmax_sweep(tmp_path, grid, "vmap_seeds = true"), tmp_path / "v")
    sequential = sweep.run_sweep(softmax_sweep(tmp_path, grid, name="s.toml"), tmp_path / "s")
    assert all(r["mode"].startswith("vmapped seeds [0, 1]") for r in vmapped)
    assert all(r["mode"] == "train" for r in sequential)
    for v, s in zip(vmapped, sequential, strict=True):
        np.testing.assert_allclose(
            v["eval"]["in_distribution"]["mean"], s["eval"]["in_distribution"]["mean"], atol=1e-5
        )
        np.testing.assert_allclose(
            v["final_metrics"]["return"], s["final_metrics"]["return"], rtol=1e-5
        )
    finals = [r["final_metrics"]["return"] for r in vmapped]
    assert len(set(finals)) == 2  # the seeds differ
    summary = (tmp_path / "v" / "summary.md").read_text()
    assert "Over seeds" in summary and "| 2 |" in summary
    # each vmapped seed left a run dir that `metajax evaluate` accepts
    assert cli.main(["evaluate", str(tmp_path / "v" / "seed=1"), "--eval-tasks", "8"]) == 0


@pytest.mark.parametrize(
    "body, fragment",
    [
        ('learner = "rl2"\n[grid]\ncolour = [1]', "unknown option 'colour' in [grid]"),
        ('learner = "rl2"\n[base]\nrun_dir = "x"', "run_dir is set by the sweep"),
        ('learner = "rl2"\n[grid]\nseed = []', "must be a non-empty list"),
        ('learner = "nope"', "unknown learner 'nope'"),
        ('learnr = "rl2"', "unknown key(s) learnr"),
        ("learner = ", "is not valid TOML"),
        ('learner = "rl2"\n[base]\nnum_tasks = 0', "num_tasks must be at least 1"),
        ('learner = "rl2"\n[base]\nnum_updates = 0', "num_updates must be at least 1"),
        ('learner = "rl2"\n[base]\nenv = "nope"', "unknown env 'nope'"),
    ],
)
def test_bad_sweep_files_raise_config_error(tmp_path, body, fragment):
    with pytest.raises(ConfigError) as error:
        sweep.run_sweep(write_sweep(tmp_path, body), tmp_path / "out", dry_run=True)
    assert fragment in str(error.value)


def test_cli_sweep_dry_run_and_bad_file(tmp_path, capsys):
    body = BASE.format(learner="rl2", extra="", options=RL2, grid="seed = [0, 1]")
    assert cli.main(["sweep", str(write_sweep(tmp_path, body)), "--dry-run"]) == 0
    assert "2 runs of rl2 in 2 jobs" in capsys.readouterr().out
    assert cli.main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["sweep"]) == 2


def test_shipped_sweep_files_are_valid(capsys):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "benchmarks" / "sweeps"
    files = sorted(root.glob("*.toml"))
    assert len(files) >= 2
    for path in files:
        sweep.run_sweep(path, dry_run=True)


@pytest.mark.slow
def test_cli_sweep_trains_rl2_seeds_together(tmp_path):
    body = BASE.format(learner="rl2", extra="vmap_seeds = true", options=RL2, grid="seed = [0, 1]")
    out = tmp_path / "out"
    assert cli.main(["sweep", str(write_sweep(tmp_path, body)), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["point"]["seed"] for r in summary["runs"]] == [0, 1]
    assert (out / "seed=0" / "eval.png").stat().st_size > 0
