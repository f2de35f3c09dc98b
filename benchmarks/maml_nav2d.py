"""MAML-TRPO on 2D navigation with the paper's settings (Finn et al. 2017, §5.3 / App. A.2).

20 tasks per meta-batch, 20 trajectories of H = 100 per inner step, one policy-gradient inner
step with alpha = 0.1, TRPO outer step (max KL 0.01, 10 CG iterations), policy MLP (100, 100)
ReLU, linear feature baseline. Test protocol: held-out tasks, 40 trajectories per step, up to
3 inner steps with alpha 0.1 then 0.05. Reports the return before adaptation and after 1 and 3
steps (before and after meta-training) next to the oracle (``env.oracle_episode_return``), and
the seconds per meta-iteration with the compile time apart. Results go to
``benchmarks/results/maml_nav2d_<device>.{json,md}`` (other configs: ``<config stem>_<device>``).

    python -m benchmarks.maml_nav2d --iterations 100
    python -m benchmarks.maml_nav2d --iterations 10 --stem timing  # results/timing_<device>.*
    python -m benchmarks.maml_nav2d --config benchmarks/configs/maml_cheetah_vel.toml  # GPU
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks.common import device_slug, metadata_markdown, run_metadata, write_results
from metajax import learners, runs
from metajax.envs.core import tagged_key

# the paper's 2D-navigation setting (the learner's defaults are these already)
NAV2D = {
    "env": {"name": "nav2d", "options": {}},
    "learner": {"name": "maml"},
    "run": {"iterations": 100, "seed": 0, "eval_tasks": 40, "log_every": 10},
}


def load_spec(path: Path | None) -> dict:
    """The benchmark spec: the built-in nav2d setting, or a TOML file's [env], [learner], [run]."""
    if path is None:
        return copy.deepcopy(NAV2D)
    spec = runs.load_toml(path)
    spec.setdefault("run", {})
    for key, value in NAV2D["run"].items():
        spec["run"].setdefault(key, value)
    spec["env"].setdefault("options", {})
    return spec


def learner_config(spec: dict):
    """``(learner name, its Config)`` from [learner]; an unknown option exits with one line."""
    options = dict(spec["learner"])
    name = options.pop("name", "maml")
    config_cls, _ = learners.get(name)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise SystemExit(f"unknown [learner] option(s) for {name}: {', '.join(unknown)}")
    config = config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
    return name, config


def build(spec: dict):
    """``(env, tasks, learner, config)`` from a spec."""
    name, _ = learner_config(spec)  # checks the [learner] options (one line on an unknown one)
    env_options = runs.env_option_strings(spec["env"]["options"])
    run = runs.RunArgs(env=spec["env"]["name"], env_options=env_options)
    options = {k: v for k, v in spec["learner"].items() if k != "name"}
    learner, env, tasks, config = runs.build(name, run, options)
    return env, tasks, learner, config


def summarize(returns: np.ndarray) -> dict:
    """Mean and 95% interval over tasks of the return after k = 0..K inner steps."""
    mean = returns.mean(0)
    half = 1.96 * returns.std(0, ddof=1) / np.sqrt(returns.shape[0])
    return {"mean": mean.tolist(), "ci95": half.tolist()}


