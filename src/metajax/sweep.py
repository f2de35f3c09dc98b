"""Sweeps: grids of training configs from a TOML file.

``run_sweep`` reads a TOML file and runs every point of its grid through the same path as
``metajax train`` (the same build steps, ``train.train``, then the same evaluation), or through
``seeds.train_seeds`` for points that differ only by seed when ``vmap_seeds = true``. One results
folder holds a run directory per point (``run.json``, ``metrics.jsonl``, checkpoint,
``eval.json``/``eval.md``/``eval.png``, ``result.json``) and ``summary.json`` / ``summary.md``.
Points whose ``result.json`` exists are skipped, so an interrupted sweep continues. File format::

    learner = "rl2"              # a name from `metajax list`
    name = "seeds"               # results go to runs/sweeps/<name> unless --out is given
    vmap_seeds = true            # train the seeds of a grid point together (one device)
    [base]                       # any option of `metajax train LEARNER` (underscores)
    env = "bernoulli-bandit"
    env_options = { arms = 5 }   # or ["arms=5"]
    num_updates = 50
    [grid]                       # option -> values; the sweep runs the cartesian product
    seed = [0, 1, 2, 3]
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax

from metajax import distributed, runs
from metajax.errors import ConfigError
from metajax.seeds import SeedRun, seed_state, train_seeds
from metajax.sweep_report import summary_markdown
from metajax.train import CheckpointStore

SWEEP_KEYS = {"learner", "name", "vmap_seeds", "base", "grid"}


# SWEEP FILES


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file."""

    path: str
    learner: str
    name: str
    vmap_seeds: bool
    base: dict[str, Any]
    grid: dict[str, list]


def load_sweep(path: str | os.PathLike) -> SweepSpec:
    """Reads and checks a sweep TOML file; raises ConfigError with one line on bad input."""
    path = Path(path)
    data = runs.load_toml(path)
    unknown = sorted(set(data) - SWEEP_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(SWEEP_KEYS))}"
        )
    if not isinstance(data.get("learner"), str):
        raise ConfigError(f"{path}: 'learner' (a learner name) is required")
    base, grid = data.get("base", {}), data.get("grid", {})
    if not isinstance(base, dict) or not isinstance(grid, dict):
        raise ConfigError(f"{path}: [base] and [grid] must be tables")
    owners = runs.option_owners(data["learner"])
    for section, table in (("base", base), ("grid", grid)):
        for option in table:
            if option not in owners:
                raise ConfigError(
                    f"{path}: unknown option '{option}' in [{section}] for learner "
                    f"'{data['learner']}'; see `metajax train {data['learner']} --help`"
                )
            if option == "run_dir":
                raise ConfigError(f"{path}: run_dir is set by the sweep (use --out)")
    for option, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: [grid] {option} must be a non-empty list of values")
    return SweepSpec(
        path=str(path),
        learner=data["learner"],
        name=str(data.get("name", path.stem)),
        vmap_seeds=bool(data.get("vmap_seeds", False)),
        base=base,
        grid=grid,
    )


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """The cartesian product of the grid, in file order (the last option varies fastest)."""
    names = list(spec.grid)
    return [dict(zip(names, v, strict=True)) for v in itertools.product(*spec.grid.values())]


def point_name(point: dict[str, Any]) -> str:
    """A folder name for a grid point, e.g. ``learning_rate=0.001_seed=2``."""
    if not point:
        return "base"
    text = "_".join(f"{k}={v}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", text)


def split_options(learner_name: str, options: dict[str, Any]) -> tuple:
    """``(RunArgs, TrainConfig, learner options)`` of a point; no progress bar or TensorBoard
    unless the file asks."""
    return runs.split_options(learner_name, options, {"progress": False, "tensorboard": False})


def _result(point, options, mode, learner, reports, metrics_last, env_steps, rate, wall) -> dict:
    """What ``result.json`` holds for one run."""
    from metajax.evaluate import shot_summary

    return dict(point=point, options=options, mode=mode, learner=learner.name,
                return_metric=learner.return_metric, env_steps=env_steps, env_steps_per_s=rate,
                wall_s=wall, final_metrics=metrics_last,
                eval={split: dataclasses.asdict(r) for split, r in reports.items()},
                shots={split: shot_summary(r) for split, r in reports.items()})  # fmt: skip


def _run_point(spec: SweepSpec, point: dict, out: Path) -> dict:
    """One grid point through the `metajax train` path: build, train, evaluate."""
    from metajax.train import throughput, train

    options = spec.base | point
    run, train_config, learner_options = split_options(spec.learner, options)
    run_dir = out / point_name(point)
    resume = CheckpointStore(run_dir, 1).latest_step() is not None if run_dir.exists() else False
    train_config = dataclasses.replace(train_config, run_dir=str(run_dir), resume=resume)
    learner, env, tasks, learner_config = runs.build(spec.learner, run, learner_options, reuse=True)
    metadata = runs.run_metadata(spec.learner, run, train_config, learner_config)
    tic = time.perf_counter()
    state, history = train(learner, train_config, learner_config.num_tasks, metadata)
    wall = time.perf_counter() - tic
    reports = runs.evaluate_and_report(learner, state, env, tasks, run, run_dir)
    last = dict(history[-1]) if history else {}
    steps = train_config.num_updates * learner.env_steps_per_update
    rate = throughput(history) if history else float("nan")
    return _result(point, options, "train", learner, reports, last, steps, rate, wall)


