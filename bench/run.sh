#!/bin/sh
# Run every benchmark. Usage: sh bench/run.sh BUILD_DIR [ARGS...]
# (`make bench` calls `sh bench/run.sh build`); ARGS go to each benchmark,
# e.g. --quick for a smoke test.
#   vfs    the encrypted VFS against plain SQLite (issue 2)
#   store  the mailbox store, encrypted against a plain file: appends,
#          FETCH, SEARCH TEXT on a 100k-message mailbox (issue 3)
#   lmtp   LMTP delivery, sealbox-lmtpd against a private Dovecot LMTP
#          (bench/lmtp.py driving the C load generator bench/lmtp.c;
#          installs dovecot-lmtpd when missing) (issue 4)
#   postfix  end-to-end messages/s through a private Postfix instance with
#          and without sealbox-milter (bench/postfix.py) (issue 5)
set -e
BUILD=${1:-build}
[ $# -gt 0 ] && shift
"$BUILD"/bench/vfs "$@"
echo
"$BUILD"/bench/store "$@"
echo
python3 "$(dirname "$0")"/lmtp.py "$BUILD" "$@"
echo
# mail through a private Postfix instance with and without sealbox-milter
# (bench/postfix.py; needs root; installs postfix when missing) (issue 5)
python3 "$(dirname "$0")"/postfix.py "$BUILD" "$@"
