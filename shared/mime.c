/*
 * mime.c - IMAP ENVELOPE / BODYSTRUCTURE / BODY of a raw message.
 *
 * The MIME tree is found by a single pass over the raw bytes with a stack
 * of active boundaries (innermost first), as Dovecot's message parser does:
 * offsets, sizes and line counts must refer to the bytes as stored, and the
 * edge cases (bare CR, missing boundaries, parts in headers-only messages)
 * must follow one well-defined rule. See mime.h for the limits.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>

#include <gmime/gmime.h>

#include "mime.h"
#include "util.h"

#define MAX_HEADERS 1000	/* header fields kept per part */

struct hdr {
	const char *name;
	size_t name_len;
	char *value;		/* unfolded, leading WSP removed */
};

struct param {
	char *name;
	char *value;
};

struct params {
	struct param *v;
	size_t n, cap;
};

struct part {
	struct hdr *hdrs;
	size_t nhdrs;
	char *type, *subtype;
	struct params ct_params;
	int has_ct_params;	/* print params even when empty */
	char *disp;
	struct params disp_params;
	char *enc, *id, *desc, *md5, *loc;
	char **lang;
	size_t nlang;
	size_t hdr_start;	/* first byte of the header */
	size_t hdr_end;		/* end of the header as Dovecot counts it
				 * (<= body_start, see parse_headers) */
	size_t body_start, body_end;
	int opaque;		/* limit reached: printed as octet-stream */
	int synthetic;		/* empty part of a multipart without parts */
	struct part **children;
	size_t nchildren, children_cap;
	struct part *message;	/* message/rfc822: the inner message */
};

struct ctx {
	const char *d;
	size_t len;
	const char **bnd;	/* boundary stack, [0] outermost */
	size_t *bnd_len;
	size_t nbnd;
	size_t nparts;
};

/* How a part ended: at a boundary line (index in the stack) or at EOF. */
struct stop {
	size_t end;		/* end of the part body (before line end) */
	ssize_t idx;		/* matched boundary, -1 for end of data */
	int close;		/* "--boundary--" */
	size_t next;		/* first byte after the boundary line */
};

static pthread_once_t mime_once = PTHREAD_ONCE_INIT;

static void
mime_do_init(void)
{
	g_mime_init();
}

int
sbx_mime_init(void)
{
	pthread_once(&mime_once, mime_do_init);
	return 0;
}

/* ---- raw line helpers ---- */

static size_t
line_end(const struct ctx *c, size_t pos)
{
	const char *p = memchr(c->d + pos, '\n', c->len - pos);

	return p == NULL ? c->len : (size_t)(p - c->d);
}

/* Index of the innermost boundary the line at pos starts, or -1. */
static ssize_t
match_boundary(const struct ctx *c, size_t pos, int *close_r)
{
	size_t i, left = c->len - pos;

	if (left < 2 || c->d[pos] != '-' || c->d[pos + 1] != '-')
		return -1;
	for (i = c->nbnd; i-- > 0;) {
		size_t bl = c->bnd_len[i];

		if (left - 2 >= bl && memcmp(c->d + pos + 2, c->bnd[i], bl) == 0) {
			*close_r = left - 2 - bl >= 2 &&
			    c->d[pos + 2 + bl] == '-' && c->d[pos + 3 + bl] == '-';
			return (ssize_t)i;
		}
	}
	return -1;
}

/* Scan lines from pos (a line start) to the next boundary line. */
static void
scan_to_boundary(const struct ctx *c, size_t pos, struct stop *st)
{
	size_t p = pos;
	int cl = 0;
	ssize_t idx;

	for (;;) {
		if (c->nbnd > 0 && (idx = match_boundary(c, p, &cl)) >= 0) {
			size_t e = p;

			if (e > pos && c->d[e - 1] == '\n') {
				e--;
				if (e > pos && c->d[e - 1] == '\r')
					e--;
			}
			st->end = e;
			st->idx = idx;
			st->close = cl;
			p = line_end(c, p);
			st->next = p < c->len ? p + 1 : c->len;
			return;
		}
		p = line_end(c, p);
		if (p >= c->len)
			break;
		p++;
		if (c->nbnd == 0) {
			/* no boundary can end this part */
			p = c->len;
			break;
		}
	}
	st->end = c->len;
	st->idx = -1;
	st->close = 0;
	st->next = c->len;
}

/* ---- headers ---- */

