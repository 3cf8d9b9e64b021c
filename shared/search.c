/*
 * search.c - IMAP SEARCH over one folder (search.h).
 *
 * The query tree is checked against the limits and copied into a prepared
 * tree (struct pnode), whose AND/OR children are ordered cheapest first.
 * Text criteria with equal type, field and string share one matcher.
 *
 * Then the folder's messages rows are walked once in UID order and the
 * tree is evaluated in C for each row. Flags, keywords, UIDs, MODSEQ,
 * dates and sizes come from the row itself; message text is read only for
 * text criteria:
 *
 *   - A needle of SBX_SEARCH_FTS_MIN characters or more first runs one
 *     FTS5 query on its column(s) ("hdrs", "body", ...), giving a sorted
 *     array of candidate content ids; a message whose content is not a
 *     candidate does not match. The limit counts characters, not bytes:
 *     the trigram tokenizer finds nothing for a query of fewer than three
 *     characters, so a one-character CJK needle (3 bytes) must scan.
 *   - A candidate (or, for short needles, every message) is verified by
 *     an exact case-insensitive substring match on the decoded text, read
 *     from the fts row of its content id: ASCII needles by an ASCII
 *     case-insensitive search (UTF-8 bytes >= 0x80 never equal an ASCII
 *     byte), others by comparing g_utf8_casefold() of both.
 *   - Results are cached per (matcher, content id): COPY within a folder
 *     shares contents, and a repeated criterion is verified once.
 *
 * HEADER reads the raw top-level header (the first contents.hdr_len
 * bytes of contents.rest), decodes each field named like the criterion
 * with sbx_mime_text_decode_header() (the decoding of the fts column
 * "hdrs", whose rows give the candidates) and matches its value.
 *
 * Dates compare "YYYY-MM-DD" strings: BEFORE/ON/SINCE the UTC day of
 * INTERNALDATE, SENT* contents.sent_day, the Date: header's own calendar
 * day. A message without a usable Date: is taken as sent on 1970-01-01,
 * as Dovecot does (index-mail.c stores sent_date 0 when the header is
 * missing or does not parse); RFC 3501 does not say.
 *
 * Known limits: the text searched is what was indexed at append
 * (SBX_STORE_FTS_MAX_BODY of body, SBX_MIME_TEXT_MAX_HEADERS of "hdrs");
 * for HEADER with a long needle that also means a field GMime did not see
 * as a header (a malformed header block) or past the "hdrs" cap is not
 * found, though short needles and "" (which scan the raw header) find it.
 * FTS5 folds case one code point at a time, so a needle whose full case
 * folding changes its length ("STRASSE" for "straße") can miss candidates
 * that g_utf8_casefold() would have accepted.
 */
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <sqlite3.h>

#include "mimetext.h"
#include "search.h"
#include "store.h"
#include "util.h"

/* Needles of this many characters or more take FTS5 candidates. */
#define SBX_SEARCH_FTS_MIN 3

/* Columns of the fts table, in order. */
enum fts_col {
	COL_FROM, COL_TO, COL_CC, COL_BCC, COL_SUBJECT, COL_HDRS, COL_BODY,
	COL_COUNT
};

/* Verification results of one matcher: content id -> 0/1 (open
 * addressing; ids are > 0, 0 marks a free slot). */
struct result_cache {
	int64_t *keys;
	unsigned char *vals;
	size_t cap, n;
};

struct matcher {
	enum sbx_search_type type;
	const char *header;     /* HEADER field name */
	const char *str;
	size_t len;             /* bytes of str */
	int ascii;
	char *needle;           /* ASCII: lower-cased; else casefolded */
	size_t needle_len;
	int use_cand;
	int64_t *cand;          /* sorted candidate content ids */
	size_t ncand;
	struct result_cache cache;
};

struct pnode {
	enum sbx_search_type type;
	const struct sbx_search *q;
	int cost;               /* 0 row only, 1 FTS candidates, 2 scan */
	struct pnode **kids;    /* AND/OR/NOT, cheapest first */
	size_t nkids;
	struct matcher *m;      /* text criteria and HEADER */
	struct sbx_uid_range *ranges;  /* UID: sorted, merged */
	size_t nranges;
};

/* One messages row, valid until the next step. */
struct row {
	int64_t content_id;
	uint32_t uid;
	unsigned flags;
	const char *keywords;
	uint64_t modseq;
	const char *idate;
	size_t idate_len;
	uint64_t size;
	const char *sent_day;   /* NULL: no usable Date: */
	size_t sent_day_len;
};

