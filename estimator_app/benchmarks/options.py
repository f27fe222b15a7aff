"""Options every benchmark suite receives (built once from flags in scripts/benchmark.py)."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class BenchmarkOptions:
  """Attributes:
    repetitions: measured rounds per variant, alternated.
    scale: multiplies data sizes and step counts (small for smoke tests).
    work_dir: scratch directory the suite may write into.
  """
  repetitions: int = 3
  scale: float = 1.0
  work_dir: str = "/tmp"
