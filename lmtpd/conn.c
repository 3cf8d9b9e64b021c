/*
 * conn.c - one LMTP connection: bytes from libuv into the protocol engine
 * (shared/lmtp.h), recipient checks and deliveries on the thread pool,
 * loop protection, replies back out. One log line per recipient outcome.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <sodium.h>

#include "deliver.h"
#include "spool.h"
#include "lmtpd.h"
#include "log.h"
#include "util.h"

/* ---- handles and writes ---- */

void
conn_release(struct conn *c)
{
	struct server *srv = c->srv;

	srv->nconn--;
	sbx_lmtp_session_free(&c->s);
	free(c);
	if (srv->stopping && srv->nconn == 0)
		server_idle(srv);
}

static void
on_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	if (--c->handles == 0 && !c->busy)
		conn_release(c);
}

void
conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	uv_timer_stop(&c->idle);
	uv_close((uv_handle_t *)&c->h, on_handle_closed);
	uv_close((uv_handle_t *)&c->idle, on_handle_closed);
}

struct wreq {
	uv_write_t req;
	struct conn *c;
	char data[];
};

static void
on_written(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;

	if (status < 0 && !w->c->closing) {
		sbx_info("%s: write failed: %s", w->c->id, uv_strerror(status));
		conn_close(w->c);
	}
	free(w);
}

void
conn_write(struct conn *c, const char *data, size_t len)
{
	struct wreq *w;
	uv_buf_t b;

	if (c->closing || len == 0)
		return;
	w = sbx_xmalloc(sizeof(*w) + len);
	w->c = c;
	memcpy(w->data, data, len);
	b = uv_buf_init(w->data, (unsigned)len);
	if (uv_write(&w->req, (uv_stream_t *)&c->h, &b, 1, on_written) < 0) {
		free(w);
		conn_close(c);
	}
}

/* ---- reading and the idle timer ---- */

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static __thread char rbuf[65536];

	(void)h;
	(void)suggested;
	*buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void
on_idle(uv_timer_t *t)
{
	struct conn *c = t->data;
	char line[400];

	if (c->busy)
		return;
	snprintf(line, sizeof(line), "421 4.4.2 %s Idle timeout, closing connection\r\n", c->srv->hostname);
	sbx_info("%s: idle timeout", c->id);
	conn_write(c, line, strlen(line));
	conn_close(c);
}

static void
on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct conn *c = st->data;

	if (n < 0) {
		if (n != UV_EOF)
			sbx_info("%s: read failed: %s", c->id, uv_strerror((int)n));
		conn_close(c);
		return;
	}
	if (n == 0)
		return;
	uv_timer_again(&c->idle);
	sbx_lmtp_feed(c->s, buf->base, (size_t)n);
	conn_pump(c);
}

static void
reading(struct conn *c, int on)
{
	if (c->closing || c->reading == on)
		return;
	c->reading = on;
	if (on)
		uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read);
	else
		uv_read_stop((uv_stream_t *)&c->h);
}

/* ---- recipients ---- */

struct rcpt_work {
	uv_work_t req;
	struct conn *c;
	char *local;
	int webhook;
	int accepted;
	char reply[160];
};

static void
rcpt_lookup(uv_work_t *req)
{
	struct rcpt_work *w = req->data;
	struct server *srv = w->c->srv;
	char *err = NULL;
	int rc;

	pthread_mutex_lock(&srv->dir_lock);
	if (w->webhook) {
		struct sbx_target t;

		memset(&t, 0, sizeof(t));
		rc = sbx_dir_webhook_get(srv->dir, w->local, &t, &err);
		sbx_target_free(&t);
	} else {
		struct sbx_dir_mailbox m;

		rc = sbx_dir_mailbox_find(srv->dir, w->local, &m, &err);
		if (rc == 0)
			sbx_dir_mailbox_clear(&m);
	}
	pthread_mutex_unlock(&srv->dir_lock);
	if (rc == 0) {
		w->accepted = 1;
		snprintf(w->reply, sizeof(w->reply), "250 2.1.5 Ok");
	} else if (err != NULL && strncmp(err, "no such", 7) == 0) {
		snprintf(w->reply, sizeof(w->reply), "550 5.1.1 No such %s", w->webhook ? "webhook" : "mailbox");
	} else {
		sbx_error("directory lookup failed: %s", err ? err : "?");
		snprintf(w->reply, sizeof(w->reply), "451 4.3.0 Directory lookup failed, try again later");
	}
	free(err);
}

