"""estimator_app.analysis.plots: the PNGs exist, have the expected layout, and show every run."""

import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from matplotlib import colors as mpl_colors
from matplotlib import image as mpl_image

from estimator_app.analysis import plots
from estimator_app.analysis import reporting
from tests.testing import finished_run

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pixels_of(image: np.ndarray, color: str, tol: float = 0.02) -> int:
  rgb = np.array(mpl_colors.to_rgb(color))
  return int((np.abs(image[..., :3] - rgb).max(axis=-1) < tol).sum())


class PlotsTest(tf.test.TestCase, parameterized.TestCase):

  def _two_runs(self):
    root = self.create_tempdir()
    dirs = []
    for i, name in enumerate(["lr_a", "lr_b"]):
      d = os.path.join(root, name)
      finished_run.write_tf1_scalars(d, {"loss": [(s, 2.0 / (s + 1) + i) for s in range(0, 200, 5)],
                                         "global_step/sec": [(s, 100.0) for s in range(10, 200, 50)]})
      finished_run.write_tf1_scalars(os.path.join(d, "eval"),
                                     {"accuracy": [(s, 0.5 + s / 500 - i / 10) for s in (50, 100, 150, 200)],
                                      "loss": [(s, 1.0 / (s + 1) + i) for s in (50, 100, 150, 200)]})
      finished_run.write_tf2_scalars(os.path.join(d, "eval_quick"),
                                     {"accuracy": [(s, 0.4 + s / 600) for s in range(20, 200, 20)]})
      dirs.append(d)
    return reporting.read_runs(dirs)

  def test_curves_overlay_every_run_one_panel_per_tag(self):
    runs = self._two_runs()
    path = os.path.join(self.create_tempdir().full_path, "sub", "curves.png")

    tags = plots.plot_curves(runs, path, tags=["loss", "accuracy"], title="two runs")

    self.assertEqual(tags, ["loss", "accuracy"])
    with open(path, "rb") as f:
      self.assertEqual(f.read(8), _PNG_MAGIC)
    image = mpl_image.imread(path)
    height, width = image.shape[:2]
    self.assertGreater(height, width * 0.6)  # two stacked panels
    # Each run is drawn in its own colour, and both are present.
    self.assertGreater(_pixels_of(image, plots._RUN_COLORS[0]), 500)
    self.assertGreater(_pixels_of(image, plots._RUN_COLORS[1]), 500)

  def test_panels_grow_with_tags_and_globs_expand(self):
    runs = self._two_runs()
    out = self.create_tempdir().full_path
    one = os.path.join(out, "one.png")
    three = os.path.join(out, "three.png")

    plots.plot_curves(runs[:1], one, tags=["loss"])
    drawn = plots.plot_curves(runs, three, tags=["acc*", "*"])

    self.assertEqual(drawn, ["accuracy", "global_step/sec", "loss"])
    self.assertGreater(mpl_image.imread(three).shape[0], 2 * mpl_image.imread(one).shape[0])
    # A single run uses only the first colour.
    self.assertEqual(_pixels_of(mpl_image.imread(one), plots._RUN_COLORS[1]), 0)

  def test_unknown_tags_raise_with_what_exists(self):
    runs = self._two_runs()
    path = os.path.join(self.create_tempdir().full_path, "x.png")
    with self.assertRaisesRegex(reporting.ReportError, "'nope' is in none.*accuracy"):
      plots.plot_curves(runs, path, tags=["nope"])
    self.assertFalse(os.path.exists(path))

  def test_confusion_matrix_png(self):
    matrix = np.array([[50, 2, 0], [3, 40, 7], [0, 0, 10]])
    path = os.path.join(self.create_tempdir().full_path, "cm", "confusion.png")

    self.assertEqual(plots.confusion_matrix_png(matrix, ["cat", "dog", "bird"], path, "eval"), path)

    image = mpl_image.imread(path)
    self.assertEqual(image.shape[2], 4)
    # Well-predicted rows are dark blue cells (Blues at >= 0.8), the rest pale.
    dark = (image[..., 2] > 0.4) & (image[..., 0] < 0.25)
    self.assertGreater(dark.sum(), 0.05 * image.shape[0] * image.shape[1])

  def test_confusion_matrix_many_classes(self):
    n = 40
    matrix = np.eye(n, dtype=np.int64) * 9 + 1
    path = os.path.join(self.create_tempdir().full_path, "big.png")
    plots.confusion_matrix_png(matrix, [f"class_{i}" for i in range(n)], path)
    self.assertGreater(os.path.getsize(path), 10_000)

  @parameterized.named_parameters(
      ("not_square", np.zeros((2, 3)), ["a", "b"], "square"),
      ("names", np.zeros((2, 2)), ["a"], "2 label names|1 label names"),
      ("negative", -np.ones((2, 2)), ["a", "b"], "non-negative"),
  )
  def test_confusion_matrix_rejects(self, matrix, names, message):
    with self.assertRaisesRegex(ValueError, message):
      plots.confusion_matrix_png(matrix, names, os.path.join(self.create_tempdir(), "x.png"))


if __name__ == "__main__":
  tf.test.main()
