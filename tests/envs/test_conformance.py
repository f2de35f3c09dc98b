"""Every registered env passes the shared conformance check."""

import pytest

import metajax.envs as envs
from tests.envs.conformance import check_env_conformance

# brax families: each jit of their physics takes 10-90 s on 2 shared CPU cores
BRAX_FAMILIES = (
    "cheetah-vel",
    "cheetah-dir",
    "ant-dir",
    "ant-goal",
    "humanoid-dir",
    "walker-params",
    "hopper-params",
    "brax-ant",
    "brax-halfcheetah",
)
# Small options for families that are slow at their defaults; the rest use their defaults.
SMALL_OPTIONS: dict[str, dict] = {}
# brax families: a short horizon, so that 2 horizons + 1 random steps stay cheap
SMALL_OPTIONS.update({name: {"horizon": 10} for name in BRAX_FAMILIES})
# gymnax and XLand-MiniGrid adapters: long default horizons (200-500 steps)
SMALL_OPTIONS.update(
    {
        "gymnax-cartpole": {"horizon": 50},
        "gymnax-pendulum": {"horizon": 50},
        "xland-single-goal": {"horizon": 20},
        "minigrid-fourrooms": {"horizon": 20},
    }
)
# Families whose jit takes long on CPU (brax) run in the slow suite only.
SLOW_FAMILIES: set[str] = set()
SLOW_FAMILIES.update(BRAX_FAMILIES)
# XLand-MiniGrid evaluates every rule type at each step: its jit takes 15+ s on CPU
SLOW_FAMILIES.update({"xland-single-goal", "minigrid-fourrooms"})


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
