/*
 * lmtp.c - the LMTP (RFC 2033) protocol engine: see lmtp.h for the API,
 * the reply codes and the decisions (line endings, BINARYMIME, BDAT).
 *
 * Input sits in s->in from s->in_off to s->in_len. In command state the
 * engine takes one line at a time; in DATA state a byte-level state
 * machine copies the dot-unstuffed message into s->msg (up to max_size,
 * then only counts) and consumes everything up to the final CRLF "." CRLF,
 * so pipelined commands after the message stay in s->in.
 *
 * Replies built for one event go to s->out; sbx_lmtp_next() swaps them
 * into s->reply, which ev->reply points to until the next call.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lmtp.h"
#include "sbx_limits.h"
#include "util.h"

/* Largest message buffer reserved up front from a declared SIZE=. */
#define SBX_LMTP_MAX_RESERVE (4u << 20)

enum state {
	ST_CMD,        /* reading command lines */
	ST_RCPT_WAIT,  /* RCPT event returned, waiting for sbx_lmtp_rcpt_reply */
	ST_DATA,       /* reading the message */
	ST_MSG_WAIT,   /* MESSAGE event returned, collecting data replies */
	ST_CLOSED
};

/* DATA machine: where we are relative to the last CRLF. */
enum dstate {
	D_BOL,         /* just after CRLF (or the DATA command) */
	D_DOT,         /* "." at the beginning of a line */
	D_DOT_CR,      /* "." CR at the beginning of a line */
	D_MID,         /* inside a line */
	D_CR           /* after a CR inside a line */
};

struct sbx_lmtp_session {
	struct sbx_lmtp_limits lim;
	char *host;
	char *greeting;
	char *lhlo;

	char *in;                 /* unconsumed input: in[in_off..in_len) */
	size_t in_off, in_len, in_cap;
	int discarding;           /* skipping the rest of an over-long line */

	enum state state;
	unsigned ncommands, nerrors;
	char *close_reply;        /* CLOSE to return once out is empty */

	int in_mail;
	struct sbx_lmtp_mail mail;
	struct sbx_lmtp_xforward xf;
	struct sbx_lmtp_rcpt *pending;   /* RCPT waiting for a verdict */
	struct sbx_lmtp_rcpt **rcpts;    /* accepted, in order */
	size_t nrcpts, rcpts_cap;

	enum dstate dstate;
	struct sbx_buf msg;
	uint64_t msg_size;        /* unstuffed bytes seen (may exceed max_size) */

	char **dreplies;          /* per accepted recipient, NULL until answered */
	size_t dnext;             /* next reply to emit */

	struct sbx_buf out;       /* replies being built */
	struct sbx_buf reply;     /* what ev->reply points to */
};

void
sbx_lmtp_limits_default(struct sbx_lmtp_limits *lim)
{
	lim->max_line = SBX_LMTP_DEF_MAX_LINE;
	lim->max_rcpts = SBX_LMTP_DEF_MAX_RCPTS;
	lim->max_size = SBX_DEF_MESSAGE_SIZE;
	lim->max_commands = SBX_LMTP_DEF_MAX_COMMANDS;
	lim->max_errors = SBX_LMTP_DEF_MAX_ERRORS;
}

/* ---- small helpers ---- */

static int
is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static int
is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int
is_ws(char c)
{
	return c == ' ' || c == '\t';
}

