#!/usr/bin/env python3
"""bench/postfix.py - mail through a whole sealbox site, with and without
sealbox-milter (issue 5).

    python3 bench/postfix.py BUILD_DIR [--quick] [--reps N] [--messages N]
                             [--sessions C] [--size S] [--keep]

One private Postfix instance on loopback, built from postfix-examples/ by
tests/e2e/pipeline.py exactly as the end-to-end tests build it (Debian's
chrooted services, sealbox-milter, sealbox-lmtpd, sockets under the queue
directory), and Postfix's smtp-source as the client.  In the same
invocation, alternating (the order swapped on every repeat):

  - with milter: the instance as shipped (smtpd_milters and
    non_smtpd_milters = sealbox-milter); smtp-source sends N messages of S
    bytes over C concurrent sessions to alias@bench.test, an alias of a
    mailbox.  The milter resolves the alias at RCPT, and at end of message
    deletes that recipient and adds <mailbox-id>@mailbox.sealbox.internal
    with ORCPT;
  - without milter: the same instance after `postconf -e smtpd_milters=
    non_smtpd_milters=` and a reload; smtp-source sends to
    <mailbox-id>@mailbox.sealbox.internal directly, so Postfix routes the
    same messages to the same lmtpd listener and mailbox.

smtp-source connects from 127.0.0.1 (in mynetworks, so the internal domain
may be relayed to in the run without the milter).  Measured per run:

  - accepted msgs/s: N over the time smtp-source takes (every message
    answered 250 after DATA: smtpd, cleanup and the milter, queue files
    written and fsync'd by Postfix);
  - end-to-end msgs/s: N over the time until sealbox-lmtpd has logged
    `status=250` for every one (Postfix's queue manager, its lmtp client,
    the sealed spool) and the queue is empty.

Checked: smtp-source exits 0; every message of the run reaches the spool
(`sealboxctl mailbox spool` counts the valid records at the end, which must
equal the messages sent); lmtpd logged only `status=250`; nothing is left
in the queue.  Target (issue 5): with milter >= 0.9x without.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))

SMTP_SOURCE = "/usr/sbin/smtp-source"


def log(msg):
    print(msg, flush=True)


def die(msg):
    print("bench/postfix: " + msg, file=sys.stderr)
    sys.exit(1)


def fstype(path):
    out = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True).stdout.strip()
    return out


def count_250(text):
    """Distinct deliveries lmtpd answered 250 for.  A Postfix retry of a
    delivery whose reply it lost (seen under heavy load) is answered 250
    "Already delivered" with the same delivery id and stores nothing, so
    ids are counted, not lines."""
    ok = len(set(re.findall(r"delivery=([0-9a-f]{32}) size=\d+ status=250 ", text)))
    bad = [l for l in text.splitlines() if "status=" in l and "status=250 " not in l]
    return ok, bad


def one_run(p, label, rcpt, args):
    """smtp-source to rcpt; returns a dict of figures."""
    log_off = os.path.getsize(os.path.join(p.sbx, "lmtpd.log"))
    cmd = [SMTP_SOURCE, "-s", str(args.sessions), "-m", str(args.messages), "-l", str(args.size),
           "-f", "sender@client.test", "-t", rcpt, "-M", "client.test", "127.0.0.1:%d" % p.smtp_port]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    t_acc = time.monotonic() - t0
    if r.returncode != 0:
        die("%s: smtp-source failed (%d): %s%s" % (label, r.returncode, r.stdout, r.stderr))
    deadline = time.monotonic() + 300
    while True:
        with open(os.path.join(p.sbx, "lmtpd.log"), errors="replace") as f:
            f.seek(log_off)
            text = f.read()
        ok, bad = count_250(text)
        if bad:
            die("%s: lmtpd answered other than 250: %s" % (label, bad[:3]))
        if ok >= args.messages:
            break
        if time.monotonic() > deadline:
            die("%s: only %d of %d messages delivered after 300 s" % (label, ok, args.messages))
        time.sleep(0.01)
    t_done = time.monotonic() - t0
    if ok != args.messages:
        die("%s: %d deliveries logged for %d messages" % (label, ok, args.messages))
    p.wait_empty(timeout=60)
    return {"accept": args.messages / t_acc, "e2e": args.messages / t_done, "t_acc": t_acc, "t_done": t_done}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="200 messages, 1 repeat")
    ap.add_argument("--keep", action="store_true", help="keep the instance's folder")
    args = ap.parse_args()
    if args.quick:
        args.messages, args.reps = 200, 1
    if os.geteuid() != 0:
        die("needs root (a private Postfix instance)")
    if not os.path.exists(SMTP_SOURCE) or not os.path.exists("/usr/lib/postfix/configure-instance.sh"):
        subprocess.run(["sh", os.path.join(TOP, "tests", "install-deps.sh"), "postfix"], check=True)
    build = os.path.abspath(args.build)
    for exe in ("sealboxctl", "sealbox-lmtpd", "sealbox-milter"):
        if not os.access(os.path.join(build, exe), os.X_OK):
            die("%s/%s missing: run make first" % (build, exe))

    from pipeline import Pipeline
    tmp = os.environ.get("TMPDIR") or "/tmp"
    if fstype(tmp) == "tmpfs":
        tmp = "/var/tmp"
    workdir = None
    if fstype(tmp) == "tmpfs":
        die("no directory outside tmpfs for the benchmark")
    import tempfile
    workdir = tempfile.mkdtemp(prefix="sbx-bench-postfix-", dir=tmp)
    p = Pipeline(build=build, domains=("bench.test",), workdir=workdir, keep=args.keep)
    t_start = time.monotonic()
    p.start()
    try:
        p.ctl("mailbox", "add", "box@bench.test", "--password-stdin", stdin="bench password 1\n")
        p.ctl("alias", "add", "alias@bench.test", "mailbox:box@bench.test")
        import json
        mid = [m["id"] for m in json.loads(p.ctl("mailbox", "list", "--json"))
               if m["address"] == "box@bench.test"][0]
        shipped = {n: p.postconf_value(n) for n in ("smtpd_milters", "non_smtpd_milters")}
        if not shipped["smtpd_milters"]:
            die("the shipped main.cf.snippet sets no smtpd_milters")
        modes = {
            "with milter": ("alias@bench.test", ["smtpd_milters = " + shipped["smtpd_milters"],
                                                 "non_smtpd_milters = " + shipped["non_smtpd_milters"]]),
            "without": ("%s@mailbox.sealbox.internal" % mid, ["smtpd_milters =", "non_smtpd_milters ="]),
        }
        log("bench/postfix: %s; Postfix %s (chrooted services), smtp-source -s %d -m %d -l %d, %d repeat(s); "
            "folder %s on %s" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), p.postconf_value("mail_version"),
                                 args.sessions, args.messages, args.size, args.reps, workdir, fstype(workdir)))
        # warm-up: one small untimed run each
        warm = argparse.Namespace(**vars(args))
        warm.messages = 50
        for name, (rcpt, conf) in modes.items():
            p.postconf(*conf)
            time.sleep(1)
            one_run(p, "warm-up " + name, rcpt, warm)
        results = {n: [] for n in modes}
        sent = 50 * len(modes)
        order = list(modes)
        for rep in range(args.reps):
            seq = order if rep % 2 == 0 else order[::-1]
            for name in seq:
                rcpt, conf = modes[name]
                p.postconf(*conf)
                time.sleep(1)   # smtpd processes of the old configuration exit
                m = one_run(p, name, rcpt, args)
                sent += args.messages
                results[name].append(m)
                log("  rep %d %-12s accepted %7.1f msgs/s (%.2f s)  end to end %7.1f msgs/s (%.2f s)" % (
                    rep + 1, name, m["accept"], m["t_acc"], m["e2e"], m["t_done"]))
        waiting = p.spool_count("box@bench.test")
        if waiting != sent:
            die("the spool holds %d messages, %d were sent" % (waiting, sent))
        log("check: the spool holds %d valid records = %d messages sent; queue empty" % (waiting, sent))

        def med(name, key):
            return statistics.median(r[key] for r in results[name])

        def ratios(key):
            v = [results["with milter"][i][key] / results["without"][i][key] for i in range(args.reps)]
            return statistics.median(v), min(v), max(v)

        log("")
        log("| measure            | with milter msgs/s | without msgs/s | ratio (range)       |")
        log("|--------------------|--------------------|----------------|---------------------|")
        for key, label in (("accept", "accepted (SMTP)"), ("e2e", "end to end")):
            r, lo, hi = ratios(key)
            log("| %-18s | %18.1f | %14.1f | %.2fx (%.2f-%.2fx) |" % (label, med("with milter", key),
                                                                  med("without", key), r, lo, hi))
        r, lo, hi = ratios("e2e")
        log("target: with milter >= 0.9x without (end to end): %.2fx (%s)" % (r, "met" if r >= 0.9 else "NOT met"))
        r2 = ratios("accept")[0]
        log("        accepted over SMTP: %.2fx (%s)" % (r2, "met" if r2 >= 0.9 else "NOT met"))
        log("total %.0f s" % (time.monotonic() - t_start))
    finally:
        p.stop()


if __name__ == "__main__":
    main()
