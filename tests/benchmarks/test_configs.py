"""Every shipped benchmark config parses: known env, env options, learner options and values.

GPU configs are never run by CI, so a misspelt option would only show on a lease.
"""

from pathlib import Path

import pytest

from benchmarks import maml_nav2d, pearl_point_robot
from metajax import envs, learners
from metajax.runs import parse_env_options
from metajax.sweep import load_sweep, split_options

CONFIGS = sorted((Path(pearl_point_robot.__file__).parent / "configs").glob("*.toml"))


def check_env(name: str, options: dict) -> None:
    # xland-* families are registered only when xminigrid is installed (an optional extra)
    if name.startswith("xland-") and name not in envs.names():
        return
    assert name in envs.names()
    assert set(options) <= set(envs.options(name))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_benchmark_config_parses(path):
    if path.stem.startswith("pearl_"):
        env_name, env_options, config, run = pearl_point_robot.load_config(path)
        check_env(env_name, env_options)
        assert config.initial_steps > 0 and run.get("iterations", 1) > 0
    elif path.stem.startswith("maml_"):
        spec = maml_nav2d.load_spec(path)
        check_env(spec["env"]["name"], spec["env"]["options"])
        maml_nav2d.learner_config(spec)  # an unknown option exits (SystemExit fails the test)
    else:  # the sweep format (`python -m metajax sweep`)
        spec = load_sweep(path)
        run, _, learner_options = split_options(spec.learner, spec.base)
        check_env(run.env, parse_env_options(run.env_options))
        config_cls, _ = learners.get(spec.learner)
        config_cls(**learner_options)


def test_every_config_is_covered():
    assert len(CONFIGS) >= 10
    assert {p.stem.split("_")[0] for p in CONFIGS} <= {"pearl", "maml", "rl2", "varibad"}
