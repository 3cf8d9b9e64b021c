#!/usr/bin/env python3
"""End to end through a real Postfix with the shipped postfix-examples/
(TAP output).

    run_e2e.py BUILD_DIR

First instance: Debian's stock master.cf, so smtpd, cleanup, lmtp, smtp
and sealbox-webhook run chrooted in the queue folder, with Debian's chroot
files copied in; sealbox's daemons and sealboxctl run as user nobody (as a
site's unprivileged "sealbox" user).  Checks: `postfix check` is silent
with the snippets; a mailbox alias delivers into the encrypted mailbox
(sealboxctl export, body byte for byte, Delivered-To = the alias); a
forward alias reaches the smtp-sink; a webhook alias gives one signed POST;
an alias with all three targets delivers each once; unknown recipients get
550 at RCPT; plus addressing, regex and catch-all aliases; a webhook
answering 500 is deferred alone and retries never duplicate the mailbox
copy; mail from sendmail(1) to an unknown hosted address bounces (5.1.1)
while its other recipient is delivered; loop protection: Postfix's
hopcount_limit refuses 26 Received lines at DATA, lmtpd bounces 26
Received + Delivered-To lines with 5.4.6, 25 are delivered; the queue id leads through
Postfix's, the milter's and lmtpd's logs; no plaintext in sealbox's state
folder; the milter down means 451 to clients and sendmail mail waiting in
maildrop, lmtpd down means deferred mail, both delivered once the daemon is
back; the SRS recipe of main.cf.snippet with postsrsd, when installed.
Second instance: every service unchrooted, the three-target alias again.
"""
import grp
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeline import Pipeline, body, header, wait_for, EXAMPLES  # noqa: E402

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SBX_BIN", "build"))
ALICE_PW = "alice-e2e-password"
BOB_PW = "bob-e2e-password"
MARKER = "plaintext-marker-5f1e"

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
    return bool(cond)


_seq = [0]


def message(subject, to="someone@example.com"):
    """A message with a unique Message-ID and a body that exercises the
    path: 8-bit UTF-8, a line starting with '.', one starting with 'From '
    (mboxrd quoting on export), trailing white space, empty lines."""
    _seq[0] += 1
    mid = "<e2e-%d-%d@client.example.org>" % (os.getpid(), _seq[0])
    msg = ("From: Carol <carol@example.org>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n"
           "Date: Wed, 25 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           "Grüße, %s %s\r\n.a line that starts with a dot\r\nFrom the start of a line\r\n"
           "\r\ntrailing spaces   \r\n\r\n%s\r\n" % (to, subject, mid, subject, MARKER, "x" * 900))
    return mid, msg.encode()


def copies(p, address, password, mid):
    """Messages in the mailbox with this Message-ID (export imports the
    spool first, so this counts everything delivered so far)."""
    return [m for m in p.mailbox(address, password) if header(m, "Message-ID") == mid]


def sink_for(p, mid):
    return [m for m in p.sink_messages() if header(m["message"], "Message-ID") == mid]


def hooks_for(p, path):
    return [h for h in p.webhooks() if h.path.split("?")[0] == path]


def setup(p):
    p.ctl("mailbox", "add", "alice@example.com", "--password-stdin", stdin=ALICE_PW + "\n")
    p.ctl("mailbox", "add", "bob@example.com", "--password-stdin", stdin=BOB_PW + "\n")
    p.ctl("alias", "add", "hello@example.com", "mailbox:alice@example.com")
    p.ctl("alias", "add", "fwd@example.com", "forward:carol@forward.test")
    p.add_webhook("hook@example.com", "/hook")
    p.add_webhook("team@example.com", "/team", "mailbox:alice@example.com", "forward:dave@forward.test")
    p.add_webhook("flaky@example.com", "/flaky", "mailbox:alice@example.com")
    p.ctl("alias", "add", "~ticket-[0-9]+@example.com", "mailbox:bob@example.com")
    p.ctl("alias", "add", "*@example.net", "mailbox:bob@example.com")


# ------------------------------------------------------------------ checks

