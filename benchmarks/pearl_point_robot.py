"""PEARL on the sparse point robot and 2D navigation: Performance(K) and throughput.

Each run reads a TOML config (``benchmarks/configs/pearl_*.toml``: ``[env]``, ``[learner]``
with ``metajax.learners.pearl.Config`` fields, ``[run]``), trains ``iterations`` PEARL
iterations in jitted chunks, then evaluates on the env's held-out tasks: the return of episode
K = 1, 2, 3 (K = 1 acts on z from the prior, K > 1 on the posterior of episodes 1..K-1) next
to a random policy and the task-knowing oracle (``env.oracle_episode_return``).

Throughput is measured after compilation: gradient steps/s and env steps/s of whole PEARL
iterations (collection and training together), plus the init (initial collection) and
compile times apart.

    python -m benchmarks.pearl_point_robot                       # both CPU configs
    python -m benchmarks.pearl_point_robot --iterations 20       # shorter
    python -m benchmarks.pearl_point_robot --configs benchmarks/configs/pearl_cheetah_vel.toml

Results go to ``benchmarks/results/pearl_<config stem>_<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

import metajax.envs as envs
from benchmarks.common import device_slug, metadata_markdown, run_metadata, write_results
from metajax.errors import ConfigError
from metajax.evaluate import evaluate_learner
from metajax.learners import pearl

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIGS = [
    CONFIGS / "pearl_point_robot_sparse_cpu.toml",
    CONFIGS / "pearl_nav2d_cpu.toml",
]


def load_config(path: Path) -> tuple[str, dict, pearl.Config, dict]:
    """``(env name, env options, PEARL config, run options)`` from a TOML file."""
    spec = tomllib.loads(path.read_text())
    learner = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["learner"].items()}
    env = spec["env"]
    return env["name"], env.get("options", {}), pearl.Config(**learner), spec.get("run", {})


def run_one(path: Path, iterations: int | None, chunk: int | None) -> dict:
    """Trains and evaluates one config; returns its figures."""
    env_name, env_options, config, run = load_config(path)
    iterations = iterations or run.get("iterations", 100)
    chunk = min(chunk or run.get("chunk", 10), iterations)
    seed = run.get("seed", 0)
    env, tasks = envs.make(env_name, **env_options)
    learner = pearl.make_learner(config, env, tasks)

    start = time.perf_counter()
    state = jax.block_until_ready(jax.jit(learner.init)(jax.random.key(seed)))
    init_seconds = time.perf_counter() - start

    def train_chunk(state, key):
        return jax.lax.scan(learner.train_step, state, jax.random.split(key, chunk))

    compiled_start = time.perf_counter()
    step = jax.jit(train_chunk).lower(state, jax.random.key(0)).compile()
    compile_seconds = time.perf_counter() - compiled_start

    history, seconds, done = [], 0.0, 0
    while done < iterations:
        tic = time.perf_counter()
        state, metrics = step(state, jax.random.fold_in(jax.random.key(seed + 1), done))
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

    test = tasks.test_tasks()
    report = evaluate_learner(learner, state, env, test, jax.random.key(seed + 2), env_name)
    grad_steps = done * config.gradient_steps
    env_steps = done * learner.env_steps_per_update + tasks_in_pool(learner, state) * (
        config.initial_steps
    )
    return {
        "config": display_path(path),
        "env": env_name,
        "env_options": env_options,
        "learner_config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "iterations": done,
        "gradient_steps": grad_steps,
        "env_steps": env_steps,
        "init_seconds": init_seconds,
        "compile_seconds": compile_seconds,
        "train_seconds": seconds,
        "gradient_steps_per_s": grad_steps / seconds,
        "env_steps_per_s": done * learner.env_steps_per_update / seconds,
        "performance": {
            f"K={k}": {"mean": m, "ci95": c}
            for k, m, c in zip(report.steps, report.mean, report.ci95, strict=True)
        },
        "normalized": report.normalized,
        "random": report.random,
        "oracle": report.oracle,
        "num_test_tasks": report.num_tasks,
        "history": history,
    }


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
        "Episode K = 1 acts with z from the prior; K = 2, 3 with z from the posterior of the",
        "previous episodes of the same task (deterministic actions). Mean over the held-out",
        "tasks ± 95% interval; normalized = (return - random) / (oracle - random).",
        "",
        "| config | iterations | grad steps | env steps | K=1 | K=2 | K=3 | oracle | random "
        "| normalized K=1 / K=3 | grad steps/s | env steps/s | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        perf = [r["performance"][f"K={k}"] for k in (1, 2, 3) if f"K={k}" in r["performance"]]
        cells = [f"{p['mean']:.2f} ± {p['ci95']:.2f}" for p in perf] + [""] * (3 - len(perf))
        norm = r["normalized"]
        norm_text = "n/a" if norm is None else f"{norm[0]:.2f} / {norm[-1]:.2f}"
        oracle = "n/a" if r["oracle"] is None else f"{r['oracle']:.2f}"
        lines.append(
            f"| {Path(r['config']).stem} ({r['env']}) | {r['iterations']} | {r['gradient_steps']} "
            f"| {r['env_steps']} | {' | '.join(cells)} | {oracle} | {r['random']:.2f} "
            f"| {norm_text} | {r['gradient_steps_per_s']:.1f} | {r['env_steps_per_s']:.0f} "
            f"| {r['compile_seconds']:.0f} |"
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
    args = parser.parse_args(argv)
    meta = run_metadata()
    try:
        results = [run_one(path, args.iterations, args.chunk) for path in args.configs]
    except ConfigError as error:  # one line, not a traceback from deep inside the learner
        raise SystemExit(f"error: {error}") from None
    if args.stem:
        stem = args.stem
    elif len(args.configs) == 1:
        stem = f"{args.configs[0].stem}_{device_slug()}"
    else:
        stem = f"pearl_point_robot_{device_slug()}"
    payload = {"metadata": meta, "results": results}
    json_path, md_path = write_results(stem, payload, markdown(results, meta))
    print(markdown(results, meta))
    print(f"wrote {json_path} and {md_path}")
    return results


if __name__ == "__main__":
    main()
