"""The command line: a tiny train + evaluate, and bad input as one line with exit code 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--num-tasks",
    "8",
    "--core-size",
    "8",
    "--hidden-sizes",
    "8",
    "--num-minibatches",
    "2",
    "--update-epochs",
    "1",
    "--episodes-per-trial",
    "3",
    "--progress",
    "False",
    "--tensorboard",
    "False",
]


def metajax(*args, devices: int = 1, timeout: int = 600):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return subprocess.run(
        [sys.executable, "-m", "metajax", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(result, fragment: str):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in lines[0], lines[0]


def test_train_then_evaluate_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    result = metajax(
        "train",
        "rl2",
        "--env",
        "bernoulli-bandit",
        "--env-options",
        "arms=3",
        "--run-dir",
        str(run_dir),
        "--num-updates",
        "4",
        "--updates-per-chunk",
        "2",
        "--eval-tasks",
        "20",
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "held-out tasks" in result.stdout and "few-shot" in result.stdout
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2, 3, 4]
    report = json.loads((run_dir / "eval.json").read_text())["in_distribution"]
    assert report["num_tasks"] == 20 and len(report["mean"]) == 3
    assert (run_dir / "eval.png").stat().st_size > 0
    again = metajax("evaluate", str(run_dir), "--eval-tasks", "10")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((run_dir / "eval.json").read_text())["in_distribution"]["num_tasks"] == 10


def test_list_names_learners_and_envs():
    result = metajax("list")
    assert result.returncode == 0
    assert "rl2" in result.stdout and "bernoulli-bandit" in result.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "nope", "--env", "bernoulli-bandit"], "unknown learner 'nope'"),
        (["train", "rl2", "--env", "nope"], "unknown env 'nope'"),
        (["train", "rl2", "--env-options", "arms=1"], "arms must be at least 2"),
        (["train", "rl2", "--env-options", "colour=3"], "unknown option(s) colour"),
        (["train", "rl2", "--num-tasks", "0"], "num_tasks must be at least 1"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["train", "rl2", "--env-options", "arms=abc"], "'arms' of 'bernoulli-bandit' expects an"),
        (["train", "maml", "--env", "nav2d", "--inner-lr", "-1"], "must be positive"),
        (["train", "promp", "--env", "nav2d", "--inner-lr", "0"], "must be positive"),
        (["train", "emaml", "--env", "nav2d", "--inner-lrs", "0.1", "0"], "must be positive"),
        (["train", "maml", "--env", "nav2d", "--outer-lr", "-1"], "outer_lr must be positive"),
        (["train", "rl2", "--env-options", f"split_seed={2**70}"], "split_seed must be in 0.."),
        (["train", "rl2", "--seed", str(2**70)], "seed must be in 0.."),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, fragment):
    assert_one_line_error(
        metajax(*args, "--run-dir", str(tmp_path / "r")) if args[0] == "train" else metajax(*args),
        fragment,
    )


def test_task_count_not_divisible_by_devices(tmp_path):
    result = metajax(
        "train",
        "rl2",
        "--run-dir",
        str(tmp_path / "r"),
        "--num-tasks",
        "12",
        "--num-minibatches",
        "1",
        devices=8,
    )
    assert_one_line_error(result, "not divisible by the device count 8")


def test_tasks_per_device_not_divisible_by_minibatches(tmp_path):
    result = metajax(
        "train",
        "rl2",
        "--run-dir",
        str(tmp_path / "r"),
        "--num-tasks",
        "8",
        "--num-minibatches",
        "8",
        "--progress",
        "False",
        devices=2,
    )
    assert_one_line_error(result, "do not split into 8 minibatches")


def test_missing_checkpoint_and_missing_run_dir(tmp_path):
    result = metajax("train", "rl2", "--run-dir", str(tmp_path / "r"), "--resume", "True", *TINY)
    assert_one_line_error(result, "holds no checkpoint")
    assert_one_line_error(metajax("evaluate", str(tmp_path / "nowhere")), "not a metajax run")


def _metric_rows(run_dir: Path) -> list[dict]:
    timing = {"env_steps_per_s", "chunk_seconds"}
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in timing} for x in lines]


def test_sigkilled_run_resumes_to_the_metrics_of_an_uninterrupted_run(tmp_path):
    """--checkpoint-every counts updates; a run killed after a checkpoint resumes exactly."""
    import signal
    import time

    def args(run_dir):
        return ["train", "rl2", "--env-options", "arms=3", "--run-dir", str(run_dir),
                "--num-updates", "60", "--updates-per-chunk", "2", "--checkpoint-every", "5",
                "--eval-tasks", "0", *TINY]  # fmt: skip

    killed = tmp_path / "killed"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    command = [sys.executable, "-m", "metajax", *args(killed)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not any(p.name.isdigit() for p in (killed / "checkpoints").glob("*")):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = sorted(int(p.name) for p in (killed / "checkpoints").glob("*") if p.name.isdigit())
    assert saved[0] == 6  # the first chunk end at or after update 5
    assert saved[-1] < 60, "the run finished before it was killed"
    resumed = metajax(*args(killed), "--resume", "True")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = metajax(*args(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert _metric_rows(killed) == _metric_rows(tmp_path / "straight")
    assert [r["update"] for r in _metric_rows(killed)] == list(range(1, 61))


def test_run_dir_that_is_a_file_and_evaluate_without_tasks(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a run")
    result = metajax("train", "rl2", "--run-dir", str(a_file), *TINY)
    assert_one_line_error(result, "is a file, not a directory")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    for count in ("0", "-1"):
        result = metajax("evaluate", str(run_dir), "--eval-tasks", count)
        assert_one_line_error(result, f"--eval-tasks must be at least 1, got {count}")
