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
    int *stopped_r)
{
	size_t p = pos, cap = 0;
	int cl = 0;
	ssize_t idx;

	*stopped_r = 0;
	while (p < c->len) {
		size_t s = p, e, colon;

		if (c->d[p] == '\n')
			return p + 1;
		if (c->d[p] == '\r' && p + 1 < c->len && c->d[p + 1] == '\n')
			return p + 2;
		if (c->nbnd > 0 && (idx = match_boundary(c, p, &cl)) >= 0) {
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
	pt->body_start = parse_headers(c, pos, pt, st, &stopped);
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

/* ---- API ---- */

int
sbx_mime_parse(const char *msg, size_t len, struct sbx_mime_info *info_r,
    char **error_r)
{
	struct ctx c;
	struct stop st;
	struct part *root;
	struct sbx_buf env = { 0 }, bs = { 0 }, body = { 0 };
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
	memset(info, 0, sizeof(*info));
}
