"""Safety: parsing never executes input, secrets never reach logs or run files, and created
files honour the user's umask."""

import os
import re
import stat
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized

from tests.reliability import harness

# Project code: every layer that parses configs, flags, manifests or records.
_PROJECT_DIRS = ("input_fns", "model_fns", "estimator_app", "scripts")
_UNSAFE = [
    (re.compile(r"^\s*(import pickle|from pickle|import cPickle|import dill|import marshal)"),
     "pickle/marshal can execute code while loading"),
    (re.compile(r"(?<![\w.])eval\("), "eval() executes text"),
    (re.compile(r"(?<![\w.])exec\("), "exec() executes text"),
    (re.compile(r"yaml\.load\((?!.*Loader=yaml\.SafeLoader)"), "yaml.load without SafeLoader"),
    (re.compile(r"yaml\.unsafe_load|yaml\.full_load"), "unsafe YAML loaders"),
    (re.compile(r"allow_pickle\s*=\s*True"), "numpy pickles execute code"),
    (re.compile(r"shell\s*=\s*True"), "a shell would interpret paths from flags"),
]
_SECRET = "s3cr3t-T0KEN-do-not-log-8f2b"


def _python_files():
  for top in _PROJECT_DIRS:
    for root, _, files in os.walk(os.path.join(harness.REPO, top)):
      for name in files:
        if name.endswith(".py"):
          yield os.path.join(root, name)


def _all_files(directory):
  for root, dirs, files in os.walk(directory):
    for name in dirs + files:
      yield os.path.join(root, name)


def _umask_env_run(umask, name, args, cwd):
  return subprocess.run([sys.executable, harness.script_path(name), *args],
                        env=harness.child_env(), cwd=cwd, capture_output=True, text=True,
                        timeout=180, preexec_fn=lambda: os.umask(umask))


class SafetyTest(parameterized.TestCase):

  def test_project_code_never_executes_input(self):
    files = list(_python_files())
    self.assertGreater(len(files), 20)  # the walk found the project
    found = []
    for path in files:
      with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
          code = line.split("#", 1)[0]
          for pattern, why in _UNSAFE:
            if pattern.search(code):
              found.append(f"{os.path.relpath(path, harness.REPO)}:{number}: {why}: {line.strip()}")
    self.assertEqual(found, [])

  def test_the_scan_catches_what_it_looks_for(self):
    hits = [why for pattern, why in _UNSAFE
            for line in ("import pickle", "x = eval(text)", "exec(code)", "yaml.load(f)",
                         "np.load(p, allow_pickle=True)", "subprocess.run(c, shell=True)")
            if pattern.search(line)]
    self.assertLen(hits, 6)
    self.assertFalse(any(p.search("self.evaluate(x)") or p.search("estimator.eval_dir()")
                         for p, _ in _UNSAFE))

  @parameterized.named_parameters(
      ("hparams", ["--hparams=learning_rate=__import__('os').system('touch {R}/pwned')"],
       r"--hparams: .*learning_rate=.*expected float"),
      ("flag_value", ["--train_steps=__import__('os').getpid()"], r"train_steps"),
  )
  def test_python_expressions_are_rejected_not_evaluated(self, extra, message):
    root = self.create_tempdir().full_path
    args = [a.replace("{R}", root) for a in extra]
    result = harness.run_script("train", [f"--data_dir={root}/nosuch", f"--model_dir={root}/run",
                                          *args])
    self.assertNotEqual(result.returncode, 0)
    self.assertRegex(result.stderr, message)
    self.assertNotIn("Traceback", result.stderr)
    self.assertFalse(os.path.exists(os.path.join(root, "pwned")))
    self.assertFalse(os.path.exists(os.path.join(root, "run")))

  def test_secrets_never_reach_logs_or_run_files(self):
    root = self.create_tempdir().full_path
    creds = os.path.join(root, "creds.json")
    with open(creds, "w") as f:
      f.write('{"type": "service_account", "private_key": "%s"}' % _SECRET)
    env = harness.child_env(GOOGLE_APPLICATION_CREDENTIALS=creds, GCS_OAUTH_TOKEN=_SECRET,
                            AWS_SECRET_ACCESS_KEY=_SECRET)
    made = harness.run_script("make_tfrecords", ["--format=digits", f"--output_dir={root}/d",
                                                 "--num_shards=1"], env=env)
    trained = harness.run_script("train", [
        f"--data_dir={root}/d", f"--model_dir={root}/run", "--model=linear", "--train_steps=5",
        "--save_checkpoints_steps=5", "--export=false"], env=env)
    # A token in a URL-like path the user typed (local, so nothing leaves loopback): the error
    # names the path but not the token.
    url = harness.run_script("train", [f"--data_dir={root}/x?access_token={_SECRET}",
                                       f"--model_dir={root}/run2", "--train_steps=5"], env=env)
    for result in (made, trained):
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertEqual(url.returncode, 2, url.stderr[-3000:])
    self.assertRegex(harness.error_lines(url.stderr)[-1], r"x\?access_token=REDACTED/manifest.json")
    for result in (made, trained, url):
      self.assertNotIn(_SECRET, result.stdout + result.stderr)
    leaked = []
    for path in _all_files(root):
      if os.path.isfile(path) and path != creds:
        with open(path, "rb") as f:
          if _SECRET.encode() in f.read():
            leaked.append(os.path.relpath(path, root))
    self.assertEqual(leaked, [])

  def test_created_files_honour_the_umask(self):
    root = self.create_tempdir().full_path
    for umask, forbidden in ((0o077, 0o077), (0o027, 0o027)):
      work = os.path.join(root, f"u{umask:03o}")
      os.mkdir(work)
      steps = [
          ("make_tfrecords", ["--format=digits", f"--output_dir={work}/d", "--num_shards=1"]),
          ("train", [f"--data_dir={work}/d", f"--model_dir={work}/run", "--model=linear",
                     "--train_steps=5", "--save_checkpoints_steps=5", "--export=false"]),
          ("export", [f"--model_dir={work}/run", f"--export_base={work}/exports"]),
          ("predict", [f"--model_dir={work}/run", f"--output={work}/p.jsonl"]),
      ]
      for name, args in steps:
        result = _umask_env_run(umask, name, args, work)
        self.assertEqual(result.returncode, 0, f"{name}: {result.stderr[-3000:]}")
      too_open = [f"{os.path.relpath(p, work)} {stat.S_IMODE(os.lstat(p).st_mode):o}"
                  for p in _all_files(work) if os.lstat(p).st_mode & forbidden]
      self.assertEqual(too_open, [], f"umask {umask:03o}")
      # And the umask is honoured, not replaced by a fixed private mode: the owner can read.
      self.assertTrue(all(os.lstat(p).st_mode & stat.S_IRUSR for p in _all_files(work)))


if __name__ == "__main__":
  absltest.main()