/* 1 if p[0..len) is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF). */
static int
utf8_valid(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];
		size_t n, k;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (len - i <= n)
			return 0;
		for (k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

static size_t
utf8_put(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static int
has_controls(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

static int
has_non_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

/* xtext (RFC 3461) into a new string; raw bytes >= 0x80 allowed if utf8. */
static int
xtext_decode(const char *in, size_t len, int utf8, char **out_r)
{
	char *out = sbx_xmalloc(len + 1);
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '+') {
			int hi, lo;

			if (len - i < 3 || (hi = sbx_hexval(in[i + 1])) < 0 ||
			    (lo = sbx_hexval(in[i + 2])) < 0 || (hi | lo) == 0)
				goto bad;
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else if ((c >= '!' && c <= '~' && c != '=') || (utf8 && c >= 0x80)) {
			out[o++] = (char)c;
		} else {
			goto bad;
		}
	}
	out[o] = '\0';
	*out_r = out;
	return 0;
bad:
	free(out);
	return -1;
}

int
sbx_lmtp_xtext_decode(const char *in, size_t len, char **out_r)
{
	return xtext_decode(in, len, 0, out_r);
}

/* RFC 6533 \x{HEX} escapes of s, in place; a '\' elsewhere is an error. */
static int
uxtext_unescape(char *s)
{
	char *r = s, *w = s;

	while (*r != '\0') {
		uint32_t cp = 0;
		size_t n = 0;

		if (*r != '\\') {
			*w++ = *r++;
			continue;
		}
		if (r[1] != 'x' || r[2] != '{')
			return -1;
		r += 3;
		while (sbx_hexval(*r) >= 0 && n < 6) {
			cp = cp << 4 | (uint32_t)sbx_hexval(*r);
			r++;
			n++;
		}
		if (n == 0 || *r != '}' || cp == 0 || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return -1;
		r++;
		/* Each escape is at least 5 bytes and becomes at most 4. */
		w += utf8_put(w, cp);
	}
	*w = '\0';
	return 0;
}

int
sbx_lmtp_orcpt_decode(const char *type, const char *in, size_t len, char **out_r)
{
	int utf8 = strcasecmp(type, "utf-8") == 0;
	char *out;

	/* Postfix smtpd xtext-decodes every ORCPT; RFC 6533 never produces
	 * '+' in the utf-8 forms, so the two decodings cannot clash. */
	if (xtext_decode(in, len, utf8, &out) < 0)
		return -1;
	if ((utf8 && uxtext_unescape(out) < 0) || out[0] == '\0' ||
	    !utf8_valid((const unsigned char *)out, strlen(out)) || has_controls(out) ||
	    (!utf8 && strcasecmp(type, "rfc822") != 0 && has_non_ascii(out))) {
		free(out);
		return -1;
	}
	*out_r = out;
	return 0;
}

/* ---- replies ---- */

/* Append one reply line: text (no CRLF), controls -> '?', cut to fit. */
static void
out_line(struct sbx_lmtp_session *s, const char *text)
{
	size_t n = strlen(text), i;
	size_t max = SBX_LMTP_MAX_REPLY_LINE - 2;
	char line[SBX_LMTP_MAX_REPLY_LINE];

	if (n > max)
		n = max;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)text[i];

		line[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	line[n++] = '\r';
	line[n++] = '\n';
	sbx_buf_append(&s->out, line, n);
}

static void
out_fmt(struct sbx_lmtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
out_fmt(struct sbx_lmtp_session *s, const char *fmt, ...)
{
	char line[SBX_LMTP_MAX_REPLY_LINE];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(line, sizeof(line), fmt, ap);   /* truncation is fine */
	va_end(ap);
	out_line(s, line);
}

/* Queue "code host text" as the CLOSE reply (code: "421 4.x.x"). */
static void
close_with(struct sbx_lmtp_session *s, const char *code, const char *text)
{
	char line[SBX_LMTP_MAX_REPLY_LINE];

	if (s->close_reply != NULL)
		return;
	(void)snprintf(line, sizeof(line) - 2, "%s %s %s", code, s->host, text);
	s->close_reply = sbx_xasprintf("%s\r\n", line);
}

/* A protocol error reply; after max_errors of them, 421 and close. */
static void
out_error(struct sbx_lmtp_session *s, const char *text)
{
	out_line(s, text);
	if (++s->nerrors >= s->lim.max_errors)
		close_with(s, "421 4.7.0", "Error: too many errors, closing connection");
}

/* 1 if text is "DDD" or "DDD ..." with a first digit in classes. */
static int
reply_ok(const char *text, const char *classes)
{
	if (text == NULL || text[0] == '\0' || strchr(classes, text[0]) == NULL)
		return 0;
	if (text[1] < '0' || text[1] > '9' || text[2] < '0' || text[2] > '9')
		return 0;
	return text[3] == '\0' || text[3] == ' ';
}

/* ---- transaction state ---- */

static void
rcpt_free(struct sbx_lmtp_rcpt *r)
{
	if (r == NULL)
		return;
	free(r->addr);
	free(r->local);
	free(r->domain);
	free(r->orcpt_type);
	free(r->orcpt);
	free(r);
}

static void
xforward_clear(struct sbx_lmtp_xforward *x)
{
	free(x->name);
	free(x->addr);
	free(x->port);
	free(x->proto);
	free(x->helo);
	free(x->ident);
	free(x->source);
	memset(x, 0, sizeof(*x));
}

static void
mail_clear(struct sbx_lmtp_mail *m)
{
	free(m->from);
	free(m->from_local);
	free(m->from_domain);
	free(m->envid);
	memset(m, 0, sizeof(*m));
}

/* End of a transaction (message done, RSET, LHLO); like Postfix smtpd the
 * XFORWARD attributes go with it. */
static void
transaction_reset(struct sbx_lmtp_session *s)
{
	size_t i;

	for (i = 0; i < s->nrcpts; i++)
		rcpt_free(s->rcpts[i]);
	if (s->dreplies != NULL) {
		for (i = 0; i < s->nrcpts; i++)
			free(s->dreplies[i]);
		free(s->dreplies);
		s->dreplies = NULL;
	}
	s->nrcpts = 0;
	s->dnext = 0;
	rcpt_free(s->pending);
	s->pending = NULL;
	mail_clear(&s->mail);
	xforward_clear(&s->xf);
	s->in_mail = 0;
	sbx_buf_free(&s->msg);
	s->msg_size = 0;
}

/* ---- session ---- */

struct sbx_lmtp_session *
sbx_lmtp_session_new(const struct sbx_lmtp_limits *limits, const char *hostname)
{
	struct sbx_lmtp_session *s = sbx_xcalloc(1, sizeof(*s));
	struct sbx_lmtp_limits def;
	size_t i, n;

	sbx_lmtp_limits_default(&def);
	if (limits != NULL) {
		s->lim = *limits;
		if (s->lim.max_line == 0)
			s->lim.max_line = def.max_line;
		if (s->lim.max_line < SBX_LMTP_MIN_MAX_LINE)
			s->lim.max_line = SBX_LMTP_MIN_MAX_LINE;
		if (s->lim.max_rcpts == 0)
			s->lim.max_rcpts = def.max_rcpts;
		if (s->lim.max_size == 0)
			s->lim.max_size = def.max_size;
		if (s->lim.max_size > (uint64_t)SBX_MAX_MESSAGE_SIZE)
			s->lim.max_size = SBX_MAX_MESSAGE_SIZE;
		if (s->lim.max_commands == 0)
			s->lim.max_commands = def.max_commands;
		if (s->lim.max_errors == 0)
			s->lim.max_errors = def.max_errors;
	} else {
		s->lim = def;
	}
	if (hostname == NULL || *hostname == '\0')
		hostname = "localhost";
	n = strnlen(hostname, SBX_LMTP_MAX_HOSTNAME);
	s->host = sbx_xstrndup(hostname, n);
	for (i = 0; i < n; i++)
		if ((unsigned char)s->host[i] <= ' ' || (unsigned char)s->host[i] >= 0x7f)
			s->host[i] = '?';
	s->greeting = sbx_xasprintf("220 %s LMTP sealbox ready\r\n", s->host);
	s->state = ST_CMD;
	return s;
}

void
sbx_lmtp_session_free(struct sbx_lmtp_session **sp)
{
	struct sbx_lmtp_session *s;

	if (sp == NULL || (s = *sp) == NULL)
		return;
	transaction_reset(s);
	free(s->rcpts);
	free(s->host);
	free(s->greeting);
	free(s->lhlo);
	free(s->in);
	free(s->close_reply);
	sbx_buf_free(&s->out);
	sbx_buf_free(&s->reply);
	free(s);
	*sp = NULL;
}

const char *
sbx_lmtp_greeting(struct sbx_lmtp_session *s)
{
	return s->greeting;
}

/* Most unconsumed command bytes held: max_rcpts + 8 maximal lines. */
static size_t
pipeline_cap(const struct sbx_lmtp_session *s)
{
	return s->lim.max_line * ((size_t)s->lim.max_rcpts + 8);
}

void
sbx_lmtp_feed(struct sbx_lmtp_session *s, const void *data, size_t len)
{
	size_t keep;

	if (s->state == ST_CLOSED || s->close_reply != NULL || len == 0)
		return;
	keep = s->in_len - s->in_off;
	/* Safety net for a daemon that keeps reading while the engine waits:
	 * no legitimate pipelined group before the 354 is longer than this. */
	if (s->state != ST_DATA && (len > pipeline_cap(s) || keep > pipeline_cap(s) - len)) {
		close_with(s, "421 4.7.0", "Error: too much pipelined input, closing connection");
		return;
	}
	if (s->in_off > 0) {
		memmove(s->in, s->in + s->in_off, keep);
		s->in_off = 0;
		s->in_len = keep;
	}
	if (len > s->in_cap - s->in_len) {
		size_t cap = s->in_cap ? s->in_cap : 4096;

		while (cap - s->in_len < len) {
			if (cap > SIZE_MAX / 2)
				abort();   /* cannot happen: fed bytes exist in memory */
			cap *= 2;
		}
		s->in = sbx_xrealloc(s->in, cap);
		s->in_cap = cap;
	}
	memcpy(s->in + s->in_len, data, len);
	s->in_len += len;
}

size_t
sbx_lmtp_buffered(const struct sbx_lmtp_session *s)
{
	return s->in_len - s->in_off + s->msg.len;
}

const struct sbx_lmtp_mail *
sbx_lmtp_mail(const struct sbx_lmtp_session *s)
{
	return s->in_mail ? &s->mail : NULL;
}

const struct sbx_lmtp_xforward *
sbx_lmtp_xforward(const struct sbx_lmtp_session *s)
{
	return &s->xf;
}

const char *
sbx_lmtp_lhlo_name(const struct sbx_lmtp_session *s)
{
	return s->lhlo;
}

/* ---- address parsing (RFC 5321 4.1.2, RFC 6531 3.3) ---- */

struct addr {
	char *addr, *local, *domain;
};

enum { A_OK = 0, A_SYNTAX = -1, A_UTF8 = -2 };

/* Domain or address literal at p[*i..end); advances *i. */
static int
parse_domain(const char *p, size_t end, size_t *i, int *nonascii)
{
	size_t j = *i;

	if (j < end && p[j] == '[') {
		for (j++; j < end && p[j] != ']'; j++) {
			unsigned char c = (unsigned char)p[j];

			if (c < 33 || c > 126 || c == '[' || c == '\\')
				return A_SYNTAX;
		}
		if (j >= end || j == *i + 1)
			return A_SYNTAX;
		*i = j + 1;
		return A_OK;
	}
	for (;;) {
		size_t start = j;

		while (j < end) {
			unsigned char c = (unsigned char)p[j];

			if (c >= 0x80)
				*nonascii = 1;
			else if (!is_alnum(c) && c != '-')
				break;
			j++;
		}
		if (j == start || p[start] == '-' || p[j - 1] == '-')
			return A_SYNTAX;
		if (j < end && p[j] == '.' && j + 1 < end) {
			j++;
			continue;
		}
		break;
	}
	*i = j;
	return A_OK;
}

/*
 * Path at p[*i..end) starting with '<'. empty_ok: "<>" allowed (MAIL);
 * rcpt: "<postmaster>" allowed. On A_OK fills a (new strings), advances *i.
 */
static int
parse_path(const char *p, size_t end, size_t *i, int empty_ok, int rcpt, int utf8,
	   struct addr *a)
{
	size_t j = *i, mstart, lstart, lend, dstart;
	int nonascii = 0, quoted = 0, rc;
	char *local;
	size_t k, o;

	if (j >= end || p[j] != '<')
		return A_SYNTAX;
	j++;
	if (j < end && p[j] == '>') {
		if (!empty_ok)
			return A_SYNTAX;
		a->addr = sbx_xstrdup("");
		a->local = sbx_xstrdup("");
		a->domain = sbx_xstrdup("");
		*i = j + 1;
		return A_OK;
	}
	/* Source route "@a,@b:" - parsed and ignored (RFC 5321 C). */
	if (j < end && p[j] == '@') {
		for (;;) {
			j++;
			if ((rc = parse_domain(p, end, &j, &nonascii)) != A_OK)
				return rc;
			if (j < end && p[j] == ',' && j + 1 < end && p[j + 1] == '@') {
				j++;
				continue;
			}
			break;
		}
		if (j >= end || p[j] != ':')
			return A_SYNTAX;
		j++;
	}
	mstart = j;
	if (j < end && p[j] == '"') {
		quoted = 1;
		for (j++; j < end && p[j] != '"'; j++) {
			unsigned char c = (unsigned char)p[j];

			if (c == '\\') {
				j++;
				if (j >= end || (unsigned char)p[j] < 32 || (unsigned char)p[j] > 126)
					return A_SYNTAX;
			} else if (c >= 0x80) {
				nonascii = 1;
			} else if (c < 32 || c > 126) {
				return A_SYNTAX;
			}
		}
		if (j >= end)
			return A_SYNTAX;
		lstart = mstart + 1;
		lend = j;
		j++;
	} else {
		for (;;) {
			size_t start = j;

			while (j < end && (is_atext((unsigned char)p[j]) ||
					   (unsigned char)p[j] >= 0x80)) {
				if ((unsigned char)p[j] >= 0x80)
					nonascii = 1;
				j++;
			}
			if (j == start)
				return A_SYNTAX;
			if (j < end && p[j] == '.') {
				j++;
				continue;
			}
			break;
		}
		lstart = mstart;
		lend = j;
	}
	if (j < end && p[j] == '@') {
		j++;
		dstart = j;
		if ((rc = parse_domain(p, end, &j, &nonascii)) != A_OK)
			return rc;
	} else {
		/* RFC 5321 4.5.1: RCPT TO:<Postmaster> without a domain. */
		if (!rcpt || quoted || lend - lstart != 10 ||
		    strncasecmp(p + lstart, "postmaster", 10) != 0)
			return A_SYNTAX;
		dstart = j;
	}
	if (j >= end || p[j] != '>')
		return A_SYNTAX;
	if (nonascii) {
		if (!utf8)
			return A_UTF8;
		if (!utf8_valid((const unsigned char *)p + mstart, j - mstart))
			return A_SYNTAX;
	}
	local = sbx_xmalloc(lend - lstart + 1);
	for (k = lstart, o = 0; k < lend; k++) {
		if (quoted && p[k] == '\\')
			k++;
		local[o++] = p[k];
	}
	local[o] = '\0';
	a->addr = sbx_xstrndup(p + mstart, j - mstart);
	a->local = local;
	a->domain = sbx_xstrndup(p + dstart, j - dstart);
	*i = j + 1;
	return A_OK;
}

/*
 * The next "keyword[=value]" of p[*i..end) after at least one blank;
 * 1 with the parts set, 0 at the end, -1 on a syntax error.
 */
static int
next_param(const char *p, size_t end, size_t *i, const char **kw, size_t *kwlen,
	   const char **val, size_t *vlen)
{
	size_t j = *i, k;

	if (j < end && !is_ws(p[j]))
		return -1;
	while (j < end && is_ws(p[j]))
		j++;
	if (j >= end) {
		*i = j;
		return 0;
	}
	k = j;
	while (j < end && (is_alnum((unsigned char)p[j]) || (j > k && p[j] == '-')))
		j++;
	if (j == k)
		return -1;
	*kw = p + k;
	*kwlen = j - k;
	*val = NULL;
	*vlen = 0;
	if (j < end && p[j] == '=') {
		k = ++j;
		while (j < end && !is_ws(p[j])) {
			unsigned char c = (unsigned char)p[j];

			if (c < 33 || c == '=' || c == 0x7f)
				return -1;
			j++;
		}
		if (j == k)
			return -1;
		*val = p + k;
		*vlen = j - k;
	}
	*i = j;
	return 1;
}

static int
kw_is(const char *kw, size_t len, const char *name)
{
	return strlen(name) == len && strncasecmp(kw, name, len) == 0;
}

static int
val_is(const char *v, size_t len, const char *name)
{
	return v != NULL && kw_is(v, len, name);
}

/* Skip "FROM:" / "TO:" and optional blanks; -1 if absent. */
static int
expect_prefix(const char *p, size_t end, size_t *i, const char *word)
{
	size_t n = strlen(word), j = *i;

	while (j < end && is_ws(p[j]))
		j++;
	if (end - j < n || strncasecmp(p + j, word, n) != 0)
		return -1;
	j += n;
	while (j < end && is_ws(p[j]))   /* Postfix sends none; others do */
		j++;
	*i = j;
	return 0;
}

/* ---- commands ---- */

static void
cmd_lhlo(struct sbx_lmtp_session *s, const char *arg, size_t len)
{
	while (len > 0 && is_ws(arg[len - 1]))
		len--;
	if (len == 0 || len > SBX_LMTP_MAX_HOSTNAME) {
		out_error(s, "501 5.5.4 Syntax: LHLO hostname");
		return;
	}
	free(s->lhlo);
	s->lhlo = sbx_xstrndup(arg, len);
	transaction_reset(s);   /* RFC 5321 4.1.4: like RSET */
	out_fmt(s, "250-%s", s->host);
	out_line(s, "250-PIPELINING");
	out_fmt(s, "250-SIZE %llu", (unsigned long long)s->lim.max_size);
	out_line(s, "250-ENHANCEDSTATUSCODES");
	out_line(s, "250-8BITMIME");
	out_line(s, "250-DSN");
	out_line(s, "250-SMTPUTF8");
	/* The attribute list and order of Postfix smtpd's own EHLO reply. */
	out_line(s, "250 XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT");
}

static int
parse_u64(const char *v, size_t len, uint64_t *out)
{
	uint64_t n = 0;
	size_t i;

	if (len == 0 || len > 20)
		return -1;
	for (i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		if (n > (UINT64_MAX - (uint64_t)(v[i] - '0')) / 10)
			return -1;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	*out = n;
	return 0;
}

static void
cmd_mail(struct sbx_lmtp_session *s, const char *p, size_t end)
{
	struct sbx_lmtp_mail m;
	struct addr a;
	size_t i = 0, pathpos, parampos, kwlen, vlen;
	const char *kw, *val;
	int rc, seen_size = 0, seen_body = 0, seen_ret = 0, seen_utf8 = 0;

	if (s->lhlo == NULL) {
		out_error(s, "503 5.5.1 Error: send LHLO first");
		return;
	}
	if (s->in_mail) {
		out_error(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (expect_prefix(p, end, &i, "FROM:") < 0 || i >= end || p[i] != '<') {
		out_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	/* Parameters first: SMTPUTF8 decides whether the address may be UTF-8. */
	pathpos = i;
	while (i < end && p[i] != '>') {
		if (p[i] == '"') {
			for (i++; i < end && p[i] != '"'; i++)
				if (p[i] == '\\')
					i++;
		}
		if (i < end)
			i++;
	}
	if (i >= end) {
		out_error(s, "501 5.1.7 Bad sender address syntax");
		return;
	}
	parampos = ++i;
	memset(&m, 0, sizeof(m));
	while ((rc = next_param(p, end, &i, &kw, &kwlen, &val, &vlen)) > 0) {
		if (kw_is(kw, kwlen, "SIZE")) {
			if (seen_size++ || val == NULL || parse_u64(val, vlen, &m.size) < 0) {
				out_error(s, "501 5.5.4 Bad SIZE parameter");
				goto fail;
			}
			m.has_size = 1;
		} else if (kw_is(kw, kwlen, "BODY")) {
			if (seen_body++) {
				out_error(s, "501 5.5.4 Bad BODY parameter");
				goto fail;
			}
			if (val_is(val, vlen, "7BIT")) {
				m.body = SBX_LMTP_BODY_7BIT;
			} else if (val_is(val, vlen, "8BITMIME")) {
				m.body = SBX_LMTP_BODY_8BITMIME;
			} else if (val_is(val, vlen, "BINARYMIME")) {
				out_error(s, "555 5.5.4 BODY=BINARYMIME requires CHUNKING, not offered");
				goto fail;
			} else {
				out_error(s, "501 5.5.4 Bad BODY parameter");
				goto fail;
			}
		} else if (kw_is(kw, kwlen, "SMTPUTF8")) {
			if (seen_utf8++ || val != NULL) {
				out_error(s, "501 5.5.4 Bad SMTPUTF8 parameter");
				goto fail;
			}
			m.smtputf8 = 1;
		} else if (kw_is(kw, kwlen, "RET")) {
			if (seen_ret++) {
				out_error(s, "501 5.5.4 Bad RET parameter");
				goto fail;
			}
			if (val_is(val, vlen, "FULL"))
				m.ret = SBX_LMTP_RET_FULL;
			else if (val_is(val, vlen, "HDRS"))
				m.ret = SBX_LMTP_RET_HDRS;
			else {
				out_error(s, "501 5.5.4 Bad RET parameter");
				goto fail;
			}
		} else if (kw_is(kw, kwlen, "ENVID")) {
			/* RFC 3461 4.4: printable ASCII, at most 100 characters. */
			if (m.envid != NULL || val == NULL ||
			    xtext_decode(val, vlen, 0, &m.envid) < 0 ||
			    strlen(m.envid) > 100 || has_controls(m.envid)) {
				out_error(s, "501 5.5.4 Bad ENVID parameter");
				goto fail;
			}
		} else {
			out_error(s, "555 5.5.4 Unsupported option");
			goto fail;
		}
	}
	if (rc < 0) {
		out_error(s, "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]");
		goto fail;
	}
	i = pathpos;
	memset(&a, 0, sizeof(a));
	rc = parse_path(p, end, &i, 1, 0, m.smtputf8, &a);
	if (rc == A_OK && i != parampos) {
		/* A '>' inside an address literal fooled the scan above. */
		free(a.addr);
		free(a.local);
		free(a.domain);
		rc = A_SYNTAX;
	}
	if (rc == A_UTF8) {
		out_error(s, "553 5.6.7 Must declare SMTPUTF8 to send UTF-8 address");
		goto fail;
	}
	if (rc != A_OK) {
		out_error(s, "501 5.1.7 Bad sender address syntax");
		goto fail;
	}
	if (m.has_size && m.size > s->lim.max_size) {
		free(a.addr);
		free(a.local);
		free(a.domain);
		out_line(s, "552 5.3.4 Message size exceeds fixed limit");
		goto fail;
	}
	m.from = a.addr;
	m.from_local = a.local;
	m.from_domain = a.domain;
	mail_clear(&s->mail);
	s->mail = m;
	s->in_mail = 1;
	out_line(s, "250 2.1.0 Ok");
	return;
fail:
	mail_clear(&m);
}

/* NOTIFY=NEVER | SUCCESS,FAILURE,DELAY (RFC 3461 4.1). */
static int
parse_notify(const char *v, size_t len, unsigned *out)
{
	unsigned bits = 0;
	size_t i = 0;

	if (v == NULL)
		return -1;
	while (i <= len) {
		size_t j = i;
		unsigned bit;

		while (j < len && v[j] != ',')
			j++;
		if (kw_is(v + i, j - i, "NEVER"))
			bit = SBX_LMTP_NOTIFY_NEVER;
		else if (kw_is(v + i, j - i, "SUCCESS"))
			bit = SBX_LMTP_NOTIFY_SUCCESS;
		else if (kw_is(v + i, j - i, "FAILURE"))
			bit = SBX_LMTP_NOTIFY_FAILURE;
		else if (kw_is(v + i, j - i, "DELAY"))
			bit = SBX_LMTP_NOTIFY_DELAY;
		else
			return -1;
		if (bits & bit)
			return -1;
		bits |= bit;
		i = j + 1;
	}
	if ((bits & SBX_LMTP_NOTIFY_NEVER) && bits != SBX_LMTP_NOTIFY_NEVER)
		return -1;
	*out = bits;
	return 0;
}

/* ORCPT=addr-type ";" xtext (RFC 3461 4.2, RFC 6533 3). */
static int
parse_orcpt(const char *v, size_t len, struct sbx_lmtp_rcpt *r)
{
	const char *semi;
	size_t tlen, k;
	char *type;

	if (v == NULL || (semi = memchr(v, ';', len)) == NULL)
		return -1;
	tlen = (size_t)(semi - v);
	if (tlen == 0 || tlen > 32)
		return -1;
	for (k = 0; k < tlen; k++)
		if (!is_atext((unsigned char)v[k]))
			return -1;
	type = sbx_xstrndup(v, tlen);
	for (k = 0; k < tlen; k++)
		if (type[k] >= 'A' && type[k] <= 'Z')
			type[k] = (char)(type[k] - 'A' + 'a');
	if (sbx_lmtp_orcpt_decode(type, semi + 1, len - tlen - 1, &r->orcpt) < 0) {
		free(type);
		return -1;
	}
	r->orcpt_type = type;
	return 0;
}

/* 1: RCPT event pending; 0: a reply is in s->out. */
static int
cmd_rcpt(struct sbx_lmtp_session *s, const char *p, size_t end)
{
	struct sbx_lmtp_rcpt *r;
	struct addr a;
	size_t i = 0, kwlen, vlen;
	const char *kw, *val;
	int rc, seen_notify = 0;

	if (!s->in_mail) {
		out_error(s, "503 5.5.1 Error: need MAIL command");
		return 0;
	}
	if (expect_prefix(p, end, &i, "TO:") < 0 || i >= end || p[i] != '<') {
		out_error(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return 0;
	}
	memset(&a, 0, sizeof(a));
	rc = parse_path(p, end, &i, 0, 1, s->mail.smtputf8, &a);
	if (rc == A_UTF8) {
		out_error(s, "553 5.6.7 Must declare SMTPUTF8 to send UTF-8 address");
		return 0;
	}
	if (rc != A_OK) {
		out_error(s, "501 5.1.3 Bad recipient address syntax");
		return 0;
	}
	r = sbx_xcalloc(1, sizeof(*r));
	r->addr = a.addr;
	r->local = a.local;
	r->domain = a.domain;
	while ((rc = next_param(p, end, &i, &kw, &kwlen, &val, &vlen)) > 0) {
		if (kw_is(kw, kwlen, "NOTIFY")) {
			if (seen_notify++ || parse_notify(val, vlen, &r->notify) < 0) {
				out_error(s, "501 5.5.4 Bad NOTIFY parameter syntax");
				goto fail;
			}
		} else if (kw_is(kw, kwlen, "ORCPT")) {
			if (r->orcpt != NULL || parse_orcpt(val, vlen, r) < 0) {
				out_error(s, "501 5.5.4 Bad ORCPT parameter syntax");
				goto fail;
			}
		} else {
			out_error(s, "555 5.5.4 Unsupported option");
			goto fail;
		}
	}
	if (rc < 0) {
		out_error(s, "501 5.5.4 Syntax: RCPT TO:<address> [parameters]");
		goto fail;
	}
	if (s->nrcpts >= s->lim.max_rcpts) {
		out_line(s, "452 4.5.3 Error: too many recipients");
		goto fail;
	}
	s->pending = r;
	s->state = ST_RCPT_WAIT;
	return 1;
fail:
	rcpt_free(r);
	return 0;
}

/* XFORWARD attr=value... (Postfix XFORWARD_README). All or nothing. */
static void
cmd_xforward(struct sbx_lmtp_session *s, const char *p, size_t end)
{
	static const char *const names[] = {
		"NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"
	};
	struct sbx_lmtp_xforward nx;
	char **slots[7], **nslots[7];
	int set[7] = { 0 };
	size_t i = 0, kwlen, vlen, k;
	const char *kw, *val;
	int rc, n = 0;

	if (s->lhlo == NULL) {
		out_error(s, "503 5.5.1 Error: send LHLO first");
		return;
	}
	if (s->in_mail) {
		out_error(s, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	memset(&nx, 0, sizeof(nx));
	slots[0] = &s->xf.name;  nslots[0] = &nx.name;
	slots[1] = &s->xf.addr;  nslots[1] = &nx.addr;
	slots[2] = &s->xf.port;  nslots[2] = &nx.port;
	slots[3] = &s->xf.proto; nslots[3] = &nx.proto;
	slots[4] = &s->xf.helo;  nslots[4] = &nx.helo;
	slots[5] = &s->xf.ident; nslots[5] = &nx.ident;
	slots[6] = &s->xf.source; nslots[6] = &nx.source;
	if (i < end && !is_ws(p[i]))
		goto syntax;
	while ((rc = next_param(p, end, &i, &kw, &kwlen, &val, &vlen)) > 0) {
		for (k = 0; k < 7; k++)
			if (kw_is(kw, kwlen, names[k]))
				break;
		if (k == 7 || val == NULL || vlen > 255 || set[k])
			goto syntax;
		set[k] = 1;
		n++;
		if (val_is(val, vlen, "[UNAVAILABLE]") || val_is(val, vlen, "[TEMPUNAVAIL]"))
			continue;
		if (xtext_decode(val, vlen, 0, nslots[k]) < 0)
			goto syntax;
		/* Note 1 of XFORWARD_README: no controls, blanks or non-ASCII. */
		if ((*nslots[k])[0] == '\0' || has_controls(*nslots[k]) ||
		    has_non_ascii(*nslots[k]) ||
		    strchr(*nslots[k], ' ') != NULL)
			goto syntax;
	}
	if (rc < 0 || n == 0)
		goto syntax;
	for (k = 0; k < 7; k++) {
		if (!set[k])
			continue;
		free(*slots[k]);
		*slots[k] = *nslots[k];
	}
	out_line(s, "250 2.0.0 Ok");
	return;
syntax:
	xforward_clear(&nx);
	out_error(s, "501 5.5.4 Syntax: XFORWARD attribute=value...");
}

/* 1 if only blanks follow. */
static int
no_args(const char *p, size_t end)
{
	size_t i;

	for (i = 0; i < end; i++)
		if (!is_ws(p[i]))
			return 0;
	return 1;
}

/*
 * One command line (without its line ending). Returns the event type:
 * REPLY (in s->out), RCPT, or CLOSE (s->close_reply set).
 */
static enum sbx_lmtp_event_type
command(struct sbx_lmtp_session *s, const char *line, size_t len)
{
	size_t vlen = 0, k;
	const char *arg;
	size_t alen;

	for (k = 0; k < len; k++) {
		unsigned char c = (unsigned char)line[k];

		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			out_error(s, "500 5.5.2 Error: invalid character in command");
			return SBX_LMTP_REPLY;
		}
	}
	while (vlen < len && !is_ws(line[vlen]))
		vlen++;
	arg = line + vlen;
	alen = len - vlen;
#define VERB(name) kw_is(line, vlen, name)
	if (VERB("LHLO")) {
		while (alen > 0 && is_ws(*arg)) {
			arg++;
			alen--;
		}
		cmd_lhlo(s, arg, alen);
	} else if (VERB("MAIL")) {
		cmd_mail(s, arg, alen);
	} else if (VERB("RCPT")) {
		if (cmd_rcpt(s, arg, alen))
			return SBX_LMTP_RCPT;
	} else if (VERB("DATA")) {
		if (!no_args(arg, alen))
			out_error(s, "501 5.5.4 Syntax: DATA");
		else if (!s->in_mail)
			out_error(s, "503 5.5.1 Error: need MAIL command");
		else if (s->nrcpts == 0)
			out_line(s, "503 5.5.1 No valid recipients");
		else {
			out_line(s, "354 End data with <CR><LF>.<CR><LF>");
			s->state = ST_DATA;
			s->dstate = D_BOL;
			s->msg_size = 0;
			if (s->mail.has_size && s->msg.data == NULL) {
				/* SIZE= was checked against max_size at MAIL. */
				uint64_t want = s->mail.size + 64;

				if (want > s->lim.max_size)
					want = s->lim.max_size;
				if (want > SBX_LMTP_MAX_RESERVE)
					want = SBX_LMTP_MAX_RESERVE;
				s->msg.data = sbx_xmalloc((size_t)want);
				s->msg.cap = (size_t)want;
			}
		}
	} else if (VERB("RSET")) {
		if (!no_args(arg, alen)) {
			out_error(s, "501 5.5.4 Syntax: RSET");
		} else {
			transaction_reset(s);
			out_line(s, "250 2.0.0 Ok");
		}
	} else if (VERB("NOOP")) {
		out_line(s, "250 2.0.0 Ok");
	} else if (VERB("QUIT")) {
		s->close_reply = sbx_xasprintf("221 2.0.0 Bye\r\n");
		return SBX_LMTP_CLOSE;
	} else if (VERB("VRFY")) {
		out_line(s, "252 2.5.2 Cannot VRFY user, but will attempt delivery");
	} else if (VERB("HELP")) {
		out_line(s, "214 2.0.0 See RFC 2033");
	} else if (VERB("XFORWARD")) {
		cmd_xforward(s, arg, alen);
	} else if (VERB("HELO") || VERB("EHLO")) {
		out_error(s, "500 5.5.1 Error: this is LMTP, send LHLO");
	} else if (VERB("BDAT")) {
		/* The chunk that follows cannot be told apart from commands. */
		close_with(s, "421 4.5.1", "Error: BDAT not supported, closing connection");
		return SBX_LMTP_CLOSE;
	} else {
		out_error(s, "500 5.5.1 Error: command not recognized");
	}
#undef VERB
	return SBX_LMTP_REPLY;
}

/* ---- DATA ---- */

static void
msg_add(struct sbx_lmtp_session *s, const char *p, size_t n)
{
	uint64_t room;

	if (s->msg_size < s->lim.max_size) {
		room = s->lim.max_size - s->msg_size;
		sbx_buf_append(&s->msg, p, n < room ? n : (size_t)room);
	}
	s->msg_size += n;
}

/* Run the DATA machine over the buffered input; 1 at the final ".". */
static int
data_consume(struct sbx_lmtp_session *s)
{
	const char *p = s->in;
	size_t i = s->in_off, end = s->in_len;

	while (i < end) {
		char c = p[i];

		switch (s->dstate) {
		case D_BOL:
			if (c == '.') {
				s->dstate = D_DOT;
				i++;
				continue;
			}
			s->dstate = D_MID;
			continue;   /* same byte, inside a line */
		case D_DOT:
			if (c == '\r') {
				s->dstate = D_DOT_CR;
				i++;
				continue;
			}
			/* Dot-unstuffing: drop the leading dot. */
			s->dstate = D_MID;
			continue;
		case D_DOT_CR:
			if (c == '\n') {
				s->in_off = i + 1;
				return 1;
			}
			/* "." CR x: the dot goes, the CR stays. */
			msg_add(s, "\r", 1);
			s->dstate = D_CR;
			continue;
		case D_MID: {
			const char *cr = memchr(p + i, '\r', end - i);
			size_t n = cr ? (size_t)(cr - (p + i)) + 1 : end - i;

			msg_add(s, p + i, n);
			i += n;
			if (cr != NULL)
				s->dstate = D_CR;
			continue;
		}
		case D_CR:
			if (c == '\n') {
				msg_add(s, "\n", 1);
				s->dstate = D_BOL;
				i++;
			} else {
				s->dstate = D_MID;
			}
			continue;
		}
	}
	s->in_off = end;
	return 0;
}

/* ---- the event pump ---- */

static enum sbx_lmtp_event_type
emit_reply(struct sbx_lmtp_session *s, struct sbx_lmtp_event *ev)
{
	struct sbx_buf t = s->reply;

	s->reply = s->out;
	s->out = t;
	s->out.len = 0;
	ev->type = SBX_LMTP_REPLY;
	ev->reply = s->reply.data;
	ev->reply_len = s->reply.len;
	return SBX_LMTP_REPLY;
}

static enum sbx_lmtp_event_type
emit_close(struct sbx_lmtp_session *s, struct sbx_lmtp_event *ev)
{
	s->reply.len = 0;
	if (s->close_reply != NULL) {
		sbx_buf_append(&s->reply, s->close_reply, strlen(s->close_reply));
		free(s->close_reply);
		s->close_reply = NULL;
	}
	s->state = ST_CLOSED;
	transaction_reset(s);
	free(s->in);
	s->in = NULL;
	s->in_off = s->in_len = s->in_cap = 0;
	ev->type = SBX_LMTP_CLOSE;
	ev->reply = s->reply.data;
	ev->reply_len = s->reply.len;
	return SBX_LMTP_CLOSE;
}

/* The message is in; MESSAGE, or 552 per recipient when too large. */
static enum sbx_lmtp_event_type
data_done(struct sbx_lmtp_session *s, struct sbx_lmtp_event *ev)
{
	size_t i;

	if (s->msg_size > s->lim.max_size) {
		for (i = 0; i < s->nrcpts; i++)
			out_line(s, "552 5.3.4 Error: message file too big");
		transaction_reset(s);
		s->state = ST_CMD;
		return emit_reply(s, ev);
	}
	s->dreplies = sbx_xcalloc(s->nrcpts, sizeof(*s->dreplies));
	s->dnext = 0;
	s->state = ST_MSG_WAIT;
	s->ncommands = 0;   /* see max_commands in lmtp.h */
	ev->type = SBX_LMTP_MESSAGE;
	ev->msg = s->msg.data ? s->msg.data : "";
	ev->msg_len = s->msg.len;
	ev->rcpts = (const struct sbx_lmtp_rcpt *const *)s->rcpts;
	ev->nrcpts = s->nrcpts;
	return SBX_LMTP_MESSAGE;
}

enum sbx_lmtp_event_type
sbx_lmtp_next(struct sbx_lmtp_session *s, struct sbx_lmtp_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	s->reply.len = 0;
	if (s->out.len > 0)
		return emit_reply(s, ev);
	if (s->state == ST_CLOSED || s->close_reply != NULL)
		return emit_close(s, ev);
	switch (s->state) {
	case ST_RCPT_WAIT:
		ev->type = SBX_LMTP_WAIT;
		return SBX_LMTP_WAIT;
	case ST_MSG_WAIT:
		while (s->dnext < s->nrcpts && s->dreplies[s->dnext] != NULL) {
			out_line(s, s->dreplies[s->dnext]);
			s->dnext++;
		}
		if (s->dnext == s->nrcpts) {
			transaction_reset(s);
			s->state = ST_CMD;
		}
		if (s->out.len > 0)
			return emit_reply(s, ev);
		ev->type = SBX_LMTP_WAIT;
		return SBX_LMTP_WAIT;
	case ST_DATA:
		if (!data_consume(s))
			return SBX_LMTP_NONE;
		return data_done(s, ev);
	default:
		break;
	}
	/* ST_CMD: one command line. */
	for (;;) {
		size_t avail = s->in_len - s->in_off;
		const char *start, *lf;
		size_t len;

		if (avail == 0)
			return SBX_LMTP_NONE;   /* (s->in may be NULL) */
		start = s->in + s->in_off;
		lf = memchr(start, '\n', avail);

		if (s->discarding) {
			if (lf == NULL) {
				s->in_off = s->in_len;
				return SBX_LMTP_NONE;
			}
			s->in_off += (size_t)(lf - start) + 1;
			s->discarding = 0;
			continue;
		}
		if (lf == NULL && avail < s->lim.max_line)
			return SBX_LMTP_NONE;
		if (++s->ncommands > s->lim.max_commands) {
			close_with(s, "421 4.7.0", "Error: too many commands, closing connection");
			return emit_close(s, ev);
		}
		if (lf == NULL || (size_t)(lf - start) + 1 > s->lim.max_line) {
			if (lf == NULL) {
				s->in_off = s->in_len;
				s->discarding = 1;
			} else {
				s->in_off += (size_t)(lf - start) + 1;
			}
			out_error(s, "500 5.5.2 Error: line too long");
			return emit_reply(s, ev);
		}
		len = (size_t)(lf - start);
		s->in_off += len + 1;
		if (len > 0 && start[len - 1] == '\r')
			len--;
		switch (command(s, start, len)) {
		case SBX_LMTP_RCPT:
			ev->type = SBX_LMTP_RCPT;
			ev->rcpt = s->pending;
			return SBX_LMTP_RCPT;
		case SBX_LMTP_CLOSE:
			return emit_close(s, ev);
		default:
			return emit_reply(s, ev);
		}
	}
}

int
sbx_lmtp_rcpt_reply(struct sbx_lmtp_session *s, int accepted, const char *reply)
{
	if (s->state != ST_RCPT_WAIT || s->pending == NULL)
		return -1;
	if (accepted) {
		if (s->nrcpts == s->rcpts_cap) {
			s->rcpts_cap = s->rcpts_cap ? s->rcpts_cap * 2 : 8;
			s->rcpts = sbx_xrealloc(s->rcpts, s->rcpts_cap * sizeof(*s->rcpts));
		}
		s->rcpts[s->nrcpts++] = s->pending;
		s->pending = NULL;
		out_line(s, reply_ok(reply, "2") ? reply : "250 2.1.5 Ok");
	} else {
		rcpt_free(s->pending);
		s->pending = NULL;
		if (reply == NULL)
			out_line(s, "550 5.1.1 Recipient address rejected");
		else
			out_line(s, reply_ok(reply, "45") ? reply : "451 4.3.0 Internal error");
	}
	s->state = ST_CMD;
	return 0;
}

int
sbx_lmtp_data_reply(struct sbx_lmtp_session *s, size_t i, const char *reply)
{
	if (s->state != ST_MSG_WAIT || i >= s->nrcpts || s->dreplies[i] != NULL)
		return -1;
	s->dreplies[i] = sbx_xstrdup(reply_ok(reply, "245") ? reply : "451 4.3.0 Internal error");
	return 0;
}
