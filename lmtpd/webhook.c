/*
 * webhook.c - the webhook listener's deliveries: recipients grouped by
 * target (URL, options, secret) so each target gets one POST however many
 * aliases map to it; lookups and the JSON payload on the thread pool; the
 * POSTs on the loop (shared/webhook.h); one LMTP reply per recipient from
 * its POST's outcome.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lmtpd.h"
#include "log.h"
#include "util.h"
#include "webhook.h"

struct webhooks {
	struct sbx_webhook_client *client;
};

/* One POST: the recipients (indexes into the message's) it answers. */
struct post {
	struct hook_work *w;
	char *url;             /* options removed */
	unsigned char *secret;
	size_t secret_len;
	int attachments, raw;
	size_t *idx;
	size_t nidx;
	char **aliases;        /* ORCPT (or the internal address) of each */
	char *body;
	size_t body_len;
	char sig[65];
	char reply[SBX_WEBHOOK_REPLY_MAX];  /* set before the POST when it cannot be made */
	long status;
	uint64_t t0;
};

struct hook_work {
	uv_work_t req;
	struct conn *c;
	char *msg;
	size_t len;
	char *sender, *queue_id, *addr, *name, *helo;
	int64_t arrival_ms;
	size_t n;              /* recipients */
	char **ids;            /* webhook id per recipient */
	char **rcpts, **orcpts;
	struct post *posts;
	size_t nposts;
	size_t pending;        /* POSTs not yet answered */
};

int
webhooks_init(struct server *srv, char **error_r)
{
	srv->webhooks = sbx_xcalloc(1, sizeof(*srv->webhooks));
	srv->webhooks->client = sbx_webhook_client_new(srv->loop, NULL, error_r);
	return srv->webhooks->client != NULL ? 0 : -1;
}

void
webhooks_stop(struct server *srv)
{
	if (srv->webhooks != NULL && srv->webhooks->client != NULL)
		sbx_webhook_client_close(&srv->webhooks->client);
}

void
webhooks_free(struct server *srv)
{
	if (srv->webhooks == NULL)
		return;
	if (srv->webhooks->client != NULL) {
		sbx_webhook_client_close(&srv->webhooks->client);
		if (srv->loop != NULL)
			uv_run(srv->loop, UV_RUN_DEFAULT);
	}
	free(srv->webhooks);
	srv->webhooks = NULL;
}

static void
work_free(struct hook_work *w)
{
	size_t i, j;

	for (i = 0; i < w->nposts; i++) {
		struct post *p = &w->posts[i];

		free(p->url);
		sbx_wipe_free(p->secret, p->secret_len);
		free(p->idx);
		for (j = 0; j < p->nidx; j++)
			free(p->aliases[j]);
		free(p->aliases);
		sbx_wipe_free(p->body, p->body_len);
	}
	free(w->posts);
	for (i = 0; i < w->n; i++) {
		free(w->ids[i]);
		free(w->rcpts[i]);
		free(w->orcpts[i]);
	}
	free(w->ids);
	free(w->rcpts);
	free(w->orcpts);
	sbx_wipe_free(w->msg, w->len);
	free(w->sender);
	free(w->queue_id);
	free(w->addr);
	free(w->name);
	free(w->helo);
	free(w);
}

