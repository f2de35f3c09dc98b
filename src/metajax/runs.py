"""What ``metajax train``, ``metajax sweep`` and the benchmarks share about a run.

``RunArgs`` (the env and evaluation options of a run), env-option parsing, ``build`` (learner,
env and tasks from a learner name and options), the metadata written to ``run.json``,
``evaluate_and_report`` (held-out evaluation written beside the run) and ``load_toml``, the one
TOML reader of sweep and benchmark files. Heavy imports (jax, the learners) happen inside the
functions: ``metajax train`` must join a multi-host run before any JAX backend starts.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from metajax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class RunArgs:
    """Options of ``metajax train`` besides the learner's and the trainer's own."""

    env: str = "bernoulli-bandit"  # a name from `metajax list`
    env_options: tuple[str, ...] = ()  # KEY=VALUE options of the env, e.g. arms=10
    eval_tasks: int = 1000  # held-out tasks evaluated at the end (0 skips evaluation)
    coordinator: str | None = None  # multi-host: address:port of process 0
    num_processes: int = 1  # multi-host: number of processes
    process_id: int = 0  # multi-host: this process's index


def load_toml(path: str | os.PathLike) -> dict:
    """The TOML file at ``path`` as a dict; ConfigError (one line) if missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"TOML file {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None


