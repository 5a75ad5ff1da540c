#!/bin/sh
# Probes per second one psentinel answers: ApacheBench (apache2-utils) against one HTTP probe
# port, one connection per probe as HAProxy does. Optional X-Haproxy-Server-State header to
# include the send-state path.
#
#   bench/probe_rate.sh [BINARY] [REQUESTS] [CONCURRENCY] [send-state]
#
# Prints "probes/s: N" (ab's "Requests per second"). Run it a few times: the number moves with
# whatever else the machine does.
set -eu
BIN=${1:-target/release/psentinel}
N=${2:-50000}
C=${3:-32}
HDR=${4:-}
command -v ab >/dev/null || { echo "ab missing: apt-get install apache2-utils" >&2; exit 1; }
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$DIR/p.cfg" <<CFG
[bench]
port=$PORT
bind=127.0.0.1
[general]
log_level=1
pid_file=$DIR/p.pid
sock_file=$DIR/p.sock
state_dir=$DIR/state
dbus=off
CFG
"$BIN" -D -f "$DIR/p.cfg" 2>"$DIR/log" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
i=0
until "$BIN" -c status -f "$DIR/p.cfg" >/dev/null 2>&1; do
    i=$((i+1)); [ $i -lt 100 ] || { cat "$DIR/log"; exit 1; }; sleep 0.05
done
if [ "$HDR" = send-state ]; then
    set -- -H "X-Haproxy-Server-State: UP 2/3; name=bck/srv1; node=lb1; weight=1/1; scur=0/0; qcur=0"
else
    set --
fi
ab -q -n "$N" -c "$C" "$@" "http://127.0.0.1:$PORT/" 2>&1 | awk '/Requests per second/ {print "probes/s: " $4} /Failed requests/ {print "failed: " $3}'
