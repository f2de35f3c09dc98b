"""Runs every benchmark script at a suite's sizes, continues past failures, prints a summary.

    python -m benchmarks.run_all --suite cpu      # `make bench`: about an hour on 2 cores
    python -m benchmarks.run_all --suite gpu      # `make bench-gpu`: the paper-scale sizes
    python -m benchmarks.run_all --suite cpu --only compare_learners --dry-run

Each entry of ``SUITES`` is a script of ``benchmarks/`` with the size flags it takes; a script
that is not there (yet) is reported as missing, one that fails or runs past ``--timeout`` is
reported and the next one runs. Each script writes its own results (with command, device, jax
version and date) to ``benchmarks/results/``; this runner adds
``results/run_all_<suite>_<device>.{json,md}`` with each script's status and duration and
exits non-zero when any script failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import device_slug, metadata_markdown, run_metadata, write_results

HERE = Path(__file__).resolve().parent
CONFIGS = Path("benchmarks") / "configs"  # relative: scripts run from the repository root

# suite -> [(script, size flags)]; CPU sizes keep the whole suite near an hour on an idle
# 2-core machine (the slowest: compare_learners ~20 min at its 2e6-step budget; duan_rl2,
# learner_throughput, maml_nav2d ~8 min each)
SUITES: dict[str, list[tuple[str, list[str]]]] = {
    "cpu": [
        ("env_throughput", ["--skip-brax", "--batch", "1024", "--max-tasks", "4096"]),
        ("bandit_baselines", ["--cells", "10x5", "10x10", "100x5", "--num-tasks", "1000"]),
        ("mdp_baselines", ["--episodes", "10", "--num-tasks", "1000"]),
        ("rl2_throughput", ["--tasks", "64", "256", "1024", "--updates", "2"]),
        ("core_throughput", ["--lengths", "100", "--tasks", "32"]),
        ("duan_rl2", ["--cells", "10x5", "--mdp-episodes", "10"]),
        ("pearl_point_robot", ["--eval-every", "50"]),
        ("maml_nav2d", ["--time-budget", "480"]),
        (
            "maml_nav2d",
            ["--config", str(CONFIGS / "maml_nav2d_fisher_subsample.toml"), "--time-budget", "300"],
        ),
        ("compare_learners", ["--size", "cpu"]),
        (
            "learner_throughput",
            ["--learners", "rl2", "maml", "pearl", "--max-tasks", "64", "--updates", "1"],
        ),
    ],
    "gpu": [
        (
            "env_throughput",
            ["--batch", "65536", "--brax-batch", "8192", "--brax-max-tasks", "8192"],
        ),
        ("bandit_baselines", []),
        ("mdp_baselines", ["--episodes", "10", "25", "50"]),
        ("rl2_throughput", ["--tasks", "256", "1024", "4096", "16384", "65536"]),
        ("duan_rl2", ["--num-tasks", "2048"]),
        ("duan_rl2", ["--num-tasks", "2048", "--core", "transformer", "--curve-points", "5"]),
        ("duan_rl2", ["--num-tasks", "2048", "--core", "lru", "--curve-points", "5"]),
        (
            "core_throughput",
            ["--lengths", "10", "100", "500", "--tasks", "1024", "--width", "128"],
        ),
        (
            "pearl_point_robot",
            ["--configs", str(CONFIGS / "pearl_cheetah_vel.toml"), "--eval-every", "10"],
        ),
        ("maml_nav2d", []),
        ("maml_nav2d", ["--config", str(CONFIGS / "maml_cheetah_vel.toml")]),
        ("maml_nav2d", ["--config", str(CONFIGS / "maml_ant_dir.toml")]),
        ("compare_learners", ["--size", "gpu"]),
        (
            "learner_throughput",
            [
                "--max-tasks",
                "65536",
                "--config",
                str(CONFIGS / "rl2_xland_r4_13x13.toml"),
            ],
        ),
    ],
}


def run_script(name: str, flags: list[str], timeout: float, dry_run: bool) -> dict:
    """Runs ``python -m benchmarks.<name> <flags>``; returns its status and duration."""
    command = [sys.executable, "-m", f"benchmarks.{name}", *flags]
    shown = " ".join(["python", "-m", f"benchmarks.{name}", *flags])
    entry = {"script": name, "command": shown}
    if not (HERE / f"{name}.py").exists():
        return entry | {"status": "missing"}
    if dry_run:
        return entry | {"status": "planned"}
    print(f"\n=== {shown}", flush=True)
    tic = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=HERE.parent, timeout=timeout)
        status = "ok" if result.returncode == 0 else f"failed (exit {result.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    return entry | {"status": status, "seconds": time.perf_counter() - tic}


def summary_markdown(suite: str, entries: list[dict], meta: dict) -> str:
    """The summary table of one suite run."""
    lines = [
        f"# Benchmark suite `{suite}`",
        "",
        metadata_markdown(meta),
        "| script | status | minutes | command |",
        "|---|---|---|---|",
    ]
    for e in entries:
        minutes = f"{e['seconds'] / 60:.1f}" if "seconds" in e else ""
        lines.append(f"| {e['script']} | {e['status']} | {minutes} | `{e['command']}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Runs the suite; returns 0 when every script that ran succeeded."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="cpu")
    parser.add_argument("--only", nargs="+", help="run only these scripts")
    parser.add_argument("--skip", nargs="+", default=[], help="leave these scripts out")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per script")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    args = parser.parse_args(argv)
    plan = SUITES[args.suite]
    known = {name for name, _ in plan}
    for name in (args.only or []) + args.skip:
        if name not in known:
            parser.error(f"'{name}' is not in the {args.suite} suite: {', '.join(sorted(known))}")
    plan = [(n, f) for n, f in plan if (not args.only or n in args.only) and n not in args.skip]
    entries = [run_script(name, flags, args.timeout, args.dry_run) for name, flags in plan]
    meta = run_metadata()
    text = summary_markdown(args.suite, entries, meta)
    print("\n" + text)
    if not args.dry_run:
        payload = {"meta": meta, "suite": args.suite, "scripts": entries}
        write_results(f"run_all_{args.suite}_{device_slug()}", payload, text)
    failed = [e for e in entries if e["status"] not in ("ok", "planned", "missing")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
