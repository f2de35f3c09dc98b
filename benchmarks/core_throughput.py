"""Memory-core speed: RL² train env-steps/s and compile time for every core and trial length.

Bernoulli bandits (k arms; trial length = pulls), the same width for every core. For each
(core, length): the end-to-end training rate over a jitted chunk of updates (compile timed apart
with ``.lower().compile()``), then where the time goes: acting (collecting the trials in step
mode, ``rl2.run_trials``) and the PPO update (epochs of the loss in sequence mode), each jitted
and timed alone (at the ``--phase-lengths`` only: each costs two more compilations).
``lru-sequential`` is the LRU with a sequential scan in sequence mode (``core_parallel=False``).
Beside the rates, the network's forward FLOPs per env step as XLA counts them (``flops``): on
CPU the update's time follows the dense work per step, which no parallel-in-time sequence mode
removes.

    python -m benchmarks.core_throughput                                  # CPU sizes
    python -m benchmarks.core_throughput --cores gru lru --lengths 100 --tasks 32   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial

import jax
import jax.numpy as jnp

import metajax.envs as envs
from benchmarks.common import device_slug, metadata_markdown, run_metadata, write_results
from benchmarks.rl2_throughput import training_rate
from metajax import cores
from metajax.learners import rl2

# name: (core, rl2 options); "lru" is pinned to the associative scan (RL²'s default on CPU is
# the sequential scan, which this benchmark found faster there)
VARIANTS = {
    "lru": ("lru", {"core_parallel": True}),
    "lru-sequential": ("lru", {"core_parallel": False}),
}


def _timed(fn, *args, repeats: int) -> tuple[float, float]:
    """(compile seconds, seconds per call) of ``jax.jit(fn)`` on ``args``."""
    tic = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - tic
    jax.block_until_ready(compiled(*args))  # warm-up
    tic = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(compiled(*args))
    return compile_s, (time.perf_counter() - tic) / repeats


def phase_rates(config: rl2.Config, arms: int, repeats: int) -> dict:
    """Env-steps/s of acting alone (step mode) and of the PPO update alone (sequence mode)."""
    env, tasks = envs.make("bernoulli-bandit", arms=arms)
    setup = rl2.make_setup(config, env, tasks)
    state = jax.jit(lambda key: rl2.init(setup, key))(jax.random.key(0))
    task_batch = tasks.sample(jax.random.key(1), config.num_tasks)
    keys = jax.random.split(jax.random.key(2), config.num_tasks)

    def act(params):
        return rl2.run_trials(setup, params, task_batch, keys)

    def learn(state, traj, mask):
        data = rl2.trial_data(setup, traj, mask, None)
        return rl2.update(setup, state, data, jax.random.key(3), None)

    steps = config.num_tasks * setup.env.horizon
    _, act_s = _timed(act, state.params, repeats=repeats)
    traj, mask = jax.jit(act)(state.params)
    _, learn_s = _timed(learn, state, traj, mask, repeats=repeats)
    return {
        "act_env_steps_per_s": steps / act_s,
        "update_env_steps_per_s": steps / learn_s,
        "act_share": act_s / (act_s + learn_s),
    }


def forward_flops(config: rl2.Config, arms: int, batch: int = 8) -> float:
    """The network's forward FLOPs per env step, as XLA's cost analysis counts them.

    XLA counts a loop's body once, so cores whose sequence mode has no loop (the transformer,
    the LRU with the associative scan) are counted over a whole trial and divided by its
    length; the others over one step of step mode, which does the same work per step.
    """
    env, tasks = envs.make("bernoulli-bandit", arms=arms)
    setup = rl2.make_setup(config, env, tasks)
    network, length = setup.network, setup.env.horizon
    params = rl2.init(setup, jax.random.key(0)).params
    obs = jnp.zeros((length, batch, *setup.env.observation_space().shape), jnp.float32)
    first = jnp.zeros((length, batch), bool).at[0].set(True)
    if config.core == "transformer" or (config.core == "lru" and config.core_parallel):
        fn, args, steps = partial(network.apply, method="sequence"), (obs, first), length * batch
    else:
        fn, args, steps = network.apply, (rl2.fresh_carry(setup, batch), obs[0], first[0]), batch
    cost = jax.jit(fn).lower(params, *args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]) / steps


def measure(core: str, length: int, args: argparse.Namespace) -> dict:
    """One (core, trial length) row."""
    name, options = VARIANTS.get(core, (core, {}))
    config = rl2.Config(
        num_tasks=args.tasks,
        episodes_per_trial=length,
        core=name,
        core_size=args.width,
        hidden_sizes=(args.width,),
        core_layers=args.layers,
        core_heads=args.heads,
        num_minibatches=args.minibatches,
        update_epochs=args.epochs,
        **options,
    )
    row = {"core": core, "length": length}
    row.update(training_rate(config, args.arms, args.updates, args.repeats))
    row["flops_per_step"] = forward_flops(config, args.arms)
    if length in args.phase_lengths:
        row.update(phase_rates(config, args.arms, args.repeats))
    return row


def main(argv: list[str] | None = None) -> dict:
    """Measures every core at every trial length and writes the results after each row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cores", nargs="+", default=list(dict.fromkeys([*cores.names(), *VARIANTS]))
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--tasks", type=int, default=64, help="trials (tasks) per update")
    parser.add_argument("--width", type=int, default=64, help="core width (and the MLP's)")
    parser.add_argument("--layers", type=int, default=1, help="transformer / LRU blocks")
    parser.add_argument("--heads", type=int, default=4, help="transformer heads")
    parser.add_argument(
        "--phase-lengths", type=int, nargs="*", default=[100], help="lengths timed by phase"
    )
    parser.add_argument("--arms", type=int, default=5)
    parser.add_argument("--minibatches", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--updates", type=int, default=2, help="updates per timed chunk")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--stem", default=None, help="results file stem")
    args = parser.parse_args(argv)
    stem = args.stem or f"core_throughput_{device_slug()}"
    payload = {"meta": run_metadata(), "config": vars(args), "rows": []}
    payload["meta"]["load_before"] = os.getloadavg()
    for length in args.lengths:
        for core in args.cores:
            row = measure(core, length, args)
            payload["rows"].append(row)
            print(
                f"{core:14s} T={length:4d}: {row['env_steps_per_s']:9.4g} env-steps/s, "
                f"compile {row['compile_s']:5.1f} s",
                flush=True,
            )
            payload["meta"]["load_after"] = os.getloadavg()
            write_results(stem, payload, markdown(payload))
    return payload


