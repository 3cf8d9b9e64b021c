/*
 * filter.c - sealbox-milter's libmilter callbacks: protocol glue around
 * shared/route.c, which makes every decision.
 *
 * Events and what they do:
 *   negotiate  ask for SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT (refuse the
 *              connection without them); skip every event we do not need
 *              and ask for no reply where we always continue (below); ask
 *              for the macros below (SMFIF_SETSYMLIST)
 *   connect    SMTP (smtpd_milters) or non-SMTP (non_smtpd_milters)?
 *   envfrom    a new message (SIZE= kept for the quota check)
 *   envrcpt    sbx_route_rcpt: continue, or reject/tempfail this recipient
 *   header     nothing (only when the MTA cannot skip headers)
 *   eoh        nothing hosted -> accept now; a non-SMTP failure -> answer
 *              it (only when the MTA cannot skip end-of-headers)
 *   eom        a non-SMTP failure -> answer it; else apply the rewrite
 *              plan: smfi_delrcpt, smfi_addrcpt_par
 *   abort/close  free the message (and the connection)
 * Any failure of our own is a tempfail (451 4.3.0), never an accept.
 *
 * Fewer events, less CPU. libmilter hands every command from its poll
 * thread to a worker thread and back, so each event costs context
 * switches, which dominate the milter's CPU time (bench/postfix). From
 * the MTA's offer we take:
 *   SMFIP_NOHELO, NODATA, NOUNKNOWN, NOBODY, NOHDRS, NOEOH  skip the event
 *   SMFIP_NR_CONN, NR_MAIL  no reply to connect and MAIL (we always
 *                           continue there); a callback then returns
 *                           SMFIS_NOREPLY, and libmilter answers
 *                           "continue" itself to an MTA without them
 *   SMFIP_NR_HDR  no reply to headers, when the MTA sends them anyway
 * Headers are not needed: loop protection (Received/Delivered-To count
 * over max_hops) is sealbox-lmtpd's, at delivery, plus Postfix's own
 * hopcount_limit. With NOEOH, everything end-of-headers did happens at
 * end of message; an MTA that does not offer NOHDRS/NOEOH gets the same
 * answers through the header and eoh callbacks.
 *
 * Non-SMTP detection. Postfix's cleanup emulates connect/HELO/MAIL/RCPT
 * for non_smtpd_milters and answers fewer macros than smtpd: smtpd
 * defines {client_resolve} (OK/FORGED/TEMP/FAIL) for every client,
 * cleanup never does (cleanup_milter.c, smtpd_milter.c). We ask for
 * "{client_addr} {client_resolve}" at connect with smfi_setsymlist:
 *   {client_resolve} present                     -> SMTP
 *   {client_addr} present, {client_resolve} not  -> non-SMTP (the list
 *                                                   was honoured: cleanup)
 *   neither (the MTA ignored the list)           -> non-SMTP only for
 *       cleanup's made-up client: "localhost", 127.0.0.1, port 0
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <libmilter/mfapi.h>

#include "log.h"
#include "milter.h"
#include "route.h"
#include "util.h"

#define LOG_ADDR_MAX 256          /* bytes of an address in a log line */

struct milter_global milter_g;

struct conn {
	unsigned long id;             /* "M<id>" in logs until the queue id */
	int non_smtp;
	unsigned long pflags;         /* SMFIP_* negotiated */
	char qid[32];                 /* Postfix queue id (macro i), or "" */
	struct sbx_route_msg *msg;
};

/* ------------------------------------------------ directory.db pool */

/*
 * Read-only directory.db connections, each used by one thread at a time.
 * libmilter runs one thread per SMTP connection, so a connection per
 * thread would open directory.db (and prepare its statements again) for
 * every SMTP session; bench/postfix measured that as most of the milter's
 * cost. A RCPT takes a connection from this pool and gives it back; the
 * pool keeps at most POOL_IDLE_MAX idle ones.
 */
#define POOL_IDLE_MAX 64

