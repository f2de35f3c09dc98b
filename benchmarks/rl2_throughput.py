"""RL² throughput: raw env steps/s and end-to-end training env-steps/s versus the task count.

In one run, for each task count: the Bernoulli-bandit trial env stepped with random actions
(jit(scan(vmap(step)))), and RL² training (GRU, PPO over whole trials) measured over a jitted
chunk of updates. Compile time is reported apart (``.lower().compile()``). FLOP/s and the
model-FLOP utilization come from XLA's cost analysis of the compiled chunk, which counts the
body of each loop (the scans over updates, epochs, minibatches and time steps) once: they are
lower bounds, not the executed FLOPs.

    python -m benchmarks.rl2_throughput --tasks 256 1024 4096 16384
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import metajax.envs as envs
from benchmarks.common import device_slug, metadata_markdown, run_metadata, write_results
from metajax.learners import rl2

# Dense peak FLOP/s by device kind (fp32 via TF32 tensor cores on Hopper: XLA's default
# matmul precision for f32 on GPU). Unknown devices report achieved FLOP/s without MFU.
PEAK_FLOPS = {"NVIDIA H100 80GB HBM3": 494e12, "NVIDIA H100": 494e12, "NVIDIA H200": 494e12}


def _flops(compiled) -> float | None:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def raw_env_rate(arms: int, pulls: int, num_tasks: int, steps: int, repeats: int) -> dict:
    """Random-action steps/s of the RL² trial env (the bandit inside TrialWrapper)."""
    env, tasks = envs.make("bernoulli-bandit", arms=arms)
    trial = envs.TrialWrapper(env, pulls)
    space = trial.action_space()

    def run(key):
        params = tasks.sample(key, num_tasks)
        obs, state = jax.vmap(trial.reset)(jax.random.split(key, num_tasks), params)

        def step(state, key):
            key_a, key_s = jax.random.split(key)
            action = jax.vmap(space.sample)(jax.random.split(key_a, num_tasks))
            _, state, reward, *_ = jax.vmap(trial.step)(
                jax.random.split(key_s, num_tasks), state, action, params
            )
            return state, reward.sum()

        _, rewards = jax.lax.scan(step, state, jax.random.split(key, steps))
        return rewards.sum()

    tic = time.perf_counter()
    compiled = jax.jit(run).lower(jax.random.key(0)).compile()
    compile_s = time.perf_counter() - tic
    jax.block_until_ready(compiled(jax.random.key(1)))
    tic = time.perf_counter()
    for i in range(repeats):
        jax.block_until_ready(compiled(jax.random.key(2 + i)))
    seconds = (time.perf_counter() - tic) / repeats
    return {"steps_per_s": num_tasks * steps / seconds, "compile_s": compile_s}


def training_rate(config: rl2.Config, arms: int, updates: int, repeats: int) -> dict:
    """End-to-end RL² training env-steps/s over a jitted chunk of ``updates`` updates."""
    env, tasks = envs.make("bernoulli-bandit", arms=arms)
    learner = rl2.make_learner(config, env, tasks)
    state = jax.jit(learner.init)(jax.random.key(0))

    def chunk(state, key):
        return jax.lax.scan(
            lambda s, i: learner.train_step(s, jax.random.fold_in(key, i)),
            state,
            jnp.arange(updates),
        )

    tic = time.perf_counter()
    compiled = jax.jit(chunk).lower(state, jax.random.key(1)).compile()
    compile_s = time.perf_counter() - tic
    flops = _flops(compiled)
    state, metrics = compiled(state, jax.random.key(2))  # warm-up
    jax.block_until_ready(metrics)
    tic = time.perf_counter()
    for i in range(repeats):
        state, metrics = compiled(state, jax.random.key(3 + i))
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - tic) / repeats
    env_steps = updates * learner.env_steps_per_update
    result = {
        "env_steps_per_s": env_steps / seconds,
        "seconds_per_update": seconds / updates,
        "compile_s": compile_s,
        "trial_return": float(metrics["trial_return"][-1]),
    }
    if flops is not None:
        result["flops_per_s"] = flops / seconds
        peak = PEAK_FLOPS.get(jax.devices()[0].device_kind)
        result["mfu"] = flops / seconds / peak if peak else None
    return result


def main(argv: list[str] | None = None) -> dict:
    """Measures every task count and writes the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--arms", type=int, default=5)
    parser.add_argument("--pulls", type=int, default=10, help="episodes (pulls) per trial")
    parser.add_argument("--core-size", type=int, default=256)
    parser.add_argument("--updates", type=int, default=5, help="updates per timed chunk")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--raw-steps", type=int, default=1000)
    args = parser.parse_args(argv)

    rows = []
    for num_tasks in args.tasks:
        config = rl2.Config(
            num_tasks=num_tasks, episodes_per_trial=args.pulls, core_size=args.core_size
        )
        raw = raw_env_rate(args.arms, args.pulls, num_tasks, args.raw_steps, args.repeats)
        trained = training_rate(config, args.arms, args.updates, args.repeats)
        row = {"num_tasks": num_tasks, "raw_env": raw, "rl2_training": trained}
        rows.append(row)
        mfu = trained.get("mfu")
        print(
            f"tasks {num_tasks:6d}: raw env {raw['steps_per_s']:.3g} steps/s | RL² training "
            f"{trained['env_steps_per_s']:.3g} env-steps/s, compile {trained['compile_s']:.1f} s"
            + (f", MFU {mfu:.2%}" if mfu else ""),
            flush=True,
        )
        payload = save(args, rows)
    return payload


def save(args: argparse.Namespace, rows: list[dict]) -> dict:
    """Writes the rows measured so far (after every task count: a run cut short keeps them)."""
    meta = run_metadata()
    payload = {"meta": meta, "config": vars(args), "rows": rows}
    lines = [
        "# RL² throughput (Bernoulli bandit trials)",
        "",
        metadata_markdown(meta),
        f"GRU {args.core_size}, {args.arms} arms, {args.pulls} pulls per trial, "
        f"{args.updates} updates per timed chunk. GFLOP/s and MFU come from XLA's cost "
        "analysis, which counts each loop body once, so they are lower bounds.",
        "",
        "| tasks | raw env steps/s | RL² train env-steps/s | s/update | compile s | "
        "GFLOP/s (lower bound) | MFU (lower bound) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        t = row["rl2_training"]
        gflops = f"{t['flops_per_s'] / 1e9:.1f}" if t.get("flops_per_s") else "n/a"
        mfu = f"{t['mfu']:.2%}" if t.get("mfu") else "n/a"
        lines.append(
            f"| {row['num_tasks']} | {row['raw_env']['steps_per_s']:.3g} | "
            f"{t['env_steps_per_s']:.3g} | {t['seconds_per_update']:.4f} | "
            f"{t['compile_s']:.1f} | {gflops} | {mfu} |"
        )
    write_results(f"rl2_throughput_{device_slug()}", payload, "\n".join(lines) + "\n")
    return payload


if __name__ == "__main__":
    main()
