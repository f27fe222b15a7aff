r"""Benchmarks measured side by side in one run, printed as a table of medians and ratios.

  ./bazelw run //scripts:benchmark -- --suite=input
  ./bazelw run //scripts:benchmark -- --suite=all --output=/tmp/bench.json

Suites live in estimator_app/benchmarks/; adding one is one module plus one line in _SUITES.
Each suite's run(options) returns (figures, ratios).
"""

import json
import os
import platform
import time

from absl import app
from absl import flags

from estimator_app.benchmarks import harness
from estimator_app.benchmarks import options as options_lib

# name -> "module path" of a suite; imported lazily so one suite's deps don't slow another.
_SUITES = {
    "accuracy": "estimator_app.benchmarks.accuracy_suite",
    "input": "estimator_app.benchmarks.input_suite",
    "write": "estimator_app.benchmarks.write_suite",
}

_SUITE = flags.DEFINE_string("suite", "all", "Comma-separated suites, or 'all'.")
_REPETITIONS = flags.DEFINE_integer("repetitions", 3, "Measured rounds per variant (>= 3).")
_SCALE = flags.DEFINE_float("scale", 1.0, "Multiplies data sizes and step counts (0.1 for a smoke run).")
_OUTPUT = flags.DEFINE_string("output", None, "Write every figure and ratio here as JSON.")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Scratch directory (default: a temp dir).")


def main(argv):
  del argv
  import importlib
  import tempfile
  names = list(_SUITES) if _SUITE.value == "all" else _SUITE.value.split(",")
  unknown = [n for n in names if n not in _SUITES]
  if unknown:
    raise app.UsageError(f"unknown --suite {unknown}; known: {', '.join(_SUITES)}, all")
  work_dir = _WORK_DIR.value or tempfile.mkdtemp(prefix="benchmark-")
  opts = options_lib.BenchmarkOptions(repetitions=_REPETITIONS.value, scale=_SCALE.value,
                                      work_dir=work_dir)
  figures, ratios = [], {}
  for name in names:
    suite = importlib.import_module(_SUITES[name])
    f, r = suite.run(opts)
    figures.extend(f)
    ratios.update(r)
  print(harness.format_table(figures, {k: v for k, v in ratios.items() if isinstance(v, float)}))
  if _OUTPUT.value:
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(),
            "cpus": os.cpu_count(), "suites": names, "repetitions": opts.repetitions}
    with open(_OUTPUT.value, "w") as f:
      f.write(harness.to_json(figures, ratios, meta))
    print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
