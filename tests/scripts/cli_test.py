"""scripts/cli.py: what a user sees from every script: one quiet log stream, help that helps."""

import ast
import collections
import dataclasses
import glob
import os
import re
import subprocess
import sys

import tensorflow as tf
from absl.testing import parameterized

from estimator_app import estimator as estimator_lib
from scripts import cli

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_OUR_PACKAGES = ("estimator_app", "input_fns", "model_fns", "scripts")


def _env(**extra):
  """A script's environment as a user has it: no TF_CPP_MIN_LOG_LEVEL of ours."""
  env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CONFIG")}
  env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
  env.update(extra)
  return env


def _train(*args, timeout=300, python_flags=()):
  return subprocess.run(
      [sys.executable, *python_flags, os.path.join(_REPO, "scripts", "train.py"), *args],
      env=_env(), capture_output=True, text=True, timeout=timeout, check=False)


_IMPORT_TIME_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| *([\w.]+)$", re.M)


def _train_imports(*args):
  """Runs scripts/train.py under `python -X importtime`: (process, the modules it imported)."""
  proc = _train(*args, timeout=120, python_flags=("-X", "importtime"))
  return proc, set(_IMPORT_TIME_LINE.findall(proc.stderr))


class VerbosityTest(tf.test.TestCase):

  def test_verbose_is_read_from_the_command_line_before_flags_are_parsed(self):
    for argv, verbose in ((["-v", "1"], True), (["--verbosity=2"], True), (["--v=1"], True),
                          (["-v=0"], False), ([], False), (["--verbosity", "x"], False),
                          (["--model=dnn", "-v"], False)):
      self.assertEqual(cli.verbose_requested(argv), verbose, argv)


class ImportOrderTest(tf.test.TestCase):

  def test_every_script_imports_cli_before_anything_that_imports_tensorflow(self):
    checked = 0
    for path in sorted(glob.glob(os.path.join(_REPO, "scripts", "*.py"))):
      if (os.path.basename(path) in ("__init__.py", "cli.py", "gpu_check.py")
          or path.endswith("_flags.py")):
        continue  # gpu_check answers "no GPU" without TensorFlow, on purpose
      tree = ast.parse(open(path).read())
      first = None
      for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _OUR_PACKAGES:
          first = (node.module, [a.name for a in node.names])
          break
        if isinstance(node, ast.Import) and any(
            a.name.split(".")[0] in _OUR_PACKAGES + ("tensorflow", "numpy") for a in node.names):
          first = ([a.name for a in node.names], None)
          break
      self.assertEqual(first, ("scripts", ["cli"]), f"{path}: first project import is {first}")
      checked += 1
    self.assertGreaterEqual(checked, 9)


class HelpTest(tf.test.TestCase):

  def test_help_lists_the_flags_most_runs_need_and_exits_0(self):
    proc = _train("--help")
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    out = proc.stdout
    self.assertIn("./bazelw run //scripts:train", out)  # the docstring's examples
    self.assertIn("Flags most runs need:", out)
    flags_listed = re.findall(r"^  --(\w+)", out, re.M)
    self.assertEqual(flags_listed[:4], ["model", "data_dir", "model_dir", "train_steps"])
    self.assertBetween(len(flags_listed), 8, 16)
    self.assertIn("--helpfull", out)
    self.assertNotIn("test_tmpdir", out)

  def test_helpfull_groups_every_flag_by_section_with_each_models_hparams(self):
    proc = _train("--helpfull")
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    out = proc.stdout
    groups = re.findall(r"^(\w[\w-]*) flags:$", out, re.M)
    self.assertEqual(groups, ["model", "data", "run", "optimization", "distribution", "train",
                              "logging"])
    for absl_or_tf_flag in ("test_tmpdir", "test_srcdir", "tpu", "xml_output_file", "pdb"):
      self.assertNotRegex(out, rf"--{absl_or_tf_flag}\b")
    # Each group holds its own section's flags ("[data] " is not repeated in the text).
    data = out.split("data flags:")[1].split("run flags:")[0]
    self.assertIn("--batch_size=64", data)
    self.assertNotIn("[data]", data)
    self.assertIn("  --fresh=false", out.split("train flags:")[1])
    models = out.split("models (--model) and their hparams")[1]
    self.assertRegex(models, r"lenet5: .*\n(      \w+=.*\n)+")
    self.assertIn("dropout=0.3", models.split("lenet5:")[1].split("\n  linear:")[0])