struct search_ctx {
	sqlite3 *db;
	struct pnode *nodes;
	size_t nused;           /* nodes filled by prepare() */
	struct matcher **matchers;
	size_t nmatchers;
	int need_sent;
	/* the fts row of the current content id */
	sqlite3_stmt *fts_row;
	int64_t fts_id;
	int fts_have;           /* fts_row is on a row of fts_id */
	int fts_found;
	/* the raw top-level header of the current content id */
	sqlite3_stmt *hdr_row;
	sqlite3_blob *blob;     /* contents.rest */
	int64_t hdr_id;
	char *hdr;
	size_t hdr_len;
	char *error;
};

static int
sql_fail(struct search_ctx *c, const char *what)
{
	if (c->error == NULL)
		c->error = sbx_xasprintf("search: %s: %s", what,
		    sqlite3_errmsg(c->db));
	return -1;
}

static int
fail(struct search_ctx *c, char *msg)
{
	if (c->error == NULL)
		c->error = msg;
	else
		free(msg);
	return -1;
}

/* ---- result cache ---- */

static size_t
cache_slot(const struct result_cache *rc, int64_t id)
{
	uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;

	return (size_t)(h >> 17) & (rc->cap - 1);
}

static int
cache_get(const struct result_cache *rc, int64_t id)
{
	size_t i;

	if (rc->cap == 0)
		return -1;
	for (i = cache_slot(rc, id); rc->keys[i] != 0; i = (i + 1) & (rc->cap - 1))
		if (rc->keys[i] == id)
			return rc->vals[i];
	return -1;
}

static void
cache_put(struct result_cache *rc, int64_t id, int v)
{
	size_t i;

	if (id <= 0)
		return;
	if ((rc->n + 1) * 2 > rc->cap) {
		struct result_cache big;
		size_t j;

		big.cap = rc->cap == 0 ? 64 : rc->cap * 2;
		big.n = 0;
		big.keys = sbx_xcalloc(big.cap, sizeof(*big.keys));
		big.vals = sbx_xcalloc(big.cap, 1);
		for (j = 0; j < rc->cap; j++)
			if (rc->keys[j] != 0)
				cache_put(&big, rc->keys[j], rc->vals[j]);
		free(rc->keys);
		free(rc->vals);
		*rc = big;
	}
	for (i = cache_slot(rc, id); rc->keys[i] != 0; i = (i + 1) & (rc->cap - 1))
		if (rc->keys[i] == id) {
			rc->vals[i] = (unsigned char)v;
			return;
		}
	rc->keys[i] = id;
	rc->vals[i] = (unsigned char)v;
	rc->n++;
}

/* ---- matching ---- */

static int
is_ascii(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 0;
	return 1;
}

/* 1 if the lower-case ASCII needle n[0..nlen) occurs in h[0..hlen),
 * ASCII case-insensitively. */
static int
ascii_ci_contains(const char *h, size_t hlen, const char *n, size_t nlen)
{
	unsigned char lo, up;
	size_t i, j;

	if (nlen == 0)
		return 1;
	if (hlen < nlen)
		return 0;
	lo = (unsigned char)n[0];
	up = (unsigned char)g_ascii_toupper(n[0]);
	for (i = 0; i <= hlen - nlen; i++) {
		unsigned char b = (unsigned char)h[i];

		if (b != lo && b != up)
			continue;
		for (j = 1; j < nlen; j++)
			if (g_ascii_tolower(h[i + j]) != n[j])
				break;
		if (j == nlen)
			return 1;
	}
	return 0;
}

/* 1 if m's needle occurs in the UTF-8 text s[0..len). */
static int
text_contains(const struct matcher *m, const char *s, size_t len)
{
	char *fold, *fixed = NULL;
	int r;

	if (m->needle_len == 0)
		return 1;
	if (s == NULL || len < (m->ascii ? m->needle_len : 1))
		return 0;
	if (m->ascii)
		return ascii_ci_contains(s, len, m->needle, m->needle_len);
	if (!g_utf8_validate(s, len, NULL)) {
		fixed = g_utf8_make_valid(s, len);
		s = fixed;
		len = strlen(fixed);
	}
	fold = g_utf8_casefold(s, len);
	r = strstr(fold, m->needle) != NULL;
	g_free(fold);
	g_free(fixed);
	return r;
}

/* Position the fts statement on content id's row; 0 or -1. */
static int
fts_load(struct search_ctx *c, int64_t id)
{
	int rc;

	if (c->fts_have && c->fts_id == id)
		return 0;
	c->fts_have = 0;
	if (c->fts_row == NULL && sqlite3_prepare_v2(c->db, "SELECT h_from, "
	    "h_to, h_cc, h_bcc, subject, hdrs, body FROM fts WHERE rowid = ?1",
	    -1, &c->fts_row, NULL) != SQLITE_OK)
		return sql_fail(c, "reading the text index");
	sqlite3_reset(c->fts_row);
	sqlite3_bind_int64(c->fts_row, 1, id);
	rc = sqlite3_step(c->fts_row);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sql_fail(c, "reading the text index");
	c->fts_found = rc == SQLITE_ROW;
	c->fts_id = id;
	c->fts_have = 1;
	return 0;
}

