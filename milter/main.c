/*
 * main.c - sealbox-milter [-c CONFIG] [-f]: the libmilter filter in
 * Postfix's smtpd_milters (and non_smtpd_milters) that routes hosted
 * recipients (ARCHITECTURE.md "Routing (milter) and delivery (lmtpd)").
 * Config, logging and -f as in sealbox-lmtpd; the listening socket,
 * threads and signals are libmilter's (see sealbox-milter(8) SIGNALS).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>
#include <sodium.h>

#include "config.h"
#include "listen.h"
#include "log.h"
#include "milter.h"
#include "route.h"
#include "sbx_limits.h"
#include "util.h"

#define DRAIN_SECONDS 10          /* wait for open messages at a stop */

static void
usage(void)
{
	fprintf(stderr, "usage: sealbox-milter [-c CONFIG] [-f]\n");
	exit(64);
}

static int
get_uint(const struct sbx_config *cfg, const char *key, uint64_t min, uint64_t max, uint64_t *v_r)
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

/*
 * milter_listen (Postfix style, one address) into libmilter's form:
 * unix:/path -> local:/path, inet:HOST:PORT -> inet:PORT@HOST,
 * inet:[V6]:PORT -> inet6:PORT@V6. *path_r: the socket path (unix) or NULL.
 */
static int
listen_spec(const char *spec, char **conn_r, char **path_r, char **name_r)
{
	struct sbx_listen_addr *v = NULL;
	char *err = NULL, name[300];
	size_t n = 0;

	*path_r = NULL;
	if (spec == NULL || spec[0] == '\0') {
		sbx_error("milter_listen is empty");
		return -1;
	}
	if (sbx_listen_parse(spec, &v, &n, &err) < 0) {
		sbx_error("milter_listen: %s", err);
		free(err);
		return -1;
	}
	if (n != 1) {
		sbx_error("milter_listen: libmilter listens on one address, not %zu", n);
		sbx_listen_free(v, n);
		return -1;
	}
	if (v[0].is_unix) {
		*conn_r = sbx_xasprintf("local:%s", v[0].path);
		*path_r = sbx_xstrdup(v[0].path);
	} else if (strchr(v[0].host, ':') != NULL) {
		*conn_r = sbx_xasprintf("inet6:%d@%s", v[0].port, v[0].host);
	} else {
		*conn_r = sbx_xasprintf("inet:%d@%s", v[0].port, v[0].host);
	}
	sbx_listen_format(&v[0], name, sizeof(name));
	*name_r = sbx_xstrdup(name);
	sbx_listen_free(v, n);
	return 0;
}

/* Bind now, so a bad address fails at start with our message: a unix
 * socket replaces a stale socket file (never another kind of file) and
 * is created 0660. */
static struct stat sock_st;       /* the unix socket we created */

static int
open_socket(const char *path, const char *name)
{
	struct stat sb;
	mode_t old;
	int rc;

	if (path != NULL && lstat(path, &sb) == 0 && !S_ISSOCK(sb.st_mode)) {
		sbx_error("%s: exists and is not a socket", name);
		return -1;
	}
	old = umask(0117);
	rc = smfi_opensocket(1);
	umask(old);
	if (rc != MI_SUCCESS) {
		sbx_error("%s: cannot listen (address in use, missing directory or permissions; "
			  "libmilter logs the reason to syslog)", name);
		return -1;
	}
	if (path != NULL && (chmod(path, 0660) < 0 || lstat(path, &sock_st) < 0)) {
		sbx_error("%s: chmod: %s", name, strerror(errno));
		return -1;
	}
	return 0;
}

/* Remove our socket at a stop, like sealbox-lmtpd; not one a newer
 * instance has created at the same path meanwhile. */
static void
remove_socket(const char *path)
{
	struct stat sb;

	if (path != NULL && lstat(path, &sb) == 0 && sb.st_dev == sock_st.st_dev &&
	    sb.st_ino == sock_st.st_ino)
		(void)unlink(path);
}

