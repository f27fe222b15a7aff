r"""Benchmarks measured side by side in one run, printed as a table of medians and ratios.

  ./bazelw run //scripts:benchmark -- --suite=input
  ./bazelw run //scripts:benchmark -- --suite=all --output=/tmp/bench.json
  ./bazelw run //scripts:benchmark -- --suite=train,serve --scale=0.1   # smoke run

Suites live in estimator_app/benchmarks/; adding one is one module plus one line in _SUITES.
Each suite's run(options) returns (figures, ratios); a suite's per-model ratios are a dict under
the model's name and are merged across suites. --suite=all runs every suite except `accuracy`
(a long training run, not a speed measurement; ask for it by name). With --output=FILE.json the
JSON's top-level `ratios` holds, per model (dnn, lenet5), input_overhead, vs_keras_fit,
vs_feed_dict and writer_vs_naive, and FILE.png beside it charts them against the targets.
"""

import os
import platform
import time

from scripts import cli  # first: it quiets TensorFlow before anything imports it

from absl import flags

from estimator_app.benchmarks import options as options_lib
from input_fns import errors

# Only modules that do not import TensorFlow above, so --help and flag errors answer at once;
# main() imports the harness and the suites (and TensorFlow).

# name -> "module path" of a suite; imported lazily so one suite's deps don't slow another.
_SUITES = {
    "accuracy": "estimator_app.benchmarks.accuracy_suite",
    "input": "estimator_app.benchmarks.input_suite",
    "train": "estimator_app.benchmarks.train_suite",
    "write": "estimator_app.benchmarks.write_suite",
    "serve": "estimator_app.benchmarks.serve_suite",
    "startup": "estimator_app.benchmarks.startup_suite",
    "job": "estimator_app.benchmarks.job_suite",
}
# Suites --suite=all runs (accuracy trains to convergence: minutes, and it measures no speed).
_ALL = ("input", "train", "write", "serve", "startup", "job")

_SUITE = flags.DEFINE_string("suite", "all", "Comma-separated suites, or 'all'.")
_REPETITIONS = flags.DEFINE_integer("repetitions", 3, "Measured rounds per variant (>= 3).")
_SCALE = flags.DEFINE_float("scale", 1.0, "Multiplies data sizes and step counts (0.1 for a smoke run).")
_OUTPUT = flags.DEFINE_string("output", None, "Write every figure and ratio here as JSON.")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Scratch directory (default: a temp dir).")
_STEPS_PER_RUN = flags.DEFINE_integer(
    "steps_per_run", 20, "Training steps per session.run of the train suite's tuned Estimator "
    "variants (estimator_tfrecord, estimator_in_memory); estimator_1step always runs 1.")


def main(argv):
  del argv
  import importlib
  import tempfile
  names = list(_ALL) if _SUITE.value == "all" else _SUITE.value.split(",")
  unknown = [n for n in names if n not in _SUITES]
  if unknown:
    raise errors.UserInputError(f"--suite={_SUITE.value}: unknown {', '.join(unknown)}; "
                                f"expected a comma-separated list of {', '.join(_SUITES)}, or all")
  from estimator_app.benchmarks import harness  # pylint: disable=g-import-not-at-top
  from estimator_app.benchmarks import report  # pylint: disable=g-import-not-at-top
  from input_fns import files as files_lib  # pylint: disable=g-import-not-at-top
  work_dir = _WORK_DIR.value or tempfile.mkdtemp(prefix="benchmark-")
  opts = options_lib.BenchmarkOptions(repetitions=_REPETITIONS.value, scale=_SCALE.value,
                                      work_dir=work_dir, steps_per_run=_STEPS_PER_RUN.value)
  figures, ratios = [], {}
  for name in names:
    suite = importlib.import_module(_SUITES[name])
    f, r = suite.run(opts)
    figures.extend(f)
    report.merge_ratios(ratios, r)
  report.add_model_ratios(ratios, figures)
  print(harness.format_table(figures, report.flat_ratios(ratios)))
  targets = report.targets_summary(ratios)
  if targets:
    print(targets)
  if _OUTPUT.value:
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "host": platform.node(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "suites": names,
            "repetitions": opts.repetitions, "scale": opts.scale}
    files_lib.write_atomically(_OUTPUT.value, harness.to_json(figures, ratios, meta))
    print(f"wrote {_OUTPUT.value}")
    png = os.path.splitext(_OUTPUT.value)[0] + ".png"
    if report.chart(ratios, png):
      print(f"wrote {png}")


if __name__ == "__main__":
  cli.run(main)