/* Thread pool: look the webhooks up, group, build and sign the payloads. */
static void
prepare(uv_work_t *req)
{
	struct hook_work *w = req->data;
	struct server *srv = w->c->srv;
	size_t i, k;

	w->posts = sbx_xcalloc(w->n + 1, sizeof(*w->posts));
	for (i = 0; i < w->n; i++) {
		struct sbx_target t;
		char *err = NULL, *url = NULL;
		int att = 1, raw = 1, rc;
		struct post *p = NULL;

		memset(&t, 0, sizeof(t));
		pthread_mutex_lock(&srv->dir_lock);
		rc = sbx_dir_webhook_get(srv->dir, w->ids[i], &t, &err);
		pthread_mutex_unlock(&srv->dir_lock);
		if (rc == 0 && sbx_webhook_url_options(t.value, &url, &att, &raw, &err) < 0)
			rc = -2;
		for (k = 0; rc == 0 && k < w->nposts; k++) {
			struct post *q = &w->posts[k];

			if (q->url != NULL && strcmp(q->url, url) == 0 && q->attachments == att &&
			    q->raw == raw && q->secret_len == t.secret_len &&
			    memcmp(q->secret, t.secret, t.secret_len) == 0) {
				p = q;
				break;
			}
		}
		if (p == NULL) {
			p = &w->posts[w->nposts++];
			p->w = w;
			p->idx = sbx_xcalloc(w->n + 1, sizeof(*p->idx));
			p->aliases = sbx_xcalloc(w->n + 1, sizeof(*p->aliases));
			if (rc == 0) {
				p->url = url;
				url = NULL;
				p->secret = sbx_xmalloc(t.secret_len + 1);
				memcpy(p->secret, t.secret, t.secret_len);
				p->secret_len = t.secret_len;
				p->attachments = att;
				p->raw = raw;
			} else if (rc == -1 && err != NULL && strncmp(err, "no such", 7) == 0) {
				snprintf(p->reply, sizeof(p->reply), "550 5.1.1 No such webhook");
			} else {
				sbx_error("webhook %s: %s", w->ids[i], err ? err : "lookup failed");
				snprintf(p->reply, sizeof(p->reply), rc == -2 ?
					 "550 5.3.5 Webhook URL misconfigured" :
					 "451 4.3.0 Directory lookup failed, try again later");
			}
		}
		p->idx[p->nidx] = i;
		p->aliases[p->nidx++] = sbx_xstrdup(w->orcpts[i] != NULL ? w->orcpts[i] : w->rcpts[i]);
		free(url);
		free(err);
		sbx_target_free(&t);
	}
	for (k = 0; k < w->nposts; k++) {
		struct post *p = &w->posts[k];
		struct sbx_webhook_meta meta;
		char *err = NULL;

		if (p->url == NULL)
			continue;
		memset(&meta, 0, sizeof(meta));
		meta.recipients = (const char *const *)p->aliases;
		meta.nrecipients = p->nidx;
		meta.remote_address = w->addr;
		meta.remote_name = w->name;
		meta.helo = w->helo;
		meta.sender = w->sender;
		meta.queue_id = w->queue_id;
		meta.arrival_ms = w->arrival_ms;
		if (sbx_webhook_payload(w->msg, w->len, &meta, p->attachments, p->raw, &p->body,
					&p->body_len, &err) < 0) {
			sbx_error("webhook payload: %s", err ? err : "?");
			snprintf(p->reply, sizeof(p->reply), "451 4.3.0 Cannot build the webhook payload");
			free(p->url);
			p->url = NULL;
			free(err);
			continue;
		}
		sbx_webhook_sign(p->secret, p->secret_len, p->body, p->body_len, p->sig);
	}
}

static void post_answered(struct post *p);

static void
on_posted(long status, enum sbx_webhook_outcome outcome, const char *error, void *arg)
{
	struct post *p = arg;

	p->status = status;
	sbx_webhook_reply(status, outcome, p->reply, sizeof(p->reply));
	if (error != NULL && outcome != SBX_WEBHOOK_OK) {
		char e[200];

		sbx_info("%s: webhook POST failed: %s", p->w->c->id,
			 sbx_log_printable(e, sizeof(e), error, 160));
	}
	post_answered(p);
}

/* One POST is answered: reply for its recipients; the last one frees. */
static void
post_answered(struct post *p)
{
	struct hook_work *w = p->w;
	struct conn *c = w->c;
	char q[80], o[200], r[200];
	size_t j;

	for (j = 0; j < p->nidx; j++) {
		sbx_info("%s: queue=%s rcpt=%s orcpt=%s size=%zu http=%ld status=%s (%.1f ms)", c->id,
			 sbx_log_printable(q, sizeof(q), w->queue_id ? w->queue_id : "-", 40),
			 sbx_log_printable(r, sizeof(r), w->rcpts[p->idx[j]], 120),
			 sbx_log_printable(o, sizeof(o), p->aliases[j], 120), w->len, p->status, p->reply,
			 (double)(sbx_now_us() - p->t0) / 1000.0);
		if (!c->closing)
			sbx_lmtp_data_reply(c->s, p->idx[j], p->reply);
	}
	if (--w->pending > 0)
		return;
	c->busy = 0;
	work_free(w);
	if (c->closing) {
		if (c->handles == 0)
			conn_release(c);
	} else {
		conn_pump(c);
	}
}

