#!/bin/sh
# dovecot-oracle.sh -- regenerate tests/data/mime/*.expected from a real Dovecot.
#
# Usage:
#   tests/data/mime/dovecot-oracle.sh [DIR] [NAME.eml ...]
#
#   DIR        corpus directory (default: the directory holding this script)
#   NAME.eml   only these messages (default: every DIR/*.eml)
#
#   Environment: DOVECOT_IMAP  imap binary   (default /usr/lib/dovecot/imap)
#                DOVECONF      doveconf      (default: doveconf in PATH)
#                DOVECOT_BIN   dovecot, only for `--version` (default: in PATH)
#                KEEP_TMP=1    keep the temporary directory for inspection
#
# Requires: Dovecot (Debian: apt-get install dovecot-imapd), python3.
# NOT part of `make check`; the .expected files are committed data.
#
# What it does: for EACH message separately it creates a fresh private
# Maildir and a minimal dovecot.conf in a temporary directory, copies the .eml
# byte for byte into Maildir/cur/, and runs Dovecot's imap binary in PREAUTH
# mode over stdin/stdout (no daemon, no listener, /etc/dovecot is never read):
#     a SELECT INBOX
#     b FETCH 1 (UID ENVELOPE BODYSTRUCTURE BODY RFC822.SIZE)
#     c LOGOUT
# It checks that SELECT reported exactly "* 1 EXISTS" and that there is
# exactly one FETCH response, so the file -> response mapping is unambiguous.
# When run as root the imap process drops privileges to uid/gid 65534
# (Dovecot refuses mail access as root); the temp dir is chowned accordingly.
#
# Output: DIR/NNN-name.expected, four lines, in this order:
#     ENVELOPE <value>
#     BODYSTRUCTURE <value>
#     BODY <value>
#     RFC822.SIZE <n>
# <value> is the exact byte sequence Dovecot sent for that FETCH item, from
# its first byte to its last (the parenthesized list). Each line is ended by
# a single LF ("\n") that is NOT part of the value.
# LITERAL CONVENTION: when Dovecot sends a string as an IMAP literal (it does
# so for strings containing 8-bit bytes, CR, LF, or other unquotable chars),
# the value contains it exactly as on the wire: "{n}" CR LF followed by n raw
# bytes. Such a line therefore can contain CR, LF and non-UTF-8 bytes; to
# split a .expected file correctly, parse "{n}\r\n" literals and skip n bytes
# before looking for the line-terminating LF. Files without literals are
# plain one-line-per-item text.
#
# Sections: the same session also runs
#     d FETCH 1 (BODY.PEEK[<spec>] ...)
# for every <spec> of SECTIONS below, and writes DIR/NNN-name.sections, one
# record per spec, in the order of SECTIONS:
#     BODY[<spec>] {<n>}\n<n raw bytes>\n
# or, if Dovecot answered NIL,
#     BODY[<spec>] NIL\n
# <spec> is the section text as requested (not Dovecot's upper-cased echo);
# the <n> bytes are the literal Dovecot sent, byte for byte (so CRLF line
# ends, whatever the message uses). Dovecot 2.3 never answers NIL here: a
# part that does not exist is an empty literal {0}.
# DIR/dovecot-version.txt records the Dovecot version that produced them.
set -eu

# The sections recorded for every message (one per line).
SECTIONS='
HEADER
TEXT
1
1.MIME
2
2.MIME
1.1
1.2
2.1
2.HEADER
2.TEXT
1.2.MIME
3.1.MIME
HEADER.FIELDS (From Subject To)
HEADER.FIELDS.NOT (Subject Received)
2.HEADER.FIELDS (Subject)'


