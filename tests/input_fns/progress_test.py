"""Progress: rate-limited lines with examples/s and ETA, driven by a fake clock."""

from absl.testing import absltest

from input_fns import progress


class FakeClock:

  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


class ProgressTest(absltest.TestCase):

  def test_lines_are_rate_limited_and_show_rate_and_eta(self):
    clock, lines = FakeClock(), []
    p = progress.Progress(1000, interval_s=10, clock=clock, log=lines.append)
    clock.now += 2
    p.add(100)  # 2 s in: below the interval, no line
    self.assertEqual(lines, [])
    clock.now += 8
    p.add(100)  # 10 s in: 200 done, 20/s, 800 left -> 40 s
    self.assertEqual(lines, ["writing: 200/1,000 examples (20.0%), 20 examples/s, ETA 40s"])
    clock.now += 5
    p.add(100)
    self.assertLen(lines, 1)
    clock.now += 5
    p.add(700)
    self.assertLen(lines, 2)
    self.assertNotIn("ETA", lines[-1])  # done: no ETA
    p.finish()
    self.assertEqual(lines[-1], "writing: 1,000 examples in 20s (50 examples/s)")

  def test_long_eta_is_readable(self):
    clock, lines = FakeClock(), []
    p = progress.Progress(10_000_000, interval_s=0, clock=clock, log=lines.append)
    clock.now += 10
    p.add(1000)
    self.assertTrue(lines[-1].endswith("ETA 27h46m"), lines[-1])


if __name__ == "__main__":
  absltest.main()