struct tdb {
	struct sbx_route_db *db;
	struct tdb *next;
};

static pthread_mutex_t tdb_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tdb *tdb_idle;
static unsigned tdb_nidle;
static unsigned long conn_counter;
static unsigned active_msgs;

int
milter_filter_init(void)
{
	return 0;
}

/* Close the idle connections (at exit). */
void
milter_filter_done(void)
{
	struct tdb *t;

	pthread_mutex_lock(&tdb_lock);
	while ((t = tdb_idle) != NULL) {
		tdb_idle = t->next;
		sbx_route_db_close(&t->db);
		free(t);
	}
	tdb_nidle = 0;
	pthread_mutex_unlock(&tdb_lock);
}

unsigned
milter_active_messages(void)
{
	return __atomic_load_n(&active_msgs, __ATOMIC_SEQ_CST);
}

/* A directory.db connection for this thread until db_give; NULL (and an
 * error logged) when none can be opened: the caller tempfails. */
static struct tdb *
db_take(const struct conn *c)
{
	struct tdb *t;
	char *err = NULL;

	pthread_mutex_lock(&tdb_lock);
	t = tdb_idle;
	if (t != NULL) {
		tdb_idle = t->next;
		tdb_nidle--;
	}
	pthread_mutex_unlock(&tdb_lock);
	if (t != NULL)
		return t;
	t = sbx_xcalloc(1, sizeof(*t));
	if (sbx_route_db_open(milter_g.state_dir, &t->db, &err) < 0) {
		sbx_error("M%lu: %s", c->id, err);
		free(err);
		free(t);
		return NULL;
	}
	return t;
}

static void
db_give(struct tdb *t)
{
	if (t == NULL)
		return;
	pthread_mutex_lock(&tdb_lock);
	if (tdb_nidle < POOL_IDLE_MAX) {
		t->next = tdb_idle;
		tdb_idle = t;
		tdb_nidle++;
		t = NULL;
	}
	pthread_mutex_unlock(&tdb_lock);
	if (t != NULL) {
		sbx_route_db_close(&t->db);
		free(t);
	}
}

/* ------------------------------------------------------------- helpers */

static struct conn *
conn_get(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);

	if (c == NULL) {
		c = sbx_xcalloc(1, sizeof(*c));
		c->id = __atomic_add_fetch(&conn_counter, 1, __ATOMIC_SEQ_CST);
		if (smfi_setpriv(ctx, c) != MI_SUCCESS) {
			free(c);
			return NULL;
		}
	}
	return c;
}

static void
msg_end(struct conn *c)
{
	if (c->msg == NULL)
		return;
	sbx_route_msg_free(&c->msg);
	__atomic_sub_fetch(&active_msgs, 1, __ATOMIC_SEQ_CST);
}

static void
msg_begin(struct conn *c)
{
	msg_end(c);
	c->msg = sbx_route_msg_new(&milter_g.route, c->non_smtp);
	__atomic_add_fetch(&active_msgs, 1, __ATOMIC_SEQ_CST);
}

/* Remember the queue id once Postfix sends it (macro i). */
static const char *
qid(SMFICTX *ctx, struct conn *c)
{
	const char *q;

	if (c->qid[0] == '\0' && (q = smfi_getsymval(ctx, "i")) != NULL && q[0] != '\0')
		sbx_log_printable(c->qid, sizeof(c->qid), q, sizeof(c->qid) - 1);
	return c->qid[0] != '\0' ? c->qid : "-";
}

/* smfi_setreply with '%' doubled (libmilter treats the text as a format). */
static void
set_reply(SMFICTX *ctx, const char *code, const char *xcode, const char *text)
{
	char buf[2 * SBX_ROUTE_TEXT_MAX + 1];
	size_t i, o = 0;

	for (i = 0; text[i] != '\0' && o + 2 < sizeof(buf); i++) {
		if (text[i] == '%')
			buf[o++] = '%';
		buf[o++] = text[i];
	}
	buf[o] = '\0';
	if (smfi_setreply(ctx, (char *)code, (char *)xcode, buf) != MI_SUCCESS)
		sbx_warn("smfi_setreply %s %s failed; the MTA uses its default text", code, xcode);
}

