"""A run's record: what a run leaves behind for people and programs.

- `run`: RunRecord, the record's data and status, kept in metrics.json from the start
  ("running", then how the run ended);
- `metrics`: the one table of the metrics a run records (key, label, format, where each is
  shown), and what is read off a record (its summary and epoch lines, collapse, time to accuracy);
- `outputs`: what else the record is shown as: the console's lines, curves.png, the loggers' entries;
- `interrupts`: the signals that stop a run, and what each is reported as.

Programs that only read records (the sweep report, the launcher) import `metrics` and
d2lexp.metrics_file, nothing of Lightning.
"""
