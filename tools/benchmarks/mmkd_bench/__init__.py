"""Benchmark harness of mmkd_channel (not part of the installed package).

Modules by concern:

* which runs make a benchmark: ``model_index`` (the distilled pairs and
  their published numbers), ``plan`` and ``tiny`` (teacher, baseline and
  distilled run of each pair, on real or tiny data), ``task_base``,
  ``config_edits``, ``tasks`` and ``efficacy`` (tasks trained over seeds);
* running them: ``runs`` (a run, whether it finished, what it measured)
  and ``launch`` (local processes or Slurm job scripts), ``progress``;
* summarising: ``summary`` (model-index table), ``stats`` (paired
  statistics), ``efficacy_report``, ``plots``, ``publish``;
* the overhead benchmark: ``overhead`` (results of a config) with
  ``overhead_phases`` (the timed phases), ``synthetic``, ``memory``,
  ``report``, ``profiling``; ``common`` (logger, machine description).
"""
