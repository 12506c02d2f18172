"""A search space, from the config's `search.params`, and a trial's settings from it.

    search.params:
      optimizer:
        lr: {low: 0.01, high: 1.0, log: true}             # a float, log-uniform (FloatDistribution)
      data:
        batch_size: {low: 32, high: 256}                  # whole numbers: an integer (IntDistribution)
      model.num_hiddens: {choices: [64, 128, 256]}        # one of these (CategoricalDistribution)

(nested or dotted alike; nested, the command line reaches each: search.params.optimizer.lr.low=0.05).

Each key is a setting of a run, as on the command line. The values a trial gets are checked
against this space before they become settings: a study's storage may be shared (a journal file
on a cluster's file system) and anyone who can write to it can enqueue a trial with values of
their own. Only the space's own keys are ever set (never one a storage names), each to a plain
value inside its range or among its choices (d2lexp.trust's rules for settings from a file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from d2lexp.errors import ConfigError
from d2lexp.trust import plain_value_problem, setting_allowed

MAX_PARAMS = 32


@dataclass(frozen=True)
class Param:
    """One setting searched over: a range (`low`..`high`, log-uniform if `log`, whole numbers if both
    ends are) or a list of `choices`."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    @property
    def integer(self) -> bool:
        return self.choices is None and all(
            isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high)
        )

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(self.choices)
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(float(self.low), float(self.high), log=self.log)

    def problem(self, value: Any) -> str | None:
        """Why `value` is not one this parameter can take; None if it is."""
        problem = plain_value_problem(value)
        if problem:
            return problem
        if self.choices is not None:
            return (
                None if any(value == c and type(value) is type(c) for c in self.choices) else "is not among its choices"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "is not a finite number"
        if self.integer and not isinstance(value, int):
            return "is not a whole number"
        return None if self.low <= value <= self.high else f"is outside [{self.low}, {self.high}]"


SPEC_KEYS = {"low", "high", "log", "choices"}


def _flatten(params: dict[str, Any], prefix: str = "", depth: int = 0) -> Any:
    """(dotted key, spec) of each parameter: a key is written nested (`optimizer: {lr: {low: ...}}`,
    which the command line can reach: `search.params.optimizer.lr.low=0.05`,
    `+search.params.model.num_hiddens={choices: [64, 128]}`) or dotted (`optimizer.lr: {low: ...}`)."""
    for key, spec in params.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(spec, dict) and spec and not set(spec) & SPEC_KEYS and depth < 8 and isinstance(key, str):
            yield from _flatten(spec, full, depth + 1)
        else:
            yield full, spec


def parse_space(params: dict[str, Any]) -> list[Param]:
    """The search space of `search.params`; ConfigError (one paragraph) for a malformed one."""
    if not params:
        raise ConfigError("search.params is empty: give the settings to search over, e.g. search.params "
                          "'{optimizer.lr: {low: 0.01, high: 1.0, log: true}}', or choose a preset: hparams_search=d2l_random.")  # fmt: skip
    flat = dict(_flatten(params))
    if len(flat) > MAX_PARAMS:
        raise ConfigError(f"search.params holds {len(flat)} settings; at most {MAX_PARAMS}.")
    space = []
    for key, spec in flat.items():
        where = f"search.params.{key}"
        if not isinstance(key, str) or not setting_allowed(key):
            raise ConfigError(f"{where}: a search sets a run's model, data, augmentation, init, task, optimizer, "
                              "scheduler, seed or training settings (optimizer.lr, data.batch_size, ...), not this.")  # fmt: skip
        if not isinstance(spec, dict) or not (set(spec) <= SPEC_KEYS):
            raise ConfigError(
                f"{where} is {{low: ..., high: ..., log: true|false}} or {{choices: [...]}}, got {spec!r}."
            )
        if "choices" in spec:
            choices = spec["choices"]
            if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
                raise ConfigError(f"{where}.choices is a list of values, alone, got {spec!r}.")
            if any(plain_value_problem(c) or isinstance(c, list) for c in choices):
                raise ConfigError(f"{where}.choices are plain values (numbers, strings, booleans), got {choices!r}.")
            space.append(Param(key, choices=tuple(choices)))
            continue
        low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
        if not numbers or not low < high or not isinstance(log, bool) or (log and low <= 0):
            raise ConfigError(f"{where} needs numbers low < high (and low > 0 with log: true), got {spec!r}.")
        space.append(Param(key, low=low, high=high, log=log))
    return space


def suggest(trial: Any, space: list[Param]) -> dict[str, Any]:
    """The trial's value of each parameter, checked against the space (see the module's docstring)."""
    from d2lexp.trust import UntrustedFileError

    values = {}
    for param in space:
        value = trial._suggest(param.key, param.distribution())
        if param.integer and isinstance(value, float) and value.is_integer():
            value = int(value)
        problem = param.problem(value)
        if problem:
            raise UntrustedFileError(
                f"The study's trial {trial.number} would set {param.key}={str(value)[:60]!r}, which {problem}: the "
                "study's storage holds a trial this search did not make (it may be shared, and was written by "
                "someone else). The trial is refused."
            )
        values[param.key] = value
    return values


def overrides(values: dict[str, Any]) -> list[str]:
    """A trial's settings as command-line overrides (`optimizer.lr=0.0312...`), floats in full."""

    def text(value: Any) -> str:
        if isinstance(value, str):
            from d2lexp.overrides import hydra_quoted

            return hydra_quoted(value)
        return "null" if value is None else repr(value).lower() if isinstance(value, bool) else repr(value)

    return [f"{key}={text(value)}" for key, value in values.items()]