def check_config(p):
    rc, out = p.check_output
    ok(rc == 0 and out.strip() == "",
       "postfix check, postconf -n and postconf -M are silent with the shipped snippets", out)
    main_cf = open(os.path.join(p.etc, "main.cf")).read()
    master_cf = open(os.path.join(p.etc, "master.cf")).read()
    snippet_main = open(os.path.join(EXAMPLES, "main.cf.snippet")).read()
    snippet_master = open(os.path.join(EXAMPLES, "master.cf.snippet")).read()
    # postconf -e rewrote two values; everything else of the snippet is verbatim
    overridden = ("virtual_mailbox_domains =", "transport_maps =")
    kept = [l for l in snippet_main.splitlines() if not l.startswith(overridden)]
    ok(all(l in main_cf.splitlines() for l in kept) and snippet_master in master_cf
       and open(os.path.join(p.etc, "sealbox-transport")).read()
       == open(os.path.join(EXAMPLES, "transport")).read(),
       "the instance runs the snippets as shipped (main.cf: all but the two test overrides)")
    want = {"cleanup/unix": "y", "lmtp/unix": "y", "smtp/unix": "y", "sealbox-webhook/unix": "y"}
    fields = subprocess.run(["postconf", "-c", p.etc, "-F"], capture_output=True, text=True).stdout
    got = {}
    for l in fields.splitlines():
        m = re.match(r"(\S+)/(\S+)/chroot = (\S+)", l)
        if m:
            got["%s/%s" % (m.group(1), m.group(2))] = m.group(3)
    smtpd = [k for k in got if k.endswith("/inet")]
    ok(all(got.get(k) == v for k, v in want.items()) and smtpd and got[smtpd[0]] == "y",
       "Debian's stock master.cf: smtpd, cleanup, lmtp, smtp and sealbox-webhook chrooted", got)
    st = os.stat(p.sockdir)
    socks = {n: os.stat(os.path.join(p.sockdir, n)) for n in ("milter", "lmtp", "webhook")}
    ok(oct(st.st_mode & 0o7777) == "0o2750" and st.st_gid == grp.getgrnam("postfix").gr_gid
       and all(oct(s.st_mode & 0o777) == "0o660" and s.st_gid == st.st_gid and s.st_uid == p.uid
               for s in socks.values()),
       "sockets in queue/sealbox/ (2750, group postfix): each 0660, owned by the daemons' user, "
       "group postfix", {n: (oct(s.st_mode), s.st_uid, s.st_gid) for n, s in socks.items()})
    uids = {}
    for name in ("lmtpd", "milter"):
        with open("/proc/%d/status" % p.procs[name].pid) as f:
            uids[name] = int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))
    ok(p.uid != 0 and all(u == p.uid for u in uids.values()),
       "sealbox-lmtpd and sealbox-milter run unprivileged (user %s)" % p.run_as, uids)


def check_chrooted_processes(p):
    """After the first deliveries, smtpd, cleanup and lmtp processes stay
    idle for a while: their root must be the queue folder."""
    roots = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            comm = open("/proc/%s/comm" % pid).read().strip()
            root = os.readlink("/proc/%s/root" % pid)
        except OSError:
            continue
        if root == p.queue_dir:
            roots.setdefault(comm, 0)
            roots[comm] += 1
    ok(all(c in roots for c in ("smtpd", "cleanup", "lmtp")),
       "smtpd, cleanup and lmtp really ran chrooted in the queue folder", roots)


def check_mailbox_alias(p):
    mid, msg = message("mailbox alias")
    r = p.send("carol@example.org", ["hello@example.com"], msg)
    ok(r.queue_id is not None, "mailbox alias: accepted and queued", r)
    p.wait_empty()
    got = copies(p, "alice@example.com", ALICE_PW, mid)
    ok(len(got) == 1, "mailbox alias: one message in the encrypted mailbox (sealboxctl export)", len(got))
    if got:
        m = got[0]
        ok(m.startswith(b"Delivered-To: hello@example.com\r\n"),
           "mailbox alias: Delivered-To is the alias, first line", m[:300])
        ok(body(m) == body(msg), "mailbox alias: the body is byte for byte what the client sent",
           "%r\n%r" % (body(m)[:200], body(msg)[:200]))
    return r.queue_id


