"""Checkpoints: which ones are kept, what they hold, and starting from someone else's.

  retention.py   the best N by an eval metric beside the latest K; `resolve(model_dir, which)`,
                 the one way every script names a checkpoint; the evaluator's checkpoint loop
  info.py        variables, shapes, dtypes, sizes and step of a checkpoint (inspect_checkpoint)
  warm_start.py  warm start from a pre-trained checkpoint, with a report before training
"""
