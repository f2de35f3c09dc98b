"""Learner registry: name -> (config dataclass, ``make_learner(config, env, tasks) -> Learner``).

Every learner module defines a frozen ``Config`` dataclass (with at least ``num_tasks``, the
global task batch of one update, which is sharded over devices, and ``validate(env)``) and a
``make_learner``. How to add one: ``learners/README.md``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from metajax.errors import ConfigError
from metajax.learners.base import Learner

# name -> module path; each module has `Config` and `make_learner`
_LEARNER_MODULES: dict[str, str] = {
    "rl2": "metajax.learners.rl2",
    "pearl": "metajax.learners.pearl",
    "sac": "metajax.learners.sac",
    "maml": "metajax.learners.maml",
    "promp": "metajax.learners.promp",
    "emaml": "metajax.learners.emaml",
    "varibad": "metajax.learners.varibad",
}


def names() -> list[str]:
    """The learner names the CLI accepts."""
    return sorted(_LEARNER_MODULES)


def get(name: str) -> tuple[type, Callable[..., Learner]]:
    """``(Config, make_learner)`` of the learner called ``name``."""
    if name not in _LEARNER_MODULES:
        raise ConfigError(f"unknown learner '{name}'; known learners: {', '.join(names())}")
    module = importlib.import_module(_LEARNER_MODULES[name])
    return module.Config, module.make_learner


def summary(name: str) -> str:
    """The first paragraph of the learner module's docstring, on one line (heads its --help)."""
    get(name)  # ConfigError for an unknown name
    doc = importlib.import_module(_LEARNER_MODULES[name]).__doc__ or name
    return " ".join(doc.strip().split("\n\n")[0].split())


__all__ = ["Learner", "get", "names", "summary"]
