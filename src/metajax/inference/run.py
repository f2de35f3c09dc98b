"""Probing a trained run: load its ``run.json`` and latest checkpoint, probe, write the files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import NamedTuple

from metajax.errors import ConfigError
from metajax.inference.probe import check_probeable, probe
from metajax.inference.report import ProbeReport, plot_probe
from metajax.runs import Built, RunArgs, build, parse_env_options


class LoadedRun(NamedTuple):
    """A run directory's learner, env, tasks and restored state."""

    learner_name: str
    run: RunArgs
    built: Built
    state: object
    step: int


def read_run(run_dir: str | Path) -> tuple[str, RunArgs, Built]:
    """The learner name, run options and built learner of a run directory's ``run.json``."""
    run_dir = Path(run_dir)
    metadata_path = run_dir / "run.json"
    if not metadata_path.exists():
        raise ConfigError(f"{run_dir} is not a metajax run directory (no run.json)")
    try:
        metadata = json.loads(metadata_path.read_text())
        run = RunArgs(**metadata["run"])
        learner_name, learner_options = metadata["learner"], metadata["learner_config"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ConfigError(f"{metadata_path} is damaged: {error}") from None
    run = dataclasses.replace(run, env_options=tuple(run.env_options))
    return learner_name, run, build(learner_name, run, learner_options)


def restore_latest(run_dir: str | Path, learner) -> tuple[object, int]:
    """The state of the run's latest checkpoint and its update; ConfigError if none."""
    import jax

    from metajax.train import INIT_STREAM, CheckpointStore

    store = CheckpointStore(Path(run_dir), keep=1_000_000)
    latest = store.latest_step()
    if latest is None:
        store.close()
        raise ConfigError(f"{run_dir} holds no checkpoint to probe")
    like = jax.jit(learner.init)(jax.random.fold_in(jax.random.key(0), INIT_STREAM))
    state = store.restore(latest, like)
    store.close()
    return state, int(latest)


def load_run(run_dir: str | Path) -> LoadedRun:
    """The learner and the latest checkpoint's state of a ``metajax train`` run directory;
    ConfigError (one line) when it has no run.json or no checkpoint."""
    learner_name, run, built = read_run(run_dir)
    state, step = restore_latest(run_dir, built.learner)
    return LoadedRun(learner_name, run, built, state, step)


def write_report(report: ProbeReport, out_dir: str | Path) -> None:
    """``probe.md``, ``probe.json`` and ``probe.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "probe.md").write_text(report.to_markdown())
    (out_dir / "probe.json").write_text(report.to_json())
    plot_probe(report, out_dir / "probe.png")


def probe_run(
    run_dir: str | Path,
    tasks: int = 200,
    seed: int = 0,
    out: str | Path | None = None,
    posterior_options: dict | None = None,
) -> ProbeReport:
    """Probes the latest checkpoint of ``run_dir`` on ``tasks`` held-out tasks (the env's test
    split) and writes probe.md, probe.json and probe.png into ``out`` (default ``run_dir``)."""
    if tasks < 4:
        raise ConfigError(f"--tasks must be at least 4 (half fit, half scored), got {tasks}")
    _, run, (learner, env, task_dist, _) = read_run(run_dir)
    check_probeable(learner, run.env)  # before restoring anything
    state, _ = restore_latest(run_dir, learner)
    report = probe(
        learner,
        state,
        env,
        task_dist.test_tasks(tasks),
        run.env,
        env_options=parse_env_options(run.env_options),
        posterior_options=posterior_options,
        seed=seed,
    )
    out_dir = Path(out) if out is not None else Path(run_dir)
    write_report(report, out_dir)
    return report
