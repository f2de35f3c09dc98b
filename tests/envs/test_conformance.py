"""Every registered env passes the shared conformance check."""

import pytest

import metajax.envs as envs
from tests.envs.conformance import check_env_conformance

# Small options for families that are slow at their defaults; the rest use their defaults.
SMALL_OPTIONS: dict[str, dict] = {}
# Families whose jit takes long on CPU (brax) run in the slow suite only.
SLOW_FAMILIES: set[str] = set()


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_FAMILIES else n for n in envs.names()],
)
def test_env_conformance(name):
    env, tasks = envs.make(name, **SMALL_OPTIONS.get(name, {}))
    check_env_conformance(env, tasks)


@pytest.mark.parametrize("name", ["bernoulli-bandit", "tabular-mdp"])
def test_trial_wrapper_conformance(name):
    env, tasks = envs.make(name)
    check_env_conformance(envs.TrialWrapper(env, episodes_per_trial=3), tasks)
