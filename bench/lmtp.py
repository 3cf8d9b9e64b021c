#!/usr/bin/env python3
"""bench/lmtp.py - LMTP delivery: sealbox-lmtpd against Dovecot's LMTP (issue 4).

    python3 bench/lmtp.py BUILD_DIR [--quick] [--reps N] [--messages N]
                          [--seconds T] [--mailboxes M] [--runs LIST] [--keep]

`make bench` runs it from bench/run.sh. In one invocation it

  - installs dovecot-core and dovecot-lmtpd when missing (tests/install-deps.sh,
    as `make deps` does);
  - makes one directory under $TMPDIR, /tmp or, when that is tmpfs, /var/tmp,
    and refuses anything but ext4 there (df -T); both peers live in it, so on
    the same file system;
  - sealbox: a private sealbox.conf and state dir (sealboxctl init, domain add
    bench.test, mailboxes rGG-uMM@bench.test, ids from `mailbox list --json`),
    sealbox-lmtpd -f on a unix socket, log_level info (one log line per
    recipient, as in production); recipients <id>@mailbox.sealbox.internal
    ORCPT=rfc822;rGG-uMM@bench.test;
  - dovecot: a private instance (`dovecot -F -c CONF`: its own base_dir,
    state_dir and log, protocols = lmtp, a unix LMTP socket, passwd-file
    passdb/userdb with the same user names, mail_location = maildir:~/Maildir under the
    temp dir, every fsync setting at its default (mail_fsync = optimized));
  - runs the C load generator (BUILD_DIR/bench/lmtp, bench/lmtp.c) for each
    configuration (C connections, R recipients per message, S bytes per
    message), sealbox and dovecot alternating (order swapped every run),
    --reps times (3), each run at least --messages (2000) messages and
    --seconds (5) seconds, after one untimed warm-up run per peer;
  - counts fsync/fdatasync/syncfs/sync_file_range calls system-wide during
    each run with `perf stat -a` on the syscall tracepoints (the generator
    itself never syncs), and the daemon's CPU time (/proc/PID/stat; for
    Dovecot the master, its reaped children and its live descendants);
  - at the end checks that every message is there: the valid records in
    each sealbox mailbox's spool journal (`sealboxctl mailbox spool`) and
    its usage_msgs, the Maildir
    files (new/ + cur/) of each Dovecot user, against what the generator
    had answered 250 for, and that no tmp/ entry is left.

Every reply the generator gets is checked (250 for each RCPT after the data,
354 for DATA...); any other reply fails the run and the benchmark.

Each run (and the warm-up) delivers to its own M (16) fresh mailboxes, on
both peers, so every run starts from the same state: empty mailboxes on a
file system that keeps everything the earlier runs wrote. During the run the
spool grows (nobody imports it, nobody reads the Maildir, nothing is deleted
until the end). Both matter: Dovecot's cost per delivery grows with the
number of files in Maildir/new/, and ext4 without a journal makes creating
files slow for a while after many were deleted, so run the benchmark a few
minutes after deleting large trees (e.g. a previous run's). The live path (delivery into a mailbox
unlocked in sealbox-imapd) is not measured: there is no imapd yet.

Prints, per configuration, the median msgs/s of each peer, the median of the
per-run ratios sealbox/dovecot, sync calls per 250 (per recipient delivered)
and CPU ms per message, and the target line for C=4 R=1 S=4K (>= 3x).
Exits non-zero when any delivery or check fails.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNC_EVENTS = ["fsync", "fdatasync", "syncfs", "sync_file_range"]
TICK = os.sysconf("SC_CLK_TCK")
TARGET = 3.0


def log(msg):
    print(msg, flush=True)


def die(msg):
    print("lmtp bench: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
    return r.stdout


def fstype(path):
    """df --output=fstype (df -T's column); "tmpfs" also when stat -f says so"""
    out = run(["df", "--output=fstype", path]).split()
    if run(["stat", "-f", "-c", "%T", path]).strip() == "tmpfs":
        return "tmpfs"
    return out[-1] if out else "?"


def pick_base():
    for cand in [os.environ.get("TMPDIR"), "/tmp", "/var/tmp", TOP]:
        if cand and os.path.isdir(cand) and fstype(cand) != "tmpfs":
            return cand
    die("no directory outside tmpfs for the benchmark")


def ext4_journal(path):
    """'yes', 'no' or '?': /sys/fs/ext4/<dev>/journal_task is <none> without one."""
    try:
        dev = os.stat(path).st_dev
        for name in os.listdir("/sys/fs/ext4"):
            p = "/dev/" + name
            if os.path.exists(p) and os.stat(p).st_rdev == dev:
                with open("/sys/fs/ext4/%s/journal_task" % name) as f:
                    return "no" if f.read().strip() == "<none>" else "yes"
    except OSError:
        pass
    return "?"


def wait_socket(path, proc, logpath, what):
    for _ in range(500):
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(path)
                s.close()
                return
            except OSError:
                s.close()
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    with open(logpath, errors="replace") as f:
        die("%s did not start:\n%s" % (what, f.read()[-3000:]))


def proc_cpu(pid, children=False):
    """utime+stime (and cutime+cstime) of pid in seconds; 0 if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return 0.0
    fields = st[st.rindex(")") + 2:].split()
    t = int(fields[11]) + int(fields[12])
    if children:
        t += int(fields[13]) + int(fields[14])
    return t / TICK


def tree_cpu(root):
    """CPU of root (with its reaped children) and of all live descendants."""
    ppid = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
                ppid[int(d)] = int(st[st.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    total = proc_cpu(root, children=True)
    todo = [root]
    while todo:
        p = todo.pop()
        for c, pp in ppid.items():
            if pp == p:
                total += proc_cpu(c)
                todo.append(c)
    return total


def system_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / TICK


class Peer:
    """A daemon under test: started with self.proc and self.logf set."""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.logf.close()
        self.proc = None


class Sealbox(Peer):
    name = "sealbox"

    def __init__(self, build, root, ngroups, nmbox):
        self.build = build
        self.dir = os.path.join(root, "sealbox")
        os.mkdir(self.dir)
        self.state = os.path.join(self.dir, "var")
        self.sock = os.path.join(self.dir, "lmtp.sock")
        self.conf = os.path.join(self.dir, "sealbox.conf")
        self.logpath = os.path.join(self.dir, "lmtpd.log")
        with open(self.conf, "w") as f:
            f.write("state_dir = %s\nlmtp_listen = unix:%s\nhostname = mx.bench.test\nlog_level = info\n"
                    % (self.state, self.sock))
        self.env = dict(os.environ, SEALBOX_CONF=self.conf)
        ctl = os.path.join(build, "sealboxctl")
        run([ctl, "init"], env=self.env)
        run([ctl, "domain", "add", "bench.test"], env=self.env)
        self.addresses = mailbox_names(ngroups, nmbox)
        for i, a in enumerate(self.addresses):
            run([ctl, "mailbox", "add", a, "--password-stdin"], env=self.env, input="bench-password-%d\n" % i)
        ids = {m["address"]: m["id"] for m in json.loads(run([ctl, "mailbox", "list", "--json"], env=self.env))}
        self.ids = [ids[a] for a in self.addresses]
        self.rcpts = []
        for g in range(ngroups):
            self.rcpts.append(os.path.join(self.dir, "rcpts.%d" % g))
            with open(self.rcpts[-1], "w") as f:
                for i in range(g * nmbox, (g + 1) * nmbox):
                    f.write("%s@mailbox.sealbox.internal %s\n" % (self.ids[i], self.addresses[i]))
        self.addr = "unix:" + self.sock
        self.proc = None
        self.version = "sealbox-lmtpd (%s)" % git_rev(build)

    def start(self):
        self.logf = open(self.logpath, "a")
        self.proc = subprocess.Popen([os.path.join(self.build, "sealbox-lmtpd"), "-f", "-c", self.conf],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        wait_socket(self.sock, self.proc, self.logpath, "sealbox-lmtpd")

    def cpu(self):
        return proc_cpu(self.proc.pid)


    def log_offset(self):
        return os.path.getsize(self.logpath)

    def log_since(self, off):
        with open(self.logpath, "rb") as f:
            f.seek(off)
            return f.read().decode("utf-8", "replace")

    def counts(self):
        """valid records in each mailbox's spool journal (sealboxctl mailbox spool,
        which checks every record's check value), and damaged or torn bytes"""
        n, bad = [], 0
        for mid in self.ids:
            out = json.loads(run([os.path.join(self.build, "sealboxctl"), "mailbox", "spool", mid, "--json"],
                                 env=self.env))
            n.append(out["waiting"])
            d = os.path.join(self.state, "spool", mid)
            if os.path.isdir(d):
                bad += len([f for f in os.listdir(d) if f != "journal"])
        return n, bad

    def usage_msgs(self):
        out = json.loads(run([os.path.join(self.build, "sealboxctl"), "mailbox", "list", "--json"], env=self.env))
        by = {m["id"]: m for m in out}
        return [by[mid].get("usage_msgs") for mid in self.ids]


class Dovecot(Peer):
    name = "dovecot"

    def __init__(self, root, ngroups, nmbox):
        self.dir = os.path.join(root, "dovecot")
        os.mkdir(self.dir)
        self.sock = os.path.join(self.dir, "lmtp")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.logpath = os.path.join(self.dir, "dovecot.log")
        self.maildir = os.path.join(self.dir, "mail")
        os.mkdir(self.maildir)
        if os.getuid() == 0:
            uid = gid = 65534            # nobody: Dovecot refuses mail access as root
            extra = ""
        else:
            uid, gid = os.getuid(), os.getgid()
            import pwd
            me = pwd.getpwuid(uid).pw_name
            extra = "default_internal_user = %s\ndefault_login_user = %s\n" % (me, me)
        users = os.path.join(self.dir, "users")
        self.users = mailbox_names(ngroups, nmbox)
        with open(users, "w") as f:
            for u in self.users:
                home = os.path.join(self.maildir, u)
                os.mkdir(home)
                os.chown(home, uid, gid)
                f.write("%s:{PLAIN}bench:%d:%d::%s::\n" % (u, uid, gid, home))
        os.chmod(users, 0o644)
        os.chown(self.maildir, uid, gid)
        with open(self.conf, "w") as f:
            f.write("""# private Dovecot for bench/lmtp.py; every fsync setting at its default
base_dir = {d}/run
state_dir = {d}/state
instance_name = sbxbench{pid}
log_path = {d}/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
{extra}first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {d}/users
}}
userdb {{
  driver = passwd-file
  args = {d}/users
}}
service lmtp {{
  unix_listener {sock} {{
    mode = 0666
  }}
}}
""".format(d=self.dir, pid=os.getpid(), sock=self.sock, extra=extra))
        self.rcpts = []
        for g in range(ngroups):
            self.rcpts.append(os.path.join(self.dir, "rcpts.%d" % g))
            with open(self.rcpts[-1], "w") as f:
                for u in self.users[g * nmbox:(g + 1) * nmbox]:
                    f.write("%s %s\n" % (u, u))
        self.addr = "unix:" + self.sock
        self.proc = None
        self.version = "Dovecot " + run(["dovecot", "--version"]).strip()

    def start(self):
        self.logf = open(os.path.join(self.dir, "master.out"), "a")
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        wait_socket(self.sock, self.proc, os.path.join(self.dir, "master.out"), "dovecot")

    def cpu(self):
        return tree_cpu(self.proc.pid)


    def counts(self):
        n, tmp = [], 0
        for u in self.users:
            md = os.path.join(self.maildir, u, "Maildir")
            c = 0
            for sub in ("new", "cur"):
                if os.path.isdir(os.path.join(md, sub)):
                    c += len(os.listdir(os.path.join(md, sub)))
            n.append(c)
            if os.path.isdir(os.path.join(md, "tmp")):
                tmp += len(os.listdir(os.path.join(md, "tmp")))
        return n, tmp


def mailbox_names(ngroups, nmbox):
    """group g (one per run, plus the warm-up) has mailboxes rGG-uMM@bench.test"""
    return ["r%02d-u%02d@bench.test" % (g, i + 1) for g in range(ngroups) for i in range(nmbox)]


def git_rev(build):
    """the commit the daemon was built from: $SBX_BENCH_REV, else git in the
    tree that holds BUILD_DIR (+ a note when lmtpd/ or shared/ differ)"""
    if os.environ.get("SBX_BENCH_REV"):
        return os.environ["SBX_BENCH_REV"]
    tree = os.path.dirname(build)
    try:
        rev = run(["git", "-C", tree, "rev-parse", "--short", "HEAD"]).strip()
        dirty = run(["git", "-C", tree, "status", "--porcelain", "--untracked-files=no", "lmtpd", "shared"]).strip()
        return rev + (" + uncommitted changes in lmtpd/ or shared/" if dirty else "")
    except (RuntimeError, OSError):
        return "?"


def perf_ok():
    if shutil.which("perf") is None:
        return False
    r = subprocess.run(["perf", "stat", "-a", "-x", ",", "-e", "syscalls:sys_enter_fsync", "--", "true"],
                       capture_output=True, text=True)
    return r.returncode == 0 and "sys_enter_fsync" in r.stderr


class Bench:
    def __init__(self, args):
        self.args = args
        self.gen = os.path.join(args.build, "bench", "lmtp")
        self.expected = {}       # peer name -> per-mailbox expected count
        self.run_no = 0
        self.perf = perf_ok()

    def generate(self, peer, group, c, r, s, n, secs):
        """One run of the load generator; returns a dict of figures."""
        self.run_no += 1
        qid = "Q%X%03d" % (os.getpid() & 0xFFFF, self.run_no)
        cmd = [self.gen, "-a", peer.addr, "-f", peer.rcpts[group], "-c", str(c), "-r", str(r), "-s", str(s),
               "-n", str(n), "-t", str(secs), "-q", qid]
        perf_out = None
        if self.perf:
            perf_out = os.path.join(self.args.root, "perf.out")
            ev = ",".join("syscalls:sys_enter_" + e for e in SYNC_EVENTS)
            cmd = ["perf", "stat", "-a", "-x", ",", "-o", perf_out, "-e", ev, "--"] + cmd
        logoff = peer.log_offset() if isinstance(peer, Sealbox) else None
        cpu0, busy0 = peer.cpu(), system_busy()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        p = subprocess.run(cmd, capture_output=True, text=True)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu1, busy1 = peer.cpu(), system_busy()
        m = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", p.stdout)}
        if p.returncode != 0 or "msgs" not in m or m.get("errors", 1) != 0:
            die("%s C=%d R=%d S=%d: the load generator failed (exit %d):\n%s%s"
                % (peer.name, c, r, s, p.returncode, p.stdout, p.stderr))
        msgs = int(m["msgs"])
        M = self.args.mailboxes
        exp = self.expected.setdefault(peer.name, [0] * (M * self.args.groups))
        for k in range(msgs):
            for j in range(r):
                exp[group * M + (k * r + j) % M] += 1
        m["syncs"] = None
        if perf_out is not None:
            tot = 0
            with open(perf_out) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_"):
                        tot += int(parts[0]) if parts[0].isdigit() else 0
            m["syncs"] = tot
        m["cpu_ms_msg"] = (cpu1 - cpu0) * 1000.0 / msgs
        m["busy_ms_msg"] = (busy1 - busy0) * 1000.0 / msgs
        m["client_ms_msg"] = ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) * 1000.0 / msgs
        if logoff is not None:
            txt = peer.log_since(logoff)
            st = re.findall(r"status=(\d{3})[^\n]*\(([\d.]+) ms\)", txt)
            bad = [x for x in st if x[0] != "250"]
            if len(st) != msgs * r or bad:
                die("sealbox log: %d recipient lines (%d expected), %d not 250" % (len(st), msgs * r, len(bad)))
            ms = sorted(float(x[1]) for x in st)
            m["daemon_ms_p50"] = ms[len(ms) // 2]
            m["daemon_ms_p90"] = ms[int(len(ms) * 0.9)]
        return m


def fmt_rate(v):
    return "%.0f" % v if v >= 100 else "%.1f" % v


def machine_line(root):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return "%s, %d CPUs (%s), %d MiB RAM, kernel %s; %s on %s (ext4 journal: %s)" % (
        platform.node(), os.cpu_count(), cpu, mem, platform.release(), root, fstype(root), ext4_journal(root))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--quick", action="store_true", help="200 messages, 1 repeat: a smoke test")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--messages", type=int, default=None, help="at least N messages per run (2000)")
    ap.add_argument("--seconds", type=float, default=None, help="and at least T seconds per run (5)")
    ap.add_argument("--mailboxes", type=int, default=None,
                    help="fresh mailboxes per run (16; 8 with --quick)")
    ap.add_argument("--runs", default="4/1/4K,1/1/4K,4/5/4K,4/1/64K",
                    help="comma-separated C/R/S configurations (default %(default)s)")
    ap.add_argument("--only", choices=["sealbox", "dovecot"], help="run one peer only")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    args.reps = args.reps or (1 if args.quick else 3)
    args.messages = args.messages or (200 if args.quick else 2000)
    args.seconds = args.seconds if args.seconds is not None else (0 if args.quick else 5)
    args.mailboxes = args.mailboxes or (8 if args.quick else 16)
    configs = []
    for spec in args.runs.split(","):
        c, r, s = spec.split("/")
        sz = int(s[:-1]) * 1024 if s[-1] in "kK" else int(s)
        configs.append((int(c), int(r), sz, "C=%s R=%s S=%s" % (c, r, s.upper())))
    if any(r > args.mailboxes for _, r, _, _ in configs):
        die("R must not exceed --mailboxes")
    args.groups = 1 + len(configs) * args.reps     # the warm-up, then one per run
    for exe in ("sealboxctl", "sealbox-lmtpd", "bench/lmtp"):
        if not os.access(os.path.join(args.build, exe), os.X_OK):
            die("%s/%s missing: run make first" % (args.build, exe))
    if args.only != "sealbox" and (shutil.which("dovecot") is None or
                                   not os.path.exists("/usr/lib/dovecot/lmtp")):
        subprocess.run(["sh", os.path.join(TOP, "tests", "install-deps.sh"), "dovecot-core", "dovecot-lmtpd"],
                       check=True)
    base = pick_base()
    if fstype(base) != "ext4":
        die("%s is %s: this benchmark compares fsync-bound servers and wants ext4 (set TMPDIR)"
            % (base, fstype(base)))
    root = tempfile.mkdtemp(prefix="sbx-lmtp-", dir=base)
    os.chmod(root, 0o755)              # Dovecot's unprivileged processes walk into it
    args.root = root
    peers = []
    t_start = time.time()
    ok = False
    try:
        log("bench/lmtp: %s" % machine_line(root))
        if args.only != "dovecot":
            peers.append(Sealbox(args.build, root, args.groups, args.mailboxes))
        if args.only != "sealbox":
            peers.append(Dovecot(root, args.groups, args.mailboxes))
        if len(peers) == 2 and os.stat(peers[0].dir).st_dev != os.stat(peers[1].dir).st_dev:
            die("the two peers are not on the same file system")
        for p in peers:
            p.start()
        b = Bench(args)
        log("peers: %s; load generator %s; %d fresh mailboxes per run; runs of >= %d messages and >= %g s, %d repeat(s); "
            "sync calls counted %s" % ("; ".join(p.version for p in peers), b.gen, args.mailboxes,
                                       args.messages, args.seconds, args.reps,
                                       "with perf stat -a (system-wide)" if b.perf else "NOT (perf unavailable)"))
        for p in peers:       # warm-up: processes, thread pools, caches
            b.generate(p, 0, 4, 1, 4096, 100, 0)
        results = {}          # (config index, peer) -> list of runs
        order = 0
        group = 0
        for rep in range(args.reps):
            for ci, (c, r, s, label) in enumerate(configs):
                seq = peers if order % 2 == 0 else list(reversed(peers))
                order += 1
                group += 1
                for p in seq:
                    m = b.generate(p, group, c, r, s, args.messages, args.seconds)
                    results.setdefault((ci, p.name), []).append(m)
                    log("  rep %d %-16s %-8s %7.1f msgs/s  %6d msgs in %6.2f s  latency p50 %6.2f ms p99 %6.2f ms"
                        "  cpu ms/msg: daemon %.2f, client %.2f, machine %.2f  syncs/250 %s" % (
                            rep + 1, label, p.name, m["msgs_per_s"], m["msgs"], m["secs"], m["lat_p50_ms"],
                            m["lat_p99_ms"], m["cpu_ms_msg"], m["client_ms_msg"], m["busy_ms_msg"],
                            "%.2f" % (m["syncs"] / (m["msgs"] * r)) if m["syncs"] is not None else "n/a"))
        for p in peers:
            p.stop()
        # every message answered 250 must be on disk, nothing left in tmp/
        # (sealbox: a valid journal record each, no other file in the spool)
        bad = []
        for p in peers:
            got, tmp = p.counts()
            want = b.expected.get(p.name, [0] * (args.mailboxes * args.groups))
            if got != want:
                bad.append("%s: files per mailbox %s, expected %s" % (p.name, got, want))
            if tmp:
                bad.append("%s: %d files left in tmp/ (sealbox: files other than the journal)" % (p.name, tmp))
            if isinstance(p, Sealbox):
                um = p.usage_msgs()
                if um != want:
                    bad.append("sealbox: usage_msgs %s, expected %s" % (um, want))
            log("check %s: %d files on disk = %d deliveries answered 250%s" % (
                p.name, sum(got), sum(want), "" if got == want else "  MISMATCH"))
        if bad:
            die("\n".join(bad))
        print_table(args, configs, peers, results, time.time() - t_start)
        ok = True
    finally:
        for p in peers:
            p.stop()
        if args.keep or not ok:
            log("kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def print_table(args, configs, peers, results, total):
    names = [p.name for p in peers]
    log("")
    log("LMTP delivery, %s; median of %d run(s); %d fresh mailboxes per run, the spool/Maildir grows during "
        "the run (nothing imported or read)"
        % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), args.reps, args.mailboxes))
    hdr = "| %-15s |" % "run"
    for n in names:
        hdr += " %9s msgs/s |" % n
    if len(names) == 2:
        hdr += " ratio (range)        |"
    for n in names:
        hdr += " %s syncs/250 |" % n
    for n in names:
        hdr += " %s CPU ms/msg |" % n
    if "sealbox" in names:
        hdr += " sealbox ms/rcpt p50 |"
    log(hdr)
    log(re.sub(r"[^|]", "-", hdr))
    target = None
    for ci, (c, r, s, label) in enumerate(configs):
        row = "| %-15s |" % label
        rates = {}
        for n in names:
            rs = [m["msgs_per_s"] for m in results[(ci, n)]]
            rates[n] = rs
            row += " %16s |" % ("%s (%s-%s)" % (fmt_rate(med(rs)), fmt_rate(min(rs)), fmt_rate(max(rs)))
                                 if len(rs) > 1 else fmt_rate(rs[0]))
        if len(names) == 2:
            ratios = [a / b for a, b in zip(rates["sealbox"], rates["dovecot"])]
            cell = "%.2fx (%.2f-%.2fx)" % (med(ratios), min(ratios), max(ratios))
            row += " %-20s |" % cell
            if (c, r, s) == (4, 1, 4096):
                target = med(ratios)
        for n in names:
            sy = med([m["syncs"] / (m["msgs"] * r) if m["syncs"] is not None else None
                      for m in results[(ci, n)]])
            row += " %*s |" % (len(n) + 10, "%.2f" % sy if sy is not None else "n/a")
        for n in names:
            row += " %*s |" % (len(n) + 11, "%.2f" % med([m["cpu_ms_msg"] for m in results[(ci, n)]]))
        if "sealbox" in names:
            row += " %19s |" % ("%.2f ms" % med([m["daemon_ms_p50"] for m in results[(ci, "sealbox")]]))
        log(row)
    log("")
    log("ratio = sealbox msgs/s / dovecot msgs/s in the same repeat (median and range over repeats). "
        "syncs/250 = fsync+fdatasync+syncfs+sync_file_range calls on the machine during the run per recipient "
        "answered 250. CPU ms/msg = the daemon's CPU time (Dovecot: all its processes) per message. "
        "sealbox ms/rcpt = the per-recipient time sealbox-lmtpd logs (message received -> reply).")
    log("Spool path only: the live path (mailbox unlocked in sealbox-imapd) does not exist yet.")
    if target is not None:
        log("target: sealbox >= %.0fx dovecot at C=4 R=1 S=4K: %.2fx (%s)"
            % (TARGET, target, "met" if target >= TARGET else "NOT met"))
    log("total %.0f s; load average at end %s" % (total, open("/proc/loadavg").read().strip()))


if __name__ == "__main__":
    sys.exit(main())