static char *
unfold(const char *s, size_t n)
{
	char *out = sbx_xmalloc(n + 1);
	size_t i, o = 0;

	while (n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	for (i = 0; i < n; i++) {
		if (s[i] == '\n')
			continue;
		if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
			continue;
		if (s[i] == '\r' && i + 1 == n)
			continue;
		out[o++] = s[i];
	}
	out[o] = '\0';
	return out;
}

/*
 * Parse the header block at pos. Stops at an empty line, at a boundary line
 * of the stack, or at end of data. Returns the body start; *st is filled
 * when a boundary line ended the headers (then the body is empty).
 */
static size_t
parse_headers(struct ctx *c, size_t pos, struct part *pt, struct stop *st,
    int *stopped_r, size_t *hdr_end_r)
{
	size_t p = pos, cap = 0;
	int cl = 0;
	ssize_t idx;

	*stopped_r = 0;
	*hdr_end_r = c->len;
	while (p < c->len) {
		size_t s = p, e, colon;

		if (c->d[p] == '\n' || (c->d[p] == '\r' && p + 1 < c->len &&
		    c->d[p + 1] == '\n')) {
			e = c->d[p] == '\n' ? p + 1 : p + 2;
			/* Dovecot: when a boundary line follows the blank
			 * line, the blank line is the [CR]LF of that
			 * delimiter and not part of the header */
			*hdr_end_r = c->nbnd > 0 && match_boundary(c, e, &cl) >= 0 ?
			    p : e;
			return e;
		}
		if (c->nbnd > 0 && (idx = match_boundary(c, p, &cl)) >= 0) {
			/* Dovecot: the [CR]LF before the boundary line
			 * belongs to the delimiter, not to the header */
			*hdr_end_r = p;
			if (p > pos && c->d[p - 1] == '\n') {
				(*hdr_end_r)--;
				if (p - 1 > pos && c->d[p - 2] == '\r')
					(*hdr_end_r)--;
			}
			st->end = p;
			st->idx = idx;
			st->close = cl;
			e = line_end(c, p);
			st->next = e < c->len ? e + 1 : c->len;
			*stopped_r = 1;
			return p;
		}
		/* one field: first line plus continuation lines */
		e = line_end(c, p);
		while (e + 1 < c->len &&
		    (c->d[e + 1] == ' ' || c->d[e + 1] == '\t'))
			e = line_end(c, e + 1);
		p = e < c->len ? e + 1 : c->len;
		for (colon = s; colon < e && c->d[colon] != ':'; colon++)
			;
		if (colon >= e || pt->nhdrs >= MAX_HEADERS)
			continue;
		if (pt->nhdrs == cap) {
			cap = cap ? cap * 2 : 16;
			pt->hdrs = sbx_xrealloc(pt->hdrs, cap * sizeof(*pt->hdrs));
		}
		{
			struct hdr *h = &pt->hdrs[pt->nhdrs++];
			size_t nl = colon - s;

			while (nl > 0 && (c->d[s + nl - 1] == ' ' ||
			    c->d[s + nl - 1] == '\t'))
				nl--;
			h->name = c->d + s;
			h->name_len = nl;
			h->value = unfold(c->d + colon + 1, e - colon - 1);
		}
	}
	return c->len;
}

static const char *
hdr_first(const struct part *pt, const char *name)
{
	size_t i, nl = strlen(name);

	for (i = 0; i < pt->nhdrs; i++)
		if (pt->hdrs[i].name_len == nl &&
		    strncasecmp(pt->hdrs[i].name, name, nl) == 0)
			return pt->hdrs[i].value;
	return NULL;
}

/* ---- RFC 822 tokens (for MIME headers) ---- */

struct tok {
	const char *p, *end;
	struct sbx_buf comment;	/* last comment seen */
};

static int
is_wsp(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Skip whitespace and comments; the last comment text is kept. */
static void
skip_cfws(struct tok *t)
{
	for (;;) {
		while (t->p < t->end && is_wsp(*t->p))
			t->p++;
		if (t->p >= t->end || *t->p != '(')
			return;
		{
			int level = 0;

			t->comment.len = 0;
			for (; t->p < t->end; t->p++) {
				char ch = *t->p;

				if (ch == '\\' && t->p + 1 < t->end) {
					t->p++;
					sbx_buf_append(&t->comment, t->p, 1);
					continue;
				}
				if (ch == '(') {
					if (level++ == 0)
						continue;
				} else if (ch == ')') {
					if (--level == 0) {
						t->p++;
						break;
					}
				}
				sbx_buf_append(&t->comment, &ch, 1);
			}
			sbx_buf_append(&t->comment, "", 1);
			t->comment.len--;
		}
	}
}

static int
is_tspecial(char ch)
{
	return strchr("()<>@,;:\\\"/[]?=", ch) != NULL;
}

static int
is_ctl_or_sp(unsigned char ch)
{
	return ch <= ' ' || ch == 0x7f;
}

/* MIME token into out (appended); 0 if none. */
static int
read_token(struct tok *t, struct sbx_buf *out)
{
	const char *s = t->p;

	while (t->p < t->end && !is_ctl_or_sp((unsigned char)*t->p) &&
	    !is_tspecial(*t->p))
		t->p++;
	sbx_buf_append(out, s, (size_t)(t->p - s));
	return t->p > s;
}

/* Quoted string at t->p (which is '"'); unescaped content appended. */
static void
read_quoted(struct tok *t, struct sbx_buf *out)
{
	t->p++;
	while (t->p < t->end && *t->p != '"') {
		if (*t->p == '\\' && t->p + 1 < t->end)
			t->p++;
		if (*t->p != '\r' && *t->p != '\n')
			sbx_buf_append(out, t->p, 1);
		t->p++;
	}
	if (t->p < t->end)
		t->p++;
}

static char *
buf_take(struct sbx_buf *b)
{
	char *s;

	sbx_buf_append(b, "", 1);
	s = b->data;
	memset(b, 0, sizeof(*b));
	return s;
}

static void
params_add(struct params *ps, char *name, char *value)
{
	if (ps->n == ps->cap) {   /* double: a header may carry many parameters */
		ps->cap = ps->cap ? ps->cap * 2 : 4;
		ps->v = sbx_xrealloc(ps->v, ps->cap * sizeof(*ps->v));
	}
	ps->v[ps->n].name = name;
	ps->v[ps->n].value = value;
	ps->n++;
}

static void
params_free(struct params *ps)
{
	size_t i;

	for (i = 0; i < ps->n; i++) {
		free(ps->v[i].name);
		free(ps->v[i].value);
	}
	free(ps->v);
	ps->v = NULL;
	ps->n = ps->cap = 0;
}

/*
 * RFC 2231 continuations, Dovecot style: name*0, name*1 ... are joined;
 * if any piece is extended (name*N*), the key becomes "name*" and the value
 * stays encoded. Plain parameters come first, joined ones after.
 */
static void
params_rfc2231(struct params *in, struct params *out)
{
	size_t i, j;
	char *done = sbx_xcalloc(in->n + 1, 1);

	for (i = 0; i < in->n; i++) {
		const char *star = strchr(in->v[i].name, '*');

		if (star == NULL || star[1] == '\0') {
			params_add(out, sbx_xstrdup(in->v[i].name),
			    sbx_xstrdup(in->v[i].value));
			done[i] = 1;
		}
	}
	for (i = 0; i < in->n; i++) {
		const char *star;
		size_t base, idx;
		int ext = 0;
		struct sbx_buf val = { 0 };

		if (done[i])
			continue;
		star = strchr(in->v[i].name, '*');
		base = (size_t)(star - in->v[i].name);
		/* collect pieces 0, 1, 2 ... of this base name in order */
		for (idx = 0;; idx++) {
			int found = 0;

			for (j = i; j < in->n; j++) {
				const char *n = in->v[j].name, *q;
				char *endp;
				unsigned long k;

				if (done[j] || strncasecmp(n, in->v[i].name, base) != 0 ||
				    n[base] != '*')
					continue;
				q = n + base + 1;
				if (*q < '0' || *q > '9')
					continue;
				k = strtoul(q, &endp, 10);
				if (k != idx || (*endp != '\0' &&
				    !(endp[0] == '*' && endp[1] == '\0')))
					continue;
				if (*endp == '*')
					ext = 1;
				sbx_buf_append(&val, in->v[j].value,
				    strlen(in->v[j].value));
				done[j] = 1;
				found = 1;
				break;
			}
			if (!found)
				break;
		}
		if (idx == 0) {
			/* not a continuation (e.g. "a*b"): keep as is */
			params_add(out, sbx_xstrdup(in->v[i].name),
			    sbx_xstrdup(in->v[i].value));
			done[i] = 1;
			sbx_buf_free(&val);
			continue;
		}
		params_add(out, sbx_xasprintf("%.*s%s", (int)base,
		    in->v[i].name, ext ? "*" : ""), buf_take(&val));
	}
	free(done);
}

/* "; name=value" list after the main value. */
static void
parse_params(struct tok *t, struct params *out)
{
	struct params raw = { 0 };

	for (;;) {
		struct sbx_buf name = { 0 }, val = { 0 };

		skip_cfws(t);
		if (t->p >= t->end || *t->p != ';')
			break;
		t->p++;
		skip_cfws(t);
		if (!read_token(t, &name)) {
			sbx_buf_free(&name);
			continue;
		}
		skip_cfws(t);
		if (t->p >= t->end || *t->p != '=') {
			sbx_buf_free(&name);
			break;
		}
		t->p++;
		skip_cfws(t);
		if (t->p < t->end && *t->p == '"') {
			read_quoted(t, &val);
		} else {
			const char *s = t->p;

			while (t->p < t->end && *t->p != ';' && *t->p != ' ' &&
			    *t->p != '\t' && *t->p != '\r' && *t->p != '\n' &&
			    *t->p != '(' && *t->p != '"')
				t->p++;
			sbx_buf_append(&val, s, (size_t)(t->p - s));
		}
		params_add(&raw, buf_take(&name), buf_take(&val));
	}
	params_rfc2231(&raw, out);
	params_free(&raw);
}

static void
tok_init(struct tok *t, const char *s)
{
	memset(t, 0, sizeof(*t));
	t->p = s;
	t->end = s + strlen(s);
}

static void
parse_content_type(struct part *pt, const char *v)
{
	struct tok t;
	struct sbx_buf ty = { 0 }, sub = { 0 };

	tok_init(&t, v);
	skip_cfws(&t);
	if (!read_token(&t, &ty)) {
		sbx_buf_free(&ty);
		sbx_buf_free(&t.comment);
		return;
	}
	skip_cfws(&t);
	if (t.p < t.end && *t.p == '/') {
		t.p++;
		skip_cfws(&t);
		read_token(&t, &sub);
	}
	pt->type = buf_take(&ty);
	pt->subtype = buf_take(&sub);
	parse_params(&t, &pt->ct_params);
	pt->has_ct_params = 1;
	sbx_buf_free(&t.comment);
}

static void
parse_disposition(struct part *pt, const char *v)
{
	struct tok t;
	struct sbx_buf ty = { 0 };

	tok_init(&t, v);
	skip_cfws(&t);
	if (!read_token(&t, &ty)) {
		sbx_buf_free(&ty);
		sbx_buf_free(&t.comment);
		return;
	}
	pt->disp = buf_take(&ty);
	parse_params(&t, &pt->disp_params);
	sbx_buf_free(&t.comment);
}

static void
parse_language(struct part *pt, const char *v)
{
	struct tok t;

	tok_init(&t, v);
	for (;;) {
		struct sbx_buf w = { 0 };
		const char *s;

		skip_cfws(&t);
		if (t.p >= t.end)
			break;
		if (*t.p == ',') {
			t.p++;
			continue;
		}
		s = t.p;
		while (t.p < t.end && !is_ctl_or_sp((unsigned char)*t.p) &&
		    (!is_tspecial(*t.p) || *t.p == '-'))
			t.p++;
		if (t.p == s)
			break;
		sbx_buf_append(&w, s, (size_t)(t.p - s));
		pt->lang = sbx_xrealloc(pt->lang, (pt->nlang + 1) * sizeof(char *));
		pt->lang[pt->nlang++] = buf_take(&w);
	}
	sbx_buf_free(&t.comment);
}

static void
parse_mime_headers(struct part *pt)
{
	const char *v;

	if ((v = hdr_first(pt, "Content-Type")) != NULL)
		parse_content_type(pt, v);
	if ((v = hdr_first(pt, "Content-Transfer-Encoding")) != NULL) {
		struct tok t;
		struct sbx_buf b = { 0 };

		tok_init(&t, v);
		skip_cfws(&t);
		if (read_token(&t, &b))
			pt->enc = buf_take(&b);
		sbx_buf_free(&b);
		sbx_buf_free(&t.comment);
	}
	if ((v = hdr_first(pt, "Content-Disposition")) != NULL)
		parse_disposition(pt, v);
	if ((v = hdr_first(pt, "Content-Language")) != NULL)
		parse_language(pt, v);
	if ((v = hdr_first(pt, "Content-ID")) != NULL)
		pt->id = sbx_xstrdup(v);
	if ((v = hdr_first(pt, "Content-Description")) != NULL)
		pt->desc = sbx_xstrdup(v);
	if ((v = hdr_first(pt, "Content-MD5")) != NULL)
		pt->md5 = sbx_xstrdup(v);
	if ((v = hdr_first(pt, "Content-Location")) != NULL)
		pt->loc = sbx_xstrdup(v);
}

static const char *
param_get(const struct params *ps, const char *name)
{
	size_t i;

	for (i = 0; i < ps->n; i++)
		if (strcasecmp(ps->v[i].name, name) == 0)
			return ps->v[i].value;
	return NULL;
}

/* ---- tree ---- */

static void
part_free(struct part *pt)
{
	size_t i;

	if (pt == NULL)
		return;
	for (i = 0; i < pt->nhdrs; i++)
		free(pt->hdrs[i].value);
	free(pt->hdrs);
	free(pt->type);
	free(pt->subtype);
	params_free(&pt->ct_params);
	free(pt->disp);
	params_free(&pt->disp_params);
	free(pt->enc);
	free(pt->id);
	free(pt->desc);
	free(pt->md5);
	free(pt->loc);
	for (i = 0; i < pt->nlang; i++)
		free(pt->lang[i]);
	free(pt->lang);
	for (i = 0; i < pt->nchildren; i++)
		part_free(pt->children[i]);
	free(pt->children);
	part_free(pt->message);
	free(pt);
}

static int
is_type(const struct part *pt, const char *type, const char *subtype)
{
	return pt->type != NULL && strcasecmp(pt->type, type) == 0 &&
	    (subtype == NULL || (pt->subtype != NULL &&
	    strcasecmp(pt->subtype, subtype) == 0));
}

static struct part *parse_entity(struct ctx *c, size_t pos, int digest_child,
    unsigned int depth, struct stop *st);

static void
add_child(struct part *pt, struct part *ch)
{
	if (pt->nchildren == pt->children_cap) {
		pt->children_cap = pt->children_cap ? pt->children_cap * 2 : 4;
		pt->children = sbx_xrealloc(pt->children,
		    pt->children_cap * sizeof(*pt->children));
	}
	pt->children[pt->nchildren++] = ch;
}

static void
push_boundary(struct ctx *c, const char *b)
{
	c->bnd = sbx_xrealloc(c->bnd, (c->nbnd + 1) * sizeof(*c->bnd));
	c->bnd_len = sbx_xrealloc(c->bnd_len, (c->nbnd + 1) * sizeof(size_t));
	c->bnd[c->nbnd] = b;
	c->bnd_len[c->nbnd] = strlen(b);
	c->nbnd++;
}

/*
 * One entity (headers + body) starting at pos. *st tells where it ended:
 * the boundary line of an enclosing multipart, or end of data.
 */
static struct part *
parse_entity(struct ctx *c, size_t pos, int digest_child, unsigned int depth,
    struct stop *st)
{
	struct part *pt = sbx_xcalloc(1, sizeof(*pt));
	int stopped;
	const char *bnd;

	c->nparts++;
	pt->hdr_start = pos;
	pt->body_start = parse_headers(c, pos, pt, st, &stopped, &pt->hdr_end);
	parse_mime_headers(pt);
	if (pt->type == NULL) {
		pt->type = sbx_xstrdup(digest_child ? "message" : "text");
		pt->subtype = sbx_xstrdup(digest_child ? "rfc822" : "plain");
	}
	if (stopped)
		pt->body_end = pt->body_start;
	if ((is_type(pt, "multipart", NULL) || is_type(pt, "message", "rfc822")) &&
	    (depth >= SBX_MIME_MAX_DEPTH || c->nparts > SBX_MIME_MAX_PARTS))
		pt->opaque = 1;

	if (!pt->opaque && is_type(pt, "multipart", NULL)) {
		int digest = pt->subtype != NULL &&
		    strcasecmp(pt->subtype, "digest") == 0;
		size_t level = c->nbnd;
		struct stop s;

		bnd = param_get(&pt->ct_params, "boundary");
		if (stopped || bnd == NULL) {
			if (!stopped)
				scan_to_boundary(c, pt->body_start, st);
			pt->body_end = st->end;
		} else {
			push_boundary(c, bnd);
			scan_to_boundary(c, pt->body_start, &s);	/* preamble */
			while (s.idx == (ssize_t)level && !s.close) {
				struct part *ch = parse_entity(c, s.next,
				    digest, depth + 1, &s);

				if (c->nparts > SBX_MIME_MAX_PARTS)
					part_free(ch);	/* over the limit: dropped */
				else
					add_child(pt, ch);
			}
			if (s.idx == (ssize_t)level) {
				/* closed: the epilogue runs to an outer boundary */
				c->nbnd = level;
				scan_to_boundary(c, s.next, &s);
			}
			c->nbnd = level;
			*st = s;
			pt->body_end = s.end;
		}
		if (pt->nchildren == 0) {
			struct part *ch = sbx_xcalloc(1, sizeof(*ch));

			ch->type = sbx_xstrdup("text");
			ch->subtype = sbx_xstrdup("plain");
			ch->synthetic = 1;
			add_child(pt, ch);
		}
		return pt;
	}
	if (!pt->opaque && is_type(pt, "message", "rfc822")) {
		if (stopped) {
			/* headers ended at a boundary: empty inner message */
			pt->message = sbx_xcalloc(1, sizeof(*pt->message));
			pt->message->type = sbx_xstrdup("text");
			pt->message->subtype = sbx_xstrdup("plain");
			pt->message->hdr_start = pt->message->hdr_end =
			    pt->message->body_start = pt->message->body_end =
			    pt->body_start;
			c->nparts++;
			return pt;
		}
		pt->message = parse_entity(c, pt->body_start, 0, depth + 1, st);
		pt->body_end = st->end;
		return pt;
	}
	if (!stopped) {
		scan_to_boundary(c, pt->body_start, st);
		pt->body_end = st->end;
	}
	return pt;
}

/* ---- output ---- */

static void
put(struct sbx_buf *b, const char *s)
{
	sbx_buf_append(b, s, strlen(s));
}

static void
put_string(struct sbx_buf *b, const char *s)
{
	const unsigned char *p;
	int lit = 0;

	for (p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p >= 0x80 || *p == '\r' || *p == '\n')
			lit = 1;
	if (lit) {
		sbx_buf_appendf(b, "{%zu}\r\n", strlen(s));
		put(b, s);
		return;
	}
	put(b, "\"");
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			put(b, "\\");
		sbx_buf_append(b, p, 1);
	}
	put(b, "\"");
}

static void
put_nstring(struct sbx_buf *b, const char *s)
{
	if (s == NULL)
		put(b, "NIL");
	else
		put_string(b, s);
}

static void
put_params(struct sbx_buf *b, const struct params *ps, int default_charset)
{
	size_t i;
	int seen = 0;

	if (ps->n == 0 && !default_charset) {
		put(b, "NIL");
		return;
	}
	put(b, "(");
	for (i = 0; i < ps->n; i++) {
		if (i > 0)
			put(b, " ");
		if (strcasecmp(ps->v[i].name, "charset") == 0)
			seen = 1;
		put_string(b, ps->v[i].name);
		put(b, " ");
		put_string(b, ps->v[i].value);
	}
	if (default_charset && !seen) {
		if (i > 0)
			put(b, " ");
		put(b, "\"charset\" \"us-ascii\"");
	}
	put(b, ")");
}

/* Lines (LFs) and bare LFs (each counted as CRLF) of data[s..e). */
static void
count_range(const struct ctx *c, size_t s, size_t e, uint64_t *bare_r,
    uint64_t *lines_r)
{
	const char *p;
	size_t i;

	*bare_r = *lines_r = 0;
	while (s < e && (p = memchr(c->d + s, '\n', e - s)) != NULL) {
		i = (size_t)(p - c->d);
		(*lines_r)++;
		if (i == 0 || c->d[i - 1] != '\r')
			(*bare_r)++;
		s = i + 1;
	}
}

static void envelope_write(struct sbx_buf *b, const struct part *pt);

static void
body_write(struct ctx *c, struct sbx_buf *b, const struct part *pt, int ext)
{
	uint64_t size = 0, lines = 0, bare = 0;
	size_t i;

	if (pt->synthetic) {
		put(b, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		    "\"7bit\" 0 0");
		if (ext)
			put(b, " NIL NIL NIL NIL");
		put(b, ")");
		return;
	}
	put(b, "(");
	if (!pt->opaque && pt->nchildren > 0) {
		for (i = 0; i < pt->nchildren; i++)
			body_write(c, b, pt->children[i], ext);
		put(b, " ");
		put_string(b, pt->subtype != NULL ? pt->subtype : "");
		if (ext) {
			put(b, " ");
			if (param_get(&pt->ct_params, "boundary") == NULL)
				put(b, "NIL");
			else
				put_params(b, &pt->ct_params, 0);
		}
	} else {
		int text = !pt->opaque && is_type(pt, "text", NULL);

		if (pt->opaque) {
			put(b, "\"application\" \"octet-stream\" NIL");
		} else {
			put_string(b, pt->type);
			put(b, " ");
			put_string(b, pt->subtype != NULL ? pt->subtype : "");
			put(b, " ");
			put_params(b, &pt->ct_params, text);
		}
		put(b, " ");
		put_nstring(b, pt->id);
		put(b, " ");
		put_nstring(b, pt->desc);
		put(b, " ");
		put_string(b, pt->enc != NULL ? pt->enc : "7bit");
		count_range(c, pt->body_start, pt->body_end, &bare, &lines);
		size = (uint64_t)(pt->body_end - pt->body_start) + bare;
		sbx_buf_appendf(b, " %llu", (unsigned long long)size);
		if (text) {
			sbx_buf_appendf(b, " %llu", (unsigned long long)lines);
		} else if (pt->message != NULL) {
			put(b, " ");
			envelope_write(b, pt->message);
			put(b, " ");
			body_write(c, b, pt->message, ext);
			sbx_buf_appendf(b, " %llu", (unsigned long long)lines);
		}
		if (ext) {
			put(b, " ");
			put_nstring(b, pt->md5);
		}
	}
	if (ext) {
		put(b, " ");
		if (pt->disp == NULL) {
			put(b, "NIL");
		} else {
			put(b, "(");
			put_string(b, pt->disp);
			put(b, " ");
			put_params(b, &pt->disp_params, 0);
			put(b, ")");
		}
		put(b, " ");
		if (pt->nlang == 0) {
			put(b, "NIL");
		} else {
			put(b, "(");
			for (i = 0; i < pt->nlang; i++) {
				if (i > 0)
					put(b, " ");
				put_string(b, pt->lang[i]);
			}
			put(b, ")");
		}
		put(b, " ");
		put_nstring(b, pt->loc);
	}
	put(b, ")");
}

/* ---- addresses (RFC 5322, Dovecot's lenient rules) ---- */

struct addr {
	char *name, *adl, *mailbox, *host;	/* group: host NULL */
};

struct addrs {
	struct addr *v;
	size_t n, cap;
};

static void
addrs_add(struct addrs *a, char *name, char *adl, char *mailbox, char *host)
{
	if (a->n >= 10000) {
		free(name); free(adl); free(mailbox); free(host);
		return;
	}
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 4;
		a->v = sbx_xrealloc(a->v, a->cap * sizeof(*a->v));
	}
	a->v[a->n].name = name;
	a->v[a->n].adl = adl;
	a->v[a->n].mailbox = mailbox;
	a->v[a->n].host = host;
	a->n++;
}

