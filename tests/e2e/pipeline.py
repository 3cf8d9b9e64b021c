#!/usr/bin/env python3
"""A whole sealbox site on loopback: a private Postfix instance configured
with the shipped postfix-examples/, sealbox-milter, sealbox-lmtpd, Postfix's
smtp-sink standing in for the forward destination, and an HTTP receiver for
webhooks.  Used by tests/e2e/run_e2e.py; meant for benchmarks and demos too.

    from pipeline import Pipeline
    p = Pipeline(build="build", domains=["example.com"])
    p.start()
    try:
        p.ctl("mailbox", "add", "alice@example.com", "--password-stdin",
              stdin="secret\n")
        r = p.send("carol@example.org", ["alice@example.com"], message_bytes)
        p.wait_settled()                    # nothing left to deliver now
        msgs = p.mailbox("alice@example.com", "secret")
        print(p.maillog())
    finally:
        p.stop()

Everything lives in one folder (``p.dir``, a fresh temp dir unless given):

    etc/      main.cf, master.cf, sealbox-transport, e2e-transport
    queue/    Postfix's queue_directory; queue/sealbox/ holds the sockets
              (milter, lmtp, webhook): owner run_as (default root), group
              postfix, mode 2750, as on a real site
    data/     Postfix's data_directory
    log/      maillog (Postfix, through postlogd)
    sealbox/  sealbox.conf, state/ (directory.db, spool, mailboxes),
              lmtpd.log, milter.log
    sink/     one file per message smtp-sink received (forwards, bounces)
    hooks/    the webhook receiver's records and status.json
    pipeline.json   pids and ports, so that `pipeline.py stop DIR` can
              clean up an instance a crashed or detached caller left behind

How the Postfix configuration is built (the point of the e2e tests is that
the shipped snippets work as they are):

  - main.cf = a loopback-only base (queue and log paths, nothing local,
    nothing leaves the machine: ../shared/postfix-private-instance.md, plus
    Debian's stock defaults such as recipient_delimiter = +), then
    postfix-examples/main.cf.snippet appended byte for byte, then two
    `postconf -e` overrides: virtual_mailbox_domains (the test's domains)
    and transport_maps (the shipped table copied to etc/sealbox-transport,
    plus etc/e2e-transport, which routes the forward domains to the sink:
    `forward.test smtp:[127.0.0.1]:PORT`).
  - master.cf = Debian's stock master.cf (/usr/share/postfix/master.cf.dist)
    with the `smtp inet` listener moved to 127.0.0.1:PORT, then
    postfix-examples/master.cf.snippet appended byte for byte.  With
    chroot=True (the default) services keep Debian's chroot column (smtpd,
    cleanup, lmtp, smtp ... chrooted in queue/); chroot=False turns every
    "y" into "n".
  - etc/sealbox-transport = postfix-examples/transport, unchanged.  The
    socket paths in the snippets are relative to the queue directory, so no
    path needs rewriting.
  - With chroot=True, Debian's /usr/lib/postfix/configure-instance.sh (what
    systemd's postfix@-.service runs before every start) copies etc/
    files, NSS and resolver libraries and /dev/urandom into queue/, with
    MAIL_CONFIG pointing it at this instance.

Clients: send() talks SMTP from 127.0.0.2 (outside mynetworks = 127.0.0.1,
so it is an untrusted client as on the internet) or, with trusted=True,
from 127.0.0.1.  sendmail() submits through the instance's sendmail(1)
(pickup, the non-SMTP path).

Must run as root (Postfix start, chroot).

The API, in short:
    start() / stop(keep=None), or `with Pipeline(...) as p:`; info()
    ctl(*args, stdin=)            sealboxctl with this instance's config
    add_webhook(alias, path, *more_targets) -> webhook id (receiver's secret)
    send(from, rcpts, bytes, trusted=False) -> Sent (queue_id, mail, rcpt, data)
    sendmail(from, rcpts, bytes) -> queue id (non-SMTP path)
    queue(), flush(), kick_pickup(), wait_settled(), wait_empty(), wait_log()
    maillog(), lmtpd_log(), milter_log(), log_for(queue_id)
    mailbox(address, password) -> [bytes], spool_count(address)
    sink_messages(), webhooks(), set_webhook_status(path, code), webhook_url()
    postconf("name = value", ...), postconf_value(name), postfix(*args),
    postfix_check()
    start_lmtpd() / stop_lmtpd(sig), start_milter() / stop_milter(sig)
"""
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(TOP, "postfix-examples")
# Debian's stock master.cf: the package ships it as master.cf.dist, and
# postinst copies it to /etc/postfix/master.cf (and master.cf.proto)
MASTER_DIST = ("/usr/share/postfix/master.cf.dist", "/etc/postfix/master.cf.proto")
CONFIGURE_INSTANCE = "/usr/lib/postfix/configure-instance.sh"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"

