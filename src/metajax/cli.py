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

from metajax.errors import ConfigError
from metajax.runs import RunArgs, build, evaluate_and_report, run_metadata

USAGE = """usage: metajax COMMAND ...

commands:
  train LEARNER --env ENV [options]   train a learner (metajax train LEARNER --help)
  evaluate RUN_DIR [options]          few-shot evaluation of a run's latest checkpoint
  list                                the learners and envs metajax knows
  sweep FILE.toml [--out DIR]         a grid of training runs from a TOML file (metajax.sweep)
"""


def _flat_dataclass(learner_config: type) -> type:
    """One dataclass with the run's, the trainer's and the learner's fields, for tyro."""
    from metajax.train import TrainConfig

    fields = []
    seen: dict[str, str] = {}
    for owner in (RunArgs, TrainConfig, learner_config):
        for field in dataclasses.fields(owner):
            if field.name in seen:
                raise RuntimeError(
                    f"option '{field.name}' of {owner.__name__} clashes with {seen[field.name]}"
                )
            seen[field.name] = owner.__name__
            default = (
                field.default
                if field.default is not dataclasses.MISSING
                else field.default_factory()  # type: ignore[misc]
            )
            fields.append((field.name, field.type, dataclasses.field(default=default)))
    return dataclasses.make_dataclass("TrainArgs", fields, frozen=True)


def _split(args, owner: type) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(owner)}


def _start_multihost_if_asked(argv: list[str]) -> None:
    """Joins a multi-process run first: jax.distributed must start before any JAX backend use
    (importing gymnax already creates one), so its flags are read before anything else."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    known, _ = parser.parse_known_args(argv)
    if known.coordinator is not None:
        from metajax import distributed

        distributed.initialize_multihost(known.coordinator, known.num_processes, known.process_id)


def train_command(argv: list[str]) -> int:
    """``metajax train LEARNER [options]``."""
    from metajax import learners

    if not argv or argv[0].startswith("-"):
        known = ", ".join(learners.names())
        raise ConfigError(f"train needs a learner name first; known: {known}")
    learner_name, rest = argv[0], argv[1:]
    _start_multihost_if_asked(rest)
    config_cls, _ = learners.get(learner_name)
    import tyro

    from metajax.train import TrainConfig

    flat = tyro.cli(
        _flat_dataclass(config_cls),
        args=rest,
        prog=f"metajax train {learner_name}",
        config=(tyro.conf.FlagConversionOff,),
    )
    run = RunArgs(**_split(flat, RunArgs))
    train_config = TrainConfig(**_split(flat, TrainConfig))
    learner_options = _split(flat, config_cls)
    learner, env, tasks, learner_config = build(learner_name, run, learner_options)
    metadata = run_metadata(learner_name, run, train_config, learner_config)
    from metajax.train import train

    state, history = train(learner, train_config, learner_config.num_tasks, metadata)
    evaluate_and_report(learner, state, env, tasks, run, Path(train_config.run_dir), seed=0)
    return 0


@dataclasses.dataclass(frozen=True)
class EvaluateArgs:
    """Options of ``metajax evaluate RUN_DIR``."""

    eval_tasks: int = 1000  # held-out tasks to evaluate
    seed: int = 0


def evaluate_command(argv: list[str]) -> int:
    """``metajax evaluate RUN_DIR``: restores the latest checkpoint and evaluates it."""
    if not argv or argv[0].startswith("-"):
        raise ConfigError("evaluate needs a run directory (one written by `metajax train`)")
    run_dir, rest = Path(argv[0]), argv[1:]
    metadata_path = run_dir / "run.json"
    if not metadata_path.exists():
        raise ConfigError(f"{run_dir} is not a metajax run directory (no run.json)")
    import tyro

    args = tyro.cli(EvaluateArgs, args=rest, prog="metajax evaluate RUN_DIR")
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


def list_command(argv: list[str]) -> int:
    """``metajax list``: learners and envs."""
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


def sweep_command(argv: list[str]) -> int:
    """``metajax sweep FILE.toml``: every grid point trained and evaluated, one results folder."""
    if not argv or argv[0].startswith("-"):
        raise ConfigError("sweep needs a TOML file, e.g. benchmarks/sweeps/seeds.toml")
    import tyro

    from metajax.sweep import run_sweep

    args = tyro.cli(SweepArgs, args=argv[1:], prog="metajax sweep FILE.toml")
    command = " ".join(["metajax", "sweep", *argv])
    run_sweep(argv[0], out_dir=args.out, dry_run=args.dry_run, command=command)
    return 0


COMMANDS = {
    "train": train_command,
    "evaluate": evaluate_command,
    "list": list_command,
    "sweep": sweep_command,
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