static void
addrs_free(struct addrs *a)
{
	size_t i;

	for (i = 0; i < a->n; i++) {
		free(a->v[i].name);
		free(a->v[i].adl);
		free(a->v[i].mailbox);
		free(a->v[i].host);
	}
	free(a->v);
	memset(a, 0, sizeof(*a));
}

static int
is_atext(unsigned char ch)
{
	return ch >= 0x80 || (ch > ' ' && ch != 0x7f &&
	    strchr("()<>@,;:\\\".[]", ch) == NULL);
}

/* atom into out; 0 if none */
static int
read_atom(struct tok *t, struct sbx_buf *out)
{
	const char *s = t->p;

	while (t->p < t->end && is_atext((unsigned char)*t->p))
		t->p++;
	sbx_buf_append(out, s, (size_t)(t->p - s));
	return t->p > s;
}

/* phrase: words joined by one space; 0 if empty */
static int
read_phrase(struct tok *t, struct sbx_buf *out)
{
	int words = 0;

	for (;;) {
		skip_cfws(t);
		if (t->p >= t->end)
			break;
		if (*t->p == '"') {
			if (words++ > 0)
				sbx_buf_append(out, " ", 1);
			read_quoted(t, out);
		} else if (is_atext((unsigned char)*t->p) || *t->p == '.') {
			if (words++ > 0)
				sbx_buf_append(out, " ", 1);
			while (t->p < t->end && (is_atext((unsigned char)*t->p) ||
			    *t->p == '.'))
				sbx_buf_append(out, t->p++, 1);
		} else {
			break;
		}
	}
	return words;
}