def parse_env_options(pairs: tuple[str, ...] | list[str]) -> dict:
    """``("arms=10", "horizon=20")`` -> ``{"arms": 10, "horizon": 20}``."""
    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"env option '{pair}' is not KEY=VALUE")
        name, value = pair.split("=", 1)
        try:
            options[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[name] = value
    return options


_OPTION_KINDS = (  # (default's type, accepted types, what the message says); bool before int
    (bool, (bool,), "True or False"),
    (int, (int,), "an integer"),
    (float, (int, float), "a number"),
    ((tuple, list), (tuple, list), "a list"),
)


def check_env_option_types(env_name: str, options: dict) -> None:
    """ConfigError naming the option and the type it expects when a value's type differs
    from the type of the option's default (options without a typed default pass)."""
    import metajax.envs as envs

    if env_name not in envs.names():
        return  # envs.make says the name is unknown
    defaults = envs.options(env_name)
    for name, value in options.items():
        for kind, accepted, text in _OPTION_KINDS:
            if name in defaults and isinstance(defaults[name], kind):
                wrong_bool = isinstance(value, bool) and kind is not bool
                if wrong_bool or not isinstance(value, accepted):
                    raise ConfigError(
                        f"env option '{name}' of '{env_name}' expects {text}, got {value!r}"
                    )
                break


def env_option_strings(value: Any) -> tuple[str, ...]:
    """A TOML table ``{arms = 5}`` or list ``["arms=5"]`` as ``RunArgs.env_options``."""
    if isinstance(value, dict):
        return tuple(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    raise ConfigError(f"env_options must be a table or a list of KEY=VALUE, got {value!r}")


def option_owners(learner_name: str) -> dict[str, type]:
    """Each option of ``metajax train LEARNER`` -> the dataclass that owns it."""
    from metajax import learners
    from metajax.train import TrainConfig

    config_cls, _ = learners.get(learner_name)
    owners: dict[str, type] = {}
    for owner in (RunArgs, TrainConfig, config_cls):
        for field in dataclasses.fields(owner):
            owners[field.name] = owner
    return owners


def split_options(learner_name: str, options: dict[str, Any], train_defaults: dict | None = None):
    """``(RunArgs, TrainConfig, learner options)`` from one flat dict of train options.

    ``env_options`` may be a table or a list; other lists become tuples. ``train_defaults``
    replace TrainConfig's defaults where ``options`` does not set them.
    """
    from metajax.train import TrainConfig

    owners = option_owners(learner_name)
    parts: dict[type, dict] = {}
    for option, value in options.items():
        if option not in owners:
            raise ConfigError(f"unknown option '{option}' for learner '{learner_name}'")
        if option == "env_options":
            value = env_option_strings(value)
        elif isinstance(value, list):
            value = tuple(value)
        parts.setdefault(owners[option], {})[option] = value
    try:
        run = RunArgs(**parts.get(RunArgs, {}))
        train_config = TrainConfig(**{**(train_defaults or {}), **parts.get(TrainConfig, {})})
    except TypeError as error:
        raise ConfigError(f"bad run options: {error}") from None
    learner_options = {
        k: v
        for owner, values in parts.items()
        if owner not in (RunArgs, TrainConfig)
        for k, v in values.items()
    }
    return run, train_config, learner_options


def check_option_values(config) -> None:
    """ConfigError for values no learner accepts, whatever its own ``validate`` checks: a NaN
    (in a number or a list of numbers) and a layer size (an entry of a ``*_sizes`` option)
    below 1."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, float) and math.isnan(v) for v in values):
            raise ConfigError(f"{field.name} must be a number, got {value!r}")
        if field.name.endswith("_sizes") and any(not isinstance(v, int) or v < 1 for v in values):
            raise ConfigError(f"{field.name} must be layer sizes of at least 1, got {value!r}")


class Built(NamedTuple):
    """What ``build`` returns."""

    learner: Any  # metajax.learners.base.Learner
    env: Any  # metajax.envs.core.MetaEnv
    tasks: Any  # metajax.envs.core.TaskDistribution
    config: Any  # the learner's Config


_ENVS: dict[tuple, tuple] = {}
_BUILT: dict[tuple, Built] = {}


def build(learner_name: str, run: RunArgs, learner_options: dict, *, reuse: bool = False) -> Built:
    """``(learner, env, tasks, learner_config)`` for a learner name, a run's env and options.

    Lists in ``learner_options`` become tuples (as JSON and TOML give them). With ``reuse``
    the env and the learner are kept for later calls with equal settings, so their jitted
    functions compile once per process (a sweep's points), not once per call.
    """
    import metajax.envs as envs
    from metajax import learners

    env_key = (run.env, tuple(run.env_options))
    if reuse and env_key in _ENVS:
        env, tasks = _ENVS[env_key]
    else:
        env_options = parse_env_options(run.env_options)
        check_env_option_types(run.env, env_options)
        env, tasks = envs.make(run.env, **env_options)
        if reuse:
            _ENVS[env_key] = env, tasks
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in learner_options.items()}
    learner_key = (learner_name, env_key, tuple(sorted(options.items())))
    if reuse and learner_key in _BUILT:
        return _BUILT[learner_key]
    config_cls, make_learner = learners.get(learner_name)
    try:
        learner_config = config_cls(**options)
    except TypeError as error:
        raise ConfigError(f"bad options for learner '{learner_name}': {error}") from None
    check_option_values(learner_config)
    built = Built(make_learner(learner_config, env, tasks), env, tasks, learner_config)
    if reuse:
        _BUILT[learner_key] = built
    return built


def run_metadata(learner_name: str, run: RunArgs, train_config, learner_config) -> dict:
    """The ``run.json`` of a run: what ``metajax evaluate`` and ``--resume`` read back."""
    return {
        "learner": learner_name,
        "run": dataclasses.asdict(run),
        "train": dataclasses.asdict(train_config),
        "learner_config": dataclasses.asdict(learner_config),
    }


def evaluate_and_report(learner, state, env, tasks, run: RunArgs, run_dir: Path, seed: int = 0):
    """Evaluates ``state`` on ``run.eval_tasks`` held-out tasks (in and out of distribution).

    Process 0 prints the markdown and writes ``eval.md``, ``eval.json`` and ``eval.png`` in
    ``run_dir``. Returns the reports by split ({} when ``run.eval_tasks`` is 0).
    """
    if run.eval_tasks <= 0:
        return {}
    import jax

    from metajax.evaluate import evaluate_splits, plot_report, shots_markdown
    from metajax.train import EVAL_STREAM, to_host

    state = to_host(state)
    key = jax.random.fold_in(jax.random.key(seed), EVAL_STREAM)
    reports = evaluate_splits(learner, state, env, tasks, run.eval_tasks, key, run.env)
    if jax.process_index() != 0:
        return reports
    markdown = [f"### zero-, one- and few-shot\n\n{shots_markdown(reports)}\n"]
    for split, report in reports.items():
        markdown.append(f"### {split.replace('_', ' ')}\n\n{report.to_markdown()}\n")
    text = "\n".join(markdown)
    print(text)
    (run_dir / "eval.md").write_text(text)
    (run_dir / "eval.json").write_text(
        json.dumps({k: dataclasses.asdict(v) for k, v in reports.items()}, indent=2)
    )
    plot_report(reports, run_dir / "eval.png")
    print(f"evaluation written to {run_dir}/eval.md, eval.json, eval.png")
    return reports
