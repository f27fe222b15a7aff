"""Looking at trained models and runs: what evaluate, predict and report run.

  evaluation.py  full evaluation of one checkpoint on a split, confusion matrix PNG
  prediction.py  batch inference of a checkpoint to JSONL or CSV
  reporting.py   scalar curves read back from TensorBoard event files
  plots.py       PNG figures: training curves, confusion matrices
  report_job.py  the report job: curves of several runs as a PNG and a CSV
  tensorboard_logs.py  what TensorBoard shows beyond scalars: each full eval's confusion
                 matrix as an image, the run's hparams and final metrics for the HParams tab
"""
