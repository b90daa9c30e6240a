"""Speed and memory benchmarks of the engine (not part of the default test run).

``python -m benchmarks`` runs every stage in a fresh process and
writes JSON and a markdown table; ``pytest benchmarks/ --benchmark-only`` runs the same
stages under pytest-benchmark. See docs/benchmarks.md.
"""
