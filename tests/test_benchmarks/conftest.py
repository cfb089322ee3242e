"""Puts ``tools/benchmarks`` on ``sys.path`` for these tests (see
``bench_utils``, which holds the helpers: several test folders have a
``conftest.py``, so ``from conftest import ...`` would find another one)."""
import bench_utils  # noqa: F401