static void
rcpt_done(uv_work_t *req, int status)
{
	struct rcpt_work *w = req->data;
	struct conn *c = w->c;

	c->busy = 0;
	if (c->closing) {
		if (c->handles == 0)
			conn_release(c);
	} else {
		sbx_lmtp_rcpt_reply(c->s, w->accepted, status == 0 ? w->reply : NULL);
		conn_pump(c);
	}
	free(w->local);
	free(w);
}

/* Judge one RCPT: only our internal domains, and only the kind this
 * listener serves; the id is looked up on the thread pool. */
static void
judge_rcpt(struct conn *c, const struct sbx_lmtp_rcpt *r)
{
	struct server *srv = c->srv;
	int is_mailbox = strcasecmp(r->domain, srv->mailbox_domain) == 0;
	int is_webhook = strcasecmp(r->domain, srv->webhook_domain) == 0;
	struct rcpt_work *w;
	char buf[200];

	if (!is_mailbox && !is_webhook) {
		sbx_info("%s: rcpt=%s: not an internal address: deferred", c->id,
			 sbx_log_printable(buf, sizeof(buf), r->addr, 120));
		sbx_lmtp_rcpt_reply(c->s, 0, "451 4.3.0 not routed by sealbox-milter");
		return;
	}
	if ((is_mailbox && c->kind != LISTEN_MAILBOX) || (is_webhook && c->kind != LISTEN_WEBHOOK)) {
		/* a transport_maps mistake: defer, so nothing bounces */
		sbx_warn("%s: rcpt=%s: %s recipient on the %s listener (check transport_maps)", c->id,
			 sbx_log_printable(buf, sizeof(buf), r->addr, 120),
			 is_mailbox ? "mailbox" : "webhook", c->kind == LISTEN_MAILBOX ? "mailbox" : "webhook");
		sbx_lmtp_rcpt_reply(c->s, 0, is_mailbox ?
				    "451 4.3.5 mailbox recipient on the webhook listener" :
				    "451 4.3.5 webhook recipient on the mailbox listener");
		return;
	}
	if (!sbx_is_id(r->local)) {
		sbx_lmtp_rcpt_reply(c->s, 0, "550 5.1.1 Malformed internal address");
		return;
	}
	w = sbx_xcalloc(1, sizeof(*w));
	w->req.data = w;
	w->c = c;
	w->local = sbx_xstrdup(r->local);
	w->webhook = is_webhook;
	c->busy = 1;
	if (uv_queue_work(srv->loop, &w->req, rcpt_lookup, rcpt_done) < 0) {
		c->busy = 0;
		free(w->local);
		free(w);
		sbx_lmtp_rcpt_reply(c->s, 0, "451 4.3.0 Internal error");
	}
}

/* ---- mailbox delivery ---- */

struct msg_work;

/* One recipient's delivery: its own job on the thread pool, so that the
 * recipients of concurrent messages (and of one message) seal and sync in
 * parallel; deliveries to one mailbox take turns on its journal lock. */
struct one {
	uv_work_t work;
	struct msg_work *w;
	struct sbx_deliver_req req;
	char mailbox_id[SBX_ID_HEX];
	char *rcpt, *orcpt, *received;
	char delivery_id[SBX_ID_HEX];
	enum sbx_deliver_status st;
	uint64_t bytes;
	char *error;
};

struct msg_work {
	struct conn *c;
	size_t pending;               /* recipients still on the thread pool */
	int failed;                   /* a job could not be queued */
	char *msg;
	size_t len;
	char *mail_from, *queue_id;
	/* the retry key: Postfix's short queue ids repeat, so a queue id
	 * alone could make a new message look like a retry and lose it;
	 * "<queue id>/<BLAKE2b-128 of the message>" matches only Postfix
	 * sending the same queue file again */
	char *dedup_key;
	struct one *v;
	size_t n;
	uint64_t t0;
};

