"""Benchmarks: what distillation costs (overhead) and what it buys (efficacy).

The command-line entry points are
``tools/analysis_tools/benchmark_distill.py`` (overhead),
``tools/analysis_tools/benchmark_efficacy.py`` (efficacy) and
``tools/demo.py`` (a one-seed efficacy run: the project's main job).
"""