def markdown(payload: dict) -> str:
    """The results table, one row per (trial length, core), GRU-relative speed beside."""
    c, meta = payload["config"], payload["meta"]
    load = meta.get("load_before"), meta.get("load_after")
    lines = [
        "# Memory cores: RL² training speed (Bernoulli bandits)",
        "",
        metadata_markdown(meta),
        f"- {c['arms']} arms, trial length = pulls; {c['tasks']} tasks per update, width "
        f"{c['width']} for every core (MLP {c['width']}), {c['layers']} transformer/LRU "
        f"block(s), {c['heads']} heads; PPO "
        f"{c['epochs']} epochs x {c['minibatches']} minibatches; {c['updates']} updates per "
        "timed chunk.",
        f"- machine load (1/5/15-min averages) before {_load(load[0])}, after {_load(load[1])}:"
        " a shared machine, so compare rows of one run, not absolute figures.",
        "- acting = collecting the trials (step mode); update = the PPO epochs (sequence mode), "
        "each timed alone; vs GRU = train env-steps/s over GRU's at the same length; forward "
        "kFLOP / step = the network's forward FLOPs per env step as XLA counts them (the "
        "update does about 3x that per epoch), x GRU = over GRU's.",
        "",
        "| T | core | train env-steps/s | vs GRU | compile s | acting env-steps/s | "
        "update env-steps/s | acting share | forward kFLOP / step | x GRU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    gru_rows = [r for r in payload["rows"] if r["core"] == "gru"]
    gru = {r["length"]: r["env_steps_per_s"] for r in gru_rows}
    gru_flops = {r["length"]: r.get("flops_per_step") for r in gru_rows}
    for r in payload["rows"]:
        ratio = f"{r['env_steps_per_s'] / gru[r['length']]:.2f}" if r["length"] in gru else "-"
        phases = "| - | - | - |"
        if "act_share" in r:
            phases = (
                f"| {r['act_env_steps_per_s']:.3g} | {r['update_env_steps_per_s']:.3g} | "
                f"{r['act_share']:.0%} |"
            )
        lines.append(
            f"| {r['length']} | {r['core']} | {r['env_steps_per_s']:.3g} | {ratio} | "
            f"{r['compile_s']:.1f} " + phases + _flops(r, gru_flops.get(r["length"]))
        )
    return "\n".join(lines) + "\n"


def _flops(row: dict, gru: float | None) -> str:
    """`` kFLOP | x GRU |`` cells (``-`` in rows recorded before the column existed)."""
    if row.get("flops_per_step") is None:
        return " - | - |"
    ratio = f"{row['flops_per_step'] / gru:.2f}" if gru else "-"
    return f" {row['flops_per_step'] / 1e3:.0f} | {ratio} |"


def _load(values) -> str:
    return "/".join(f"{v:.1f}" for v in values) if values else "?"


if __name__ == "__main__":
    main()
