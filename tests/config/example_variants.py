"""The example configuration with its commented-out provider entries switched on.

The example ships with only ``local`` active (the other adapters arrive later); tests
that want every section filled use this variant, with the other kinds declared known.
"""

from __future__ import annotations

import re

from optiinfra.config import EXAMPLE_CONFIG

#: Kinds the full example uses; tests pass them as ``known_kinds``.
EXAMPLE_KINDS = ["local", "prometheus", "quality", "aws", "runpod"]


def full_example() -> str:
    """EXAMPLE_CONFIG with the commented provider entries (``  # - name: …``) active."""
    return re.sub(r"(?m)^  # ((?:  |- ).*)$", r"  \1", EXAMPLE_CONFIG)
