/*
 * lmtpd.h - sealbox-lmtpd's pieces: the server, its connections and the
 * delivery work they hand to libuv's thread pool.
 */
#ifndef SBX_LMTPD_H
#define SBX_LMTPD_H
#include <pthread.h>
#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "directory.h"
#include "lmtp.h"

enum listener_kind { LISTEN_MAILBOX, LISTEN_WEBHOOK };
struct server {
	uv_loop_t *loop;
	struct sbx_config *cfg;
	const char *state_dir;
	char hostname[256];
	struct sbx_lmtp_limits lim;
	const char *mailbox_domain, *webhook_domain;
	unsigned nconn, max_conn;
	uint64_t idle_ms;
	uint64_t webhook_timeout_ms;
	unsigned max_hops;            /* Received + Delivered-To lines a message may have */
	const char *webhook_ca_file;
	/* one directory.db connection shared by the workers, serialised */
	struct sbx_dir *dir;
	pthread_mutex_t dir_lock;
	uv_stream_t *listeners[32];
	enum listener_kind kinds[32];
	size_t nlisteners;
	uv_signal_t sigterm, sigint;
	int stopping;
	unsigned long conn_seq;
	struct webhooks *webhooks;   /* webhook.c */
};

struct conn {
	union {
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	struct server *srv;
	enum listener_kind kind;
	struct sbx_lmtp_session *s;
	uv_timer_t idle;
	char id[24];          /* for logs: "L" + sequence */
	char peer[80];
	int reading;
	int busy;             /* waiting for work on the thread pool */
	int closing;
	int handles;          /* open libuv handles (stream, timer) */
};

/* conn.c */
void conn_accept(uv_stream_t *server, int status);
void conn_pump(struct conn *c);
void conn_write(struct conn *c, const char *data, size_t len);
void conn_close(struct conn *c);
/* Free a closed connection once its handles are closed and no work runs. */
void conn_release(struct conn *c);

/* main.c: stopping and the last connection is gone. */
void server_idle(struct server *srv);

/* webhook.c: the webhook listener's MESSAGE (one POST per URL). */
int webhooks_init(struct server *srv, char **error_r);
void webhooks_stop(struct server *srv);    /* no POST running any more */
void webhooks_free(struct server *srv);
void webhook_message(struct conn *c, const struct sbx_lmtp_event *ev);
#endif
