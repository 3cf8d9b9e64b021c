#!/usr/bin/env python3
"""LMTP tests against a real sealbox-lmtpd (TAP output).

    run_lmtp.py BUILD_DIR

Sets up a private state directory with sealboxctl (two mailboxes, one with a
tiny quota), starts sealbox-lmtpd -f on unix sockets, then:
  - every tests/transcripts/lmtp/NAME.in is sent in one write (Postfix
    pipelines), the whole answer read until the server closes, ids
    normalised, and compared with NAME.ref (SBX_REGEN=1 rewrites the .ref);
  - the same sessions sent one byte per write must give the same answer;
  - end to end: a delivered message is exported with sealboxctl and found
    byte-exact after the Delivered-To/Received fields lmtpd prepended;
  - a Postfix retry (same XFORWARD IDENT and recipient) stores nothing;
  - the idle timeout, the connection limit, and a write failure (the daemon
    under RLIMIT_FSIZE) giving 451 with nothing left in the spool;
  - loop protection (more than max_hops Received/Delivered-To lines: 554
    5.4.6 per recipient) on the mailbox listener (transcript "hops") and
    on the webhook listener (no POST), and max_hops checked at start-up.
In NAME.in, ${ALICE} and ${BOB} stand for the mailbox ids, ${BIG} for a
body line long enough to exceed message_size_limit; lines end in CRLF.
"""
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CTL = os.path.join(BUILD, "sealboxctl")
LMTPD = os.path.join(BUILD, "sealbox-lmtpd")
TDIR = os.path.join(TOP, "tests", "transcripts", "lmtp")
REGEN = os.environ.get("SBX_REGEN") == "1"

failures = 0


def ok(cond, name, diag=None):
    global failures
    if cond:
        print("ok - " + name)
    else:
        failures += 1
        print("not ok - " + name)
        if diag:
            for line in str(diag).splitlines()[:60]:
                print("# " + line)
    sys.stdout.flush()


