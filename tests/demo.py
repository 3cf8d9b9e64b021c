#!/usr/bin/env python3
"""The README's first command (`make demo`): a whole sealbox site on
loopback, left running.

    python3 tests/demo.py BUILD_DIR        start (stops an earlier demo first)
    python3 tests/demo.py BUILD_DIR stop   stop everything the demo started

In ./demo-state (kept, gitignored): a private Postfix instance on
127.0.0.1:2525 built from postfix-examples/ exactly as the end-to-end tests
build it (tests/e2e/pipeline.py: Debian's chrooted services, sockets under
the queue directory), sealbox-milter, sealbox-lmtpd, smtp-sink on a
loopback port standing in for the world a forward goes to, and a small
HTTP receiver that prints every webhook POST it gets.  It creates the
domain example.test, the mailbox demo@example.test and three aliases:

    hello@example.test    mailbox:demo@example.test
    friend@example.test   forward:someone@forward.test   (to smtp-sink)
    hooks@example.test    webhook:http://127.0.0.1:PORT/demo

sends one message to each over SMTP, and prints where each one went (the
sealed spool, smtp-sink, the receiver), following its Postfix queue id
through Postfix's, the milter's and lmtpd's logs.  Then it unlocks the
mailbox with its password, shows the message, checks that its text is
nowhere on disk in the clear, and shows a wrong password refused.
Needs root (Postfix start, chroot).
"""
import email.utils
import json
import os
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
from pipeline import Pipeline, stop_leftover  # noqa: E402

DEMO = os.path.join(TOP, "demo-state")
PORT = int(os.environ.get("SBX_DEMO_SMTP_PORT", "2525"))
PASSWORD = "demo-password-please-change"
SECRET = "demo-webhook-secret-please-change"
SECRET_LINE = "This line is the secret: only the password opens it."


def say(msg=""):
    print(msg, flush=True)


