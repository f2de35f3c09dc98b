"""Sweeps: several seeds of one learner trained at once, and grids of configs from a TOML file.

``train_seeds`` trains seeds side by side: the trainer's own chunk (``train.make_chunk``, a
``lax.scan`` of the learner's ``train_step``) is vmapped over the seeds' keys inside one
``jax.jit``. Seed s draws exactly the keys ``metajax train --seed s`` draws, so each seed ends
where a run of that seed alone would (up to float rounding).

``run_sweep`` reads a TOML file and runs every point of its grid through the same path as
``metajax train`` (the same build steps, ``train.train``, then the same evaluation), or through
``train_seeds`` for points that differ only by seed when ``vmap_seeds = true``. One results
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from metajax import distributed
from metajax.errors import ConfigError
from metajax.learners.base import Learner, State
from metajax.train import (
    INIT_STREAM,
    TRAIN_STREAM,
    CheckpointStore,
    TrainConfig,
    TrainingDiverged,
    make_chunk,
    to_host,
)

SWEEP_KEYS = {"learner", "name", "vmap_seeds", "base", "grid"}


class SeedRun(NamedTuple):
    """What ``train_seeds`` returns."""

    seeds: tuple[int, ...]
    states: State  # every leaf has a leading [seeds] axis
    metrics: dict[str, np.ndarray]  # [seeds, num_updates]
    chunk_seconds: list[float]  # wall-clock of each chunk (the first includes compilation)
    env_steps: int  # env steps of all seeds together


_SEED_CHUNKS: dict[tuple, Callable] = {}


def _seed_chunk(learner: Learner, length: int) -> Callable:
    """The trainer's chunk vmapped over seeds (states and train keys), jitted once."""
    cache_key = (learner.make_train_step, length)
    if cache_key not in _SEED_CHUNKS:
        chunk = make_chunk(learner, distributed.make_task_mesh(1), length)
        _SEED_CHUNKS[cache_key] = jax.jit(jax.vmap(chunk, in_axes=(0, 0, None)))
    return _SEED_CHUNKS[cache_key]


def seed_keys(seeds: Sequence[int], stream: int) -> jax.Array:
    """``fold_in(key(seed), stream)`` for each seed: the keys ``train`` derives per seed."""
    base = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    return jax.vmap(jax.random.fold_in, (0, None))(base, stream)


