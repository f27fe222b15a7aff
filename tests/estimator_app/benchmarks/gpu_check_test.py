"""estimator_app.benchmarks.gpu_check: the plan's flags as training reads them, the parsers and
tables on made-up inputs, and one real CPU training run read back the way a GPU run is.

The command's no-GPU answer is tested in tests/scripts/gpu_check_test.py.
"""

import json
import os

from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver

from estimator_app.benchmarks import gpu_check
from estimator_app.training import input_diagnosis
from model_fns import model_fn as model_fn_lib
from scripts import experiment_flags
from scripts import train  # pylint: disable=unused-import (defines the train.py flags)

FLAGS = flags.FLAGS
# scripts/train.py comes with //scripts:train_lib in the runfiles too.
_TRAIN_PY = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))), "scripts", "train.py")


def _step_line(step, step_time_ms=None):
  """A StepLoggingHook line as absl logs it."""
  timing = f", 1,234 ex/s, {step_time_ms:.2f} ms/step" if step_time_ms else ""
  return f"07:56:09 step {step}/201 ({100 * step // 201}%) 0:09 elapsed{timing}, loss 0.65, lr 0.003"


class PlanTest(absltest.TestCase):

  def test_parity_covers_every_precision_training_supports(self):
    self.assertEqual(gpu_check.PARITY_PRECISIONS, model_fn_lib.PRECISIONS)

  def test_the_plan_holds_the_whole_matrix_once_parity_first(self):
    runs = gpu_check.plan(num_gpus=1)
    self.assertLen({r.key for r in runs}, len(runs))  # no run twice
    self.assertEqual([r.precision for r in runs[:3]], list(gpu_check.PARITY_PRECISIONS))
    self.assertTrue(all(r.export for r in runs[:3]))
    self.assertFalse(any(r.export for r in runs[3:]))
    keys = {r.key for r in runs}
    for model in ("dnn", "lenet5"):
      for batch in (256, 1024):
        for precision in ("float32", "float16"):
          for xla in (False, True):
            self.assertIn((model, batch, precision, xla, "default"), keys)
      self.assertIn((model, 1024, "float32", False, "mirrored"), keys)
    sampled = [r for r in runs if r.sample_gpu]
    self.assertLen(sampled, 1)
    self.assertTrue(sampled[0].diagnose_input)

  def test_mirrored_batch_splits_evenly_over_the_gpus(self):
    for n in (1, 2, 3, 4, 6, 8):
      batch = gpu_check.mirrored_batch_size(n)
      self.assertEqual(batch % n, 0)
      self.assertGreaterEqual(batch, 1024 if 1024 % n == 0 else 128 * n)

  def test_every_run_passes_flags_the_main_job_accepts(self):
    for run in gpu_check.plan(num_gpus=2):
      args = gpu_check.train_args(run, "/tmp/never/written", 600)
      with flagsaver.flagsaver():
        FLAGS(["train"] + args)
        cfg = experiment_flags.config_from_flags()
        self.assertEqual(FLAGS.diagnose_input, run.diagnose_input)
      self.assertEqual((cfg.model, cfg.data.batch_size, cfg.optimization.precision,
                        cfg.distribution.xla, cfg.distribution.strategy), run.key)
      self.assertEqual(cfg.run.train_steps, 600 * run.steps_factor)
      # One checkpoint, at the end: no evaluation or export inside the timed steps.
      self.assertEqual(cfg.run.save_checkpoints_steps, cfg.run.train_steps)
      self.assertEqual(cfg.run.quick_eval_steps, 0)
      self.assertEqual(cfg.run.export, run.export)
      self.assertEqual(cfg.run.log_every_steps, gpu_check.LOG_EVERY_STEPS)

  def test_a_run_needs_a_margin_over_the_longest_finished_run_of_its_kind(self):
    speed, parity = gpu_check.Run("dnn", 256), gpu_check.Run("lenet5", 256, export=True)
    self.assertEqual(gpu_check.expected_secs(speed, []), 30.0)
    done = [gpu_check.Outcome(speed, "ok", seconds=40.0),
            gpu_check.Outcome(parity, "ok", seconds=80.0),
            gpu_check.Outcome(speed, "failed", seconds=200.0)]  # a failure is no estimate
    self.assertEqual(gpu_check.expected_secs(gpu_check.Run("lenet5", 1024), done), 50.0)
    self.assertEqual(gpu_check.expected_secs(gpu_check.Run("dnn", 256, "bfloat16", export=True),
                                             done), 100.0)


