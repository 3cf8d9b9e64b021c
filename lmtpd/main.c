/*
 * main.c - sealbox-lmtpd [-c CONFIG] [-f]: the LMTP server Postfix's lmtp
 * client hands internal recipients to (ARCHITECTURE.md "Routing (milter)
 * and delivery (lmtpd)"). One libuv loop; directory lookups, sealing and
 * fsync on libuv's thread pool; a reply per recipient only once the
 * message is durable.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <sqlite3.h>

#include "config.h"
#include "directory.h"
#include "keys.h"
#include "listen.h"
#include "lmtpd.h"
#include "log.h"
#include "mime.h"
#include "sbx_limits.h"
#include "util.h"

static void
usage(void)
{
	fprintf(stderr, "usage: sealbox-lmtpd [-c CONFIG] [-f]\n");
	exit(64);
}

static void
on_listener_closed(uv_handle_t *h)
{
	free(h);
}

void
server_idle(struct server *srv)
{
	webhooks_stop(srv);
}

static void
on_signal(uv_signal_t *sig, int signum)
{
	struct server *srv = sig->data;
	size_t i;

	if (srv->stopping)
		return;
	srv->stopping = 1;
	sbx_info("signal %d: no new connections; finishing the open ones", signum);
	for (i = 0; i < srv->nlisteners; i++)
		uv_close((uv_handle_t *)srv->listeners[i], on_listener_closed);
	srv->nlisteners = 0;
	uv_close((uv_handle_t *)&srv->sigterm, NULL);
	uv_close((uv_handle_t *)&srv->sigint, NULL);
	if (srv->nconn == 0)
		server_idle(srv);
	/* open connections end at QUIT or their idle timeout; libuv's loop
	 * then runs out of handles and main returns */
}

static int
get_uint(struct sbx_config *cfg, const char *key, uint64_t min, uint64_t max, uint64_t *v_r)
{
	char *err = NULL;

	if (sbx_config_get_uint(cfg, key, v_r, &err) < 0) {
		sbx_error("%s", err);
		free(err);
		return -1;
	}
	if (*v_r < min || *v_r > max) {
		sbx_error("%s must be between %llu and %llu", key, (unsigned long long)min,
			  (unsigned long long)max);
		return -1;
	}
	return 0;
}