def main(argv: list[str] | None = None) -> None:
    """Trains, evaluates, times and writes the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="TOML spec (default: nav2d)")
    parser.add_argument("--iterations", type=int, default=None, help="meta-iterations")
    parser.add_argument(
        "--time-budget", type=float, default=None, help="stop training after this many seconds"
    )
    parser.add_argument("--seed", type=int, default=None, help="override [run] seed")
    parser.add_argument(
        "--stem",
        default=None,
        help="results file stem (default: maml_nav2d or the config's stem, then _<device>); "
        "name another for short timing runs so the committed results stay",
    )
    args = parser.parse_args(argv)
    spec = load_spec(args.config)
    run = spec["run"]
    if args.seed is not None:
        run["seed"] = args.seed
    iterations = args.iterations or run["iterations"]
    env, tasks, learner, config = build(spec)
    key_init, key_train, key_eval = (
        tagged_key(f"benchmarks/maml_nav2d/{part}", run["seed"])
        for part in ("init", "train", "eval")
    )
    test_tasks = tasks.test_tasks(run["eval_tasks"])

    state = jax.jit(learner.init)(key_init)
    start = time.perf_counter()
    step = jax.jit(learner.train_step).lower(state, key_train).compile()
    compile_s = time.perf_counter() - start
    evaluate = jax.jit(learner.evaluate)
    before = np.asarray(evaluate(state, key_eval, test_tasks))  # [tasks, K + 1]

    history, seconds, cpu_seconds = [], [], []
    for i in range(iterations):
        if args.time_budget is not None and sum(seconds) > args.time_budget:
            iterations = i  # stopped early: report what ran
            break
        start, cpu_start = time.perf_counter(), time.process_time()
        state, metrics = step(state, jax.random.fold_in(key_train, i))
        state, metrics = jax.block_until_ready((state, jax.device_get(metrics)))
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
        history.append({k: float(v) for k, v in metrics.items()})
        if i % run["log_every"] == 0 or i == iterations - 1:
            print(
                f"iter {i:4d}  pre {history[-1]['pre_update_return']:8.2f}  "
                f"post {history[-1]['post_update_return']:8.2f}  kl {history[-1]['kl']:.4f}  "
                f"{seconds[-1]:.2f}s",
                flush=True,
            )
    after = np.asarray(evaluate(state, key_eval, test_tasks))
    oracle = env.oracle_episode_return(test_tasks)
    oracle = None if oracle is None else float(np.mean(np.asarray(oracle)))
    timed = slice(1, None) if len(seconds) > 1 else slice(None)  # the first runs cold
    per_iter = float(np.median(seconds[timed]))
    cpu_per_iter = float(np.median(cpu_seconds[timed]))
    payload = {
        **run_metadata(),
        "env": spec["env"],
        "learner": learner.name,
        "config": dataclasses.asdict(config),
        "iterations": iterations,
        "compile_s": compile_s,
        "seconds_per_iteration_median": per_iter,
        "seconds_per_iteration_mean": float(np.mean(seconds)),
        "seconds_per_iteration_min": float(np.min(seconds[timed])),
        # process CPU time (all threads) per iteration: the work, less sensitive to other load
        "cpu_seconds_per_iteration_median": cpu_per_iter,
        "env_steps_per_iteration": learner.env_steps_per_update,
        "env_steps_per_second": learner.env_steps_per_update / per_iter,
        "load_average_1min_at_end": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "eval_tasks": run["eval_tasks"],
        "returns_before_training": summarize(before),
        "returns_after_training": summarize(after),
        "oracle_return": oracle,
        "history": history,
    }
    k = after.shape[1] - 1
    rows = "\n".join(
        f"| {label} | "
        + " | ".join(f"{m:.2f} ± {h:.2f}" for m, h in zip(s["mean"], s["ci95"], strict=True))
        + " |"
        for label, s in [
            ("before meta-training", payload["returns_before_training"]),
            (f"after {iterations} meta-iterations", payload["returns_after_training"]),
        ]
    )
    header = " | ".join(f"{j} step{'s' if j != 1 else ''}" for j in range(k + 1))
    markdown = (
        f"# {learner.name} on {spec['env']['name']}\n\n{metadata_markdown(payload)}"
        f"- load average (1 min) at the end: {payload['load_average_1min_at_end']:.1f} on "
        f"{payload['cpu_count']} CPUs (a shared machine: timings include contention)\n\n"
        f"Mean return on {run['eval_tasks']} held-out tasks after k inner gradient steps "
        f"(95% interval over tasks); oracle (knows the goal): "
        f"{'n/a' if oracle is None else f'{oracle:.2f}'}\n\n"
        f"| policy | {header} |\n|---|{'---|' * (k + 1)}\n{rows}\n\n"
        f"Seconds per meta-iteration: {per_iter:.2f} (median of {iterations}, fastest "
        f"{payload['seconds_per_iteration_min']:.2f}, compile {compile_s:.1f} s apart; process "
        f"CPU time {cpu_per_iter:.2f} s per iteration); {learner.env_steps_per_update} env "
        f"steps per iteration, {payload['env_steps_per_second']:.0f} env steps/s.\n"
    )
    stem = args.stem or ("maml_nav2d" if args.config is None else args.config.stem)
    json_path, md_path = write_results(f"{stem}_{device_slug()}", payload, markdown)
    print(markdown)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
