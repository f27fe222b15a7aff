r"""Loss/accuracy curves of one or more runs, from their event files, as a PNG and a CSV.

  ./bazelw run //scripts:report -- --runs=runs/digits --output=curves.png
  ./bazelw run //scripts:report -- --runs=runs/lr_a,runs/lr_b --output=compare.png \
      --tags=loss,accuracy,global_step/sec

Each run is a model_dir: training curves come from the model_dir itself, evaluations from its
eval/ and eval_<name>/ sub-directories. Runs are overlaid, one colour each. The CSV (default:
the PNG's path with .csv) has one row per point: run,source,tag,step,value,wall_time.
Relative paths are taken from the directory you ran the command in.
"""

import os
import sys

from scripts import cli  # first: it quiets TensorFlow before anything imports it

from absl import flags

from estimator_app import paths
from scripts import source_flags

# Only modules that do not import TensorFlow above, so --help and flag errors answer at once;
# config_from_flags() and main() import the reporting library (and TensorFlow), and --tags'
# default is read from reporting's source.

_RUNS = flags.DEFINE_list("runs", None, "Comma-separated run directories (model_dirs) to overlay.")
_OUTPUT = flags.DEFINE_string("output", "curves.png", "PNG to write.")
_CSV = flags.DEFINE_string("csv", None, "CSV of the plotted numbers (default: --output with .csv).")
_TAGS = flags.DEFINE_list(
    "tags", list(source_flags.literal("estimator_app.analysis.reporting", "DEFAULT_TAGS")),
    "Tags to plot, one panel each: names or globs ('*' for all); 'accuracy' also matches "
    "'metrics/accuracy'.")
_TITLE = flags.DEFINE_string("title", None, "Figure title (default: the run names).")


def config_from_flags():
  """Reads the flags once into the report_job.ReportConfig passed down.

  Raises:
    reporting.ReportError: --runs is empty.
  """
  from estimator_app.analysis import report_job  # pylint: disable=g-import-not-at-top
  from estimator_app.analysis import reporting  # pylint: disable=g-import-not-at-top
  if not _RUNS.value:
    raise reporting.ReportError("--runs is required: comma-separated run directories")
  output = paths.resolve_path(_OUTPUT.value)
  csv = paths.resolve_path(_CSV.value) if _CSV.value else os.path.splitext(output)[0] + ".csv"
  return report_job.ReportConfig(runs=tuple(paths.resolve_path(r) for r in _RUNS.value),
                                 output=output, csv=csv,
                                 tags=tuple(_TAGS.value or reporting.DEFAULT_TAGS),
                                 title=_TITLE.value)


def main(argv):
  del argv
  from estimator_app.analysis import report_job  # pylint: disable=g-import-not-at-top
  from estimator_app.analysis import reporting  # pylint: disable=g-import-not-at-top
  cfg = config_from_flags()
  result = report_job.make_report(cfg)
  for tag in result.missing_tags:
    have = sorted({t for r in result.runs for t in r.tags()})
    print(f"note: tag {tag!r} is in none of the runs; they have: {', '.join(have)}",
          file=sys.stderr)
  print("\n".join(reporting.summary_lines(result.runs, result.tags)))
  print(f"\nwrote {cfg.output} ({len(result.tags)} panels: {', '.join(result.tags)})")
  print(f"wrote {cfg.csv} ({result.num_rows} rows)")


if __name__ == "__main__":
  flags.mark_flag_as_required("runs")
  cli.run(main)
