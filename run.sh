#!/usr/bin/env bash
# The two commands of the README's Quick start.
#   ./run.sh course [OPTIONS]   set up .venv and run the whole course headless on the default backend
#                               (kind where Docker and kind work, else sim); writes build/course/
#   ./run.sh test [PYTEST ARGS] set up .venv and run the tests
#   ./run.sh setup              only set up .venv
# Any other first word runs that k8slab subcommand inside the venv (./run.sh lab, ./run.sh doctor, ...).
set -euo pipefail
cd "$(dirname "$0")"
VENV=${K8SLAB_VENV:-.venv}
PY=${PYTHON:-python3}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "k8slab needs Python 3.11 or newer as '$PY' (set PYTHON=/path/to/python3.11)." >&2; exit 1
    fi
    if ! "$PY" -m venv "$VENV"; then
      echo "Could not create a virtual environment. On Debian/Ubuntu: sudo apt-get install -y python3-venv" >&2
      exit 1
    fi
  fi
  local stamp="$VENV/.k8slab-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[run.sh] installing k8slab and its dependencies into $VENV (once)" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    touch "$stamp"
  fi
}

cmd=${1:-course}
[ $# -gt 0 ] && shift
setup
case "$cmd" in
  setup)
    exit 0      # .venv is ready
    ;;
  test)
    set +e
    "$VENV/bin/python" -m pytest "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then echo "run.sh: pytest collected no tests: that is a failure" >&2; exit 1; fi
    exit "$rc"
    ;;
  *)
    exec "$VENV/bin/k8slab" "$cmd" "$@"
    ;;
esac
