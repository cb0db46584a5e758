"""OptiInfra: an autopilot for LLM inference fleets.

The core package: settings and the ``providers.yaml`` schema, domain records, the
canonical metric vocabulary, the three stores (time series, state, decision memory)
and the CLI. Nothing here imports ``providers``, ``tasks``, ``agents`` or ``flows``,
except the CLI, which is the one place that wires them together.
"""

__version__ = "0.1.0"
