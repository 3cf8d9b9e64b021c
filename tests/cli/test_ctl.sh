#!/bin/bash
# tests/cli/test_ctl.sh - sealboxctl end to end, in a throwaway state dir.
#   SBX_BIN=build SBX_TOP=. bash tests/cli/test_ctl.sh
# Prints one TAP line per check ("ok - name" / "not ok - name") and exits
# non-zero when any check failed. Every bad input is checked for: exit
# status != 0, exactly one "sealboxctl: ..." line on stderr naming the
# problem, and no change to the mailbox/alias/domain listings or to any file
# under mailboxes/ and spool/ (directory.db's WAL may change on a read).
set -u

BIN=${SBX_BIN:?SBX_BIN must name the build directory}/sealboxctl
T=$(mktemp -d "${TMPDIR:-/tmp}/sbx-ctl.XXXXXX")
STATE=$T/state
CONF=$T/sealbox.conf
HOLDER=
FAILED=0
N=0

# Stop the flock(1) lock holder and its child (which inherited the lock).
kill_holder() {
	local p kids
	[ -n "$HOLDER" ] || return 0
	if command -v pgrep >/dev/null 2>&1; then
		kids=$(pgrep -P "$HOLDER")
	else
		kids=$(cat /proc/"$HOLDER"/task/*/children 2>/dev/null)
	fi
	for p in $kids; do kill "$p" 2>/dev/null; done
	kill "$HOLDER" 2>/dev/null
	wait "$HOLDER" 2>/dev/null
	HOLDER=
}
cleanup() {
	kill_holder
	rm -rf "$T"
}
trap cleanup EXIT

printf 'state_dir = %s\n' "$STATE" >"$CONF"
: >"$T/empty"

pass() { N=$((N + 1)); echo "ok - $1"; }
fail() {
	N=$((N + 1)); FAILED=$((FAILED + 1)); echo "not ok - $1"
	if [ -s "$T/err" ]; then sed 's/^/# stderr: /' "$T/err" | head -5; fi
}
# check NAME COMMAND...: the command's exit status decides.
check() { local name=$1; shift; if "$@"; then pass "$name"; else fail "$name"; fi; }
not() { ! "$@"; }

# ok_out ERE: the last run succeeded and printed a line matching ERE.
ok_out() { [ "$RC" -eq 0 ] && grep -E -q -- "$1" "$T/out"; }
# run STDIN_FILE ARGS...: sealboxctl with the test config; sets RC, output in
# $T/out and $T/err.
run() { local in=$1; shift; "$BIN" -c "$CONF" "$@" <"$in" >"$T/out" 2>"$T/err"; RC=$?; }
ctl() { "$BIN" -c "$CONF" "$@"; }
# Lines of a file, for a password: pwfile NAME LINE...
pwfile() { local f=$T/$1; shift; printf '%s\n' "$@" >"$f"; echo "$f"; }

snapshot() {
	{
		ctl mailbox list --json
		ctl alias list --json
		ctl domain list
		if [ -d "$STATE" ]; then
			(cd "$STATE" && find mailboxes spool \( -type f -o -type d \) -print 2>/dev/null |
				LC_ALL=C sort | while read -r f; do
					if [ -f "$f" ]; then sha256sum "$f"; else echo "dir $f"; fi
				done)
		fi
	} >"$1" 2>&1
}

# expect_fail NAME PATTERN STDIN_FILE ARGS...: must fail with one stderr
# line matching PATTERN (grep -E -i) and change nothing.
expect_fail() {
	local name=$1 pat=$2 in=$3; shift 3
	snapshot "$T/before"
	run "$in" "$@"
	snapshot "$T/after"
	check "$name: exit status non-zero" [ "$RC" -ne 0 ]
	check "$name: one error line on stderr" [ "$(wc -l <"$T/err")" -eq 1 ]
	check "$name: message '$pat'" grep -E -i -q "^sealboxctl: .*($pat)" "$T/err"
	check "$name: nothing changed" cmp -s "$T/before" "$T/after"
}

json_get() {   # json_get FILE PYTHON-EXPR-over-d
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}
mailbox_field() {   # mailbox_field ADDRESS FIELD
	ctl mailbox list --json >"$T/mb.json" &&
		json_get "$T/mb.json" "[m['$2'] for m in d if m['address']=='$1'][0]"
}

spool_waiting() {   # spool_waiting ADDRESS: records waiting in the sealed spool
	ctl mailbox spool "$1" --json >"$T/sp.json" && json_get "$T/sp.json" "d['waiting']"
}
spool_has() {   # spool_has ADDRESS DELIVERY-ID
	ctl mailbox spool "$1" | grep -qx "$2"
}

# mbox_check MBOX EXPECTED-FILE...: parse MBOX as mboxrd and compare the
# messages with the files byte for byte (as multisets, order-free).
mbox_check() {
	python3 - "$@" <<'EOF'
import re, sys
data = open(sys.argv[1], 'rb').read()
msgs, cur = [], None
for line in re.findall(rb'[^\n]*\n|[^\n]+$', data):
	if line.startswith(b'From '):
		if cur is not None:
			msgs.append(cur)
		cur = b''
		continue
	if cur is None:
		sys.exit('mbox does not start with a From_ line')
	if re.match(rb'>+From ', line):
		line = line[1:]
	cur += line
if cur is not None:
	msgs.append(cur)
msgs = [m[:-1] if m.endswith(b'\n') else m for m in msgs]
# sealboxctl's own X-Sealbox block in front of each message (sealboxctl(8)).
msgs = [re.sub(rb'\AX-Sealbox-Folder:[^\n]*\n(X-Sealbox-Flags:[^\n]*\n)?(X-Sealbox-Keywords:[^\n]*\n)?',
	       b'', m) for m in msgs]
want = [open(f, 'rb').read() for f in sys.argv[2:]]
if sorted(msgs) != sorted(want):
	sys.exit('got %d messages, want %d; differ: %r' % (len(msgs), len(want),
		 [m[:60] for m in msgs if m not in want]))
EOF
}

# rfc822_size FILE...: the sum of their RFC822.SIZE (a bare LF counts as CRLF).
rfc822_size() {
	python3 -c 'import re,sys; print(sum(len(re.sub(rb"(?<!\r)\n", b"\r\n", open(f,"rb").read())) for f in sys.argv[1:]))' "$@"
}

start=$(date +%s)

# ------------------------------------------------------------------ init
run "$T/empty" init
check "init succeeds" [ "$RC" -eq 0 ]
check "init creates directory.db, mailboxes/, spool/" \
	[ -f "$STATE/directory.db" -a -d "$STATE/mailboxes" -a -d "$STATE/spool" ]
check "state dir is mode 0700" [ "$(stat -c %a "$STATE")" = 700 ]
check "directory.db is mode 0600" [ "$(stat -c %a "$STATE/directory.db")" = 600 ]
run "$T/empty" init
check "init is idempotent" [ "$RC" -eq 0 ]

# --------------------------------------------------------------- usage
run "$T/empty" -h
check "-h prints usage, exit 0" ok_out '^usage: sealboxctl'
run "$T/empty" help
check "help prints usage" ok_out 'mailbox add'
run "$T/empty" frobnicate
check "unknown command: exit 2 with usage on stderr" eval '[ "$RC" -eq 2 ] && grep -q "^usage:" "$T/err"'
run "$T/empty" mailbox add
check "missing argument: exit 2" [ "$RC" -eq 2 ]
run "$T/empty" mailbox list --bogus
check "unknown option: exit 2" [ "$RC" -eq 2 ]

# -------------------------------------------------------------- domains
run "$T/empty" domain add Example.COM
check "domain add" [ "$RC" -eq 0 ]
run "$T/empty" domain add other.org
check "domain add second" [ "$RC" -eq 0 ]
run "$T/empty" domain add spare.net
run "$T/empty" domain list
check "domain list shows normalised names" grep -qx 'example.com' "$T/out"
check "domain list shows all" [ "$(wc -l <"$T/out")" -eq 3 ]
expect_fail "duplicate domain" "exist" "$T/empty" domain add example.com
run "$T/empty" domain del spare.net
check "domain del" eval '[ "$RC" -eq 0 ] && ! ctl domain list | grep -q spare.net'
expect_fail "domain del unknown" "no such|not" "$T/empty" domain del spare.net

# ------------------------------------------------------------ mailboxes
PW_A='correct horse battery staple'
run "$(pwfile pw_a "$PW_A")" mailbox add Alice@Example.com --password-stdin
check "mailbox add --password-stdin" ok_out '^mailbox alice@example.com id [0-9a-f]{32}$'
check "mailbox add --password-stdin prints no password" not grep -q "password" "$T/out"
ALICE=$(sed -n 's/^mailbox alice@example.com id //p' "$T/out")

run "$T/empty" mailbox add bob@example.com --quota 10M
check "mailbox add with generated password" ok_out '^password: [A-Za-z0-9]{24}$'
PW_B=$(sed -n 's/^password: //p' "$T/out")
BOB=$(sed -n 's/^mailbox bob@example.com id //p' "$T/out")

ctl mailbox list --json >"$T/mb.json"
check "mailbox list --json is a JSON array of 2" [ "$(json_get "$T/mb.json" 'len(d)')" = 2 ]
check "mailbox list --json: id is 32 hex digits" \
	[ "$(json_get "$T/mb.json" "all(__import__('re').fullmatch('[0-9a-f]{32}', m['id']) for m in d)")" = True ]
check "mailbox list --json: alice's id" [ "$(mailbox_field alice@example.com id)" = "$ALICE" ]
check "mailbox list --json: default quota 1G" [ "$(mailbox_field alice@example.com quota)" = 1073741824 ]
check "mailbox list --json: --quota 10M" [ "$(mailbox_field bob@example.com quota)" = 10485760 ]
check "mailbox list --json: usage 0" \
	[ "$(mailbox_field alice@example.com usage_bytes)/$(mailbox_field alice@example.com usage_msgs)" = 0/0 ]
run "$T/empty" mailbox list
check "mailbox list (text): one line per mailbox" eval '[ "$(wc -l <"$T/out")" -eq 2 ] && grep -q "^bob@example.com $BOB " "$T/out"'
check "mailbox file exists under mailboxes/ab/" [ -f "$STATE/mailboxes/${ALICE:0:2}/$ALICE.sqlite" ]

run "$(pwfile pw_b "$PW_B")" export bob@example.com --password-stdin --mbox "$T/bob.mbox"
check "export works with the generated password" ok_out '^exported 0 messages'
check "export of an empty mailbox writes an empty file" [ -f "$T/bob.mbox" -a ! -s "$T/bob.mbox" ]

# -------------------------------------------------------------- deliver
MARKER="sbx-plaintext-marker-$$-$RANDOM$RANDOM"
printf 'From: a@other.org\nSubject: one\n\nFrom me to you\n>From already quoted\n%s\n' "$MARKER" >"$T/m1"
printf 'From: b@other.org\r\nSubject: two\r\n\r\ncrlf body\r\nFrom here\r\n' >"$T/m2"
printf 'Subject: three\n\nlast line without much\n\n\n' >"$T/m3"
run "$T/m1" deliver alice@example.com --from sender@other.org
check "deliver 1" ok_out '^delivered [0-9a-f]{32}$'
run "$T/m2" deliver Alice@Example.com
check "deliver 2 (CRLF)" [ "$RC" -eq 0 ]
run "$T/m3" deliver alice@example.com
check "deliver 3" [ "$RC" -eq 0 ]
check "three sealed entries in the spool" [ "$(spool_waiting alice@example.com)" -eq 3 ]
run /dev/null mailbox spool alice@example.com
check "mailbox spool lists the three delivery ids" \
	eval '[ "$RC" -eq 0 ] && [ "$(grep -cE "^[0-9a-f]{32}$" "$T/out")" -eq 3 ] && grep -q "^3 waiting, [0-9]* bytes$" "$T/out"'
check "spool: one journal file, no per-message files" \
	eval '[ "$(ls "$STATE/spool/$ALICE")" = journal ]' 
check "usage counts spooled messages" [ "$(mailbox_field alice@example.com usage_msgs)" = 3 ]
check "marker not in any file after delivery" not grep -r -a -q -F "$MARKER" "$STATE"

# -------------------------------------------------------------- export
run "$(pwfile pw_a2 "$PW_A")" export alice@example.com --password-stdin --mbox "$T/a.mbox"
check "export" ok_out '^exported 3 messages'
check "export: all 3 messages byte-exact (mboxrd)" mbox_check "$T/a.mbox" "$T/m1" "$T/m2" "$T/m3"
check "export: 'From ' lines quoted" grep -q '^>From me to you' "$T/a.mbox"
check "export: nothing waits in the spool" [ "$(spool_waiting alice@example.com)" -eq 0 ]
check "export: the claimed journal segment is gone" [ -z "$(ls -A "$STATE/spool/$ALICE")" ]
check "export: no temporary file left" [ -z "$(ls "$T"/a.mbox.* 2>/dev/null)" ]
check "export: usage_msgs is 3" [ "$(mailbox_field alice@example.com usage_msgs)" = 3 ]
check "export: usage_bytes is the messages' RFC822.SIZE" \
	[ "$(mailbox_field alice@example.com usage_bytes)" = "$(rfc822_size "$T/m1" "$T/m2" "$T/m3")" ]
check "marker not in any file after import into the store" not grep -r -a -q -F "$MARKER" "$STATE"
check "password not in any file" not grep -r -a -q -F "$PW_A" "$STATE"
"$BIN" -c "$CONF" export alice@example.com --password-stdin --mbox - <"$T/pw_a" >"$T/stdout.mbox" 2>"$T/err"
check "export --mbox - writes the mbox to stdout" cmp -s "$T/stdout.mbox" "$T/a.mbox"

# -------------------------------------------------------------- import
printf 'Subject: imported one\n\nFrom quoted\nhello\n' >"$T/i1"
printf 'Subject: imported two\r\n\r\nbye\r\n' >"$T/i2"
{
	printf 'From someone@example.org Mon Jan  1 00:00:00 2024\n'
	sed 's/^From /\>From /' "$T/i1"; printf '\n'
	printf 'From MAILER-DAEMON Tue Feb  2 10:00:00 2021\n'
	cat "$T/i2"; printf '\n'
} >"$T/in.mbox"
run "$(pwfile pw_a3 "$PW_A")" import alice@example.com --password-stdin --mbox "$T/in.mbox"
check "import" ok_out '^imported 2 messages'
check "import: usage_msgs is 5" [ "$(mailbox_field alice@example.com usage_msgs)" = 5 ]
run "$T/pw_a" export alice@example.com --password-stdin --mbox "$T/a2.mbox"
check "export after import shows 3+2 messages" grep -q '^exported 5 messages' "$T/out"
check "export after import: all 5 byte-exact" \
	mbox_check "$T/a2.mbox" "$T/m1" "$T/m2" "$T/m3" "$T/i1" "$T/i2"
check "import keeps the From_ line date" grep -q '^From MAILER-DAEMON Mon Jan  1 00:00:00 2024$' "$T/a2.mbox"
# A file someone else left where a temporary name could be is never
# written into: the export is a new 0600 file.
: >"$T/a3.mbox.tmp"; chmod 644 "$T/a3.mbox.tmp"
run "$T/pw_a" export alice@example.com --password-stdin --mbox "$T/a3.mbox"
check "export: output is mode 0600" [ "$RC" -eq 0 -a "$(stat -c %a "$T/a3.mbox")" = 600 ]
check "export: a pre-existing FILE.tmp is left untouched" [ ! -s "$T/a3.mbox.tmp" ]
# A generated password that cannot be shown means a mailbox nobody can
# open: mailbox add fails and takes it back out.
"$BIN" -c "$CONF" mailbox add lost@example.com </dev/null >/dev/full 2>"$T/err"; RC=$?
check "mailbox add with unwritable stdout fails" [ "$RC" -ne 0 ]
check "mailbox add with unwritable stdout leaves no mailbox" not grep -q lost@example.com <(ctl mailbox list)
check "mailbox add with unwritable stdout leaves no files" \
	[ -z "$(cd "$STATE/mailboxes" && find . -name '*.sqlite' -newer "$T/a3.mbox" 2>/dev/null)" ]
printf 'Subject: no From_ line\n\nbody\n' >"$T/bad.mbox"
expect_fail "import of a malformed mbox" "mbox|From" "$T/pw_a" \
	import alice@example.com --password-stdin --mbox "$T/bad.mbox"
expect_fail "import with wrong password" "wrong password" "$(pwfile pw_wrong 'not the password')" \
	import alice@example.com --password-stdin --mbox "$T/in.mbox"

# --------------------------------------------------------------- passwd
PW_A_NEW='a new and better passphrase'
run "$(pwfile pw_change "$PW_A" "$PW_A_NEW")" mailbox passwd alice@example.com --password-stdin
check "mailbox passwd" [ "$RC" -eq 0 ]
check "passwd leaves the mailbox file alone" [ -f "$STATE/mailboxes/${ALICE:0:2}/$ALICE.sqlite" ]
expect_fail "export with the old password" "wrong password" "$T/pw_a" \
	export alice@example.com --password-stdin --mbox "$T/x.mbox"
check "failed export leaves no output file" [ ! -e "$T/x.mbox" -a -z "$(ls "$T"/x.mbox.* 2>/dev/null)" ]
run "$(pwfile pw_a_new "$PW_A_NEW")" export alice@example.com --password-stdin --mbox "$T/a3.mbox"
check "export with the new password" ok_out '^exported 5 messages'
expect_fail "passwd with wrong old password" "wrong password" "$(pwfile pw_c2 'wrong old pass' 'whatever long')" \
	mailbox passwd alice@example.com --password-stdin
expect_fail "passwd with too short new password" "short" "$(pwfile pw_c3 "$PW_A_NEW" 'short')" \
	mailbox passwd alice@example.com --password-stdin

# -------------------------------------------------------------- aliases
run "$T/empty" alias add sales@example.com mailbox:alice@example.com forward:ext@other.org \
	webhook:https://hooks.example.net/x
check "alias add with mailbox, forward and webhook targets" [ "$RC" -eq 0 ]
check "alias add prints the webhook id and a 32-byte secret once" \
	grep -Eq '^webhook [0-9a-f]{32} secret [0-9a-f]{64}$' "$T/out"
HOOK=$(sed -n 's/^webhook \([0-9a-f]*\) secret.*/\1/p' "$T/out")
printf 'my-own-webhook-secret-0123\n' >"$T/ws"
run "$T/ws" alias add hook2@example.com webhook:https://h.example.net/y --webhook-secret-stdin
check "alias add --webhook-secret-stdin" ok_out '^webhook [0-9a-f]{32}$'
check "a given webhook secret is not echoed" not grep -q 'my-own' "$T/out"
run "$T/empty" alias add '*@other.org' forward:catch@example.com
check "catch-all alias" [ "$RC" -eq 0 ]
ctl alias list --json >"$T/al.json"
check "alias list --json: sales has 3 targets in order" \
	[ "$(json_get "$T/al.json" "[[t['kind'] for t in a['targets']] for a in d if a['alias']=='sales@example.com'][0]")" \
		= "['mailbox', 'forward', 'webhook']" ]
check "alias list --json: mailbox target names the mailbox" \
	[ "$(json_get "$T/al.json" "[a['targets'][0]['address']+' '+a['targets'][0]['mailbox_id'] for a in d if a['alias']=='sales@example.com'][0]")" \
		= "alice@example.com $ALICE" ]
check "alias list --json: webhook url and id" \
	[ "$(json_get "$T/al.json" "[a['targets'][2]['url']+' '+a['targets'][2]['webhook_id'] for a in d if a['alias']=='sales@example.com'][0]")" \
		= "https://hooks.example.net/x $HOOK" ]
check "alias list --json never shows secrets" not grep -qi secret "$T/al.json"
run "$T/empty" alias list
check "alias list (text)" grep -q '^sales@example.com -> mailbox:alice@example.com, forward:ext@other.org, webhook:' "$T/out"
expect_fail "duplicate alias" "already exists" "$T/empty" alias add Sales@example.com forward:x@other.org
expect_fail "webhook with ftp:// URL" "url|https" "$T/empty" alias add w1@example.com webhook:ftp://x
expect_fail "webhook with empty host" "url|host" "$T/empty" alias add w2@example.com webhook:https://
expect_fail "alias to unknown mailbox" "no such mailbox" "$T/empty" alias add w3@example.com mailbox:nobody@example.com
expect_fail "alias in unhosted domain" "not hosted" "$T/empty" alias add w4@elsewhere.org forward:x@other.org
expect_fail "bad target kind" "target" "$T/empty" alias add w5@example.com smtp:x@other.org
printf 'short\n' >"$T/ws_short"
expect_fail "webhook secret too short" "short" "$T/ws_short" \
	alias add w6@example.com webhook:https://h.example.net/z --webhook-secret-stdin
run "$T/empty" alias del hook2@example.com
check "alias del" eval '[ "$RC" -eq 0 ] && ! ctl alias list | grep -q hook2'
expect_fail "alias del unknown" "no such alias" "$T/empty" alias del hook2@example.com
expect_fail "alias del of a mailbox address" "mailbox" "$T/empty" alias del alice@example.com
# The address is taken by an alias: mailbox add gets as far as creating the
# files, then the directory refuses; the files must go again.
expect_fail "mailbox add over an alias" "already exists" "$(pwfile pw_s 'password for sales')" \
	mailbox add sales@example.com --password-stdin

# ----------------------------------------------------------- bad inputs
expect_fail "mailbox add no-at-sign" "invalid address" "$T/pw_a" mailbox add no-at-sign --password-stdin
expect_fail "mailbox add a@b@" "invalid address" "$T/pw_a" mailbox add 'a@b@' --password-stdin
expect_fail "mailbox add <x@y.z>" "invalid address" "$T/pw_a" mailbox add '<x@y.z>' --password-stdin
expect_fail "mailbox add in unhosted domain" "not hosted" "$T/pw_a" mailbox add carl@unhosted.org --password-stdin
expect_fail "mailbox add duplicate" "already exists" "$T/pw_a" mailbox add alice@example.com --password-stdin
expect_fail "mailbox add short password" "shorter than" "$(pwfile pw_short 'short')" \
	mailbox add dave@example.com --password-stdin
expect_fail "mailbox add no password on stdin" "no password" "$T/empty" mailbox add dave@example.com --password-stdin
expect_fail "mailbox add bad quota" "quota" "$T/empty" mailbox add dave@example.com --quota lots
expect_fail "deliver to unknown address" "no such mailbox" "$T/m1" deliver nobody@example.com
expect_fail "export of unknown address" "no such mailbox" "$T/pw_a" \
	export nobody@example.com --password-stdin --mbox "$T/n.mbox"
expect_fail "mailbox del unknown address" "no such mailbox" "$T/empty" mailbox del nobody@example.com
expect_fail "passwd of unknown address" "no such mailbox" "$T/pw_change" mailbox passwd nobody@example.com --password-stdin
expect_fail "deliver empty message" "empty" "$T/empty" deliver alice@example.com
expect_fail "domain del while in use" "mailbox|alias|use" "$T/empty" domain del example.com
expect_fail "export to a missing directory" "cannot create" "$T/pw_a_new" \
	export alice@example.com --password-stdin --mbox "$T/no/such/dir/a.mbox"

# Size limits.
run "$(pwfile pw_q 'quota box password')" mailbox add tiny@example.com --quota 100 --password-stdin
check "mailbox add with a 100-byte quota" [ "$RC" -eq 0 ]
head -c 80 /dev/zero | tr '\0' 'x' >"$T/m80"
run "$T/m80" deliver tiny@example.com
check "deliver within quota" [ "$RC" -eq 0 ]
expect_fail "deliver over quota" "mailbox full" "$T/m80" deliver tiny@example.com
printf 'state_dir = %s\nmessage_size_limit = 1K\n' "$STATE" >"$T/small.conf"
head -c 2048 /dev/zero | tr '\0' 'y' >"$T/m2k"
expect_fail "message larger than message_size_limit" "larger than message_size_limit \(1024 bytes\)" "$T/m2k" \
	-c "$T/small.conf" deliver alice@example.com

# Configuration and state dir problems (the later -c wins over run's).
expect_fail "missing config" "cannot read config" "$T/empty" -c /nonexistent/sealbox.conf mailbox list
printf 'state_dir = %s\n' "$T/nonexistent" >"$T/noexist.conf"
expect_fail "state_dir does not exist" "no directory.db|init" "$T/empty" -c "$T/noexist.conf" mailbox list --json
check "state_dir not created by a failed command" [ ! -e "$T/nonexistent" ]
: >"$T/regular"
printf 'state_dir = %s\n' "$T/regular" >"$T/regular.conf"
expect_fail "state_dir is a regular file" "not a directory" "$T/empty" -c "$T/regular.conf" domain list
expect_fail "init on a regular file" "not a directory|cannot create" "$T/empty" -c "$T/regular.conf" init
printf 'state_dir = %s\nno_such_key = 1\n' "$STATE" >"$T/badkey.conf"
expect_fail "unknown config key" "unknown key" "$T/empty" -c "$T/badkey.conf" mailbox list

# ------------------------------------------------------------------ lock
LOCK=$STATE/mailboxes/${ALICE:0:2}/$ALICE.lock
flock -x "$LOCK" sleep 30 &
HOLDER=$!
for _ in $(seq 1 100); do
	flock -n -x "$LOCK" true 2>/dev/null || break
	sleep 0.05
done
check "lock holder has the lock" not flock -n -x "$LOCK" true
expect_fail "export while imapd holds the lock" "mailbox in use by sealbox-imapd" "$T/pw_a_new" \
	export alice@example.com --password-stdin --mbox "$T/l.mbox"
expect_fail "mailbox del while imapd holds the lock" "mailbox in use by sealbox-imapd" "$T/empty" \
	mailbox del alice@example.com
expect_fail "import while imapd holds the lock" "mailbox in use by sealbox-imapd" "$T/pw_a_new" \
	import alice@example.com --password-stdin --mbox "$T/in.mbox"
expect_fail "mailbox messages while imapd holds the lock" "mailbox in use by sealbox-imapd" "$T/pw_a_new" \
	mailbox messages alice@example.com --password-stdin
check "mailbox still exists" [ "$(mailbox_field alice@example.com id)" = "$ALICE" ]
kill_holder
run "$T/pw_a_new" export alice@example.com --password-stdin --mbox "$T/l.mbox"
check "export works once the lock is released" [ "$RC" -eq 0 ]

# ------------------------------------------------------- damaged mailbox
run "$(pwfile pw_c 'carol password 1')" mailbox add carol@example.com --password-stdin
CAROL=$(sed -n 's/^mailbox carol@example.com id //p' "$T/out")
for m in m1 m2 m3; do ctl deliver carol@example.com <"$T/$m" >/dev/null; done
run "$T/pw_c" export carol@example.com --password-stdin --mbox "$T/c.mbox"
check "carol: export" ok_out '^exported 3 messages'
run "$T/m1" deliver carol@example.com
ENTRY=$(sed -n 's/^delivered //p' "$T/out")
check "carol: one entry waits in the spool" spool_has carol@example.com "$ENTRY"
DB=$STATE/mailboxes/${CAROL:0:2}/$CAROL.sqlite
SIZE=$(stat -c %s "$DB")
OFF=$(( (SIZE / 2) / 4096 * 4096 ))
head -c 4096 /dev/urandom | dd of="$DB" bs=4096 seek=$((OFF / 4096)) conv=notrunc status=none
expect_fail "export of a damaged mailbox file" "damaged|authentication" "$T/pw_c" \
	export carol@example.com --password-stdin --mbox "$T/c2.mbox"
check "damaged mailbox: the spool entry is still there" spool_has carol@example.com "$ENTRY"
check "damaged mailbox: no output file" [ ! -e "$T/c2.mbox" -a -z "$(ls "$T"/c2.mbox.* 2>/dev/null)" ]

# ------------------------------------------------- import from stdin
{ printf '%s\n' "$PW_B"; cat "$T/in.mbox"; } >"$T/pw_and_mbox"
run "$T/pw_and_mbox" import bob@example.com --password-stdin --mbox -
check "import --mbox - reads the mbox after the password line" ok_out '^imported 2 messages'
check "import from stdin: usage_msgs is 2" [ "$(mailbox_field bob@example.com usage_msgs)" = 2 ]

# ------------------------------------- export/import carry mailbox state
# A mailbox with messages in INBOX and in nested and non-ASCII folders,
# with every flag, keywords and distinct internal dates survives
# export -> import -> export unchanged (sealboxctl(8) "MBOX FORMAT").
PW_R='round trip password'
run "$(pwfile pw_r "$PW_R")" mailbox add rt1@example.com --password-stdin
run "$T/pw_r" mailbox add rt2@example.com --password-stdin
check "round trip: two mailboxes" [ "$RC" -eq 0 ]
# mbox_rec DATE FILE BLOCK-LINE...: one mboxrd record with the lines first.
mbox_rec() {
	local date=$1 file=$2; shift 2
	printf 'From MAILER-DAEMON %s\n' "$date"
	[ $# -eq 0 ] || printf '%s\n' "$@"
	sed 's/^\(>*From \)/>\1/' "$file"
	printf '\n'
}
# r1: CRLF, a "From " line opening the body; r3: a delivered message that
# starts with X-Sealbox fields of its own, which must not pick its folder.
printf 'From: a@other.org\r\nSubject: crlf\r\n\r\nFrom the start\r\n>From quoted\r\nend\r\n' >"$T/r1"
printf 'Subject: work\n\nFrom here\n' >"$T/r2"
printf 'X-Sealbox-Folder: Trash\nX-Sealbox-Flags: \\Deleted\nX-Sealbox-Keywords: evil\nSubject: sneaky\n\nhi\n' >"$T/r3"
printf 'Subject: umlaut folder\n\nbody\n' >"$T/r4"
printf 'Subject: all flags\n\nlast\n' >"$T/r5"
{
	mbox_rec 'Mon Jan  1 10:00:00 2024' "$T/r1" 'X-Sealbox-Folder: INBOX' \
		'X-Sealbox-Flags: \Seen \Answered' 'X-Sealbox-Keywords: $Forwarded'
	mbox_rec 'Tue Mar  4 05:06:07 2025' "$T/r2" 'X-Sealbox-Folder: Work/2026' \
		'X-Sealbox-Flags: \Flagged \Draft' 'X-Sealbox-Keywords: custom Project-X'
	mbox_rec 'Sat Feb 29 23:59:59 2020' "$T/r4" 'X-Sealbox-Folder: %C3%84rchiv%202026' \
		'X-Sealbox-Flags: \Deleted'
	mbox_rec 'Wed Dec 31 23:59:59 1997' "$T/r5" 'X-Sealbox-Folder: Work/2026' \
		'X-Sealbox-Flags: \Draft \Deleted \Flagged \Answered \Seen' \
		'X-Sealbox-Keywords: $Forwarded $MDNSent custom'
} >"$T/rt_src.mbox"
run "$T/pw_r" import rt1@example.com --password-stdin --mbox "$T/rt_src.mbox"
check "round trip: import of the source mbox" ok_out '^imported 4 messages$'
check "round trip: no warnings" [ ! -s "$T/err" ]
run "$T/r3" deliver rt1@example.com
run "$T/pw_r" export rt1@example.com --password-stdin --mbox "$T/rt1.mbox"
check "round trip: export 1" ok_out '^exported 5 messages$'
run "$T/pw_r" mailbox messages rt1@example.com --password-stdin
cp "$T/out" "$T/rt1.list"
check "mailbox messages lists one line per message" [ "$RC" -eq 0 -a "$(wc -l <"$T/rt1.list")" -eq 5 ]
check "listing: INBOX, flags, keyword, date" grep -qxF \
	"INBOX 1 (\\Seen \\Answered) (\$Forwarded) 2024-01-01T10:00:00Z $(rfc822_size "$T/r1")" "$T/rt1.list"
check "listing: the delivered message is in INBOX with no flags or keywords" \
	grep -qE "^INBOX 2 \(\) \(\) [0-9T:-]+Z $(rfc822_size "$T/r3")\$" "$T/rt1.list"
check "listing: nested folder" grep -qxF \
	"Work/2026 1 (\\Flagged \\Draft) (custom Project-X) 2025-03-04T05:06:07Z $(rfc822_size "$T/r2")" "$T/rt1.list"
check "listing: all five flags, three keywords" grep -qxF \
	"Work/2026 2 (\\Seen \\Answered \\Flagged \\Deleted \\Draft) (\$Forwarded \$MDNSent custom) 1997-12-31T23:59:59Z $(rfc822_size "$T/r5")" \
	"$T/rt1.list"
check "listing: non-ASCII folder, escaped" grep -qxF \
	"%C3%84rchiv%202026 1 (\\Deleted) () 2020-02-29T23:59:59Z $(rfc822_size "$T/r4")" "$T/rt1.list"
run "$T/pw_r" mailbox messages rt1@example.com --password-stdin --json
check "mailbox messages --json: UTF-8 folder and lists" \
	[ "$(json_get "$T/out" "[(m['folder'], m['flags'], m['keywords']) for m in d if m['uid']==1 and m['folder'].startswith('\\u00c4')][0]")" \
		= "('Ärchiv 2026', ['\\\\Deleted'], [])" ]
check "export 1: every message byte-exact" mbox_check "$T/rt1.mbox" "$T/r1" "$T/r2" "$T/r3" "$T/r4" "$T/r5"
check "export 1: the block of a CRLF message ends its lines with CRLF" \
	grep -q $'^X-Sealbox-Keywords: \\$Forwarded\r$' "$T/rt1.mbox"
python3 - "$T/rt1.mbox" <<'PY' >"$T/blocks"
import re, sys
for rec in re.split(rb'(?m)^From ', open(sys.argv[1], 'rb').read())[1:]:
    lines = rec.split(b'\n')
    print(repr(lines[1:5]))
PY
check "export 1: sneaky message keeps its own header after sealbox's block" \
	grep -qF "[b'X-Sealbox-Folder: INBOX', b'X-Sealbox-Flags:', b'X-Sealbox-Keywords:', b'X-Sealbox-Folder: Trash']" "$T/blocks"
run "$T/pw_r" import rt2@example.com --password-stdin --mbox "$T/rt1.mbox"
check "round trip: import into a fresh mailbox" ok_out '^imported 5 messages$'
check "round trip: import printed no warning" [ ! -s "$T/err" ]
run "$T/pw_r" mailbox messages rt2@example.com --password-stdin
check "round trip: same folders, UIDs, flags, keywords, dates and sizes" cmp -s "$T/out" "$T/rt1.list"
run "$T/pw_r" export rt2@example.com --password-stdin --mbox "$T/rt2.mbox"
check "round trip: export 2" ok_out '^exported 5 messages$'
check "round trip: the two exports are identical byte for byte" cmp -s "$T/rt1.mbox" "$T/rt2.mbox"
check "round trip: usage of the copy equals the original" \
	[ "$(mailbox_field rt1@example.com usage_bytes)" = "$(mailbox_field rt2@example.com usage_bytes)" ]

# Mboxes from other tools: Status/X-Status (mutt, Dovecot), X-Keywords,
# X-Mozilla-Status/-Keys (Thunderbird); their headers stay in the message.
printf 'Status: RO\nX-Status: AF\nX-Keywords: $Forwarded, custom  bad"kw\nSubject: mutt\n\nbody\n' >"$T/f1"
printf 'Subject: tb\nX-Mozilla-Status: 1005\nX-Mozilla-Keys: $label1\n   later\n\nbody\n' >"$T/f2"
printf 'Subject: old draft\r\nStatus: O\r\nX-Status: TD\r\n\r\nbody\r\n' >"$T/f3"
printf 'Subject: plain\n\nStatus: R\n' >"$T/f4"
{
	mbox_rec 'Wed Jun  5 12:00:00 2019' "$T/f1"
	mbox_rec 'Thu Jun  6 12:00:00 2019' "$T/f2"
	mbox_rec 'Fri Jun  7 12:00:00 2019' "$T/f3"
	mbox_rec 'Sat Jun  8 12:00:00 2019' "$T/f4"
} >"$T/foreign.mbox"
run "$(pwfile pw_f 'foreign password')" mailbox add fr@example.com --password-stdin
run "$T/pw_f" import fr@example.com --password-stdin --mbox "$T/foreign.mbox" --folder Imported/Old
check "foreign mbox: import into --folder" ok_out '^imported 4 messages$'
check "foreign mbox: an invalid keyword is skipped with one warning" \
	[ "$(grep -c 'warning: message 1: keyword "bad"kw" skipped' "$T/err")" = 1 -a "$(wc -l <"$T/err")" -eq 1 ]
run "$T/pw_f" mailbox messages fr@example.com --password-stdin
cp "$T/out" "$T/fr.list"
check "foreign: Status: RO + X-Status: AF + X-Keywords" grep -qxF \
	"Imported/Old 1 (\\Seen \\Answered \\Flagged) (\$Forwarded custom) 2019-06-05T12:00:00Z $(rfc822_size "$T/f1")" "$T/fr.list"
check "foreign: X-Mozilla-Status 1005 + X-Mozilla-Keys (folded)" grep -qxF \
	"Imported/Old 2 (\\Seen \\Flagged) (\$Forwarded \$label1 later) 2019-06-06T12:00:00Z $(rfc822_size "$T/f2")" "$T/fr.list"
check "foreign: Status: O + X-Status: TD (CRLF)" grep -qxF \
	"Imported/Old 3 (\\Deleted \\Draft) () 2019-06-07T12:00:00Z $(rfc822_size "$T/f3")" "$T/fr.list"
check "foreign: a Status line in the body is not a header" grep -qxF \
	"Imported/Old 4 () () 2019-06-08T12:00:00Z $(rfc822_size "$T/f4")" "$T/fr.list"
check "foreign: --folder created the folder and its parent" \
	[ "$(grep -c '^Imported' "$T/fr.list")" -eq 4 -a "$(grep -c '^INBOX' "$T/fr.list")" -eq 0 ]
run "$T/pw_f" export fr@example.com --password-stdin --mbox "$T/fr.mbox"
check "foreign: messages kept byte-exact, their headers included" \
	mbox_check "$T/fr.mbox" "$T/f1" "$T/f2" "$T/f3" "$T/f4"

# Keywords past the limits are skipped with a warning, not fatal.
KW300=$(seq -f 'k%g' 1 300 | tr '\n' ' ')
printf 'Subject: many\nX-Keywords: %s\n\nx\n' "$KW300" >"$T/k1"
printf 'Subject: one more\nX-Keywords: k1 extra\n\nx\n' >"$T/k2"
{ mbox_rec 'Mon Jan  1 00:00:01 2024' "$T/k1"; mbox_rec 'Mon Jan  1 00:00:02 2024' "$T/k2"; } >"$T/kw.mbox"
run "$T/pw_f" import fr@example.com --password-stdin --mbox "$T/kw.mbox" --folder Many
check "keyword limits: import succeeds" ok_out '^imported 2 messages$'
check "keyword limits: more than 256 in one message: warned once" grep -q 'message 1: more than 256 keywords' "$T/err"
check "keyword limits: a 257th in the folder: warned" grep -q 'message 2: keyword "extra" skipped: folder Many already has 256' "$T/err"
run "$T/pw_f" mailbox messages fr@example.com --password-stdin --json
check "keyword limits: 256 kept, then the known one" \
	[ "$(json_get "$T/out" "[len(m['keywords']) for m in d if m['folder']=='Many']")" = "[256, 1]" ]

# Bad blocks: nothing is imported (the good first message neither).
printf 'Subject: ok\n\nok\n' >"$T/ok1"
bad_mbox() {   # bad_mbox NAME BLOCK-LINE...: ok1, then r2 with the block
	local name=$1; shift
	{ mbox_rec 'Mon Jan  1 00:00:00 2024' "$T/ok1"; mbox_rec 'Mon Jan  1 00:00:00 2024' "$T/r2" "$@"; } >"$T/$name"
	echo "$T/$name"
}
LONG=$(head -c 513 /dev/zero | tr '\0' 'a')
expect_fail "import: X-Sealbox-Folder longer than 512 bytes" "message 2: invalid X-Sealbox-Folder: folder name longer than 512" \
	"$T/pw_r" import rt2@example.com --password-stdin --mbox "$(bad_mbox long.mbox "X-Sealbox-Folder: $LONG")"
LONGE=$(head -c 511 /dev/zero | tr '\0' 'a')%C3%84
expect_fail "import: escaped X-Sealbox-Folder over 512 bytes decoded" "longer than 512" \
	"$T/pw_r" import rt2@example.com --password-stdin --mbox "$(bad_mbox longe.mbox "X-Sealbox-Folder: $LONGE")"
expect_fail "import: bad %-escape in X-Sealbox-Folder" "bad %-escape" \
	"$T/pw_r" import rt2@example.com --password-stdin --mbox "$(bad_mbox esc.mbox 'X-Sealbox-Folder: a%zz')"
expect_fail "import: control character in X-Sealbox-Folder" "control character" \
	"$T/pw_r" import rt2@example.com --password-stdin --mbox "$(bad_mbox ctl.mbox 'X-Sealbox-Folder: a%0Ab')"
expect_fail "import: empty X-Sealbox-Folder" "empty folder" \
	"$T/pw_r" import rt2@example.com --password-stdin --mbox "$(bad_mbox empty.mbox 'X-Sealbox-Folder:')"
expect_fail "import: X-Sealbox-Folder not UTF-8" "not UTF-8" \
	"$T/pw_r" import rt2@example.com --password-stdin --mbox "$(bad_mbox latin1.mbox 'X-Sealbox-Folder: %C4rchiv')"
KWLONG=$(seq -f 'keyword%05g' 1 3000 | tr '\n' ' ')
expect_fail "import: X-Sealbox block longer than 32 KiB" "block longer than 32768" \
	"$T/pw_r" import rt2@example.com --password-stdin --mbox "$(bad_mbox bigblock.mbox 'X-Sealbox-Folder: INBOX' "X-Sealbox-Keywords: $KWLONG")"
{ mbox_rec 'Mon Jan  1 00:00:00 2024' "$T/ok1"; printf 'From MAILER-DAEMON Mon Jan  1 00:00:00 2024\nX-Sealbox-Folder: INBOX\nX-Sealbox-Flags:\n\n'; } >"$T/nomsg.mbox"
expect_fail "import: X-Sealbox block with no message" "no message after" \
	"$T/pw_r" import rt2@example.com --password-stdin --mbox "$T/nomsg.mbox"
DEEP=$(printf 'd/%.0s' $(seq 1 40))x
bad_mbox deep.mbox "X-Sealbox-Folder: $DEEP" >/dev/null
run "$T/pw_r" import rt2@example.com --password-stdin --mbox "$T/deep.mbox"
check "import: a folder the store refuses fails the import" \
	[ "$RC" -eq 1 -a "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^sealboxctl: message 2: cannot create folder' "$T/err"
run "$T/pw_r" mailbox messages rt2@example.com --password-stdin
check "import: ... and imports nothing" cmp -s "$T/out" "$T/rt1.list"
run "$T/pw_r" import rt2@example.com --password-stdin --mbox "$(bad_mbox kw.mbox 'X-Sealbox-Folder: Work/2026' 'X-Sealbox-Flags: \Seen \Recent' 'X-Sealbox-Keywords: good a]b')"
check "import: bad flag and keyword in the block are skipped with warnings" \
	[ "$RC" -eq 0 -a "$(grep -c '^sealboxctl: warning: message 2: ' "$T/err")" -eq 2 ]
run "$T/pw_r" mailbox messages rt2@example.com --password-stdin
check "import: ... and the rest of the block is used" grep -qxF \
	"Work/2026 3 (\\Seen) (good) 2024-01-01T00:00:00Z $(rfc822_size "$T/r2")" "$T/out"
expect_fail "import: --folder empty" "--folder" "$T/pw_r" import rt2@example.com --password-stdin --mbox "$T/in.mbox" --folder ''
expect_fail "mailbox messages with wrong password" "wrong password" "$T/pw_a" \
	mailbox messages rt2@example.com --password-stdin

# ---------------------------------------------------------- mailbox del
run "$T/empty" mailbox del bob@example.com
check "mailbox del" [ "$RC" -eq 0 ]
check "mailbox del removes the row" [ -z "$(ctl mailbox list | grep bob@)" ]
check "mailbox del removes the files" [ -z "$(ls "$STATE/mailboxes/${BOB:0:2}" 2>/dev/null | grep "$BOB")" ]
check "mailbox del removes the spool" [ ! -e "$STATE/spool/$BOB" ]
run "$T/empty" mailbox del carol@example.com
check "mailbox del of a damaged mailbox" eval '[ "$RC" -eq 0 ] && [ ! -e "$STATE/spool/$CAROL" ]'
check "marker never in any file under the state dir" not grep -r -a -q -F "$MARKER" "$STATE"

echo "# $N checks, $FAILED failed, $(( $(date +%s) - start ))s"
[ "$FAILED" -eq 0 ]