static void
one_run(uv_work_t *req)
{
	struct one *one = req->data;
	struct server *srv = one->w->c->srv;
	struct sbx_dir_mailbox mb;
	struct sbx_dir_delivery rec;
	char *err = NULL;

	pthread_mutex_lock(&srv->dir_lock);
	one->st = sbx_deliver_check(srv->dir, &one->req, &mb, one->delivery_id, &one->error);
	pthread_mutex_unlock(&srv->dir_lock);
	if (one->st != SBX_DELIVER_OK)
		return;
	one->st = sbx_deliver_write(srv->state_dir, &one->req, &mb, one->delivery_id, &one->bytes,
				    &one->error);
	sbx_dir_mailbox_clear(&mb);
	if (one->st != SBX_DELIVER_OK)
		return;
	/* usage and the dedup record; if this fails the record is in the
	 * journal but not answered 250: Postfix retries, and the mailbox may
	 * get the message twice, never zero times */
	memset(&rec, 0, sizeof(rec));
	rec.mailbox_id = one->mailbox_id;
	rec.queue_id = one->w->dedup_key;
	rec.rcpt = one->rcpt;
	rec.delivery_id = one->delivery_id;
	rec.bytes = one->bytes;
	pthread_mutex_lock(&srv->dir_lock);
	if (sbx_dir_deliveries_record(srv->dir, &rec, 1, time(NULL), &err) < 0) {
		one->st = SBX_DELIVER_TEMPFAIL;
		one->error = sbx_xasprintf("recording delivery: %s", err);
		free(err);
	}
	pthread_mutex_unlock(&srv->dir_lock);
}

static void deliver_done(struct msg_work *w, int status);

static void
one_done(uv_work_t *req, int status)
{
	struct one *one = req->data;
	struct msg_work *w = one->w;

	if (status != 0) {
		one->st = SBX_DELIVER_TEMPFAIL;
		if (one->error == NULL)
			one->error = sbx_xstrdup("delivery cancelled");
	}
	if (--w->pending == 0)
		deliver_done(w, 0);
}

static void
deliver_done(struct msg_work *w, int status)
{
	struct conn *c = w->c;
	char line[400], e[200], o[200], q[80], rc[200];
	size_t i;

	c->busy = 0;
	for (i = 0; i < w->n; i++) {
		struct one *one = &w->v[i];

		if (status != 0) {
			one->st = SBX_DELIVER_TEMPFAIL;
			if (one->error == NULL)
				one->error = sbx_xstrdup("delivery cancelled");
		}
		switch (one->st) {
		case SBX_DELIVER_OK:
			snprintf(line, sizeof(line), "250 2.0.0 <%s> %s Saved to the sealed spool",
				 one->rcpt, one->delivery_id);
			break;
		case SBX_DELIVER_DUPLICATE:
			snprintf(line, sizeof(line), "250 2.0.0 <%s> %s Already delivered", one->rcpt,
				 one->delivery_id);
			break;
		case SBX_DELIVER_UNKNOWN:
			snprintf(line, sizeof(line), "550 5.1.1 <%s> No such mailbox", one->rcpt);
			break;
		case SBX_DELIVER_OVER_QUOTA:
			snprintf(line, sizeof(line), "452 4.2.2 <%s> Mailbox full", one->rcpt);
			break;
		default:
			snprintf(line, sizeof(line), "451 4.3.0 <%s> Temporary failure, try again later",
				 one->rcpt);
			break;
		}
		sbx_info("%s: queue=%s rcpt=%s orcpt=%s delivery=%s size=%zu status=%.9s%s%s (%.1f ms)",
			 c->id, sbx_log_printable(q, sizeof(q), w->queue_id ? w->queue_id : "-", 40),
			 sbx_log_printable(rc, sizeof(rc), one->rcpt, 120),
			 sbx_log_printable(o, sizeof(o), one->orcpt ? one->orcpt : "-", 120),
			 one->delivery_id[0] ? one->delivery_id : "-", w->len, line,
			 one->error ? ": " : "",
			 one->error ? sbx_log_printable(e, sizeof(e), one->error, 160) : "",
			 (double)(sbx_now_us() - w->t0) / 1000.0);
		if (!c->closing)
			sbx_lmtp_data_reply(c->s, i, line);
		free(one->rcpt);
		free(one->orcpt);
		free(one->received);
		free(one->error);
	}
	sbx_wipe_free(w->msg, w->len);
	free(w->mail_from);
	free(w->queue_id);
	free(w->dedup_key);
	free(w->v);
	free(w);
	if (c->closing) {
		if (c->handles == 0)
			conn_release(c);
	} else {
		conn_pump(c);
	}
}

