/*
 * route.c - see route.h.
 *
 * Resolution happens at RCPT time and its result (the targets) is kept in
 * the message until EOM, so EOM itself never touches directory.db: a
 * lookup error can only surface while Postfix can still answer the one
 * recipient with a 4xx.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <sodium.h>
#include <sqlite3.h>

#include "directory.h"
#include "route.h"
#include "sbx_limits.h"
#include "util.h"
#include "xtext.h"

#define INTERNAL_PARENT   "sealbox.internal"
#define NOTIFY_MAX        64      /* bytes of a NOTIFY= value we pass on */
#define REPLY_ADDR_MAX    256     /* bytes of the client's address in a reply */
#define DETAIL_VALUE_MAX  200     /* bytes of one value in a log detail */

void
sbx_route_cfg_default(struct sbx_route_cfg *cfg)
{
	cfg->mailbox_domain = "mailbox.sealbox.internal";
	cfg->webhook_domain = "webhook.sealbox.internal";
	cfg->unknown_domain = "unknown.sealbox.internal";
	cfg->max_recipients = SBX_DEF_MILTER_RECIPIENTS;
}

/* ------------------------------------------------- directory connection */

struct sbx_route_db {
	struct sbx_dir *dir;
	sqlite3_stmt *data_version;   /* "PRAGMA data_version", kept prepared */
	int64_t version;              /* data_version the cache was loaded at */
	int loaded;
	char **domains;               /* hosted domains, lower case, sorted */
	size_t ndomains;
};

int
sbx_route_db_open(const char *state_dir, struct sbx_route_db **db_r, char **error_r)
{
	struct sbx_route_db *db = sbx_xcalloc(1, sizeof(*db));

	*db_r = NULL;
	if (sbx_dir_open(state_dir, SBX_DIR_RDONLY, &db->dir, error_r) < 0) {
		free(db);
		return -1;
	}
	if (sqlite3_prepare_v3(sbx_dir_db(db->dir), "PRAGMA data_version", -1,
			       SQLITE_PREPARE_PERSISTENT, &db->data_version, NULL) != SQLITE_OK) {
		*error_r = sbx_xasprintf("directory.db: data_version: %s",
					 sqlite3_errmsg(sbx_dir_db(db->dir)));
		sbx_route_db_close(&db);
		return -1;
	}
	*db_r = db;
	return 0;
}

void
sbx_route_db_close(struct sbx_route_db **dbp)
{
	struct sbx_route_db *db = *dbp;

	if (db == NULL)
		return;
	/* Before sbx_dir_close: a statement left on the connection would
	 * keep it from closing. */
	(void)sqlite3_finalize(db->data_version);
	sbx_dir_close(&db->dir);
	sbx_strv_free(db->domains, db->ndomains);
	free(db);
	*dbp = NULL;
}

struct sbx_dir *
sbx_route_db_dir(struct sbx_route_db *db)
{
	return db->dir;
}