static sfsistat
answer(SMFICTX *ctx, const struct sbx_route_reply *r)
{
	if (r->code == NULL)
		return SMFIS_CONTINUE;
	set_reply(ctx, r->code, r->xcode, r->text);
	return r->code[0] == '4' ? SMFIS_TEMPFAIL : SMFIS_REJECT;
}

static sfsistat
internal_error(SMFICTX *ctx)
{
	set_reply(ctx, "451", "4.3.0", "Internal error, try again later");
	return SMFIS_TEMPFAIL;
}

/* "Continue" at a stage whose reply may have been negotiated away
 * (SMFIP_NR_*): libmilter wants SMFIS_NOREPLY exactly then. */
static sfsistat
cont(const struct conn *c, unsigned long nr_flag)
{
	return c != NULL && (c->pflags & nr_flag) != 0 ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

/* ----------------------------------------------------------- callbacks */

static sfsistat
cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
	     unsigned long f3, unsigned long *pf0, unsigned long *pf1, unsigned long *pf2,
	     unsigned long *pf3)
{
	const unsigned long need = SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT;
	const unsigned long skip = SMFIP_NOHELO | SMFIP_NOBODY | SMFIP_NOUNKNOWN | SMFIP_NODATA |
	    SMFIP_NOHDRS | SMFIP_NOEOH;
	const unsigned long noreply = SMFIP_NR_CONN | SMFIP_NR_MAIL;
	struct conn *c;

	if ((f0 & need) != need) {
		sbx_error("the MTA does not offer to add recipients with parameters and to "
			  "delete recipients (SMFIF_ADDRCPT_PAR, SMFIF_DELRCPT): refusing");
		return SMFIS_REJECT;
	}
	if ((c = conn_get(ctx)) == NULL)
		return SMFIS_REJECT;
	/* f1 is what the MTA offers plus the NR_* flags libmilter can fake
	 * for an MTA without them */
	*pf0 = need | (f0 & SMFIF_SETSYMLIST);
	*pf1 = f1 & (skip | noreply);
	if (!(*pf1 & SMFIP_NOHDRS))
		*pf1 |= f1 & SMFIP_NR_HDR;
	*pf2 = 0;
	*pf3 = 0;
	c->pflags = *pf1;
	if (f0 & SMFIF_SETSYMLIST) {
		/* A list replaces the MTA's default for that stage. */
		if (smfi_setsymlist(ctx, SMFIM_CONNECT, "{client_addr} {client_resolve}") != MI_SUCCESS ||
		    smfi_setsymlist(ctx, SMFIM_ENVFROM, "i") != MI_SUCCESS ||
		    smfi_setsymlist(ctx, SMFIM_ENVRCPT, "i") != MI_SUCCESS ||
		    (!(*pf1 & SMFIP_NOEOH) && smfi_setsymlist(ctx, SMFIM_EOH, "i") != MI_SUCCESS) ||
		    smfi_setsymlist(ctx, SMFIM_EOM, "i") != MI_SUCCESS)
			sbx_warn("M%lu: smfi_setsymlist failed", c->id);
	}
	sbx_debug("M%lu: negotiated: MTA offers protocol 0x%lx, we take 0x%lx", c->id, f1, *pf1);
	return SMFIS_CONTINUE;
}

static int
is_non_smtp(SMFICTX *ctx, const char *host, const struct sockaddr *sa)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

	if (smfi_getsymval(ctx, "{client_resolve}") != NULL)
		return 0;
	if (smfi_getsymval(ctx, "{client_addr}") != NULL)
		return 1;
	return host != NULL && strcmp(host, "localhost") == 0 && sa != NULL &&
	    sa->sa_family == AF_INET && sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK) &&
	    sin->sin_port == 0;
}

