"""Task-inference probes: ridge decoding of synthetic representations with a known R², the task
split, every learner's representation, and ``metajax probe`` (files, bad input)."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from metajax import inference
from metajax.cli import main
from metajax.errors import ConfigError
from metajax.inference import ridge
from metajax.inference.probe import score_target
from metajax.runs import RunArgs, build
from tests.metajax.golden.record import CASES
from tests.metajax.test_cli import TINY


def synthetic(num_tasks=600, params=3, noise_std=(0.0, 0.29, 0.58), extra=5, seed=0):
    """Task parameters U[0, 1]^P and features = parameters + N(0, noise_std[s]^2) per row s,
    with ``extra`` task-independent features."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(size=(num_tasks, params))
    rows = len(noise_std)
    noise = rng.normal(size=(num_tasks, rows, params)) * np.asarray(noise_std)[None, :, None]
    junk = rng.normal(size=(num_tasks, rows, extra))
    features = np.concatenate([theta[:, None] + noise, junk], axis=-1)
    target = np.broadcast_to(theta[:, None], (num_tasks, rows, params))
    return features, target


def test_noisy_task_parameters_are_decoded_with_the_expected_r2():
    # a linear probe of theta from theta + noise: R^2 = var(theta) / (var(theta) + var(noise)),
    # var(theta) = 1/12 = 0.0833: noise 0.29 -> 0.0833 / (0.0833 + 0.0841) = 0.498,
    # noise 0.58 -> 0.0833 / (0.0833 + 0.3364) = 0.199; noise 0 -> 1
    noise = (0.0, 0.29, 0.58)
    features, target = synthetic(noise_std=noise)
    n = features.shape[0]
    valid, unit = np.ones((n, 3), bool), np.zeros((n, 3), int)
    fit, score = ridge.split_tasks(n, seed=1)
    scores = score_target(features, target, valid, unit, fit, score)
    expected = [1 / 12 / (1 / 12 + s**2) for s in noise]
    np.testing.assert_allclose(scores.step_r2, expected, atol=0.06)
    assert scores.step_r2[0] > 0.99
    mse = [3 * (1 / 12) * (1 - r) for r in expected]  # summed over the 3 parameters
    np.testing.assert_allclose(scores.step_mse, mse, atol=0.03)


def test_a_representation_independent_of_the_task_scores_no_better_than_zero():
    rng = np.random.default_rng(3)
    n = 400
    features = rng.normal(size=(n, 2, 20))
    target = np.broadcast_to(rng.uniform(size=(n, 1, 2)), (n, 2, 2))
    fit, score = ridge.split_tasks(n, seed=0)
    scores = score_target(
        features, target, np.ones((n, 2), bool), np.zeros((n, 2), int), fit, score
    )
    assert max(scores.step_r2) < 0.03
    assert scores.pooled_r2 < 0.03


def test_the_split_never_lets_a_scored_task_into_the_fit():
    for n in (4, 9, 200):
        fit, score = ridge.split_tasks(n, seed=n)
        assert not set(fit) & set(score)
        assert sorted([*fit, *score]) == list(range(n))
        assert len(fit) - len(score) in (0, 1)
    # scored tasks carry the exact answer in their features, fit tasks only noise: a probe
    # that saw a scored task would decode it; fit on the fit half alone it cannot
    features, target = synthetic(num_tasks=300, noise_std=(0.0, 0.0))
    fit, score = ridge.split_tasks(300, seed=2)
    rng = np.random.default_rng(0)
    features[fit] = rng.normal(size=features[fit].shape)
    valid, unit = np.ones((300, 2), bool), np.zeros((300, 2), int)
    scores = score_target(features, target, valid, unit, fit, score)
    assert max(scores.step_r2) < 0.05 and scores.pooled_r2 < 0.05


def test_ridge_picks_a_small_penalty_for_clean_data_and_a_large_one_for_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 10))
    clean = ridge.fit_ridge(x, x @ rng.normal(size=(10, 2)))
    noise = ridge.fit_ridge(x, rng.normal(size=(200, 2)))
    assert clean.alpha < noise.alpha
    assert ridge.r2_score(x @ np.ones((10, 1)), x @ np.ones((10, 1))) == 1.0
    assert np.isnan(ridge.r2_score(np.ones((5, 1)), np.zeros((5, 1))))  # constant target


@pytest.mark.parametrize(
    "case", ["rl2-gru-bandit", "maml-trpo-nav2d", "pearl-point-robot", "varibad-point-robot"]
)
def test_every_learner_represents_the_held_out_tasks(case):
    learner_name, env_name, env_options, options = CASES[case]
    run = RunArgs(env=env_name, env_options=tuple(f"{k}={v}" for k, v in env_options.items()))
    learner, env, tasks, _ = build(learner_name, run, options)
    state = learner.init(jax.random.key(0))
    held_out = tasks.test_tasks(8)
    rep = jax.jit(learner.represent)(state, jax.random.key(1), held_out)
    n, rows, width = rep.features.shape
    assert n == 8 and rows == rep.seen.shape[0] and 0 < width <= 256
    assert rep.valid.shape == rep.unit.shape == (8, rows)
    assert rep.mask.shape == (rep.transitions.reward.shape[0], 8)
    assert int(rep.seen[-1]) <= rep.mask.shape[0] and int(rep.seen[0]) == 0
    assert np.all(np.isfinite(np.asarray(rep.features)))