class Env:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sbx-lmtp-")
        self.conf = os.path.join(self.dir, "sealbox.conf")
        self.sock = os.path.join(self.dir, "lmtp.sock")
        self.hsock = os.path.join(self.dir, "webhook.sock")
        with open(self.conf, "w") as f:
            f.write("state_dir = %s/var\n" % self.dir)
            f.write("lmtp_listen = unix:%s\n" % self.sock)
            f.write("webhook_listen = unix:%s\n" % self.hsock)
            f.write("hostname = mx.test\n")
            f.write("message_size_limit = 64K\n")
            f.write("lmtp_max_recipients = 5\n")
            f.write("lmtp_max_connections = 4\n")
            f.write("lmtp_idle_timeout = 2\n")
        self.envv = dict(os.environ, SEALBOX_CONF=self.conf)
        self.ctl("init")
        self.ctl("domain", "add", "example.test")
        self.ctl("mailbox", "add", "alice@example.test", "--password-stdin", stdin="alice-password\n")
        self.ctl("mailbox", "add", "bob@example.test", "--quota", "2K", "--password-stdin",
                 stdin="bob-password\n")
        out = self.ctl("mailbox", "list", "--json")
        import json
        ids = {m["address"]: m["id"] for m in json.loads(out)}
        self.alice, self.bob = ids["alice@example.test"], ids["bob@example.test"]
        self.proc = None

    def ctl(self, *args, stdin=None):
        r = subprocess.run([CTL] + list(args), input=stdin, capture_output=True, text=True,
                           env=self.envv, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("sealboxctl %s: %s" % (" ".join(args), r.stderr))
        return r.stdout

    def start(self, disk_full_after=None):
        env = dict(os.environ)
        if disk_full_after is not None:
            # tests/fault/enospc.c: writes into the spool fail with ENOSPC
            env["LD_PRELOAD"] = os.path.join(BUILD, "tests", "fault", "libenospc.so")
            env["SBX_ENOSPC_PATH"] = "/spool/"
            env["SBX_ENOSPC_AFTER"] = str(disk_full_after)
            env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        self.log = open(os.path.join(self.dir, "lmtpd.log"), "a")
        self.proc = subprocess.Popen([LMTPD, "-f", "-c", self.conf], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        for _ in range(200):
            if os.path.exists(self.sock) and os.path.exists(self.hsock):
                return
            time.sleep(0.02)
        raise RuntimeError("sealbox-lmtpd did not start: " + self.logtext())

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()

    def logtext(self):
        with open(os.path.join(self.dir, "lmtpd.log")) as f:
            return f.read()

    def spool(self, mbox):
        """delivery ids waiting in the mailbox's sealed spool, in journal order"""
        return json.loads(self.ctl("mailbox", "spool", mbox, "--json"))["deliveries"]

    def journal_size(self, mbox):
        p = os.path.join(self.dir, "var", "spool", mbox, "journal")
        return os.path.getsize(p) if os.path.exists(p) else 0

    def subst(self, data):
        big = b"x" * 70000
        qid = ("4Q%X" % (int(time.time() * 1e6) & 0xFFFFFFFFFF)).encode()
        return (data.replace(b"${ALICE}", self.alice.encode()).replace(b"${QID}", qid)
                .replace(b"${BOB}", self.bob.encode()).replace(b"${BIG}", big))

    def normalise(self, data):
        text = data.decode("utf-8", "replace")
        text = text.replace(self.alice, "${ALICE}").replace(self.bob, "${BOB}")
        return re.sub(r"\b[0-9a-f]{32}\b", "<ID>", text)


DATA_REPLY = re.compile(rb"(?m)^(354|503|554|421)[ -]")


def session(path, data, bytewise=False, timeout=10):
    """Send data as a pipelining client does (RFC 2920): every command group
    up to and including DATA at once, then wait for DATA's reply before the
    message. The whole answer, until the server closes."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    out = b""
    parts = re.split(rb"(?<=\r\nDATA\r\n)", data)
    try:
        for k, part in enumerate(parts):
            if bytewise:
                for i in range(len(part)):
                    s.sendall(part[i:i + 1])
            else:
                s.sendall(part)
            if k < len(parts) - 1:
                # the reply to DATA: 354, or an error (then the message
                # text that follows is read as commands, as a server must)
                before = len(DATA_REPLY.findall(out))
                while len(DATA_REPLY.findall(out)) <= before:
                    d = s.recv(65536)
                    if not d:
                        raise ConnectionResetError
                    out += d
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except socket.timeout:
        out += b"<timeout>"
    except (ConnectionResetError, BrokenPipeError):
        out += b"<reset>"
    s.close()
    return out


def transcripts(env):
    names = sorted(n[:-3] for n in os.listdir(TDIR) if n.endswith(".in"))
    ok(len(names) >= 8, "at least 8 LMTP transcripts", names)
    for name in names:
        with open(os.path.join(TDIR, name + ".in"), "rb") as f:
            raw = f.read()
        data = env.subst(raw)
        sock = env.hsock if name.startswith("webhook") else env.sock
        got = env.normalise(session(sock, data))
        ref_path = os.path.join(TDIR, name + ".ref")
        if REGEN:
            with open(ref_path, "w", newline="") as f:
                f.write(got)
        want = open(ref_path, newline="").read() if os.path.exists(ref_path) else "<missing .ref>"
        ok(got == want, "transcript " + name, "--- want\n%s--- got\n%s" % (want, got))
        if name in ("basic", "pipelined-two-messages", "errors-and-sequence"):
            time.sleep(0.001)   # a new ${QID}: a retry would be "Already delivered"
            got2 = env.normalise(session(sock, env.subst(raw), bytewise=True))
            ok(got2 == want, "transcript %s, one byte per write" % name, got2)


def end_to_end(env):
    body = (b"From: Carol <carol@example.org>\r\nTo: hello@example.test\r\n"
            b"Subject: end to end \xc3\xa9\r\nMessage-ID: <e2e@example.org>\r\n\r\n"
            b"line one\r\n.dot-stuffed line\r\n\r\n  trailing spaces  \r\n")
    wire = body.replace(b"\r\n.", b"\r\n..")
    data = (b"LHLO postfix.test\r\nXFORWARD NAME=mail.example.org ADDR=192.0.2.7 HELO=mail.example.org "
            b"IDENT=4E2EQUEUE\r\nMAIL FROM:<carol@example.org> BODY=8BITMIME\r\n"
            b"RCPT TO:<" + env.alice.encode() + b"@mailbox.sealbox.internal> "
            b"ORCPT=rfc822;hello+2Bnews@example.test\r\nDATA\r\n" + wire + b".\r\nQUIT\r\n")
    before = len(env.spool(env.alice))
    out = session(env.sock, data).decode()
    ok("250 2.0.0" in out.split("\r\n354 ")[-1], "end to end: 250 after DATA", out)
    ok(len(env.spool(env.alice)) == before + 1, "end to end: one new spool entry")
    again = session(env.sock, data).decode()
    ok("Already delivered" in again and len(env.spool(env.alice)) == before + 1,
       "Postfix retry (same queue id and recipient) stores nothing", again)
    # Postfix's short queue ids repeat: another message under the same id is
    # a new delivery, never "Already delivered" (that would lose it)
    other = data.replace(b"line one", b"another message, same queue id")
    out2 = session(env.sock, other).decode()
    ok("Saved to the sealed spool" in out2 and len(env.spool(env.alice)) == before + 2,
       "a different message under a reused queue id is delivered, not taken for a retry", out2)
    mbox = os.path.join(env.dir, "alice.mbox")
    env.ctl("export", "alice@example.test", "--password-stdin", "--mbox", mbox, stdin="alice-password\n")
    with open(mbox, "rb") as f:
        exported = f.read()
    m = re.search(rb"Delivered-To: hello\+news@example\.test\r\nReceived: from mail\.example\.org "
                  rb"\(mail\.example\.org \[192\.0\.2\.7\]\) by mx\.test \(sealbox-lmtpd\) with LMTP id "
                  rb"[0-9a-f]{32} for <hello\+news@example\.test>; [^\r\n]+\r\n", exported)
    ok(m is not None, "end to end: Delivered-To and Received prepended", exported[:600])
    ok(m is not None and exported[m.end():m.end() + len(body)] == body,
       "end to end: the message is byte-exact in the export")
    ok(len(env.spool(env.alice)) == 0, "export imported the spool")


def webhooks(env):
    import json
    secret = "webhook-secret-for-tests-0123456789"
    rec = os.path.join(env.dir, "hooks")
    os.mkdir(rec)
    srv = subprocess.Popen([sys.executable, os.path.join(TOP, "tests", "webhook", "server.py"),
                            secret.encode().hex(), rec], stdout=subprocess.PIPE, text=True)
    try:
        port = int(srv.stdout.readline().split()[1])
        ids = {}
        for alias, path in (("hooks", "/ok?raw=false"), ("hooks2", "/ok?raw=false"),
                            ("broken", "/e500"), ("gone", "/e404"), ("moved", "/r307")):
            out = env.ctl("alias", "add", "%s@example.test" % alias,
                          "webhook:http://127.0.0.1:%d%s" % (port, path), "--webhook-secret-stdin",
                          stdin=secret + "\n")
            ids[alias] = out.split()[1]
        rc = lambda a, tag: ("RCPT TO:<%s@webhook.sealbox.internal> ORCPT=rfc822;%s@example.test\r\n"
                             % (ids[a], tag)).encode()
        msg = (b"From: Dana <dana@example.org>\r\nTo: hooks@example.test\r\nSubject: webhook test\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
               b"Content-Type: text/plain\r\n\r\nhello hook\r\n--b\r\nContent-Type: application/pdf\r\n"
               b"Content-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               b"JVBERi0xLjQK\r\n--b--\r\n")
        data = (b"LHLO postfix.test\r\nXFORWARD ADDR=192.0.2.9 IDENT=4HOOK1\r\nMAIL FROM:<dana@example.org>\r\n"
                + rc("hooks", "hooks") + rc("hooks2", "hooks2") + rc("broken", "broken") + rc("gone", "gone")
                + rc("moved", "moved") + b"DATA\r\n" + msg + b".\r\nQUIT\r\n")
        out = session(env.hsock, data, timeout=40).decode()
        replies = out.split("\r\n354 ")[-1].split("\r\n")[1:6]
        ok(len(replies) == 5 and replies[0].startswith("250 2.0.0") and replies[1].startswith("250 2.0.0")
           and replies[2].startswith("451 4.4.0") and "HTTP 500" in replies[2]
           and replies[3].startswith("550 5.1.1") and "HTTP 404" in replies[3]
           and replies[4].startswith("250 2.0.0"),
           "webhooks: one reply per recipient, 2xx -> 250, 500 -> 451, 404 -> 550, 307 followed", out)
        with open(os.path.join(rec, "log")) as f:
            log = [l.split() for l in f.read().splitlines()]
        oks = [l for l in log if l[1].startswith("/ok")]
        ok(all(l[2] == "ok" for l in log) and len(log) == 5,
           "webhooks: 5 recipients, 4 URLs, 5 POSTs (one redirected), every one signed correctly", log)
        ok(all(l[4].startswith("sealbox/") and l[5] == "application/json" for l in log),
           "webhooks: User-Agent and Content-Type", log)
        # sealbox's own URL options are not sent: "/ok?raw=false" is POSTed to "/ok"
        first = [l for l in oks if l[1] == "/ok"][:1] or [None]
        doc = json.load(open(os.path.join(rec, first[0][0] + ".json"))) if first[0] else {}
        ok(doc.get("subject") == "webhook test" and sorted(doc.get("recipients", [])) ==
           ["hooks2@example.test", "hooks@example.test"] and "raw" not in doc
           and doc.get("text", "").startswith("hello hook")
           and doc.get("attachments", [{}])[0].get("filename") == "a.pdf"
           and doc.get("session", {}).get("queueId") == "4HOOK1"
           and doc.get("session", {}).get("remoteAddress") == "192.0.2.9",
           "webhooks: two aliases of one URL share one POST; JSON fields; raw=false honoured", doc)
        # a mail loop: 26 Received/Delivered-To lines, every recipient 554, no POST
        loop = (b"Received: from a by b\r\n" * 13 + b"Delivered-To: hooks@example.test\r\n" * 13
                + b"Subject: loop\r\n\r\nround and round\r\n")
        data = (b"LHLO postfix.test\r\nXFORWARD IDENT=4HOOKLOOP\r\nMAIL FROM:<dana@example.org>\r\n"
                + rc("hooks", "hooks") + rc("broken", "broken") + b"DATA\r\n" + loop + b".\r\nQUIT\r\n")
        out = session(env.hsock, data, timeout=40).decode()
        replies = out.split("\r\n354 ")[-1].split("\r\n")[1:3]
        with open(os.path.join(rec, "log")) as f:
            posts = len(f.read().splitlines())
        ok(len(replies) == 2 and all(r.startswith("554 5.4.6 <") and "Too many hops (26 Received/Delivered-To"
                                     in r for r in replies) and posts == 5,
           "webhooks: more than max_hops hops: 554 5.4.6 for each recipient, nothing POSTed",
           (out, posts))
        ok(re.search(r"queue=4HOOKLOOP rcpt=[0-9a-f]{32}@webhook\.sealbox\.internal orcpt=hooks@example\.test "
                     r"size=\d+ status=554 5\.4\.6: too many hops \(26 Received/Delivered-To header lines, "
                     r"max_hops 25\)", env.logtext()),
           "webhooks: the loop is logged per recipient", env.logtext()[-1500:])
    finally:
        srv.kill()
        srv.wait()


def concurrent(env):
    """4 connections x 25 messages at once: every one answered 250 exactly
    once, every one in the spool (the group commit path)."""
    import threading
    before = len(env.spool(env.bob)) + len(env.spool(env.alice))
    results = []

    def client(k):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(env.sock)
        f = s.makefile("rb")
        got = 0

        def reply():
            while True:
                line = f.readline()
                if line[3:4] != b"-":
                    return line

        reply()
        s.sendall(b"LHLO c%d\r\n" % k)
        reply()
        for i in range(25):
            s.sendall(b"MAIL FROM:<c%d@example.org>\r\nRCPT TO:<%s@mailbox.sealbox.internal>\r\nDATA\r\n"
                      % (k, env.alice.encode()))
            ok1, ok2, r354 = reply(), reply(), reply()
            s.sendall(b"Subject: c%d m%d\r\n\r\nbody\r\n.\r\n" % (k, i))
            if ok1.startswith(b"250") and ok2.startswith(b"250") and r354.startswith(b"354") \
                    and reply().startswith(b"250 2.0.0"):
                got += 1
        s.sendall(b"QUIT\r\n")
        reply()
        s.close()
        results.append(got)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = len(env.spool(env.bob)) + len(env.spool(env.alice))
    ok(sum(results) == 100 and after - before == 100,
       "4 concurrent connections x 25 messages: 100 x 250, 100 spool entries", (results, after - before))


def idle_and_limits(env):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(env.sock)
    s.sendall(b"LHLO x\r\n")
    t0 = time.time()
    out = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        out += d
    s.close()
    ok(b"421 4.4.2 mx.test Idle timeout" in out and 1.5 < time.time() - t0 < 8,
       "idle timeout: 421 4.4.2 and close", out)
    socks = []
    for _ in range(4):
        c = socket.socket(socket.AF_UNIX)
        c.connect(env.sock)
        c.recv(100)
        socks.append(c)
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(5)
    c.connect(env.sock)
    out = c.recv(200)
    ok(out.startswith(b"421 4.3.2"), "connection limit: 421 4.3.2", out)
    c.close()
    for c in socks:
        c.close()
    time.sleep(0.2)


def write_failure(env):
    env.stop()
    env.start(disk_full_after=20000)
    body = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 60
    data = (b"LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<" + env.alice.encode() +
            b"@mailbox.sealbox.internal>\r\nDATA\r\n" + body + b".\r\nQUIT\r\n")
    before = env.spool(env.alice)
    size = env.journal_size(env.alice)
    usage = env.ctl("mailbox", "list", "--json")
    out = session(env.sock, data).decode()
    ok("451 4.3.0" in out.split("\r\n354 ")[-1], "disk full (ENOSPC after 20 KB): 451 4.3.0", out)
    ok(env.spool(env.alice) == before, "disk full: no new record in the spool")
    ok(env.journal_size(env.alice) == size, "disk full: the journal is cut back to its old length",
       (size, env.journal_size(env.alice)))
    ok(env.ctl("mailbox", "list", "--json") == usage, "disk full: usage counters unchanged")
    ok("No space left on device" in env.logtext(), "disk full: the reason is logged")
    env.stop()
    env.start()
    out = session(env.sock, data).decode()
    ok("250 2.0.0" in out.split("\r\n354 ")[-1], "with space again the same delivery works", out)


def startup_checks(env):
    """max_hops is read and checked by lmtpd (1..1000)."""
    bad = os.path.join(env.dir, "bad.conf")
    for value in ("0", "1001", "x"):
        with open(env.conf) as f, open(bad, "w") as g:
            g.write(f.read() + "max_hops = %s\n" % value)
        r = subprocess.run([LMTPD, "-f", "-c", bad], capture_output=True, text=True, timeout=30)
        ok(r.returncode == 1 and "max_hops" in r.stderr, "start: max_hops = %s refused" % value, r.stderr)
    ok(re.search(r"started \(state_dir \S+, message_size_limit \d+, max_hops 25\)", env.logtext()),
       "start: max_hops (default 25) in the start line", env.logtext()[:500])


def main():
    env = Env()
    try:
        env.start()
        transcripts(env)
        end_to_end(env)
        webhooks(env)
        concurrent(env)
        idle_and_limits(env)
        write_failure(env)
        startup_checks(env)
        log = env.logtext()
        ok(re.search(r"queue=4E2EQUEUE rcpt=[0-9a-f]{32}@mailbox\.sealbox\.internal "
                     r"orcpt=hello\+news@example\.test delivery=[0-9a-f]{32} size=\d+ status=250", log),
           "one log line per recipient with the Postfix queue id", log[-2000:])
        ok("line one" not in log and "dot-stuffed" not in log, "no message body in the log")
    finally:
        env.stop()
        if failures == 0:
            shutil.rmtree(env.dir, ignore_errors=True)
        else:
            print("# state kept in " + env.dir)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
