"""Side-by-side measurement: variants alternated in one run, reported as medians and ratios.

These machines are noisy, so absolute times are not comparable across runs; a benchmark here
runs every variant of a comparison in the same process settings, alternating them
(A B A B A B ...), excludes warm-up, and reports each figure as median [min, max] over the
repetitions plus ratios between variants.
"""

import dataclasses
import json
import statistics
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Figure:
  """One measured quantity of one variant.

  Attributes:
    suite: e.g. "input", "write", "train".
    name: what was measured, e.g. "dnn/tfrecord_input_fn".
    unit: e.g. "examples/s", "ms".
    median, low, high: over the repetitions.
    samples: every repetition's value.
  """
  suite: str
  name: str
  unit: str
  median: float
  low: float
  high: float
  samples: Sequence[float]


def alternate(variants: Mapping[str, Callable[[], float]], repetitions: int = 3,
              warmup: int = 1) -> Dict[str, List[float]]:
  """Runs each variant `warmup` times (discarded), then `repetitions` rounds A B C, A B C, ...

  Args:
    variants: name -> a function that performs one measurement and returns its value
      (e.g. examples/s). The function does its own timing of the steady-state part.
    repetitions: measured rounds (>= 3 for a meaningful median).
    warmup: unmeasured calls per variant before the first round.

  Returns:
    name -> the list of measured values, in round order.
  """
  for fn in variants.values():
    for _ in range(warmup):
      fn()
  out = {name: [] for name in variants}
  for _ in range(repetitions):
    for name, fn in variants.items():
      out[name].append(float(fn()))
  return out


class StepTimer(tf.estimator.SessionRunHook):
  """Times the training steps after the first `skip` (graph building, initialisation,
  warm-up); `seconds` is set when the session ends."""

  def __init__(self, skip: int):
    self.skip, self.steps, self.start, self.seconds = skip, 0, None, None

  def after_run(self, run_context, run_values):
    self.steps += 1
    if self.steps == self.skip:
      self.start = time.perf_counter()

  def end(self, session):
    self.seconds = time.perf_counter() - self.start


def figure(suite: str, name: str, unit: str, samples: Sequence[float]) -> Figure:
  return Figure(suite, name, unit, statistics.median(samples), min(samples), max(samples),
                tuple(samples))


def rate(count: int, fn: Callable[[], object]) -> float:
  """Calls fn once and returns count / seconds it took."""
  start = time.perf_counter()
  fn()
  return count / (time.perf_counter() - start)


def format_table(figures: Sequence[Figure], ratios: Optional[Mapping[str, float]] = None) -> str:
  """A plain-text table of figures (median [min, max]) followed by the ratios."""
  rows = [("suite", "measurement", "median", "min", "max", "unit")]
  for f in figures:
    fmt = ",.2f" if f.unit == "ms" else ",.1f"  # sub-millisecond latencies need the digit
    rows.append((f.suite, f.name, f"{f.median:{fmt}}", f"{f.low:{fmt}}", f"{f.high:{fmt}}", f.unit))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                     enumerate(zip(r, widths))) for r in rows]
  lines.insert(1, "-" * len(lines[0]))
  if ratios:
    lines.append("")
    lines.extend(f"ratio {k}: {v:.2f}" for k, v in ratios.items())
  return "\n".join(lines)


def to_json(figures: Sequence[Figure], ratios: Mapping[str, object], meta: Mapping[str, object]) -> str:
  return json.dumps({"meta": dict(meta), "ratios": dict(ratios),
                     "figures": [dataclasses.asdict(f) | {"samples": list(f.samples)}
                                 for f in figures]}, indent=2)
