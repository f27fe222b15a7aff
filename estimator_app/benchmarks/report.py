"""The benchmark's cross-suite ratios: per-model merge, the issue's targets, and a bar chart.

Suites return ratios as {name: float | str | int} plus, per model, {model: {ratio: float}}.
scripts/benchmark.py merges them here and adds writer_vs_naive (measured once, model-free) to
every model, so the JSON's top-level `ratios` holds per model: input_overhead, vs_keras_fit,
vs_feed_dict and writer_vs_naive.
"""

from typing import Dict, List, Mapping, MutableMapping, Sequence

from estimator_app.benchmarks import harness

MODEL_RATIOS = ("input_overhead", "vs_keras_fit", "vs_feed_dict", "writer_vs_naive")
# ratio -> (comparison, bound) from the issue: input_overhead is a fraction lost (<=), the
# others are throughput ratios ours / theirs (>=).
TARGETS = {
    "input_overhead": ("<=", 0.05),
    "vs_keras_fit": (">=", 1.2),
    "vs_feed_dict": (">=", 1.0),
    "writer_vs_naive": (">=", 1.8),
}


def merge_ratios(into: MutableMapping[str, object], ratios: Mapping[str, object]) -> None:
  """Adds one suite's ratios; per-model dicts are merged key by key, not replaced."""
  for key, value in ratios.items():
    if isinstance(value, Mapping) and isinstance(into.get(key), MutableMapping):
      into[key].update(value)
    else:
      into[key] = dict(value) if isinstance(value, Mapping) else value


def add_model_ratios(ratios: MutableMapping[str, object],
                     figures: Sequence[harness.Figure]) -> None:
  """Copies writer_vs_naive (parallel writer / naive loop, from the write suite's figures) into
  every model's ratios, so each model carries the issue's four ratios."""
  med = {f.name: f.median for f in figures}
  if "write/parallel_writer" not in med or "write/naive_tf_writer" not in med:
    return
  writer = med["write/parallel_writer"] / med["write/naive_tf_writer"]
  models = [k for k, v in ratios.items() if isinstance(v, MutableMapping)]
  for model in models:
    ratios[model]["writer_vs_naive"] = writer


def flat_ratios(ratios: Mapping[str, object]) -> Dict[str, float]:
  """Every float ratio, and the per-model MODEL_RATIOS named "<model> <ratio>" (for the printed
  table; the serve suite's per-model latencies are in the table already)."""
  out = {}
  for key, value in ratios.items():
    if isinstance(value, Mapping):
      out.update({f"{key} {k}": float(value[k]) for k in MODEL_RATIOS if k in value})
    elif isinstance(value, float):
      out[key] = value
  return out


def target_rows(ratios: Mapping[str, object]) -> List[tuple]:
  """(model, ratio, value, comparison, bound, met) for each model ratio that has a target."""
  rows = []
  for model, values in ratios.items():
    if not isinstance(values, Mapping):
      continue
    for name in MODEL_RATIOS:
      if name in values:
        op, bound = TARGETS[name]
        value = float(values[name])
        rows.append((model, name, value, op, bound,
                     value <= bound if op == "<=" else value >= bound))
  return rows


def targets_summary(ratios: Mapping[str, object]) -> str:
  """One line per model ratio: its value, the issue's target and met/MISSED ("" if none)."""
  rows = target_rows(ratios)
  if not rows:
    return ""
  lines = ["", "targets (issue 8):"]
  for model, name, value, op, bound, met in rows:
    lines.append(f"  {model:8s} {name:16s} {value:6.3f}  target {op} {bound:g}  "
                 f"{'met' if met else 'MISSED'}")
  return "\n".join(lines)


def chart(ratios: Mapping[str, object], path: str) -> bool:
  """Writes a bar chart of the per-model ratios with their targets to `path` (PNG).

  Returns:
    False (and writes nothing) when no model ratios were measured.
  """
  rows = target_rows(ratios)
  if not rows:
    return False
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  models = sorted({r[0] for r in rows})
  names = [n for n in MODEL_RATIOS if any(r[1] == n for r in rows)]
  value = {(r[0], r[1]): r[2] for r in rows}
  fig, ax = plt.subplots(figsize=(8, 4))
  width = 0.8 / len(models)
  for i, model in enumerate(models):
    xs = [j + i * width for j in range(len(names))]
    ax.bar(xs, [value.get((model, n), 0.0) for n in names], width, label=model)
  for j, n in enumerate(names):
    ax.hlines(TARGETS[n][1], j - width / 2, j + 0.8 - width / 2, colors="k", linestyles="--")
  ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
  ax.set_xticklabels([f"{n}\n(target {TARGETS[n][0]} {TARGETS[n][1]:g})" for n in names])
  ax.set_ylabel("ratio (ours / theirs; overhead: fraction)")
  ax.set_title("benchmark ratios per model (dashed: issue target)")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return True