def check_forward(p):
    mid, msg = message("forward alias")
    r = p.send("carol@example.org", ["fwd@example.com"], msg)
    p.wait_empty()
    got = sink_for(p, mid)
    ok(len(got) == 1 and got[0]["rcpts"] == ["<carol@forward.test> ORCPT=rfc822;fwd@example.com"]
       and got[0]["mail_from"].startswith("<carol@example.org>"),
       "forward alias: relayed by Postfix's smtp client to the sink, ORCPT = the alias",
       [(m["mail_from"], m["rcpts"]) for m in got] or p.log_for(r.queue_id or "-"))
    if got:
        sent = body(msg).replace(b"\r\n", b"\n")
        ok(body(got[0]["message"])[:-1] == sent, "forward alias: the body arrives unchanged",
           body(got[0]["message"])[:200])


def check_webhook(p):
    mid, msg = message("webhook alias")
    r = p.send("carol@example.org", ["hook@example.com"], msg)
    p.wait_empty()
    got = hooks_for(p, "/hook")
    ok(len(got) == 1 and got[0].signature_ok and got[0].status == 200,
       "webhook alias: one POST, X-Webhook-Signature verifies", got)
    if got:
        doc = got[0].json()
        ok(doc.get("recipients") == ["hook@example.com"] and doc.get("subject") == "webhook alias"
           and MARKER in doc.get("text", "") and doc.get("session", {}).get("queueId") == r.queue_id
           and doc.get("session", {}).get("remoteAddress") == "127.0.0.2",
           "webhook alias: JSON names the alias, subject, text, Postfix queue id and client (XFORWARD)",
           {k: doc.get(k) for k in ("recipients", "subject", "session")})


def check_all_three(p, label=""):
    mid, msg = message("three targets")
    r = p.send("carol@example.org", ["team@example.com"], msg)
    p.wait_empty()
    box = copies(p, "alice@example.com", ALICE_PW, mid)
    sink = sink_for(p, mid)
    hooks = [h for h in hooks_for(p, "/team") if mid.strip("<>") in h.body.decode(errors="replace")]
    ok(len(box) == 1 and len(sink) == 1 and len(hooks) == 1 and hooks[0].signature_ok
       and sink[0]["rcpts"] == ["<dave@forward.test> ORCPT=rfc822;team@example.com"]
       and box[0].startswith(b"Delivered-To: team@example.com\r\n"),
       label + "alias with mailbox, forward and webhook: each delivered exactly once",
       "mailbox %d, sink %d, webhook %d\n%s" % (len(box), len(sink), len(hooks),
                                                 "\n".join(p.log_for(r.queue_id or "-"))))


def check_unknown(p):
    mid, msg = message("unknown")
    r = p.send("carol@example.org", ["nobody@example.com", "hello@example.com"], msg)
    code, text = r.rcpt["nobody@example.com"]
    ok(code == 550 and text.startswith("5.1.1 <nobody@example.com>: Recipient address rejected"),
       "unknown recipient: 550 5.1.1 at RCPT", r.rcpt)
    p.wait_empty()
    ok(r.rcpt["hello@example.com"][0] == 250 and len(copies(p, "alice@example.com", ALICE_PW, mid)) == 1,
       "unknown recipient: the other recipient of the transaction is delivered")
    alice_id = {m["address"]: m["id"] for m in json.loads(p.ctl("mailbox", "list", "--json"))}[
        "alice@example.com"]
    internal = "%s@mailbox.sealbox.internal" % alice_id
    r = p.send("carol@example.org", [internal], msg)
    ok(r.rcpt[internal][0] >= 400 and r.queue_id is None,
       "internal address from an outside client: refused (relay denied)", r.rcpt)
    r = p.send("carol@example.org", [internal], msg, trusted=True)
    ok(r.rcpt[internal][0] == 550 and "internal address" in r.rcpt[internal][1],
       "internal address from a trusted client (mynetworks): 550 by the milter", r.rcpt)


