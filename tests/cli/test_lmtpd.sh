#!/bin/bash
# sealbox-lmtpd against real sockets: transcripts, pipelining, end to end
# through sealboxctl export, retries, limits, write failures, webhooks.
set -u
exec python3 "${SBX_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/transcripts/run_lmtp.py" "${SBX_BIN:-build}"
