"""The cost agent's detectors: plain functions from a context to proposals."""
