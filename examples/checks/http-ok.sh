#!/bin/sh
# Passes when the application answers its own health URL with a 2xx within 5 seconds
# (Case 1 in docs/haproxy.md: a check that looks deeper than a port).
# Usage: check_script=/usr/share/psentinel/checks/http-ok.sh http://127.0.0.1:8080/health
set -eu
url=${1:?usage: http-ok.sh URL}
code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$url") || { echo "no answer from $url"; exit 1; }
echo "$url -> $code"
case "$code" in 2??) exit 0 ;; *) exit 1 ;; esac