class ParseTest(absltest.TestCase):

  def test_rate_leaves_out_the_first_interval_and_weighs_by_steps(self):
    lines = ["INFO:tensorflow:Graph was finalized.", _step_line(1), _step_line(51, 40.0),
             "INFO:tensorflow:Saving checkpoints for 0", _step_line(101, 2.0),
             _step_line(151, 2.0), _step_line(201, 6.0), "INFO:tensorflow:Loss for final step: 0.5"]
    rate = gpu_check.parse_rate(lines, batch_size=256)
    # 150 steps in 50 * (2 + 2 + 6) ms = 0.5 s; the 40 ms/step compile interval is left out.
    self.assertAlmostEqual(rate.steps_per_sec, 300.0)
    self.assertAlmostEqual(rate.examples_per_sec, 300.0 * 256)
    self.assertEqual(rate.steps, 150)
    self.assertEqual((rate.start, rate.end), (2, 6))  # from the step-51 line to the step-201 one

  def test_rate_is_none_without_a_timed_interval_after_the_first(self):
    self.assertIsNone(gpu_check.parse_rate([], 256))
    self.assertIsNone(gpu_check.parse_rate([_step_line(1), _step_line(51, 3.0)], 256))
    self.assertIsNotNone(gpu_check.parse_rate([_step_line(1), _step_line(51, 3.0)], 256, skip=0))

  def test_diagnosis_verdicts_as_diagnose_input_logs_them(self):
    def logged(advice):  # runner.diagnose_input: logging.info("diagnose_input: %s", advice)
      return f"I1202 08:03:19.481620 1407 input_diagnosis.py:143] diagnose_input: {advice}"

    v = gpu_check.parse_diagnosis(["other", logged(input_diagnosis.advise(3510.0, 1000.0, 980.0))])
    self.assertFalse(v.input_bound)
    self.assertAlmostEqual(v.headroom, 3.51)
    v = gpu_check.parse_diagnosis([logged(input_diagnosis.advise(400.0, 1000.0, 390.0))])
    self.assertTrue(v.input_bound)
    self.assertAlmostEqual(v.headroom, 0.40)
    self.assertIsNone(gpu_check.parse_diagnosis([_step_line(1)]))

  def test_parity_reads_every_report_rejected_ones_too(self):
    model_dir = self.create_tempdir().full_path
    final = os.path.join(model_dir, "export", "final")
    os.makedirs(final)
    passed = {"passed": True, "signatures": {"serving_default": {"max_abs_diff": {
        "probabilities": 2e-7, "logits": 1e-6}}, "classification": {"max_abs_diff": {}}}}
    failed = {"passed": False, "problems": ["serving_default: max |p - p_ref| = 0.01 > 1e-05"],
              "signatures": {"serving_default": {"max_abs_diff": {"probabilities": 0.01}}}}
    for name, report in (("1.validation.json", passed), (".rejected-2.validation.json", failed)):
      with open(os.path.join(final, name), "w") as f:
        json.dump(report, f)
    p = gpu_check.read_parity(model_dir)
    self.assertEqual((p.reports, p.passed, p.max_abs_diff), (2, False, 0.01))
    self.assertEqual(p.problems, ("serving_default: max |p - p_ref| = 0.01 > 1e-05",))
    os.remove(os.path.join(final, ".rejected-2.validation.json"))
    p = gpu_check.read_parity(model_dir)
    self.assertEqual((p.reports, p.passed, p.max_abs_diff), (1, True, 1e-6))

  def test_no_report_is_no_pass(self):
    p = gpu_check.read_parity(self.create_tempdir().full_path)
    self.assertEqual((p.reports, p.passed, p.max_abs_diff), (0, False, None))

  def test_gpu_samples_count_only_the_window_and_the_busy_gpus(self):
    samples = [(1.0, "0, 99, 9000"),  # before the window
               (2.0, "0, 80, 1200"), (2.0, "1, 0, 3"),
               (2.5, "0, [N/A], 1300"),  # unreadable: left out
               (3.0, "0, 60, 1500"), (3.0, "1, 0, 3"),
               (9.0, "0, 10, 100")]  # after
    u = gpu_check.summarize_samples(samples, start=2.0, end=3.0)
    self.assertEqual(u.samples, 4)
    self.assertAlmostEqual(u.mean_utilization, 70.0)  # GPU 1 never worked: not averaged in
    self.assertEqual(u.max_utilization, 80.0)
    self.assertEqual(u.max_memory_mib, 1500.0)
    self.assertIsNone(gpu_check.summarize_samples(samples, start=4.0, end=5.0))

  def test_device_descriptions_and_csv(self):
    self.assertEqual(
        gpu_check.parse_device_desc("device: 0, name: NVIDIA H200, pci bus id: 0000:05:00.0, "
                                    "compute capability: 9.0"),
        {"device": "0", "name": "NVIDIA H200", "pci bus id": "0000:05:00.0",
         "compute capability": "9.0"})
    self.assertEqual(gpu_check.parse_csv_rows("0, NVIDIA H200, 143771, 550.54.15\n\n1, B, 2, 3\n"),
                     [["0", "NVIDIA H200", "143771", "550.54.15"], ["1", "B", "2", "3"]])

  def test_last_error_prefers_the_cli_error_line(self):
    self.assertEqual(gpu_check.last_error(["a", "error: export x does not match", "b"]),
                     "error: export x does not match")
    self.assertEqual(gpu_check.last_error(["Traceback", "  File x", "ValueError: bad", ""]),
                     "ValueError: bad")
    self.assertEqual(gpu_check.last_error([]), "(no output)")


