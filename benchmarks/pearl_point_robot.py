"""PEARL on the sparse point robot and 2D navigation: Performance(K) and throughput.

Each run reads a TOML config (``benchmarks/configs/pearl_*.toml``: ``[env]``, ``[learner]``
with ``metajax.learners.pearl.Config`` fields, ``[run]``), trains ``iterations`` PEARL
iterations in jitted chunks, then evaluates on the env's held-out tasks: the return of episode
K = 1, 2, 3 (K = 1 acts on z from the prior, K > 1 on the posterior of episodes 1..K-1) next
to a random policy and the task-knowing oracle (``env.oracle_episode_return``).

Throughput is measured after compilation: gradient steps/s and env steps/s of whole PEARL
iterations (collection and training together), plus the init (initial collection) and
compile times apart.

With ``--eval-every N`` the held-out evaluation also runs every N iterations: the learning
curve (return of episode K = 1, 2, 3 against env steps, the paper's plots) lands in the
results next to the final figures, and the files are rewritten after each point, so a run
stopped by ``--time-budget`` or a lease keeps its curve so far.

    python -m benchmarks.pearl_point_robot                       # both CPU configs
    python -m benchmarks.pearl_point_robot --iterations 20       # shorter
    python -m benchmarks.pearl_point_robot --configs benchmarks/configs/pearl_cheetah_vel.toml
    python -m benchmarks.pearl_point_robot --configs benchmarks/configs/pearl_cheetah_vel.toml \
        --eval-every 10 --time-budget 480                       # GPU: return vs env steps

Results go to ``benchmarks/results/pearl_<config stem>_<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from benchmarks.common import device_slug, metadata_markdown, run_metadata, write_results
from metajax import runs
from metajax.envs.core import tagged_key
from metajax.errors import ConfigError
from metajax.evaluate import evaluate_learner
from metajax.learners import pearl

CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIGS = [
    CONFIGS / "pearl_point_robot_sparse_cpu.toml",
    CONFIGS / "pearl_nav2d_cpu.toml",
]


def load_config(path: Path) -> tuple[str, dict, pearl.Config, dict]:
    """``(env name, env options, PEARL config, run options)`` from a TOML file."""
    spec = runs.load_toml(path)
    learner = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["learner"].items()}
    env = spec["env"]
    return env["name"], env.get("options", {}), pearl.Config(**learner), spec.get("run", {})


def run_one(
    path: Path,
    iterations: int | None,
    chunk: int | None,
    eval_every: int = 0,
    time_budget: float | None = None,
    on_progress: Callable[[dict], None] | None = None,
) -> dict:
    """Trains and evaluates one config; returns its figures.

    ``eval_every``: also evaluate every that many iterations (0: only at the end), each point
    passed to ``on_progress`` with the figures so far. ``time_budget``: stop training after that
    many seconds of it (compile and evaluation not counted), then evaluate.
    """
    env_name, env_options, config, run = load_config(path)
    iterations = iterations or run.get("iterations", 100)
    chunk = min(chunk or run.get("chunk", 10), iterations)
    seed = run.get("seed", 0)
    run_args = runs.RunArgs(env=env_name, env_options=runs.env_option_strings(env_options))
    learner, env, tasks, _ = runs.build("pearl", run_args, dataclasses.asdict(config))

    start = time.perf_counter()
    state = jax.block_until_ready(
        jax.jit(learner.init)(tagged_key("benchmarks/pearl_point_robot/init", seed))
    )
    init_seconds = time.perf_counter() - start

    def train_chunk(state, key):
        return jax.lax.scan(learner.train_step, state, jax.random.split(key, chunk))

    compiled_start = time.perf_counter()
    step = jax.jit(train_chunk).lower(state, jax.random.key(0)).compile()
    compile_seconds = time.perf_counter() - compiled_start

    test = tasks.test_tasks()
    pool = tasks_in_pool(learner, state)
    history, curve, seconds, done = [], [], 0.0, 0

    def env_steps(iterations_done: int) -> int:
        return iterations_done * learner.env_steps_per_update + pool * config.initial_steps

    def evaluate(key: jax.Array):
        return evaluate_learner(learner, state, env, test, key, env_name)

    def add_curve_point(report) -> None:
        curve.append(
            {
                "iteration": done,
                "env_steps": env_steps(done),
                "gradient_steps": done * config.gradient_steps,
                "train_seconds": seconds,
                **{f"K={k}": m for k, m in zip(report.steps, report.mean, strict=True)},
            }
        )

    def figures(report) -> dict:
        """The figures so far; ``report`` None for an intermediate point (no final evaluation)."""
        out = {
            "config": display_path(path),
            "env": env_name,
            "env_options": env_options,
            "learner_config": {k: getattr(config, k) for k in config.__dataclass_fields__},
            "iterations": done,
            "gradient_steps": done * config.gradient_steps,
            "env_steps": env_steps(done),
            "init_seconds": init_seconds,
            "compile_seconds": compile_seconds,
            "train_seconds": seconds,
            "gradient_steps_per_s": done * config.gradient_steps / max(seconds, 1e-9),
            "env_steps_per_s": done * learner.env_steps_per_update / max(seconds, 1e-9),
            "stopped_by_time_budget": done < iterations,
            "performance": {},
            "normalized": None,
            "random": None,
            "oracle": None,
            "history": history,
            "curve": curve,
        }
        if report is not None:
            out["performance"] = {
                f"K={k}": {"mean": m, "ci95": c}
                for k, m, c in zip(report.steps, report.mean, report.ci95, strict=True)
            }
            out |= {"normalized": report.normalized, "random": report.random}
            out |= {"oracle": report.oracle, "num_test_tasks": report.num_tasks}
        return out

    curve_key = tagged_key("benchmarks/pearl_point_robot/curve", seed)
    train_key = tagged_key("benchmarks/pearl_point_robot/train", seed)
    if eval_every:
        add_curve_point(evaluate(jax.random.fold_in(curve_key, 0)))
    while done < iterations and (time_budget is None or seconds < time_budget):
        tic = time.perf_counter()
        state, metrics = step(state, jax.random.fold_in(train_key, done))
        metrics = jax.device_get(metrics)
        seconds += time.perf_counter() - tic
        done += chunk
        row = {k: float(np.mean(v)) for k, v in metrics.items()}
        history.append({"iteration": done, **row})
        print(
            f"{path.stem}: iteration {done}/{iterations}, "
            f"prior return {row['prior_return']:.2f}, posterior return "
            f"{row['posterior_return']:.2f}, {seconds:.0f} s",
            flush=True,
        )
        if eval_every and done // eval_every > (done - chunk) // eval_every and done < iterations:
            add_curve_point(evaluate(jax.random.fold_in(curve_key, done)))
            returns = ", ".join(f"{k} {v:.2f}" for k, v in curve[-1].items() if k[:2] == "K=")
            print(f"{path.stem}: held-out after {env_steps(done)} env steps: {returns}", flush=True)
            if on_progress is not None:
                on_progress(figures(None))

    report = evaluate(tagged_key("benchmarks/pearl_point_robot/eval", seed))
    if eval_every:
        add_curve_point(report)
    return figures(report)


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it, else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def tasks_in_pool(learner, state) -> int:
    """Size of the training pool (the buffers' task axis)."""
    return int(state.rl_buffer.size.shape[0])


def markdown(results: list[dict], meta: dict) -> str:
    """The results as a markdown page."""
    title = "# PEARL: Performance(K) on held-out tasks and throughput"
    lines = [title, "", metadata_markdown(meta)]
    lines += [
        "Episode K = 1 acts with z from the prior; K > 1 with z from the posterior of the",
        "previous episodes of the same task (deterministic actions). Mean over the held-out",
        "tasks ± 95% interval; last K: the config's last evaluated episode when it runs more",
        "than 3; normalized = (return - random) / (oracle - random).",
        "",
        "| config | iterations | grad steps | env steps | K=1 | K=2 | K=3 | last K | oracle "
        "| random | normalized K=1 / last K | grad steps/s | env steps/s | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        perf = [r["performance"][f"K={k}"] for k in (1, 2, 3) if f"K={k}" in r["performance"]]
        cells = [f"{p['mean']:.2f} ± {p['ci95']:.2f}" for p in perf] + [""] * (3 - len(perf))
        episodes = len(r["performance"])
        last = r["performance"].get(f"K={episodes}") if episodes > 3 else None
        cells.append(
            "" if last is None else f"K={episodes}: {last['mean']:.2f} ± {last['ci95']:.2f}"
        )
        norm = r["normalized"]
        norm_text = "n/a" if norm is None else f"{norm[0]:.2f} / {norm[-1]:.2f}"
        oracle = "n/a" if r["oracle"] is None else f"{r['oracle']:.2f}"
        random = "n/a" if r["random"] is None else f"{r['random']:.2f}"
        lines.append(
            f"| {Path(r['config']).stem} ({r['env']}) | {r['iterations']} | {r['gradient_steps']} "
            f"| {r['env_steps']} | {' | '.join(cells)} | {oracle} | {random} "
            f"| {norm_text} | {r['gradient_steps_per_s']:.1f} | {r['env_steps_per_s']:.0f} "
            f"| {r['compile_seconds']:.0f} |"
        )
    for r in results:
        if len(r.get("curve", [])) < 2:
            continue
        state = "in progress" if not r["performance"] else "final"
        if r.get("stopped_by_time_budget"):
            state += ", stopped by the time budget"
        lines += [
            "",
            f"Learning curve of {Path(r['config']).stem} ({state}): mean held-out return of "
            "episode K against env steps (initial collection included)",
            "",
            "| iteration | env steps | grad steps | train s | K=1 | K=2 | K=3 | last K |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in r["curve"]:
            episodes = sum(key.startswith("K=") for key in p)
            shown = (1, 2, 3, episodes) if episodes > 3 else (1, 2, 3, 0)
            ks = [f"{p[f'K={k}']:.2f}" if f"K={k}" in p else "" for k in shown]
            lines.append(
                f"| {p['iteration']} | {p['env_steps']} | {p['gradient_steps']} "
                f"| {p['train_seconds']:.0f} | {' | '.join(ks)} |"
            )
    lines += ["", "Configs:", ""]
    for r in results:
        c = r["learner_config"]
        steps = f"{c['prior_steps']} prior"
        if c.get("posterior_context_steps"):
            steps += f" + {c['posterior_context_steps']} posterior (RL and context buffers)"
        steps += f" + {c['posterior_steps']} posterior (RL buffer)"
        reward = "SAC on the dense reward, " if c.get("rl_reward") == "dense" else ""
        lines.append(
            f"- `{r['config']}`: {reward}meta-batch {c['num_tasks']}, batch {c['batch_size']}, "
            f"context {c['context_batch_size']}, KL weight {c['kl_weight']}, nets "
            f"{c['hidden_sizes']} / encoder {c['encoder_hidden_sizes']}, "
            f"{c['gradient_steps']} grad steps and {c['collect_tasks']} x ({steps}) env steps "
            f"per iteration, init {c['initial_steps']} steps per pool task; "
            f"init {r['init_seconds']:.0f} s, training {r['train_seconds']:.0f} s"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    """Runs the configs and writes the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", type=Path, default=DEFAULT_CONFIGS)
    parser.add_argument("--iterations", type=int, default=None, help="override [run] iterations")
    parser.add_argument("--chunk", type=int, default=None, help="iterations per jitted call")
    parser.add_argument("--stem", default=None, help="results file stem")
    parser.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="also evaluate on the held-out tasks every N iterations (a learning curve; "
        "0: only at the end)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="stop each config's training after this many seconds of it, then evaluate",
    )
    args = parser.parse_args(argv)
    if args.eval_every < 0 or (args.time_budget is not None and args.time_budget <= 0):
        parser.error("--eval-every must be >= 0 and --time-budget > 0")
    if args.stem:
        stem = args.stem
    elif len(args.configs) == 1:
        stem = f"{args.configs[0].stem}_{device_slug()}"
    else:
        stem = f"pearl_point_robot_{device_slug()}"
    meta = run_metadata()
    results: list[dict] = []

    def save(partial: dict | None = None) -> tuple[Path, Path]:
        rows = results + ([partial] if partial is not None else [])
        return write_results(stem, {"metadata": meta, "results": rows}, markdown(rows, meta))

    try:
        for path in args.configs:
            results.append(
                run_one(path, args.iterations, args.chunk, args.eval_every, args.time_budget, save)
            )
    except ConfigError as error:  # one line, not a traceback from deep inside the learner
        raise SystemExit(f"error: {error}") from None
    json_path, md_path = save()
    print(markdown(results, meta))
    print(f"wrote {json_path} and {md_path}")
    return results


if __name__ == "__main__":
    main()