def check_routes(p):
    # two aliases of one mailbox in one message are delivered once (the
    # milter keeps the first as ORCPT), so the regex and the catch-all,
    # both to bob, go in two transactions
    mid, msg = message("routes")
    rc = ["alice+news@example.com", "ticket-4711@example.com", "ticket-x@example.com"]
    r = p.send("carol@example.org", rc, msg)
    ok(r.rcpt["ticket-x@example.com"][0] == 550, "regex alias: a non-matching local part is 550",
       r.rcpt)
    mid2, msg2 = message("catch-all")
    p.send("carol@example.org", ["Anyone+x@EXAMPLE.net"], msg2)
    p.wait_empty()
    a = copies(p, "alice@example.com", ALICE_PW, mid)
    ok(len(a) == 1 and a[0].startswith(b"Delivered-To: alice+news@example.com\r\n"),
       "plus addressing: alice+news@ lands in alice's mailbox, Delivered-To keeps the tag",
       [m[:60] for m in a])
    b = [header(m, "Delivered-To") for m in p.mailbox("bob@example.com", BOB_PW)
         if header(m, "Message-ID") in (mid, mid2)]
    ok(b == ["ticket-4711@example.com", "Anyone+x@EXAMPLE.net"],
       "regex (~ticket-[0-9]+@) and catch-all (*@example.net) aliases land in bob's mailbox, "
       "Delivered-To as the client wrote it", b)


def check_webhook_500(p):
    p.set_webhook_status("/flaky", 500)
    mid, msg = message("flaky webhook")
    r = p.send("carol@example.org", ["flaky@example.com"], msg)
    q = p.wait_settled()
    rcpts = [x["address"] for m in q for x in m.get("recipients", [])]
    ok(len(q) == 1 and q[0]["queue_id"] == r.queue_id and q[0]["queue_name"] == "deferred"
       and len(rcpts) == 1 and rcpts[0].endswith("@webhook.sealbox.internal"),
       "webhook 500: only the webhook recipient is deferred in Postfix's queue", q)
    log = "\n".join(p.log_for(r.queue_id))
    ok(re.search(r"postfix/lmtp\[\d+\]: %s: to=<[0-9a-f]+@mailbox\.sealbox\.internal>.*status=sent"
                 % r.queue_id, log)
       and re.search(r"postfix/sealbox-webhook/lmtp\[\d+\]: %s: to=<[0-9a-f]+@webhook\.sealbox\."
                     r"internal>.*status=deferred \(host \S+ said: 451 4\.4\.\d .*HTTP 500" % r.queue_id, log),
       "webhook 500: Postfix logs the mailbox copy sent and the webhook deferred (451 from lmtpd)", log)
    ok(len(copies(p, "alice@example.com", ALICE_PW, mid)) == 1, "webhook 500: the mailbox copy is delivered")
    p.flush()
    wait = time.monotonic()
    while len(hooks_for(p, "/flaky")) < 2 and time.monotonic() - wait < 30:
        time.sleep(0.05)
    p.wait_settled()
    ok(len(hooks_for(p, "/flaky")) == 2 and len(copies(p, "alice@example.com", ALICE_PW, mid)) == 1,
       "webhook 500, queue flushed: a second POST, still one mailbox copy", hooks_for(p, "/flaky"))
    p.set_webhook_status("/flaky", 200)
    p.flush()
    p.wait_empty()
    hooks = hooks_for(p, "/flaky")
    ok([h.status for h in hooks] == [500, 500, 200] and all(h.signature_ok for h in hooks)
       and len(copies(p, "alice@example.com", ALICE_PW, mid)) == 1 and p.spool_count("alice@example.com") == 0,
       "webhook back to 200, flushed: delivered, queue empty, the mailbox copy never duplicated",
       hooks)


def check_non_smtp(p):
    mid, msg = message("non-smtp")
    qid = p.sendmail("bouncer@forward.test", ["hello@example.com", "nobody@example.com"], msg)
    p.wait_empty()
    log = "\n".join(p.log_for(qid))
    ok(re.search(r"%s: to=<nobody=example\.com@unknown\.sealbox\.internal>, relay=none, .*dsn=5\.1\.1, "
                 r"status=bounced" % qid, log),
       "sendmail to an unknown hosted address: bounced 5.1.1 through unknown.sealbox.internal", log)
    ok(len(copies(p, "alice@example.com", ALICE_PW, mid)) == 1 and "status=deferred" not in log,
       "sendmail: the known recipient of the same message is delivered, nothing deferred", log)
    dsn = [m for m in p.sink_messages() if any("bouncer@forward.test" in x for x in m["rcpts"])
           and m["mail_from"].startswith("<>")]
    ok(len(dsn) == 1 and b"nobody@example.com" in dsn[0]["message"] and b"5.1.1" in dsn[0]["message"],
       "sendmail: the sender gets one bounce naming nobody@example.com and 5.1.1",
       [(m["mail_from"], m["rcpts"]) for m in dsn])


