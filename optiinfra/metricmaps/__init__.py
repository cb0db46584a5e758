"""Metric-name mapping tables, one CSV per source, read by :mod:`optiinfra.metrics`.

Kept as a package so the CSVs ship with the distribution (setuptools package data).
"""
