"""PNG figures of runs: training curves (several runs overlaid) and confusion matrices.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot): no display is needed, and
no global figure state is shared between callers or threads.
"""

import io
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from estimator_app.analysis import reporting

# One colour per run (tab10), one look per source: training summaries are dense, so a line;
# evaluations are few points, so big markers that stay visible on top of the training line.
_RUN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf")
_EVAL_MARKERS = ("s", "^", "D", "v", "P", "X", "*", "h")
_DPI = 110


def _figure(**kwargs):
  """A new matplotlib Figure on the Agg canvas (no display needed).

  matplotlib is imported here, on first use: it costs every run's start-up ~0.3 s, and a run
  draws its first picture (the confusion matrix) on a worker thread after its first evaluation.
  """
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  from matplotlib.backends import backend_agg  # pylint: disable=g-import-not-at-top
  fig = mpl_figure.Figure(**kwargs)
  backend_agg.FigureCanvasAgg(fig)
  return fig


def _write_png(fig, path: str) -> str:
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=_DPI)
  parent = os.path.dirname(path)
  if parent:
    tf.io.gfile.makedirs(parent)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(buf.getvalue())
  return path


def _source_style(source: str, other_sources: List[str]) -> Dict:
  if source == reporting.TRAIN:
    return dict(linestyle="-", linewidth=1.4, marker=None, zorder=2)
  if source == "eval":  # the full evaluation: drawn biggest and on top
    return dict(linestyle="--", linewidth=1.2, marker="o", markersize=8,
                markeredgecolor="black", markeredgewidth=0.7, zorder=4)
  marker = _EVAL_MARKERS[other_sources.index(source) % len(_EVAL_MARKERS)]
  return dict(linestyle=":", linewidth=1.1, marker=marker, markersize=5,
              markeredgecolor="black", markeredgewidth=0.5, zorder=5)


def _panel_tags(runs: Sequence[reporting.RunScalars], patterns: Sequence[str]) -> List[str]:
  """Concrete tags to draw, one panel each, in the order the patterns were given."""
  tags = []
  for pattern in patterns:
    matched = sorted({s.tag for r in runs for s in r.series if reporting.tag_matches(s.tag, [pattern])})
    tags.extend(t for t in matched if t not in tags)
  return tags


def plot_curves(runs: Sequence[reporting.RunScalars], path: str,
                tags: Sequence[str] = reporting.DEFAULT_TAGS,
                title: Optional[str] = None) -> List[str]:
  """Draws one panel per tag, every run and source of that tag overlaid, and writes a PNG.

  Colours tell runs apart; line style and markers tell sources apart (training: solid line;
  full evaluation: circles on a dashed line; other eval sets: other markers, dotted). Each
  legend entry gives the curve's latest value and step.

  Args:
    runs: runs read with reporting.read_run(s).
    path: output PNG, local or gs://; parent directories are created.
    tags: tag names or globs (reporting.tag_matches), one panel per matching tag.
    title: figure title; defaults to the run names.

  Returns:
    The tags drawn, in panel order.

  Raises:
    reporting.ReportError: no tag of `tags` is in any run.
  """
  panel_tags = _panel_tags(runs, tags)
  if not panel_tags:
    reporting.check_tags(runs, tags)  # raises, listing the tags the runs do have
  other_sources = sorted({s for r in runs for s in r.sources()} - {reporting.TRAIN, "eval"})
  fig = _figure(figsize=(10.5, 1.2 + 3.3 * len(panel_tags)), layout="constrained")
  axes = fig.subplots(len(panel_tags), 1, squeeze=False)[:, 0]
  for ax, tag in zip(axes, panel_tags):
    for i, run in enumerate(runs):
      color = _RUN_COLORS[i % len(_RUN_COLORS)]
      for s in run.series:
        if s.tag != tag:
          continue
        label = s.source if len(runs) == 1 else f"{run.name} · {s.source}"
        style = _source_style(s.source, other_sources)
        if s.source == reporting.TRAIN and len(s.steps) <= 3:
          style["marker"] = "."  # a line through one or two points would be invisible
        # The latest value goes in the legend (outside the axes): labels drawn next to the
        # points collide as soon as two evaluations end at the same step.
        step, value = s.last()
        ax.plot(s.steps, s.values, color=color, label=f"{label}: {value:.4g} @ {step} "
                f"({len(s.steps)} pt{'s' if len(s.steps) != 1 else ''})", **style)
    ax.set_title(tag, fontsize=11, loc="left", fontweight="bold")
    ax.set_xlabel("global step")
    ax.set_ylabel(tag)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.03, y=0.06)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
  fig.suptitle(title or "Training curves: " + ", ".join(r.name for r in runs), fontsize=12)
  _write_png(fig, path)
  return panel_tags


def confusion_matrix_png(matrix, label_names: Sequence[str], path: str,
                         title: str = "Confusion matrix") -> str:
  """Draws a confusion matrix as a PNG.

  Cells show counts; their colour is the fraction of the true class (row), so rare classes
  read as clearly as common ones. The title gets the overall accuracy and example count.

  Args:
    matrix: [n, n] counts, rows = true label, columns = predicted label (as
      tf.math.confusion_matrix and sklearn order them).
    label_names: n class names, in label-id order.
    path: output PNG, local or gs://; parent directories are created.
    title: figure title.

  Returns:
    `path`.

  Raises:
    ValueError: the matrix is not square, does not match label_names, or has negative counts.
  """
  m = np.asarray(matrix)
  if m.ndim != 2 or m.shape[0] != m.shape[1]:
    raise ValueError(f"confusion matrix must be square [n, n], got shape {m.shape}")
  n = m.shape[0]
  if len(label_names) != n:
    raise ValueError(f"confusion matrix is {n}x{n} but {len(label_names)} label names were given")
  if n == 0 or (m < 0).any():
    raise ValueError("confusion matrix must be non-empty with non-negative counts")
  row_totals = m.sum(axis=1, keepdims=True)
  fractions = np.divide(m, row_totals, out=np.zeros(m.shape, dtype=np.float64),
                        where=row_totals > 0)
  total = int(m.sum())
  accuracy = float(np.trace(m)) / total if total else 0.0

  side = min(max(5.0, 0.6 * n + 2.5), 14.0)
  fig = _figure(figsize=(side + 1.2, side), layout="constrained")
  ax = fig.subplots()
  image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
  fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of true class (row)")
  # Past ~60 classes the names would overlap: label every k-th class.
  every = int(np.ceil(n / 60))
  ticks = np.arange(0, n, every)
  names = [str(label_names[i]) for i in ticks]
  tick_font = 9 if n <= 20 else 7 if n <= 40 else 6
  long_names = max(len(x) for x in names) > 3
  ax.set_xticks(ticks, names, fontsize=tick_font, rotation=45 if long_names else 0,
                ha="right" if long_names else "center")
  ax.set_yticks(ticks, names, fontsize=tick_font)
  ax.set_xlabel("predicted label")
  ax.set_ylabel("true label")
  if n <= 30:  # beyond that the numbers would not fit in the cells
    for i in range(n):
      for j in range(n):
        if m[i, j] or i == j:
          ax.text(j, i, f"{int(m[i, j])}" if np.issubdtype(m.dtype, np.integer) or
                  float(m[i, j]).is_integer() else f"{m[i, j]:.3g}",
                  ha="center", va="center", fontsize=8 if n <= 15 else 6,
                  color="white" if fractions[i, j] > 0.55 else "black")
  fig.suptitle(f"{title}\naccuracy {accuracy:.4f} on {total} examples", fontsize=11)
  return _write_png(fig, path)
