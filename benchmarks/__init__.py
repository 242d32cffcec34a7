"""Overhead and scale benchmarks for taskmodels, as ratios against a bare httpx call.

Run ``python -m benchmarks`` (``--smoke`` for the short CI version, ``--full`` for
the published figures). See ``benchmarks/README.md``.
"""
