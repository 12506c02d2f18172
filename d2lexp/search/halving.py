"""The book's synchronous successive halving (d2l.ai 1.0, section 19.4), run by the search's driver.

Rungs r_min, r_min eta, r_min eta^2, ... up to r_max (a last rung of its own if r_max is not on
that ladder: 2, 4, 8, 10 epochs for the book's r_min 2, r_max 10, eta 2). All `search.trials`
trials train to the first rung; the best 1/eta of them (by the objective) go on to the next, and so
on; the others are pruned where they stopped. A trial going on resumes from its own last
checkpoint: d2lexp resumes exactly, so its epochs are those of one run trained straight through
(with no schedule over the run's length: a one-cycle schedule would be made for the rung's length).
The rung's trials run on the search's workers, `search.workers` at a time.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from d2lexp.errors import ConfigError
from d2lexp.search.space import suggest
from d2lexp.search.trial import SearchJob, run_segment, trial_folder

log = logging.getLogger("d2lexp")


def rung_levels(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    """The epochs of each rung (the book's `rung_levels`)."""
    if not (isinstance(eta, int) and eta >= 2 and isinstance(min_epochs, int) and 1 <= min_epochs <= max_epochs):
        raise ConfigError(
            f"search.halving needs whole numbers 1 <= min_epochs <= max_epochs and eta >= 2, got {min_epochs}, "
            f"{max_epochs} and {eta}."
        )
    levels = [min_epochs]
    while levels[-1] * eta <= max_epochs:
        levels.append(levels[-1] * eta)
    return levels if levels[-1] == max_epochs else [*levels, max_epochs]


def successive_halving(job: SearchJob, study: Any, runner: Any, halving: Any) -> None:
    """Run the search's trials rung by rung (see the module's docstring); the study gets every
    trial's objective at each rung it reached, and how it ended (complete, pruned, failed)."""
    from optuna.trial import TrialState

    levels = rung_levels(halving.min_epochs, halving.max_epochs, halving.eta)
    live = [study.ask() for _ in range(job.trials)]
    values = {trial.number: suggest(trial, list(job.space)) for trial in live}
    for rung, epochs in enumerate(levels):
        last = rung == len(levels) - 1
        log.info("Rung %d of %d: %d trials to epoch %d", rung + 1, len(levels), len(live), epochs)
        results = runner.run([(run_segment, (job, t.number, values[t.number], epochs, last)) for t in live])
        scored = []
        for trial, result in zip(live, results):
            value = result.get("value")
            if result.get("status") == "interrupted":
                raise_interrupted(result)
            if result.get("status") != "done" or not isinstance(value, float) or not math.isfinite(value):
                log.error(
                    "Trial %d failed at rung %d: %s", trial.number, rung + 1, result.get("error", result.get("status"))
                )
                study.tell(trial, state=TrialState.FAIL)
                continue
            trial.report(value, step=epochs)
            scored.append((value, trial))
        if last:
            for value, trial in scored:
                study.tell(trial, value)
            return
        scored.sort(key=lambda pair: -pair[0] if job.maximize else pair[0])
        kept = max(1, len(live) // halving.eta)
        for _, trial in scored[kept:]:
            study.tell(trial, state=TrialState.PRUNED)
            mark_pruned(trial_folder(job, trial.number), epochs)
        live = [trial for _, trial in scored[:kept]]
        if not live:
            return


def raise_interrupted(result: dict[str, Any]) -> None:
    from d2lexp.errors import RunInterrupted

    raise RunInterrupted(f"The search was stopped: a trial was {result.get('error') or 'interrupted'}.", 130)


def mark_pruned(folder: Any, epochs: int) -> None:
    """The trial's record says it was pruned, and where (its run ended `done` at that rung)."""
    from d2lexp.metrics_file import read_metrics, write_metrics

    try:
        record = read_metrics(folder)
    except (OSError, ValueError):
        return
    if isinstance(record, dict):
        record.update(status="pruned", pruned_at_epoch=epochs)
        write_metrics(folder, record)