def test_maml_history_is_the_batches_the_inner_steps_adapt_on():
    from metajax.learners.maml import sampling

    learner_name, env_name, env_options, options = CASES["maml-trpo-nav2d"]
    run = RunArgs(env=env_name, env_options=tuple(f"{k}={v}" for k, v in env_options.items()))
    learner, _, tasks, _ = build(learner_name, run, options)
    setup = learner.init.args[0]
    params = learner.init(jax.random.key(0)).params["policy"]
    task = jax.tree.map(lambda x: x[0], tasks.test_tasks(1))
    key = jax.random.key(5)
    batch = sampling.sample(setup, params, task, key, 3)
    transitions = sampling.trajectories(setup, params, task, key, 3)
    np.testing.assert_array_equal(np.asarray(batch.action), np.asarray(transitions.action))
    obs = np.asarray(transitions.obs).reshape(batch.obs.shape)
    np.testing.assert_allclose(np.asarray(batch.obs), obs)


def test_check_probeable_names_the_missing_piece():
    learner_name, env_name, env_options, options = CASES["sac-point-robot"]
    sac = build(learner_name, RunArgs(env=env_name), options).learner
    with pytest.raises(ConfigError, match="no task representation"):
        inference.check_probeable(sac, "point-robot-dense")
    rl2 = build("rl2", RunArgs(env="bernoulli-bandit"), CASES["rl2-gru-bandit"][3]).learner
    with pytest.raises(ConfigError, match="no task parameters"):
        inference.check_probeable(rl2, "gymnax-cartpole")


def _run_json(run_dir: Path, learner: str, env: str, options: dict):
    run_dir.mkdir()
    metadata = {
        "learner": learner,
        "run": {"env": env, "env_options": [], "eval_tasks": 0},
        "train": {},
        "learner_config": options,
    }
    (run_dir / "run.json").write_text(json.dumps(metadata))


def _cli(capsys, *args) -> tuple[int, str, str]:
    """``metajax ARGS`` in this process (no interpreter start): exit code, stdout, stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(capsys, fragment: str, *args):
    code, _, err = _cli(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], (code, err)


def _listed(options: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


def test_probe_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    rl2_options = _listed(CASES["rl2-gru-bandit"][3])
    _run_json(tmp_path / "no_ckpt", "rl2", "bernoulli-bandit", rl2_options)
    _one_line_error(capsys, "no checkpoint", "probe", str(tmp_path / "no_ckpt"))
    _run_json(tmp_path / "sac", "sac", "point-robot-dense", _listed(CASES["sac-point-robot"][3]))
    _one_line_error(capsys, "no task representation", "probe", str(tmp_path / "sac"))
    _run_json(tmp_path / "maze", "rl2", "maze", rl2_options)
    _one_line_error(capsys, "no task parameters", "probe", str(tmp_path / "maze"))
    _one_line_error(capsys, "no run.json", "probe", str(tmp_path / "missing"))
    _one_line_error(capsys, "needs a run directory", "probe")
    _one_line_error(capsys, "at least 4", "probe", str(tmp_path / "no_ckpt"), "--tasks", "2")


def test_cli_probe_of_a_tiny_rl2_bandit_run_writes_the_three_files(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["--env", "bernoulli-bandit", "--env-options", "arms=3", "--num-updates", "20"]
    args += ["--updates-per-chunk", "10", "--eval-tasks", "0", "--run-dir", str(run_dir)]
    assert _cli(capsys, "train", "rl2", *args, *TINY)[0] == 0
    code, out, _ = _cli(capsys, "probe", str(run_dir), "--tasks", "40", "--seed", "1")
    assert code == 0 and "probe.md" in out
    for name in ("probe.md", "probe.json", "probe.png"):
        assert (run_dir / name).stat().st_size > 0
    report = json.loads((run_dir / "probe.json").read_text())
    assert report["learner"] == "rl2" and report["num_tasks"] == 40
    assert not set(report["fit_tasks"]) & set(report["score_tasks"])
    assert len(report["targets"]["task"]["step_r2"]) == len(report["seen"]) == 3
    # after one pull the posterior mean is a linear function of (arm, reward): the memory,
    # trained or not, decodes it
    assert report["targets"]["posterior"]["step_r2"][1] > 0.5
    assert report["bayes_floor"][0] > report["bayes_floor"][-1]
    assert "R²" in (run_dir / "probe.md").read_text()


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["probe", "--help"])
    assert exit_info.value.code == 0 and "--tasks" in capsys.readouterr().out
