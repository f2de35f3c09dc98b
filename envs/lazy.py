"""Factories imported on first use, so ``import metajax.envs`` stays fast and quiet.

brax (and mujoco's mjx under it) takes seconds to import and prints warnings; the registry
names its families through ``LazyFactory`` so that only ``make`` or ``options`` of such a
family imports it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable


class LazyFactory:
    """A callable that imports ``module.attr`` when first called or inspected."""

    def __init__(self, module: str, attr: str):
        self.module = module
        self.attr = attr

    def load(self) -> Callable:
        """The factory itself (imports its module)."""
        return getattr(importlib.import_module(self.module), self.attr)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.load())

    def __call__(self, *args, **kwargs):
        return self.load()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LazyFactory({self.module}.{self.attr})"
