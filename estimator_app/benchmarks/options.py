"""Options every benchmark suite receives (built once from flags in scripts/benchmark.py)."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class BenchmarkOptions:
  """Attributes:
    repetitions: measured rounds per variant, alternated.
    scale: multiplies data sizes and step counts (small for smoke tests).
    work_dir: scratch directory the suite may write into.
    steps_per_run: training steps per session.run of the tuned Estimator variants (train
      suite; the model_fn's steps_per_run).
  """
  repetitions: int = 3
  scale: float = 1.0
  work_dir: str = "/tmp"
  steps_per_run: int = 20