UNTRUSTED_ADDR = "127.0.0.2"
TRUSTED_ADDR = "127.0.0.1"


class PipelineError(RuntimeError):
    pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout, what, interval=0.02):
    """Poll pred() until it returns a true value (returned), or raise."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise PipelineError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def port_open(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


class Sent:
    """What the SMTP server answered: queue_id (None if nothing was
    queued), rcpt {address: (code, text)}, data (code, text)."""

    def __init__(self):
        self.queue_id = None
        self.mail = None
        self.rcpt = {}
        self.data = None

    def accepted(self):
        return [a for a, (c, _) in self.rcpt.items() if c // 100 == 2]

    def __repr__(self):
        return "Sent(queue_id=%r, mail=%r, rcpt=%r, data=%r)" % (self.queue_id, self.mail, self.rcpt,
                                                                self.data)


class Hook:
    """One recorded webhook POST."""

    def __init__(self, rec, body):
        self.seq = rec["seq"]
        self.path = rec["path"]
        self.status = rec["status"]          # what the receiver answered
        self.signature_ok = rec["signature_ok"]
        self.headers = rec["headers"]
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Hook(%d %s -> %d, sig %s)" % (self.seq, self.path, self.status,
                                               "ok" if self.signature_ok else "BAD")


class Pipeline:
    def __init__(self, build=None, domains=("example.com",), forward_domains=("forward.test",),
                 chroot=True, workdir=None, keep=False, webhook_secret="e2e-webhook-secret-0123456789",
                 sealbox_conf="", postfix_conf=(), log_level="info", run_as=None, smtp_port=None):
        """build: folder with sealbox-lmtpd, sealbox-milter, sealboxctl
        (default $SBX_BIN, else TOP/build).  domains: hosted domains (added
        with sealboxctl and set as virtual_mailbox_domains).
        forward_domains: routed to the smtp-sink.  workdir: use this
        (empty or missing) folder instead of a temp dir.  keep: leave the
        folder behind on stop().  webhook_secret: the secret the receiver
        checks signatures with (give it to `alias add
        --webhook-secret-stdin`).  sealbox_conf: extra sealbox.conf lines.
        postfix_conf: extra "name = value" main.cf settings (postconf -e).
        smtp_port: the loopback port of Postfix's smtpd (default: a free
        one; the demo uses 2525).
        run_as: user name that sealbox-lmtpd, sealbox-milter and sealboxctl
        run as, owner of the state folder and of queue/sealbox/ (as a site's
        "sealbox" user); default root."""
        self.build = os.path.abspath(build or os.environ.get("SBX_BIN") or os.path.join(TOP, "build"))
        self.domains = list(domains)
        self.forward_domains = list(forward_domains)
        self.chroot = chroot
        self.keep = keep
        self.webhook_secret = webhook_secret
        self.sealbox_conf_extra = sealbox_conf
        self.postfix_conf = list(postfix_conf)
        self.log_level = log_level
        self.run_as = run_as
        self.uid = _uid(run_as) if run_as else 0
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            self.dir = os.path.abspath(workdir)
        else:
            self.dir = tempfile.mkdtemp(prefix="sbx-e2e-")
        d = self.dir
        self.etc = os.path.join(d, "etc")
        self.queue_dir = os.path.join(d, "queue")
        self.sockdir = os.path.join(self.queue_dir, "sealbox")
        self.logfile = os.path.join(d, "log", "maillog")
        self.sbx = os.path.join(d, "sealbox")
        self.conf = os.path.join(self.sbx, "sealbox.conf")
        self.state = os.path.join(self.sbx, "state")
        self.sinkdir = os.path.join(d, "sink")
        self.hookdir = os.path.join(d, "hooks")
        self.fixed_smtp_port = smtp_port
        self.smtp_port = None
        self.sink_port = None
        self.hook_port = None
        self.procs = {}
        self.check_output = None
        self.started = False

    # ------------------------------------------------------------ lifecycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        """Configure everything, check the Postfix configuration, start the
        daemons, the sink, the receiver and Postfix; return once the SMTP
        port answers.  On failure everything is stopped, the folder is
        kept for a look (self.keep is set) and the exception re-raised."""
        if os.geteuid() != 0:
            raise PipelineError("the e2e pipeline needs root (Postfix start, chroot)")
        try:
            self._layout()
            self._sealbox_setup()
            self._postfix_config()
            self.check_output = self.postfix_check()
            if self.check_output[0] != 0:
                raise PipelineError("postfix check failed: " + self.check_output[1])
            self._start_sealbox()
            self._start_sink()
            self._start_receiver()
            self._start_postfix()
            self.started = True
        except BaseException:
            self.keep = True
            self.stop()
            raise
        return self

    def stop(self, keep=None):
        """Stop Postfix and every process start() started; remove the
        folder unless keep (or the constructor's keep) is set."""
        keep = self.keep if keep is None else keep
        # libmilter notices SIGTERM only at its next poll (up to ~5 s):
        # signal it first so that this overlaps with Postfix's stop
        signalled = set()
        p = self.procs.get("milter")
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            signalled.add("milter")
        master_pid = os.path.join(self.queue_dir, "pid", "master.pid")
        if os.path.exists(master_pid):
            subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True, timeout=60)
            self._wait_instance_gone()
        for name in ("receiver", "sink", "milter", "lmtpd"):
            self._stop_proc(name, None if name in signalled else signal.SIGTERM)
        self.started = False
        if not keep and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)

    def _wait_instance_gone(self, timeout=15):
        """Postfix processes whose root or cwd is inside our queue folder
        (chrooted or not): wait for them to exit, then kill what is left
        by pid.  rmtree must not race a process still writing there."""
        def ours():
            pids = []
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                for link in ("root", "cwd"):
                    try:
                        if os.readlink("/proc/%s/%s" % (pid, link)).startswith(self.queue_dir):
                            pids.append(int(pid))
                            break
                    except OSError:
                        pass
            return pids
        deadline = time.monotonic() + timeout
        while ours() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in ours():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def _save_state(self):
        info = {"dir": self.dir, "smtp_port": self.smtp_port, "sink_port": self.sink_port,
                "hook_port": self.hook_port,
                "pids": {n: p.pid for n, p in self.procs.items() if p.poll() is None}}
        with open(os.path.join(self.dir, "pipeline.json"), "w") as f:
            json.dump(info, f, indent=1)

    def info(self):
        """Ports and paths, for a demo's printout."""
        return {"dir": self.dir, "smtp": "127.0.0.1:%s" % self.smtp_port,
                "sink": "127.0.0.1:%s" % self.sink_port,
                "webhook_receiver": "http://127.0.0.1:%s/" % self.hook_port,
                "sealbox_conf": self.conf, "maillog": self.logfile,
                "lmtpd_log": os.path.join(self.sbx, "lmtpd.log"),
                "milter_log": os.path.join(self.sbx, "milter.log")}

    # ------------------------------------------------------------ setup

    def _layout(self):
        os.chmod(self.dir, 0o755)   # postfix must be able to reach queue/
        for sub in ("etc", "queue", "log"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
            os.chmod(os.path.join(self.dir, sub), 0o755)
        os.makedirs(self.sbx, mode=0o700, exist_ok=True)
        os.chown(self.sbx, self.uid, -1)
        # the socket folder inside the chroot, as the README tells a site
        # to create it: owned by sealbox's user, group postfix, set-group-ID
        # so that the sockets the daemons create get group postfix
        os.makedirs(self.sockdir, exist_ok=True)
        os.chown(self.sockdir, self.uid, _gid("postfix"))
        os.chmod(self.sockdir, 0o2750)
        for sub in (self.sinkdir, self.hookdir):
            os.makedirs(sub, exist_ok=True)
        os.chown(self.sinkdir, _uid("postfix"), _gid("postfix"))  # smtp-sink -u postfix
        self.smtp_port = self.fixed_smtp_port or free_port()
        self.sink_port = free_port()

    def _sealbox_setup(self):
        with open(self.conf, "w") as f:
            f.write("state_dir = %s\n" % self.state)
            f.write("milter_listen = unix:%s/milter\n" % self.sockdir)
            f.write("lmtp_listen = unix:%s/lmtp\n" % self.sockdir)
            f.write("webhook_listen = unix:%s/webhook\n" % self.sockdir)
            f.write("hostname = mx.e2e.test\n")
            f.write("log_level = %s\n" % self.log_level)
            f.write(self.sealbox_conf_extra)
        os.chmod(self.conf, 0o644)
        self.ctl("init")
        for d in self.domains:
            self.ctl("domain", "add", d)

    def _base_main_cf(self):
        d = self.dir
        return "\n".join([
            "# ---- test instance base (tests/e2e/pipeline.py), not part of the",
            "# ---- snippets: loopback only, nothing leaves the machine",
            "compatibility_level = 3.6",
            "queue_directory = %s/queue" % d,
            "data_directory = %s/data" % d,
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "maillog_file = %s/log/maillog" % d,
            "maillog_file_prefixes = %s/log" % d,
            "myhostname = mx.e2e.test",
            "mydomain = e2e.test",
            "myorigin = $myhostname",
            "mydestination =",
            "local_recipient_maps =",
            "alias_maps =",
            "alias_database =",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.1/32",
            "smtpd_peername_lookup = no",
            "relayhost =",
            "relay_domains =",
            "default_transport = error:5.7.1 outbound mail disabled in this test instance",
            "relay_transport = error:5.7.1 relaying disabled in this test instance",
            "local_transport = error:5.7.1 local delivery disabled in this test instance",
            "# Debian's stock main.cf",
            "biff = no",
            "append_dot_mydomain = no",
            "readme_directory = no",
            "recipient_delimiter = +",
            "mailbox_size_limit = 0",
            "smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination",
            "",
            "# ---- postfix-examples/main.cf.snippet, appended unchanged",
            "",
        ])

    def _master_cf(self):
        src = next((f for f in MASTER_DIST if os.path.exists(f)), None)
        if src is None:
            raise PipelineError("%s missing: is Debian's postfix package installed?" % MASTER_DIST[0])
        with open(src) as f:
            proto = f.read()
        out = []
        moved = False
        for line in proto.splitlines():
            fields = line.split()
            if line and not line[0].isspace() and not line.startswith("#") and len(fields) >= 8:
                if fields[0] == "smtp" and fields[1] == "inet":
                    fields[0] = "127.0.0.1:%d" % self.smtp_port
                    moved = True
                if not self.chroot and fields[4] in ("y", "-"):
                    fields[4] = "n"
                line = "\t".join(fields[:7]) + "\t" + line.split(None, 7)[7]
            out.append(line)
        if not moved:
            raise PipelineError("no 'smtp inet' line in " + src)
        with open(os.path.join(EXAMPLES, "master.cf.snippet")) as f:
            snippet = f.read()
        if not self.chroot:
            snippet = "\n".join(
                re.sub(r"^(\S+\s+\S+\s+\S+\s+\S+\s+)y(\s)", r"\1n\2", l) for l in snippet.split("\n"))
        return "\n".join(out) + "\n\n# ---- postfix-examples/master.cf.snippet\n" + snippet

    def _postfix_config(self):
        with open(os.path.join(EXAMPLES, "main.cf.snippet")) as f:
            snippet = f.read()
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(self._base_main_cf() + snippet)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(self._master_cf())
        shutil.copyfile(os.path.join(EXAMPLES, "transport"), os.path.join(self.etc, "sealbox-transport"))
        with open(os.path.join(self.etc, "e2e-transport"), "w") as f:
            f.write("# test only: the forward destinations are the local smtp-sink\n")
            for d in self.forward_domains:
                f.write("%s smtp:[127.0.0.1]:%d\n" % (d, self.sink_port))
        for name in os.listdir(self.etc):
            os.chmod(os.path.join(self.etc, name), 0o644)
        self._age_config()
        self.postconf("virtual_mailbox_domains = " + " ".join(self.domains),
                      "transport_maps = texthash:%s/sealbox-transport, texthash:%s/e2e-transport"
                      % (self.etc, self.etc),
                      *self.postfix_conf, reload=False)
        if self.chroot and os.path.exists(CONFIGURE_INSTANCE):
            r = subprocess.run([CONFIGURE_INSTANCE, "-"], capture_output=True, text=True,
                               env=dict(os.environ, MAIL_CONFIG=self.etc), timeout=60)
            if r.returncode != 0:
                raise PipelineError("configure-instance.sh: " + r.stdout + r.stderr)

    def _spawn(self, name, argv, **kw):
        log = open(os.path.join(self.sbx if name in ("lmtpd", "milter") else self.dir,
                                name + ".log"), "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        log.close()
        self.procs[name] = p
        self._save_state()
        return p

    def _as_user(self):
        if not self.run_as:
            return {}
        return {"user": self.uid, "group": _primary_gid(self.run_as), "extra_groups": []}

    def _stop_proc(self, name, sig=signal.SIGTERM):
        p = self.procs.pop(name, None)
        if p is None:
            return None
        if p.poll() is not None:
            return p.returncode
        if sig is not None:
            p.send_signal(sig)
        try:
            return p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait()

    def _daemon_log(self, name):
        path = os.path.join(self.sbx, name + ".log")
        if not os.path.exists(path):
            return ""
        with open(path, errors="replace") as f:
            return f.read()

    def start_lmtpd(self):
        p = self._spawn("lmtpd", [os.path.join(self.build, "sealbox-lmtpd"), "-f", "-c", self.conf],
                        **self._as_user())
        self._wait_started("lmtpd", p)

    def start_milter(self):
        p = self._spawn("milter", [os.path.join(self.build, "sealbox-milter"), "-f", "-c", self.conf],
                        **self._as_user())
        self._wait_started("milter", p)

    def stop_lmtpd(self, sig=signal.SIGTERM):
        return self._stop_proc("lmtpd", sig)

    def stop_milter(self, sig=signal.SIGTERM):
        return self._stop_proc("milter", sig)

    def _wait_started(self, name, p):
        tag = "[%d]: started" % p.pid
        def ready():
            if p.poll() is not None:
                raise PipelineError("sealbox-%s exited: %s" % (name, self._daemon_log(name)[-2000:]))
            return tag in self._daemon_log(name)
        wait_for(ready, 30, "sealbox-%s to start" % name)

    def _start_sealbox(self):
        self.start_lmtpd()
        self.start_milter()

    def _start_sink(self):
        # -u postfix: smtp-sink refuses to run as root; it dumps one file
        # per transaction, envelope first (X-Mail-Args, X-Rcpt-Args).
        self._spawn("sink", [SMTP_SINK, "-u", "postfix", "-h", "sink.forward.test",
                             "-d", os.path.join(self.sinkdir, "msg."),
                             "127.0.0.1:%d" % self.sink_port, "64"])
        wait_for(lambda: port_open(self.sink_port), 10, "smtp-sink to listen")

    def _start_receiver(self):
        p = self._spawn("receiver", [sys.executable, os.path.abspath(__file__), "webhook-receiver",
                                     self.hookdir, self.webhook_secret.encode().hex()])

        def port():
            if p.poll() is not None:
                raise PipelineError("webhook receiver exited")
            try:
                with open(os.path.join(self.hookdir, "port")) as f:
                    return int(f.read())
            except (OSError, ValueError):
                return None
        self.hook_port = wait_for(port, 10, "the webhook receiver")
        self._save_state()

    def _start_postfix(self):
        r = subprocess.run(["postfix", "-c", self.etc, "start"], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise PipelineError("postfix start: " + r.stdout + r.stderr)
        wait_for(lambda: port_open(self.smtp_port), 20, "Postfix smtpd on 127.0.0.1:%d" % self.smtp_port)

    # ------------------------------------------------------------ Postfix

    def postfix_check(self):
        """(status, output) of `postfix -c DIR check` followed by
        `postconf -c DIR -n` and `postconf -c DIR -M` (whose warnings
        catch misspelled parameters and bad master.cf lines)."""
        out = ""
        r = subprocess.run(["postfix", "-c", self.etc, "check"], capture_output=True, text=True,
                           timeout=60)
        out += r.stdout + r.stderr
        rc = r.returncode
        for flag in ("-n", "-M"):
            q = subprocess.run(["postconf", "-c", self.etc, flag], capture_output=True, text=True,
                               timeout=30)
            out += q.stderr
            rc = rc or q.returncode
        return rc, out

    def postconf(self, *settings, reload=True):
        """postconf -e each "name = value"; then reload if running."""
        if settings:
            r = subprocess.run(["postconf", "-c", self.etc, "-e"] + list(settings),
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0 or r.stderr:
                raise PipelineError("postconf -e: " + r.stderr)
            self._age_config()
        if reload and self.started:
            self.postfix("reload")

    def _age_config(self):
        """Date the files in etc/ a minute back.  Postfix reads a main.cf,
        master.cf or texthash: table whose mtime is under about two
        seconds old again and again, 300 ms apart, until it is older or
        eight tries have passed (in case it is still being written): that
        alone cost 2.4 s per postconf/postfix command on fresh files."""
        t = time.time() - 60
        for name in os.listdir(self.etc):
            os.utime(os.path.join(self.etc, name), (t, t))

    def postconf_value(self, name):
        return subprocess.run(["postconf", "-c", self.etc, "-h", name], capture_output=True,
                              text=True, timeout=30).stdout.strip()

    def postfix(self, *args):
        r = subprocess.run(["postfix", "-c", self.etc] + list(args), capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise PipelineError("postfix %s: %s" % (" ".join(args), r.stdout + r.stderr))
        return r.stdout + r.stderr

    def maillog(self):
        """Postfix's log so far (postlogd, maillog_file)."""
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def lmtpd_log(self):
        return self._daemon_log("lmtpd")

    def milter_log(self):
        return self._daemon_log("milter")

    def log_for(self, queue_id):
        """Every line about one Postfix queue id: Postfix's, the milter's
        and lmtpd's (what the README tells an admin to grep)."""
        lines = []
        for text in (self.maillog(), self.milter_log(), self.lmtpd_log()):
            lines += [l for l in text.splitlines() if queue_id in l]
        return lines

    def queue(self):
        """The queue as postqueue -j reports it: a list of dicts with
        queue_name, queue_id, recipients [{address, delay_reason}] ..."""
        r = subprocess.run(["postqueue", "-c", self.etc, "-j"], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise PipelineError("postqueue -j: " + r.stderr)
        return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]

    def flush(self):
        """postqueue -f: retry deferred mail now (also un-throttles
        destinations Postfix marked dead)."""
        subprocess.run(["postqueue", "-c", self.etc, "-f"], check=True, capture_output=True, timeout=30)

    def kick_pickup(self):
        """Wake pickup(8) now (it rescans maildrop every 60 s anyway), e.g.
        for sendmail mail that cleanup refused while the milter was down."""
        subprocess.run(["postkick", "-c", self.etc, "public", "pickup", "W"], check=True,
                       capture_output=True, timeout=30)

    def wait_settled(self, timeout=30):
        """Wait until Postfix has nothing it is about to deliver: every
        message left is deferred or on hold.  Returns the queue."""
        def settled():
            q = self.queue()
            return (q or True) if all(m["queue_name"] in ("deferred", "hold") for m in q) else None
        q = wait_for(settled, timeout, "the Postfix queue to settle")
        return [] if q is True else q

    def wait_empty(self, timeout=30):
        wait_for(lambda: not self.queue(), timeout, "an empty Postfix queue")

    def wait_log(self, pattern, timeout=30, source=None):
        """Wait until the regex matches Postfix's log (or source())."""
        src = source or self.maillog
        return wait_for(lambda: re.search(pattern, src()), timeout, "log: " + pattern)

    # ------------------------------------------------------------ clients

    def send(self, sender, rcpts, message, trusted=False, helo="client.example.org", mail_options=(),
             rcpt_options=()):
        """One SMTP transaction: MAIL, each RCPT, DATA when any RCPT was
        accepted.  message: bytes with CRLF line ends (dot-stuffing is
        done here).  Returns Sent; a refused MAIL leaves rcpt empty."""
        res = Sent()
        src = TRUSTED_ADDR if trusted else UNTRUSTED_ADDR
        with smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname=helo,
                          source_address=(src, 0), timeout=60) as s:
            s.ehlo(helo)
            code, text = s.mail(sender, list(mail_options))
            res.mail = (code, text.decode(errors="replace"))
            if code != 250:
                return res
            for r in rcpts:
                code, text = s.rcpt(r, list(rcpt_options))
                res.rcpt[r] = (code, text.decode(errors="replace"))
            if res.accepted():
                code, text = s.data(message)
                text = text.decode(errors="replace")
                res.data = (code, text)
                m = re.search(r"queued as ([0-9A-Za-z]+)", text)
                if code == 250 and m:
                    res.queue_id = m.group(1)
            else:
                s.rset()
        return res

    def sendmail(self, sender, rcpts, message):
        """Submit through the instance's sendmail(1) (postdrop, pickup,
        cleanup with non_smtpd_milters).  Returns the queue id."""
        before = self._pickup_ids()
        r = subprocess.run(["sendmail", "-C", self.etc, "-f", sender, "-i", "--"] + list(rcpts),
                           input=message.replace(b"\r\n", b"\n"), capture_output=True, timeout=60)
        if r.returncode != 0:
            raise PipelineError("sendmail: %r" % r.stderr)

        def new_id():
            ids = self._pickup_ids() - before
            return sorted(ids)[0] if ids else None
        return wait_for(new_id, 30, "pickup to queue the sendmail message")

    def _pickup_ids(self):
        return set(re.findall(r"postfix/pickup\[\d+\]: ([0-9A-Za-z]+): uid=", self.maillog()))

    def ctl(self, *args, stdin=None, check=True):
        """Run sealboxctl with this instance's sealbox.conf; returns stdout."""
        r = subprocess.run([os.path.join(self.build, "sealboxctl")] + list(args),
                           input=stdin if stdin is not None else "", capture_output=True, text=True,
                           env=dict(os.environ, SEALBOX_CONF=self.conf), timeout=120,
                           **self._as_user())
        if check and r.returncode != 0:
            raise PipelineError("sealboxctl %s: %s" % (" ".join(args), r.stderr.strip()))
        return r.stdout if check else r

    def add_webhook(self, alias, path, *more_targets):
        """alias add ALIAS webhook:http://127.0.0.1:PORT/PATH [more targets]
        with the receiver's secret; returns the webhook id."""
        out = self.ctl("alias", "add", alias, "webhook:" + self.webhook_url(path), *more_targets,
                       "--webhook-secret-stdin", stdin=self.webhook_secret + "\n")
        return out.split()[1]

    # ------------------------------------------------------------ results

    def mailbox(self, address, password):
        """Every message in the mailbox (sealboxctl export --mbox, which
        also imports the sealed spool), as bytes, in mailbox order, with
        export's X-Sealbox-* lines removed and mboxrd quoting undone."""
        path = os.path.join(self.sbx, "export-%d.mbox" % time.monotonic_ns())
        self.ctl("export", address, "--password-stdin", "--mbox", path, stdin=password + "\n")
        with open(path, "rb") as f:
            data = f.read()
        os.unlink(path)
        return parse_mbox(data)

    def spool_count(self, address):
        """Deliveries waiting in the mailbox's sealed spool (no password)."""
        return len(json.loads(self.ctl("mailbox", "spool", address, "--json"))["deliveries"])

    def sink_messages(self):
        """Messages smtp-sink received, oldest first: dicts with mail_from,
        rcpts [RCPT arguments], message (bytes, LF line ends as smtp-sink
        writes them, without smtp-sink's own headers)."""
        out = []
        for name in os.listdir(self.sinkdir):
            path = os.path.join(self.sinkdir, name)
            with open(path, "rb") as f:
                raw = f.read()
            out.append((os.stat(path).st_mtime_ns, parse_sink(raw)))
        return [m for _, m in sorted(out, key=lambda x: x[0])]

    def webhook_url(self, path):
        return "http://127.0.0.1:%d%s" % (self.hook_port, path)

    def set_webhook_status(self, path, code):
        """Make the receiver answer HTTP code for POSTs to path (default 200)."""
        f = os.path.join(self.hookdir, "status.json")
        try:
            with open(f) as fh:
                st = json.load(fh)
        except (OSError, ValueError):
            st = {}
        st[path] = code
        with open(f + ".tmp", "w") as fh:
            json.dump(st, fh)
        os.rename(f + ".tmp", f)

    def webhooks(self):
        """Every POST the receiver got, as Hook objects."""
        out = []
        try:
            with open(os.path.join(self.hookdir, "log")) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return out
        for l in lines:
            rec = json.loads(l)
            with open(os.path.join(self.hookdir, "%d.body" % rec["seq"]), "rb") as f:
                out.append(Hook(rec, f.read()))
        return out


# ---------------------------------------------------------------- parsing

def parse_mbox(data):
    msgs = []
    cur = None
    for line in data.splitlines(keepends=True):
        if line.startswith(b"From "):
            if cur is not None:
                msgs.append(cur)
            cur = []
            continue
        if cur is None:
            continue
        if re.match(rb">+From ", line):
            line = line[1:]
        cur.append(line)
    if cur is not None:
        msgs.append(cur)
    out = []
    for lines in msgs:
        # export's separator: one empty line after each message
        if lines and lines[-1] in (b"\n", b"\r\n"):
            lines = lines[:-1]
        while lines and lines[0].startswith(b"X-Sealbox-"):
            lines = lines[1:]
        out.append(b"".join(lines))
    return out


def parse_sink(raw):
    """smtp-sink dump: X-Client-Addr, X-Client-Proto, X-Helo-Args,
    X-Mail-Args, X-Rcpt-Args..., a three-line Received:, then the message."""
    lines = raw.split(b"\n")
    m = {"mail_from": None, "rcpts": []}
    i = 0
    while i < len(lines):
        l = lines[i]
        if l.startswith(b"X-Mail-Args: "):
            m["mail_from"] = l[13:].decode(errors="replace")
        elif l.startswith(b"X-Rcpt-Args: "):
            m["rcpts"].append(l[13:].decode(errors="replace"))
        elif l.startswith(b"Received: ") and b"(smtp-sink)" in b"".join(lines[i:i + 3]):
            i += 3
            break
        i += 1
    m["message"] = b"\n".join(lines[i:])
    return m


def header(msg, name):
    """First header field called name, unfolded, or None."""
    head = msg.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    head = re.sub(rb"\r?\n[ \t]+", b" ", head)
    for l in head.split(b"\n"):
        l = l.rstrip(b"\r")
        k, _, v = l.partition(b":")
        if k.lower() == name.lower().encode():
            return v.strip().decode(errors="replace")
    return None


def body(msg):
    for sep in (b"\r\n\r\n", b"\n\n"):
        if sep in msg:
            return msg.split(sep, 1)[1]
    return b""


# ---------------------------------------------------------------- helpers

def _uid(name):
    import pwd
    return pwd.getpwnam(name).pw_uid


def _gid(name):
    import grp
    return grp.getgrnam(name).gr_gid


def _primary_gid(user):
    import pwd
    return pwd.getpwnam(user).pw_gid


# ---------------------------------------------------------------- receiver

def webhook_receiver(record_dir, secret_hex):
    """HTTP server for webhook POSTs (run as a child process, so that a
    detached pipeline keeps it).  Writes its port to RECORD/port; records
    each POST as RECORD/<seq>.body and a JSON line in RECORD/log; answers
    the code RECORD/status.json gives for the path (without query), default
    200, and 401 when X-Webhook-Signature is not hex HMAC-SHA256 of the body
    under the secret.  Prints one line per POST on stdout."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    secret = bytes.fromhex(secret_hex)
    lock = threading.Lock()
    seq = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            data = self.rfile.read(n) if n > 0 else b""
            want = hmac.new(secret, data, hashlib.sha256).hexdigest()
            sig_ok = hmac.compare_digest(want, self.headers.get("X-Webhook-Signature", ""))
            path = self.path.split("?", 1)[0]
            try:
                with open(os.path.join(record_dir, "status.json")) as f:
                    code = int(json.load(f).get(path, 200))
            except (OSError, ValueError):
                code = 200
            if not sig_ok:
                code = 401
            with lock:
                seq[0] += 1
                k = seq[0]
                with open(os.path.join(record_dir, "%d.body" % k), "wb") as f:
                    f.write(data)
                rec = {"seq": k, "path": self.path, "status": code, "signature_ok": sig_ok,
                       "headers": {h: self.headers.get(h) for h in
                                   ("User-Agent", "Content-Type", "X-Webhook-Signature")}}
                with open(os.path.join(record_dir, "log"), "a") as f:
                    f.write(json.dumps(rec) + "\n")
            try:
                doc = json.loads(data)
                what = "subject=%r recipients=%s" % (doc.get("subject"), doc.get("recipients"))
            except ValueError:
                what = "%d bytes (not JSON)" % len(data)
            print("webhook POST %s signature %s -> %d: %s" % (self.path, "ok" if sig_ok else "BAD",
                                                             code, what), flush=True)
            reply = b"{}\n"
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    with open(os.path.join(record_dir, "port.tmp"), "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(os.path.join(record_dir, "port.tmp"), os.path.join(record_dir, "port"))
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    srv.serve_forever()


def stop_leftover(folder):
    """Stop an instance whose Pipeline object is gone (a crashed or kept
    run), from its pipeline.json; the folder itself stays."""
    folder = os.path.abspath(folder)
    with open(os.path.join(folder, "pipeline.json")) as f:
        info = json.load(f)
    p = Pipeline(workdir=folder)
    subprocess.run(["postfix", "-c", p.etc, "stop"], capture_output=True, timeout=60)
    p._wait_instance_gone()
    for name, pid in info.get("pids", {}).items():
        # only a process that still is ours: its command line names the folder
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if folder.encode() not in f.read():
                    continue
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "webhook-receiver":
        webhook_receiver(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "stop":
        stop_leftover(sys.argv[2])
    else:
        sys.stderr.write("usage: pipeline.py stop DIR | webhook-receiver DIR SECRET_HEX\n")
        sys.exit(64)
