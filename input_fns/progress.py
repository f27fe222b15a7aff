"""Rate-limited progress lines for long conversions: done/total, examples/s and ETA."""

import time
from typing import Callable, Optional

from absl import logging


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
  """Counts finished items and logs at most one line per `interval_s`.

  Example line: "writing: 12,288/60,000 examples (20.5%), 41,210 examples/s, ETA 1s".
  """

  def __init__(self, total: int, what: str = "examples", label: str = "writing",
               interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic,
               log: Callable[[str], None] = lambda line: logging.info("%s", line)):
    """Args:
      total: items expected in all.
      what: unit name in the line.
      label: prefix of the line.
      interval_s: minimum seconds between two lines (the final line always prints).
      clock: monotonic seconds (injectable for tests).
      log: receives each line.
    """
    self.total = total
    self.done = 0
    self._what = what
    self._label = label
    self._interval = interval_s
    self._clock = clock
    self._log = log
    self._start = clock()
    self._last = self._start

  def rate(self) -> float:
    elapsed = self._clock() - self._start
    return self.done / elapsed if elapsed > 0 else 0.0

  def line(self) -> str:
    rate = self.rate()
    pct = 100.0 * self.done / self.total if self.total else 100.0
    text = f"{self._label}: {self.done:,}/{self.total:,} {self._what} ({pct:.1f}%), {rate:,.0f} {self._what}/s"
    eta = self.eta()
    if eta is not None and self.done < self.total:
      text += f", ETA {_duration(eta)}"
    return text

  def eta(self) -> Optional[float]:
    rate = self.rate()
    if rate <= 0:
      return None
    return max(self.total - self.done, 0) / rate

  def add(self, n: int) -> None:
    """Records n more finished items; logs if the interval has passed."""
    self.done += n
    now = self._clock()
    if now - self._last >= self._interval:
      self._last = now
      self._log(self.line())

  def finish(self) -> None:
    """Logs the final line with the average rate."""
    elapsed = self._clock() - self._start
    self._log(f"{self._label}: {self.done:,} {self._what} in {_duration(elapsed)} "
              f"({self.rate():,.0f} {self._what}/s)")
