#!/bin/bash
# End to end through a real, private Postfix instance (chrooted as Debian
# runs it, then unchrooted) with the shipped postfix-examples/,
# sealbox-milter, sealbox-lmtpd, smtp-sink and a webhook receiver: see
# tests/e2e/run_e2e.py.  Needs root: without it, one "not ok" line says so.
set -u
exec python3 "${SBX_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/run_e2e.py" "${SBX_BIN:-build}"
