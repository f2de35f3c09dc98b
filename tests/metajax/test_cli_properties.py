"""Random values for every option of every learner (and of cheap envs) through the CLI's
parse-and-validate path, ``cli.check_train_args`` (no training): each either passes or is one
line of ConfigError, or tyro's usage error (exit 2). Never a traceback."""

import dataclasses
import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metajax.envs as envs
from metajax import cli, learners
from metajax.errors import ConfigError
from metajax.runs import RunArgs
from metajax.train import TrainConfig

# cheap envs each learner accepts (no brax): the first is the one most runs use
ENVS = {
    "rl2": ("bernoulli-bandit", "tabular-mdp", "nav2d"),
    "maml": ("nav2d", "point-robot-dense", "tabular-mdp"),
    "promp": ("nav2d", "point-robot-dense"),
    "emaml": ("nav2d", "bernoulli-bandit"),
    "pearl": ("point-robot-dense", "nav2d"),
    "sac": ("point-robot-dense", "nav2d"),
    "varibad": ("point-robot-dense", "bernoulli-bandit", "tabular-mdp"),
}
OTHER_ENVS = ("bernoulli-bandit", "nav2d")  # a learner added later
NOT_VARIED = {"env", "env_options"}  # chosen below from ENVS and envs.options

ints = st.one_of(
    st.integers(-3, 70),
    st.sampled_from([0, -1, 2**31, 2**63, 10**30, -(10**30)]),
    st.integers(),
)
floats = st.one_of(
    st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf, 1e308, 5e-324]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-2, 2),
)
words = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")),  # what a shell can pass
    max_size=12,
)
names = st.sampled_from(["gru", "lstm", "relu", "tanh", "vpg", "lvc", "ppo", "trpo", "dense"])


def values_of(kind):
    """A strategy of argv tokens (a list) for an option whose default has type ``kind``."""
    if kind is bool:
        one = st.sampled_from(["True", "False"])
    elif kind is int:
        one = ints.map(str)
    elif kind is float:
        one = st.one_of(floats, ints).map(str)
    elif kind is str:
        one = st.one_of(names, words)
    else:
        one = st.one_of(ints, floats).map(str)
    garbage = words.map(lambda w: [w])
    if kind in (tuple, list):
        return st.one_of(st.lists(one, max_size=3), garbage)
    return st.one_of(one.map(lambda v: [v]), st.just(["None"]), garbage)


def option_kinds(learner) -> dict[str, type]:
    """Each option of ``metajax train LEARNER`` -> the type of its values (X of ``X | None``)."""
    config_cls, _ = learners.get(learner)
    kinds = {}
    for owner in (RunArgs, TrainConfig, config_cls):
        hints = typing.get_type_hints(owner)
        for field in dataclasses.fields(owner):
            default = field.default
            if default is dataclasses.MISSING:
                default = field.default_factory()
            if default is None:
                args = [a for a in typing.get_args(hints[field.name]) if a is not type(None)]
                default = args[0]() if args and isinstance(args[0], type) else 0.0
            if field.name not in NOT_VARIED:
                kinds[field.name] = type(default)
    return kinds


@st.composite
def train_argv(draw, learner):
    """``[learner, --env ENV, --env-options ..., --opt value ...]`` with random values."""
    env = draw(st.sampled_from(ENVS.get(learner, OTHER_ENVS)))
    argv = [learner, "--env", env]
    env_defaults = envs.options(env)
    keys = draw(st.lists(st.sampled_from(sorted(env_defaults)), max_size=2, unique=True))
    pairs = []
    for key in keys:
        token = draw(values_of(type(env_defaults[key])))
        pairs.append(f"{key}={' '.join(token)}")
    if draw(st.booleans()) and pairs:
        pairs.append(draw(words))  # maybe not KEY=VALUE
    if pairs:
        argv += ["--env-options", *pairs]
    kinds = option_kinds(learner)
    for name in draw(st.lists(st.sampled_from(sorted(kinds)), min_size=1, max_size=3, unique=True)):
        argv += ["--" + name.replace("_", "-"), *draw(values_of(kinds[name]))]
    return argv


def assert_passes_or_one_line(argv):
    try:
        cli.check_train_args(argv)
    except ConfigError as error:
        message = str(error)
        assert message and "\n" not in message, (argv, message)
    except SystemExit as exit_info:  # tyro's usage error; help if a value was "-h"
        asked_help = "-h" in argv or "--help" in argv
        assert exit_info.code == 2 or (asked_help and exit_info.code in (0, None)), argv


@pytest.mark.parametrize("learner", learners.names())
def test_random_options_pass_or_fail_in_one_line(learner):
    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(argv=train_argv(learner))
    def check(argv):
        assert_passes_or_one_line(argv)

    check()


def test_defaults_pass_on_every_cheap_env():
    for learner, env_names in ENVS.items():
        for env in env_names:
            cli.check_train_args([learner, "--env", env])


def edge_values(kind):
    if kind is int:
        return [["0"], ["-1"]]
    if kind in (tuple, list):
        return [[], ["0"], ["-1"]]
    return []


@pytest.mark.parametrize("learner", learners.names())
def test_sizes_that_pass_validation_build_the_state(learner):
    """0, -1 and () for every integer option of the learner: a ConfigError, or the learner's
    state builds (abstractly, ``jax.eval_shape``: no memory, no compute)."""
    import jax

    config_cls, _ = learners.get(learner)
    env = ENVS.get(learner, OTHER_ENVS)[0]
    for field in dataclasses.fields(config_cls):
        for tokens in edge_values(option_kinds(learner)[field.name]):
            argv = [learner, "--env", env, "--" + field.name.replace("_", "-"), *tokens]
            try:
                _, _, _, built = cli.check_train_args(argv)
            except ConfigError as error:
                assert "\n" not in str(error), argv
                continue
            jax.eval_shape(built.learner.init, jax.random.key(0))


@pytest.mark.parametrize("learner", learners.names())
def test_nan_is_never_an_accepted_value(learner):
    config_cls, _ = learners.get(learner)
    env = ENVS.get(learner, OTHER_ENVS)[0]
    for name, kind in option_kinds(learner).items():
        if kind is float and name in {f.name for f in dataclasses.fields(config_cls)}:
            with pytest.raises(ConfigError, match=f"{name} must be a number"):
                cli.check_train_args([learner, "--env", env, "--" + name.replace("_", "-"), "nan"])