def check_hops(p):
    """Loop protection, split between Postfix (hopcount_limit in
    main.cf.snippet: Received lines only, smtpd's own included) and lmtpd
    (max_hops, default 25: Received + Delivered-To at delivery)."""
    def hops(n_received, n_delivered_to, subject):
        mid, msg = message(subject, to="hello@example.com")
        extra = b"".join(b"Received: from h%d.example.org by h%d.example.net; "
                         b"Wed, 25 Nov 2026 12:00:00 +0000\r\n" % (i, i + 1) for i in range(n_received))
        extra += b"Delivered-To: list@example.org\r\n" * n_delivered_to
        return mid, extra + msg

    # 25 from the client + smtpd's own = 26 Received lines: Postfix refuses
    mid, msg = hops(25, 0, "hops: 26 Received")
    r = p.send("bouncer@forward.test", ["hello@example.com"], msg)
    ok(r.rcpt["hello@example.com"][0] == 250 and r.data == (554, "5.4.0 Error: too many hops")
       and r.queue_id is None,
       "hops: 26 Received lines refused at DATA by Postfix (hopcount_limit = 26)", r.data)
    # 24 + smtpd's = 25 Received, plus 1 Delivered-To = 26 hops: lmtpd's 5.4.6, bounced
    mid, msg = hops(24, 1, "hops: 26 with Delivered-To")
    r = p.send("bouncer@forward.test", ["hello@example.com"], msg)
    ok(r.queue_id is not None, "hops: 25 Received + 1 Delivered-To accepted by Postfix", r)
    p.wait_empty()
    log = "\n".join(p.log_for(r.queue_id or "-"))
    ok(re.search(r"%s: to=<[0-9a-f]+@mailbox\.sealbox\.internal>, .*"
                 r"dsn=5\.4\.6, status=bounced \(host \S+ said: 554 5\.4\.6 <[0-9a-f]+@mailbox\."
                 r"sealbox\.internal> Too many hops \(26 Received/Delivered-To header lines\)" % r.queue_id, log)
       and re.search(r"queue=%s rcpt=\S+ orcpt=hello@example\.com size=\d+ status=554 5\.4\.6: too many hops"
                     % r.queue_id, p.lmtpd_log()),
       "hops: 26 Received + Delivered-To lines: lmtpd answers 554 5.4.6, Postfix bounces", log)
    dsn = [m for m in p.sink_messages() if any("bouncer@forward.test" in x for x in m["rcpts"])
           and m["mail_from"].startswith("<>") and mid.encode() in m["message"]]
    ok(len(dsn) == 1 and b"5.4.6" in dsn[0]["message"] and b"hello@example.com" in dsn[0]["message"]
       and not copies(p, "alice@example.com", ALICE_PW, mid),
       "hops: the sender gets one bounce (5.4.6, the alias named); nothing in the mailbox",
       [(m["mail_from"], m["rcpts"]) for m in dsn])
    # 24 + smtpd's = 25: delivered
    mid, msg = hops(24, 0, "hops: 25")
    r = p.send("bouncer@forward.test", ["hello@example.com"], msg)
    p.wait_empty()
    ok(r.queue_id is not None and len(copies(p, "alice@example.com", ALICE_PW, mid)) == 1,
       "hops: 25 Received lines (max_hops) delivered", p.log_for(r.queue_id or "-"))