static int
fts_col_contains(struct search_ctx *c, const struct matcher *m, enum fts_col col)
{
	const char *s;

	if (!c->fts_found)
		return m->needle_len == 0;
	s = (const char *)sqlite3_column_text(c->fts_row, col);
	return text_contains(m, s, (size_t)sqlite3_column_bytes(c->fts_row, col));
}

/*
 * Load the raw top-level header of content id into c->hdr; 0 or -1. Only
 * the first hdr_len bytes of contents.rest are read, through incremental
 * blob I/O: substr() in SQL would load the whole value, small parts and
 * all, for every message a HEADER criterion scans.
 */
static int
hdr_load(struct search_ctx *c, int64_t id)
{
	int64_t want;
	int rc, n;

	if (c->hdr != NULL && c->hdr_id == id)
		return 0;
	free(c->hdr);
	c->hdr = NULL;
	c->hdr_len = 0;
	if (c->hdr_row == NULL && sqlite3_prepare_v2(c->db, "SELECT hdr_len "
	    "FROM contents WHERE id = ?1", -1, &c->hdr_row, NULL) != SQLITE_OK)
		return sql_fail(c, "reading a message header");
	sqlite3_reset(c->hdr_row);
	sqlite3_bind_int64(c->hdr_row, 1, id);
	rc = sqlite3_step(c->hdr_row);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sql_fail(c, "reading a message header");
	want = rc == SQLITE_ROW ? sqlite3_column_int64(c->hdr_row, 0) : 0;
	sqlite3_reset(c->hdr_row);
	n = 0;
	if (want > 0) {
		if (c->blob == NULL)
			rc = sqlite3_blob_open(c->db, "main", "contents", "rest", id,
			    0, &c->blob);
		else
			rc = sqlite3_blob_reopen(c->blob, id);
		if (rc != SQLITE_OK)
			return sql_fail(c, "reading a message header");
		n = sqlite3_blob_bytes(c->blob);
		if (want < n)
			n = (int)want;
	}
	c->hdr = sbx_xmalloc((size_t)n + 1);
	if (n > 0 && sqlite3_blob_read(c->blob, c->hdr, n, 0) != SQLITE_OK) {
		free(c->hdr);
		c->hdr = NULL;
		return sql_fail(c, "reading a message header");
	}
	c->hdr[n] = '\0';
	c->hdr_len = (size_t)n;
	c->hdr_id = id;
	return 0;
}

/* End of the line starting at p (after its LF, or end). */
static const char *
line_end(const char *p, const char *end)
{
	const char *lf = memchr(p, '\n', end - p);

	return lf == NULL ? end : lf + 1;
}

static int
line_is_blank(const char *p, const char *end)
{
	return p < end && (*p == '\n' || (*p == '\r' && (p + 1 == end || p[1] == '\n')));
}

/*
 * HEADER: 1 if a top-level field called m->header has a decoded value
 * containing the needle (any value when the needle is ""). Fields are
 * lines "Name:" up to the next line not starting with SP/HT; lines
 * without a colon are skipped, and the header ends at a blank line.
 */
static int
header_matches(const struct matcher *m, const char *h, size_t len)
{
	const char *p = h, *end = h + len, *colon, *vend, *name_end;
	size_t hn = strlen(m->header);

	while (p < end && !line_is_blank(p, end)) {
		vend = line_end(p, end);
		while (vend < end && (*vend == ' ' || *vend == '\t'))
			vend = line_end(vend, end);
		if (*p == ' ' || *p == '\t' ||
		    (colon = memchr(p, ':', vend - p)) == NULL) {
			p = vend;
			continue;
		}
		name_end = colon;
		while (name_end > p && (name_end[-1] == ' ' || name_end[-1] == '\t'))
			name_end--;
		if ((size_t)(name_end - p) == hn &&
		    g_ascii_strncasecmp(p, m->header, hn) == 0) {
			char *dec;
			int r;

			if (m->len == 0)
				return 1;
			dec = sbx_mime_text_decode_header(colon + 1,
			    (size_t)(vend - colon - 1));
			r = text_contains(m, dec, strlen(dec));
			free(dec);
			if (r)
				return 1;
		}
		p = vend;
	}
	return 0;
}

