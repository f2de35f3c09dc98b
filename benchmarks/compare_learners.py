"""RL², MAML, PEARL and VariBAD on one task distribution, same env-step budget, side by side.

Each registered learner among ``--learners`` is built with the size preset below (``--size``),
given ``num_updates = (budget - steps spent at init) // env_steps_per_update`` updates (at
least one), trained through ``metajax.train.train`` (the path of ``metajax train``) and
evaluated with ``evaluate_splits`` on the env's held-out tasks (and its out-of-distribution
split if it has one). Reported per learner: Performance(K) (return after each adaptation unit:
episode k for RL², PEARL and VariBAD, k inner gradient steps for MAML), its 0-/1-/few-shot
summary and normalized score (random 0, oracle 1), env steps used, training wall-clock
(first chunk, which includes compilation, apart) and env-steps/s. A learner that is not
registered is skipped with a message.

    python -m benchmarks.compare_learners --size quick            # tiny smoke run
    python -m benchmarks.compare_learners --size cpu               # ~minutes on 2 cores
    python -m benchmarks.compare_learners --size gpu --budget 5e7  # GPU suite

Results go to ``benchmarks/results/compare_learners_<device>[_<size>].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import jax

from benchmarks.common import device_slug, metadata_markdown, run_metadata, write_results
from metajax import learners
from metajax.evaluate import evaluate_splits, shot_summary, shots_markdown
from metajax.runs import RunArgs, build, parse_env_options
from metajax.train import EVAL_STREAM, TrainConfig, throughput, to_host, train

# 3 shots at most for every learner: 4 episodes (RL², PEARL) or 3 inner gradient steps (MAML)
PRESETS: dict[str, dict[str, dict]] = {
    "quick": {
        "rl2": dict(num_tasks=16, episodes_per_trial=4, core_size=16, hidden_sizes=(16,),
                    num_minibatches=2, update_epochs=1),
        "maml": dict(num_tasks=4, num_trajectories=4, hidden_sizes=(16, 16), eval_inner_steps=3,
                     eval_trajectories=4, eval_task_chunk=10, cg_iters=3, line_search_steps=5),
        "pearl": dict(num_tasks=4, hidden_sizes=(16, 16), encoder_hidden_sizes=(16,),
                      batch_size=16, context_batch_size=16, gradient_steps=5, collect_tasks=2,
                      initial_steps=40, prior_steps=20, posterior_steps=20, rl_capacity=2000,
                      eval_episodes=4),
        "varibad": dict(num_tasks=16, episodes_per_trial=4, encoder_hidden_size=16,
                        hidden_sizes=(16,), vae_buffer_trials=64, vae_batch_trials=8,
                        vae_updates=1, num_minibatches=2, update_epochs=1),
    },
    "cpu": {
        "rl2": dict(num_tasks=64, episodes_per_trial=4, core_size=64, hidden_sizes=(64,),
                    num_minibatches=4, update_epochs=4, learning_rate=1e-3, reward_scale=0.1),
        "maml": dict(num_tasks=10, num_trajectories=10, hidden_sizes=(64, 64), eval_inner_steps=3,
                     eval_trajectories=20, eval_task_chunk=25),
        "pearl": dict(num_tasks=8, hidden_sizes=(64, 64), encoder_hidden_sizes=(32, 32),
                      batch_size=64, context_batch_size=64, gradient_steps=100, collect_tasks=4,
                      initial_steps=200, prior_steps=100, posterior_steps=100,
                      rl_capacity=20000, eval_episodes=4),
        "varibad": dict(num_tasks=16, episodes_per_trial=4, encoder_hidden_size=64,
                        hidden_sizes=(64, 64), vae_buffer_trials=1024, vae_batch_trials=16,
                        vae_updates=3, num_minibatches=4, update_epochs=4, learning_rate=1e-3,
                        ent_coef=0.01, reward_scale=0.1),
    },
    "gpu": {
        "rl2": dict(num_tasks=2048, episodes_per_trial=4, core_size=256, hidden_sizes=(256,),
                    num_minibatches=8, update_epochs=4, learning_rate=3e-4),
        "maml": dict(num_tasks=40, num_trajectories=20, hidden_sizes=(100, 100),
                     eval_inner_steps=3, eval_trajectories=40, eval_task_chunk=100),
        "pearl": dict(num_tasks=16, hidden_sizes=(300, 300, 300),
                      encoder_hidden_sizes=(200, 200, 200), batch_size=256,
                      context_batch_size=100, gradient_steps=1000, collect_tasks=5,
                      initial_steps=400, prior_steps=400, posterior_steps=400,
                      rl_capacity=100000, eval_episodes=4),
        "varibad": dict(num_tasks=2048, episodes_per_trial=4, vae_buffer_trials=16384,
                        vae_batch_trials=64, vae_updates=3, num_minibatches=8,
                        update_epochs=2),
    },
}  # fmt: skip
DEFAULT_BUDGET = {"quick": 20_000, "cpu": 2_000_000, "gpu": 20_000_000}
DEFAULT_EVAL_TASKS = {"quick": 20, "cpu": 100, "gpu": 100}


def init_env_steps(name: str, config, tasks) -> int:
    """Env steps a learner spends before its first update (PEARL's initial collection)."""
    if name != "pearl":
        return 0
    pool = tasks.num_train_tasks if tasks.num_train_tasks is not None else config.pool_size
    return pool * config.initial_steps


def run_learner(name: str, run: RunArgs, options: dict, budget: int, chunks: int, seed: int):
    """Trains one learner within ``budget`` env steps and evaluates it; returns its figures."""
    learner, env, tasks, config = build(name, run, options)
    spent_at_init = init_env_steps(name, config, tasks)
    updates = max(1, (budget - spent_at_init) // learner.env_steps_per_update)
    per_chunk = max(1, -(-updates // chunks))
    with tempfile.TemporaryDirectory() as run_dir:
        train_config = TrainConfig(
            run_dir=run_dir,
            num_updates=updates,
            updates_per_chunk=per_chunk,
            checkpoint_every=10**9,
            seed=seed,
            progress=False,
            tensorboard=False,
        )
        tic = time.perf_counter()
        state, history = train(learner, train_config, config.num_tasks)
        train_s = time.perf_counter() - tic
    state = to_host(state)
    key = jax.random.fold_in(jax.random.key(seed), EVAL_STREAM)
    tic = time.perf_counter()
    reports = evaluate_splits(learner, state, env, tasks, run.eval_tasks, key, run.env)
    eval_s = time.perf_counter() - tic
    env_steps = spent_at_init + updates * learner.env_steps_per_update
    return {
        "learner": name,
        "config": dataclasses.asdict(config),
        "updates": updates,
        "env_steps": env_steps,
        "env_steps_at_init": spent_at_init,
        "train_wall_s": train_s,
        "first_chunk_s": history[0]["chunk_seconds"],
        "env_steps_per_s": throughput(history),
        "eval_wall_s": eval_s,
        "final_metrics": history[-1],
        "reports": {split: dataclasses.asdict(r) for split, r in reports.items()},
        "shots": {split: shot_summary(r) for split, r in reports.items()},
        "shots_markdown": shots_markdown(reports),
    }


def _fmt(value: float | None, digits: str = ".3f") -> str:
    return "n/a" if value is None else format(value, digits)


def markdown(payload: dict) -> str:
    """The results as markdown: a summary row per learner, then each Performance(K)."""
    lines = [
        "# RL², MAML, PEARL and VariBAD with the same env-step budget",
        "",
        metadata_markdown(payload["meta"]),
        f"- env `{payload['env']}` {payload['env_options'] or ''}; budget "
        f"{payload['budget']:.3g} env steps per learner; size preset `{payload['size']}`; "
        f"{payload['eval_tasks']} held-out tasks",
        "",
        "| learner | 0-shot | 1-shot | few-shot (shots) | few-shot normalized | env steps "
        "| updates | train s (first chunk) | env-steps/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in payload["learners"].items():
        if "skipped" in result:
            lines.append(f"| {name} | skipped: {result['skipped']} |||||||| ")
            continue
        shots = result["shots"]["in_distribution"]
        cells = []
        for shot in ("0-shot", "1-shot", "few-shot"):
            cell = shots[shot]
            cells.append("n/a" if cell is None else f"{cell['mean']:.2f} ± {cell['ci95']:.2f}")
        if shots["few-shot"] is not None:
            cells[-1] += f" ({shots['few-shot']['shots']})"
        few = shots["few-shot"]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {_fmt(few and few['normalized'], '.2f')} | {result['env_steps']:.3g} "
            f"| {result['updates']} | {result['train_wall_s']:.0f} "
            f"({result['first_chunk_s']:.0f}) | {result['env_steps_per_s']:.3g} |"
        )
    lines += [
        "",
        "Cells: return mean ± 95% CI over held-out tasks. A shot is one adaptation unit of "
        "experience on the task: episodes for RL², PEARL and VariBAD, inner gradient steps "
        "(each on fresh trajectories) for MAML. env steps include PEARL's initial collection; "
        "train s excludes evaluation.",
    ]
    for name, result in payload["learners"].items():
        trajectories = result.get("config", {}).get("eval_trajectories")
        if trajectories:
            lines.append(
                f"One {name} shot is an inner step on {trajectories} trajectories of the task "
                f"(RL² and PEARL shots are single episodes)."
            )
    for name, result in payload["learners"].items():
        if "skipped" in result:
            continue
        report = result["reports"]["in_distribution"]
        lines += [
            "",
            f"## {name}",
            "",
            result["shots_markdown"],
            "",
            f"Performance(K), in distribution ({report['unit']}s): "
            + ", ".join(
                f"{s}: {m:.3f}" for s, m in zip(report["steps"], report["mean"], strict=True)
            )
            + f"; random {report['random']:.3f}, oracle {_fmt(report['oracle'])}",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """Runs the comparison and writes the JSON and Markdown results; returns the payload."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--env", default="point-robot-dense")
    parser.add_argument("--env-options", nargs="*", default=["num_test_tasks=100"])
    parser.add_argument("--learners", nargs="+", default=["rl2", "maml", "pearl", "varibad"])
    parser.add_argument("--budget", type=float, help="env steps per learner (default: size's)")
    parser.add_argument("--eval-tasks", type=int, help="held-out tasks (default: size's)")
    parser.add_argument("--chunks", type=int, default=5, help="jitted chunks per training run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    budget = int(args.budget or DEFAULT_BUDGET[args.size])
    eval_tasks = args.eval_tasks or DEFAULT_EVAL_TASKS[args.size]
    if budget < 1 or eval_tasks < 2 or args.chunks < 1:
        parser.error("--budget and --chunks must be positive and --eval-tasks at least 2")
    run = RunArgs(env=args.env, env_options=tuple(args.env_options), eval_tasks=eval_tasks)
    parse_env_options(run.env_options)
    payload = {
        "meta": run_metadata(),
        "env": args.env,
        "env_options": list(args.env_options),
        "budget": budget,
        "size": args.size,
        "eval_tasks": eval_tasks,
        "learners": {},
    }
    known = set(learners.names())
    for name in args.learners:
        if name not in known:
            message = f"not registered (known: {', '.join(sorted(known))})"
            print(f"{name}: skipped, {message}", flush=True)
            payload["learners"][name] = {"skipped": message}
            continue
        options = PRESETS[args.size].get(name, {})
        print(f"{name}: training with a budget of {budget:.3g} env steps", flush=True)
        result = run_learner(name, run, options, budget, args.chunks, args.seed)
        payload["learners"][name] = result
        print(f"{name}: {result['updates']} updates, {result['train_wall_s']:.0f} s", flush=True)
        print(result["shots_markdown"], flush=True)
    stem = f"compare_learners_{device_slug()}" + ("_quick" if args.size == "quick" else "")
    stem += "" if args.env == "point-robot-dense" else f"_{args.env}"  # one file per env
    json_path, md_path = write_results(stem, payload, markdown(payload))
    print(f"results written to {json_path} and {md_path}")
    return payload


if __name__ == "__main__":
    main()
