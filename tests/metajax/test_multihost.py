"""Two JAX processes on 127.0.0.1 (CPU, gloo) train one sharded run like one process does."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    "train",
    "rl2",
    "--num-tasks",
    "8",
    "--core-size",
    "8",
    "--hidden-sizes",
    "8",
    "--num-minibatches",
    "1",
    "--update-epochs",
    "1",
    "--episodes-per-trial",
    "3",
    "--progress",
    "False",
    "--tensorboard",
    "False",
    "--num-updates",
    "4",
    "--updates-per-chunk",
    "2",
    "--eval-tasks",
    "0",
]
TIMING = {"env_steps_per_s", "chunk_seconds"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(run_dir: Path):
    return [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


def test_two_processes_match_one_process(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "metajax",
                *ARGS,
                "--run-dir",
                str(tmp_path / "multi"),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    single = subprocess.run(
        [sys.executable, "-m", "metajax", *ARGS, "--run-dir", str(tmp_path / "single")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    multi_rows, single_rows = _rows(tmp_path / "multi"), _rows(tmp_path / "single")
    assert [r["update"] for r in multi_rows] == [1, 2, 3, 4]
    for m, s in zip(multi_rows, single_rows, strict=True):
        for key in s:
            np.testing.assert_allclose(m[key], s[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert (tmp_path / "multi" / "checkpoints" / "4").exists()