/* dot-atom / quoted local part; -1 on nothing */
static int
read_local(struct tok *t, struct sbx_buf *out)
{
	int any = 0;

	for (;;) {
		skip_cfws(t);
		if (t->p < t->end && *t->p == '"') {
			read_quoted(t, out);
			any = 1;
		} else if (!read_atom(t, out)) {
			break;
		} else {
			any = 1;
		}
		skip_cfws(t);
		if (t->p < t->end && *t->p == '.') {
			sbx_buf_append(out, ".", 1);
			t->p++;
			continue;
		}
		break;
	}
	return any ? 0 : -1;
}

static int
read_domain(struct tok *t, struct sbx_buf *out)
{
	skip_cfws(t);
	if (t->p < t->end && *t->p == '[') {
		while (t->p < t->end && *t->p != ']') {
			if (*t->p == '\\' && t->p + 1 < t->end)
				t->p++;
			if (!is_wsp(*t->p))
				sbx_buf_append(out, t->p, 1);
			t->p++;
		}
		if (t->p < t->end) {
			sbx_buf_append(out, "]", 1);
			t->p++;
		}
		skip_cfws(t);
		return 0;
	}
	return read_local(t, out);
}

static char *
opt(struct sbx_buf *b)
{
	if (b->len == 0) {
		sbx_buf_free(b);
		return NULL;
	}
	return buf_take(b);
}