def _seed_rate(seed_run: SeedRun, num_updates: int, per_chunk: int, steps_per_update: int):
    """Env steps per second of all seeds together, without the first (compiling) chunk."""
    timed = seed_run.chunk_seconds[1:] or seed_run.chunk_seconds
    first_chunk = min(per_chunk, num_updates)
    timed_updates = num_updates - (first_chunk if len(seed_run.chunk_seconds) > 1 else 0)
    return len(seed_run.seeds) * timed_updates * steps_per_update / sum(timed)


def _run_seed_group(spec: SweepSpec, points: list[dict], out: Path) -> list[dict]:
    """Points that differ only by seed, trained together with ``train_seeds`` on one device."""
    run, train_config, learner_options = split_options(spec.learner, spec.base | points[0])
    learner, env, tasks, learner_config = runs.build(spec.learner, run, learner_options, reuse=True)
    seeds = [int(p.get("seed", train_config.seed)) for p in points]
    run_dirs = [out / point_name(p) for p in points]
    for run_dir, seed in zip(run_dirs, seeds, strict=True):
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # an unfinished earlier try
        run_dir.mkdir(parents=True, exist_ok=True)
        config = dataclasses.replace(train_config, run_dir=str(run_dir), seed=seed)
        metadata = runs.run_metadata(spec.learner, run, config, learner_config)
        (run_dir / "run.json").write_text(json.dumps(metadata, indent=2, default=str))
    tic = time.perf_counter()
    seed_run = train_seeds(
        learner,
        seeds,
        train_config.num_updates,
        updates_per_chunk=train_config.updates_per_chunk,
        run_dirs=run_dirs,
        checkpoint_every=train_config.checkpoint_every,
        tensorboard=train_config.tensorboard,
    )
    wall = time.perf_counter() - tic
    steps_per_update = learner.env_steps_per_update
    rate = _seed_rate(
        seed_run, train_config.num_updates, train_config.updates_per_chunk, steps_per_update
    )
    steps = train_config.num_updates * steps_per_update
    mode = f"vmapped seeds {seeds} (env_steps_per_s and wall_s: all seeds together)"
    results = []
    for index, point in enumerate(points):
        state = seed_state(seed_run, index)
        reports = runs.evaluate_and_report(learner, state, env, tasks, run, run_dirs[index])
        last = {k: float(v[index, -1]) for k, v in seed_run.metrics.items()}
        results.append(
            _result(point, spec.base | point, mode, learner, reports, last, steps, rate, wall)
        )
    return results


def _plan(spec: SweepSpec, points: list[dict]) -> list[list[dict]]:
    """Jobs: one point each, or (``vmap_seeds``) the points that differ only by seed."""
    if not (spec.vmap_seeds and "seed" in spec.grid):
        return [[point] for point in points]
    groups: dict[str, list[dict]] = {}
    for point in points:
        rest = {k: v for k, v in point.items() if k != "seed"}
        groups.setdefault(json.dumps(rest, sort_keys=True), []).append(point)
    return list(groups.values())


def _write_summary(spec: SweepSpec, results: list[dict], out: Path, command: str) -> None:
    meta = {
        "command": command,
        "sweep_file": spec.path,
        "device": distributed.device_info(),
        "jax_version": jax.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (out / "summary.json").write_text(
        json.dumps({"meta": meta, "spec": dataclasses.asdict(spec), "runs": results}, indent=2)
    )
    text = summary_markdown(spec, results, meta)
    (out / "summary.md").write_text(text)
    print(text)
    print(f"sweep results written to {out}/summary.md and summary.json", file=sys.stderr)


def run_sweep(
    path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    dry_run: bool = False,
    command: str | None = None,
) -> list[dict]:
    """Runs every grid point of the sweep file ``path``; returns the per-run results.

    Writes ``<out>/<point>/result.json`` per run and ``<out>/summary.{json,md}``; ``out``
    defaults to ``runs/sweeps/<name>``. With ``dry_run`` it only checks the file and every
    point's options (building each learner) and prints the plan.
    """
    spec = load_sweep(path)
    out = Path(out_dir) if out_dir is not None else Path("runs/sweeps") / spec.name
    points = grid_points(spec)
    for point in points:  # check every point before spending time on the first
        run, train_config, learner_options = split_options(spec.learner, spec.base | point)
        train_config.validate()
        runs.build(spec.learner, run, learner_options, reuse=True)
    plan = _plan(spec, points)
    print(f"sweep {spec.name}: {len(points)} runs of {spec.learner} in {len(plan)} jobs -> {out}")
    if dry_run:
        for job in plan:
            print("  " + ", ".join(point_name(p) for p in job))
        return []
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    for job in plan:
        names = ", ".join(point_name(p) for p in job)
        done = [out / point_name(p) / "result.json" for p in job]
        if all(f.exists() for f in done):
            print(f"  {names}: done earlier, skipped")
            results += [json.loads(f.read_text()) for f in done]
            continue
        print(f"  running {names}", flush=True)
        if len(job) > 1 or (spec.vmap_seeds and "seed" in spec.grid):
            job_results = _run_seed_group(spec, job, out)
        else:
            job_results = [_run_point(spec, job[0], out)]
        for file, result in zip(done, job_results, strict=True):
            file.write_text(json.dumps(result, indent=2))
        results += job_results
    _write_summary(spec, results, out, command or " ".join(["metajax", "sweep", str(path)]))
    return results
