#!/usr/bin/env bash
# Installs the released official Dagger SDKs that tests/compat/ drives against dirk's engine:
# PyPI dagger-io in its own virtualenv (never a dependency of dirk) and npm @dagger.io/dagger in
# its own node project, both under .cache/compat/ (git-ignored). Idempotent: a stamp per tool
# records the pinned version, so a second run only checks the stamps.
# Usage: scripts/compat-tools.sh        (prints the two tool paths when ready)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.cache/compat"
PY_SDK="dagger-io==0.21.11"
NODE_SDK="@dagger.io/dagger@0.21.9"
VENV="$DIR/venv"
NODE="$DIR/node"

mkdir -p "$DIR"

# Python: a separate venv, so dagger-io's own dependencies never meet dirk's.
if [ "$(cat "$VENV/.sdk" 2>/dev/null)" != "$PY_SDK" ]; then
  python="${PYTHON:-python3}"
  command -v "$python" >/dev/null || { echo "compat-tools: $python not found" >&2; exit 1; }
  [ -x "$VENV/bin/python" ] || "$python" -m venv "$VENV"
  echo "compat-tools: installing $PY_SDK into ${VENV#"$ROOT"/}"
  # (this machine's pip config lists local indexes that lack most names: drop those warnings)
  "$VENV/bin/python" -m pip install -q "$PY_SDK" 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$PY_SDK" >"$VENV/.sdk"
fi

# Node: a tiny ESM project of our own holding only the SDK.
if [ "$(cat "$NODE/.sdk" 2>/dev/null)" != "$NODE_SDK" ]; then
  command -v node >/dev/null || {
    echo "compat-tools: node is missing: install Node.js 20+ (Debian: apt-get install nodejs npm)" >&2
    exit 1
  }
  command -v npm >/dev/null || {
    echo "compat-tools: npm is missing: install it (Debian: apt-get install npm)" >&2
    exit 1
  }
  mkdir -p "$NODE"
  cat >"$NODE/package.json" <<'EOF'
{
  "name": "dirk-compat-node",
  "private": true,
  "description": "Written by scripts/compat-tools.sh: the official Dagger TypeScript SDK for tests/compat.",
  "type": "module"
}
EOF
  echo "compat-tools: installing $NODE_SDK into ${NODE#"$ROOT"/}"
  (cd "$NODE" && npm install --no-audit --no-fund --loglevel=error --save-exact "$NODE_SDK" >/dev/null)
  echo "$NODE_SDK" >"$NODE/.sdk"
fi

echo "compat-tools: $VENV/bin/python ($PY_SDK), $NODE/node_modules ($NODE_SDK)"
