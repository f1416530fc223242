#!/usr/bin/env bash
# CI: the wheel alone runs the local control plane. Build the wheel, install it into a
# fresh venv outside the checkout, and run `flox-isa devcluster up`/`down` from there
# (the binary cache is warm: `make binaries` ran before).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/flox-isa-wheel.XXXXXX")"
cleanup() {
  if [[ -x "$WORK/venv/bin/flox-isa" ]]; then
    (cd "$WORK" && venv/bin/flox-isa devcluster down --dir "$WORK/cluster" >/dev/null 2>&1) || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "==> building the wheel"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$ROOT"
echo "==> installing it into a fresh venv in $WORK"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet -c "$ROOT/constraints.txt" "$WORK"/dist/flox_isa-*.whl
cd "$WORK"  # nothing of the checkout is on the path from here
if "$WORK/venv/bin/python" -c 'import flox_isa, sys; sys.exit("'"$ROOT"'" in flox_isa.__file__)'; then
  echo "==> flox-isa devcluster up (from the installed package)"
  "$WORK/venv/bin/flox-isa" devcluster up --dir "$WORK/cluster" | tail -n 3
  "$WORK/venv/bin/flox-isa" devcluster status --dir "$WORK/cluster"
  "$WORK/venv/bin/flox-isa" devcluster down --dir "$WORK/cluster"
  echo "==> the wheel's devcluster came up and went down"
else
  echo "wheel-check: flox_isa was imported from the checkout, not the wheel" >&2
  exit 1
fi
