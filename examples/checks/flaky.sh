#!/bin/sh
# Demo check: fails about one run in three, so health flaps in
# `psentinel -c status` and in the probe replies.
# Usage: check_script=/usr/share/psentinel/checks/flaky.sh
n=$(od -An -N1 -tu1 /dev/urandom | tr -d ' ')
if [ $((n % 3)) -eq 0 ]; then
    echo "simulated failure (roll $n)" >&2
    exit 1
fi
echo "ok (roll $n)"
