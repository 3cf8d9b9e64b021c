/*
 * bench/lmtp.c - LMTP load generator (issue 4). bench/lmtp.py drives it
 * against sealbox-lmtpd and a private Dovecot LMTP in the same invocation;
 * it can also be pointed at any LMTP server by hand.
 *
 * C threads, one connection each, kept open for the whole run (Postfix's
 * lmtp client caches its connections). Each thread takes the next message
 * number from a shared counter and sends one transaction the way Postfix
 * does with PIPELINING: [XFORWARD IDENT=<queue id>] MAIL FROM, R x RCPT TO
 * [ORCPT=rfc822;<alias>], DATA in one write; then, after 354, the message
 * and "."; then it reads the R replies. XFORWARD and ORCPT are sent only when
 * the server's LHLO lists XFORWARD and DSN, SIZE= when it lists SIZE (as
 * Postfix does). Message k goes
 * to the recipients (k*R + j) mod M, j = 0..R-1, of the recipient list.
 *
 * Every reply is checked: 250 for XFORWARD, MAIL and each RCPT, 354 for
 * DATA, 250 for each recipient after the data. Any other reply (or a closed
 * connection) is an error: it is printed, the run stops, and the exit
 * status is 1. The rate counts only complete transactions.
 *
 * A message is S bytes exactly (headers From, To, Subject, Date,
 * Message-ID with the message number, MIME-Version, Content-Type, then
 * lines of pseudo-random words, CRLF, no line starting with ".").
 *
 * Usage: lmtp -a unix:/path|inet:HOST:PORT -f RCPTFILE [-c C] [-n N]
 *             [-t SECONDS] [-r R] [-s BYTES] [-q QUEUE_ID_PREFIX]
 *   -f  one recipient per line: "address [orcpt-alias]"
 *   -n  at least N messages (default 2000); -t: and at least this many
 *       seconds (default 0): the run ends when both are reached
 * Prints one line of key=value pairs: msgs rcpts secs msgs_per_s
 * lat_p50_ms lat_p90_ms lat_p99_ms lat_max_ms xforward dsn errors.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#define MAX_CONN  64
#define MAX_RCPTS 100

static const char *addr_spec;
static char **rcpt_addr, **rcpt_orcpt;
static size_t nrcpt_list;
static unsigned nconn = 4, nr = 1;
static uint64_t nmsg = 2000;
static double min_secs;
static size_t msg_size = 4096;
static const char *qid_prefix = "BENCH";

static atomic_uint_fast64_t next_msg;
static atomic_int stop_all;
static atomic_int nerrors;
static double t_start;
static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;

struct worker {
	pthread_t th;
	unsigned idx;
	int fd;
	char rbuf[16384];
	size_t rlen, rpos;
	int xforward, dsn, pipelining, size;
	uint64_t done;
	double *lat; /* ms per transaction */
	size_t nlat, caplat;
	char *msg; /* this thread's message buffer, msg_size + ".\r\n" */
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "lmtp: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static void
fail(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&err_lock);
	if (atomic_fetch_add(&nerrors, 1) < 20) {
		va_start(ap, fmt);
		fprintf(stderr, "lmtp: connection %u: ", w->idx);
		vfprintf(stderr, fmt, ap);
		fprintf(stderr, "\n");
		va_end(ap);
	}
	pthread_mutex_unlock(&err_lock);
	atomic_store(&stop_all, 1);
}

static int
connect_to(const char *spec)
{
	int fd;

	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un sun;

		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		if (strlen(spec + 5) >= sizeof(sun.sun_path))
			die("socket path too long: %s", spec + 5);
		strcpy(sun.sun_path, spec + 5);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
			die("connect %s: %s", spec, strerror(errno));
		return fd;
	}
	if (strncmp(spec, "inet:", 5) == 0) {
		char host[256], *colon;
		struct addrinfo hints, *res;
		int one = 1, rc;

		snprintf(host, sizeof(host), "%s", spec + 5);
		colon = strrchr(host, ':');
		if (colon == NULL)
			die("inet:HOST:PORT expected: %s", spec);
		*colon = '\0';
		memset(&hints, 0, sizeof(hints));
		hints.ai_socktype = SOCK_STREAM;
		if ((rc = getaddrinfo(host, colon + 1, &hints, &res)) != 0)
			die("%s: %s", spec, gai_strerror(rc));
		fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0)
			die("connect %s: %s", spec, strerror(errno));
		freeaddrinfo(res);
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		return fd;
	}
	die("address must be unix:/path or inet:host:port: %s", spec);
	return -1;
}