static char *
or_missing(struct sbx_buf *b, const char *missing)
{
	if (b->len == 0) {
		sbx_buf_free(b);
		return sbx_xstrdup(missing);
	}
	return buf_take(b);
}

/* addr-spec; returns -1 on a syntax error that ends the list */
static int
parse_addr_spec(struct tok *t, struct addrs *a)
{
	struct sbx_buf name = { 0 }, local = { 0 }, dom = { 0 };
	int quoted, ret = 0, at = 0;

	t->comment.len = 0;
	skip_cfws(t);
	quoted = t->p < t->end && *t->p == '"';
	if (read_local(t, &local) < 0)
		ret = -1;
	if (t->p < t->end && *t->p == '@') {
		at = 1;
		t->p++;
		if (read_domain(t, &dom) < 0)
			ret = -1;
	}
	if (t->comment.len > 0) {
		sbx_buf_append(&name, t->comment.data, t->comment.len);
	} else if (!at && quoted) {
		sbx_buf_free(&name);
		name = local;
		memset(&local, 0, sizeof(local));
	}
	if (ret < 0 && local.len == 0 && dom.len == 0 && !at) {
		sbx_buf_free(&name);
		sbx_buf_free(&local);
		sbx_buf_free(&dom);
		return -1;
	}
	addrs_add(a, opt(&name), NULL, or_missing(&local, "MISSING_MAILBOX"),
	    or_missing(&dom, "MISSING_DOMAIN"));
	return 0;
}

/* "<" [route ":"] addr-spec ">" after the phrase in name */
static int
parse_angle(struct tok *t, struct sbx_buf *name, struct addrs *a)
{
	struct sbx_buf adl = { 0 }, local = { 0 }, dom = { 0 };

	t->p++;	/* '<' */
	skip_cfws(t);
	if (t->p < t->end && *t->p == '@') {
		while (t->p < t->end && *t->p == '@') {
			if (adl.len > 0)
				sbx_buf_append(&adl, ",", 1);
			sbx_buf_append(&adl, "@", 1);
			t->p++;
			read_domain(t, &adl);
			skip_cfws(t);
			while (t->p < t->end && *t->p == ',') {
				t->p++;
				skip_cfws(t);
			}
		}
		if (t->p < t->end && *t->p == ':')
			t->p++;
	}
	if (t->p < t->end && *t->p != '>')
		(void)read_local(t, &local);
	if (t->p < t->end && *t->p == '@') {
		t->p++;
		(void)read_domain(t, &dom);
	}
	skip_cfws(t);
	if (t->p < t->end && *t->p == '>')
		t->p++;
	addrs_add(a, opt(name), opt(&adl), or_missing(&local, "MISSING_MAILBOX"),
	    or_missing(&dom, "MISSING_DOMAIN"));
	return 0;
}

static int
parse_mailbox(struct tok *t, struct addrs *a)
{
	const char *start = t->p;
	struct sbx_buf name = { 0 };

	t->comment.len = 0;
	read_phrase(t, &name);
	skip_cfws(t);
	if (t->p < t->end && *t->p == '<')
		return parse_angle(t, &name, a);
	sbx_buf_free(&name);
	t->p = start;
	return parse_addr_spec(t, a);
}

static void
parse_address_list(const char *v, struct addrs *a)
{
	struct tok t;

	tok_init(&t, v);
	for (;;) {
		const char *start;
		struct sbx_buf name = { 0 };

		skip_cfws(&t);
		while (t.p < t.end && *t.p == ',') {
			t.p++;
			skip_cfws(&t);
		}
		if (t.p >= t.end)
			break;
		start = t.p;
		if (read_phrase(&t, &name) > 0 && (skip_cfws(&t), 1) &&
		    t.p < t.end && *t.p == ':') {
			/* group */
			t.p++;
			addrs_add(a, NULL, NULL, opt(&name), NULL);
			for (;;) {
				skip_cfws(&t);
				while (t.p < t.end && *t.p == ',') {
					t.p++;
					skip_cfws(&t);
				}
				if (t.p >= t.end || *t.p == ';')
					break;
				if (parse_mailbox(&t, a) < 0)
					break;
				skip_cfws(&t);
				if (t.p < t.end && *t.p != ',' && *t.p != ';')
					break;
			}
			addrs_add(a, NULL, NULL, NULL, NULL);
			if (t.p < t.end && *t.p == ';')
				t.p++;
			else
				break;
			continue;
		}
		sbx_buf_free(&name);
		t.p = start;
		if (parse_mailbox(&t, a) < 0)
			break;
		skip_cfws(&t);
		if (t.p < t.end && *t.p != ',')
			break;
	}
	sbx_buf_free(&t.comment);
}

static void
put_addrs(struct sbx_buf *b, const struct addrs *a)
{
	size_t i;

	if (a->n == 0) {
		put(b, "NIL");
		return;
	}
	put(b, "(");
	for (i = 0; i < a->n; i++) {
		const struct addr *x = &a->v[i];

		put(b, "(");
		put_nstring(b, x->name);
		put(b, " ");
		put_nstring(b, x->adl);
		put(b, " ");
		if (x->host == NULL && x->mailbox != NULL)
			put_string(b, x->mailbox);	/* group start */
		else
			put_nstring(b, x->mailbox);
		put(b, " ");
		put_nstring(b, x->host);
		put(b, ")");
	}
	put(b, ")");
}

static int
name_is(const struct hdr *h, const char *name)
{
	return h->name_len == strlen(name) &&
	    strncasecmp(h->name, name, h->name_len) == 0;
}

static void
envelope_write(struct sbx_buf *b, const struct part *pt)
{
	static const char *const adr[] = { "From", "Sender", "Reply-To", "To",
	    "Cc", "Bcc" };
	const char *date = NULL, *subject = NULL, *irt = NULL, *mid = NULL;
	struct addrs a[6];
	size_t i, k;

	memset(a, 0, sizeof(a));
	for (i = 0; i < pt->nhdrs; i++) {
		const struct hdr *h = &pt->hdrs[i];

		if (name_is(h, "Date"))
			date = h->value;
		else if (name_is(h, "Subject"))
			subject = h->value;
		else if (name_is(h, "In-Reply-To"))
			irt = h->value;
		else if (name_is(h, "Message-ID"))
			mid = h->value;
		else
			for (k = 0; k < 6; k++)
				if (name_is(h, adr[k]))
					parse_address_list(h->value, &a[k]);
	}
	put(b, "(");
	put_nstring(b, date);
	put(b, " ");
	put_nstring(b, subject);
	for (k = 0; k < 6; k++) {
		put(b, " ");
		put_addrs(b, (k == 1 || k == 2) && a[k].n == 0 ? &a[0] : &a[k]);
	}
	put(b, " ");
	put_nstring(b, irt);
	put(b, " ");
	put_nstring(b, mid);
	put(b, ")");
	for (k = 0; k < 6; k++)
		addrs_free(&a[k]);
}

