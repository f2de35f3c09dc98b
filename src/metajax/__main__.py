"""``python -m metajax`` and the ``metajax`` script: the command line (see ``metajax.cli``).

A multi-process ``train`` joins its run before the CLI is imported: importing it (and the envs
under it) creates a JAX backend, after which ``jax.distributed`` can no longer start.
"""

import sys


def main() -> int:
    """Starts a multi-host run if the flags ask for one, then runs the command line."""
    from metajax import multihost

    if sys.argv[1:2] == ["train"]:
        error = multihost.start_if_asked(sys.argv[2:])
        if error is not None:
            print(f"metajax: error: {error}", file=sys.stderr)
            return 2
    from metajax.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
