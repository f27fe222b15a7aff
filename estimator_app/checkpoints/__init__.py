"""Checkpoints: which ones are kept, what they hold, and starting from someone else's.

  info.py        how a checkpoint is named and found: `resolve(model_dir, which)` (latest, best
                 or a path), the one way every script names a checkpoint, `checkpoint_prefix`,
                 `checkpoint_step`; and what one holds: variables, shapes, dtypes, sizes, step
  retention.py   the best N by an eval metric beside the latest K (re-exports `resolve`,
                 LATEST, BEST for the scripts); the evaluator's checkpoint loop
  warm_start.py  warm start from a pre-trained checkpoint, with a report before training
"""