/* ---- the part table (sbx_mime_info.sections) ----
 *
 * Stored beside the message forever, so the format is versioned. Version 1:
 *
 *	v1\n
 *	DEPTH KIND HDR BODY END\n	one line per part, in pre-order
 *
 * All numbers are unsigned decimal, fields separated by one space. A part
 * is a node of Dovecot's message_part tree: the root (depth 0, the whole
 * message), the children of a multipart (depth + 1), and the one child of
 * a message/rfc822 part, which is the encapsulated message (depth + 1).
 * KIND is 'm' (multipart), 'r' (message/rfc822) or 'l' (anything else,
 * including parts left opaque by the limits). HDR is the offset of the
 * part's header, BODY of its body (= end of the header, blank line
 * included), END of the end of its body (before the [CR]LF that belongs to
 * the next boundary line). The synthetic empty part that BODYSTRUCTURE
 * shows for a multipart without parts is not a node: such a multipart has
 * no children, as in Dovecot. IMAP section numbers are not stored; they
 * are resolved against this tree exactly as Dovecot does (see find_part).
 * Dovecot sometimes counts a header shorter than the bytes up to the body
 * (a header line or a blank line directly followed by a boundary line: the
 * [CR]LF goes to the delimiter); BODY is then that shorter end and the
 * body is empty. Example (006-rfc822-attached.eml):
 *	v1
 *	0 m 0 239 935		the message, multipart/mixed
 *	1 l 249 295 318		BODY[1], text/plain
 *	1 r 330 421 921		BODY[2], message/rfc822
 *	2 m 421 658 921		its message, multipart/mixed
 *	3 l 667 713 731		BODY[2.1]
 *	3 l 742 890 908		BODY[2.2]
 * A reader must accept exactly this grammar (no leading zeros, no other
 * spacing) and reject any other version line; a new layout gets "v2".
 */

#define TABLE_VERSION "v1\n"

static size_t
clamp(size_t v, size_t lo, size_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/*
 * One node and its subtree. A header that Dovecot cuts short (see
 * parse_headers) leaves an empty body at its end; whatever a message/rfc822
 * part holds then is empty too: the clamping to the parent's body [lo, hi]
 * keeps every child inside its parent, as table_parse demands.
 */
static void
table_write(struct sbx_buf *b, struct sbx_buf *leaves, const struct part *pt,
    unsigned int depth, size_t lo, size_t hi)
{
	size_t i, h, body, end;
	char kind;

	if (!pt->opaque && is_type(pt, "multipart", NULL))
		kind = 'm';
	else if (!pt->opaque && pt->message != NULL)
		kind = 'r';
	else
		kind = 'l';
	h = clamp(pt->hdr_start, lo, hi);
	body = clamp(pt->hdr_end, h, hi);
	end = pt->hdr_end < pt->body_start ? body :
	    clamp(pt->body_end, body, hi);
	sbx_buf_appendf(b, "%u %c %zu %zu %zu\n", depth, kind, h, body, end);
	if (kind == 'l') {
		struct sbx_mime_leaf lf;

		lf.off = body;
		lf.len = end - body;
		sbx_buf_append(leaves, &lf, sizeof(lf));
	} else if (kind == 'r') {
		table_write(b, leaves, pt->message, depth + 1, body, end);
	} else {
		for (i = 0; i < pt->nchildren; i++)
			if (!pt->children[i]->synthetic)
				table_write(b, leaves, pt->children[i],
				    depth + 1, body, end);
	}
}

struct tnode {
	size_t hdr, body, end;
	char kind;
	size_t child, next;	/* first child, next sibling; NONE if none */
};

#define NONE ((size_t)-1)

static int
table_num(const char **pp, size_t *v_r)
{
	const char *p = *pp;
	size_t v = 0;

	if (*p < '0' || *p > '9')
		return -1;
	if (*p == '0' && p[1] >= '0' && p[1] <= '9')
		return -1;	/* no leading zeros: one spelling per table */
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (SIZE_MAX - 9) / 10)
			return -1;
		v = v * 10 + (size_t)(*p - '0');
	}
	*pp = p;
	*v_r = v;
	return 0;
}

/*
 * Parse and check a table against a message of len bytes. The table comes
 * from the database, so every offset and the tree shape are verified:
 * nothing read from it can point outside msg or make the walk loop.
 */
static int
table_parse(const char *t, size_t len, struct tnode **nodes_r, size_t *n_r,
    char **error_r)
{
	struct tnode *nd = NULL;
	size_t n = 0, cap = 0, i, depth, prev_depth = 0;
	size_t stack[SBX_MIME_MAX_DEPTH + 3];	/* open node per depth */
	size_t last[SBX_MIME_MAX_DEPTH + 3];	/* last child per depth */
	const char *p, *why = NULL;

	if (t == NULL || strncmp(t, TABLE_VERSION, strlen(TABLE_VERSION)) != 0) {
		why = t != NULL && t[0] == 'v' ? "unsupported version" :
		    "no version line";
		goto fail;
	}
	for (p = t + strlen(TABLE_VERSION); *p != '\0';) {
		struct tnode x;

		if (table_num(&p, &depth) < 0 || *p++ != ' ') {
			why = "bad depth";
			goto fail;
		}
		x.kind = *p;
		if ((x.kind != 'm' && x.kind != 'r' && x.kind != 'l') ||
		    p[1] != ' ') {
			why = "bad kind";
			goto fail;
		}
		p += 2;
		if (table_num(&p, &x.hdr) < 0 || *p++ != ' ' ||
		    table_num(&p, &x.body) < 0 || *p++ != ' ' ||
		    table_num(&p, &x.end) < 0 || *p++ != '\n') {
			why = "bad offsets";
			goto fail;
		}
		if (x.hdr > x.body || x.body > x.end || x.end > len) {
			why = "offsets out of range";
			goto fail;
		}
		if (n == 0 ? depth != 0 || x.hdr != 0 || x.end != len :
		    depth == 0 || depth > prev_depth + 1 ||
		    depth > SBX_MIME_MAX_DEPTH + 1) {
			why = "bad tree shape";
			goto fail;
		}
		x.child = x.next = NONE;
		if (depth > 0) {
			struct tnode *up = &nd[stack[depth - 1]];

			if (up->kind == 'l' ||
			    (up->kind == 'r' && up->child != NONE) ||
			    x.hdr < up->body || x.end > up->end ||
			    (up->child != NONE && x.hdr < nd[last[depth]].end)) {
				why = "bad tree shape";
				goto fail;
			}
			if (up->child == NONE)
				up->child = n;
			else
				nd[last[depth]].next = n;
			last[depth] = n;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			nd = sbx_xrealloc(nd, cap * sizeof(*nd));
		}
		nd[n] = x;
		stack[depth] = n;
		prev_depth = depth;
		n++;
	}
	if (n == 0) {
		why = "no parts";
		goto fail;
	}
	for (i = 0; i < n; i++)
		if (nd[i].kind == 'r' && nd[i].child == NONE) {
			why = "message/rfc822 part without message";
			goto fail;
		}
	*nodes_r = nd;
	*n_r = n;
	return 0;
fail:
	free(nd);
	*error_r = sbx_xasprintf("damaged section table: %s", why);
	return -1;
}