static void
lower_ascii(char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

static int
cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reload the hosted domains when another connection has committed since
 * the last load. data_version moves with every commit (lmtpd's usage
 * counters too); a reload is one small query. */
static int
domains_refresh(struct sbx_route_db *db, char **error_r)
{
	char **names = NULL;
	size_t n = 0, i;
	int64_t v;
	int rc;

	rc = sqlite3_step(db->data_version);
	v = sqlite3_column_int64(db->data_version, 0);
	(void)sqlite3_reset(db->data_version);
	if (rc != SQLITE_ROW) {
		*error_r = sbx_xasprintf("directory.db: data_version: %s",
					 sqlite3_errmsg(sbx_dir_db(db->dir)));
		return -1;
	}
	if (db->loaded && v == db->version)
		return 0;
	if (sbx_dir_domain_list(db->dir, &names, &n, error_r) < 0)
		return -1;
	for (i = 0; i < n; i++)
		lower_ascii(names[i]);
	if (n > 1)
		qsort(names, n, sizeof(*names), cmp_strp);
	sbx_strv_free(db->domains, db->ndomains);
	db->domains = names;
	db->ndomains = n;
	db->version = v;
	db->loaded = 1;
	return 0;
}

int
sbx_route_domain_hosted(struct sbx_route_db *db, const char *domain, char **error_r)
{
	char *d;
	int found;

	if (domains_refresh(db, error_r) < 0)
		return -1;
	d = sbx_xstrdup(domain);
	lower_ascii(d);
	found = db->ndomains > 0 &&
	    bsearch(&d, db->domains, db->ndomains, sizeof(*db->domains), cmp_strp) != NULL;
	free(d);
	return found;
}

/* -------------------------------------------------------------- message */

enum tkind { T_MAILBOX, T_WEBHOOK, T_FORWARD, T_UNKNOWN };

static const char *const tkind_name[] = { "mailbox", "webhook", "forward", "unknown" };

struct target {
	enum tkind kind;
	char *value;       /* mailbox id | webhook id | forward address | unknown local part */
	size_t rcpt;       /* index of the first RCPT that reached it */
};

struct rcpt {
	char *arg;         /* exactly as received: what delrcpt gets */
	char *orcpt;       /* the address without <>: what ORCPT carries */
	char *notify;      /* the client's NOTIFY= value, or NULL */
};

struct sbx_route_msg {
	const struct sbx_route_cfg *cfg;
	int non_smtp;
	uint64_t size;
	struct rcpt *rcpts;
	size_t nrcpts, rcpts_cap;
	struct target *targets;
	size_t ntargets, targets_cap;
	/* non-SMTP: a failure to answer for the whole message (EOH/EOM) */
	const char *later_code, *later_xcode;
	char later_text[SBX_ROUTE_TEXT_MAX];
};

struct sbx_route_msg *
sbx_route_msg_new(const struct sbx_route_cfg *cfg, int non_smtp)
{
	struct sbx_route_msg *m = sbx_xcalloc(1, sizeof(*m));

	m->cfg = cfg;
	m->non_smtp = non_smtp;
	return m;
}

void
sbx_route_msg_free(struct sbx_route_msg **mp)
{
	struct sbx_route_msg *m = *mp;
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nrcpts; i++) {
		free(m->rcpts[i].arg);
		free(m->rcpts[i].orcpt);
		free(m->rcpts[i].notify);
	}
	free(m->rcpts);
	for (i = 0; i < m->ntargets; i++)
		free(m->targets[i].value);
	free(m->targets);
	free(m);
	*mp = NULL;
}

void
sbx_route_msg_set_size(struct sbx_route_msg *m, uint64_t size)
{
	m->size = size;
}

void
sbx_route_reply_clear(struct sbx_route_reply *r)
{
	free(r->detail);
	memset(r, 0, sizeof(*r));
}

/* ------------------------------------------------------------- replies */

/* out = s for a reply or a log: controls and non-ASCII bytes as '?', cut
 * at max bytes with "...". */
static void
printable(char *out, size_t outsz, const char *s, size_t max)
{
	size_t i, o = 0;

	for (i = 0; s[i] != '\0' && o + 4 < outsz; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i == max) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		out[o++] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
	}
	out[o] = '\0';
}

