"""``python -m metajax``: the command line (see ``metajax.cli``)."""

import sys

from metajax.cli import main

sys.exit(main())
