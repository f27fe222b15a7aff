"""ExperimentConfig: precedence, JSON round trip, clear errors, resume checks."""

import json
import os

import tensorflow as tf
from absl.testing import parameterized

from estimator_app import config as config_lib


def _cfg(run=None, optimization=None, **sections):
  d = {"run": dict(run or {}), "optimization": dict(optimization or {})}
  d.update(sections)
  return config_lib.from_dict(d, "test")


class DefaultsFollowTheRunTest(tf.test.TestCase, parameterized.TestCase):
  """Every step-count default checked against a 50-step and a 100k-step run (issue 13)."""

  @parameterized.named_parameters(
      # train_steps, steps_per_run -> checkpoint, quick eval, log, patience
      ("fifty_steps", 50, 1, 50, 25, 5, 150),
      ("three_hundred", 300, 1, 100, 50, 30, 300),
      ("main_job", 2000, 1, 500, 250, 100, 1500),
      ("main_job_20_per_run", 2000, 20, 500, 240, 100, 1500),
      ("hundred_thousand", 100_000, 1, 5000, 2500, 100, 15000),
      ("hundred_thousand_8_per_run", 100_000, 8, 5000, 2496, 96, 15000),
  )
  def test_automatic_cadences(self, steps, k, checkpoint, quick, log, patience):
    c = _cfg(run={"train_steps": steps}, optimization={"steps_per_run": k}).cadence
    self.assertEqual((c.checkpoint_steps, c.quick_eval_steps, c.log_every_steps,
                      c.patience_steps), (checkpoint, quick, log, patience))
    self.assertEqual(c.decay_steps, steps)  # the default cosine schedule spans the run
    for value in (c.checkpoint_steps, c.quick_eval_steps, c.log_every_steps):
      self.assertEqual(value % k, 0, value)  # the K-step train op lands on every cadence
    self.assertLessEqual(c.checkpoint_steps, steps)  # at least one evaluation

  @parameterized.parameters(50, 2400, 5000, 100_000)
  def test_default_schedule_ends_at_train_steps(self, steps):
    cfg = _cfg(run={"train_steps": steps})
    self.assertEqual(cfg.optimization.lr_schedule, "cosine")
    self.assertEqual(cfg.train_config.decay_steps, steps)
    self.assertEqual(config_lib.warnings(cfg), [])

  def test_values_the_user_sets_are_kept(self):
    c = _cfg(run={"train_steps": 1000, "save_checkpoints_steps": 300, "quick_eval_steps": 0,
                  "log_every_steps": 7, "early_stopping_patience_steps": 50},
             optimization={"decay_steps": 4000}).cadence
    self.assertEqual((c.checkpoint_steps, c.quick_eval_steps, c.log_every_steps,
                      c.patience_steps, c.decay_steps), (300, 0, 7, 50, 4000))

  def test_a_cosine_schedule_that_ends_at_zero_before_the_run_is_refused(self):
    with self.assertRaisesRegex(
        config_lib.ConfigError,
        r"reaches learning rate 0 at step 2000 \(--decay_steps=2000\) but --train_steps=2400: "
        r"the last 400 steps would train nothing. Leave --decay_steps at 0"):
      _cfg(run={"train_steps": 2400}, optimization={"decay_steps": 2000})

  def test_a_schedule_floor_reached_early_is_warned_about_once(self):
    cfg = _cfg(run={"train_steps": 2400},
               optimization={"decay_steps": 2000, "min_lr_fraction": 0.1})
    warnings = config_lib.warnings(cfg)
    self.assertLen(warnings, 1)
    self.assertIn("reaches its floor (--min_lr_fraction=0.1) at step 2000", warnings[0])
    late = _cfg(optimization={"lr_schedule": "piecewise", "boundaries": [1000, 3000]})
    self.assertIn("--boundaries [3000] lie at or after --train_steps=2000", config_lib.warnings(late)[0])

  @parameterized.named_parameters(
      ("warmup_as_long_as_the_run", {"train_steps": 100}, {"warmup_steps": 100},
       r"--warmup_steps=100 is not below --train_steps=100"),
      ("cosine_shorter_than_warmup", {"train_steps": 100},
       {"warmup_steps": 50, "decay_steps": 40, "min_lr_fraction": 0.1},
       r"--decay_steps=40: expected > warmup_steps \(50\)"),
      ("profile_after_the_run", {"train_steps": 100, "profile_steps": "100,120"}, {},
       r"--profile_steps='100,120' starts at or after --train_steps=100"),
      ("profile_backwards", {"profile_steps": "9,3"}, {}, r"--profile_steps='9,3'"),
      ("zero_steps", {"train_steps": 0}, {}, r"--train_steps=0: expected 1 or more"),
      ("bad_patience", {"early_stopping_patience_steps": -5}, {},
       r"--early_stopping_patience_steps=-5"),
      ("bad_warm_start_map", {"warm_start_map": "a=b,c"}, {}, r"warm start name map entry 'c'"),
      ("bad_warm_start_vars", {"warm_start_vars": "dense_("}, {}, r"--warm_start_vars='dense_\('"),
      ("quick_eval_below_auto", {"quick_eval_steps": -2}, {}, r"--quick_eval_steps=-2"),
  )
  def test_bad_step_settings_fail_when_the_config_is_built(self, run, optimization, message):
    # Before train() writes config.json or a run record: nothing reaches model_dir.
    with self.assertRaisesRegex(config_lib.ConfigError, message):
      _cfg(run=run, optimization=optimization)

  def test_a_later_layer_completes_an_earlier_one(self):
    # A file that alone would be refused (a 1000-step schedule in a 2000-step run) is fine
    # once the flags set train_steps: cross-section checks run on the final config only.
    cfg = config_lib.from_layers([({"optimization": {"decay_steps": 1000}}, "config file x"),
                                  ({"run": {"train_steps": 1000}}, "flags")])
    self.assertEqual(cfg.cadence.decay_steps, 1000)
    with self.assertRaisesRegex(config_lib.ConfigError, "reaches learning rate 0"):
      config_lib.from_layers([({"optimization": {"decay_steps": 1000}}, "config file x")])

  def test_cadence_summary_names_every_resolved_count(self):
    line = config_lib.cadence_summary(_cfg(run={"train_steps": 100_000}))
    self.assertEqual(line, "run: 100000 steps, checkpoint + full eval every 5000, quick eval "
                           "every 2500, log every 100, cosine schedule over 100000 steps")