static void reply_set(struct sbx_route_reply *r, enum sbx_route_result result, const char *code,
		      const char *xcode, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void
reply_set(struct sbx_route_reply *r, enum sbx_route_result result, const char *code,
	  const char *xcode, const char *fmt, ...)
{
	va_list ap;

	r->result = result;
	r->code = code;
	r->xcode = xcode;
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
}

/* Keep a non-SMTP failure for EOH/EOM; a 4xx wins over a 5xx (a retry
 * may succeed where a bounce would not). */
static void
later_set(struct sbx_route_msg *m, const char *code, const char *xcode, const char *text)
{
	if (m->later_code != NULL && !(m->later_code[0] == '5' && code[0] == '4'))
		return;
	m->later_code = code;
	m->later_xcode = xcode;
	snprintf(m->later_text, sizeof(m->later_text), "%s", text);
}

/* ------------------------------------------------------------- parsing */

/* The RCPT argument taken apart. */
struct parsed {
	char *bare;        /* without the enclosing <> (ORCPT, replies) */
	char *lookup;      /* local@domain for lookup: no source route, local
			    * part unquoted, domain lower case without a
			    * trailing dot */
	const char *domain;   /* inside lookup */
};

static void
parsed_free(struct parsed *p)
{
	free(p->bare);
	free(p->lookup);
}

/* -1 when arg is no address with a domain (Postfix decides about it). */
static int
parse_arg(const char *arg, struct parsed *p)
{
	size_t len = strlen(arg);
	const char *s, *at, *colon;
	struct sbx_buf b = { 0 };
	char *dom;
	size_t dlen;

	memset(p, 0, sizeof(*p));
	if (len >= 2 && arg[0] == '<' && arg[len - 1] == '>')
		p->bare = sbx_xstrndup(arg + 1, len - 2);
	else
		p->bare = sbx_xstrdup(arg);
	s = p->bare;
	/* RFC 5321 4.1.2: a source route "@a,@b:" is to be ignored. */
	if (s[0] == '@' && (colon = strchr(s, ':')) != NULL)
		s = colon + 1;
	at = strrchr(s, '@');
	if (at == NULL || at == s || at[1] == '\0') {
		parsed_free(p);
		return -1;
	}
	if (s[0] == '"' && at - s >= 2 && at[-1] == '"') {
		/* Quoted local part: its content is the local part. */
		const char *q = s + 1, *end = at - 1;

		while (q < end) {
			if (*q == '\\' && q + 1 < end)
				q++;
			sbx_buf_append(&b, q, 1);
			q++;
		}
	} else {
		sbx_buf_append(&b, s, (size_t)(at - s));
	}
	sbx_buf_append(&b, at, strlen(at) + 1);
	p->lookup = b.data;
	dom = strrchr(p->lookup, '@') + 1;
	dlen = strlen(dom);
	if (dlen > 1 && dom[dlen - 1] == '.')
		dom[dlen - 1] = '\0';
	lower_ascii(dom);
	p->domain = dom;
	return 0;
}

static int
domain_is(const char *domain, const char *name)
{
	return name != NULL && name[0] != '\0' && strcasecmp(domain, name) == 0;
}

/* The internal domains: the configured ones and everything under
 * sealbox.internal. */
static int
domain_internal(const struct sbx_route_cfg *cfg, const char *domain)
{
	size_t n = strlen(domain), k = strlen(INTERNAL_PARENT);

	if (domain_is(domain, cfg->mailbox_domain) || domain_is(domain, cfg->webhook_domain) ||
	    domain_is(domain, cfg->unknown_domain) || strcasecmp(domain, INTERNAL_PARENT) == 0)
		return 1;
	return n > k && domain[n - k - 1] == '.' && strcasecmp(domain + n - k, INTERNAL_PARENT) == 0;
}

static int
is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* RFC 5322 dot-atom (with RFC 6532's UTF-8 when utf8). */
static int
is_dot_atom(const char *s, size_t n, int utf8)
{
	size_t i;

	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (s[i + 1] == '.')
				return 0;
		} else if (!is_atext(c) && !(utf8 && c >= 0x80)) {
			return 0;
		}
	}
	return 1;
}

/* Local part of the unknown-domain recipient for addr (route.h). */
static char *
unknown_local(const char *addr)
{
	unsigned char h[16];
	char hex[33], *s = sbx_xstrdup(addr), *at = strrchr(s, '@');

	if (at != NULL) {
		*at = '=';
		lower_ascii(s);
		if (strlen(s) <= SBX_MAX_LOCALPART_LEN && is_dot_atom(s, strlen(s), 0))
			return s;
	}
	free(s);
	crypto_generichash(h, sizeof(h), (const unsigned char *)addr, strlen(addr), NULL, 0);
	sbx_hex(hex, h, sizeof(h));
	return sbx_xasprintf("u%s", hex);
}

/* ---------------------------------------------------------- expansion */

/* The targets one RCPT resolves to, before they join the message. */
struct expansion {
	struct sbx_route_db *db;
	struct target *v;
	size_t n, cap;
	char **seen;       /* addresses and aliases expanded so far */
	size_t nseen;
	unsigned nresolved;   /* sbx_dir_resolve calls for this RCPT */
};

static void
expansion_free(struct expansion *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		free(e->v[i].value);
	free(e->v);
	for (i = 0; i < e->nseen; i++)
		free(e->seen[i]);
	free(e->seen);
}

static int
seen_has(const struct expansion *e, const char *s)
{
	size_t i;

	for (i = 0; i < e->nseen; i++)
		if (strcmp(e->seen[i], s) == 0)
			return 1;
	return 0;
}

static void
seen_add(struct expansion *e, char *s)
{
	e->seen = sbx_xrealloc(e->seen, (e->nseen + 1) * sizeof(*e->seen));
	e->seen[e->nseen++] = s;
}