class AnswersBeforeTensorFlowTest(tf.test.TestCase, parameterized.TestCase):
  """--help and flag errors are answered in about a second: without importing TensorFlow."""

  def _assert_no_tensorflow(self, modules):
    self.assertIn("scripts.experiment_flags", modules)  # the import log was read
    tf_modules = sorted(m for m in modules if m.split(".")[0] == "tensorflow")
    self.assertEqual(len(tf_modules), 0, f"TensorFlow modules imported, e.g. {tf_modules[:3]}")
    models = [m for m in modules if m.split(".")[0] == "model_fns"
              and m not in ("model_fns", "model_fns.hparams", "model_fns.registry",
                            "model_fns.train_config")]
    self.assertEmpty(models)

  def test_help_imports_neither_tensorflow_nor_a_model(self):
    proc, modules = _train_imports("--help")
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    self.assertIn("Flags most runs need:", proc.stdout)
    self.assertIn("--model=lenet5", proc.stdout)
    self._assert_no_tensorflow(modules)

  def test_helpfull_reads_every_models_hparams_without_importing_them(self):
    proc, modules = _train_imports("--helpfull")
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    self._assert_no_tensorflow(modules)
    # The defaults shown are the dataclasses' own, including those named by a constant.
    from model_fns import registry  # pylint: disable=g-import-not-at-top
    for name in registry.names():
      for field in dataclasses.fields(registry.get(name).hparams_cls):
        self.assertIn(f"      {field.name}={field.default!r}", proc.stdout, f"{name}.{field.name}")

  @parameterized.named_parameters(
      ("bad_value", "--train_steps=abc",
       "FATAL Flags parsing error: flag --train_steps=abc: invalid literal for int()"),
      ("unknown_flag", "--no_such_flag",
       "FATAL Flags parsing error: Unknown command line flag 'no_such_flag'"))
  def test_a_bad_flag_fails_with_absls_error_before_tensorflow(self, arg, message):
    proc, modules = _train_imports(arg)
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertIn(message, proc.stderr)
    self._assert_no_tensorflow(modules)


# Every script that defines flags: each answers --help and a bad flag before importing TensorFlow.
_SCRIPTS = ("train", "evaluate", "predict", "export", "report", "inspect_checkpoint", "benchmark")
_TENSORFLOW_PACKAGES = ("tensorflow", "tensorflow_estimator", "keras", "tf_keras")


def _script_imports(script, *args):
  """Runs scripts/<script>.py under `python -X importtime`: (process, the modules it imported)."""
  proc = subprocess.run(
      [sys.executable, "-X", "importtime", os.path.join(_REPO, "scripts", f"{script}.py"), *args],
      env=_env(), capture_output=True, text=True, timeout=120, check=False)
  return proc, set(_IMPORT_TIME_LINE.findall(proc.stderr))