class ConfigTest(tf.test.TestCase, parameterized.TestCase):

  def _write(self, content):
    path = os.path.join(self.create_tempdir().full_path, "exp.json")
    with open(path, "w") as f:
      f.write(content if isinstance(content, str) else json.dumps(content))
    return path

  def test_file_overrides_defaults_and_json_round_trips(self):
    path = self._write({"model": "dnn", "hparams": {"hidden_units": [32, 16]},
                        "optimization": {"learning_rate": 0.5},
                        "data": {"batch_size": 7}, "run": {"train_steps": 11}})
    cfg = config_lib.load_file(path)
    self.assertEqual(cfg.hparams.hidden_units, (32, 16))
    self.assertEqual(cfg.optimization.learning_rate, 0.5)
    self.assertEqual((cfg.data.batch_size, cfg.run.train_steps), (7, 11))
    self.assertEqual(cfg.data.eval_batch_size, config_lib.DataConfig().eval_batch_size)
    again = config_lib.from_dict(json.loads(cfg.to_json()), "round trip")
    self.assertEqual(again, cfg)

  def test_hparams_override_model_then_optimization(self):
    cfg = config_lib.apply_hparams(config_lib.ExperimentConfig(model="dnn"),
                                   "hidden_units=[8],learning_rate=0.25")
    self.assertEqual(cfg.hparams.hidden_units, (8,))
    self.assertEqual(cfg.optimization.learning_rate, 0.25)

  @parameterized.named_parameters(
      ("not_json", "{not json", r"is not valid JSON: .* line 1"),
      ("unknown_section", {"runs": {}}, r"unknown section\(s\) \['runs'\]"),
      ("unknown_key", {"data": {"batchsize": 3}}, r"\[data\].*batchsize.*unknown key"),
      ("wrong_type", {"run": {"train_steps": "many"}}, r"\[run\].*train_steps.*expected int"),
      ("unknown_model", {"model": "nope"}, r"unknown model 'nope'"),
      ("section_not_object", {"run": [1]}, r"section 'run' must be a JSON object"),
  )
  def test_bad_config_file_names_file_and_key(self, content, message):
    path = self._write(content)
    with self.assertRaisesRegex(config_lib.ConfigError, f"config file {path}.*{message}"):
      config_lib.load_file(path)

  def test_mistyped_names_suggest_the_nearest_valid_ones(self):
    path = self._write({"data": {"batchsize": 3}})
    with self.assertRaisesRegex(config_lib.ConfigError,
                                r"\[data\].*batchsize.*unknown key.*; did you mean 'batch_size'"):
      config_lib.load_file(path)
    path = self._write({"optimisation": {}})
    with self.assertRaisesRegex(config_lib.ConfigError, r"unknown section\(s\) \['optimisation'\]; "
                                r"known: .*; did you mean 'optimization'\?$"):
      config_lib.load_file(path)
    dnn = config_lib.ExperimentConfig(model="dnn")
    with self.assertRaisesRegex(config_lib.ConfigError,
                                r"unknown key\(s\) \['dropuot'\] for model 'dnn'; model keys: .*"
                                r"; did you mean 'dropout'\?$"):
      config_lib.apply_hparams(dnn, "dropuot=0.1")
    with self.assertRaisesRegex(config_lib.ConfigError,
                                r"\['dropuot', 'learning_rat', 'zzz'\].*; 'dropuot': did you mean "
                                r"'dropout'\?; 'learning_rat': did you mean 'learning_rate'\?$"):
      config_lib.apply_hparams(dnn, "dropuot=0.1,learning_rat=1,zzz=2")

  def test_missing_config_file(self):
    with self.assertRaisesRegex(config_lib.ConfigError, "does not exist"):
      config_lib.load_file("/nonexistent/exp.json")

  def test_bad_hparam(self):
    with self.assertRaisesRegex(config_lib.ConfigError, r"unknown key\(s\) \['depth'\] for model 'dnn'"):
      config_lib.apply_hparams(config_lib.ExperimentConfig(model="dnn"), "depth=3")
    with self.assertRaisesRegex(config_lib.ConfigError, "--hparams.*dropout.*expected float"):
      config_lib.apply_hparams(config_lib.ExperimentConfig(model="dnn"), "dropout=lots")

  def test_resume_refuses_other_architecture(self):
    base = config_lib.ExperimentConfig(model="dnn")
    config_lib.check_resumable(base, base)  # same architecture: fine
    changed = config_lib.apply_hparams(base, "hidden_units=[5]")
    with self.assertRaisesRegex(config_lib.ConfigError, r"different architecture \(hidden_units"):
      config_lib.check_resumable(base, changed)
    # Optimization changes are not architecture changes.
    config_lib.check_resumable(base, config_lib.apply_hparams(base, "learning_rate=0.5"))

  def test_example_experiments_in_docs_load(self):
    folder = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "experiments")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    self.assertNotEmpty(names)
    for name in names:
      cfg = config_lib.load_file(os.path.join(folder, name))
      with open(os.path.join(folder, name)) as f:
        self.assertEqual(cfg.model, json.load(f).get("model", cfg.model), name)

  def test_paths_resolve_against_working_directory(self):
    cfg = config_lib.from_dict(
        {"data": {"data_dir": "d", "train_data": "a:0.7,gs://b/c:0.3", "eval_sets": "x=e"},
         "run": {"model_dir": "m"}}, "test")
    cfg = config_lib.with_resolved_paths(cfg, "/work")
    self.assertEqual(cfg.data.data_dir, "/work/d")
    self.assertEqual(cfg.data.train_data, "/work/a:0.7,gs://b/c:0.3")
    self.assertEqual(cfg.data.eval_sets, "x=/work/e")
    self.assertEqual(cfg.run.model_dir, "/work/m")


if __name__ == "__main__":
  tf.test.main()
