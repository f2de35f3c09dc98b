"""The command line: ``metajax train LEARNER``, ``metajax evaluate RUN_DIR``, ``metajax list``.

Bad input (unknown env or learner, impossible sizes, a task count that the devices cannot
split, a missing or corrupt checkpoint) prints one line and exits with code 2; a NaN during
training stops it with exit code 3 and keeps the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

from metajax.errors import ConfigError
from metajax.runs import Built, RunArgs, build, evaluate_and_report, run_metadata

USAGE = """usage: metajax COMMAND ...

commands:
  train LEARNER --env ENV [options]   train a learner (metajax train LEARNER --help)
  evaluate RUN_DIR [options]          few-shot evaluation of a run's latest checkpoint
  list                                the learners and envs metajax knows
  sweep FILE.toml [--out DIR]         a grid of training runs from a TOML file (metajax.sweep)
  probe RUN_DIR [--tasks N]           decode a run's task representation (metajax.inference)
"""


def _train_args_class(learner_config: type) -> type:
    """One dataclass holding the run's, the trainer's and the learner's options, for tyro.

    Each part stays its own class, so tyro reads each field's ``# comment`` in its source as
    the option's help; its options keep their plain names (``--env``, ``--num-tasks``).
    """
    import tyro

    from metajax.train import TrainConfig

    parts = (("run", RunArgs), ("training", TrainConfig), ("learner", learner_config))
    seen: dict[str, str] = {}
    for _, owner in parts:
        for field in dataclasses.fields(owner):
            if field.name in seen:
                raise RuntimeError(
                    f"option '{field.name}' of {owner.__name__} clashes with {seen[field.name]}"
                )
            seen[field.name] = owner.__name__
    fields = [
        (name, Annotated[owner, tyro.conf.OmitArgPrefixes], dataclasses.field(default=owner()))
        for name, owner in parts
    ]
    return dataclasses.make_dataclass("TrainArgs", fields, frozen=True)


def _options(config) -> dict:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def _train_overview() -> str:
    from metajax import learners

    rows = "\n".join(f"  {name:6s} {learners.summary(name)}" for name in learners.names())
    return (
        f"usage: metajax train LEARNER [options]\n\nlearners:\n{rows}\n\n"
        "every option of one learner: metajax train LEARNER --help"
    )


def parse_train_args(argv: list[str]) -> tuple[str, RunArgs, Any, dict]:
    """``(learner name, RunArgs, TrainConfig, learner options)`` from ``metajax train`` argv.

    ``--help`` prints the learner's summary and every option with its help, and exits 0; a
    malformed option is tyro's usage error (exit 2).
    """
    from metajax import learners

    if not argv or argv[0].startswith("-"):
        known = ", ".join(learners.names())
        raise ConfigError(f"train needs a learner name first; known: {known}")
    learner_name, rest = argv[0], argv[1:]
    config_cls, _ = learners.get(learner_name)
    import tyro

    args = tyro.cli(
        _train_args_class(config_cls),
        args=rest,
        prog=f"metajax train {learner_name}",
        description=learners.summary(learner_name),
        config=(tyro.conf.FlagConversionOff,),
    )
    return learner_name, args.run, args.training, _options(args.learner)


def check_train_args(argv: list[str]) -> tuple[str, RunArgs, Any, Built]:
    """Parses ``metajax train`` argv, checks every option and builds the env and the learner
    (``Config.validate(env)`` included); trains nothing. Bad input raises ConfigError."""
    learner_name, run, train_config, learner_options = parse_train_args(argv)
    train_config.validate()
    return learner_name, run, train_config, build(learner_name, run, learner_options)


def _start_multihost_if_asked(argv: list[str]) -> None:
    """Joins a multi-process run (a no-op when ``python -m metajax`` has already started it:
    jax.distributed must start before any JAX backend use, see ``metajax.multihost``)."""
    from metajax import multihost

    error = multihost.start_if_asked(argv)
    if error is not None:
        raise ConfigError(error)


def train_command(argv: list[str]) -> int:
    """``metajax train LEARNER [options]``."""
    if argv[:1] in (["-h"], ["--help"]):
        print(_train_overview())
        return 0
    _start_multihost_if_asked(argv[1:])
    learner_name, run, train_config, built = check_train_args(argv)
    learner, env, tasks, learner_config = built
    metadata = run_metadata(learner_name, run, train_config, learner_config)
    from metajax.train import train

    state, history = train(learner, train_config, learner_config.num_tasks, metadata)
    evaluate_and_report(learner, state, env, tasks, run, Path(train_config.run_dir), seed=0)
    return 0


@dataclasses.dataclass(frozen=True)
class EvaluateArgs:
    """Options of ``metajax evaluate RUN_DIR``."""

    eval_tasks: int = 1000  # held-out tasks to evaluate
    seed: int = 0  # seed of the evaluation's keys (training evaluates with 0)


EVALUATE_SUMMARY = (
    "Few-shot evaluation of the latest checkpoint of RUN_DIR (a folder written by `metajax "
    "train`) on held-out tasks; writes eval.md, eval.json and eval.png there."
)


def _help_asked(argv: list[str], args_class: type, prog: str, description: str) -> None:
    """Prints the help of ``args_class`` and exits 0 when argv asks for it anywhere."""
    if "-h" in argv or "--help" in argv:
        import tyro

        tyro.cli(args_class, args=["--help"], prog=prog, description=description)


def _positional_command(argv: list[str], args_class: type, prog: str, summary: str, need: str):
    """``(positional, options)`` of ``prog POSITIONAL [--options]``; help and a missing
    positional handled (``need`` says what is missing, e.g. "evaluate needs a run directory")."""
    _help_asked(argv, args_class, prog, summary)
    if not argv or argv[0].startswith("-"):
        raise ConfigError(need)
    import tyro

    return argv[0], tyro.cli(args_class, args=argv[1:], prog=prog, description=summary)


def evaluate_command(argv: list[str]) -> int:
    """``metajax evaluate RUN_DIR``: restores the latest checkpoint and evaluates it."""
    _help_asked(argv, EvaluateArgs, "metajax evaluate RUN_DIR", EVALUATE_SUMMARY)
    if not argv or argv[0].startswith("-"):
        raise ConfigError("evaluate needs a run directory (one written by `metajax train`)")
    run_dir, rest = Path(argv[0]), argv[1:]
    metadata_path = run_dir / "run.json"
    if not metadata_path.exists():
        raise ConfigError(f"{run_dir} is not a metajax run directory (no run.json)")
    import tyro

    args = tyro.cli(
        EvaluateArgs, args=rest, prog="metajax evaluate RUN_DIR", description=EVALUATE_SUMMARY
    )
    if args.eval_tasks < 1:
        raise ConfigError(f"--eval-tasks must be at least 1, got {args.eval_tasks}")
    try:
        metadata = json.loads(metadata_path.read_text())
        run = RunArgs(**{**metadata["run"], "eval_tasks": args.eval_tasks})
        learner_name = metadata["learner"]
        learner_options = metadata["learner_config"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ConfigError(f"{metadata_path} is damaged: {error}") from None
    run = dataclasses.replace(run, env_options=tuple(run.env_options))
    learner, env, tasks, _ = build(learner_name, run, learner_options)  # lists -> tuples
    import jax

    from metajax.train import INIT_STREAM, CheckpointStore

    store = CheckpointStore(run_dir, keep=1_000_000)
    latest = store.latest_step()
    if latest is None:
        raise ConfigError(f"{run_dir} holds no checkpoint to evaluate")
    like = jax.jit(learner.init)(jax.random.fold_in(jax.random.key(0), INIT_STREAM))
    state = store.restore(latest, like)
    store.close()
    print(f"evaluating {learner_name} on {run.env} at update {latest}")
    evaluate_and_report(learner, state, env, tasks, run, run_dir, seed=args.seed)
    return 0


@dataclasses.dataclass(frozen=True)
class ListArgs:
    """``metajax list`` has no options."""


def list_command(argv: list[str]) -> int:
    """``metajax list``: learners and envs."""
    import tyro

    tyro.cli(ListArgs, args=argv, prog="metajax list", description="The learners and envs.")
    import metajax.envs as envs
    from metajax import learners

    print("learners: " + ", ".join(learners.names()))
    print("envs:")
    for name in envs.names():
        print(f"  {name:24s} {envs.describe(name)}")
    return 0


@dataclasses.dataclass(frozen=True)
class SweepArgs:
    """Options of ``metajax sweep FILE.toml``."""

    out: str | None = None  # results folder (default: runs/sweeps/<name from the file>)
    dry_run: bool = False  # check the file and every point, print the plan, train nothing


SWEEP_SUMMARY = (
    "A grid of training runs from a TOML file (e.g. benchmarks/sweeps/seeds.toml): every point "
    "trained and evaluated, with one results folder and summary."
)


def sweep_command(argv: list[str]) -> int:
    """``metajax sweep FILE.toml``: every grid point trained and evaluated, one results folder."""
    path, args = _positional_command(
        argv,
        SweepArgs,
        "metajax sweep FILE.toml",
        SWEEP_SUMMARY,
        "sweep needs a TOML file, e.g. benchmarks/sweeps/seeds.toml",
    )
    from metajax.sweep import run_sweep

    command = " ".join(["metajax", "sweep", *argv])
    run_sweep(path, out_dir=args.out, dry_run=args.dry_run, command=command)
    return 0


@dataclasses.dataclass(frozen=True)
class ProbeArgs:
    """Options of ``metajax probe RUN_DIR``."""

    tasks: int = 200  # held-out tasks: half fit the probes, the other half scores them
    seed: int = 0  # seed of the rollouts and of the task split
    out: str | None = None  # folder for probe.md, probe.json, probe.png (default: RUN_DIR)


PROBE_SUMMARY = (
    "Ridge probes of the task representation of RUN_DIR's latest checkpoint (RL²'s memory, "
    "PEARL's q(z|c), MAML's adapted parameters) on held-out tasks: R² and error of decoding "
    "the task and the exact posterior mean, beside the Bayes floor; writes probe.md, "
    "probe.json and probe.png."
)


def probe_command(argv: list[str]) -> int:
    """``metajax probe RUN_DIR``: task-inference probes of a run (``inference.probe_run``)."""
    run_dir, args = _positional_command(
        argv,
        ProbeArgs,
        "metajax probe RUN_DIR",
        PROBE_SUMMARY,
        "probe needs a run directory (one written by `metajax train`)",
    )
    from metajax.inference import probe_run

    report = probe_run(run_dir, tasks=args.tasks, seed=args.seed, out=args.out)
    print(report.to_markdown())
    print(f"probes written to {args.out or run_dir}/probe.md, probe.json, probe.png")
    return 0


COMMANDS = {
    "train": train_command,
    "evaluate": evaluate_command,
    "list": list_command,
    "sweep": sweep_command,
    "probe": probe_command,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``metajax`` and ``python -m metajax``."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    from metajax.train import TrainingDiverged

    try:
        if command not in COMMANDS:
            raise ConfigError(f"unknown command '{command}'; commands: {', '.join(COMMANDS)}")
        return COMMANDS[command](rest)
    except ConfigError as error:
        print(f"metajax: error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"metajax: training stopped: {error}", file=sys.stderr)
        return 3