/* ---- section specs (RFC 3501 6.4.5, as Dovecot 2.3 parses them) ----
 *
 * What Dovecot 2.3.19 answers, checked against it (tests/data/mime/
 * *.sections, dovecot-oracle.sh) and copied here:
 *  - a part that does not exist is an empty string ({0}), never NIL; so
 *    are HEADER, TEXT and HEADER.FIELDS of a part that is not
 *    message/rfc822 ("1.HEADER" of a text part);
 *  - "1" of a non-multipart message is its body and "1.MIME" its whole
 *    header; a number after a non-multipart, non-message part is only
 *    accepted when it is the last and is 1 ("2.1.1" = "2.1" when 2.1 is a
 *    leaf); "0" means the first part of a multipart (its loop never
 *    counts down from 0) and numbers wrap at 2^32 ("4294967297" = "1");
 *  - "N.MIME" of a message/rfc822 part is its own MIME header;
 *  - "MIME" without a part number, an empty header list, a nested list,
 *    a '(' without a space before it and trailing text are errors; atoms
 *    in the list may hold ']', '%' and '*', NIL is the name "NIL";
 *  - HEADER.FIELDS[.NOT] output is the selected lines, each ended by CRLF
 *    whatever the message uses, in message order with their folding, then
 *    the blank line if the header has one; top-level HEADER.FIELDS (not
 *    .NOT, not of a part) always ends with the blank line, even for a
 *    message without one (Dovecot's header cache adds it);
 *  - for HEADER.FIELDS of a part, Dovecot reads from the part's header to
 *    the first blank line or the end of the message, past a boundary if
 *    need be; so do we.
 * Every other section is a slice of the raw message, line ends as stored.
 * Dovecot sends all of them through a CRLF stream (a LF without CR gets
 * one) and changes NUL to 0x80 in literals: the IMAP layer must do both on
 * output to send Dovecot's bytes (the filtered headers are CRLF already,
 * the conversion leaves them unchanged). Our own limits, where Dovecot has
 * none: spec <= 1024 bytes, <= 100 field names, part numbers of at most
 * 10 digits and SBX_MIME_MAX_DEPTH + 1 components.
 */

#define SPEC_MAX_LEN	1024
#define SPEC_MAX_FIELDS	100
#define SPEC_MAX_DIGITS	10
#define SPEC_MAX_PARTS	(SBX_MIME_MAX_DEPTH + 1)

enum sec_kind {
	SEC_FULL,		/* "" */
	SEC_MIME_BODY,		/* "1.2" */
	SEC_MIME,		/* "1.2.MIME" */
	SEC_HEADER,		/* "HEADER", "2.HEADER" */
	SEC_FIELDS,		/* "HEADER.FIELDS (...)" */
	SEC_FIELDS_NOT,		/* "HEADER.FIELDS.NOT (...)" */
	SEC_TEXT		/* "TEXT", "2.TEXT" */
};

struct sec {
	uint32_t num[SPEC_MAX_PARTS];
	size_t nnum;
	enum sec_kind kind;
	char *names;		/* field names, each NUL-terminated */
	size_t nnames;
};

static int
is_atom_char(unsigned char ch)
{
	/* Dovecot's IMAP atoms: no CTL, SP, 8-bit, ( ) { " \ ; it takes
	 * ']' and the list wildcards. */
	return ch > ' ' && ch < 0x7f && strchr("(){\"\\", ch) == NULL;
}

/* "(" name *(SP name) ")" and trailing spaces: the header list. */
static const char *
spec_fields(const char *p, struct sec *sc)
{
	struct sbx_buf b = { 0 };

	if (*p != ' ')
		return "missing space before the header list";
	while (*p == ' ')
		p++;
	if (*p++ != '(')
		return "missing header list";
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == ')')
			break;
		if (sc->nnames == SPEC_MAX_FIELDS) {
			sbx_buf_free(&b);
			return "too many header fields";
		}
		if (*p == '"') {
			for (p++; *p != '"'; p++) {
				if (*p == '\\')
					p++;
				if (*p == '\0' || *p == '\r' || *p == '\n') {
					sbx_buf_free(&b);
					return "unterminated quoted field name";
				}
				sbx_buf_append(&b, p, 1);
			}
			p++;
		} else if (is_atom_char((unsigned char)*p)) {
			while (is_atom_char((unsigned char)*p))
				sbx_buf_append(&b, p++, 1);
		} else {
			sbx_buf_free(&b);
			return "bad header field name";
		}
		sbx_buf_append(&b, "", 1);
		sc->nnames++;
		if (*p != ' ' && *p != ')') {
			sbx_buf_free(&b);
			return "bad header field name";
		}
	}
	if (sc->nnames == 0)
		return "empty header list";
	for (p++; *p == ' '; p++)
		;
	if (*p != '\0') {
		sbx_buf_free(&b);
		return "junk after the header list";
	}
	sc->names = b.data;
	return NULL;
}

/* NULL, or why spec is malformed. sc->names is malloc'd on success. */
static const char *
spec_parse(const char *spec, struct sec *sc)
{
	const char *p = spec, *why;
	size_t digits = 0;

	memset(sc, 0, sizeof(*sc));
	if (spec == NULL)
		return "NULL";
	if (strnlen(spec, SPEC_MAX_LEN + 1) > SPEC_MAX_LEN)
		return "longer than 1024 bytes";
	/* the part number: digits, dot-separated, as Dovecot reads it
	 * (leading zeros allowed, the value wraps like its unsigned int) */
	while (*p >= '0' && *p <= '9') {
		if (sc->nnum == SPEC_MAX_PARTS)
			return "part number too deep";
		sc->num[sc->nnum] = 0;
		for (digits = 0; *p >= '0' && *p <= '9'; p++) {
			if (++digits > SPEC_MAX_DIGITS)
				return "part number too long";
			sc->num[sc->nnum] = sc->num[sc->nnum] * 10 +
			    (uint32_t)(*p - '0');
		}
		sc->nnum++;
		if (*p != '.')
			break;
		p++;
	}
	if (sc->nnum > 0) {
		if (*p == '\0' && p[-1] == '.')
			return "part number ends with '.'";
		if (*p != '\0' && p[-1] != '.')
			return "bad part number";
	}
	if (*p == '\0') {
		sc->kind = sc->nnum == 0 ? SEC_FULL : SEC_MIME_BODY;
		return NULL;
	}
	if (strcasecmp(p, "MIME") == 0) {
		if (sc->nnum == 0)
			return "MIME needs a part number";
		sc->kind = SEC_MIME;
		return NULL;
	}
	if (strcasecmp(p, "TEXT") == 0) {
		sc->kind = SEC_TEXT;
		return NULL;
	}
	if (strcasecmp(p, "HEADER") == 0) {
		sc->kind = SEC_HEADER;
		return NULL;
	}
	if (strncasecmp(p, "HEADER.FIELDS.NOT", 17) == 0) {
		sc->kind = SEC_FIELDS_NOT;
		why = spec_fields(p + 17, sc);
	} else if (strncasecmp(p, "HEADER.FIELDS", 13) == 0) {
		sc->kind = SEC_FIELDS;
		why = spec_fields(p + 13, sc);
	} else {
		why = "unknown section text";
	}
	return why;
}

int
sbx_mime_section_valid(const char *spec)
{
	struct sec sc;
	const char *why = spec_parse(spec, &sc);

	free(sc.names);
	return why == NULL;
}

/* Dovecot's imap_msgpart_find(): the node of sc's part number, or NONE. */
static size_t
find_part(const struct tnode *nd, const struct sec *sc)
{
	size_t cur = 0, i;

	for (i = 0; i < sc->nnum && cur != NONE; i++) {
		uint32_t num = sc->num[i];
		int more = i + 1 < sc->nnum;

		if (nd[cur].kind == 'm') {
			/* "0" finds the first part too, as in Dovecot */
			for (cur = nd[cur].child; num > 1 && cur != NONE; num--)
				cur = nd[cur].next;
		} else if (num != 1 || (more && nd[cur].kind != 'r')) {
			/* a non-multipart has only part 1 */
			cur = NONE;
		}
		if (cur != NONE && nd[cur].kind == 'r' && more)
			cur = nd[cur].child;	/* into the message */
	}
	return cur;
}

