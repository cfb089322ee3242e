"""Benchmark harness of mmkd_channel (not part of the installed package).

Modules by concern: ``model_index`` (the distilled pairs and their
published numbers), ``plan`` / ``tiny`` / ``tasks`` (which runs make a
benchmark), ``launch`` (running them locally or writing Slurm jobs),
``results`` / ``stats`` / ``summary`` (gathering metrics into tables),
``plots``, ``publish``; and the overhead benchmark (``overhead``,
``synthetic``, ``memory``, ``report``, ``profiling``).
"""