/* "Received:" value: where Postfix got it (XFORWARD), us, the id. */
static char *
received_value(struct conn *c, const char *delivery_id, const char *orcpt)
{
	const struct sbx_lmtp_xforward *x = sbx_lmtp_xforward(c->s);
	char date[64], helo[100], name[100], addr[64], to[200];
	struct tm tm;
	time_t now = time(NULL);
	struct sbx_buf b = { 0 };

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (x != NULL && (x->helo != NULL || x->name != NULL || x->addr != NULL)) {
		sbx_buf_appendf(&b, "from %s (%s [%s]) ",
				sbx_log_printable(helo, sizeof(helo), x->helo ? x->helo : "unknown", 80),
				sbx_log_printable(name, sizeof(name), x->name ? x->name : "unknown", 80),
				sbx_log_printable(addr, sizeof(addr), x->addr ? x->addr : "unknown", 50));
	}
	sbx_buf_appendf(&b, "by %s (sealbox-lmtpd) with LMTP id %s", c->srv->hostname, delivery_id);
	if (orcpt != NULL)
		sbx_buf_appendf(&b, " for <%s>", sbx_log_printable(to, sizeof(to), orcpt, 180));
	sbx_buf_appendf(&b, "; %s", date);
	sbx_buf_append(&b, "", 1);
	return b.data;
}

static void
deliver_message(struct conn *c, const struct sbx_lmtp_event *ev)
{
	const struct sbx_lmtp_mail *mail = sbx_lmtp_mail(c->s);
	const struct sbx_lmtp_xforward *x = sbx_lmtp_xforward(c->s);
	struct msg_work *w = sbx_xcalloc(1, sizeof(*w));
	time_t now = time(NULL);
	size_t i;

	w->c = c;
	w->t0 = sbx_now_us();
	w->msg = sbx_xmalloc(ev->msg_len + 1);
	if (ev->msg_len)
		memcpy(w->msg, ev->msg, ev->msg_len);
	w->len = ev->msg_len;
	w->mail_from = sbx_xstrdup(mail != NULL ? mail->from : "");
	w->queue_id = x != NULL && x->ident != NULL ? sbx_xstrdup(x->ident) : NULL;
	if (w->queue_id != NULL) {
		unsigned char h[16];
		char hex[33];

		crypto_generichash(h, sizeof(h), (const unsigned char *)ev->msg, ev->msg_len, NULL, 0);
		sbx_hex(hex, h, sizeof(h));
		w->dedup_key = sbx_xasprintf("%s/%s", w->queue_id, hex);
	}
	w->n = ev->nrcpts;
	w->v = sbx_xcalloc(w->n + 1, sizeof(*w->v));
	for (i = 0; i < w->n; i++) {
		const struct sbx_lmtp_rcpt *r = ev->rcpts[i];
		struct one *one = &w->v[i];

		sbx_random_id(one->delivery_id);
		one->rcpt = sbx_xstrdup(r->addr);
		one->orcpt = r->orcpt != NULL ? sbx_xstrdup(r->orcpt) : NULL;
		one->received = received_value(c, one->delivery_id, r->orcpt);
		snprintf(one->mailbox_id, sizeof(one->mailbox_id), "%s", r->local);
		one->req.mailbox_id = one->mailbox_id;
		one->req.rcpt = one->rcpt;
		one->req.orcpt = one->orcpt;
		one->req.mail_from = w->mail_from;
		one->req.queue_id = w->dedup_key;
		one->req.received = one->received;
		one->req.msg = w->msg;
		one->req.len = w->len;
		one->req.arrival = now;
	}
	c->busy = 1;
	w->pending = 1;   /* held until every job is queued */
	for (i = 0; i < w->n; i++) {
		struct one *one = &w->v[i];

		one->w = w;
		one->work.data = one;
		w->pending++;
		if (uv_queue_work(c->srv->loop, &one->work, one_run, one_done) < 0) {
			w->pending--;
			one->st = SBX_DELIVER_TEMPFAIL;
			one->error = sbx_xstrdup("cannot queue the delivery");
		}
	}
	if (--w->pending == 0)
		deliver_done(w, 0);
}

/* ---- loop protection ---- */

/*
 * More than max_hops Received: and Delivered-To: fields in the header
 * block: a mail loop (RFC 5321 6.3). Every recipient of the message is
 * refused with 554 5.4.6, on either listener, before anything is looked
 * up, stored or POSTed; Postfix bounces it. The count is one pass over the
 * header block (sbx_deliver_hops), done here on the loop thread. Returns
 * 1 when the message was refused.
 */
