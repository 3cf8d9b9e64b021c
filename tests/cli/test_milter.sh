#!/bin/bash
# sealbox-milter over the real milter protocol (no Postfix needed): see
# tests/milter/run_milter.py.
set -u
exec python3 "${SBX_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/milter/run_milter.py" "${SBX_BIN:-build}"