static int
field_wanted(const struct sec *sc, const char *name, size_t nlen)
{
	const char *f = sc->names;
	size_t i;

	/* Dovecot compares NUL-terminated names: stop at an embedded NUL */
	for (i = 0; i < nlen; i++)
		if (name[i] == '\0')
			nlen = i;
	for (i = 0; i < sc->nnames; i++, f += strlen(f) + 1)
		if (strlen(f) == nlen && strncasecmp(f, name, nlen) == 0)
			return 1;
	return 0;
}

/*
 * HEADER.FIELDS[.NOT] of the header at msg[s..e), with Dovecot's header
 * parser and header filter rules: a field is its first line plus the
 * lines that start with SP or HT; its name is the text before the first
 * ':' with SP/HT before the ':' removed, or the whole line when there is
 * no ':'. Selected lines are written with CRLF line ends; a line that
 * ends at end of data without a newline is written without one. The
 * blank line that ends the header is always written when present;
 * add_eoh (root HEADER.FIELDS, where Dovecot's header cache adds a
 * missing one) writes it even when absent.
 */
static void
filter_header(const char *msg, size_t s, size_t e, const struct sec *sc,
    int add_eoh, struct sbx_buf *out)
{
	size_t p = s;
	int want = 0, last_nl = 1, eoh = 0;

	while (p < e) {
		const char *nl = memchr(msg + p, '\n', e - p);
		size_t le = nl == NULL ? e : (size_t)(nl - msg);	/* LF */
		size_t ce = le;						/* content end */

		if (nl != NULL && le > p && msg[le - 1] == '\r')
			ce--;
		if (nl != NULL && ce == p) {
			eoh = 1;	/* the blank line */
			break;
		}
		if (p == s || (msg[p] != ' ' && msg[p] != '\t')) {
			const char *colon = memchr(msg + p, ':', ce - p);
			size_t nlen;

			if (colon == NULL) {
				nlen = ce - p;
			} else {
				nlen = (size_t)(colon - (msg + p));
				while (nlen > 0 && (msg[p + nlen - 1] == ' ' ||
				    msg[p + nlen - 1] == '\t'))
					nlen--;
			}
			want = field_wanted(sc, msg + p, nlen) ==
			    (sc->kind == SEC_FIELDS);
		}
		if (want) {
			sbx_buf_append(out, msg + p, ce - p);
			if (nl != NULL)
				sbx_buf_append(out, "\r\n", 2);
			last_nl = nl != NULL;
		}
		p = nl == NULL ? e : le + 1;
	}
	if (eoh || add_eoh) {
		if (!last_nl)
			sbx_buf_append(out, "\r\n", 2);
		sbx_buf_append(out, "\r\n", 2);
	}
}

int
sbx_mime_fetch_section(const char *msg, size_t len, const char *sections,
    const char *spec, char **out_r, size_t *outlen_r, char **error_r)
{
	struct sec sc;
	struct tnode *nd = NULL;
	struct sbx_buf out = { 0 };
	const char *why;
	size_t n, part, s = 0, e = 0;

	*out_r = NULL;
	*outlen_r = 0;
	if ((why = spec_parse(spec, &sc)) != NULL) {
		*error_r = sbx_xasprintf("invalid section spec: %s", why);
		return -1;
	}
	if (msg == NULL && len > 0) {
		free(sc.names);
		*error_r = sbx_xstrdup("mime: NULL message");
		return -1;
	}
	if (table_parse(sections, len, &nd, &n, error_r) < 0) {
		free(sc.names);
		return -1;
	}
	part = sc.nnum == 0 ? 0 : find_part(nd, &sc);
	if (part != NONE && sc.nnum > 0 && sc.kind != SEC_MIME &&
	    sc.kind != SEC_MIME_BODY) {
		/* HEADER, TEXT, HEADER.FIELDS of a part: only of a
		 * message/rfc822 part, meaning its message */
		part = nd[part].kind == 'r' ? nd[part].child : NONE;
	}
	if (part != NONE) {
		const struct tnode *x = &nd[part];

		switch (sc.kind) {
		case SEC_FULL:
			s = 0;
			e = len;
			break;
		case SEC_MIME:
		case SEC_HEADER:
			s = x->hdr;
			e = x->body;
			break;
		case SEC_MIME_BODY:
		case SEC_TEXT:
			s = x->body;
			e = x->end;
			break;
		case SEC_FIELDS:
		case SEC_FIELDS_NOT:
			/* Dovecot runs its header parser on the mail stream
			 * from the part's header on, up to the first blank
			 * line or the end of the message; it does not stop
			 * at x->body (which can be shorter, see
			 * parse_headers) nor at a boundary */
			filter_header(msg, x->hdr, len, &sc,
			    sc.kind == SEC_FIELDS && sc.nnum == 0, &out);
			break;
		}
		if (s < e)
			sbx_buf_append(&out, msg + s, e - s);
	}
	sbx_buf_append(&out, "", 1);
	*out_r = out.data;
	*outlen_r = out.len - 1;
	free(nd);
	free(sc.names);
	return 0;
}

/* ---- API ---- */

static void
top_header(const struct part *root, const char *name, char **value_r)
{
	const char *v = hdr_first(root, name);

	*value_r = v != NULL ? sbx_xstrdup(v) : NULL;
}

int
sbx_mime_parse(const char *msg, size_t len, struct sbx_mime_info *info_r,
    char **error_r)
{
	struct ctx c;
	struct stop st;
	struct part *root;
	struct sbx_buf env = { 0 }, bs = { 0 }, body = { 0 }, tab = { 0 };
	struct sbx_buf leaves = { 0 };
	uint64_t bare, lines;

	memset(info_r, 0, sizeof(*info_r));
	if (msg == NULL && len > 0) {
		*error_r = sbx_xstrdup("mime: NULL message");
		return -1;
	}
	memset(&c, 0, sizeof(c));
	c.d = msg != NULL ? msg : "";
	c.len = len;
	root = parse_entity(&c, 0, 0, 0, &st);
	sbx_buf_append(&tab, TABLE_VERSION, strlen(TABLE_VERSION));
	table_write(&tab, &leaves, root, 0, 0, len);
	info_r->sections = buf_take(&tab);
	info_r->nleaves = leaves.len / sizeof(struct sbx_mime_leaf);
	info_r->leaves = (struct sbx_mime_leaf *)(void *)leaves.data;
	info_r->hdr_len = root->hdr_end;	/* == body_start at the top */
	top_header(root, "Date", &info_r->date);
	top_header(root, "Message-ID", &info_r->message_id);
	top_header(root, "In-Reply-To", &info_r->in_reply_to);
	top_header(root, "References", &info_r->references);
	envelope_write(&env, root);
	body_write(&c, &bs, root, 1);
	body_write(&c, &body, root, 0);
	count_range(&c, 0, len, &bare, &lines);
	info_r->size = (uint64_t)len + bare;
	info_r->envelope = buf_take(&env);
	info_r->bodystructure = buf_take(&bs);
	info_r->body = buf_take(&body);
	part_free(root);
	free(c.bnd);
	free(c.bnd_len);
	return 0;
}

void
sbx_mime_info_free(struct sbx_mime_info *info)
{
	if (info == NULL)
		return;
	free(info->envelope);
	free(info->bodystructure);
	free(info->body);
	free(info->sections);
	free(info->leaves);
	free(info->date);
	free(info->message_id);
	free(info->in_reply_to);
	free(info->references);
	memset(info, 0, sizeof(*info));
}