static int
cand_has(const struct matcher *m, int64_t id)
{
	size_t lo = 0, hi = m->ncand;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->cand[mid] == id)
			return 1;
		if (m->cand[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* A text criterion or HEADER on the row's content: 1, 0 or -1. */
static int
match_text(struct search_ctx *c, struct matcher *m, int64_t id)
{
	int r;

	if (m->type != SBX_SEARCH_HEADER && m->len == 0)
		return 1;	/* every text contains "" */
	if (m->use_cand && !cand_has(m, id))
		return 0;
	if ((r = cache_get(&m->cache, id)) >= 0)
		return r;
	if (m->type == SBX_SEARCH_HEADER) {
		if (hdr_load(c, id) < 0)
			return -1;
		r = header_matches(m, c->hdr, c->hdr_len);
	} else {
		if (fts_load(c, id) < 0)
			return -1;
		switch (m->type) {
		case SBX_SEARCH_TEXT:
			r = fts_col_contains(c, m, COL_HDRS) ||
			    fts_col_contains(c, m, COL_BODY);
			break;
		case SBX_SEARCH_BODY:
			r = fts_col_contains(c, m, COL_BODY);
			break;
		case SBX_SEARCH_FROM:
			r = fts_col_contains(c, m, COL_FROM);
			break;
		case SBX_SEARCH_TO:
			r = fts_col_contains(c, m, COL_TO);
			break;
		case SBX_SEARCH_CC:
			r = fts_col_contains(c, m, COL_CC);
			break;
		case SBX_SEARCH_BCC:
			r = fts_col_contains(c, m, COL_BCC);
			break;
		case SBX_SEARCH_SUBJECT:
			r = fts_col_contains(c, m, COL_SUBJECT);
			break;
		default:
			r = 0;
			break;
		}
	}
	cache_put(&m->cache, id, r);
	return r;
}

static int
keyword_set(const char *list, const char *kw)
{
	size_t n = strlen(kw);
	const char *p = list, *e;

	if (list == NULL || n == 0)
		return 0;
	while (*p != '\0') {
		while (*p == ' ')
			p++;
		e = p;
		while (*e != '\0' && *e != ' ')
			e++;
		if ((size_t)(e - p) == n && g_ascii_strncasecmp(p, kw, n) == 0)
			return 1;
		p = e;
	}
	return 0;
}

static int
uid_in(const struct pnode *n, uint32_t uid)
{
	size_t lo = 0, hi = n->nranges;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (uid < n->ranges[mid].lo)
			hi = mid;
		else if (uid > n->ranges[mid].hi)
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

/* Compare the day s[0..len) with the criterion's day: <0, 0, >0. A day
 * that is not "YYYY-MM-DD"-shaped sorts as 1970-01-01 (see the top). */
static int
day_cmp(const char *s, size_t len, const char *day)
{
	if (s == NULL || len < 10)
		s = "1970-01-01";
	return memcmp(s, day, 10);
}

/* 1, 0, or -1 with c->error. */
static int
eval(struct search_ctx *c, const struct pnode *n, const struct row *r)
{
	size_t i;
	int v;

	switch (n->type) {
	case SBX_SEARCH_ALL:
		return 1;
	case SBX_SEARCH_AND:
		for (i = 0; i < n->nkids; i++)
			if ((v = eval(c, n->kids[i], r)) <= 0)
				return v;
		return 1;
	case SBX_SEARCH_OR:
		for (i = 0; i < n->nkids; i++)
			if ((v = eval(c, n->kids[i], r)) != 0)
				return v;
		return 0;
	case SBX_SEARCH_NOT:
		v = eval(c, n->kids[0], r);
		return v < 0 ? v : !v;
	case SBX_SEARCH_FLAGS:
		return (r->flags & n->q->flags) == n->q->flags;
	case SBX_SEARCH_KEYWORD:
		return keyword_set(r->keywords, n->q->str);
	case SBX_SEARCH_UID:
		return uid_in(n, r->uid);
	case SBX_SEARCH_TEXT:
	case SBX_SEARCH_BODY:
	case SBX_SEARCH_FROM:
	case SBX_SEARCH_TO:
	case SBX_SEARCH_CC:
	case SBX_SEARCH_BCC:
	case SBX_SEARCH_SUBJECT:
	case SBX_SEARCH_HEADER:
		return match_text(c, n->m, r->content_id);
	case SBX_SEARCH_BEFORE:
		return day_cmp(r->idate, r->idate_len, n->q->day) < 0;
	case SBX_SEARCH_ON:
		return day_cmp(r->idate, r->idate_len, n->q->day) == 0;
	case SBX_SEARCH_SINCE:
		return day_cmp(r->idate, r->idate_len, n->q->day) >= 0;
	case SBX_SEARCH_SENTBEFORE:
		return day_cmp(r->sent_day, r->sent_day_len, n->q->day) < 0;
	case SBX_SEARCH_SENTON:
		return day_cmp(r->sent_day, r->sent_day_len, n->q->day) == 0;
	case SBX_SEARCH_SENTSINCE:
		return day_cmp(r->sent_day, r->sent_day_len, n->q->day) >= 0;
	case SBX_SEARCH_LARGER:
		return r->size > n->q->num;
	case SBX_SEARCH_SMALLER:
		return r->size < n->q->num;
	case SBX_SEARCH_MODSEQ:
		return r->modseq >= n->q->num;
	}
	return 0;
}

/* ---- preparing the query ---- */

static int
is_text_type(enum sbx_search_type t)
{
	return t == SBX_SEARCH_TEXT || t == SBX_SEARCH_BODY ||
	    t == SBX_SEARCH_FROM || t == SBX_SEARCH_TO || t == SBX_SEARCH_CC ||
	    t == SBX_SEARCH_BCC || t == SBX_SEARCH_SUBJECT ||
	    t == SBX_SEARCH_HEADER;
}

static const char *
type_name(enum sbx_search_type t)
{
	static const char *const names[] = {
		"ALL", "AND", "OR", "NOT", "FLAGS", "KEYWORD", "UID", "TEXT",
		"BODY", "FROM", "TO", "CC", "BCC", "SUBJECT", "HEADER",
		"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE",
		"LARGER", "SMALLER", "MODSEQ",
	};

	return (size_t)t < G_N_ELEMENTS(names) ? names[t] : "?";
}

/* 1 if day is "YYYY-MM-DD", a real calendar day, NUL-terminated. */
static int
day_valid(const char day[11])
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int i, y, mo, d;

	for (i = 0; i < 10; i++) {
		if (i == 4 || i == 7) {
			if (day[i] != '-')
				return 0;
		} else if (!g_ascii_isdigit(day[i])) {
			return 0;
		}
	}
	if (day[10] != '\0')
		return 0;
	y = (day[0] - '0') * 1000 + (day[1] - '0') * 100 + (day[2] - '0') * 10 + (day[3] - '0');
	mo = (day[5] - '0') * 10 + (day[6] - '0');
	d = (day[8] - '0') * 10 + (day[9] - '0');
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
		return 0;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 0;
	return 1;
}

/* RFC 5322 field name: printable ASCII but ':' and space. */
static int
field_name_valid(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 32 || (unsigned char)*s >= 127 || *s == ':')
			return 0;
	return 1;
}

/* Count the nodes and check every limit and field; 0 or -1. */
static int
check_tree(struct search_ctx *c, const struct sbx_search *q, int depth, size_t *count)
{
	size_t i;

	if (depth > SBX_SEARCH_MAX_DEPTH)
		return fail(c, sbx_xasprintf("search: criteria nested deeper "
		    "than %d levels", SBX_SEARCH_MAX_DEPTH));
	if (++*count > SBX_SEARCH_MAX_NODES)
		return fail(c, sbx_xasprintf("search: more than %d criteria",
		    SBX_SEARCH_MAX_NODES));
	switch (q->type) {
	case SBX_SEARCH_AND:
	case SBX_SEARCH_OR:
	case SBX_SEARCH_NOT:
		if (q->type == SBX_SEARCH_NOT && q->nchildren != 1)
			return fail(c, sbx_xasprintf("search: NOT takes one "
			    "criterion, not %zu", q->nchildren));
		if (q->nchildren > 0 && q->children == NULL)
			return fail(c, sbx_xasprintf("search: %s without its "
			    "criteria", type_name(q->type)));
		if (q->nchildren > SBX_SEARCH_MAX_NODES)
			return fail(c, sbx_xasprintf("search: more than %d "
			    "criteria", SBX_SEARCH_MAX_NODES));
		for (i = 0; i < q->nchildren; i++)
			if (check_tree(c, &q->children[i], depth + 1, count) < 0)
				return -1;
		return 0;
	case SBX_SEARCH_KEYWORD:
	case SBX_SEARCH_TEXT:
	case SBX_SEARCH_BODY:
	case SBX_SEARCH_FROM:
	case SBX_SEARCH_TO:
	case SBX_SEARCH_CC:
	case SBX_SEARCH_BCC:
	case SBX_SEARCH_SUBJECT:
	case SBX_SEARCH_HEADER:
		if (q->str == NULL)
			return fail(c, sbx_xasprintf("search: %s without a "
			    "string", type_name(q->type)));
		if (strlen(q->str) > SBX_SEARCH_MAX_STRING)
			return fail(c, sbx_xasprintf("search: %s string longer "
			    "than %d bytes", type_name(q->type),
			    SBX_SEARCH_MAX_STRING));
		if (!g_utf8_validate(q->str, -1, NULL))
			return fail(c, sbx_xasprintf("search: %s string is not "
			    "valid UTF-8", type_name(q->type)));
		if (q->type != SBX_SEARCH_HEADER)
			return 0;
		if (q->header == NULL || strlen(q->header) > SBX_SEARCH_MAX_STRING ||
		    !field_name_valid(q->header))
			return fail(c, sbx_xstrdup("search: HEADER needs a valid "
			    "field name"));
		return 0;
	case SBX_SEARCH_UID:
		if (q->nranges > 0 && q->ranges == NULL)
			return fail(c, sbx_xstrdup("search: UID without its ranges"));
		return 0;
	case SBX_SEARCH_BEFORE:
	case SBX_SEARCH_ON:
	case SBX_SEARCH_SINCE:
	case SBX_SEARCH_SENTBEFORE:
	case SBX_SEARCH_SENTON:
	case SBX_SEARCH_SENTSINCE:
		if (!day_valid(q->day))
			return fail(c, sbx_xasprintf("search: %s needs a day "
			    "YYYY-MM-DD", type_name(q->type)));
		if (q->type >= SBX_SEARCH_SENTBEFORE)
			c->need_sent = 1;
		return 0;
	case SBX_SEARCH_ALL:
	case SBX_SEARCH_FLAGS:
	case SBX_SEARCH_LARGER:
	case SBX_SEARCH_SMALLER:
	case SBX_SEARCH_MODSEQ:
		return 0;
	}
	return fail(c, sbx_xasprintf("search: unknown criterion %d", (int)q->type));
}

static int
range_cmp(const void *a, const void *b)
{
	const struct sbx_uid_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static int
id_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int
kid_cost_cmp(const void *a, const void *b)
{
	const struct pnode *x = *(struct pnode *const *)a;
	const struct pnode *y = *(struct pnode *const *)b;

	return x->cost - y->cost;
}

/* The FTS5 column filter of a text criterion. */
static const char *
fts_columns(enum sbx_search_type t)
{
	switch (t) {
	case SBX_SEARCH_TEXT:
		return "{hdrs body}";
	case SBX_SEARCH_BODY:
		return "body";
	case SBX_SEARCH_FROM:
		return "h_from";
	case SBX_SEARCH_TO:
		return "h_to";
	case SBX_SEARCH_CC:
		return "h_cc";
	case SBX_SEARCH_BCC:
		return "h_bcc";
	case SBX_SEARCH_SUBJECT:
		return "subject";
	default:
		return "hdrs";
	}
}

/* Run the FTS5 query of m: its candidate content ids, sorted. */
static int
fts_candidates(struct search_ctx *c, struct matcher *m)
{
	GString *expr = g_string_new(fts_columns(m->type));
	sqlite3_stmt *stmt = NULL;
	size_t i, cap = 0;
	int rc;

	g_string_append(expr, " : \"");
	for (i = 0; i < m->len; i++) {
		if (m->str[i] == '"')
			g_string_append_c(expr, '"');
		g_string_append_c(expr, m->str[i]);
	}
	g_string_append_c(expr, '"');
	if (sqlite3_prepare_v2(c->db, "SELECT rowid FROM fts WHERE fts MATCH ?1",
	    -1, &stmt, NULL) != SQLITE_OK) {
		g_string_free(expr, TRUE);
		return sql_fail(c, "querying the text index");
	}
	sqlite3_bind_text(stmt, 1, expr->str, (int)expr->len, SQLITE_TRANSIENT);
	g_string_free(expr, TRUE);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (m->ncand == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			m->cand = sbx_xrealloc(m->cand, cap * sizeof(*m->cand));
		}
		m->cand[m->ncand++] = sqlite3_column_int64(stmt, 0);
	}
	if (rc != SQLITE_DONE) {
		sql_fail(c, "querying the text index");
		sqlite3_finalize(stmt);
		return -1;
	}
	sqlite3_finalize(stmt);
	if (m->ncand > 1)
		qsort(m->cand, m->ncand, sizeof(*m->cand), id_cmp);
	m->use_cand = 1;
	return 0;
}

/* The matcher for text criterion q, shared with an equal earlier one. */
static int
get_matcher(struct search_ctx *c, const struct sbx_search *q, struct matcher **m_r)
{
	struct matcher *m;
	size_t i;

	for (i = 0; i < c->nmatchers; i++) {
		m = c->matchers[i];
		if (m->type == q->type && strcmp(m->str, q->str) == 0 &&
		    (q->type != SBX_SEARCH_HEADER ||
		    g_ascii_strcasecmp(m->header, q->header) == 0)) {
			*m_r = m;
			return 0;
		}
	}
	m = sbx_xcalloc(1, sizeof(*m));
	m->type = q->type;
	m->header = q->header;
	m->str = q->str;
	m->len = strlen(q->str);
	m->ascii = is_ascii(q->str, m->len);
	if (m->ascii) {
		m->needle = g_ascii_strdown(q->str, (gssize)m->len);
	} else {
		m->needle = g_utf8_casefold(q->str, (gssize)m->len);
	}
	m->needle_len = strlen(m->needle);
	c->matchers = sbx_xrealloc(c->matchers,
	    (c->nmatchers + 1) * sizeof(*c->matchers));
	c->matchers[c->nmatchers++] = m;
	*m_r = m;
	if (m->len > 0 && g_utf8_strlen(q->str, (gssize)m->len) >= SBX_SEARCH_FTS_MIN)
		return fts_candidates(c, m);
	return 0;
}

static struct pnode *
prepare(struct search_ctx *c, const struct sbx_search *q)
{
	struct pnode *n = &c->nodes[c->nused++];
	size_t i;

	n->type = q->type;
	n->q = q;
	switch (q->type) {
	case SBX_SEARCH_AND:
	case SBX_SEARCH_OR:
	case SBX_SEARCH_NOT:
		n->nkids = q->nchildren;
		n->kids = sbx_xcalloc(n->nkids + 1, sizeof(*n->kids));
		for (i = 0; i < n->nkids; i++) {
			if ((n->kids[i] = prepare(c, &q->children[i])) == NULL)
				return NULL;
			if (n->kids[i]->cost > n->cost)
				n->cost = n->kids[i]->cost;
		}
		/* stable enough: equal costs keep no promised order, and
		 * AND/OR results do not depend on it */
		if (n->nkids > 1)
			qsort(n->kids, n->nkids, sizeof(*n->kids), kid_cost_cmp);
		break;
	case SBX_SEARCH_UID:
		if (q->nranges > 0) {
			size_t j = 0;

			n->ranges = sbx_xmalloc(q->nranges * sizeof(*n->ranges));
			for (i = 0; i < q->nranges; i++) {
				n->ranges[i] = q->ranges[i];
				if (n->ranges[i].lo > n->ranges[i].hi) {
					uint32_t t = n->ranges[i].lo;

					n->ranges[i].lo = n->ranges[i].hi;
					n->ranges[i].hi = t;
				}
			}
			qsort(n->ranges, q->nranges, sizeof(*n->ranges), range_cmp);
			for (i = 1; i < q->nranges; i++) {
				if (n->ranges[i].lo <= n->ranges[j].hi ||
				    n->ranges[i].lo - 1 == n->ranges[j].hi) {
					if (n->ranges[i].hi > n->ranges[j].hi)
						n->ranges[j].hi = n->ranges[i].hi;
				} else {
					n->ranges[++j] = n->ranges[i];
				}
			}
			n->nranges = j + 1;
		}
		break;
	default:
		if (!is_text_type(q->type))
			break;
		if (get_matcher(c, q, &n->m) < 0)
			return NULL;
		n->cost = n->m->use_cand ? 1 : 2;
		break;
	}
	return n;
}

static void
ctx_free(struct search_ctx *c)
{
	size_t i;

	for (i = 0; i < c->nused; i++) {
		free(c->nodes[i].kids);
		free(c->nodes[i].ranges);
	}
	free(c->nodes);
	for (i = 0; i < c->nmatchers; i++) {
		struct matcher *m = c->matchers[i];

		g_free(m->needle);
		free(m->cand);
		free(m->cache.keys);
		free(m->cache.vals);
		free(m);
	}
	free(c->matchers);
	sqlite3_finalize(c->fts_row);
	sqlite3_finalize(c->hdr_row);
	free(c->hdr);
}

/* A text matcher with FTS candidates that every match must satisfy (the
 * root, or a child of an AND chain down from it), the one with the fewest
 * candidates; NULL when there is none. */
static struct matcher *
find_driver(const struct pnode *n)
{
	struct matcher *best = NULL, *m;
	size_t i;

	if (n->m != NULL && n->m->use_cand)
		return n->m;
	if (n->type != SBX_SEARCH_AND)
		return NULL;
	for (i = 0; i < n->nkids; i++) {
		m = find_driver(n->kids[i]);
		if (m != NULL && (best == NULL || m->ncand < best->ncand))
			best = m;
	}
	return best;
}

static int
uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Above this many candidates, one pass over the folder is cheaper than a
 * lookup per candidate. */
#define DRIVER_MAX_CAND 20000

/*
 * The folder's rows (all of them, or only those of the driver's candidate
 * contents), each evaluated against the tree; the matching UIDs, ascending,
 * into *uids_r. Starting from the candidates keeps a rare-word SEARCH TEXT
 * on a 100,000-message folder from reading 100,000 rows (bench/RESULTS.md).
 */
static int
walk(struct search_ctx *c, int64_t folder_id, const struct pnode *root,
     uint32_t **uids_r, size_t *n_r)
{
	static const char cols_plain[] =
		"SELECT m.content_id, m.uid, m.flags, m.keywords, m.modseq, m.internaldate, "
		"m.size, NULL FROM messages m ";
	static const char cols_sent[] =
		"SELECT m.content_id, m.uid, m.flags, m.keywords, m.modseq, "
		"m.internaldate, m.size, c.sent_day FROM messages m "
		"LEFT JOIN contents c ON c.id = m.content_id ";
	struct matcher *drv = find_driver(root);
	sqlite3_stmt *stmt;
	uint32_t *uids = NULL;
	size_t n = 0, cap = 0, k = 0;
	int rc = SQLITE_DONE, v = 0, by_cand = drv != NULL && drv->ncand <= DRIVER_MAX_CAND;
	char *sql;

	sql = sbx_xasprintf("%s%s", c->need_sent ? cols_sent : cols_plain,
	    by_cand ? "WHERE m.content_id = ?2 AND m.folder_id = ?1" :
	    "WHERE m.folder_id = ?1 ORDER BY m.uid");
	if (sqlite3_prepare_v2(c->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
		free(sql);
		return sql_fail(c, "listing messages");
	}
	free(sql);
	sqlite3_bind_int64(stmt, 1, folder_id);
	for (;;) {
		if (by_cand) {
			if (k == drv->ncand)
				break;
			sqlite3_reset(stmt);
			sqlite3_bind_int64(stmt, 2, drv->cand[k++]);
		}
		while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
			struct row r;

			r.content_id = sqlite3_column_int64(stmt, 0);
			r.uid = (uint32_t)sqlite3_column_int64(stmt, 1);
			r.flags = (unsigned)sqlite3_column_int(stmt, 2);
			r.keywords = (const char *)sqlite3_column_text(stmt, 3);
			r.modseq = (uint64_t)sqlite3_column_int64(stmt, 4);
			r.idate = (const char *)sqlite3_column_text(stmt, 5);
			r.idate_len = (size_t)sqlite3_column_bytes(stmt, 5);
			r.size = (uint64_t)sqlite3_column_int64(stmt, 6);
			r.sent_day = (const char *)sqlite3_column_text(stmt, 7);
			r.sent_day_len = (size_t)sqlite3_column_bytes(stmt, 7);
			if ((v = eval(c, root, &r)) < 0)
				break;
			if (v == 0)
				continue;
			if (n == cap) {
				cap = cap == 0 ? 64 : cap * 2;
				uids = sbx_xrealloc(uids, cap * sizeof(*uids));
			}
			uids[n++] = r.uid;
		}
		if (v < 0 || rc != SQLITE_DONE || !by_cand)
			break;
	}
	if (v >= 0 && rc != SQLITE_DONE)
		v = sql_fail(c, "listing messages");
	sqlite3_finalize(stmt);
	if (v < 0) {
		free(uids);
		return -1;
	}
	if (uids == NULL)
		uids = sbx_xmalloc(sizeof(*uids));
	else if (by_cand)
		qsort(uids, n, sizeof(*uids), uid_cmp);
	*uids_r = uids;
	*n_r = n;
	return 0;
}

int
sbx_store_search(struct sbx_store *st, const char *folder, const struct sbx_search *q,
		 uint32_t **uids_r, size_t *n_r, char **error_r)
{
	struct search_ctx c;
	struct pnode *root;
	int64_t folder_id;
	size_t count = 0;
	int r = -1;

	*uids_r = NULL;
	*n_r = 0;
	if (q == NULL) {
		*error_r = sbx_xstrdup("search: no criteria");
		return -1;
	}
	memset(&c, 0, sizeof(c));
	c.db = sbx_store_db(st);
	if (check_tree(&c, q, 1, &count) < 0) {
		*error_r = c.error;
		return -1;
	}
	/* one read transaction: the folder, the FTS candidates and the rows
	 * agree; a savepoint also nests in a caller's sbx_store_begin() */
	if (sqlite3_exec(c.db, "SAVEPOINT sbx_search", NULL, NULL, NULL) != SQLITE_OK) {
		sql_fail(&c, "starting a read transaction");
		*error_r = c.error;
		return -1;
	}
	if (sbx_store_folder_id(st, folder, &folder_id, &c.error) == 0) {
		c.nodes = sbx_xcalloc(count, sizeof(*c.nodes));
		if ((root = prepare(&c, q)) != NULL)
			r = walk(&c, folder_id, root, uids_r, n_r);
	}
	/* the statements must be done before the savepoint is released */
	sqlite3_reset(c.fts_row);
	sqlite3_reset(c.hdr_row);
	if (c.blob != NULL)
		(void)sqlite3_blob_close(c.blob);
	c.blob = NULL;
	(void)sqlite3_exec(c.db, "RELEASE sbx_search", NULL, NULL, NULL);
	ctx_free(&c);
	if (r < 0)
		*error_r = c.error != NULL ? c.error :
		    sbx_xstrdup("search: internal error");
	else
		free(c.error);
	return r;
}