static sfsistat
cb_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
	struct conn *c = conn_get(ctx);
	char h[LOG_ADDR_MAX + 1];

	if (c == NULL)
		return internal_error(ctx);
	c->non_smtp = is_non_smtp(ctx, host, sa);
	sbx_debug("M%lu: connect from %s (%s)", c->id,
		  sbx_log_printable(h, sizeof(h), host ? host : "unknown", LOG_ADDR_MAX),
		  c->non_smtp ? "non-SMTP: unknown recipients are rewritten" : "SMTP");
	return cont(c, SMFIP_NR_CONN);
}

static sfsistat
cb_envfrom(SMFICTX *ctx, char **argv)
{
	struct conn *c = conn_get(ctx);
	size_t i;

	if (c == NULL)
		return internal_error(ctx);
	c->qid[0] = '\0';
	msg_begin(c);
	for (i = 1; argv != NULL && argv[0] != NULL && argv[i] != NULL; i++) {
		if (strncasecmp(argv[i], "SIZE=", 5) == 0) {
			char *end;
			unsigned long long v = strtoull(argv[i] + 5, &end, 10);

			if (*end == '\0' && argv[i][5] >= '0' && argv[i][5] <= '9')
				sbx_route_msg_set_size(c->msg, v);
		}
	}
	return cont(c, SMFIP_NR_MAIL);
}

static sfsistat
cb_envrcpt(SMFICTX *ctx, char **argv)
{
	struct conn *c = conn_get(ctx);
	struct sbx_route_reply r;
	struct tdb *t;
	char a[LOG_ADDR_MAX + 1];
	const char *action;
	sfsistat st;

	if (c == NULL)
		return internal_error(ctx);
	if (argv == NULL || argv[0] == NULL)
		return SMFIS_CONTINUE;
	if (c->msg == NULL)
		msg_begin(c);
	t = db_take(c);
	sbx_route_rcpt(c->msg, t != NULL ? t->db : NULL, argv[0], argv + 1, &r);
	db_give(t);
	st = answer(ctx, &r);
	switch (r.result) {
	case SBX_ROUTE_PASS:    action = "pass"; break;
	case SBX_ROUTE_ROUTED:  action = "accept"; break;
	case SBX_ROUTE_REWRITE: action = "rewrite"; break;
	case SBX_ROUTE_LATER:   action = "fail-at-eom"; break;
	case SBX_ROUTE_REJECT:  action = "reject"; break;
	default:                action = "defer"; break;
	}
	sbx_log(r.result == SBX_ROUTE_PASS ? LOG_DEBUG : LOG_INFO,
		"M%lu: queue=%s rcpt=%s action=%s%s%s%s%s (%s)", c->id, qid(ctx, c),
		sbx_log_printable(a, sizeof(a), argv[0], LOG_ADDR_MAX), action,
		r.code ? " " : "", r.code ? r.code : "", r.code ? " " : "", r.code ? r.xcode : "",
		r.detail ? r.detail : r.result == SBX_ROUTE_PASS ? "not a hosted domain" : "");
	sbx_route_reply_clear(&r);
	return st;
}

/* Only for an MTA that cannot skip headers (SMFIP_NOHDRS). */
static sfsistat
cb_header(SMFICTX *ctx, char *name, char *value)
{
	return cont(smfi_getpriv(ctx), SMFIP_NR_HDR);
}

/* Only for an MTA that cannot skip end-of-headers (SMFIP_NOEOH):
 * sbx_route_eom gives the same answers at EOM otherwise. */