/* Add a target (taking value) unless the expansion already has it. */
static void
cand_add(struct expansion *e, enum tkind kind, char *value)
{
	size_t i;

	for (i = 0; i < e->n; i++) {
		if (e->v[i].kind == kind && strcmp(e->v[i].value, value) == 0) {
			free(value);
			return;
		}
	}
	if (e->n == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 4;
		e->v = sbx_xrealloc(e->v, e->cap * sizeof(*e->v));
	}
	e->v[e->n].kind = kind;
	e->v[e->n].value = value;
	e->v[e->n].rcpt = 0;
	e->n++;
}

/*
 * Resolve addr (normalised) and follow forwards into hosted domains.
 * 1: resolved (or already expanded: nothing new), 0: no alias matches,
 * -1: directory error (*error_r), -2: SBX_MAX_FORWARD_DEPTH or
 * SBX_MAX_FORWARD_EXPAND exceeded.
 */
static int
expand(struct expansion *e, const char *addr, unsigned depth, char **error_r)
{
	struct sbx_target *t = NULL;
	char *matched = NULL;
	size_t n = 0, i;
	int rc, h;

	if (seen_has(e, addr))
		return 1;
	if (e->nresolved++ >= SBX_MAX_FORWARD_EXPAND)
		return -2;
	seen_add(e, sbx_xstrdup(addr));
	rc = sbx_dir_resolve(sbx_route_db_dir(e->db), addr, &t, &n, &matched, error_r);
	if (rc <= 0)
		return rc;
	/* Two addresses that hit the same alias (a catch-all, a regex, a
	 * +tag) have the same targets: expand each alias once. */
	if (matched != NULL && strcmp(matched, addr) != 0) {
		if (seen_has(e, matched)) {
			free(matched);
			sbx_targets_free(t, n);
			return 1;
		}
		seen_add(e, matched);
	} else {
		free(matched);
	}
	for (i = 0; i < n && rc >= 0; i++) {
		const char *at;

		switch (t[i].kind) {
		case SBX_TARGET_MAILBOX:
			cand_add(e, T_MAILBOX, sbx_xstrdup(t[i].value));
			break;
		case SBX_TARGET_WEBHOOK:
			cand_add(e, T_WEBHOOK, sbx_xstrdup(t[i].webhook_id));
			break;
		case SBX_TARGET_FORWARD:
			at = strrchr(t[i].value, '@');
			h = at == NULL ? 0 : sbx_route_domain_hosted(e->db, at + 1, error_r);
			if (h < 0) {
				rc = -1;
			} else if (h == 0) {
				cand_add(e, T_FORWARD, sbx_xstrdup(t[i].value));
			} else if (depth + 1 > SBX_MAX_FORWARD_DEPTH) {
				rc = -2;
			} else if ((h = expand(e, t[i].value, depth + 1, error_r)) < 0) {
				rc = h;
			} else if (h == 0) {
				/* a forward to a hosted address nobody has */
				cand_add(e, T_UNKNOWN, unknown_local(t[i].value));
			}
			break;
		}
	}
	sbx_targets_free(t, n);
	return rc < 0 ? rc : 1;
}

/* "mailbox:ID webhook:ID forward:ADDR" for the log. */
static char *
targets_detail(const struct target *v, size_t n)
{
	struct sbx_buf b = { 0 };
	char val[DETAIL_VALUE_MAX + 4];
	size_t i;

	for (i = 0; i < n; i++) {
		printable(val, sizeof(val), v[i].value, DETAIL_VALUE_MAX);
		sbx_buf_appendf(&b, "%s%s:%s", i ? " " : "", tkind_name[v[i].kind], val);
	}
	sbx_buf_append(&b, "", 1);
	return b.data;
}

/* ------------------------------------------------------------ recording */

static int
target_find(const struct sbx_route_msg *m, enum tkind kind, const char *value)
{
	size_t i;

	for (i = 0; i < m->ntargets; i++)
		if (m->targets[i].kind == kind && strcmp(m->targets[i].value, value) == 0)
			return 1;
	return 0;
}

static ssize_t
rcpt_find(const struct sbx_route_msg *m, const char *arg)
{
	size_t i;

	for (i = 0; i < m->nrcpts; i++)
		if (strcmp(m->rcpts[i].arg, arg) == 0)
			return (ssize_t)i;
	return -1;
}

