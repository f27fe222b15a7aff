"""estimator_app.analysis.reporting over event files with known values and over a real Estimator run."""

import csv
import os
import struct
import time

import tensorflow as tf
from absl.testing import parameterized

from estimator_app.analysis import reporting
from tests.testing import finished_run


class ReportingTest(tf.test.TestCase, parameterized.TestCase):

  def test_reads_tf1_and_tf2_scalars_and_skips_non_scalars(self):
    run = self.create_tempdir("run").full_path
    finished_run.write_tf1_scalars(run, {"loss": [(1, 2.5), (11, 1.25), (21, 0.1)]})
    finished_run.write_tf2_scalars(os.path.join(run, "eval_quick"),
                                   {"accuracy": [(10, 0.5), (20, 0.75)], "steps/int": [(10, 3)]})
    finished_run.write_tf1_scalars(os.path.join(run, "eval"), {"accuracy": [(20, 0.7)]})
    finished_run.write_non_scalars(os.path.join(run, "eval"))

    r = reporting.read_run(run)

    self.assertEqual(r.name, "run")
    self.assertEqual(r.sources(), ["train", "eval", "eval_quick"])
    self.assertEqual(r.tags("eval"), ["accuracy"])  # no notes, weights or picture
    loss = r.get("loss")
    self.assertEqual(loss.steps, (1, 11, 21))
    self.assertEqual(loss.values, (2.5, 1.25, finished_run.float32(0.1)))
    quick = r.get("accuracy", "eval_quick")
    self.assertEqual(quick.steps, (10, 20))
    self.assertEqual(quick.values, (0.5, 0.75))
    self.assertEqual(r.get("steps/int", "eval_quick").values, (3.0,))
    self.assertEqual(r.get("accuracy", "eval").last(), (20, finished_run.float32(0.7)))
    self.assertEqual(quick.at(20), 0.75)
    with self.assertRaises(KeyError):
      quick.at(15)
    self.assertLen(quick.wall_times, 2)
    self.assertAllInRange(quick.wall_times, time.time() - 600, time.time() + 1)

  def test_resumed_run_keeps_the_attempt_that_continued(self):
    run = self.create_tempdir().full_path
    # First attempt wrote up to step 50, was killed; the second resumed from step 30.
    finished_run.write_tf1_scalars(run, {"loss": [(s, 1.0) for s in (0, 10, 20, 30, 40, 50)]},
                                   suffix=".a")
    finished_run.write_tf1_scalars(run, {"loss": [(s, 2.0) for s in (30, 40, 60)]}, suffix=".b")
    self.assertLen(finished_run.event_files(run), 2)

    loss = reporting.read_run(run).get("loss")

    self.assertEqual(loss.steps, (0, 10, 20, 30, 40, 60))
    self.assertEqual(loss.values, (1.0, 1.0, 1.0, 2.0, 2.0, 2.0))

  def test_restart_drops_what_the_rolled_back_attempt_logged(self):
    run = self.create_tempdir().full_path
    # Killed after step 50 with its last checkpoint at 30; the restart logs its START at 31.
    finished_run.write_tf1_scalars(run, {"loss": [(s, 1.0) for s in (1, 11, 21, 31, 41)],
                                         "steps/sec": [(21, 5.0), (41, 5.0)]}, suffix=".a",
                                   start_step=1)
    finished_run.write_tf1_scalars(run, {"loss": [(51, 2.0)], "steps/sec": [(61, 7.0)]},
                                   suffix=".b", start_step=31)

    r = reporting.read_run(run)

    self.assertEqual(r.get("loss").steps, (1, 11, 21, 51))
    self.assertEqual(r.get("steps/sec").steps, (21, 61))
    self.assertEqual(r.get("steps/sec").values, (5.0, 7.0))

  def test_missing_run_dir_names_the_path(self):
    missing = os.path.join(self.create_tempdir().full_path, "nope")
    with self.assertRaisesRegex(reporting.ReportError, f"{missing} does not exist"):
      reporting.read_run(missing)

  def test_dir_without_event_files_names_the_path(self):
    empty = self.create_tempdir("empty")
    empty.create_file("checkpoint", "not events")
    with self.assertRaisesRegex(reporting.ReportError,
                                f"{empty.full_path} holds no TensorBoard event files"):
      reporting.read_runs([empty.full_path])

  def test_event_files_without_scalars_name_the_path(self):
    run = self.create_tempdir().full_path
    finished_run.write_non_scalars(run)
    with self.assertRaisesRegex(reporting.ReportError, f"{run}: .* no scalar"):
      reporting.read_run(run)

  @parameterized.named_parameters(
      # A writer killed mid-record: a length header and no body.
      ("torn", struct.pack("<Q", 32) + b"\x00\x00"),
      # A full record whose checksums are wrong: summary_iterator raises DataLossError.
      ("corrupt", struct.pack("<Q", 4) + b"\x00" * 4 + b"abcd" + b"\x00" * 4),
  )
  def test_bad_tail_keeps_the_points_before_it(self, tail):
    run = self.create_tempdir().full_path
    finished_run.write_tf1_scalars(run, {"loss": [(1, 1.0), (2, 0.5)]})
    path = os.path.join(run, finished_run.event_files(run)[0])
    with open(path, "ab") as f:
      f.write(tail)
    self.assertEqual(reporting.read_run(run).get("loss").values, (1.0, 0.5))

  @parameterized.named_parameters(
      ("exact", "loss", ["loss"], True),
      ("last_component", "metrics/accuracy", ["accuracy"], True),
      ("glob", "eval_quick/acc", ["eval*"], True),
      ("star", "global_step/sec", ["*"], True),
      ("prefix_is_not_enough", "loss_total", ["loss"], False),
      ("other", "accuracy", ["loss", "lr"], False),
  )
  def test_tag_matches(self, tag, patterns, expected):
    self.assertEqual(reporting.tag_matches(tag, patterns), expected)

  @parameterized.named_parameters(
      ("distinct", ["/r/a", "/r/b"], ["a", "b"]),
      ("same_base", ["/x/a/model", "/y/a/model"], ["x/a/model", "y/a/model"]),
      ("trailing_slash", ["/r/lr1/", "/q/lr2"], ["lr1", "lr2"]),
  )
  def test_run_names(self, dirs, expected):
    self.assertEqual(reporting.run_names(dirs), expected)

  def test_same_run_twice_is_an_error(self):
    run = self.create_tempdir().full_path
    finished_run.write_tf1_scalars(run, {"loss": [(1, 1.0)]})
    with self.assertRaisesRegex(reporting.ReportError, "more than once"):
      reporting.read_runs([run, run + "/"])

  def test_check_tags_lists_what_the_runs_have(self):
    run = self.create_tempdir().full_path
    finished_run.write_tf1_scalars(run, {"loss": [(1, 1.0)], "lr": [(1, 0.1)]})
    runs = reporting.read_runs([run])
    reporting.check_tags(runs, ["loss", "l*"])
    with self.assertRaisesRegex(reporting.ReportError, "'accuracy' is in none.*have: loss, lr"):
      reporting.check_tags(runs, ["loss", "accuracy"])

  def test_csv_holds_every_selected_point_exactly(self):
    root = self.create_tempdir()
    a, b = os.path.join(root, "a"), os.path.join(root, "b")
    finished_run.write_tf1_scalars(a, {"loss": [(1, 0.1), (2, 0.2)], "lr": [(1, 3.0)]})
    finished_run.write_tf2_scalars(os.path.join(b, "eval"), {"accuracy": [(5, 0.3)]})
    runs = reporting.read_runs([a, b])
    path = os.path.join(root, "out", "curves.csv")

    n = reporting.write_csv(runs, path, patterns=["loss", "accuracy"])

    with open(path) as f:
      table = list(csv.DictReader(f))
    self.assertEqual(n, 3)
    self.assertEqual(list(table[0]), list(reporting.CSV_COLUMNS))
    got = [(r["run"], r["source"], r["tag"], int(r["step"]), float(r["value"])) for r in table]
    self.assertEqual(got, [("a", "train", "loss", 1, finished_run.float32(0.1)),
                           ("a", "train", "loss", 2, finished_run.float32(0.2)),
                           ("b", "eval", "accuracy", 5, finished_run.float32(0.3))])

  def test_estimator_run_curves_match_its_evaluations(self):
    model_dir = self.create_tempdir("model").full_path
    final = finished_run.train_run(model_dir)

    r = reporting.read_run(model_dir)

    self.assertEqual(r.sources(), ["train", "eval", "eval_final"])
    self.assertIn("loss", r.tags("train"))
    train_loss = r.get("loss")
    # Estimator saves summaries from step 1 on, about every SUMMARY_STEPS steps (the cadence
    # shifts around the evaluations train_and_evaluate runs in between).
    self.assertEqual(train_loss.steps[0], 1)
    self.assertEqual(list(train_loss.steps), sorted(set(train_loss.steps)))
    self.assertLessEqual(train_loss.steps[-1], finished_run.TRAIN_STEPS)
    self.assertGreaterEqual(len(train_loss.steps),
                            finished_run.TRAIN_STEPS // finished_run.SUMMARY_STEPS - 1)
    self.assertLess(train_loss.values[-1], train_loss.values[0])
    accuracy = r.get("accuracy", "eval")
    # One full evaluation per new checkpoint.
    self.assertEqual(accuracy.steps, tuple(range(finished_run.CHECKPOINT_STEPS,
                                                 finished_run.TRAIN_STEPS + 1,
                                                 finished_run.CHECKPOINT_STEPS)))
    self.assertEqual(r.get("accuracy", "eval_final").last(),
                     (finished_run.TRAIN_STEPS, finished_run.float32(final["accuracy"])))
    self.assertEqual(r.get("loss", "eval_final").last()[1], finished_run.float32(final["loss"]))
    self.assertEqual(accuracy.last()[1], finished_run.float32(final["accuracy"]))
    lines = reporting.summary_lines([r], ["accuracy"])
    self.assertLen(lines, 3)  # header, eval, eval_final
    self.assertIn("eval_final", lines[2])


if __name__ == "__main__":
  tf.test.main()
