"""Prints 'N passed, N failed, N skipped' over every test case in bazel-testlogs' JUnit XML.

Exits 1 when no test case ran at all, so an empty suite can never pass CI.
"""

import pathlib
import sys
import xml.etree.ElementTree as ET


def main(root: str) -> int:
  passed = failed = skipped = 0
  for xml in sorted(pathlib.Path(root).glob("**/test.xml")):
    try:
      tree = ET.parse(xml)
    except ET.ParseError:
      failed += 1
      print(f"ci: unreadable test log {xml}")
      continue
    for case in tree.iter("testcase"):
      # tf.test.TestCase inherits a deprecated `test_session` method that absltest lists as a
      # suppressed test in every TF test class; it is not one of ours.
      if case.get("name") == "test_session" and case.get("result") == "suppressed":
        continue
      if case.find("failure") is not None or case.find("error") is not None:
        failed += 1
      elif case.find("skipped") is not None or case.get("result") == "suppressed":
        skipped += 1
      else:
        passed += 1
  print(f"{passed} passed, {failed} failed, {skipped} skipped")
  if passed + failed == 0:
    print("ci: no test case ran; an empty suite is a failure.")
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "bazel-testlogs"))