def train_seeds(
    learner: Learner,
    num_seeds: int | Sequence[int],
    num_updates: int,
    *,
    updates_per_chunk: int = 10,
    on_chunk: Callable[[int, dict[str, np.ndarray]], None] | None = None,
) -> SeedRun:
    """Trains several seeds of ``learner`` at once: ``jax.jit(jax.vmap(chunk))`` over seed keys.

    Args:
        num_seeds: a count n (seeds 0..n-1) or the seeds themselves.
        num_updates: updates per seed.
        updates_per_chunk: updates per jitted call; metrics come back and are checked for
            NaN between chunks.
        on_chunk: called after each chunk with (updates done, that chunk's metrics
            ``[seeds, length]``).

    Raises:
        ConfigError: no seeds, repeated seeds or non-positive sizes.
        TrainingDiverged: a metric of any seed became NaN or inf.
    """
    seeds = tuple(range(num_seeds)) if isinstance(num_seeds, int) else tuple(num_seeds)
    if not seeds:
        raise ConfigError("train_seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must differ, got {list(seeds)}")
    for name, value in (("num_updates", num_updates), ("updates_per_chunk", updates_per_chunk)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    states = jax.jit(jax.vmap(learner.init))(seed_keys(seeds, INIT_STREAM))
    train_keys = seed_keys(seeds, TRAIN_STREAM)
    history: list[dict[str, np.ndarray]] = []
    chunk_seconds: list[float] = []
    done = 0
    while done < num_updates:
        length = min(updates_per_chunk, num_updates - done)
        tic = time.perf_counter()
        states, metrics = _seed_chunk(learner, length)(states, train_keys, jnp.int32(done))
        metrics = to_host(metrics)
        chunk_seconds.append(time.perf_counter() - tic)
        bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
        if bad:
            raise TrainingDiverged(
                f"NaN or inf in {', '.join(bad)} during updates {done + 1}..{done + length} "
                f"of seeds {list(seeds)}"
            )
        history.append(metrics)
        done += length
        if on_chunk is not None:
            on_chunk(done, metrics)
    metrics = {k: np.concatenate([h[k] for h in history], axis=1) for k in history[0]}
    env_steps = len(seeds) * num_updates * learner.env_steps_per_update
    return SeedRun(seeds, states, metrics, chunk_seconds, env_steps)


def seed_state(run: SeedRun, index: int) -> State:
    """The state of the ``index``-th seed of ``run`` (host arrays)."""
    return jax.tree.map(lambda x: x[index], to_host(run.states))


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


def _option_owners(learner_name: str) -> dict[str, type]:
    from metajax import learners
    from metajax.cli import RunArgs

    config_cls, _ = learners.get(learner_name)
    owners: dict[str, type] = {}
    for owner in (RunArgs, TrainConfig, config_cls):
        for field in dataclasses.fields(owner):
            owners[field.name] = owner
    return owners


def load_sweep(path: str | os.PathLike) -> SweepSpec:
    """Reads and checks a sweep TOML file; raises ConfigError with one line on bad input."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
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
    owners = _option_owners(data["learner"])
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


def _env_options(value: Any) -> tuple[str, ...]:
    if isinstance(value, dict):
        return tuple(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    raise ConfigError(f"env_options must be a table or a list of KEY=VALUE, got {value!r}")


def split_options(learner_name: str, options: dict[str, Any]) -> tuple[Any, TrainConfig, dict]:
    """``(RunArgs, TrainConfig, learner options)`` from one flat option dict."""
    from metajax.cli import RunArgs

    owners = _option_owners(learner_name)
    parts: dict[type, dict] = {}
    for option, value in options.items():
        if option == "env_options":
            value = _env_options(value)
        elif isinstance(value, list):
            value = tuple(value)
        parts.setdefault(owners[option], {})[option] = value
    defaults = {"progress": False, "tensorboard": False}
    try:
        run = RunArgs(**parts.get(RunArgs, {}))
        train_config = TrainConfig(**{**defaults, **parts.get(TrainConfig, {})})
    except TypeError as error:
        raise ConfigError(f"bad sweep options: {error}") from None
    learner_options = {
        k: v
        for owner, values in parts.items()
        if owner not in (RunArgs, TrainConfig)
        for k, v in values.items()
    }
    return run, train_config, learner_options


def _metadata(learner_name: str, run, train_config: TrainConfig, learner_config) -> dict:
    return {  # the format `metajax train` writes, so `metajax evaluate` reads sweep runs
        "learner": learner_name,
        "run": dataclasses.asdict(run),
        "train": dataclasses.asdict(train_config),
        "learner_config": dataclasses.asdict(learner_config),
    }


_ENVS: dict[tuple, tuple] = {}
_BUILT: dict[tuple, tuple] = {}


def _build(learner_name: str, run, learner_options: dict) -> tuple:
    """``cli.build`` with the env and the learner reused across points of equal settings, so
    their jitted chunks and evaluations compile once per sweep, not once per point."""
    import metajax.envs as envs
    from metajax import learners
    from metajax.cli import parse_env_options

    env_key = (run.env, tuple(run.env_options))
    if env_key not in _ENVS:
        _ENVS[env_key] = envs.make(run.env, **parse_env_options(run.env_options))
    env, tasks = _ENVS[env_key]
    learner_key = (learner_name, env_key, tuple(sorted(learner_options.items())))
    if learner_key not in _BUILT:
        config_cls, make_learner = learners.get(learner_name)
        try:
            learner_config = config_cls(**learner_options)
        except TypeError as error:
            raise ConfigError(f"bad options for learner '{learner_name}': {error}") from None
        _BUILT[learner_key] = (make_learner(learner_config, env, tasks), env, tasks, learner_config)
    return _BUILT[learner_key]


def _evaluate(learner, state, env, tasks, run, run_dir: Path) -> dict:
    from metajax.cli import _evaluate_and_report

    if run.eval_tasks <= 0:
        return {}
    return _evaluate_and_report(learner, state, env, tasks, run, run_dir, seed=0) or {}


def _result(point, options, mode, learner, reports, metrics_last, env_steps, rate, wall) -> dict:
    from metajax.evaluate import shot_summary

    return {
        "point": point,
        "options": options,
        "mode": mode,
        "learner": learner.name,
        "env_steps": env_steps,
        "env_steps_per_s": rate,
        "wall_s": wall,
        "final_metrics": metrics_last,
        "eval": {split: dataclasses.asdict(r) for split, r in reports.items()},
        "shots": {split: shot_summary(r) for split, r in reports.items()},
    }


def _write_metrics(run_dir: Path, metrics: dict[str, np.ndarray]) -> None:
    count = len(next(iter(metrics.values())))
    with (run_dir / "metrics.jsonl").open("w") as f:
        for i in range(count):
            row = {"update": i + 1} | {k: float(v[i]) for k, v in metrics.items()}
            f.write(json.dumps(row) + "\n")


def _run_point(spec: SweepSpec, point: dict, out: Path) -> dict:
    """One grid point through the `metajax train` path: build, train, evaluate."""
    from metajax.train import throughput, train

    options = spec.base | point
    run, train_config, learner_options = split_options(spec.learner, options)
    run_dir = out / point_name(point)
    resume = CheckpointStore(run_dir, 1).latest_step() is not None if run_dir.exists() else False
    train_config = dataclasses.replace(train_config, run_dir=str(run_dir), resume=resume)
    learner, env, tasks, learner_config = _build(spec.learner, run, learner_options)
    metadata = _metadata(spec.learner, run, train_config, learner_config)
    tic = time.perf_counter()
    state, history = train(learner, train_config, learner_config.num_tasks, metadata)
    wall = time.perf_counter() - tic
    reports = _evaluate(learner, state, env, tasks, run, run_dir)
    last = {k: v for k, v in (history[-1] if history else {}).items()}
    steps = train_config.num_updates * learner.env_steps_per_update
    rate = throughput(history) if history else float("nan")
    return _result(point, options, "train", learner, reports, last, steps, rate, wall)


def _run_seed_group(spec: SweepSpec, points: list[dict], out: Path) -> list[dict]:
    """Points that differ only by seed, trained together with ``train_seeds`` on one device."""
    options = spec.base | points[0]
    run, train_config, learner_options = split_options(spec.learner, options)
    learner, env, tasks, learner_config = _build(spec.learner, run, learner_options)
    seeds = [int(p.get("seed", train_config.seed)) for p in points]
    tic = time.perf_counter()
    seed_run = train_seeds(
        learner,
        seeds,
        train_config.num_updates,
        updates_per_chunk=train_config.updates_per_chunk,
    )
    wall = time.perf_counter() - tic
    timed = seed_run.chunk_seconds[1:] or seed_run.chunk_seconds
    first_chunk = min(train_config.updates_per_chunk, train_config.num_updates)
    timed_updates = train_config.num_updates - (
        first_chunk if len(seed_run.chunk_seconds) > 1 else 0
    )
    rate = len(seeds) * timed_updates * learner.env_steps_per_update / sum(timed)
    results = []
    for index, point in enumerate(points):
        run_dir = out / point_name(point)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # an unfinished earlier try
        run_dir.mkdir(parents=True, exist_ok=True)
        config = dataclasses.replace(train_config, run_dir=str(run_dir), seed=seeds[index])
        metadata = _metadata(spec.learner, run, config, learner_config)
        (run_dir / "run.json").write_text(json.dumps(metadata, indent=2, default=str))
        metrics = {k: v[index] for k, v in seed_run.metrics.items()}
        _write_metrics(run_dir, metrics)
        state = seed_state(seed_run, index)
        store = CheckpointStore(run_dir, 1)
        store.save(train_config.num_updates, state)
        store.close()
        reports = _evaluate(learner, state, env, tasks, run, run_dir)
        last = {k: float(v[-1]) for k, v in metrics.items()}
        steps = train_config.num_updates * learner.env_steps_per_update
        mode = f"vmapped seeds {seeds} (env_steps_per_s and wall_s: all seeds together)"
        results.append(
            _result(point, spec.base | point, mode, learner, reports, last, steps, rate, wall)
        )
    return results


def _cell(shots: dict | None, name: str) -> str:
    if not shots or shots.get(name) is None:
        return "n/a"
    cell = shots[name]
    text = f"{cell['mean']:.3f} ± {cell['ci95']:.3f}"
    return text + (f" [{cell['normalized']:.2f}]" if cell["normalized"] is not None else "")


def summary_markdown(spec: SweepSpec, results: list[dict], meta: dict) -> str:
    """The sweep's summary: one row per run, then mean ± std over seeds per config."""
    keys = list(spec.grid)
    device = meta["device"]
    lines = [
        f"# Sweep `{spec.name}`: {spec.learner}",
        "",
        f"- command: `{meta['command']}`",
        f"- device: {device['device_kind']} ({device['platform']}) x {device['num_devices']}, "
        f"CPU {device['cpu_model']} x {device['cpu_count']}",
        f"- jax {meta['jax_version']}, {meta['date']}",
        f"- base: `{json.dumps(spec.base)}`",
        "",
        "Cells: in-distribution return mean ± 95% CI over held-out tasks [normalized: random 0,"
        " oracle 1]; a shot is one adaptation unit of experience on the task; total: the sum"
        " over all units (an RL² trial's return).",
        "",
        "| "
        + " | ".join(keys + ["0-shot", "1-shot", "few-shot", "OOD few-shot", "total"])
        + " | env steps | env-steps/s | wall s |",
        "|" + "---|" * (len(keys) + 8),
    ]
    for r in results:
        shots = r["shots"]
        row = [str(r["point"].get(k)) for k in keys]
        row += [_cell(shots.get("in_distribution"), n) for n in ("0-shot", "1-shot", "few-shot")]
        row.append(_cell(shots.get("out_of_distribution"), "few-shot"))
        report = r["eval"].get("in_distribution")
        row.append(f"{report['total_mean']:.3f} ± {report['total_ci95']:.3f}" if report else "n/a")
        row += [f"{r['env_steps']:.3g}", f"{r['env_steps_per_s']:.3g}", f"{r['wall_s']:.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    if "seed" in keys and len(spec.grid["seed"]) > 1:
        others = [k for k in keys if k != "seed"]
        groups: dict[tuple, list[dict]] = {}
        for r in results:
            groups.setdefault(tuple(r["point"].get(k) for k in others), []).append(r)
        lines += [
            "",
            "Over seeds (mean ± std of the per-seed means):",
            "",
            "| "
            + " | ".join(others + ["seeds", "0-shot", "few-shot", "few-shot normalized", "total"])
            + " |",
            "|" + "---|" * (len(others) + 5),
        ]
        for group, members in groups.items():
            row = [str(v) for v in group] + [str(len(members))]
            for name, field in (
                ("0-shot", "mean"),
                ("few-shot", "mean"),
                ("few-shot", "normalized"),
            ):
                values = [
                    m["shots"]["in_distribution"][name][field]
                    for m in members
                    if m["shots"].get("in_distribution")
                    and m["shots"]["in_distribution"][name] is not None
                    and m["shots"]["in_distribution"][name][field] is not None
                ]
                spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
                row.append(f"{np.mean(values):.3f} ± {spread:.3f}" if values else "n/a")
            totals = [m["eval"]["in_distribution"]["total_mean"] for m in members if m["eval"]]
            spread = np.std(totals, ddof=1) if len(totals) > 1 else 0.0
            row.append(f"{np.mean(totals):.3f} ± {spread:.3f}" if totals else "n/a")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


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
        _build(spec.learner, run, learner_options)
    plan: list[list[dict]] = []
    if spec.vmap_seeds and "seed" in spec.grid:
        groups: dict[str, list[dict]] = {}
        for point in points:
            rest = {k: v for k, v in point.items() if k != "seed"}
            groups.setdefault(json.dumps(rest, sort_keys=True), []).append(point)
        plan = list(groups.values())
    else:
        plan = [[point] for point in points]
    print(f"sweep {spec.name}: {len(points)} runs of {spec.learner} in {len(plan)} jobs -> {out}")
    if dry_run:
        for job in plan:
            print("  " + ", ".join(point_name(p) for p in job))
        return []
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    for job in plan:
        done = [out / point_name(p) / "result.json" for p in job]
        if all(f.exists() for f in done):
            print(f"  {', '.join(point_name(p) for p in job)}: done earlier, skipped")
            results += [json.loads(f.read_text()) for f in done]
            continue
        print(f"  running {', '.join(point_name(p) for p in job)}", flush=True)
        if len(job) > 1 or (spec.vmap_seeds and "seed" in spec.grid):
            job_results = _run_seed_group(spec, job, out)
        else:
            job_results = [_run_point(spec, job[0], out)]
        for point, result in zip(job, job_results, strict=True):
            (out / point_name(point) / "result.json").write_text(json.dumps(result, indent=2))
        results += job_results
    meta = {
        "command": command or " ".join(["metajax", "sweep", str(path)]),
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
    return results