def check_milter_down(p):
    p.stop_milter(signal.SIGKILL)     # a crash: the socket stays, nobody listens
    mid, msg = message("milter down")
    r = p.send("carol@example.org", ["hello@example.com"], msg)
    codes = [r.mail[0]] + [c for c, _ in r.rcpt.values()]
    ok(r.queue_id is None and any(c == 451 for c in codes) and all(c != 250 for c in codes[1:]),
       "milter down (milter_default_action = tempfail): the client gets 451, nothing is queued", r)
    mid2, msg2 = message("milter down, sendmail")
    qid = p.sendmail("carol@forward.test", ["hello@example.com"], msg2)
    wait_for(lambda: re.search(r"cleanup\[\d+\]: %s: milter-reject: CONNECT .*4\.7\.1" % qid, p.maillog()),
             30, "cleanup to refuse the sendmail message")
    q = p.queue()
    ok([m["queue_name"] for m in q] == ["maildrop"],
       "milter down: a sendmail message waits in the maildrop queue", q)
    p.start_milter()
    r = p.send("carol@example.org", ["hello@example.com"], msg)
    p.kick_pickup()
    p.wait_empty()
    ok(r.queue_id and len(copies(p, "alice@example.com", ALICE_PW, mid)) == 1,
       "milter restarted (stale socket replaced): the client's retry is delivered", r)
    ok(len(copies(p, "alice@example.com", ALICE_PW, mid2)) == 1,
       "milter restarted: pickup delivers the waiting sendmail message")


def check_lmtpd_down(p):
    p.stop_lmtpd()
    mid, msg = message("lmtpd down")
    r = p.send("carol@example.org", ["hello@example.com"], msg)
    q = p.wait_settled()
    log = "\n".join(p.log_for(r.queue_id or "-"))
    ok(r.queue_id and len(q) == 1 and q[0]["queue_name"] == "deferred" and "status=deferred" in log,
       "lmtpd down: accepted, then deferred by Postfix", log)
    p.start_lmtpd()
    p.flush()
    p.wait_empty()
    ok(len(copies(p, "alice@example.com", ALICE_PW, mid)) == 1,
       "lmtpd back, queue flushed: delivered once")


def check_logs(p, qid):
    lines = p.log_for(qid)
    conn = [re.search(r"sealbox-milter\[\d+\]: (M\d+): ", l) for l in lines]
    conn = [m.group(1) for m in conn if m]
    pf = [l for l in lines if "postfix/" in l]
    lm = [l for l in lines if "sealbox-lmtpd[" in l]
    ok(pf and conn and lm and any("status=sent" in l for l in pf) and any("status=250" in l for l in lm),
       "one queue id leads through Postfix's maillog, the milter's and lmtpd's logs",
       "\n".join(lines))
    allm = p.milter_log().splitlines()
    first = [l for l in allm if conn and (" %s: queue=- rcpt=<hello@example.com>" % conn[0]) in l]
    ok(first, "the milter logs the first RCPT with queue=- (no queue file yet); its connection id "
              "finds it", "\n".join(l for l in allm if conn and conn[0] + ":" in l))


def check_at_rest(p):
    hits = []
    for root, _, files in os.walk(p.state):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                if MARKER.encode() in fh.read():
                    hits.append(os.path.join(root, f))
    ok(not hits, "no message plaintext anywhere in sealbox's state folder", hits)


def postsrsd_binary():
    for c in (os.environ.get("SBX_POSTSRSD"), shutil.which("postsrsd"), "/usr/sbin/postsrsd"):
        if c and os.access(c, os.X_OK):
            return c
    return None