/* The NOTIFY= value of params when well-formed, else NULL. */
static char *
notify_param(char *const *params)
{
	size_t i, k;

	for (i = 0; params != NULL && params[i] != NULL; i++) {
		const char *v = params[i];

		if (strncasecmp(v, "NOTIFY=", 7) != 0)
			continue;
		v += 7;
		if (*v == '\0' || strlen(v) > NOTIFY_MAX)
			return NULL;
		for (k = 0; v[k] != '\0'; k++)
			if (!((v[k] >= 'A' && v[k] <= 'Z') || (v[k] >= 'a' && v[k] <= 'z') || v[k] == ','))
				return NULL;
		return sbx_xstrdup(v);
	}
	return NULL;
}

/* 1 when the RCPT and the new targets of e still fit max_recipients. */
static int
fits(const struct sbx_route_msg *m, const char *arg, const struct expansion *e)
{
	size_t i, more = 0;

	if (rcpt_find(m, arg) < 0 && m->nrcpts >= m->cfg->max_recipients)
		return 0;
	for (i = 0; i < e->n; i++)
		if (!target_find(m, e->v[i].kind, e->v[i].value))
			more++;
	return m->ntargets + more <= m->cfg->max_recipients;
}

/* Record the RCPT and move the new targets of e into the message. */
static void
record(struct sbx_route_msg *m, const char *arg, const struct parsed *p, char *const *params,
       struct expansion *e)
{
	ssize_t ri = rcpt_find(m, arg);
	size_t i;

	if (ri < 0) {
		if (m->nrcpts == m->rcpts_cap) {
			m->rcpts_cap = m->rcpts_cap ? m->rcpts_cap * 2 : 4;
			m->rcpts = sbx_xrealloc(m->rcpts, m->rcpts_cap * sizeof(*m->rcpts));
		}
		ri = (ssize_t)m->nrcpts++;
		m->rcpts[ri].arg = sbx_xstrdup(arg);
		m->rcpts[ri].orcpt = sbx_xstrdup(p->bare);
		m->rcpts[ri].notify = notify_param(params);
	}
	for (i = 0; i < e->n; i++) {
		if (target_find(m, e->v[i].kind, e->v[i].value))
			continue;
		if (m->ntargets == m->targets_cap) {
			m->targets_cap = m->targets_cap ? m->targets_cap * 2 : 8;
			m->targets = sbx_xrealloc(m->targets, m->targets_cap * sizeof(*m->targets));
		}
		m->targets[m->ntargets] = e->v[i];
		m->targets[m->ntargets].rcpt = (size_t)ri;
		m->ntargets++;
		e->v[i].value = NULL;
	}
}

/* ------------------------------------------------------------- decisions */

/* too many recipients: 452 now, or for non-SMTP mail the whole message. */
static enum sbx_route_result
too_many(struct sbx_route_msg *m, struct sbx_route_reply *r)
{
	if (m->non_smtp) {
		later_set(m, "554", "5.5.3", "Error: too many recipients");
		reply_set(r, SBX_ROUTE_LATER, NULL, NULL, "too many recipients");
	} else {
		reply_set(r, SBX_ROUTE_DEFER, "452", "4.5.3", "Error: too many recipients");
	}
	r->detail = sbx_xasprintf("too many recipients (milter_max_recipients %u)",
				  m->cfg->max_recipients);
	return r->result;
}

/* A directory error: 451 now, or for non-SMTP mail the whole message. */
static enum sbx_route_result
tempfail(struct sbx_route_msg *m, struct sbx_route_reply *r, const char *addr, char *err)
{
	if (m->non_smtp) {
		later_set(m, "451", "4.3.0", "Temporary lookup failure");
		reply_set(r, SBX_ROUTE_LATER, NULL, NULL, "Temporary lookup failure");
	} else {
		reply_set(r, SBX_ROUTE_DEFER, "451", "4.3.0", "<%s>: Temporary lookup failure", addr);
	}
	r->detail = sbx_xasprintf("directory error: %s", err ? err : "unknown");
	free(err);
	return r->result;
}

/* A permanent refusal: 5xx now, or for non-SMTP mail a rewrite to the
 * unknown domain. */
