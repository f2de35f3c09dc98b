"""Checks every learner passes: sharded step == single-device step, exact resume.

``check_sharded_matches_single`` runs ``python -m tests.metajax.learner_checks`` in a
subprocess, because the fake 8-device CPU platform must be set before jax is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def check_sharded_matches_single(
    learner: str,
    env: str,
    learner_options: dict,
    env_options: dict | None = None,
    devices: int = 8,
    steps: int = 2,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> dict:
    """Runs ``steps`` updates on 1 device and sharded over ``devices`` fake CPU devices."""
    spec = {
        "learner": learner,
        "env": env,
        "learner_options": learner_options,
        "env_options": env_options or {},
        "devices": devices,
        "steps": steps,
        "rtol": rtol,
        "atol": atol,
    }
    environ = dict(os.environ)
    environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    environ["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-m", "tests.metajax.learner_checks", json.dumps(spec)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _run_sharded_comparison(spec: dict) -> dict:
    import jax
    import numpy as np

    import metajax.envs as envs
    from metajax import distributed, learners
    from metajax.train import place

    assert jax.device_count() == spec["devices"], jax.devices()
    config_cls, make_learner = learners.get(spec["learner"])
    options = {
        k: tuple(v) if isinstance(v, list) else v for k, v in spec["learner_options"].items()
    }
    env, tasks = envs.make(spec["env"], **spec["env_options"])
    learner = make_learner(config_cls(**options), env, tasks)
    state = jax.jit(learner.init)(jax.random.key(0))
    keys = [jax.random.key(100 + i) for i in range(spec["steps"])]

    single = jax.jit(learner.make_train_step(None))
    s1, m1 = state, None
    for key in keys:
        s1, m1 = single(s1, key)

    mesh = distributed.make_task_mesh(spec["devices"])
    host = jax.device_get(state)
    specs = None
    if learner.state_partition is not None:
        specs = learner.state_partition(host, distributed.TASK_AXIS)
    s8 = place(host, mesh, specs)
    sharded = jax.jit(
        distributed.shard_step(learner.make_train_step, mesh, learner.state_partition)
    )
    m8 = None
    for key in keys:
        s8, m8 = sharded(s8, key)

    def compare(a, b, what):
        def check(path, x, y):
            np.testing.assert_allclose(
                np.asarray(x),
                np.asarray(y),
                rtol=spec["rtol"],
                atol=spec["atol"],
                err_msg=f"{what}{jax.tree_util.keystr(path)}",
            )

        jax.tree_util.tree_map_with_path(check, a, b)

    compare(jax.device_get(s1), jax.device_get(s8), "state")
    compare(jax.device_get(m1), jax.device_get(m8), "metrics")
    return {"ok": True, "metrics": {k: float(v) for k, v in jax.device_get(m8).items()}}


if __name__ == "__main__":
    print(json.dumps(_run_sharded_comparison(json.loads(sys.argv[1]))))


def check_resume_is_exact(learner, directory, steps_before: int = 2, steps_after: int = 2):
    """Trains ``steps_before`` updates, checkpoints, restores, and checks that both copies
    continue bit-identically for ``steps_after`` updates; returns ``(state, restored)``."""
    import jax
    import numpy as np

    from metajax.train import CheckpointStore

    step = jax.jit(learner.train_step)
    state = jax.jit(learner.init)(jax.random.key(0))
    keys = [jax.random.key(i) for i in range(steps_before + steps_after)]
    for key in keys[:steps_before]:
        state, _ = step(state, key)
    store = CheckpointStore(directory, keep=1)
    store.save(steps_before, state)
    restored = store.restore(steps_before, state)
    store.close()
    straight, resumed = state, restored
    for key in keys[steps_before:]:
        straight, m1 = step(straight, key)
        resumed, m2 = step(resumed, key)
    for a, b in zip(jax.tree.leaves((straight, m1)), jax.tree.leaves((resumed, m2)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return state, restored
