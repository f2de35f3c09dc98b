"""Env throughput: steps/s of metajax task families vs the raw envs they match, and task scaling.

For each family, random actions are stepped under ``jit(lax.scan(vmap(step)))``:

1. wrapper overhead: our env (one task per env, per-task params) against the raw env at the
   same batch on the same device: gymnax's BernoulliBandit / MetaMaze / PointRobot (the
   same kind of env; ours is a re-implementation that keeps the task across resets) or, for
   brax families, the very brax env we wrap, stepped with brax's own episode and auto-reset
   wrappers. overhead = raw steps/s / our steps/s - 1.
2. scaling: our steps/s with 1, 4, 16, ... up to ``--max-tasks`` tasks (one env per task);
   ``--scale-factor`` / ``--brax-scale-factor`` set the step between task counts (each count
   is a compile, which takes tens of seconds for brax).

Compile time (``.lower(...).compile()``) is reported apart from run time (best of
``--repeats`` timed runs after one warm-up). Results go to
``benchmarks/results/env_throughput_<device>[_quick].{json,md}``.

    python benchmarks/env_throughput.py --quick              # tiny CPU run
    python benchmarks/env_throughput.py --skip-brax          # no brax families
    python benchmarks/env_throughput.py cheetah-vel --batch 8192 --max-tasks 65536   # GPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp

import metajax.envs as envs
from metajax.distributed import device_info

DEFAULT_FAMILIES = (
    "bernoulli-bandit",
    "tabular-mdp",
    "nav2d",
    "maze",
    "point-robot-sparse",
    "cheetah-vel",
)
# the gymnax env of the same kind as each of our families
GYMNAX_REFERENCE = {
    "bernoulli-bandit": "BernoulliBandit-misc",
    "maze": "MetaMaze-misc",
    "nav2d": "PointRobot-misc",
    "point-robot-sparse": "PointRobot-misc",
    "point-robot-dense": "PointRobot-misc",
}
OVERHEAD_TARGET = 0.10
MIN_TIMED_S = 0.5  # seconds of timed runs per measurement, at least


def _is_brax(env) -> bool:
    return hasattr(env, "brax_env")


def _compile(step: Callable, init: Callable, num_steps: int) -> tuple[Callable, float]:
    """Compiles ``num_steps`` batched steps; returns the executable and the compile seconds.

    ``init(key) -> state`` builds the batched state; ``step(state, key) -> (state, obs,
    reward)`` steps the whole batch once (actions drawn inside). Observations and rewards are
    summed into a checksum so that XLA cannot drop the work that makes them.
    """

    def run(key):
        key_init, key_run = jax.random.split(key)

        def one_step(carry, key):
            state, checksum = carry
            state, obs, reward = step(state, key)
            checksum += jnp.sum(reward.astype(jnp.float32)) + jnp.sum(obs.astype(jnp.float32))
            return (state, checksum), None

        carry = (init(key_init), jnp.float32(0))
        return jax.lax.scan(one_step, carry, jax.random.split(key_run, num_steps))[0]

    start = time.perf_counter()
    compiled = jax.jit(run).lower(jax.random.key(0)).compile()
    return compiled, time.perf_counter() - start


def _measure(
    variants: list[tuple[Callable, Callable]], batch: int, num_steps: int, repeats: int
) -> list[dict[str, float]]:
    """Compiles and times each ``(step, init)`` variant; timed runs alternate between them.

    Alternating keeps a shared machine's changing load from favouring one variant. Each
    variant gets at least ``repeats`` runs and ``MIN_TIMED_S`` seconds; the best run counts.
    """
    compiled = [_compile(step, init, num_steps) for step, init in variants]
    for executable, _ in compiled:
        jax.block_until_ready(executable(jax.random.key(1)))  # warm-up
    times: list[list[float]] = [[] for _ in compiled]
    while min(len(t) for t in times) < repeats or min(sum(t) for t in times) < MIN_TIMED_S:
        for (executable, _), runs in zip(compiled, times, strict=True):
            start = time.perf_counter()
            jax.block_until_ready(executable(jax.random.key(2 + len(runs))))
            runs.append(time.perf_counter() - start)
    return [
        {
            "batch": batch,
            "num_steps": num_steps,
            "compile_s": round(compile_s, 3),
            "run_s": round(min(runs), 6),
            "timed_runs": len(runs),
            "steps_per_s": batch * num_steps / min(runs),
        }
        for (_, compile_s), runs in zip(compiled, times, strict=True)
    ]


def _ours(env, tasks, batch: int) -> tuple[Callable, Callable]:
    """Our env: one task per env, per-task params, gymnax auto-reset."""
    params = tasks.sample(jax.random.key(42), batch)
    space = env.action_space()

    def init(key):
        return jax.vmap(env.reset)(jax.random.split(key, batch), params)[1]

    def step(state, key):
        key_act, key_step = jax.random.split(key)
        action = jax.vmap(space.sample)(jax.random.split(key_act, batch))
        obs, state, reward, *_ = jax.vmap(env.step)(
            jax.random.split(key_step, batch), state, action, params
        )
        return state, obs, reward

    return step, init


def _raw_gymnax(name: str, batch: int) -> tuple[Callable, Callable]:
    """A gymnax env with its default params shared by the batch, as gymnax benchmarks it."""
    import gymnax

    env, params = gymnax.make(name)
    space = env.action_space(params)

    def init(key):
        return jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, batch), params)[1]

    def step(state, key):
        key_act, key_step = jax.random.split(key)
        action = jax.vmap(space.sample)(jax.random.split(key_act, batch))
        keys = jax.random.split(key_step, batch)
        obs, state, reward, *_ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            keys, state, action, params
        )
        return state, obs, reward

    return step, init


def _raw_brax(env, batch: int) -> tuple[Callable, Callable]:
    """The brax env we wrap, with brax's EpisodeWrapper + AutoResetWrapper (its training setup)."""
    from brax.envs.wrappers.training import AutoResetWrapper, EpisodeWrapper

    raw = AutoResetWrapper(EpisodeWrapper(env.brax_env, env.horizon, action_repeat=1))
    size = env.brax_env.action_size

    def init(key):
        return jax.vmap(raw.reset)(jax.random.split(key, batch))

    def step(state, key):
        action = jax.random.uniform(key, (batch, size), minval=-1.0, maxval=1.0)
        state = jax.vmap(raw.step)(state, action)
        return state, state.obs, state.reward

    return step, init


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _format_rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.3g}"