static int
send_all(struct worker *w, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(w->fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail(w, "send: %s", strerror(errno));
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One line (CRLF stripped) into line[]; -1 on EOF or error. */
static int
read_line(struct worker *w, char *line, size_t cap)
{
	size_t n = 0;

	for (;;) {
		while (w->rpos < w->rlen) {
			char ch = w->rbuf[w->rpos++];

			if (ch == '\n') {
				if (n > 0 && line[n - 1] == '\r')
					n--;
				line[n] = '\0';
				return 0;
			}
			if (n + 1 < cap)
				line[n++] = ch;
		}
		{
			ssize_t r = recv(w->fd, w->rbuf, sizeof(w->rbuf), 0);

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				line[n] = '\0';
				return -1;
			}
			w->rlen = (size_t)r;
			w->rpos = 0;
		}
	}
}

/* One reply, multi-line ones included; returns its code, -1 on EOF.
 * The last line goes to last[], each line to the callback if given. */
static int
read_reply(struct worker *w, char *last, size_t cap, void (*each)(struct worker *, const char *))
{
	for (;;) {
		if (read_line(w, last, cap) < 0)
			return -1;
		if (strlen(last) < 3)
			return 0;
		if (each != NULL)
			each(w, last);
		if (last[3] != '-')
			return atoi(last);
	}
}

static void
lhlo_cap(struct worker *w, const char *line)
{
	const char *kw = line + 4;

	if (strncasecmp(kw, "XFORWARD", 8) == 0)
		w->xforward = 1;
	else if (strcasecmp(kw, "DSN") == 0)
		w->dsn = 1;
	else if (strcasecmp(kw, "PIPELINING") == 0)
		w->pipelining = 1;
	else if (strncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == '\0' || kw[4] == ' '))
		w->size = 1;
}

/* xtext (RFC 3461) */
static size_t
xtext(char *out, size_t cap, const char *s)
{
	size_t n = 0;

	for (; *s && n + 4 < cap; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch < 33 || ch > 126 || ch == '+' || ch == '=')
			n += (size_t)snprintf(out + n, cap - n, "+%02X", ch);
		else
			out[n++] = (char)ch;
	}
	out[n] = '\0';
	return n;
}

/* ---- message text ---- */

static uint64_t
rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static const char *const words[] = {
	"the", "quarterly", "report", "attached", "meeting", "please", "review", "numbers",
	"budget", "schedule", "project", "update", "thanks", "regards", "tomorrow", "deadline",
	"invoice", "customer", "delivery", "server", "storage", "encrypted", "mailbox", "postfix",
	"release", "notes", "and", "of", "to", "in", "for", "with", "on", "we", "will", "is",
};

/* Fill w->msg with message k: exactly msg_size bytes, then ".\r\n". */
static size_t
make_message(struct worker *w, uint64_t k)
{
	char *m = w->msg;
	size_t n, col, limit;
	uint64_t s = 0x9E3779B97F4A7C15ull ^ (k * 0xBF58476D1CE4E5B9ull) ^ 1;

	n = (size_t)snprintf(m, msg_size + 1,
			     "From: Bench Sender <sender@bench.example>\r\n"
			     "To: <rcpt@bench.example>\r\n"
			     "Subject: load test message %llu\r\n"
			     "Date: Wed, 25 Nov 2026 12:00:00 +0000\r\n"
			     "Message-ID: <bench.%s.%llu@bench.example>\r\n"
			     "MIME-Version: 1.0\r\n"
			     "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
			     (unsigned long long)k, qid_prefix, (unsigned long long)k);
	if (n >= msg_size)
		die("message size %zu is smaller than the headers (%zu)", msg_size, n);
	col = 0;
	limit = msg_size - 2; /* the last CRLF */
	while (n < limit) {
		const char *wd = words[rng_next(&s) % (sizeof(words) / sizeof(words[0]))];
		size_t len = strlen(wd);

		if (col > 0 && col + 1 + len > 72) {
			if (n + 2 > limit)
				break;
			m[n++] = '\r';
			m[n++] = '\n';
			col = 0;
		} else if (col > 0) {
			m[n++] = ' ';
			col++;
		}
		while (len-- > 0 && n < limit) {
			m[n++] = *wd++;
			col++;
		}
	}
	while (n < limit)
		m[n++] = 'x';
	m[n++] = '\r';
	m[n++] = '\n';
	memcpy(m + n, ".\r\n", 3);
	return n + 3;
}