def stop():
    """Stop an earlier demo (its processes, from demo-state/pipeline.json)."""
    path = os.path.join(DEMO, "pipeline.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        pids = list(json.load(f).get("pids", {}).values())
    stop_leftover(DEMO)
    # libmilter notices SIGTERM at its next poll (up to ~5 s)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(running(pid) for pid in pids):
        time.sleep(0.1)
    os.remove(path)
    return True


def running(pid):
    """pid is alive and still one of the demo's processes"""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return DEMO.encode() in f.read()
    except OSError:
        return False


def message(to, subject, body):
    return ("From: Sender <sender@example.org>\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n"
            "Message-ID: <demo-%d-%s>\r\n\r\n%s\r\n" % (
                to, subject, email.utils.formatdate(), time.time_ns(), to, body)).encode()


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(TOP, "build"))
    if len(sys.argv) > 2 and sys.argv[2] == "stop":
        say("demo stopped" if stop() else "no demo running (nothing in %s)" % DEMO)
        return 0
    if os.geteuid() != 0:
        say("the demo needs root: it starts a private Postfix instance (run: sudo make demo)")
        return 1
    if stop():
        say("== stopped the demo that was running")
    if os.path.isdir(DEMO):
        subprocess.run(["rm", "-rf", DEMO], check=True)
    p = Pipeline(build=build, domains=("example.test",), forward_domains=("forward.test",),
                 workdir=DEMO, keep=True, smtp_port=PORT, webhook_secret=SECRET)
    say("== starting Postfix on 127.0.0.1:%d (postfix-examples/), sealbox-milter, sealbox-lmtpd, "
        "smtp-sink and a webhook receiver in %s" % (PORT, DEMO))
    p.start()
    info = p.info()
    say("   postfix check: %s" % ("clean" if not p.check_output[1].strip() else p.check_output[1]))

    say("== sealboxctl: domain example.test, mailbox demo@example.test (password: %s), three aliases"
        % PASSWORD)
    p.ctl("mailbox", "add", "demo@example.test", "--password-stdin", stdin=PASSWORD + "\n")
    p.ctl("alias", "add", "hello@example.test", "mailbox:demo@example.test")
    p.ctl("alias", "add", "friend@example.test", "forward:someone@forward.test")
    p.add_webhook("hooks@example.test", "/demo")
    for line in p.ctl("alias", "list").splitlines():
        say("   " + line)

    say("== sending one message to each alias over SMTP (127.0.0.1:%d)" % PORT)
    sent = {}
    for rcpt, subject, body in (
            ("hello@example.test", "Hello from the sealbox demo", SECRET_LINE),
            ("friend@example.test", "Please pass this on", "A forward leaves through Postfix."),
            ("hooks@example.test", "For the webhook", "A webhook gets a signed JSON POST."),
            ("nobody@example.test", "To nobody", "Refused at RCPT: no such alias.")):
        r = p.send("sender@example.org", [rcpt], message(rcpt, subject, body))
        code, text = r.rcpt[rcpt]
        say("   RCPT %-22s -> %d %s%s" % (rcpt, code, text.splitlines()[0][:70],
                                         "  (queued as %s)" % r.queue_id if r.queue_id else ""))
        sent[rcpt] = r
    p.wait_settled(timeout=60)

    say("== where each message went")
    spool = json.loads(p.ctl("mailbox", "spool", "demo@example.test", "--json"))
    say("   hello@example.test  -> sealed into demo@example.test's spool: %d waiting (delivery %s)"
        % (spool["waiting"], ", ".join(spool["deliveries"]) or "-"))
    sink = p.sink_messages()
    for m in sink:
        say("   friend@example.test -> relayed by Postfix to smtp-sink (%s): RCPT %s, ORCPT kept"
            % (info["sink"], " ".join(m["rcpts"])))
    if not sink:
        say("   friend@example.test -> NOT at the sink yet (see %s)" % info["maillog"])
    hooks = p.webhooks()
    for h in hooks:
        doc = h.json()
        say("   hooks@example.test  -> POST %s -> %d, signature %s, subject %r, recipients %s"
            % (h.path, h.status, "ok" if h.signature_ok else "BAD", doc.get("subject"),
               doc.get("recipients")))
    if not hooks:
        say("   hooks@example.test  -> NO webhook POST yet (see %s)" % info["lmtpd_log"])
    qid = sent["hello@example.test"].queue_id
    if qid:
        say("== one message through the logs: grep %s in Postfix's, the milter's and lmtpd's" % qid)
        for line in p.log_for(qid)[:12]:
            say("   " + line[:160])

    say("== unlock the mailbox with its password and read it (sealboxctl export)")
    msgs = p.mailbox("demo@example.test", PASSWORD)
    for m in msgs:
        head = m.split(b"\r\n\r\n", 1)[0].decode(errors="replace").splitlines()
        for line in head:
            if line.split(":", 1)[0] in ("Delivered-To", "From", "Subject"):
                say("   " + line)
    found = subprocess.run(["grep", "-r", "-a", "-l", "-F", SECRET_LINE, p.state],
                           capture_output=True, text=True).stdout.strip()
    say("== the secret line on disk in the clear: %s" % (found or "nowhere under " + p.state))
    r = subprocess.run([os.path.join(build, "sealboxctl"), "-c", p.conf, "mailbox", "messages",
                        "demo@example.test", "--password-stdin"], input="wrong password\n",
                       capture_output=True, text=True)
    say("== a wrong password: exit %d, %s" % (r.returncode, r.stderr.strip().splitlines()[-1]
                                             if r.stderr.strip() else "(no message)"))
    ok = spool["waiting"] == 1 and len(msgs) == 1 and len(sink) == 1 and len(hooks) == 1 and \
        not found and r.returncode != 0
    say()
    say("The demo keeps running (state and logs in %s):" % DEMO)
    say("  send mail:     swaks --server 127.0.0.1:%d --to hello@example.test   (or any SMTP client)" % PORT)
    say("  sealboxctl:    SEALBOX_CONF=%s %s/sealboxctl mailbox list" % (p.conf, build))
    say("  read mail:     echo '%s' | SEALBOX_CONF=%s %s/sealboxctl export demo@example.test "
        "--password-stdin --mbox /tmp/demo.mbox" % (PASSWORD, p.conf, build))
    say("  logs:          %s, %s, %s, %s/receiver.log (webhooks)" % (
        info["maillog"], info["milter_log"], info["lmtpd_log"], DEMO))
    say("  stop it:       make demo-stop")
    if not ok:
        say("demo: something did not arrive where it should; see the logs above")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
