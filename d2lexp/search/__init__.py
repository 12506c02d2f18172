"""The book's hyperparameter search (d2l.ai 1.0, chapter 19): random search, successive halving
and ASHA, over any d2lexp run, on Optuna: `python -m d2lexp.search hparams_search=d2l_asha`.

How it is built, and why:

- **A driver of its own, not a Hydra sweeper** (command.py). Pruning needs the trial beside the
  training: each epoch's validation score goes to the study and the pruner answers before the
  next epoch. Here a trial *is* a d2lexp run (`d2lexp.train.train`) in a worker process, with the
  trial's Optuna object in that process (pruning.py). A sweeper plugin hands each batch of jobs to
  a launcher and waits for the whole batch, so ASHA's asynchrony is lost, and a job's process would
  have to find its trial again in the storage. (hydra-optuna-sweeper, the plugin before, is pinned
  to Optuna 2.)
- **Workers share one study** (trial.py): each runs Optuna's own loop (`study.optimize`) on the
  study's storage, asking for a trial whenever it is free: random search and ASHA
  (`SuccessiveHalvingPruner`) are asynchronous, as the book's sections 19.3 and 19.5 run them.
  Workers are processes on this machine (`search.workers`) or Slurm jobs (`search.launcher=slurm`),
  the same code (runner.py). The storage is a journal file in the search's own folder
  (`study.journal`, Optuna's JournalFileBackend: file locks, so workers on a cluster's shared file
  system can share it), or an RDB URL (`search.storage`).
- **Synchronous successive halving** (halving.py, section 19.4) is not a pruner: every trial of a
  rung must finish before the best go on. The driver runs it rung by rung; a promoted trial goes
  on from its own checkpoint, which d2lexp resumes exactly, so a trial trained 2 + 2 epochs is the
  run trained 4.
- **Nothing read back from the storage sets more than a trial's plain settings** (space.py): only
  the space's own keys, each checked against its range or choices.

A trial's folder is a run's folder (`<search>/trials/<number>/`: metrics.json, checkpoints, its
curves); the search's report (report.py) is a table and the book's figure of every trial's curve
and where it stopped.
"""