def _markdown(report: dict) -> str:
    meta = report["meta"]
    lines = [
        "# Env throughput",
        "",
        f"- command: `{meta['command']}`",
        f"- device: {meta['device']['device_kind']} ({meta['device']['platform']}), "
        f"CPU {meta['device']['cpu_model']} x {meta['device']['cpu_count']}",
        f"- jax {meta['jax_version']}, {meta['date']}",
        f"- {meta['num_steps']} steps per timed run, best of at least {meta['repeats']} runs"
        f" and {MIN_TIMED_S} s; random actions;"
        " steps/s counts env steps (batch x steps); ours and the reference are timed in"
        " alternation",
        "",
        "## Wrapper overhead (same batch, same device)",
        "",
        "| family | batch | ours steps/s | reference | reference steps/s | overhead "
        "| ours compile s | reference compile s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in report["families"].items():
        if "skipped" in result:
            lines.append(f"| {name} | | skipped: {result['skipped']} | | | | | |")
            continue
        ours, raw = result["ours"], result.get("raw")
        overhead = result.get("overhead")
        raw_compile = f"{raw['compile_s']:.2f}" if raw else "n/a"
        lines.append(
            f"| {name} | {ours['batch']} | {_format_rate(ours['steps_per_s'])} "
            f"| {result.get('reference', 'none')} "
            f"| {_format_rate(raw['steps_per_s'] if raw else None)} "
            f"| {'n/a' if overhead is None else f'{overhead:+.1%}'} "
            f"| {ours['compile_s']:.2f} | {raw_compile} |"
        )
    lines += [
        "",
        f"overhead = reference steps/s / ours - 1 (target <= +{OVERHEAD_TARGET:.0%} where the"
        " reference is the env we"
        " wrap, the brax rows; gymnax rows compare with gymnax's own env of the same kind, which"
        " resamples nothing per task and shares one params for the whole batch).",
        "",
        "## Scaling with the number of tasks (one env per task)",
        "",
        "| family | tasks | steps/s | compile s |",
        "|---|---|---|---|",
    ]
    for name, result in report["families"].items():
        for row in result.get("scaling", []):
            lines.append(
                f"| {name} | {row['batch']} | {_format_rate(row['steps_per_s'])} "
                f"| {row['compile_s']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("families", nargs="*", default=list(DEFAULT_FAMILIES))
    parser.add_argument("--batch", type=int, default=4096, help="batch of the overhead test")
    parser.add_argument("--brax-batch", type=int, default=256, help="batch for brax families")
    parser.add_argument("--num-steps", type=int, default=100, help="scan length of a timed run")
    parser.add_argument("--max-tasks", type=int, default=65536, help="largest task count")
    parser.add_argument("--brax-max-tasks", type=int, default=1024, help="largest, for brax")
    parser.add_argument("--scale-factor", type=int, default=4, help="ratio of task counts")
    parser.add_argument("--brax-scale-factor", type=int, default=4, help="the same, for brax")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-brax", action="store_true", help="leave out brax families")
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a CPU smoke run")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.brax_batch, args.num_steps = 256, 4, 50
        args.max_tasks, args.brax_max_tasks, args.repeats = 1024, 16, 5
    for flag in ("batch", "brax_batch", "num_steps", "max_tasks", "brax_max_tasks", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    for flag in ("scale_factor", "brax_scale_factor"):
        if getattr(args, flag) < 2:
            parser.error(f"--{flag.replace('_', '-')} must be at least 2")
    return args


def _overhead_and_print(name: str, env, tasks, args, report: dict) -> dict:
    """One family's wrapper-overhead measurement against its reference env (brax or gymnax)."""
    brax = _is_brax(env)
    batch = args.brax_batch if brax else args.batch
    variants = [_ours(env, tasks, batch)]
    result: dict = {}
    if brax:
        result["reference"] = f"brax {env.brax_env.__class__.__name__} ({env.brax_env.backend})"
        variants.append(_raw_brax(env, batch))
    elif name in GYMNAX_REFERENCE:
        result["reference"] = f"gymnax {GYMNAX_REFERENCE[name]}"
        variants.append(_raw_gymnax(GYMNAX_REFERENCE[name], batch))
    measured = _measure(variants, batch, args.num_steps, args.repeats)
    result["ours"] = measured[0]
    if len(measured) > 1:
        result["raw"] = measured[1]
        result["overhead"] = result["raw"]["steps_per_s"] / result["ours"]["steps_per_s"] - 1
    if brax:  # the reference is the env we wrap: the overhead is the wrapper's
        result["overhead_within_target"] = result["overhead"] <= OVERHEAD_TARGET
    print(
        f"{name}: ours {result['ours']['steps_per_s']:.3g} steps/s at batch {batch}"
        + (
            f", {result['reference']} {result['raw']['steps_per_s']:.3g} steps/s,"
            f" overhead {result['overhead']:+.1%}"
            if "raw" in result
            else ""
        ),
        flush=True,
    )
    return result


def _scaling(env, tasks, args, result: dict, report: dict) -> None:
    """Steps/s at 1, factor, factor^2, ... tasks; saved after every row."""
    brax = _is_brax(env)
    max_tasks = args.brax_max_tasks if brax else args.max_tasks
    factor = args.brax_scale_factor if brax else args.scale_factor
    result["scaling"] = []
    count = 1
    while count <= max_tasks:
        row = _measure([_ours(env, tasks, count)], count, args.num_steps, args.repeats)[0]
        result["scaling"].append(row)
        print(
            f"  {count:>6} tasks: {row['steps_per_s']:.3g} steps/s"
            f" (compile {row['compile_s']:.1f} s)",
            flush=True,
        )
        count *= factor
        _save(report, args.out_dir, args.quick)


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark and writes the JSON and Markdown reports; returns the report."""
    args = _parse(argv)
    words = sys.argv[1:] if argv is None else argv
    report = {
        "meta": {
            "command": " ".join(["python", "benchmarks/env_throughput.py", *words]),
            "device": device_info(),
            "jax_version": jax.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "num_steps": args.num_steps,
            "repeats": args.repeats,
            "quick": args.quick,
        },
        "families": {},
    }
    known = set(envs.names())
    for name in args.families:
        if name not in known:
            report["families"][name] = {"skipped": "not registered"}
            print(f"{name}: skipped (not registered)", flush=True)
            continue
        env, tasks = envs.make(name)
        if _is_brax(env) and args.skip_brax:
            report["families"][name] = {"skipped": "--skip-brax"}
            continue
        result = _overhead_and_print(name, env, tasks, args, report)
        result["scaling"] = []
        report["families"][name] = result  # filled in place; saved after every measurement
        _save(report, args.out_dir, args.quick)
        _scaling(env, tasks, args, result, report)

    _save(report, args.out_dir, args.quick)
    return report


def _save(report: dict, out_dir: Path, quick: bool) -> None:
    """Writes the JSON and Markdown reports (after every family: a run cut short keeps what it
    measured)."""
    device = _slug(report["meta"]["device"]["device_kind"]) or "unknown"
    stem = f"env_throughput_{device}" + ("_quick" if quick else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(_markdown(report))
    print(f"wrote {out_dir / stem}.json and .md", flush=True)


if __name__ == "__main__":
    main()