class TableTest(absltest.TestCase):

  def test_columns_are_padded_to_the_widest_cell(self):
    self.assertEqual(gpu_check.format_table(["a", "long header"], [["wide cell", 1], [None, 22]]),
                     "a          long header\n"
                     "---------  -----------\n"
                     "wide cell  1\n"
                     "           22")

  def _made_up(self, run, steps_per_sec=None, status="ok", parity=None, **kw):
    rate = (gpu_check.Rate(steps_per_sec, steps_per_sec * run.batch_size, 500, 0, 1)
            if steps_per_sec else None)
    return gpu_check.Outcome(run, status, 10.0, rate, parity, log="/w/logs/x.log", **kw)

  def test_report_of_made_up_runs(self):
    run = gpu_check.Run
    outcomes = [
        self._made_up(run("lenet5", 256, "float32", export=True), 500.0,
                      parity=gpu_check.Parity(3, True, 2.5e-7)),
        self._made_up(run("lenet5", 256, "float16", export=True), 450.0, status="failed",
                      parity=gpu_check.Parity(1, False, 0.02, ("serving_default: too far",)),
                      error="exit 2: error: export does not match"),
        gpu_check.Outcome(run("lenet5", 256, "bfloat16", export=True), "skipped"),
        self._made_up(run("lenet5", 1024, sample_gpu=True, diagnose_input=True, steps_factor=3),
                      200.0, usage=gpu_check.GpuUsage(12, 71.4, 93.0, 2048.0),
                      verdict=gpu_check.InputVerdict(False, 3.5, "NOT input-bound")),
        self._made_up(run("lenet5", 1024, strategy="mirrored"), 150.0),
        self._made_up(run("dnn", 1024, "float16", xla=True), 1234.56),
    ]
    smi = [{"index": "0", "name": "NVIDIA H200", "memory.total": "143771",
            "driver_version": "550.54.15"}]
    tf_info = {"tf_version": "2.15.1", "cuda_version": "12.2", "cudnn_version": "8", "gpus": [
        {"device": "/device:GPU:0", "memory_limit": 100 * 2**30,
         "desc": "device: 0, name: NVIDIA H200, pci bus id: 0:5, compute capability: 9.0"}]}
    text = gpu_check.report(smi, tf_info, outcomes, elapsed=301.0)
    lines = text.splitlines()
    for expected in (
        "0    NVIDIA H200        143771 MiB  550.54.15  /device:GPU:0      102,400 MiB      9.0",
        "TensorFlow 2.15.1 built for CUDA 12.2, cuDNN 8",
        # Speed: a row per model, batch and precision; XLA beside.
        "dnn     1024   float16    -               1,234.6",
        "lenet5  256    float32    500.0           -",
        "lenet5  256    float16    450.0 (failed)  -",
        "lenet5  1024   float32    200.0           -",
        # Mirrored against the same run on one device.
        "lenet5  1     1024   float32    150.0    153,600     0.75x",
        # Parity: every precision, skipped ones too.
        "float32    lenet5-b256-float32   3        PASS     2.5e-07       500.0",
        "float16    lenet5-b256-float16   1        FAIL     0.02          450.0 (failed)",
        "bfloat16   lenet5-b256-bfloat16  -        skipped  -             skipped",
        "GPU while lenet5-b1024-float32 trained: utilisation mean 71%, max 93%; memory used up "
        "to 2,048 MiB (12 nvidia-smi samples)",
        "input pipeline of lenet5-b1024-float32: keeps up (headroom 3.50x)",
        "FAILED lenet5-b256-float16: exit 2: error: export does not match (log: /w/logs/x.log)",
        "skipped 1 run(s) past --budget_secs: lenet5-b256-bfloat16",
    ):
      self.assertIn(expected, lines)
    self.assertEqual(lines[-1], "5 runs in 301 s: FAILED")


class RealRunTest(absltest.TestCase):
  """One real run of scripts/train.py (on the CPU), read back as a GPU run is: its step log
  lines and its exports' validation reports."""

  def test_a_real_run_reports_its_rate_and_export_parity(self):
    work = self.create_tempdir().full_path
    run = gpu_check.Run("dnn", 64, export=True)
    o = gpu_check.execute(run, work, _TRAIN_PY, train_steps=150, timeout_secs=600)
    self.assertEqual(o.status, "ok", o.error)
    self.assertTrue(o.ok)
    # Lines at steps 1, 51, 101 and the last step, 150: the first interval is left out, the
    # 51 -> 101 and 101 -> 150 ones are timed.
    self.assertEqual(o.rate.steps, 99)
    self.assertGreater(o.rate.steps_per_sec, 0)
    self.assertAlmostEqual(o.rate.examples_per_sec, 64 * o.rate.steps_per_sec)
    self.assertEqual(o.parity.reports, 3)  # latest, best and final, each validated
    self.assertTrue(o.parity.passed)
    self.assertIsNotNone(o.parity.max_abs_diff)
    self.assertLessEqual(o.parity.max_abs_diff, 1e-5)
    self.assertTrue(os.path.exists(os.path.join(work, "data", "digits", "manifest.json")))
    with open(os.path.join(work, "logs", run.name + ".log")) as f:
      self.assertIn("--precision=float32", f.readline())  # the command, then its output


if __name__ == "__main__":
  absltest.main()