class EveryScriptAnswersBeforeTensorFlowTest(tf.test.TestCase, parameterized.TestCase):
  """Each script's --help, --helpfull and flag errors take well under a second, not 4-6 s."""

  def _assert_no_tensorflow(self, modules):
    self.assertIn("scripts.cli", modules)  # the import log was read
    self.assertIn("absl.flags", modules)
    heavy = sorted(m for m in modules if m.split(".")[0] in _TENSORFLOW_PACKAGES)
    self.assertEqual(len(heavy), 0, f"TensorFlow modules imported, e.g. {heavy[:3]}")

  @parameterized.named_parameters(*((script, script) for script in _SCRIPTS))
  def test_help_and_helpfull_show_the_scripts_flags_without_importing_tensorflow(self, script):
    for asked, heading in (("--help", "Flags most runs need:"), ("--helpfull", f"{script} flags:")):
      with self.subTest(asked):
        proc, modules = _script_imports(script, asked)
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        self.assertIn(f"./bazelw run //scripts:{script}", proc.stdout)  # the docstring's examples
        self.assertIn(heading, proc.stdout)
        self.assertNotEmpty(re.findall(r"^  --(\w+)", proc.stdout.split(heading)[1], re.M))
        self._assert_no_tensorflow(modules)

  @parameterized.named_parameters(
      *((f"{script}_unknown_flag", script, ["--no_such_flag"],
         "Unknown command line flag 'no_such_flag'") for script in _SCRIPTS),
      ("train_bad_int", "train", ["--train_steps=abc"], "flag --train_steps=abc: invalid literal"),
      ("evaluate_bad_int", "evaluate", ["--batch_size=abc"], "flag --batch_size=abc: invalid"),
      ("predict_bad_bool", "predict", ["--skip_unreadable=maybe"],
       "flag --skip_unreadable=maybe: ('Non-boolean argument to boolean flag', 'maybe')"),
      ("export_bad_float", "export", ["--tolerance=x"],
       "flag --tolerance=x: could not convert string to float: 'x'"),
      ("report_missing_required", "report", [],
       "flag --runs=None: Flag --runs must have a value other than None."),
      ("inspect_checkpoint_bad_bool", "inspect_checkpoint", ["--checkpoint=x", "--json=maybe"],
       "flag --json=maybe: ('Non-boolean argument to boolean flag', 'maybe')"),
      ("benchmark_bad_int", "benchmark", ["--repetitions=x"], "flag --repetitions=x: invalid"))
  def test_a_bad_flag_fails_with_absls_error_without_importing_tensorflow(self, script, args,
                                                                          message):
    proc, modules = _script_imports(script, *args)
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertIn(f"FATAL Flags parsing error: {message}", proc.stderr)
    self._assert_no_tensorflow(modules)


class SourceFlagsTest(tf.test.TestCase):
  """Defaults read from a TensorFlow-importing module's source are that module's values."""

  def test_literals_read_from_source_equal_the_imported_constants(self):
    from estimator_app.analysis import reporting  # pylint: disable=g-import-not-at-top
    from estimator_app.checkpoints import info  # pylint: disable=g-import-not-at-top
    from scripts import source_flags  # pylint: disable=g-import-not-at-top
    for module, name in ((info, "LATEST"), (info, "BEST"), (reporting, "DEFAULT_TAGS")):
      self.assertEqual(source_flags.literal(module.__name__, name), getattr(module, name))

  def test_a_missing_or_computed_constant_is_a_lookup_error_naming_it(self):
    from scripts import source_flags  # pylint: disable=g-import-not-at-top
    with self.assertRaisesRegex(LookupError, "info has no top-level assignment to NO_SUCH"):
      source_flags.literal("estimator_app.checkpoints.info", "NO_SUCH")
    with self.assertRaisesRegex(LookupError, r"info\._STEP_SUFFIX is not a literal: re\.compile"):
      source_flags.literal("estimator_app.checkpoints.info", "_STEP_SUFFIX")
    with self.assertRaisesRegex(LookupError, "no Python source"):
      source_flags.literal("no_such_package_xyz", "X")


