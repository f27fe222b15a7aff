#!/usr/bin/env bash
# Re-resolves requirements.in into requirements_lock.txt in a throw-away venv.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3.11 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q -r "$root/requirements.in"
{
  echo "# Generated from requirements.in by third_party/update_lock.sh on Python 3.11; do not edit by hand."
  "$tmp/venv/bin/python" -m pip freeze --all | grep -v -E '^(pip|setuptools|wheel)=='
} > "$root/requirements_lock.txt"
echo "wrote $root/requirements_lock.txt"
