#!/bin/sh
# The README's first command: a demo of the encrypted store through
# sealboxctl. Creates ./demo-state, a domain and a mailbox, delivers a
# message into the sealed spool, unlocks the mailbox with its password and
# exports it as mboxrd, then shows that no plaintext is on disk.
set -eu
BUILD=${1:-build}
TOP=$(cd "$(dirname "$0")/.." && pwd)
CTL="$TOP/$BUILD/sealboxctl"
STATE="$TOP/demo-state"
PASSWORD="demo-password-please-change"

rm -rf "$STATE"
mkdir -p "$STATE"
chmod 700 "$STATE"
cat >"$STATE/sealbox.conf" <<CONF
# demo configuration written by tests/demo.sh
state_dir = $STATE/var
CONF
export SEALBOX_CONF="$STATE/sealbox.conf"

echo "== sealboxctl init"
"$CTL" init
"$CTL" domain add example.test
echo "== mailbox add demo@example.test (password: $PASSWORD)"
printf '%s\n' "$PASSWORD" | "$CTL" mailbox add demo@example.test --password-stdin
"$CTL" alias add hello@example.test mailbox:demo@example.test
echo "== deliver a message (sealed to the mailbox's public key; no password needed)"
"$CTL" deliver demo@example.test --from sender@example.org <<MSG
From: Sender <sender@example.org>
To: demo@example.test
Subject: Hello from the sealbox demo
Date: $(date -R)
Message-ID: <demo-$(date +%s)@example.org>

This line is the secret: only the password opens it.
MSG
"$CTL" mailbox list
echo "== export (unlocks with the password, imports the spool, writes mboxrd)"
printf '%s\n' "$PASSWORD" | "$CTL" export demo@example.test --password-stdin --mbox "$STATE/export.mbox"
echo "---- $STATE/export.mbox"
cat "$STATE/export.mbox"
echo "----"
if grep -r -a -q "only the password opens it" "$STATE/var"; then
	echo "FAIL: plaintext found under $STATE/var" >&2
	exit 1
fi
echo "== no plaintext anywhere under $STATE/var (grep -r found nothing)"
echo "== wrong password is refused:"
printf 'not-the-password\n' | "$CTL" export demo@example.test --password-stdin --mbox /dev/null || true
echo
echo "Demo state: $STATE (config $SEALBOX_CONF). Try:"
echo "  SEALBOX_CONF=$SEALBOX_CONF $CTL mailbox list --json"
echo "The LMTP, IMAP and milter daemons arrive with the next issues."
