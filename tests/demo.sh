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
LMTPD="$TOP/$BUILD/sealbox-lmtpd"
LMTP_PORT=${SBX_DEMO_LMTP_PORT:-2424}
# a demo lmtpd left running by an earlier `make demo`
if [ -f "$TOP/demo-lmtpd.pid" ]; then
	kill "$(cat "$TOP/demo-lmtpd.pid")" 2>/dev/null || true
	rm -f "$TOP/demo-lmtpd.pid"
	sleep 0.3
fi
cat >"$STATE/sealbox.conf" <<CONF
# demo configuration written by tests/demo.sh
state_dir = $STATE/var
lmtp_listen = inet:127.0.0.1:$LMTP_PORT, unix:$STATE/lmtp.sock
webhook_listen = unix:$STATE/webhook.sock
hostname = demo.example.test
CONF
export SEALBOX_CONF="$STATE/sealbox.conf"

echo "== sealboxctl init"
"$CTL" init
"$CTL" domain add example.test
echo "== mailbox add demo@example.test (password: $PASSWORD)"
printf '%s\n' "$PASSWORD" | "$CTL" mailbox add demo@example.test --password-stdin
"$CTL" alias add hello@example.test mailbox:demo@example.test
echo "== start sealbox-lmtpd on 127.0.0.1:$LMTP_PORT (log: $STATE/lmtpd.log)"
"$LMTPD" -f -c "$SEALBOX_CONF" >"$STATE/lmtpd.log" 2>&1 &
echo $! >"$TOP/demo-lmtpd.pid"
for i in $(seq 50); do [ -S "$STATE/lmtp.sock" ] && break; sleep 0.1; done
ID=$("$CTL" mailbox list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
echo "== deliver a message over LMTP as Postfix would (sealed to the mailbox's public key; no password needed)"
python3 - "$LMTP_PORT" "$ID" <<'PY'
import socket, sys, time, email.utils
port, mid = int(sys.argv[1]), sys.argv[2]
msg = ("From: Sender <sender@example.org>\r\nTo: hello@example.test\r\n"
       "Subject: Hello from the sealbox demo\r\nDate: %s\r\nMessage-ID: <demo-%d@example.org>\r\n\r\n"
       "This line is the secret: only the password opens it.\r\n" % (email.utils.formatdate(), time.time()))
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
def cmd(line):
    if line is not None:
        s.sendall(line.encode() + b"\r\n")
    while True:
        r = f.readline().decode().rstrip()
        print("   S: " + r)
        if r[3:4] != "-":
            return r
cmd(None)
for c in ("LHLO demo.client", "MAIL FROM:<sender@example.org>",
          "RCPT TO:<%s@mailbox.sealbox.internal> ORCPT=rfc822;hello@example.test" % mid, "DATA"):
    print("   C: " + c)
    cmd(c)
s.sendall(msg.encode() + b".\r\n")
if not cmd(None).startswith("250"):
    sys.exit("delivery failed")
cmd("QUIT")
PY
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
echo "sealbox-lmtpd keeps running (pid $(cat "$TOP/demo-lmtpd.pid")): LMTP on 127.0.0.1:$LMTP_PORT,"
echo "recipient <$ID@mailbox.sealbox.internal>. Stop it with: kill \$(cat $TOP/demo-lmtpd.pid)"
echo "Demo state: $STATE (config $SEALBOX_CONF). Try:"
echo "  SEALBOX_CONF=$SEALBOX_CONF $CTL mailbox list --json"
echo "The IMAP server and the milter arrive with the next issues."
