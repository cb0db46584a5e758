"""``python -m optiinfra.cli``: the same as the ``optiinfra`` console script."""

import sys

from optiinfra.cli import main

sys.exit(main())
