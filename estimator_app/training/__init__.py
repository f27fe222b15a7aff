"""The pieces of a training run around the Estimator's own loop.

  distribution.py     strategies, TF_CONFIG clusters, RunConfig, who writes what
  hooks.py            step logging with a training-only clock, NaN guard, profiling, quick eval
  early_stopping.py   stop on an eval metric's plateau (patience in global steps)
  preemption.py       SIGTERM -> checkpoint and exit within the grace period
  run_record.py       model_dir/run_records.jsonl: what each start ran, where, on which data
  input_diagnosis.py  --diagnose_input: is the run input-bound?
  local_cluster.py    a whole TF_CONFIG cluster as local processes, to try a cluster job

Entry point: `estimator_app/runner.py` composes these (local_cluster.run_cluster, behind
//scripts:local_cluster, launches the runs); nothing here builds an Estimator.
"""
