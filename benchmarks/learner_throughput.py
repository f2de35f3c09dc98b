"""End-to-end training throughput of every registered learner versus task count and devices.

For each learner, task count (1, 4, 16, ... up to ``--max-tasks``) and device count
(``--devices``), the trainer's own jitted chunk (``metajax.train.make_chunk``: ``--updates``
calls of the learner's ``train_step`` in one ``lax.scan``, sharded over a task mesh of that
many devices) is compiled with ``.lower().compile()`` (compile time reported apart) and timed
(best of ``--repeats`` runs after one warm-up). env-steps/s = updates x the learner's
``env_steps_per_update`` / seconds: collection and learning together. A learner that fails at
a size (out of memory, a size its config rejects) gets the error in its row and is not tried
at larger sizes.

``--config FILE.toml`` adds a named configuration in the sweep-file format (``learner`` and a
``[base]`` table of ``metajax train`` options, e.g. ``benchmarks/configs/rl2_xland_r4_13x13.toml``)
measured at its own task count; it is skipped with a message when its env is not registered.

    python -m benchmarks.learner_throughput --max-tasks 64 --learners rl2 maml pearl   # CPU
    python -m benchmarks.learner_throughput --max-tasks 65536                          # GPU
    python -m benchmarks.learner_throughput --learners --config \\
        benchmarks/configs/rl2_xland_r4_13x13.toml                                     # XLand

Results: ``benchmarks/results/learner_throughput_<device>[_<tag>].{json,md,png}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import metajax.envs as envs
from benchmarks.common import RESULTS, device_slug, metadata_markdown, run_metadata, write_results
from metajax import distributed, learners
from metajax.errors import ConfigError
from metajax.learners.base import Learner
from metajax.runs import RunArgs, build, load_toml, split_options
from metajax.train import INIT_STREAM, TRAIN_STREAM, make_chunk, place, to_host

ENV = "nav2d"  # MAML's 2D navigation: every learner here can train on it
# small, paper-shaped networks; the task count is set per row
PRESETS: dict[str, dict] = {
    "rl2": dict(episodes_per_trial=2, core_size=128, hidden_sizes=(128,), update_epochs=2),
    "maml": dict(num_trajectories=10, hidden_sizes=(100, 100)),
    "promp": dict(num_trajectories=10, hidden_sizes=(100, 100)),
    "emaml": dict(num_trajectories=10, hidden_sizes=(100, 100)),
    "pearl": dict(batch_size=64, context_batch_size=64, gradient_steps=20, initial_steps=100,
                  prior_steps=100, posterior_steps=100, rl_capacity=2000),
    "sac": dict(batch_size=256, warmup_steps=100, buffer_capacity=2000),
}  # fmt: skip


def options_for(name: str, num_tasks: int, devices: int = 1) -> dict:
    """The preset of learner ``name`` at ``num_tasks`` tasks on ``devices`` devices (sizes that
    must divide adapted)."""
    options = dict(PRESETS.get(name, {}), num_tasks=num_tasks)
    if name == "rl2":  # each device splits its own share of the tasks into minibatches
        options["num_minibatches"] = max(1, min(4, num_tasks // devices))
    if name == "pearl":  # collect on as many tasks as train; the pool holds them all
        options.update(collect_tasks=num_tasks, pool_size=max(100, num_tasks))
    if name == "sac":
        options["batch_size"] = max(options["batch_size"] // num_tasks, 1) * num_tasks
    return options


def measure(learner: Learner, num_devices: int, updates: int, repeats: int) -> dict:
    """Compile time and steady env-steps/s of ``updates`` updates on ``num_devices`` devices."""
    mesh = distributed.make_task_mesh(num_devices)
    key = jax.random.key(0)
    host_state = to_host(jax.jit(learner.init)(jax.random.fold_in(key, INIT_STREAM)))
    specs = None
    if learner.state_partition is not None and num_devices > 1:
        specs = learner.state_partition(host_state, distributed.TASK_AXIS)
    state = place(host_state, mesh, specs)
    train_key = jax.random.fold_in(key, TRAIN_STREAM)
    chunk = make_chunk(learner, mesh, updates)
    tic = time.perf_counter()
    compiled = chunk.lower(state, train_key, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - tic
    state, metrics = compiled(state, train_key, jnp.int32(0))  # warm-up
    jax.block_until_ready(metrics)
    best = float("inf")
    for repeat in range(repeats):
        tic = time.perf_counter()
        state, metrics = compiled(state, train_key, jnp.int32((repeat + 1) * updates))
        jax.block_until_ready((state, metrics))
        best = min(best, time.perf_counter() - tic)
    env_steps = updates * learner.env_steps_per_update
    return {
        "compile_s": compile_s,
        "run_s": best,
        "env_steps": env_steps,
        "env_steps_per_s": env_steps / best,
        "updates_per_s": updates / best,
    }


def task_counts(max_tasks: int, min_tasks: int = 1) -> list[int]:
    """1, 4, 16, ... up to ``max_tasks`` (and ``max_tasks`` itself if not a power of 4)."""
    counts, count = [], 1
    while count <= max_tasks:
        if count >= min_tasks:
            counts.append(count)
        count *= 4
    if counts and counts[-1] != max_tasks and max_tasks >= min_tasks:
        counts.append(max_tasks)
    return counts


def run_scaling(name: str, args, rows: list[dict]) -> None:
    """Rows for learner ``name`` over task and device counts; stops growing at a failure."""
    for devices in args.devices:
        for count in task_counts(args.max_tasks, args.min_tasks):
            row = {"learner": name, "env": args.env, "tasks": count, "devices": devices}
            if count % devices:
                continue
            try:
                run = RunArgs(env=args.env, env_options=tuple(args.env_options))
                learner, _, _, _ = build(name, run, options_for(name, count, devices))
                row.update(measure(learner, devices, args.updates, args.repeats))
            except (ConfigError, RuntimeError, ValueError, TypeError, MemoryError) as error:
                row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            rows.append(row)
            print(_row_text(row), flush=True)
            if "error" in row:
                break


def run_config_file(path: Path, args, rows: list[dict]) -> None:
    """One row for a sweep-format TOML config (skipped when its env is not registered)."""
    spec = load_toml(path)
    learner_name = spec["learner"]
    run, _, learner_options = split_options(learner_name, spec.get("base", {}))
    row = {"learner": learner_name, "config": str(path), "env": run.env}
    row["tasks"] = learner_options.get("num_tasks")
    row["devices"] = jax.device_count()
    if run.env not in envs.names():
        row["skipped"] = f"env '{run.env}' is not registered (install metajax[xminigrid])"
    elif learner_name not in learners.names():
        row["skipped"] = f"learner '{learner_name}' is not registered"
    else:
        try:
            learner, _, _, _ = build(learner_name, run, learner_options)
            row.update(measure(learner, jax.device_count(), args.updates, args.repeats))
        except (ConfigError, RuntimeError, ValueError, MemoryError) as error:
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    rows.append(row)
    print(_row_text(row), flush=True)


def _row_text(row: dict) -> str:
    head = f"{row['learner']:>6} {row.get('tasks')!s:>6} tasks x {row['devices']} device(s): "
    if "skipped" in row:
        return head + "skipped, " + row["skipped"]
    if "error" in row:
        return head + row["error"]
    return head + f"{row['env_steps_per_s']:.3g} env-steps/s (compile {row['compile_s']:.1f} s)"


def markdown(payload: dict) -> str:
    """The rows as a markdown table."""
    lines = [
        "# Learner throughput: end-to-end training env-steps/s",
        "",
        metadata_markdown(payload["meta"]),
        f"- scaling rows on env `{payload['env']}` (config rows: their own env and options); "
        f"{payload['updates']} updates per timed chunk, best of {payload['repeats']}; compile "
        "time (`.lower().compile()`) apart",
        "",
        "| learner | env | tasks | devices | env-steps/s | updates/s | env steps/update "
        "| compile s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in payload["rows"]:
        name = row["learner"] + (f" ({Path(row['config']).stem})" if "config" in row else "")
        head = f"| {name} | {row['env']} | {row.get('tasks')} | {row['devices']} |"
        if "skipped" in row or "error" in row:
            lines.append(head + f" {row.get('skipped') or row.get('error')} ||||")
            continue
        per_update = row["env_steps"] / payload["updates"]
        lines.append(
            head + f" {row['env_steps_per_s']:.3g} | {row['updates_per_s']:.3g} "
            f"| {per_update:.0f} | {row['compile_s']:.1f} |"
        )
    if any("config" not in row for row in payload["rows"]):
        lines += [
            "",
            "Presets of the scaling rows (learner options besides num_tasks): "
            + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()),
        ]
    return "\n".join(lines) + "\n"


def plot(payload: dict, path: Path) -> None:
    """Log-log PNG of env-steps/s against the task count, one line per learner and devices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[list, list]] = {}
    for row in payload["rows"]:
        if "env_steps_per_s" not in row or "config" in row:
            continue
        label = f"{row['learner']} ({row['devices']} dev)"
        series.setdefault(label, ([], []))
        series[label][0].append(row["tasks"])
        series[label][1].append(row["env_steps_per_s"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (x, y) in series.items():
        ax.plot(x, y, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("tasks per update")
    ax.set_ylabel("training env-steps/s")
    ax.set_title(f"end-to-end training throughput, {payload['meta']['device']}", fontsize=9)
    if series:
        ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Measures, writes JSON, Markdown and PNG results; returns the payload."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learners", nargs="*", help="default: every registered learner")
    parser.add_argument("--env", default=ENV)
    parser.add_argument("--env-options", nargs="*", default=[])
    parser.add_argument("--max-tasks", type=int, default=65536)
    parser.add_argument("--min-tasks", type=int, default=1)
    parser.add_argument("--devices", type=int, nargs="+", help="device counts (default: all)")
    parser.add_argument("--updates", type=int, default=2, help="updates per timed chunk")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--config", type=Path, nargs="*", default=[], help="sweep-format TOMLs")
    parser.add_argument("--tag", default="", help="suffix of the results files")
    args = parser.parse_args(argv)
    args.devices = args.devices or [jax.device_count()]
    if min(args.max_tasks, args.min_tasks, args.updates, args.repeats, *args.devices) < 1:
        parser.error("sizes must be positive")
    if max(args.devices) > jax.device_count():
        parser.error(f"--devices: only {jax.device_count()} device(s) available")
    names = learners.names() if args.learners is None else args.learners
    payload = {
        "meta": run_metadata(),
        "env": args.env,
        "updates": args.updates,
        "repeats": args.repeats,
        "presets": PRESETS,
        "rows": [],
    }
    stem = f"learner_throughput_{device_slug()}" + (f"_{args.tag}" if args.tag else "")
    png_path = RESULTS / f"{stem}.png"

    def save() -> None:  # after every learner, so a run cut short keeps what it measured
        write_results(stem, payload, markdown(payload))
        plot(payload, png_path)

    for name in names:
        if name not in learners.names():
            print(f"{name}: skipped, not registered", flush=True)
            payload["rows"].append(
                {"learner": name, "env": args.env, "devices": 0, "skipped": "not registered"}
            )
            continue
        run_scaling(name, args, payload["rows"])
        save()
    for path in args.config:
        run_config_file(path, args, payload["rows"])
    save()
    print(f"results written to {RESULTS / stem}.json, .md and .png")
    return payload


if __name__ == "__main__":
    main()
