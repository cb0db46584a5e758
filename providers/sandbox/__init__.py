"""The ``sandbox`` provider kind: the local sandbox fleet, collected over HTTP.

Importing the package registers the kind. See :mod:`providers.sandbox.adapter` for what
it collects and :mod:`providers.sandbox.options` for its ``options:``.
"""

from providers.sandbox.adapter import SANDBOX_LABELS, SandboxProvider
from providers.sandbox.control import SandboxServer, SandboxUnavailable
from providers.sandbox.options import SandboxOptions

__all__ = [
    "SANDBOX_LABELS",
    "SandboxOptions",
    "SandboxProvider",
    "SandboxServer",
    "SandboxUnavailable",
]
