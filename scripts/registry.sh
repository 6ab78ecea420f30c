#!/usr/bin/env bash
# Runs Debian's reference registry (docker-registry, distribution 2.8) on 127.0.0.1:5000 for the
# test images, without systemd: our own config, storage in a cache dir that survives runs.
# Usage: scripts/registry.sh start|stop|status
set -euo pipefail

ADDR=127.0.0.1:5000
URL="http://$ADDR/v2/"
BIN=/usr/bin/docker-registry
DIR="${XDG_CACHE_HOME:-$HOME/.cache}/dirk/registry"
CONFIG="$DIR/config.yml"
LOG="$DIR/registry.log"
PIDFILE="$DIR/registry.pid"

# True when a distribution registry answers /v2/ on $ADDR.
answers() {
  if command -v curl >/dev/null; then
    curl --noproxy '*' -fsS -m 1 -o /dev/null "$URL" 2>/dev/null
  else
    python3 - "$URL" <<'EOF' 2>/dev/null
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
opener.open(sys.argv[1], timeout=1).close()
EOF
  fi
}

# The pid from the pid file when that process is still our registry.
our_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "docker-registry serve $CONFIG" || return 1
  echo "$pid"
}

write_config() {
  mkdir -p "$DIR/data"
  cat >"$CONFIG" <<EOF
# Written by scripts/registry.sh; changes are overwritten at the next start.
version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $ADDR
  secret: dirk-local-test-registry # one instance on loopback: any fixed value will do
  headers:
    X-Content-Type-Options: [nosniff]
EOF
}

start() {
  if answers; then
    echo "registry: already answering on $ADDR"
    return 0
  fi
  if [ ! -x "$BIN" ]; then
    echo "registry: $BIN is missing; install it: apt-get install docker-registry (or make setup)" >&2
    return 1
  fi
  if pid=$(our_pid); then # running but not answering: a stuck earlier start
    kill "$pid" 2>/dev/null || true
  fi
  write_config
  # Keep the log short: a new start begins a new log once it passes 10 MB.
  if [ -f "$LOG" ] && [ "$(stat -c %s "$LOG")" -gt 10000000 ]; then
    mv -f "$LOG" "$LOG.1"
  fi
  echo "--- registry.sh start $(date -u +%FT%TZ)" >>"$LOG"
  # setsid: its own session, so the registry outlives make, the shell and CI's process group.
  setsid "$BIN" serve "$CONFIG" >>"$LOG" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  for _ in $(seq 100); do
    if answers; then
      echo "registry: started on $ADDR (pid $pid, data $DIR/data, log $LOG)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    sleep 0.05
  done
  kill "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  echo "registry: did not answer on $URL within 5 s; last lines of $LOG:" >&2
  tail -n 20 "$LOG" >&2 || true
  return 1
}

stop() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$PIDFILE"
    if answers; then
      echo "registry: something else answers on $ADDR (not started by this script); left alone" >&2
      return 1
    fi
    echo "registry: not running"
    return 0
  fi
  kill "$pid"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  echo "registry: stopped (pid $pid)"
}

status() {
  local pid=""
  pid=$(our_pid) || true
  if answers; then
    echo "registry: answering on $ADDR${pid:+ (pid $pid)}, data $DIR/data"
    return 0
  fi
  echo "registry: not answering on $ADDR${pid:+ (pid $pid is alive but not answering)}"
  return 3
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
  echo "usage: $0 start|stop|status" >&2
  exit 2
  ;;
esac
