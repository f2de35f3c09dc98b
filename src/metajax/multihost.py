"""Joining a multi-process JAX run before anything else touches a JAX backend.

``jax.distributed.initialize`` must run before any backend use, and importing the envs (gymnax,
module-level arrays) already creates one; so the command line reads the multi-host flags and
starts here first, from a module that imports only jax and the standard library.
"""

from __future__ import annotations

import argparse

import jax

_started = False


def start(coordinator: str, num_processes: int, process_id: int) -> str | None:
    """Joins the run (CPU collectives through gloo); returns an error line instead of raising."""
    global _started
    if _started:
        return None
    if not 0 <= process_id < num_processes:
        return (
            f"process id {process_id} is outside 0..{num_processes - 1} "
            f"for {num_processes} processes"
        )
    # CPU devices talk through gloo; accelerators use their own collectives regardless
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )
    _started = True
    return None


def start_if_asked(argv: list[str]) -> str | None:
    """Starts from ``--coordinator/--num-processes/--process-id`` in ``argv`` if given; returns
    an error line for bad values (the caller reports it), None otherwise."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", default="1")
    parser.add_argument("--process-id", default="0")
    known, _ = parser.parse_known_args(argv)
    if known.coordinator is None:
        return None
    try:
        count, index = int(known.num_processes), int(known.process_id)
    except ValueError:
        return "--num-processes and --process-id must be integers"
    return start(known.coordinator, count, index)
