/*
 * test_mime.c - ENVELOPE / BODYSTRUCTURE / BODY / RFC822.SIZE of every
 * tests/data/mime/NNN-*.eml compared with the Dovecot 2.3 oracle
 * (NNN-*.expected). Values are compared as IMAP value trees, so quoting vs
 * literals and escaping do not matter but every value does.
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
	sbx_mime_info_free(&info);
	free(data);
	free(exp);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
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
	if (n == 0) {
		printf("not ok - no messages\n");
		tap_total_failed++;
	}
	g_mime_shutdown();
	return tap_done();
}