static int
listen_all(struct server *srv, const char *key, enum listener_kind kind)
{
	const char *spec = sbx_config_get(srv->cfg, key);
	struct sbx_listen_addr *v = NULL;
	size_t n = 0, i;
	char *err = NULL, name[300];

	if (spec == NULL || spec[0] == '\0')
		return 0;
	if (sbx_listen_parse(spec, &v, &n, &err) < 0) {
		sbx_error("%s: %s", key, err);
		free(err);
		return -1;
	}
	for (i = 0; i < n; i++) {
		uv_stream_t *s;

		if (srv->nlisteners == sizeof(srv->listeners) / sizeof(srv->listeners[0])) {
			sbx_error("too many listen addresses");
			sbx_listen_free(v, n);
			return -1;
		}
		if (sbx_listen_uv(srv->loop, &v[i], conn_accept, srv, &s, &err) < 0) {
			sbx_error("%s: %s", key, err);
			free(err);
			sbx_listen_free(v, n);
			return -1;
		}
		srv->listeners[srv->nlisteners] = s;
		srv->kinds[srv->nlisteners++] = kind;
		sbx_listen_format(&v[i], name, sizeof(name));
		sbx_info("listening on %s (%s recipients)", name, kind == LISTEN_MAILBOX ? "mailbox" : "webhook");
	}
	sbx_listen_free(v, n);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *conf = NULL;
	struct server srv;
	uint64_t v;
	char *err = NULL;
	int opt, foreground = 0, rc = 1;

	while ((opt = getopt(argc, argv, "c:fh")) != -1) {
		switch (opt) {
		case 'c':
			conf = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	sbx_log_open("sealbox-lmtpd", foreground);
	(void)prctl(PR_SET_DUMPABLE, 0);
	/* deliveries wait on fsync: more threads, more of them in flight */
	if (getenv("UV_THREADPOOL_SIZE") == NULL)
		setenv("UV_THREADPOOL_SIZE", "16", 0);
	memset(&srv, 0, sizeof(srv));
	if (sbx_config_load(conf, &srv.cfg, &err) < 0) {
		sbx_error("%s", err);
		free(err);
		return 1;
	}
	{
		const char *lvl = sbx_config_get(srv.cfg, "log_level");

		sbx_log_set_level(strcmp(lvl, "debug") == 0 ? LOG_DEBUG : strcmp(lvl, "warning") == 0 ?
				  LOG_WARNING : strcmp(lvl, "err") == 0 ? LOG_ERR : LOG_INFO);
	}
	if (sbx_keys_init() < 0 || sbx_mime_init() < 0) {
		sbx_error("cannot initialise libsodium or GMime");
		goto out;
	}
	srv.state_dir = sbx_config_get(srv.cfg, "state_dir");
	srv.mailbox_domain = sbx_config_get(srv.cfg, "mailbox_domain");
	srv.webhook_domain = sbx_config_get(srv.cfg, "webhook_domain");
	if (sbx_config_get(srv.cfg, "hostname") != NULL)
		snprintf(srv.hostname, sizeof(srv.hostname), "%s", sbx_config_get(srv.cfg, "hostname"));
	else if (gethostname(srv.hostname, sizeof(srv.hostname) - 1) < 0)
		snprintf(srv.hostname, sizeof(srv.hostname), "localhost");
	sbx_lmtp_limits_default(&srv.lim);
	if (sbx_config_get_size(srv.cfg, "message_size_limit", &v, &err) < 0) {
		sbx_error("%s", err);
		free(err);
		goto out;
	}
	srv.lim.max_size = v;
	if (get_uint(srv.cfg, "lmtp_max_recipients", 1, 100000, &v) < 0)
		goto out;
	srv.lim.max_rcpts = (unsigned)v;
	if (get_uint(srv.cfg, "lmtp_max_connections", 1, 100000, &v) < 0)
		goto out;
	srv.max_conn = (unsigned)v;
	if (get_uint(srv.cfg, "lmtp_idle_timeout", 1, 86400, &v) < 0)
		goto out;
	srv.idle_ms = v * 1000;
	if (get_uint(srv.cfg, "webhook_timeout", 1, 3600, &v) < 0)
		goto out;
	srv.webhook_timeout_ms = v * 1000;
	if (get_uint(srv.cfg, "max_hops", 1, 1000, &v) < 0)
		goto out;
	srv.max_hops = (unsigned)v;
	srv.webhook_ca_file = sbx_config_get(srv.cfg, "webhook_ca_file");
	if (sbx_dir_open(srv.state_dir, 0, &srv.dir, &err) < 0) {
		sbx_error("%s", err);
		free(err);
		goto out;
	}
	/* The records lmtpd writes (usage counters, retry records) are not
	 * what a 250 promises: the message itself is fsync'd in the spool
	 * first. NORMAL in WAL mode drops one fsync per group commit; a power
	 * loss can then forget the last records: usage is recounted when the
	 * mailbox is next opened, and a forgotten retry record can only
	 * duplicate a message, never lose one. */
	if (sqlite3_exec(sbx_dir_db(srv.dir), "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
		sbx_error("directory.db: cannot set synchronous");
		goto out;
	}
	pthread_mutex_init(&srv.dir_lock, NULL);
	srv.loop = uv_default_loop();
	if (webhooks_init(&srv, &err) < 0) {
		sbx_error("%s", err);
		free(err);
		goto out;
	}
	if (listen_all(&srv, "lmtp_listen", LISTEN_MAILBOX) < 0 ||
	    listen_all(&srv, "webhook_listen", LISTEN_WEBHOOK) < 0)
		goto out;
	if (srv.nlisteners == 0) {
		sbx_error("nothing to listen on: set lmtp_listen and/or webhook_listen");
		goto out;
	}
	uv_signal_init(srv.loop, &srv.sigterm);
	uv_signal_init(srv.loop, &srv.sigint);
	srv.sigterm.data = srv.sigint.data = &srv;
	uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
	uv_signal_start(&srv.sigint, on_signal, SIGINT);
	signal(SIGPIPE, SIG_IGN);
	/* a file size limit makes write() fail with EFBIG (451) instead of killing us */
	signal(SIGXFSZ, SIG_IGN);
	sbx_info("started (state_dir %s, message_size_limit %llu, max_hops %u)", srv.state_dir,
		 (unsigned long long)srv.lim.max_size, srv.max_hops);
	uv_run(srv.loop, UV_RUN_DEFAULT);
	sbx_info("stopped");
	rc = 0;
out:
	webhooks_free(&srv);
	if (srv.loop != NULL)
		uv_loop_close(srv.loop);
	sbx_dir_close(&srv.dir);
	sbx_config_free(&srv.cfg);
	return rc;
}
