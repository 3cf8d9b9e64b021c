/*
 * test_mime.c - ENVELOPE / BODYSTRUCTURE / BODY / RFC822.SIZE of every
 * tests/data/mime/NNN-*.eml compared with the Dovecot 2.3 oracle
 * (NNN-*.expected). Values are compared as IMAP value trees, so quoting vs
 * literals and escaping do not matter but every value does.
 *
 * Then every BODY[section] Dovecot answered (NNN-*.sections) is compared
 * byte for byte with sbx_mime_fetch_section() after the conversion the
 * IMAP layer applies on output (bare LF -> CRLF, NUL -> 0x80), the leaf
 * list is checked (inside the message, in order, no overlap, reassembles
 * the message), and section specs, missing parts and damaged part tables
 * get unit tests.
 */
#include <dirent.h>
#include <stdint.h>
#include <string.h>

#include <gmime/gmime.h>

#include "tap.h"
#include "mime.h"
#include "util.h"

enum { N_NIL, N_NUM, N_STR, N_LIST };

struct node {
	int kind;
	char *s;		/* N_NUM, N_STR */
	size_t len;
	struct node **kids;
	size_t nkids;
};

static void
node_free(struct node *n)
{
	size_t i;

	if (n == NULL)
		return;
	for (i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->s);
	free(n);
}

/* Parse one IMAP value at *p (< end); NULL on syntax error. */
static struct node *
parse_value(const char **p, const char *end, int depth)
{
	struct node *n;
	const char *s = *p;

	if (s >= end || depth > 100)
		return NULL;
	n = sbx_xcalloc(1, sizeof(*n));
	if (*s == '(') {
		n->kind = N_LIST;
		s++;
		for (;;) {
			struct node *k;

			while (s < end && *s == ' ')
				s++;
			if (s < end && *s == ')') {
				s++;
				break;
			}
			if ((k = parse_value(&s, end, depth + 1)) == NULL)
				goto fail;
			n->kids = sbx_xrealloc(n->kids, (n->nkids + 1) * sizeof(*n->kids));
			n->kids[n->nkids++] = k;
		}
	} else if (*s == '"') {
		struct sbx_buf b = { 0 };

		n->kind = N_STR;
		for (s++; s < end && *s != '"'; s++) {
			if (*s == '\\' && s + 1 < end)
				s++;
			sbx_buf_append(&b, s, 1);
		}
		if (s >= end) {
			sbx_buf_free(&b);
			goto fail;
		}
		s++;
		sbx_buf_append(&b, "", 1);
		n->s = b.data;
		n->len = b.len - 1;
	} else if (*s == '{') {
		char *e;
		unsigned long l = strtoul(s + 1, &e, 10);

		if (e + 3 > end || e[0] != '}' || e[1] != '\r' || e[2] != '\n' ||
		    (size_t)(end - (e + 3)) < l)
			goto fail;
		n->kind = N_STR;
		n->s = sbx_xstrndup(e + 3, l);
		n->len = l;
		s = e + 3 + l;
	} else if (end - s >= 3 && strncmp(s, "NIL", 3) == 0) {
		n->kind = N_NIL;
		s += 3;
	} else if (*s >= '0' && *s <= '9') {
		const char *b = s;

		while (s < end && *s >= '0' && *s <= '9')
			s++;
		n->kind = N_NUM;
		n->s = sbx_xstrndup(b, (size_t)(s - b));
		n->len = (size_t)(s - b);
	} else {
		goto fail;
	}
	*p = s;
	return n;
fail:
	node_free(n);
	return NULL;
}

static int
node_eq(const struct node *a, const struct node *b)
{
	size_t i;

	if (a->kind != b->kind || a->nkids != b->nkids)
		return 0;
	if ((a->kind == N_STR || a->kind == N_NUM) &&
	    (a->len != b->len || memcmp(a->s, b->s, a->len) != 0))
		return 0;
	for (i = 0; i < a->nkids; i++)
		if (!node_eq(a->kids[i], b->kids[i]))
			return 0;
	return 1;
}

/* The .expected file: "ITEM value\n" four times, literals inline. */
#define N_ITEMS 4
static const char *const items[N_ITEMS] = { "ENVELOPE", "BODYSTRUCTURE",
    "BODY", "RFC822.SIZE" };
