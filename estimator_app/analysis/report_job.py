"""The report job: loss/accuracy curves of one or more runs as a PNG and a CSV.

Entry point: `make_report(ReportConfig)`, what //scripts:report runs. The runs' scalars are
read by `reporting`, drawn by `plots`.
"""

import dataclasses
from typing import List, Optional, Sequence, Tuple

from estimator_app.analysis import plots
from estimator_app.analysis import reporting


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  """What to report.

  Attributes:
    runs: run directories, absolute.
    output: PNG path, absolute.
    csv: CSV path, absolute.
    tags: tag names or globs.
    title: figure title, or None for the run names.
  """
  runs: Tuple[str, ...]
  output: str
  csv: str
  tags: Tuple[str, ...] = reporting.DEFAULT_TAGS
  title: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ReportResult:
  """What make_report wrote and found.

  Attributes:
    runs: the runs read.
    tags: the tags drawn, one panel each.
    missing_tags: requested tags (or globs) that none of the runs have.
    num_rows: CSV data rows written.
  """
  runs: Tuple[reporting.RunScalars, ...]
  tags: Tuple[str, ...]
  missing_tags: Tuple[str, ...]
  num_rows: int


def _missing(runs: Sequence[reporting.RunScalars], tags: Sequence[str]) -> List[str]:
  return [t for t in tags if not any(r.select([t]) for r in runs)]


def make_report(cfg: ReportConfig) -> ReportResult:
  """Reads the runs, draws the PNG and writes the CSV.

  A requested tag that no run has is skipped (a run stopped before its first evaluation has
  no accuracy yet) and reported in the result; if none of them is found, nothing is written.

  Raises:
    reporting.ReportError: a run directory without event files, or none of the tags found.
  """
  runs = reporting.read_runs(cfg.runs)
  missing = _missing(runs, cfg.tags)
  if len(missing) == len(cfg.tags):
    reporting.check_tags(runs, cfg.tags)  # raises, naming the tags the runs do have
  present = [t for t in cfg.tags if t not in missing]
  drawn = plots.plot_curves(runs, cfg.output, tags=present, title=cfg.title)
  num_rows = reporting.write_csv(runs, cfg.csv, patterns=present)
  return ReportResult(tuple(runs), tuple(drawn), tuple(missing), num_rows)
