#!/bin/sh
# Passes only on the PostgreSQL primary, so HAProxy's write backend follows a promotion
# (Case 2 in docs/haproxy.md). Needs psql and a role psentinel may use without a password (e.g. a
# pg_hba.conf "peer" or "trust" line for local connections).
# Usage: check_script=/usr/share/psentinel/checks/pg-primary.sh [PSQL-ARGS...]
set -eu
in_recovery=$(psql -X -qtA -c 'select pg_is_in_recovery()' "$@")
case "$in_recovery" in
    f) echo "primary"; exit 0 ;;
    t) echo "standby (in recovery)"; exit 1 ;;
    *) echo "unexpected answer from psql: $in_recovery"; exit 2 ;;
esac