static const char *const item_names[N_ITEMS] = { "envelope", "bodystructure",
    "body", "size" };

static int
parse_expected(const char *d, size_t len, struct node *out[N_ITEMS])
{
	const char *p = d, *end = d + len;
	size_t i;

	for (i = 0; i < N_ITEMS; i++) {
		size_t il = strlen(items[i]);

		if ((size_t)(end - p) < il + 1 || memcmp(p, items[i], il) != 0 ||
		    p[il] != ' ')
			return -1;
		p += il + 1;
		if ((out[i] = parse_value(&p, end, 0)) == NULL)
			return -1;
		if (p >= end || *p != '\n')
			return -1;
		p++;
	}
	return 0;
}

/*
 * Items where we deliberately differ from Dovecot because its answer
 * violates RFC 3501. Reported as ok only if our value equals `ours`.
 */
static const struct {
	const char *msg, *item, *ours, *reason;
} known_differences[] = {
	{ NULL, NULL, NULL, NULL }
};

static const char *top;

static void check_sections(const char *base, const char *msg, size_t len,
    const char *table);
static void check_leaves(const char *base, const char *msg, size_t len,
    const struct sbx_mime_info *info);

static void
check_message(const char *base)
{
	char *path, *data = NULL, *exp = NULL;
	size_t len = 0, elen = 0, i, k;
	struct sbx_mime_info info;
	struct node *want[N_ITEMS] = { 0 }, *got[N_ITEMS] = { 0 };
	char *error = NULL, sizebuf[32];
	const char *ours[N_ITEMS];
	int ok_exp;

	path = sbx_xasprintf("%s/tests/data/mime/%s.eml", top, base);
	if (sbx_read_file(path, 64 << 20, &data, &len) < 0) {
		printf("not ok - %s read eml\n", base);
		free(path);
		return;
	}
	free(path);
	path = sbx_xasprintf("%s/tests/data/mime/%s.expected", top, base);
	ok_exp = sbx_read_file(path, 64 << 20, &exp, &elen) == 0 &&
	    parse_expected(exp, elen, want) == 0;
	free(path);
	if (sbx_mime_parse(data, len, &info, &error) < 0) {
		printf("not ok - %s parse: %s\n", base, error);
		free(error);
		memset(&info, 0, sizeof(info));
	}
	snprintf(sizebuf, sizeof(sizebuf), "%llu", (unsigned long long)info.size);
	ours[0] = info.envelope;
	ours[1] = info.bodystructure;
	ours[2] = info.body;
	ours[3] = sizebuf;
	for (i = 0; i < N_ITEMS; i++) {
		const char *p = ours[i] != NULL ? ours[i] : "";
		int eq;

		got[i] = parse_value(&p, p + strlen(p), 0);
		eq = ok_exp && got[i] != NULL && *p == '\0' &&
		    node_eq(got[i], want[i]);
		for (k = 0; known_differences[k].msg != NULL; k++) {
			const char *q = known_differences[k].ours;
			struct node *rfc;

			if (strcmp(known_differences[k].msg, base) != 0 ||
			    strcmp(known_differences[k].item, item_names[i]) != 0)
				continue;
			rfc = parse_value(&q, q + strlen(q), 0);
			eq = rfc != NULL && got[i] != NULL && node_eq(rfc, got[i]);
			node_free(rfc);
			printf("%s - %s %s (known difference: %s)\n",
			    eq ? "ok" : "not ok", base, item_names[i],
			    known_differences[k].reason);
			if (!eq)
				tap_total_failed++;
			goto next;
		}
		if (!eq) {
			printf("# %s %s\n#  got: %s\n", base, items[i], ours[i]);
			tap_total_failed++;
		}
		printf("%s - %s %s\n", eq ? "ok" : "not ok", base, item_names[i]);
next:
		;
	}
	for (i = 0; i < N_ITEMS; i++) {
		node_free(want[i]);
		node_free(got[i]);
	}
	check_sections(base, data, len, info.sections);
	check_leaves(base, data, len, &info);
	sbx_mime_info_free(&info);
	free(data);
	free(exp);
}

/* What the IMAP layer sends for our bytes: Dovecot's CRLF stream (a LF
 * not preceded by CR gets one) and its NUL -> 0x80 literal rule. */