static void
prepared(uv_work_t *req, int status)
{
	struct hook_work *w = req->data;
	struct server *srv = w->c->srv;
	size_t k;

	w->pending = w->nposts;
	if (w->nposts == 0) {
		w->pending = 1;
		w->posts = sbx_xrealloc(w->posts, sizeof(*w->posts));
		memset(&w->posts[0], 0, sizeof(w->posts[0]));
		w->posts[0].w = w;
		w->nposts = 1;
	}
	for (k = 0; k < w->nposts; k++) {
		struct post *p = &w->posts[k];
		char *err = NULL;

		p->t0 = sbx_now_us();
		if (status != 0 && p->reply[0] == '\0')
			snprintf(p->reply, sizeof(p->reply), "451 4.3.0 Delivery cancelled");
		if (status != 0 || p->url == NULL || srv->webhooks->client == NULL) {
			if (p->reply[0] == '\0')
				snprintf(p->reply, sizeof(p->reply), "451 4.3.0 Webhook client unavailable");
			post_answered(p);
			continue;
		}
		if (sbx_webhook_post(srv->webhooks->client, p->url, p->body, p->body_len, p->sig,
				     (unsigned)srv->webhook_timeout_ms, srv->webhook_ca_file, on_posted, p,
				     &err) < 0) {
			sbx_error("webhook POST: %s", err ? err : "?");
			free(err);
			snprintf(p->reply, sizeof(p->reply), "451 4.3.0 Cannot start the webhook POST");
			post_answered(p);
		}
	}
}

void
webhook_message(struct conn *c, const struct sbx_lmtp_event *ev)
{
	const struct sbx_lmtp_mail *mail = sbx_lmtp_mail(c->s);
	const struct sbx_lmtp_xforward *x = sbx_lmtp_xforward(c->s);
	struct hook_work *w = sbx_xcalloc(1, sizeof(*w));
	size_t i;

	w->req.data = w;
	w->c = c;
	w->msg = sbx_xmalloc(ev->msg_len + 1);
	if (ev->msg_len)
		memcpy(w->msg, ev->msg, ev->msg_len);
	w->len = ev->msg_len;
	w->sender = sbx_xstrdup(mail != NULL ? mail->from : "");
	if (x != NULL) {
		w->queue_id = x->ident ? sbx_xstrdup(x->ident) : NULL;
		w->addr = x->addr ? sbx_xstrdup(x->addr) : NULL;
		w->name = x->name ? sbx_xstrdup(x->name) : NULL;
		w->helo = x->helo ? sbx_xstrdup(x->helo) : NULL;
	}
	w->arrival_ms = (int64_t)time(NULL) * 1000;
	w->n = ev->nrcpts;
	w->ids = sbx_xcalloc(w->n + 1, sizeof(*w->ids));
	w->rcpts = sbx_xcalloc(w->n + 1, sizeof(*w->rcpts));
	w->orcpts = sbx_xcalloc(w->n + 1, sizeof(*w->orcpts));
	for (i = 0; i < w->n; i++) {
		w->ids[i] = sbx_xstrdup(ev->rcpts[i]->local);
		w->rcpts[i] = sbx_xstrdup(ev->rcpts[i]->addr);
		w->orcpts[i] = ev->rcpts[i]->orcpt ? sbx_xstrdup(ev->rcpts[i]->orcpt) : NULL;
	}
	c->busy = 1;
	if (uv_queue_work(c->srv->loop, &w->req, prepare, prepared) < 0)
		prepared(&w->req, -1);
}