static int
refuse_loop(struct conn *c, const struct sbx_lmtp_event *ev)
{
	const struct sbx_lmtp_xforward *x = sbx_lmtp_xforward(c->s);
	unsigned hops = sbx_deliver_hops(ev->msg, ev->msg_len);
	char line[400], q[80], a[200], o[200];
	size_t i;

	if (hops <= c->srv->max_hops)
		return 0;
	for (i = 0; i < ev->nrcpts; i++) {
		const struct sbx_lmtp_rcpt *r = ev->rcpts[i];

		snprintf(line, sizeof(line), "554 5.4.6 <%s> Too many hops (%u Received/Delivered-To "
			 "header lines): mail forwarding loop", r->addr, hops);
		sbx_info("%s: queue=%s rcpt=%s orcpt=%s size=%zu status=554 5.4.6: too many hops "
			 "(%u Received/Delivered-To header lines, max_hops %u)", c->id,
			 sbx_log_printable(q, sizeof(q), x != NULL && x->ident ? x->ident : "-", 40),
			 sbx_log_printable(a, sizeof(a), r->addr, 120),
			 sbx_log_printable(o, sizeof(o), r->orcpt ? r->orcpt : "-", 120), ev->msg_len,
			 hops, c->srv->max_hops);
		sbx_lmtp_data_reply(c->s, i, line);
	}
	return 1;
}

/* ---- the event loop of one connection ---- */

void
conn_pump(struct conn *c)
{
	struct sbx_lmtp_event ev;

	while (!c->closing && !c->busy) {
		switch (sbx_lmtp_next(c->s, &ev)) {
		case SBX_LMTP_NONE:
			reading(c, 1);
			return;
		case SBX_LMTP_WAIT:
			reading(c, 0);
			return;
		case SBX_LMTP_REPLY:
			conn_write(c, ev.reply, ev.reply_len);
			break;
		case SBX_LMTP_RCPT:
			reading(c, 0);
			judge_rcpt(c, ev.rcpt);
			break;
		case SBX_LMTP_MESSAGE:
			reading(c, 0);
			if (refuse_loop(c, &ev))
				break;
			if (c->kind == LISTEN_WEBHOOK)
				webhook_message(c, &ev);
			else
				deliver_message(c, &ev);
			break;
		case SBX_LMTP_CLOSE:
			conn_write(c, ev.reply, ev.reply_len);
			conn_close(c);
			return;
		}
	}
}

void
conn_accept(uv_stream_t *server, int status)
{
	struct server *srv = server->data;
	enum listener_kind kind = LISTEN_MAILBOX;
	struct conn *c;
	size_t i;
	int rc;

	if (status < 0) {
		sbx_warn("accept: %s", uv_strerror(status));
		return;
	}
	for (i = 0; i < srv->nlisteners; i++)
		if (srv->listeners[i] == server)
			kind = srv->kinds[i];
	c = sbx_xcalloc(1, sizeof(*c));
	c->srv = srv;
	c->kind = kind;
	srv->nconn++;
	snprintf(c->id, sizeof(c->id), "L%lu", ++srv->conn_seq);
	if (server->type == UV_TCP)
		rc = uv_tcp_init(srv->loop, &c->h.tcp);
	else
		rc = uv_pipe_init(srv->loop, &c->h.pipe, 0);
	if (rc < 0) {
		srv->nconn--;
		free(c);
		return;
	}
	c->h.tcp.data = c;
	c->handles = 1;
	uv_timer_init(srv->loop, &c->idle);
	c->idle.data = c;
	c->handles++;
	if (uv_accept(server, (uv_stream_t *)&c->h) < 0) {
		conn_close(c);
		return;
	}
	if (server->type == UV_TCP) {
		struct sockaddr_storage ss;
		int len = sizeof(ss);
		char ip[64] = "?";

		if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0) {
			if (ss.ss_family == AF_INET)
				uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
			else
				uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
		}
		snprintf(c->peer, sizeof(c->peer), "%s", ip);
	} else {
		snprintf(c->peer, sizeof(c->peer), "unix");
	}
	c->s = sbx_lmtp_session_new(&srv->lim, srv->hostname);
	if (srv->stopping || srv->nconn > srv->max_conn) {
		char line[400];

		snprintf(line, sizeof(line), "421 4.3.2 %s Too many connections, try again later\r\n",
			 srv->hostname);
		sbx_warn("%s: refused: %s", c->id, srv->stopping ? "shutting down" : "too many connections");
		conn_write(c, line, strlen(line));
		conn_close(c);
		return;
	}
	sbx_debug("%s: connect from %s (%s listener)", c->id, c->peer,
		  kind == LISTEN_MAILBOX ? "mailbox" : "webhook");
	uv_timer_start(&c->idle, on_idle, srv->idle_ms, srv->idle_ms);
	conn_write(c, sbx_lmtp_greeting(c->s), strlen(sbx_lmtp_greeting(c->s)));
	conn_pump(c);
}
