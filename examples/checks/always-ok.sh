#!/bin/sh
# Demo check: always passes.
# Usage: check_script=/usr/share/psentinel/checks/always-ok.sh
echo "all good"
exit 0