static void
imap_bytes(const char *s, size_t n, struct sbx_buf *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			sbx_buf_append(out, "\r", 1);
		sbx_buf_append(out, s[i] == '\0' ? "\x80" : &s[i], 1);
	}
}

/* Printable excerpt for a diagnostic line. */
static void
diag_bytes(const char *what, const char *s, size_t n)
{
	size_t i;

	printf("#  %s (%zu): ", what, n);
	for (i = 0; i < n && i < 300; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '\r')
			printf("\\r");
		else if (ch == '\n')
			printf("\\n");
		else if (ch < ' ' || ch >= 0x7f)
			printf("\\x%02x", ch);
		else
			putchar(ch);
	}
	printf("%s\n", n > 300 ? "..." : "");
}

/*
 * The .sections file: records "BODY[<spec>] {<n>}\n" + n bytes + "\n", or
 * "BODY[<spec>] NIL\n" (see dovecot-oracle.sh). Each is one TAP line.
 */
static void
check_sections(const char *base, const char *msg, size_t len,
    const char *table)
{
	char *path, *d = NULL;
	size_t dlen = 0, nrec = 0;
	const char *p, *end;

	path = sbx_xasprintf("%s/tests/data/mime/%s.sections", top, base);
	if (sbx_read_file(path, 64 << 20, &d, &dlen) < 0) {
		printf("not ok - %s read .sections\n", base);
		tap_total_failed++;
		free(path);
		return;
	}
	free(path);
	for (p = d, end = d + dlen; p < end; nrec++) {
		const char *sp, *q;
		char *spec, *out = NULL, *err = NULL, *e;
		size_t want_len, outlen = 0;
		const char *want;
		int nil = 0, ok;
		struct sbx_buf got = { 0 };

		if ((size_t)(end - p) < 5 || memcmp(p, "BODY[", 5) != 0 ||
		    (q = memchr(p, '\n', (size_t)(end - p))) == NULL ||
		    (sp = memmem(p, (size_t)(q - p), "] ", 2)) == NULL)
			break;
		spec = sbx_xstrndup(p + 5, (size_t)(sp - (p + 5)));
		if (sp + 2 + 4 == q + 1 && memcmp(sp + 2, "NIL\n", 4) == 0) {
			nil = 1;
			want = "";
			want_len = 0;
			p = q + 1;
		} else {
			want_len = strtoul(sp + 3, &e, 10);
			if (sp[2] != '{' || e[0] != '}' || e + 1 != q ||
			    want_len > (size_t)(end - (q + 1)) - 1) {
				free(spec);
				break;
			}
			want = q + 1;
			p = q + 1 + want_len + 1;
		}
		if (sbx_mime_fetch_section(msg, len, table, spec, &out, &outlen,
		    &err) < 0) {
			printf("# %s\n", err);
			free(err);
			ok = 0;
		} else {
			/* Dovecot 2.3 never says NIL for a body section */
			imap_bytes(out, outlen, &got);
			ok = !nil && got.len == want_len &&
			    (want_len == 0 || memcmp(got.data, want, want_len) == 0);
			if (!ok) {
				diag_bytes("want", want, want_len);
				diag_bytes("got", got.data, got.len);
			}
		}
		if (!ok)
			tap_total_failed++;
		printf("%s - %s BODY[%s]\n", ok ? "ok" : "not ok", base, spec);
		sbx_buf_free(&got);
		free(out);
		free(spec);
	}
	if (p != end || nrec == 0) {
		printf("not ok - %s .sections malformed at byte %zu\n", base,
		    (size_t)(p - d));
		tap_total_failed++;
	}
	free(d);
}

/* Leaves: inside the message, in order, not overlapping; cutting them
 * out and splicing them back gives the message. */