static enum sbx_route_result
refuse(struct sbx_route_msg *m, struct sbx_route_reply *r, const char *arg, const struct parsed *p,
       char *const *params, const char *code, const char *xcode, const char *addr,
       const char *why)
{
	struct expansion e = { 0 };
	char *local;

	if (!m->non_smtp) {
		reply_set(r, SBX_ROUTE_REJECT, code, xcode, "<%s>: Recipient address rejected: %s", addr, why);
		r->detail = sbx_xstrdup(why);
		return r->result;
	}
	local = unknown_local(p->lookup);    /* ASCII dot-atom or hex: printable */
	cand_add(&e, T_UNKNOWN, sbx_xstrdup(local));
	if (!fits(m, arg, &e)) {
		free(local);
		expansion_free(&e);
		return too_many(m, r);
	}
	record(m, arg, p, params, &e);
	reply_set(r, SBX_ROUTE_REWRITE, NULL, NULL, "%s", why);
	r->detail = sbx_xasprintf("%s; non-SMTP mail: to unknown:%s", why, local);
	free(local);
	expansion_free(&e);
	return r->result;
}

/* 1 when every target of e is a mailbox that is full (for m->size more
 * bytes when MAIL FROM gave SIZE=), 0 when not, -1 on a directory error. */
static int
all_full(struct sbx_route_db *db, const struct sbx_route_msg *m, const struct expansion *e,
	 char **error_r)
{
	struct sbx_dir_mailbox mb;
	size_t i;
	int full;

	for (i = 0; i < e->n; i++)
		if (e->v[i].kind != T_MAILBOX)
			return 0;
	for (i = 0; i < e->n; i++) {
		if (sbx_dir_mailbox_find(sbx_route_db_dir(db), e->v[i].value, &mb, error_r) < 0)
			return -1;
		full = mb.quota_bytes > 0 &&
		    (mb.usage_bytes >= mb.quota_bytes || m->size > mb.quota_bytes - mb.usage_bytes);
		sbx_dir_mailbox_clear(&mb);
		if (!full)
			return 0;
	}
	return 1;
}

enum sbx_route_result
sbx_route_rcpt(struct sbx_route_msg *m, struct sbx_route_db *db, const char *arg,
	       char *const *params, struct sbx_route_reply *r)
{
	struct expansion e = { 0 };
	struct parsed p;
	char addr[REPLY_ADDR_MAX + 4], *norm = NULL, *err = NULL;
	enum sbx_route_result res;
	size_t i;
	int rc;

	memset(r, 0, sizeof(*r));
	e.db = db;
	if (parse_arg(arg, &p) < 0)
		return SBX_ROUTE_PASS;
	printable(addr, sizeof(addr), p.bare, REPLY_ADDR_MAX);
	if (domain_internal(m->cfg, p.domain)) {
		/* Local submission is trusted, and "postsuper -r" re-queues
		 * mail this milter already rewrote through the non-SMTP path. */
		res = m->non_smtp ? SBX_ROUTE_PASS :
		    refuse(m, r, arg, &p, params, "550", "5.1.1", addr, "internal address");
		goto out;
	}
	if (db == NULL) {
		res = tempfail(m, r, addr, sbx_xstrdup("no directory.db connection"));
		goto out;
	}
	if ((rc = sbx_route_domain_hosted(db, p.domain, &err)) < 0) {
		res = tempfail(m, r, addr, err);
		goto out;
	}
	if (rc == 0) {
		res = SBX_ROUTE_PASS;
		goto out;
	}
	if (strlen(arg) > SBX_MAX_RCPT_ARG || sbx_addr_normalize(p.lookup, 0, &norm, &err) < 0) {
		free(err);
		res = refuse(m, r, arg, &p, params, "550", "5.1.1", addr, "no such user");
		goto out;
	}
	rc = expand(&e, norm, 0, &err);
	if (rc == -1) {
		res = tempfail(m, r, addr, err);
		goto out;
	}
	if (rc == -2) {
		res = refuse(m, r, arg, &p, params, "550", "5.4.6", addr, "too many forwards");
		goto out;
	}
	if (rc == 0) {
		res = refuse(m, r, arg, &p, params, "550", "5.1.1", addr, "no such user");
		goto out;
	}
	if (e.n == 0) {
		res = refuse(m, r, arg, &p, params, "550", "5.4.6", addr, "mail forwarding loop");
		goto out;
	}
	for (i = 0; i < e.n && e.v[i].kind == T_UNKNOWN; i++)
		;
	if (i == e.n) {         /* nothing but forwards to nobody */
		res = refuse(m, r, arg, &p, params, "550", "5.1.1", addr, "no such user");
		goto out;
	}
	if (!m->non_smtp) {
		/* non-SMTP mail cannot be deferred per recipient: there lmtpd
		 * answers 452 per mailbox and Postfix's queue retries */
		if ((rc = all_full(db, m, &e, &err)) < 0) {
			res = tempfail(m, r, addr, err);
			goto out;
		}
		if (rc > 0) {
			reply_set(r, SBX_ROUTE_DEFER, "452", "4.2.2",
				  "<%s>: Recipient address rejected: mailbox full", addr);
			r->detail = sbx_xstrdup("mailbox full");
			res = r->result;
			goto out;
		}
	}
	if (!fits(m, arg, &e)) {
		res = too_many(m, r);
		goto out;
	}
	r->detail = targets_detail(e.v, e.n);
	record(m, arg, &p, params, &e);
	r->result = res = SBX_ROUTE_ROUTED;
out:
	expansion_free(&e);
	free(norm);
	parsed_free(&p);
	return res;
}

