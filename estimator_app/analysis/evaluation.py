"""Full evaluation of one checkpoint on any dataset split, with a confusion matrix.

What `//scripts:evaluate` runs: resolve which checkpoint ("latest", "best" or a path), evaluate
it on every example of a split, and write the metrics as JSON and the confusion matrix as a PNG.
"""

import dataclasses
import json
import os
from typing import Any, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from estimator_app import config as config_lib
from estimator_app import estimator as estimator_lib
from estimator_app.analysis import plots
from estimator_app.checkpoints import retention
from input_fns import errors
from input_fns import files as files_lib
from input_fns import manifest as manifest_lib
from model_fns import metrics as metrics_lib

@dataclasses.dataclass(frozen=True)
class Report:
  """One checkpoint's evaluation on one split.

  Attributes:
    checkpoint: the evaluated checkpoint prefix.
    data_dir, split: what it was evaluated on.
    examples: how many examples (from the manifest).
    metrics: every scalar metric.
    confusion_matrix: [C, C] counts, rows = true class, columns = predicted class.
    label_names: the C class names.
  """
  checkpoint: str
  data_dir: str
  split: str
  examples: int
  metrics: Dict[str, float]
  confusion_matrix: Optional[np.ndarray]
  label_names: Sequence[str]

  def to_json_dict(self) -> Dict[str, Any]:
    d = dataclasses.asdict(self)
    d["label_names"] = list(self.label_names)
    if self.confusion_matrix is not None:
      d["confusion_matrix"] = self.confusion_matrix.tolist()
    return d


def evaluate(cfg: config_lib.ExperimentConfig, m: manifest_lib.Manifest, split: str,
             checkpoint: str, summary_dir: Optional[str] = None) -> Report:
  """Evaluates `checkpoint` on every example of `m`'s `split`.

  Its TensorBoard summaries go to `summary_dir`/eval (None: the run's model_dir/eval_evaluate_<split>).

  Raises:
    errors.UserInputError: the dataset's feature spec differs from the one the model was
      trained on, or the split does not exist.
  """
  m.shards(split)
  estimator_lib.check_trained_spec(cfg, m)
  result = estimator_lib.evaluate(cfg, m, split, checkpoint,
                                  name=None if summary_dir else f"evaluate_{split}",
                                  summary_dir=summary_dir)
  matrix = result.pop(metrics_lib.CONFUSION_MATRIX, None)
  scalars = {k: float(v) for k, v in result.items() if np.ndim(v) == 0}
  return Report(checkpoint=checkpoint, data_dir=m.directory, split=split,
                examples=m.count(split), metrics=scalars,
                confusion_matrix=None if matrix is None else np.asarray(matrix, np.int64),
                label_names=tuple(m.spec.label_names))


def format_report(report: Report, max_classes: int = 20) -> str:
  """Metrics and (for up to `max_classes` classes) the confusion matrix as text."""
  lines = [f"checkpoint {report.checkpoint}",
           f"data {report.data_dir} [{report.split}], {report.examples} examples"]
  for k in sorted(report.metrics):
    lines.append(f"  {k:<28} {report.metrics[k]:.5g}")
  cm = report.confusion_matrix
  if cm is not None and len(cm) <= max_classes:
    names = [n[:6] for n in report.label_names]
    width = max(6, len(str(cm.max())) + 1)
    lines.append("confusion matrix (rows: true, columns: predicted)")
    lines.append(" " * 8 + "".join(n.rjust(width) for n in names))
    for name, row in zip(names, cm):
      lines.append(name.ljust(8) + "".join(str(v).rjust(width) for v in row))
  return "\n".join(lines)


def write_report(report: Report, output_dir: str) -> Dict[str, str]:
  """Writes `evaluation.json` and `confusion_matrix.png` into output_dir; returns their paths."""
  tf.io.gfile.makedirs(output_dir)
  paths = {"json": os.path.join(output_dir, "evaluation.json")}
  with files_lib.atomic_open(paths["json"]) as f:
    json.dump(report.to_json_dict(), f, indent=2, sort_keys=True)
  if report.confusion_matrix is not None:
    paths["png"] = plots.confusion_matrix_png(
        report.confusion_matrix, report.label_names, os.path.join(output_dir, "confusion_matrix.png"),
        title=f"{os.path.basename(report.checkpoint)} on {os.path.basename(report.data_dir)} "
              f"[{report.split}]")
  return paths