here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here}
[ $# -gt 0 ] && shift
imap=${DOVECOT_IMAP:-/usr/lib/dovecot/imap}
doveconf=${DOVECONF:-$(command -v doveconf || echo /usr/bin/doveconf)}

[ -x "$imap" ] || { echo "dovecot-oracle: $imap not found (apt-get install dovecot-imapd)" >&2; exit 2; }
[ -x "$doveconf" ] || { echo "dovecot-oracle: doveconf not found" >&2; exit 2; }
command -v python3 >/dev/null || { echo "dovecot-oracle: python3 needed" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dovecot-oracle.XXXXXX")
cleanup() { [ "${KEEP_TMP:-0}" = 1 ] && echo "kept $tmp" >&2 || rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

if [ "$(id -u)" = 0 ]; then
	muid=65534; mgid=65534; muser=$(getent passwd 65534 | cut -d: -f1); muser=${muser:-nobody}
	chown "$muid:$mgid" "$tmp"
else
	muid=$(id -u); mgid=$(id -g); muser=$(id -un)
fi

# `dovecot --version` only prints the version; it never starts the daemon.
dovecot_bin=${DOVECOT_BIN:-$(command -v dovecot || echo /usr/sbin/dovecot)}
{ printf 'dovecot %s\n' "$("$dovecot_bin" --version 2>/dev/null || echo unknown)"
  dpkg-query -W -f='debian package ${Package} ${Version}\n' dovecot-imapd 2>/dev/null || true
} > "$dir/dovecot-version.txt"

if [ $# -eq 0 ]; then
	set -- $(cd "$dir" && ls *.eml | LC_ALL=C sort)
fi

n=0
for f in "$@"; do
	f=$(basename "$f")
	base=${f%.eml}
	w="$tmp/$base"
	mkdir -p "$w/Maildir/cur" "$w/Maildir/new" "$w/Maildir/tmp" "$w/run" "$w/state"
	cp "$dir/$f" "$w/Maildir/cur/1000000000.M1P1.oracle:2,"
	cat > "$w/dovecot.conf" <<EOF
# private, throw-away config written by dovecot-oracle.sh
protocols = imap
ssl = no
base_dir = $w/run
state_dir = $w/state
mail_location = maildir:$w/Maildir
mail_uid = $muid
mail_gid = $mgid
first_valid_uid = 0
first_valid_gid = 0
log_path = $w/log
info_log_path = $w/log
EOF
	[ "$(id -u)" = 0 ] && chown -R "$muid:$mgid" "$w"
	# "" (BODY.PEEK[]) first, then SECTIONS; PEEK so that \Seen is not set.
	items='BODY.PEEK[]'
	printf '%s\n' "$SECTIONS" | sed '/^$/d' > "$w/sections"
	while IFS= read -r s; do items="$items BODY.PEEK[$s]"; done < "$w/sections"
	printf 'a SELECT INBOX\r\nb FETCH 1 (UID ENVELOPE BODYSTRUCTURE BODY RFC822.SIZE)\r\nd FETCH 1 (%s)\r\nc LOGOUT\r\n' "$items" |
		env -i USER="$muser" HOME="$w" PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		timeout 30 "$imap" -c "$w/dovecot.conf" > "$w/out" 2>> "$w/log" ||
		{ echo "dovecot-oracle: imap failed for $f" >&2; cat "$w/log" >&2; exit 1; }
	python3 - "$w/out" "$dir/$base.expected.tmp" "$f" "$w/sections" "$dir/$base.sections.tmp" <<'PYEOF'
import sys, re
raw = open(sys.argv[1], "rb").read()
outpath, name = sys.argv[2], sys.argv[3]
specs = [""] + open(sys.argv[4], "rb").read().decode().split("\n")[:-1]
secpath = sys.argv[5]

def die(msg):
    sys.stderr.write("dovecot-oracle: %s: %s\n" % (name, msg))
    sys.exit(1)

if raw.count(b"\r\n* 1 EXISTS\r\n") != 1 or re.search(rb"\r\n\* (?!1 )\d+ EXISTS", raw):
    die("SELECT did not report exactly 1 message:\n" + raw.decode("utf-8", "replace"))
if b"\r\na OK " not in raw or b"\r\nb OK " not in raw or b"\r\nd OK " not in raw:
    die("SELECT/FETCH not OK:\n" + raw.decode("utf-8", "replace"))

def skip_value(b, i):
    """Return index just past the IMAP value starting at b[i]."""
    c = b[i:i+1]
    if c == b"(":
        i += 1
        while True:
            while b[i:i+1] == b" ":
                i += 1
            if b[i:i+1] == b")":
                return i + 1
            i = skip_value(b, i)
    if c == b'"':
        i += 1
        while True:
            ch = b[i:i+1]
            if ch == b"":
                die("unterminated quoted string")
            if ch == b"\\":
                i += 2
                continue
            i += 1
            if ch == b'"':
                return i
    if c == b"{":
        m = re.compile(rb"\{(\d+)\+?\}\r\n").match(b, i)
        if not m:
            die("bad literal at %d" % i)
        return m.end() + int(m.group(1))
    m = re.compile(rb"[^ ()\r\n\"{]+").match(b, i)
    if not m:
        die("unexpected byte %r at %d" % (c, i))
    return m.end()

starts = [m.end() for m in re.finditer(rb"(?:^|\r\n)\* \d+ FETCH \(", raw)]
if len(starts) != 2:
    die("expected exactly two FETCH responses, got %d" % len(starts))
if len(re.findall(rb"(?:^|\r\n)\* 1 FETCH \(", raw)) != 2:
    die("FETCH response is not for message 1")
items = {}
for i in starts:
    while True:
        if raw[i:i+1] == b")":
            break
        if raw[i:i+1] == b" ":
            i += 1
            continue
        if raw[i:i+5] == b"BODY[":
            # BODY[<section>]: the section may hold spaces and lists
            e = raw.index(b"]", i)
            key = raw[i:e+1].decode()
            i = e + 1
        else:
            km = re.compile(rb"[A-Z0-9.]+").match(raw, i)
            if not km:
                die("bad item name at %d" % i)
            key = km.group(0).decode()
            i = km.end()
        if raw[i:i+1] != b" ":
            die("no space after %s" % key)
        i += 1
        j = skip_value(raw, i)
        if key in items:
            die("duplicate item %s" % key)
        items[key] = raw[i:j]
        i = j
    if raw[i+1:i+3] != b"\r\n":
        die("FETCH response not terminated by CRLF")
if items.get("UID") != b"1":
    die("unexpected UID %r" % items.get("UID"))
with open(outpath, "wb") as o:
    for k in ("ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.SIZE"):
        if k not in items:
            die("missing %s" % k)
        o.write(k.encode() + b" " + items[k] + b"\n")
with open(secpath, "wb") as o:
    for spec in specs:
        # Dovecot echoes the section upper-cased
        k = "BODY[%s]" % spec.upper()
        if k not in items:
            die("missing %s" % k)
        v = items[k]
        rec = b"BODY[" + spec.encode() + b"] "
        if v == b"NIL":
            o.write(rec + b"NIL\n")
            continue
        m = re.compile(rb"\{(\d+)\}\r\n").match(v)
        if m:
            data = v[m.end():]
        elif v[:1] == b'"':
            data = v[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        else:
            die("unexpected value for %s: %r" % (k, v[:40]))
        o.write(rec + b"{%d}\n" % len(data) + data + b"\n")
PYEOF
	mv "$dir/$base.expected.tmp" "$dir/$base.expected"
	mv "$dir/$base.sections.tmp" "$dir/$base.sections"
	n=$((n + 1))
done
echo "dovecot-oracle: wrote $n .expected and .sections files ($(head -n1 "$dir/dovecot-version.txt"))"