int
sbx_route_eoh(struct sbx_route_msg *m, struct sbx_route_reply *r)
{
	memset(r, 0, sizeof(*r));
	if (m->later_code != NULL) {
		reply_set(r, m->later_code[0] == '4' ? SBX_ROUTE_DEFER : SBX_ROUTE_REJECT,
			  m->later_code, m->later_xcode, "%s", m->later_text);
		r->detail = sbx_xstrdup("non-SMTP recipient failure");
		return -1;
	}
	return m->nrcpts == 0 ? 1 : 0;
}

/* "<local@domain>", the local part quoted when it is not a dot-atom. */
static char *
rcpt_form(const char *addr)
{
	const char *at = strrchr(addr, '@');
	struct sbx_buf b = { 0 };
	size_t i, llen;

	if (at == NULL || is_dot_atom(addr, (size_t)(at - addr), 1))
		return sbx_xasprintf("<%s>", addr);
	llen = (size_t)(at - addr);
	sbx_buf_append(&b, "<\"", 2);
	for (i = 0; i < llen; i++) {
		if (addr[i] == '"' || addr[i] == '\\')
			sbx_buf_append(&b, "\\", 1);
		sbx_buf_append(&b, addr + i, 1);
	}
	sbx_buf_appendf(&b, "\"%s>", at);
	sbx_buf_append(&b, "", 1);
	return b.data;
}

int
sbx_route_eom(struct sbx_route_msg *m, struct sbx_route_op **ops_r, size_t *n_r,
	      struct sbx_route_reply *r)
{
	struct sbx_route_op *ops;
	size_t i, n = 0;
	int rc;

	*ops_r = NULL;
	*n_r = 0;
	if ((rc = sbx_route_eoh(m, r)) < 0)
		return -1;
	if (rc > 0)
		return 0;
	ops = sbx_xcalloc(m->nrcpts + m->ntargets, sizeof(*ops));
	for (i = 0; i < m->nrcpts; i++) {
		ops[n].add = 0;
		ops[n++].rcpt = sbx_xstrdup(m->rcpts[i].arg);
	}
	for (i = 0; i < m->ntargets; i++) {
		const struct target *t = &m->targets[i];
		const struct rcpt *rc0 = &m->rcpts[t->rcpt];
		struct sbx_buf b = { 0 };
		char *orcpt = sbx_orcpt_encode(rc0->orcpt);

		switch (t->kind) {
		case T_MAILBOX:
			ops[n].rcpt = sbx_xasprintf("<%s@%s>", t->value, m->cfg->mailbox_domain);
			break;
		case T_WEBHOOK:
			ops[n].rcpt = sbx_xasprintf("<%s@%s>", t->value, m->cfg->webhook_domain);
			break;
		case T_FORWARD:
			ops[n].rcpt = rcpt_form(t->value);
			break;
		case T_UNKNOWN:
			ops[n].rcpt = sbx_xasprintf("<%s@%s>", t->value, m->cfg->unknown_domain);
			break;
		}
		if (orcpt != NULL)
			sbx_buf_appendf(&b, "ORCPT=%s", orcpt);
		if (rc0->notify != NULL)
			sbx_buf_appendf(&b, "%sNOTIFY=%s", b.len ? " " : "", rc0->notify);
		if (b.len > 0) {
			sbx_buf_append(&b, "", 1);
			ops[n].args = b.data;
		}
		free(orcpt);
		ops[n++].add = 1;
	}
	*ops_r = ops;
	*n_r = n;
	return 0;
}

void
sbx_route_ops_free(struct sbx_route_op *ops, size_t n)
{
	size_t i;

	if (ops == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(ops[i].rcpt);
		free(ops[i].args);
	}
	free(ops);
}