/* ---- one connection ---- */

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void *
run_worker(void *arg)
{
	struct worker *w = arg;
	char line[4096], *cmd;
	size_t cmd_cap = 512 + (size_t)nr * 800;
	int code;

	cmd = malloc(cmd_cap);
	w->msg = malloc(msg_size + 8);
	if (cmd == NULL || w->msg == NULL)
		die("out of memory");
	w->fd = connect_to(addr_spec);
	if ((code = read_reply(w, line, sizeof(line), NULL)) != 220) {
		fail(w, "greeting: %s", line);
		goto out;
	}
	if (send_all(w, "LHLO bench.example\r\n", 20) < 0)
		goto out;
	if ((code = read_reply(w, line, sizeof(line), lhlo_cap)) != 250) {
		fail(w, "LHLO: %s", line);
		goto out;
	}
	while (!atomic_load(&stop_all)) {
		uint64_t k = atomic_fetch_add(&next_msg, 1);
		size_t len = 0, mlen;
		unsigned j, nreplies = 0;
		double t0;

		if (k >= nmsg && now_s() - t_start >= min_secs)
			break;
		mlen = make_message(w, k);
		t0 = now_s();
		if (w->xforward) {
			len += (size_t)snprintf(cmd + len, cmd_cap - len,
						"XFORWARD NAME=client.bench.example ADDR=192.0.2.10 "
						"HELO=client.bench.example IDENT=%s%llX\r\n",
						qid_prefix, (unsigned long long)k);
			nreplies++;
		}
		len += (size_t)snprintf(cmd + len, cmd_cap - len, "MAIL FROM:<sender@bench.example>");
		if (w->size)
			len += (size_t)snprintf(cmd + len, cmd_cap - len, " SIZE=%zu", msg_size);
		len += (size_t)snprintf(cmd + len, cmd_cap - len, "\r\n");
		nreplies++;
		for (j = 0; j < nr; j++) {
			size_t r = (size_t)((k * nr + j) % nrcpt_list);

			len += (size_t)snprintf(cmd + len, cmd_cap - len, "RCPT TO:<%s>", rcpt_addr[r]);
			if (w->dsn && rcpt_orcpt[r] != NULL) {
				char x[600];

				xtext(x, sizeof(x), rcpt_orcpt[r]);
				len += (size_t)snprintf(cmd + len, cmd_cap - len, " ORCPT=rfc822;%s", x);
			}
			len += (size_t)snprintf(cmd + len, cmd_cap - len, "\r\n");
			nreplies++;
		}
		len += (size_t)snprintf(cmd + len, cmd_cap - len, "DATA\r\n");
		nreplies++;
		if (w->pipelining) {
			if (send_all(w, cmd, len) < 0)
				break;
			for (j = 0; j < nreplies; j++) {
				int want = j + 1 == nreplies ? 354 : 250;

				code = read_reply(w, line, sizeof(line), NULL);
				if (code != want) {
					fail(w, "message %llu: reply %u of %u: %s", (unsigned long long)k, j + 1,
					     nreplies, code < 0 ? "connection closed" : line);
					goto out;
				}
			}
		} else {
			char *p = cmd;

			for (j = 0; j < nreplies; j++) {
				char *e = strstr(p, "\r\n") + 2;
				int want = j + 1 == nreplies ? 354 : 250;

				if (send_all(w, p, (size_t)(e - p)) < 0)
					goto out;
				code = read_reply(w, line, sizeof(line), NULL);
				if (code != want) {
					fail(w, "message %llu: %.*s: %s", (unsigned long long)k, (int)(e - p - 2), p,
					     code < 0 ? "connection closed" : line);
					goto out;
				}
				p = e;
			}
		}
		if (send_all(w, w->msg, mlen) < 0)
			break;
		for (j = 0; j < nr; j++) {
			code = read_reply(w, line, sizeof(line), NULL);
			if (code != 250) {
				fail(w, "message %llu: recipient %u after DATA: %s", (unsigned long long)k, j + 1,
				     code < 0 ? "connection closed" : line);
				goto out;
			}
		}
		w->done++;
		if (w->nlat == w->caplat) {
			w->caplat = w->caplat ? w->caplat * 2 : 4096;
			w->lat = realloc(w->lat, w->caplat * sizeof(double));
			if (w->lat == NULL)
				die("out of memory");
		}
		w->lat[w->nlat++] = (now_s() - t0) * 1000.0;
	}
	if (!atomic_load(&stop_all)) {
		if (send_all(w, "QUIT\r\n", 6) == 0 &&
		    (code = read_reply(w, line, sizeof(line), NULL)) != 221)
			fail(w, "QUIT: %s", code < 0 ? "connection closed" : line);
	}
out:
	close(w->fd);
	free(cmd);
	free(w->msg);
	return NULL;
}