static void
check_leaves(const char *base, const char *msg, size_t len,
    const struct sbx_mime_info *info)
{
	struct sbx_buf skel = { 0 }, back = { 0 };
	size_t i, pos = 0, at;
	int ok = 1;	/* a multipart without parts has no leaf */

	for (i = 0; ok && i < info->nleaves; i++) {
		const struct sbx_mime_leaf *lf = &info->leaves[i];

		if (lf->off < pos || lf->off > len || lf->len > len - lf->off) {
			printf("# %s leaf %zu [%zu +%zu] out of order/range\n",
			    base, i, lf->off, lf->len);
			ok = 0;
			break;
		}
		sbx_buf_append(&skel, msg + pos, lf->off - pos);
		pos = lf->off + lf->len;
	}
	if (ok) {
		sbx_buf_append(&skel, msg + pos, len - pos);
		/* splice the leaf bytes back into the skeleton */
		for (i = 0, pos = 0, at = 0; i < info->nleaves; i++) {
			const struct sbx_mime_leaf *lf = &info->leaves[i];
			size_t gap = lf->off - pos;

			sbx_buf_append(&back, skel.data + at, gap);
			at += gap;
			sbx_buf_append(&back, msg + lf->off, lf->len);
			pos = lf->off + lf->len;
		}
		sbx_buf_append(&back, skel.data + at, skel.len - at);
		ok = back.len == len && (len == 0 ||
		    memcmp(back.data, msg, len) == 0);
	}
	if (ok && info->hdr_len > len)
		ok = 0;
	if (!ok)
		tap_total_failed++;
	printf("%s - %s leaves (%zu)\n", ok ? "ok" : "not ok", base,
	    info->nleaves);
	sbx_buf_free(&skel);
	sbx_buf_free(&back);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- unit tests of the section API ---- */

static const char msg_multi[] =
    "From: a@example.org\r\n"
    "Subject: unit\r\n"
    "Message-ID: <first@x>\r\n"
    "Message-ID: <second@x>\r\n"
    "References: <r1@x>\r\n <r2@x>\r\n"
    "Content-Type: multipart/mixed; boundary=\"b\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--b\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "one\r\n"
    "--b\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "Subject: inner\r\n"
    "X-A: 1\r\n"
    "\r\n"
    "inner body\r\n"
    "--b--\r\n";

static int
fetch(const char *msg, const char *table, const char *spec, char **out_r,
    size_t *len_r, char **err_r)
{
	return sbx_mime_fetch_section(msg, strlen(msg), table, spec, out_r,
	    len_r, err_r);
}

static int
fetch_is(const struct sbx_mime_info *info, const char *msg, const char *spec,
    const char *want)
{
	char *out = NULL, *err = NULL;
	size_t n = 0;
	int ok;

	if (fetch(msg, info->sections, spec, &out, &n, &err) < 0) {
		printf("# [%s]: %s\n", spec, err);
		free(err);
		return 0;
	}
	ok = n == strlen(want) && memcmp(out, want, n) == 0 && out[n] == '\0';
	if (!ok) {
		printf("# [%s]\n", spec);
		diag_bytes("want", want, strlen(want));
		diag_bytes("got", out, n);
	}
	free(out);
	return ok;
}

TEST(section_specs)
{
	static const char *const good[] = {
		"", "HEADER", "TEXT", "1", "1.2", "1.2.MIME", "2.HEADER",
		"2.TEXT", "header", "1.mime", "0", "01", "4294967297",
		"HEADER.FIELDS (From)", "header.fields (from subject)",
		"HEADER.FIELDS.NOT (Subject Received)", "HEADER.FIELDS  (From)",
		"HEADER.FIELDS ( From )", "HEADER.FIELDS (From) ",
		"HEADER.FIELDS (\"Fr\\\"om\" \"\")", "HEADER.FIELDS (NIL)",
		"HEADER.FIELDS (Fr%om X]Y)", "2.HEADER.FIELDS (Subject)",
		"1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23."
		    "24.25.26.27.28.29.30.31.32.33",
	};
	static const char *const bad[] = {
		"MIME", "FOO", "1.", ".1", "1..2", "1X", "1 ", " HEADER",
		"HEADER ", "TEXT.MIME", "1.MIME.TEXT", "HEADERX",
		"HEADER.FIELDS", "HEADER.FIELDS ()", "HEADER.FIELDS (From",
		"HEADER.FIELDS(From)", "HEADER.FIELDS (From)x",
		"HEADER.FIELDS ((From))", "HEADER.FIELDS (\"From)",
		"HEADER.FIELDS.NOT()", "HEADER.FIELDS ({4}\r\nFrom)",
		"HEADER.FIELDS (Fr\tom)", "HEADER.FIELDS (Fr\x80om)",
		"12345678901", "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19."
		    "20.21.22.23.24.25.26.27.28.29.30.31.32.33.34",
		"1.TEXT.HEADER", "HEADER.FIELDS.NOTX (A)",
	};
	struct sbx_mime_info info;
	struct sbx_buf b = { 0 };
	char *err = NULL, *out = NULL;
	size_t i, n;

	for (i = 0; i < sizeof(good) / sizeof(*good); i++)
		CHECKF(sbx_mime_section_valid(good[i]), "valid: [%s]", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		CHECKF(!sbx_mime_section_valid(bad[i]), "invalid: [%s]", bad[i]);
	CHECK(!sbx_mime_section_valid(NULL));
	/* the bounds: 1024 bytes, 100 field names */
	sbx_buf_append(&b, "HEADER.FIELDS (", 15);
	for (i = 0; i < 100; i++)
		sbx_buf_append(&b, i ? " X" : "X", i ? 2 : 1);
	sbx_buf_append(&b, ")", 2);
	CHECK(sbx_mime_section_valid(b.data));
	b.len--;
	sbx_buf_append(&b, " Y)", 4);
	memmove(b.data + b.len - 5, " Y)", 4);
	CHECK(!sbx_mime_section_valid(b.data));
	b.len = 0;
	sbx_buf_append(&b, "HEADER.FIELDS (", 15);
	while (b.len < 1023)
		sbx_buf_append(&b, "x", 1);
	sbx_buf_append(&b, ")", 2);
	CHECK(strlen(b.data) == 1024 && sbx_mime_section_valid(b.data));
	b.data[1023] = 'x';
	sbx_buf_append(&b, "", 0);
	b.len--;
	sbx_buf_append(&b, ")", 2);
	CHECK(strlen(b.data) == 1025 && !sbx_mime_section_valid(b.data));
	sbx_buf_free(&b);

	/* a malformed spec is an error with a clear message */
	CHECK(sbx_mime_parse(msg_multi, strlen(msg_multi), &info, &err) == 0);
	CHECK(fetch(msg_multi, info.sections, "1..2", &out, &n, &err) == -1);
	CHECK(err != NULL && strncmp(err, "invalid section spec: ", 22) == 0);
	CHECK(out == NULL);
	free(err);
	err = NULL;
	sbx_mime_info_free(&info);
}

TEST(section_parts)
{
	struct sbx_mime_info info;
	char *err = NULL;

	CHECK(sbx_mime_parse(msg_multi, strlen(msg_multi), &info, &err) == 0);
	CHECK(fetch_is(&info, msg_multi, "", msg_multi));
	CHECK(fetch_is(&info, msg_multi, "1", "one"));
	CHECK(fetch_is(&info, msg_multi, "0", "one"));	/* Dovecot */
	CHECK(fetch_is(&info, msg_multi, "1.MIME",
	    "Content-Type: text/plain\r\n\r\n"));
	CHECK(fetch_is(&info, msg_multi, "2", "Subject: inner\r\nX-A: 1\r\n"
	    "\r\ninner body"));
	CHECK(fetch_is(&info, msg_multi, "2.HEADER",
	    "Subject: inner\r\nX-A: 1\r\n\r\n"));
	CHECK(fetch_is(&info, msg_multi, "2.TEXT", "inner body"));
	CHECK(fetch_is(&info, msg_multi, "2.1", "inner body"));
	CHECK(fetch_is(&info, msg_multi, "2.1.MIME",
	    "Subject: inner\r\nX-A: 1\r\n\r\n"));
	CHECK(fetch_is(&info, msg_multi, "2.HEADER.FIELDS (x-a)",
	    "X-A: 1\r\n\r\n"));
	CHECK(fetch_is(&info, msg_multi, "2.HEADER.FIELDS.NOT (x-a)",
	    "Subject: inner\r\n\r\n"));
	CHECK(fetch_is(&info, msg_multi, "HEADER.FIELDS (References)",
	    "References: <r1@x>\r\n <r2@x>\r\n\r\n"));
	CHECK(fetch_is(&info, msg_multi, "HEADER.FIELDS (Message-ID)",
	    "Message-ID: <first@x>\r\nMessage-ID: <second@x>\r\n\r\n"));
	CHECK(fetch_is(&info, msg_multi, "HEADER.FIELDS (X-None)", "\r\n"));
	/* parts that do not exist: empty, rc 0 (Dovecot: {0}, not NIL) */
	CHECK(fetch_is(&info, msg_multi, "3", ""));
	CHECK(fetch_is(&info, msg_multi, "3.MIME", ""));
	/* Dovecot: a trailing ".1" stays on a non-multipart part */
	CHECK(fetch_is(&info, msg_multi, "1.1", "one"));
	CHECK(fetch_is(&info, msg_multi, "1.1.1", ""));
	CHECK(fetch_is(&info, msg_multi, "1.2", ""));
	CHECK(fetch_is(&info, msg_multi, "1.HEADER", ""));
	CHECK(fetch_is(&info, msg_multi, "1.TEXT", ""));
	CHECK(fetch_is(&info, msg_multi, "1.HEADER.FIELDS (From)", ""));
	CHECK(fetch_is(&info, msg_multi, "2.2", ""));
	CHECK(fetch_is(&info, msg_multi, "2.1.1", ""));
	CHECK(fetch_is(&info, msg_multi, "9999999999.1", ""));
	/* top-level values, first occurrence, unfolded */
	CHECK(info.message_id != NULL &&
	    strcmp(info.message_id, "<first@x>") == 0);
	CHECK(info.references != NULL &&
	    strcmp(info.references, "<r1@x> <r2@x>") == 0);
	CHECK(info.date == NULL && info.in_reply_to == NULL);
	CHECK(info.hdr_len == (size_t)(strstr(msg_multi, "\r\n\r\n") + 4 -
	    msg_multi));
	CHECK(info.nleaves == 2);
	if (info.nleaves == 2) {
		CHECK(info.leaves[0].len == 3 &&
		    memcmp(msg_multi + info.leaves[0].off, "one", 3) == 0);
		CHECK(info.leaves[1].len == 10 && memcmp(msg_multi +
		    info.leaves[1].off, "inner body", 10) == 0);
	}
	sbx_mime_info_free(&info);
}

static void
check_corpus_values(const char *base, size_t hdr_len, const char *date,
    const char *mid, const char *irt, const char *refs)
{
	char *path, *data = NULL, *err = NULL;
	size_t len = 0;
	struct sbx_mime_info info;

	path = sbx_xasprintf("%s/tests/data/mime/%s.eml", top, base);
	CHECK(sbx_read_file(path, 1 << 20, &data, &len) == 0);
	free(path);
	CHECK(sbx_mime_parse(data, len, &info, &err) == 0);
	CHECKF(info.hdr_len == hdr_len, "%s hdr_len %zu", base, info.hdr_len);
#define SAME(a, b) ((a) == NULL ? (b) == NULL : (b) != NULL && strcmp(a, b) == 0)
	CHECKF(SAME(info.date, date), "%s date %s", base, info.date);
	CHECKF(SAME(info.message_id, mid), "%s mid %s", base, info.message_id);
	CHECKF(SAME(info.in_reply_to, irt), "%s irt %s", base, info.in_reply_to);
	CHECKF(SAME(info.references, refs), "%s refs %s", base, info.references);
#undef SAME
	sbx_mime_info_free(&info);
	free(data);
}

TEST(top_header_values)
{
	check_corpus_values("025-msgid-inreplyto-references", 298 - 6,
	    "Sat, 12 Mar 2022 11:00:00 +0000", "<reply.025@example.org>",
	    "<orig.025@example.com> (Bob's message of yesterday)",
	    "<root.025@example.com> <mid.025@example.com>  "
	    "<orig.025@example.com>");
	/* no blank line: the whole message is header */
	check_corpus_values("019-headers-only-no-blank-line", 126,
	    "Fri, 11 Mar 2022 10:00:00 +0000", NULL, NULL, NULL);
	check_corpus_values("001-plain-text", 310,
	    "Mon, 7 Feb 1994 21:52:25 -0800 (PST)", "<plain.001@example.org>",
	    NULL, NULL);
}

/* Every damage to a table is an error or a harmless answer, never a
 * crash or a read outside the message (ASan watches). */
TEST(damaged_table)
{
	static const char *const bad[] = {
		"", "v1\n", "v2\n0 l 0 0 3\n", "v1\n0 l 0 0 4\n",
		"v1\n0 l 0 0 3", "v1\n0 x 0 0 3\n", "v1\n1 l 0 0 3\n",
		"v1\n0 l 0 2 1\n", "v1\n0 l 1 1 3\n", "v1\n0 l 00 0 3\n",
		"v1\n0 r 0 1 3\n", "v1\n0 l 0 1 3\n1 l 1 1 3\n",
		"v1\n0 m 0 1 3\n2 l 1 1 3\n", "v1\n0 r 0 1 3\n1 l 1 2 3\n"
		    "1 l 2 2 3\n", "v1\n0 m 0 1 3\n1 l 0 1 3\n",
		"v1\n0 m 0 1 3\n1 l 1 2 3\n1 l 1 2 3\n",
		"v1\n0 l 0 0 3\n0 l 0 0 3\n", "v1\n0  l 0 0 3\n",
		"v1\n0 l 0 0 99999999999999999999999\n", "v1\n0 l -0 0 3\n",
	};
	struct sbx_mime_info info;
	char *err = NULL, *out = NULL, *t;
	size_t i, j, n, tl;

	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		CHECKF(fetch("abc", bad[i], "1", &out, &n, &err) == -1,
		    "table %zu accepted", i);
		CHECKF(err != NULL && strncmp(err, "damaged section table: ",
		    23) == 0, "table %zu: %s", i, err);
		free(err);
		err = NULL;
	}
	CHECK(fetch("abc", NULL, "", &out, &n, &err) == -1);
	free(err);
	err = NULL;
	CHECK(fetch("abc", "v1\n0 l 0 1 3\n", "TEXT", &out, &n, &err) == 0);
	CHECK(n == 2 && strcmp(out, "bc") == 0);
	free(out);

	/* every truncation and every one-byte change of a real table */
	CHECK(sbx_mime_parse(msg_multi, strlen(msg_multi), &info, &err) == 0);
	tl = strlen(info.sections);
	t = sbx_xmalloc(tl + 1);
	for (i = 0; i <= tl; i++) {
		static const char *const specs[] = { "", "1", "2.1", "2.HEADER",
		    "HEADER.FIELDS (Subject)", "2.HEADER.FIELDS.NOT (X)" };
		static const char subst[] = "0179 \nmrlv";

		for (j = 0; j < sizeof(subst); j++) {
			size_t k;

			memcpy(t, info.sections, tl + 1);
			if (j == sizeof(subst) - 1)
				t[i] = '\0';	/* truncation */
			else if (i < tl)
				t[i] = subst[j];
			for (k = 0; k < sizeof(specs) / sizeof(*specs); k++) {
				out = err = NULL;
				if (fetch(msg_multi, t, specs[k], &out, &n,
				    &err) == 0)
					CHECK(out != NULL && n <= strlen(msg_multi) + 64);
				else
					CHECK(err != NULL && out == NULL);
				free(out);
				free(err);
			}
		}
	}
	free(t);
	/* a table from another (shorter) message is refused */
	CHECK(fetch("short", info.sections, "1", &out, &n, &err) == -1);
	free(err);
	sbx_mime_info_free(&info);
}

int
main(void)
{
	DIR *dir;
	struct dirent *de;
	char *dpath, **names = NULL;
	size_t n = 0, i;

	top = getenv("SBX_TOP");
	if (top == NULL || *top == '\0')
		top = ".";
	sbx_mime_init();
	dpath = sbx_xasprintf("%s/tests/data/mime", top);
	if ((dir = opendir(dpath)) == NULL) {
		printf("not ok - open %s\n", dpath);
		free(dpath);
		return 1;
	}
	while ((de = readdir(dir)) != NULL) {
		size_t l = strlen(de->d_name);

		if (l > 4 && strcmp(de->d_name + l - 4, ".eml") == 0) {
			names = sbx_xrealloc(names, (n + 1) * sizeof(*names));
			names[n++] = sbx_xstrndup(de->d_name, l - 4);
		}
	}
	closedir(dir);
	free(dpath);
	qsort(names, n, sizeof(*names), cmp_str);
	for (i = 0; i < n; i++) {
		check_message(names[i]);
		free(names[i]);
	}
	free(names);
	RUN(section_specs);
	RUN(section_parts);
	RUN(top_header_values);
	RUN(damaged_table);
	if (n == 0) {
		printf("not ok - no messages\n");
		tap_total_failed++;
	}
	g_mime_shutdown();
	return tap_done();
}