_EXITING_SCRIPT = """
import atexit, sys
from scripts import cli
import tensorflow as tf

def main(argv):
  atexit.register(lambda: open(sys.argv[1] + "/atexit_ran", "w").close())
  with tf.Graph().as_default():
    writer = tf.compat.v1.summary.FileWriterCache.get(sys.argv[1])
    writer.add_summary(tf.compat.v1.Summary(
        value=[tf.compat.v1.Summary.Value(tag="x", simple_value=1.5)]), global_step=7)
  print("unflushed line", end="")
  if sys.argv[2] == "raise":
    raise RuntimeError("boom")
  return int(sys.argv[2])

cli.run(main)
"""


class ExitTest(tf.test.TestCase, parameterized.TestCase):
  """cli.run ends with os._exit: the code, atexit handlers, writers and output must survive."""

  @parameterized.named_parameters(("ok", "0", 0), ("code", "3", 3), ("crash", "raise", 1))
  def test_exit_code_atexit_handlers_summaries_and_output_survive(self, how, code):
    out = self.create_tempdir().full_path
    script = os.path.join(out, "script.py")
    with open(script, "w") as f:
      f.write(_EXITING_SCRIPT)
    proc = subprocess.run([sys.executable, script, out, how], env=_env(), capture_output=True,
                          text=True, timeout=300, check=False)
    self.assertEqual(proc.returncode, code, proc.stderr[-2000:])
    self.assertEqual(proc.stdout, "unflushed line")
    self.assertTrue(os.path.exists(os.path.join(out, "atexit_ran")))
    if how == "raise":
      self.assertIn("RuntimeError: boom", proc.stderr)
    events = [e for path in glob.glob(os.path.join(out, "events.out.tfevents.*"))
              for e in tf.compat.v1.train.summary_iterator(path) if e.summary.value]
    self.assertEqual([(e.step, e.summary.value[0].simple_value) for e in events], [(7, 1.5)])


class LogStreamTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tf.compat.v1.test.get_temp_dir()
    cls.data_dir = os.path.join(cls.root, "digits")
    estimator_lib.load_dataset(cls.data_dir, create_default=True)

  def _run(self, *extra):
    model_dir = os.path.join(self.create_tempdir().full_path, "run")
    proc = _train(f"--data_dir={self.data_dir}", f"--model_dir={model_dir}", "--model=linear",
                  "--train_steps=40", "--export=false", *extra)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    return proc

  def test_one_line_per_event_and_no_tensorflow_noise(self):
    proc = self._run()
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    text = "\n".join(lines)
    self.assertNotIn("INFO:tensorflow", text)
    self.assertNotRegex(text, r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] ")  # TF's C++ log
    self.assertNotRegex(text, r"(?i)cuda|cudnn|tensorrt")
    self.assertNotIn("Calling model_fn", text)
    counts = collections.Counter(re.sub(r"^\d\d:\d\d:\d\d ", "", l) for l in lines)
    self.assertEqual([l for l, n in counts.items() if n > 1], [])  # nothing printed twice
    self.assertRegex(text, r"(?m)^\d\d:\d\d:\d\d step 40/40 \(100%\) 0:\d\d elapsed, ")
    self.assertRegex(text, r"(?m)^\d\d:\d\d:\d\d eval 40/40 full \(359 ex\): accuracy 0\.\d{4} "
                           r"loss [\d.]+( new best)?$")
    self.assertEqual(len(re.findall(r"(?m)^\d\d:\d\d:\d\d model linear: ", text)), 2)  # once
    self.assertLess(len(lines), 40, text)
    self.assertRegex(proc.stdout, r"to step 40 in 0:\d\d: train 0:\d\d \(\d+%\)")

  def test_verbose_brings_tensorflow_logs_back_once(self):
    proc = self._run("-v", "1")
    text = proc.stderr
    self.assertIn("Calling model_fn", text)
    self.assertNotIn("INFO:tensorflow:", text)  # through absl's handler, not a second one
    calls = [l for l in text.splitlines() if l.endswith("Calling model_fn.")]
    self.assertEqual(len(calls), len(set(calls)))


if __name__ == "__main__":
  tf.test.main()