int
main(int argc, char **argv)
{
	struct sbx_config *cfg = NULL;
	struct sbx_route_db *db = NULL;
	const char *conf = NULL, *lvl;
	char *err = NULL, *conn = NULL, *path = NULL, *name = NULL;
	uint64_t v;
	int opt, foreground = 0, rc = 1;
	unsigned i, left;

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
	sbx_log_open("sealbox-milter", foreground);
	(void)prctl(PR_SET_DUMPABLE, 0);
	if (sbx_config_load(conf, &cfg, &err) < 0) {
		sbx_error("%s", err);
		free(err);
		return 1;
	}
	lvl = sbx_config_get(cfg, "log_level");
	sbx_log_set_level(strcmp(lvl, "debug") == 0 ? LOG_DEBUG : strcmp(lvl, "warning") == 0 ?
			  LOG_WARNING : strcmp(lvl, "err") == 0 ? LOG_ERR : LOG_INFO);
	if (sodium_init() < 0) {
		sbx_error("cannot initialise libsodium");
		goto out;
	}
	milter_g.state_dir = sbx_config_get(cfg, "state_dir");
	sbx_route_cfg_default(&milter_g.route);
	milter_g.route.mailbox_domain = sbx_config_get(cfg, "mailbox_domain");
	milter_g.route.webhook_domain = sbx_config_get(cfg, "webhook_domain");
	milter_g.route.unknown_domain = sbx_config_get(cfg, "unknown_domain");
	if (get_uint(cfg, "milter_max_recipients", 1, SBX_MAX_MILTER_RECIPIENTS, &v) < 0)
		goto out;
	milter_g.route.max_recipients = (unsigned)v;
	/* Fail at start, not at the first RCPT, when directory.db is missing
	 * or unreadable; RCPTs take connections from a pool (filter.c). */
	if (sbx_route_db_open(milter_g.state_dir, &db, &err) < 0) {
		sbx_error("%s", err);
		free(err);
		goto out;
	}
	sbx_route_db_close(&db);
	if (milter_filter_init() < 0)
		goto out;
	if (listen_spec(sbx_config_get(cfg, "milter_listen"), &conn, &path, &name) < 0)
		goto out;
	if (smfi_setconn(conn) != MI_SUCCESS || smfi_register(milter_desc) != MI_SUCCESS) {
		sbx_error("libmilter refused %s", conn);
		goto out;
	}
	if (open_socket(path, name) < 0)
		goto out;
	signal(SIGPIPE, SIG_IGN);
	sbx_info("started (state_dir %s, listening on %s, milter_max_recipients %u)",
		 milter_g.state_dir, name, milter_g.route.max_recipients);
	/* libmilter's own thread turns SIGHUP, SIGTERM and SIGINT into a
	 * stop: smfi_main returns once the listener is closed. */
	if (smfi_main() != MI_SUCCESS)
		sbx_error("smfi_main failed (libmilter logs the reason to syslog)");
	else
		rc = 0;
	/* Let messages in flight reach EOM or abort; past that, Postfix's
	 * milter_default_action (tempfail in the examples) applies. */
	for (i = 0; i < DRAIN_SECONDS * 20 && (left = milter_active_messages()) > 0; i++) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		if (i == 0)
			sbx_info("stopping: waiting for %u open messages", left);
		nanosleep(&ts, NULL);
	}
	if ((left = milter_active_messages()) > 0)
		sbx_warn("stopping with %u messages still open (Postfix applies milter_default_action)",
			 left);
	remove_socket(path);
	milter_filter_done();
	sbx_info("stopped");
	/* cfg stays: a straggling libmilter thread may still read the
	 * domains in milter_g.route until exit. */
	milter_g.cfg = cfg;
	cfg = NULL;
out:
	free(conn);
	free(path);
	free(name);
	sbx_config_free(&cfg);
	return rc;
}
