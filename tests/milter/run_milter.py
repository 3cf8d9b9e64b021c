#!/usr/bin/env python3
"""sealbox-milter over the real milter protocol, without Postfix (TAP output).

    run_milter.py BUILD_DIR

Sets up a private state directory with sealboxctl, starts sealbox-milter -f
on a unix socket and talks to it the way Postfix's milter client does
(protocol version 6: 4-byte length, command byte, NUL-terminated strings;
events the milter negotiated away are not sent, replies it negotiated away
are not awaited): option negotiation and the macro lists it asks for, SMTP
and non-SMTP sessions, per-recipient replies, the envelope rewrite at end
of message (delete/add-with-parameters records), an MTA that cannot skip
headers and end-of-headers (headers play no part in any decision), abort,
concurrent connections, aliases added while it runs, a broken
directory.db, an inet listener, start-up errors, the log, and
SIGTERM/SIGHUP.
"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
CTL = os.path.join(BUILD, "sealboxctl")
MILTER = os.path.join(BUILD, "sealbox-milter")

# libmilter/mfdef.h
SMFIF_ADDHDRS, SMFIF_ADDRCPT, SMFIF_DELRCPT = 0x01, 0x04, 0x08
SMFIF_ADDRCPT_PAR, SMFIF_SETSYMLIST = 0x80, 0x100
SMFIP_NOCONNECT, SMFIP_NOHELO, SMFIP_NOBODY = 0x01, 0x02, 0x10
SMFIP_NOHDRS, SMFIP_NOEOH = 0x20, 0x40
SMFIP_NR_HDR, SMFIP_NOUNKNOWN, SMFIP_NODATA = 0x80, 0x100, 0x200
SMFIP_NR_CONN, SMFIP_NR_MAIL, SMFIP_NR_RCPT, SMFIP_NR_EOH = 0x1000, 0x4000, 0x8000, 0x40000
SMFIP_NR_ANY = 0xFF000 | SMFIP_NR_HDR   # every "no reply" flag
ALL_ACTIONS = 0x1FF
ALL_PROTO = 0x1FFFFF                     # what Postfix 3.7 offers (protocol 6)
# an MTA that can neither skip headers and end-of-headers nor go without
# replies, except to headers (as Postfix before it learnt NOHDRS/NOEOH)
OLD_PROTO = ALL_PROTO & ~(SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NR_ANY) | SMFIP_NR_HDR
# one that knows no "no reply" flag at all
NO_NR_PROTO = ALL_PROTO & ~(SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NR_ANY)
FINAL = {b"a", b"c", b"r", b"t", b"y", b"d", b"4", b"f"}

failures = 0


def ok(cond, name, diag=None):
    global failures
    if cond:
        print("ok - " + name)
    else:
        failures += 1
        print("not ok - " + name)
        if diag is not None:
            for line in str(diag).splitlines()[:60]:
                print("# " + line)
    sys.stdout.flush()


def z(*parts):
    """NUL-terminated strings"""
    return b"".join((p.encode() if isinstance(p, str) else p) + b"\0" for p in parts)


class Milter:
    """One MTA-side milter connection.  As Postfix's milter8.c: an event
    the milter negotiated away (SMFIP_NO*) is not sent, a reply it
    negotiated away (SMFIP_NR_*) is not awaited; those calls return None."""

    def __init__(self, addr, actions=ALL_ACTIONS, proto=ALL_PROTO):
        if isinstance(addr, tuple):
            self.s = socket.create_connection(addr, timeout=10)
        else:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.settimeout(10)
            self.s.connect(addr)
        self.proto = 0
        self.neg = self.optneg(actions, proto)

    def close(self):
        try:
            self.send(b"Q")
        except OSError:
            pass
        self.s.close()

    def send(self, cmd, data=b""):
        pkt = cmd + data
        self.s.sendall(struct.pack(">I", len(pkt)) + pkt)

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise EOFError("milter closed the connection")
            buf += chunk
        return buf

    def recv(self):
        n = struct.unpack(">I", self._read(4))[0]
        body = self._read(n)
        return body[:1], body[1:]

    def optneg(self, actions, proto):
        self.send(b"O", struct.pack(">III", 6, actions, proto))
        c, d = self.recv()
        if c != b"O":
            return {"cmd": c}
        ver, act, prot = struct.unpack(">III", d[:12])
        rest, macros = d[12:], {}
        while len(rest) >= 5:
            stage = struct.unpack(">I", rest[:4])[0]
            end = rest.index(b"\0", 4)
            macros[stage] = rest[4:end].decode()
            rest = rest[end + 1:]
        if prot & ~proto:
            raise RuntimeError("milter asked for protocol flags not offered: 0x%x" % (prot & ~proto))
        self.proto = prot
        return {"cmd": c, "version": ver, "actions": act, "proto": prot, "macros": macros}

    def macro(self, stage, **kv):
        self.send(b"D", stage + b"".join(z(k, v) for k, v in kv.items()))

    def reply(self):
        c, d = self.recv()
        return c.decode() + (d.rstrip(b"\0").decode() if c == b"y" else "")

    def maybe_reply(self, nr_flag):
        return None if self.proto & nr_flag else self.reply()

    def connect(self, host="mail.example.net", addr="192.0.2.7", port=40000, family=b"4",
                macros=None):
        if macros is None:
            macros = {"{client_addr}": addr, "{client_resolve}": "OK"}
        if macros:
            self.macro(b"C", **macros)
        self.send(b"C", z(host) + family + struct.pack(">H", port) + z(addr))
        return self.maybe_reply(SMFIP_NR_CONN)

    def mail(self, sender="<sender@example.net>", *params):
        self.send(b"M", z(sender, *params))
        return self.maybe_reply(SMFIP_NR_MAIL)

    def rcpt(self, arg, *params, qid=None):
        if qid:
            self.macro(b"R", i=qid)
        self.send(b"R", z(arg, *params))
        return self.reply()

    def header(self, name, value):
        if self.proto & SMFIP_NOHDRS:
            return None
        self.send(b"L", z(name, value))
        return self.maybe_reply(SMFIP_NR_HDR)

    def eoh(self, qid=None):
        if self.proto & SMFIP_NOEOH:
            return None
        if qid:
            self.macro(b"N", i=qid)
        self.send(b"N")
        return self.maybe_reply(SMFIP_NR_EOH)

    def eom(self, qid=None):
        """(modifications, final reply): ("-", rcpt) / ("2", rcpt, args) / ("+", rcpt)"""
        if qid:
            self.macro(b"E", i=qid)
        self.send(b"E")
        mods = []
        while True:
            c, d = self.recv()
            if c in FINAL:
                return mods, c.decode() + (d.rstrip(b"\0").decode() if c == b"y" else "")
            parts = d.rstrip(b"\0").split(b"\0") if d else []
            mods.append(tuple([c.decode()] + [p.decode() for p in parts]))

    def abort(self):
        self.send(b"A")


class Env:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sbx-milter-")
        self.conf = os.path.join(self.dir, "sealbox.conf")
        self.sock = os.path.join(self.dir, "milter.sock")
        self.state = os.path.join(self.dir, "var")
        self.write_conf()
        self.envv = dict(os.environ, SEALBOX_CONF=self.conf)
        self.ctl("init")
        self.ctl("domain", "add", "example.com")
        self.ctl("domain", "add", "example.org")
        self.ctl("mailbox", "add", "alice@example.com", "--password-stdin", stdin="alice-password\n")
        self.ctl("mailbox", "add", "full@example.com", "--quota", "1", "--password-stdin",
                 stdin="full-password\n")
        self.ctl("alias", "add", "hook@example.com", "webhook:https://hooks.example.net/in")
        self.ctl("alias", "add", "team@example.com", "mailbox:alice@example.com",
                 "forward:bob@elsewhere.net", "forward:sales@example.org")
        self.ctl("alias", "add", "sales@example.org", "webhook:https://hooks.example.net/in",
                 "mailbox:alice@example.com")
        self.ctl("alias", "add", "*@example.org", "forward:team@example.com")
        ids = {m["address"]: m["id"] for m in json.loads(self.ctl("mailbox", "list", "--json"))}
        self.alice, self.full = ids["alice@example.com"], ids["full@example.com"]
        hooks = {}
        for a in json.loads(self.ctl("alias", "list", "--json")):
            for t in a["targets"]:
                if t["kind"] == "webhook":
                    hooks[a["alias"]] = t["webhook_id"]
        self.hook, self.sales_hook = hooks["hook@example.com"], hooks["sales@example.org"]
        # make full@ full
        subprocess.run(["sqlite3", os.path.join(self.state, "directory.db"),
                        "UPDATE mailboxes SET usage_bytes = 10 WHERE address = 'full@example.com'"],
                       check=True)
        self.proc = None
        self.logname = os.path.join(self.dir, "milter.log")

    def write_conf(self, listen=None, extra=""):
        with open(self.conf, "w") as f:
            f.write("state_dir = %s\n" % self.state)
            f.write("milter_listen = %s\n" % (listen or "unix:" + self.sock))
            f.write("log_level = debug\n")
            f.write(extra)

    def ctl(self, *args, stdin=None):
        r = subprocess.run([CTL] + list(args), input=stdin if stdin is not None else "",
                           capture_output=True, text=True, env=self.envv, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("sealboxctl %s: %s" % (" ".join(args), r.stderr))
        return r.stdout

    def start(self):
        """returns once the daemon logged "started": the socket file appears
        at bind(), before libmilter listens on it"""
        self.log = open(self.logname, "a")
        self.proc = subprocess.Popen([MILTER, "-f", "-c", self.conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        for _ in range(1500):
            if "[%d]: started" % self.proc.pid in self.logtext():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("sealbox-milter did not start: " + self.logtext())

    def stop(self, sig=signal.SIGTERM):
        rc = None
        if self.proc is not None:
            self.proc.send_signal(sig)
            try:
                rc = self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()
        return rc

    def logtext(self):
        with open(self.logname) as f:
            return f.read()

    def sql(self, stmt):
        subprocess.run(["sqlite3", os.path.join(self.state, "directory.db"), stmt], check=True)


def mbox(env, ident):
    return "<%s@mailbox.sealbox.internal>" % ident


def hook(ident):
    return "<%s@webhook.sealbox.internal>" % ident


def test_negotiation(env):
    m = Milter(env.sock)
    n = m.neg
    ok(n["cmd"] == b"O" and n["version"] == 6, "negotiation: protocol version 6", n)
    ok(n["actions"] & (SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT) == SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT
       and not n["actions"] & (SMFIF_ADDHDRS | SMFIF_ADDRCPT),
       "negotiation: asks for add-with-parameters and delete recipient only", hex(n["actions"]))
    want = (SMFIP_NOHELO | SMFIP_NOBODY | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOHDRS | SMFIP_NOEOH
            | SMFIP_NR_CONN | SMFIP_NR_MAIL)
    ok(n["proto"] == want,
       "negotiation: skips HELO, DATA, unknown, headers, end-of-headers, body; "
       "no reply to connect and MAIL; nothing else", hex(n["proto"]))
    ok(n["macros"].get(0) == "{client_addr} {client_resolve}" and n["macros"].get(2) == "i"
       and n["macros"].get(3) == "i" and n["macros"].get(5) == "i" and 6 not in n["macros"],
       "negotiation: macro lists (connect, mail, rcpt, eom; no eoh list when EOH is skipped)",
       n["macros"])
    m.close()
    m = Milter(env.sock, proto=OLD_PROTO)
    ok(m.neg["proto"] == SMFIP_NOHELO | SMFIP_NOBODY | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NR_HDR
       and m.neg["macros"].get(6) == "i",
       "negotiation, an MTA without NOHDRS/NOEOH/NR_CONN/NR_MAIL: no header replies, eoh macros",
       (hex(m.neg["proto"]), m.neg["macros"]))
    m.close()
    # an MTA that cannot delete recipients gets no filter at all
    try:
        m = Milter(env.sock, actions=SMFIF_ADDRCPT | SMFIF_ADDRCPT_PAR)
        refused = m.neg["cmd"] != b"O"
        m.s.close()
    except (EOFError, OSError):
        refused = True
    ok(refused, "negotiation: refused without SMFIF_DELRCPT")


def test_smtp_transaction(env):
    m = Milter(env.sock)
    ok(m.connect() is None, "smtp: connect, no reply (NR_CONN)")
    ok(m.mail("<sender@example.net>", "SIZE=2000", "BODY=8BITMIME") is None, "smtp: MAIL, no reply (NR_MAIL)")
    r = m.rcpt("<Alice+Tag@Example.COM>", "NOTIFY=FAILURE", qid="4QABC1")
    ok(r == "c", "smtp: plus-addressed mailbox accepted", r)
    r = m.rcpt("<nobody@example.com>")
    ok(r == "y550 5.1.1 <nobody@example.com>: Recipient address rejected: no such user",
       "smtp: unknown recipient 550 5.1.1", r)
    r = m.rcpt("<%s@mailbox.sealbox.internal>" % env.alice)
    ok(r.startswith("y550 5.1.1 <") and r.endswith(": Recipient address rejected: internal address"),
       "smtp: internal address from outside 550 5.1.1", r)
    r = m.rcpt("<full@example.com>")
    ok(r == "y452 4.2.2 <full@example.com>: Recipient address rejected: mailbox full",
       "smtp: full mailbox 452 4.2.2", r)
    ok(m.rcpt("<someone@gmail.com>") == "c", "smtp: other domains untouched")
    ok(m.rcpt("<hook@example.com>") == "c", "smtp: webhook alias accepted")
    ok(m.rcpt("<team@example.com>") == "c", "smtp: alias with three targets accepted")
    # libmilter's contract: '%' doubled; Postfix's milter8.c undoes it
    r = m.rcpt("<100%@example.com>")
    ok(r.startswith("y550 5.1.1 <100%%@example.com>"), "smtp: '%' in a reply doubled for the MTA", r)
    ok(m.header("Subject", "secret-subject-marker") is None and m.eoh(qid="4QABC1") is None,
       "smtp: headers and end-of-headers not sent (NOHDRS, NOEOH)")
    mods, final = m.eom(qid="4QABC1")
    want = [("-", "<Alice+Tag@Example.COM>"),
            ("-", "<hook@example.com>"),
            ("-", "<team@example.com>"),
            ("2", mbox(env, env.alice), "ORCPT=rfc822;Alice+2BTag@Example.COM NOTIFY=FAILURE"),
            ("2", hook(env.hook), "ORCPT=rfc822;hook@example.com"),
            ("2", "<bob@elsewhere.net>", "ORCPT=rfc822;team@example.com"),
            ("2", hook(env.sales_hook), "ORCPT=rfc822;team@example.com")]
    ok(final == "c" and mods == want, "smtp: EOM deletes each alias and adds each target once",
       "got  %r %s\nwant %r" % (mods, final, want))
    # a second message on the same connection: nothing hosted -> no change
    ok(m.mail("<sender@example.net>") is None, "smtp: second MAIL")
    ok(m.rcpt("<x@gmail.com>") == "c", "smtp: second message, other domain")
    ok(m.eom() == ([], "c"), "smtp: nothing to rewrite: EOM changes nothing")
    # abort throws the message away
    m.mail("<sender@example.net>")
    m.rcpt("<alice@example.com>")
    m.abort()
    m.mail("<sender@example.net>")
    m.rcpt("<x@gmail.com>")
    ok(m.eom() == ([], "c"), "smtp: abort forgets the recipients")
    m.close()


def test_old_mta(env):
    """An MTA that sends headers and end-of-headers, with replies to all but
    headers (OLD_PROTO), or to everything (NO_NR_PROTO): the same answers
    through the header and eoh callbacks; headers change nothing (loop
    protection is sealbox-lmtpd's)."""
    for label, proto in (("old MTA", OLD_PROTO), ("old MTA without NR", NO_NR_PROTO)):
        m = Milter(env.sock, proto=proto)
        ok(m.connect() == "c" and m.mail() == "c",
           label + ": connect and MAIL answered 'continue' (libmilter stands in for NOREPLY)")
        m.rcpt("<alice@example.com>", qid="4QOLD1")
        hdr = [m.header("Received", "from hop%d" % i) for i in range(30)]
        hdr.append(m.header("Subject", "secret-subject-marker"))
        want = [None] * 31 if proto & SMFIP_NR_HDR else ["c"] * 31
        ok(hdr == want, label + ": headers %s" % ("not answered (NR_HDR)" if want[0] is None
                                                  else "answered 'continue'"), hdr)
        ok(m.eoh(qid="4QOLD1") == "c", label + ": a hosted recipient: EOH continues")
        mods, final = m.eom(qid="4QOLD1")
        ok(final == "c" and mods == [("-", "<alice@example.com>"),
                                     ("2", mbox(env, env.alice), "ORCPT=rfc822;alice@example.com")],
           label + ": 30 Received lines: rewritten all the same", (mods, final))
        m.mail()
        m.rcpt("<x@gmail.com>")
        ok(m.eoh() == "a", label + ": nothing to rewrite: accepted at EOH")
        m.close()
    # non-SMTP failure answered at EOH when the MTA sends it
    m = Milter(env.sock, proto=OLD_PROTO)
    m.connect("localhost", "127.0.0.1", 0, macros={"{client_addr}": "127.0.0.1"})
    m.mail("s@example.com")
    env.sql("ALTER TABLE aliases RENAME TO aliases_away")
    ok(m.rcpt("alice@example.com") == "c", "old MTA, non-smtp broken directory.db: RCPT not refused")
    env.sql("ALTER TABLE aliases_away RENAME TO aliases")
    r = m.eoh()
    ok(r == "y451 4.3.0 Temporary lookup failure", "old MTA, non-smtp broken directory.db: 451 at EOH", r)
    m.close()


def test_non_smtp(env):
    # Postfix cleanup (non_smtpd_milters): {client_addr} but no {client_resolve}
    m = Milter(env.sock)
    ok(m.connect("localhost", "127.0.0.1", 0, macros={"{client_addr}": "127.0.0.1"}) is None,
       "non-smtp: connect")
    m.mail("sender@example.com")
    ok(m.rcpt("nobody@example.com") == "c", "non-smtp: unknown recipient not refused")
    ok(m.rcpt("alice@example.com") == "c", "non-smtp: known recipient accepted")
    ok(m.rcpt("%s@mailbox.sealbox.internal" % env.alice) == "c",
       "non-smtp: internal address left alone (postsuper -r)")
    ok(m.rcpt("full@example.com") == "c", "non-smtp: full mailbox left to lmtpd")
    mods, final = m.eom()
    want = [("-", "nobody@example.com"), ("-", "alice@example.com"), ("-", "full@example.com"),
            ("2", "<nobody=example.com@unknown.sealbox.internal>", "ORCPT=rfc822;nobody@example.com"),
            ("2", mbox(env, env.alice), "ORCPT=rfc822;alice@example.com"),
            ("2", mbox(env, env.full), "ORCPT=rfc822;full@example.com")]
    ok(final == "c" and mods == want, "non-smtp: unknown rewritten to unknown.sealbox.internal",
       "got  %r %s\nwant %r" % (mods, final, want))
    m.close()
    # an MTA that ignored the macro list: cleanup's made-up client is recognised
    m = Milter(env.sock)
    m.connect("localhost", "127.0.0.1", 0, macros={})
    m.mail("sender@example.com")
    ok(m.rcpt("nobody@example.com") == "c", "non-smtp without macros: localhost, port 0")
    m.close()
    m = Milter(env.sock)
    m.connect("localhost", "127.0.0.1", 41000, macros={})
    m.mail("<sender@example.com>")
    ok(m.rcpt("<nobody@example.com>").startswith("y550"), "smtp without macros: a real port")
    m.close()


def test_concurrency(env):
    errors = []

    def worker(n):
        try:
            m = Milter(env.sock)
            m.connect(addr="192.0.2.%d" % (n + 10))
            for i in range(15):
                m.mail()
                if m.rcpt("<alice+c%d@example.com>" % n) != "c":
                    errors.append("rcpt")
                if not m.rcpt("<ghost%d@example.com>" % i).startswith("y550"):
                    errors.append("ghost")
                m.eoh()
                mods, final = m.eom()
                if final != "c" or mods != [("-", "<alice+c%d@example.com>" % n),
                                            ("2", mbox(env, env.alice),
                                             "ORCPT=rfc822;alice+2Bc%d@example.com" % n)]:
                    errors.append(repr(mods))
            m.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok(not errors, "12 concurrent connections x 15 messages", errors[:5])


def test_live_changes(env):
    m = Milter(env.sock)
    m.connect()
    m.mail()
    ok(m.rcpt("<late@example.com>").startswith("y550"), "live: unknown before alias add")
    env.ctl("alias", "add", "late@example.com", "forward:late@elsewhere.net")
    ok(m.rcpt("<late@example.com>") == "c", "live: alias added with sealboxctl seen at once")
    ok(m.rcpt("<x@example.net>") == "c", "live: example.net not hosted yet")
    env.ctl("domain", "add", "example.net")
    ok(m.rcpt("<y@example.net>").startswith("y550 5.1.1"), "live: domain added seen at once")
    m.abort()
    m.close()


def test_directory_error(env):
    m = Milter(env.sock)
    m.connect()
    m.mail()
    env.sql("ALTER TABLE aliases RENAME TO aliases_away")
    r = m.rcpt("<alice@example.com>")
    ok(r == "y451 4.3.0 <alice@example.com>: Temporary lookup failure",
       "broken directory.db: 451 4.3.0, never accepted", r)
    env.sql("ALTER TABLE aliases_away RENAME TO aliases")
    ok(m.rcpt("<alice@example.com>") == "c", "repaired directory.db: accepted again")
    m.abort()
    m.close()
    # non-SMTP: the whole message is deferred at EOM (EOH is not sent)
    m = Milter(env.sock)
    m.connect("localhost", "127.0.0.1", 0, macros={"{client_addr}": "127.0.0.1"})
    m.mail("s@example.com")
    env.sql("ALTER TABLE aliases RENAME TO aliases_away")
    ok(m.rcpt("alice@example.com") == "c", "non-smtp broken directory.db: RCPT not refused")
    env.sql("ALTER TABLE aliases_away RENAME TO aliases")
    r = m.eom()
    ok(r == ([], "y451 4.3.0 Temporary lookup failure"),
       "non-smtp broken directory.db: 451 at EOM, nothing rewritten", r)
    m.close()


def test_log(env):
    log = env.logtext()
    ok("M" in log and "queue=4QABC1 rcpt=<Alice+Tag@Example.COM> action=accept (mailbox:%s)" % env.alice
       in log, "log: one line per RCPT with the queue id and targets",
       [l for l in log.splitlines() if "4QABC1" in l])
    ok("action=reject 550 5.1.1 (no such user)" in log, "log: rejects with the reason")
    ok("queue=4QABC1 rewritten: 3 recipients deleted, 4 added" in log, "log: the EOM rewrite")
    ok("secret-subject-marker" not in log and "from hop" not in log, "log: no header or body content")
    ok("queue=4QOLD1 rewritten: 1 recipients deleted, 1 added" in log,
       "log: the queue id from the EOH/EOM macros of an old MTA")
    ok("non-SMTP" in log, "log: the session kind at debug level")


def test_inet_and_signals(env):
    env.stop()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env.write_conf("inet:127.0.0.1:%d" % port)
    env.start()
    m = Milter(("127.0.0.1", port))
    m.connect()
    m.mail()
    ok(m.rcpt("<alice@example.com>") == "c", "inet listener (inet:PORT@HOST for libmilter)")
    m.close()
    rc = env.stop(signal.SIGHUP)
    ok(rc == 0, "SIGHUP stops the milter (libmilter), exit 0", rc)
    env.write_conf()
    env.start()
    st = os.stat(env.sock)
    ok(oct(st.st_mode & 0o777) == oct(0o660), "unix socket mode 0660", oct(st.st_mode))
    rc = env.stop(signal.SIGTERM)
    ok(rc == 0 and not os.path.exists(env.sock), "SIGTERM: exit 0, socket removed", rc)


def test_startup_errors(env):
    def run(conf_extra=None, listen=None, state=None):
        env.write_conf(listen, conf_extra or "")
        if state:
            with open(env.conf, "a") as f:
                pass
            text = open(env.conf).read().replace("state_dir = %s" % env.state, "state_dir = %s" % state)
            with open(env.conf, "w") as f:
                f.write(text)
        r = subprocess.run([MILTER, "-f", "-c", env.conf], capture_output=True, text=True, timeout=30)
        return r.returncode, r.stderr

    rc, err = run(state=os.path.join(env.dir, "nowhere"))
    ok(rc == 1 and "no directory.db" in err, "start: no directory.db is an error", err)
    rc, err = run(listen="unix:%s,inet:127.0.0.1:1" % env.sock)
    ok(rc == 1 and "one address" in err, "start: one listen address only", err)
    plain = os.path.join(env.dir, "plainfile")
    open(plain, "w").close()
    rc, err = run(listen="unix:" + plain)
    ok(rc == 1 and "not a socket" in err and os.path.isfile(plain), "start: never replaces a file", err)
    rc, err = run(listen="unix:%s/missing/dir/sock" % env.dir)
    ok(rc == 1 and "cannot listen" in err, "start: missing socket directory", err)
    rc, err = run(conf_extra="milter_max_recipients = x\n")
    ok(rc == 1 and "milter_max_recipients" in err, "start: milter_max_recipients number", err)
    r = subprocess.run([MILTER, "-x"], capture_output=True, text=True, timeout=10)
    ok(r.returncode == 64 and "usage: sealbox-milter" in r.stderr, "usage on a bad option")
    env.write_conf()


def main():
    env = Env()
    try:
        env.start()
        test_negotiation(env)
        test_smtp_transaction(env)
        test_old_mta(env)
        test_non_smtp(env)
        test_concurrency(env)
        test_live_changes(env)
        test_directory_error(env)
        test_log(env)
        test_inet_and_signals(env)
        test_startup_errors(env)
        log = env.logtext()
        ok("Sanitizer" not in log and "runtime error" not in log,
           "no sanitizer report from any run", log[-3000:])
    except Exception as e:  # noqa: BLE001 - a crash must fail the run
        ok(False, "milter test run", "%r\n%s" % (e, env.logtext() if os.path.exists(env.logname) else ""))
    finally:
        env.stop()
        if failures and os.path.exists(env.logname):
            print("# milter log tail:")
            for line in env.logtext().splitlines()[-30:]:
                print("# " + line)
        subprocess.run(["rm", "-rf", env.dir])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