static sfsistat
cb_eoh(SMFICTX *ctx)
{
	struct conn *c = conn_get(ctx);
	struct sbx_route_reply r;
	sfsistat st;
	int rc;

	if (c == NULL)
		return internal_error(ctx);
	if (c->msg == NULL)
		return SMFIS_ACCEPT;
	rc = sbx_route_eoh(c->msg, &r);
	if (rc < 0) {
		sbx_info("M%lu: queue=%s message refused: %s %s %s (%s)", c->id, qid(ctx, c),
			 r.code, r.xcode, r.text, r.detail ? r.detail : "");
		st = answer(ctx, &r);
		sbx_route_reply_clear(&r);
		msg_end(c);
		return st;
	}
	sbx_route_reply_clear(&r);
	if (rc > 0) {
		/* no hosted recipient: nothing to rewrite, skip EOM */
		msg_end(c);
		return SMFIS_ACCEPT;
	}
	return SMFIS_CONTINUE;
}

static sfsistat
cb_eom(SMFICTX *ctx)
{
	struct conn *c = conn_get(ctx);
	struct sbx_route_reply r;
	struct sbx_route_op *ops = NULL;
	char a[LOG_ADDR_MAX + 1];
	size_t n = 0, i, ndel = 0, nadd = 0;
	sfsistat st = SMFIS_CONTINUE;

	if (c == NULL)
		return internal_error(ctx);
	if (c->msg == NULL)
		return SMFIS_CONTINUE;
	if (sbx_route_eom(c->msg, &ops, &n, &r) < 0) {
		sbx_info("M%lu: queue=%s message refused: %s %s %s (%s)", c->id, qid(ctx, c),
			 r.code, r.xcode, r.text, r.detail ? r.detail : "");
		st = answer(ctx, &r);
		sbx_route_reply_clear(&r);
		msg_end(c);
		return st;
	}
	sbx_route_reply_clear(&r);
	for (i = 0; i < n; i++) {
		int rc;

		if (ops[i].add) {
			rc = smfi_addrcpt_par(ctx, ops[i].rcpt, ops[i].args ? ops[i].args : "");
			nadd++;
		} else {
			rc = smfi_delrcpt(ctx, ops[i].rcpt);
			ndel++;
		}
		if (rc != MI_SUCCESS) {
			sbx_error("M%lu: queue=%s %s %s failed: message deferred", c->id, qid(ctx, c),
				  ops[i].add ? "smfi_addrcpt_par" : "smfi_delrcpt",
				  sbx_log_printable(a, sizeof(a), ops[i].rcpt, LOG_ADDR_MAX));
			st = internal_error(ctx);
			break;
		}
		sbx_debug("M%lu: queue=%s %s %s%s%s", c->id, qid(ctx, c), ops[i].add ? "add" : "delete",
			  sbx_log_printable(a, sizeof(a), ops[i].rcpt, LOG_ADDR_MAX),
			  ops[i].args ? " " : "", ops[i].args ? ops[i].args : "");
	}
	if (st == SMFIS_CONTINUE && n > 0)
		sbx_info("M%lu: queue=%s rewritten: %zu recipients deleted, %zu added", c->id,
			 qid(ctx, c), ndel, nadd);
	sbx_route_ops_free(ops, n);
	msg_end(c);
	return st;
}

static sfsistat
cb_abort(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);

	if (c != NULL) {
		msg_end(c);
		c->qid[0] = '\0';
	}
	return SMFIS_CONTINUE;
}

static sfsistat
cb_close(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);

	/* close may come without any other callback (and without priv) */
	if (c == NULL)
		return SMFIS_CONTINUE;
	msg_end(c);
	(void)smfi_setpriv(ctx, NULL);
	free(c);
	return SMFIS_CONTINUE;
}

struct smfiDesc milter_desc = {
	.xxfi_name = "sealbox-milter",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT,
	.xxfi_connect = cb_connect,
	.xxfi_helo = NULL,
	.xxfi_envfrom = cb_envfrom,
	.xxfi_envrcpt = cb_envrcpt,
	.xxfi_header = cb_header,
	.xxfi_eoh = cb_eoh,
	.xxfi_body = NULL,
	.xxfi_eom = cb_eom,
	.xxfi_abort = cb_abort,
	.xxfi_close = cb_close,
	.xxfi_unknown = NULL,
	.xxfi_data = NULL,
	.xxfi_negotiate = cb_negotiate,
};
