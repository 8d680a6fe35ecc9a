"""minimallm's benchmarks: scenario families against the project's mock server, with
peer clients in the same run. Run ``python -m benchmarks --help``; the scenarios are in
``benchmarks/scenarios.py`` and the method in ``benchmarks/README.md``."""