static void
load_rcpts(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	size_t cap = 0;

	if (f == NULL)
		die("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL) {
		char *a = strtok(line, " \t\r\n"), *o = strtok(NULL, " \t\r\n");

		if (a == NULL || a[0] == '#')
			continue;
		if (nrcpt_list == cap) {
			cap = cap ? cap * 2 : 16;
			rcpt_addr = realloc(rcpt_addr, cap * sizeof(char *));
			rcpt_orcpt = realloc(rcpt_orcpt, cap * sizeof(char *));
			if (rcpt_addr == NULL || rcpt_orcpt == NULL)
				die("out of memory");
		}
		rcpt_addr[nrcpt_list] = strdup(a);
		rcpt_orcpt[nrcpt_list++] = o != NULL ? strdup(o) : NULL;
	}
	fclose(f);
	if (nrcpt_list == 0)
		die("%s: no recipients", path);
}

static uint64_t
num(const char *s, const char *opt)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s)
		die("%s: bad number %s", opt, s);
	if (*end == 'k' || *end == 'K')
		v *= 1024, end++;
	if (*end != '\0')
		die("%s: bad number %s", opt, s);
	return v;
}

static void
usage(void)
{
	fprintf(stderr, "usage: lmtp -a unix:/path|inet:HOST:PORT -f RCPTFILE [-c CONNECTIONS] [-n MESSAGES]\n"
			"            [-t MIN_SECONDS] [-r RCPTS_PER_MSG] [-s BYTES] [-q QUEUE_ID_PREFIX]\n");
	exit(64);
}

int
main(int argc, char **argv)
{
	struct worker *ws;
	const char *rcpt_file = NULL;
	double secs, *all;
	uint64_t done = 0;
	size_t nall = 0, i;
	int opt, xf = 0, dsn = 0;

	while ((opt = getopt(argc, argv, "a:f:c:n:t:r:s:q:h")) != -1) {
		switch (opt) {
		case 'a': addr_spec = optarg; break;
		case 'f': rcpt_file = optarg; break;
		case 'c': nconn = (unsigned)num(optarg, "-c"); break;
		case 'n': nmsg = num(optarg, "-n"); break;
		case 't': min_secs = atof(optarg); break;
		case 'r': nr = (unsigned)num(optarg, "-r"); break;
		case 's': msg_size = (size_t)num(optarg, "-s"); break;
		case 'q': qid_prefix = optarg; break;
		default: usage();
		}
	}
	if (addr_spec == NULL || rcpt_file == NULL || optind != argc)
		usage();
	if (nconn < 1 || nconn > MAX_CONN || nr < 1 || nr > MAX_RCPTS || msg_size < 512)
		die("need 1 <= C <= %d, 1 <= R <= %d, S >= 512", MAX_CONN, MAX_RCPTS);
	load_rcpts(rcpt_file);
	if (nr > nrcpt_list)
		die("R=%u but only %zu recipients in %s", nr, nrcpt_list, rcpt_file);
	ws = calloc(nconn, sizeof(*ws));
	if (ws == NULL)
		die("out of memory");
	t_start = now_s();
	for (i = 0; i < nconn; i++) {
		ws[i].idx = (unsigned)i;
		if (pthread_create(&ws[i].th, NULL, run_worker, &ws[i]) != 0)
			die("pthread_create failed");
	}
	for (i = 0; i < nconn; i++)
		pthread_join(ws[i].th, NULL);
	secs = now_s() - t_start;
	all = malloc(sizeof(double) * (1 + nmsg * 4));
	for (i = 0; i < nconn; i++) {
		done += ws[i].done;
		xf |= ws[i].xforward;
		dsn |= ws[i].dsn;
		all = realloc(all, sizeof(double) * (nall + ws[i].nlat + 1));
		memcpy(all + nall, ws[i].lat, ws[i].nlat * sizeof(double));
		nall += ws[i].nlat;
		free(ws[i].lat);
	}
	qsort(all, nall, sizeof(double), cmp_double);
#define PCT(p) (nall ? all[(size_t)((double)(nall - 1) * (p))] : 0.0)
	printf("msgs=%llu rcpts=%llu secs=%.3f msgs_per_s=%.1f lat_p50_ms=%.2f lat_p90_ms=%.2f "
	       "lat_p99_ms=%.2f lat_max_ms=%.2f xforward=%d dsn=%d errors=%d\n",
	       (unsigned long long)done, (unsigned long long)done * nr, secs, (double)done / secs,
	       PCT(0.5), PCT(0.9), PCT(0.99), nall ? all[nall - 1] : 0.0, xf, dsn, atomic_load(&nerrors));
	free(all);
	free(ws);
	return atomic_load(&nerrors) ? 1 : 0;
}