def check_srs(p):
    """The SRS recipe of main.cf.snippet, with the lines taken from the
    snippet's comments (ports changed): postsrsd runs only when installed
    (or SBX_POSTSRSD names its binary); otherwise a '# SKIP' comment."""
    binary = postsrsd_binary()
    if binary is None:
        print("# SKIP SRS recipe: postsrsd not installed (apt install postsrsd, or SBX_POSTSRSD=path)")
        return
    from pipeline import free_port, port_open
    snippet = open(os.path.join(EXAMPLES, "main.cf.snippet")).read()
    fport, rport = free_port(), free_port()
    settings = [m.group(1).replace(":10001", ":%d" % fport).replace(":10002", ":%d" % rport)
                for m in re.finditer(r"^#   ((?:(?:sender|recipient)_canonical_\w+|relay_domains) = .*)$",
                                     snippet, re.M)]
    transport = re.search(r"^#   (srs\.example\.com\s+error:.*)$", snippet, re.M)
    ok(len(settings) == 5 and transport, "SRS recipe: five main.cf lines and a transport line in the snippet",
       settings)
    secret = os.path.join(p.dir, "postsrsd.secret")
    with open(secret, "w") as f:
        f.write(os.urandom(24).hex() + "\n")
    srs = subprocess.Popen([binary, "-s" + secret, "-dsrs.example.com", "-f%d" % fport, "-r%d" % rport,
                            "-l127.0.0.1", "-4", "-unobody"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open(fport) and port_open(rport), 10, "postsrsd")
        with open(os.path.join(p.etc, "sealbox-transport"), "a") as f:
            f.write(transport.group(1) + "\n")
        p.postconf(*settings)
        mid, msg = message("srs")
        p.send("dan@forward.test", ["fwd@example.com"], msg)
        p.wait_empty()
        got = sink_for(p, mid)
        srs_addr = re.match(r"<(SRS0=[^>]+@srs\.example\.com)>", got[0]["mail_from"]) if got else None
        ok(srs_addr and "=forward.test=dan@" in srs_addr.group(1),
           "SRS (postsrsd): the forward leaves with an SRS0=...@srs.example.com envelope sender",
           [m["mail_from"] for m in got])
        if srs_addr:
            mid2, msg2 = message("srs bounce")
            r = p.send("", [srs_addr.group(1)], msg2)
            p.wait_empty()
            back = sink_for(p, mid2)
            ok(r.queue_id and len(back) == 1 and back[0]["rcpts"][0].startswith("<dan@forward.test>"),
               "SRS (postsrsd): a bounce to the SRS address reaches the original sender", back)
        forged = "SRS0=AAAA=ZZ=forward.test=dan@srs.example.com"
        r = p.send("", [forged], msg)
        ok(r.rcpt[forged][0] == 550 and r.queue_id is None,
           "SRS (postsrsd): a forged SRS address is refused at RCPT (550), no backscatter", r.rcpt)
    finally:
        srs.terminate()
        srs.wait()


def finish(p, label):
    """Stop the instance, then check the daemons' logs (a LeakSanitizer
    report comes at exit); keep the folder when anything failed."""
    before = failures
    p.stop(keep=True)
    text = p.lmtpd_log() + p.milter_log()
    ok("Sanitizer" not in text and "runtime error" not in text and MARKER not in text
       and text.count(": stopped") >= 2,
       label + "daemon logs: stopped cleanly, no sanitizer report, no message content", text[-2000:])
    if failures == before and not p.keep:
        shutil.rmtree(p.dir, ignore_errors=True)
    else:
        print("# %sinstance kept in %s" % (label, p.dir))


def main():
    if os.geteuid() != 0:
        # a skipped test must not count as a pass: say what is missing
        print("not ok - the end-to-end tests need root (a private Postfix instance, chroot): "
              "run make check as root")
        return 1
    t0 = time.monotonic()
    # the daemons run as an unprivileged user, as a site's "sealbox" user
    p = Pipeline(BUILD, domains=["example.com", "example.net"], chroot=True, run_as="nobody")
    try:
        p.start()
        ok(True, "chrooted instance (Debian's stock master.cf) started in %.1f s" % (time.monotonic() - t0))
        check_config(p)
        setup(p)
        qid = check_mailbox_alias(p)
        check_chrooted_processes(p)
        check_forward(p)
        check_webhook(p)
        check_all_three(p)
        check_unknown(p)
        check_routes(p)
        check_webhook_500(p)
        check_non_smtp(p)
        check_hops(p)
        check_logs(p, qid)
        check_at_rest(p)
        check_milter_down(p)
        check_lmtpd_down(p)
        check_srs(p)          # last: it changes main.cf for all mail after it
    except Exception:  # noqa: BLE001 - a crash must fail the run
        import traceback
        ok(False, "chrooted e2e run", traceback.format_exc() + "\n" + p.maillog()[-3000:])
        p.keep = True
    finally:
        finish(p, "")
    t1 = time.monotonic()
    q = Pipeline(BUILD, domains=["example.com", "example.net"], chroot=False)
    try:
        q.start()
        rc, out = q.check_output
        ok(rc == 0 and out.strip() == "", "unchrooted instance: postfix check silent", out)
        setup(q)
        check_all_three(q, "unchrooted: ")
    except Exception:  # noqa: BLE001
        import traceback
        ok(False, "unchrooted e2e run", traceback.format_exc() + "\n" + q.maillog()[-3000:])
        q.keep = True
    finally:
        finish(q, "unchrooted: ")
    print("# e2e: chrooted run %.1f s, unchrooted run %.1f s"
          % (t1 - t0, time.monotonic() - t1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
