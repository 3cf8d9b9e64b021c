/* mbox.c - see mbox.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mbox.h"
#include "store.h"

#define FIELD_FOLDER   "X-Sealbox-Folder:"
#define FIELD_FLAGS    "X-Sealbox-Flags:"
#define FIELD_KEYWORDS "X-Sealbox-Keywords:"

/* The system flags in the order they are written. */
static const struct {
	const char *name;
	unsigned flag;
} flag_names[] = {
	{ "\\Seen", SBX_FLAG_SEEN },
	{ "\\Answered", SBX_FLAG_ANSWERED },
	{ "\\Flagged", SBX_FLAG_FLAGGED },
	{ "\\Deleted", SBX_FLAG_DELETED },
	{ "\\Draft", SBX_FLAG_DRAFT },
};
#define NFLAGS (sizeof(flag_names) / sizeof(flag_names[0]))

static int
is_from_quoted(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && p[i] == '>')
		i++;
	return n - i >= 5 && memcmp(p + i, "From ", 5) == 0;
}

static int
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* A byte a folder escape or a keyword may hold as is. */
static int
is_graphic(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e;
}

static void
write_from_line(struct sbx_buf *out, const char *sender, time_t date)
{
	char when[64];
	struct tm tm;

	gmtime_r(&date, &tm);
	strftime(when, sizeof(when), "%a %b %e %H:%M:%S %Y", &tm);
	sbx_buf_appendf(out, "From %s %s\n", sender && *sender ? sender : "MAILER-DAEMON", when);
}

/* The message with ^>*From  lines quoted, a newline if it lacks a final
 * one, and the separating empty line. */
static void
write_body(struct sbx_buf *out, const char *msg, size_t len)
{
	size_t pos = 0;

	while (pos < len) {
		const char *nl = memchr(msg + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (msg + pos)) + 1 : len - pos;

		if (is_from_quoted(msg + pos, n))
			sbx_buf_append(out, ">", 1);
		sbx_buf_append(out, msg + pos, n);
		pos += n;
	}
	if (len == 0 || msg[len - 1] != '\n')
		sbx_buf_append(out, "\n", 1);
	sbx_buf_append(out, "\n", 1);
}

void
sbx_mbox_write(struct sbx_buf *out, const char *sender, time_t date, const char *msg, size_t len)
{
	write_from_line(out, sender, date);
	write_body(out, msg, len);
}

void
sbx_mbox_folder_encode(struct sbx_buf *out, const char *folder)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	char esc[3];

	for (p = (const unsigned char *)folder; *p != '\0'; p++) {
		if (is_graphic(*p) && *p != '%') {
			sbx_buf_append(out, p, 1);
			continue;
		}
		esc[0] = '%';
		esc[1] = hex[*p >> 4];
		esc[2] = hex[*p & 0xf];
		sbx_buf_append(out, esc, 3);
	}
}

/* 1 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or values
 * above U+10FFFF). */
static int
utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0, k, need;
	unsigned long cp, min;

	while (i < n) {
		unsigned char c = s[i];

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1, cp = c & 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (n - i - 1 < need)
			return 0;
		for (k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

char *
sbx_mbox_folder_decode(const char *s, size_t n, char **error_r)
{
	char *out;
	size_t i, o = 0;

	if (n == 0) {
		*error_r = sbx_xstrdup("empty folder name");
		return NULL;
	}
	/* The escaped form is never shorter than the name. */
	if (n > (size_t)SBX_MBOX_MAX_FOLDER * 3) {
		*error_r = sbx_xasprintf("folder name longer than %d bytes", SBX_MBOX_MAX_FOLDER);
		return NULL;
	}
	out = sbx_xmalloc(n + 1);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int hi, lo;

		if (!is_graphic(c)) {
			*error_r = sbx_xasprintf("folder name has byte 0x%02x unescaped", c);
			goto fail;
		}
		if (c == '%') {
			if (n - i < 3 || (hi = sbx_hexval(s[i + 1])) < 0 || (lo = sbx_hexval(s[i + 2])) < 0) {
				*error_r = sbx_xstrdup("folder name has a bad %-escape");
				goto fail;
			}
			c = (unsigned char)(hi << 4 | lo);
			if (c < 0x20 || c == 0x7f) {
				*error_r = sbx_xstrdup("folder name holds a control character");
				goto fail;
			}
			i += 2;
		}
		out[o++] = (char)c;
	}
	if (o > SBX_MBOX_MAX_FOLDER) {
		*error_r = sbx_xasprintf("folder name longer than %d bytes", SBX_MBOX_MAX_FOLDER);
		goto fail;
	}
	if (!utf8_valid((const unsigned char *)out, o)) {
		*error_r = sbx_xstrdup("folder name is not UTF-8");
		goto fail;
	}
	out[o] = '\0';
	return out;
fail:
	free(out);
	return NULL;
}

void
sbx_mbox_write_state(struct sbx_buf *out, time_t internaldate, const char *folder,
		     unsigned flags, const char *keywords, const char *msg, size_t len)
{
	const char *nl = memchr(msg, '\n', len);
	const char *eol = nl != NULL && nl > msg && nl[-1] == '\r' ? "\r\n" : "\n";
	const char *p, *tok;
	size_t i, n, k;

	write_from_line(out, NULL, internaldate);
	sbx_buf_append(out, FIELD_FOLDER " ", strlen(FIELD_FOLDER " "));
	sbx_mbox_folder_encode(out, folder != NULL && *folder != '\0' ? folder : "INBOX");
	sbx_buf_appendf(out, "%s" FIELD_FLAGS, eol);
	for (i = 0; i < NFLAGS; i++)
		if (flags & flag_names[i].flag)
			sbx_buf_appendf(out, " %s", flag_names[i].name);
	sbx_buf_appendf(out, "%s" FIELD_KEYWORDS, eol);
	for (p = keywords != NULL ? keywords : ""; *p != '\0';) {
		while (is_wsp(*p))
			p++;
		tok = p;
		while (*p != '\0' && !is_wsp(*p))
			p++;
		n = (size_t)(p - tok);
		for (k = 0; k < n && is_graphic((unsigned char)tok[k]); k++)
			;
		if (n == 0 || k < n)
			continue;
		sbx_buf_append(out, " ", 1);
		sbx_buf_append(out, tok, n);
	}
	sbx_buf_append(out, eol, strlen(eol));
	write_body(out, msg, len);
}

static time_t
parse_from_date(const char *line, size_t n)
{
	char buf[128];
	const char *sp;
	struct tm tm;

	/* "From SENDER Www Mmm dd hh:mm:ss yyyy" */
	if (n >= sizeof(buf))
		return 0;
	memcpy(buf, line, n);
	buf[n] = '\0';
	sp = strchr(buf + 5, ' ');
	if (sp == NULL)
		return 0;
	memset(&tm, 0, sizeof(tm));
	if (strptime(sp + 1, "%a %b %e %H:%M:%S %Y", &tm) == NULL)
		return 0;
	return timegm(&tm);
}

int
sbx_mbox_next(const char *data, size_t len, size_t *pos, size_t max,
	      struct sbx_buf *msg_r, time_t *date_r, char **error_r)
{
	size_t p = *pos;
	const char *nl;
	size_t n;

	msg_r->len = 0;
	if (p >= len)
		return 0;
	if (len - p < 5 || memcmp(data + p, "From ", 5) != 0) {
		*error_r = sbx_xasprintf("not an mbox file: expected a \"From \" line at byte %zu", p);
		return -1;
	}
	nl = memchr(data + p, '\n', len - p);
	n = nl ? (size_t)(nl - (data + p)) : len - p;
	*date_r = parse_from_date(data + p, n);
	p += n + (nl ? 1 : 0);
	while (p < len) {
		nl = memchr(data + p, '\n', len - p);
		n = nl ? (size_t)(nl - (data + p)) + 1 : len - p;
		if (n >= 5 && memcmp(data + p, "From ", 5) == 0)
			break;
		if (data[p] == '>' && is_from_quoted(data + p, n))
			sbx_buf_append(msg_r, data + p + 1, n - 1);
		else
			sbx_buf_append(msg_r, data + p, n);
		if (msg_r->len > max) {
			*error_r = sbx_xasprintf("message at byte %zu is larger than %zu bytes", *pos, max);
			return -1;
		}
		p += n;
	}
	/* Drop the separating empty line the writer added. */
	if (msg_r->len > 0 && msg_r->data[msg_r->len - 1] == '\n')
		msg_r->len--;
	*pos = p;
	return 1;
}

/* ---------------------------------------------------------- state */

/* Keywords collected for one message: distinct (case-insensitively),
 * at most SBX_MBOX_MAX_KEYWORDS. */
struct kwset {
	char *v[SBX_MBOX_MAX_KEYWORDS];
	size_t n;
	int full_warned;
};

static void warn(struct sbx_mbox_state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
warn(struct sbx_mbox_state *s, const char *fmt, ...)
{
	va_list ap;
	char *w;

	if (s->nwarnings >= SBX_MBOX_MAX_WARNINGS) {
		s->more_warnings++;
		return;
	}
	va_start(ap, fmt);
	if (vasprintf(&w, fmt, ap) < 0)
		w = NULL;
	va_end(ap);
	s->warnings[s->nwarnings++] = w != NULL ? w : sbx_xstrdup("out of memory");
}

/* A token as it may appear in a warning: printable ASCII, at most 40
 * bytes, the rest replaced. */
static void
printable(char out[48], const char *p, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n && o < 40; i++)
		out[o++] = is_graphic((unsigned char)p[i]) ? p[i] : '?';
	if (i < n) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

static void
kw_add(struct sbx_mbox_state *s, struct kwset *k, const char *p, size_t n)
{
	char shown[48];
	size_t i;

	for (i = 0; i < n; i++) {
		if (!is_graphic((unsigned char)p[i])) {
			printable(shown, p, n);
			warn(s, "keyword \"%s\" skipped: it holds a control character, a space "
			     "or an 8-bit byte", shown);
			return;
		}
	}
	if (n > SBX_STORE_MAX_KEYWORD_LEN) {
		printable(shown, p, n);
		warn(s, "keyword \"%s\" skipped: longer than %d bytes", shown, SBX_STORE_MAX_KEYWORD_LEN);
		return;
	}
	for (i = 0; i < k->n; i++)
		if (strlen(k->v[i]) == n && strncasecmp(k->v[i], p, n) == 0)
			return;
	if (k->n >= SBX_MBOX_MAX_KEYWORDS) {
		if (!k->full_warned)
			warn(s, "more than %d keywords: the rest skipped", SBX_MBOX_MAX_KEYWORDS);
		k->full_warned = 1;
		return;
	}
	k->v[k->n++] = sbx_xstrndup(p, n);
}

/* Split p[0..n) at any byte of seps into keyword tokens. */
static void
kw_split(struct sbx_mbox_state *s, struct kwset *k, const char *p, size_t n, const char *seps)
{
	size_t i = 0, start;

	while (i < n) {
		while (i < n && strchr(seps, p[i]) != NULL && p[i] != '\0')
			i++;
		start = i;
		while (i < n && (p[i] == '\0' || strchr(seps, p[i]) == NULL))
			i++;
		if (i > start)
			kw_add(s, k, p + start, i - start);
	}
}

static void
kw_finish(struct sbx_mbox_state *s, struct kwset *k)
{
	struct sbx_buf b = { 0 };
	size_t i;

	for (i = 0; i < k->n; i++) {
		if (i > 0)
			sbx_buf_append(&b, " ", 1);
		sbx_buf_append(&b, k->v[i], strlen(k->v[i]));
		free(k->v[i]);
	}
	sbx_buf_append(&b, "", 1);
	s->keywords = b.data;
	s->nkeywords = k->n;
	k->n = 0;
}

static void
kw_clear(struct kwset *k)
{
	size_t i;

	for (i = 0; i < k->n; i++)
		free(k->v[i]);
	k->n = 0;
}

/* The flags list of X-Sealbox-Flags. */
static void
flags_parse(struct sbx_mbox_state *s, const char *p, size_t n)
{
	char shown[48];
	size_t i = 0, start, j;

	while (i < n) {
		while (i < n && is_wsp(p[i]))
			i++;
		start = i;
		while (i < n && !is_wsp(p[i]))
			i++;
		if (i == start)
			continue;
		for (j = 0; j < NFLAGS; j++)
			if (strlen(flag_names[j].name) == i - start &&
			    strncasecmp(flag_names[j].name, p + start, i - start) == 0)
				break;
		if (j < NFLAGS) {
			s->flags |= flag_names[j].flag;
		} else {
			printable(shown, p + start, i - start);
			warn(s, "unknown flag \"%s\" skipped", shown);
		}
	}
}

/* One line of the block at msg + pos. 0 if it is not field name; 1 and
 * its value (white space trimmed) and where the next line starts; -1 and
 * *error_r if it makes the block too long or ends the message. */
static int
block_line(const char *msg, size_t len, size_t pos, const char *name,
	   const char **val_r, size_t *vlen_r, size_t *next_r, char **error_r)
{
	size_t nlen = strlen(name), room = SBX_MBOX_MAX_BLOCK - pos, end;
	const char *nl;

	if (len - pos < nlen || memcmp(msg + pos, name, nlen) != 0)
		return 0;
	/* pos <= SBX_MBOX_MAX_BLOCK: the lines before ended within it. */
	nl = memchr(msg + pos, '\n', len - pos < room ? len - pos : room);
	if (nl == NULL || (size_t)(nl - msg) + 1 >= len) {
		if (len - pos < room)
			*error_r = sbx_xstrdup("X-Sealbox block with no message after it");
		else
			*error_r = sbx_xasprintf("X-Sealbox block longer than %d bytes",
						 SBX_MBOX_MAX_BLOCK);
		return -1;
	}
	end = (size_t)(nl - msg);
	*next_r = end + 1;
	if (end > pos && msg[end - 1] == '\r')
		end--;
	pos += nlen;
	while (pos < end && is_wsp(msg[pos]))
		pos++;
	while (end > pos && is_wsp(msg[end - 1]))
		end--;
	*val_r = msg + pos;
	*vlen_r = end - pos;
	return 1;
}

/* The block: X-Sealbox-Folder (the caller saw it), then X-Sealbox-Flags
 * and X-Sealbox-Keywords if present, in this order, each at most once. */
static int
parse_block(const char *msg, size_t len, struct sbx_mbox_state *s, char **error_r)
{
	static const char *const fields[] = { FIELD_FOLDER, FIELD_FLAGS, FIELD_KEYWORDS };
	struct kwset k;
	const char *val;
	size_t vlen, pos = 0, next, i;
	char *err = NULL;
	int r;

	k.n = 0;
	k.full_warned = 0;
	s->has_block = 1;
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		r = block_line(msg, len, pos, fields[i], &val, &vlen, &next, error_r);
		if (r < 0) {
			kw_clear(&k);
			return -1;
		}
		if (r == 0)
			continue;
		if (i == 0) {
			s->folder = sbx_mbox_folder_decode(val, vlen, &err);
			if (s->folder == NULL) {
				*error_r = sbx_xasprintf("invalid X-Sealbox-Folder: %s", err);
				free(err);
				return -1;
			}
		} else if (i == 1) {
			flags_parse(s, val, vlen);
		} else {
			kw_split(s, &k, val, vlen, " \t");
		}
		pos = next;
	}
	s->skip = pos;
	kw_finish(s, &k);
	return 0;
}

enum field {
	F_OTHER, F_STATUS, F_XSTATUS, F_XKEYWORDS, F_MOZSTATUS, F_MOZKEYS,
};

static enum field
field_kind(const char *p, size_t n)
{
	static const struct {
		const char *name;
		enum field f;
	} names[] = {
		{ "Status", F_STATUS },
		{ "X-Status", F_XSTATUS },
		{ "X-Keywords", F_XKEYWORDS },
		{ "X-Mozilla-Status", F_MOZSTATUS },
		{ "X-Mozilla-Keys", F_MOZKEYS },
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == n && strncasecmp(names[i].name, p, n) == 0)
			return names[i].f;
	return F_OTHER;
}

/* X-Mozilla-Status, once the field is complete. */
static void
moz_apply(struct sbx_mbox_state *s, struct kwset *k, unsigned long v, int digits)
{
	if (digits == 0 || digits > 8)
		return;
	if (v & 0x0001)
		s->flags |= SBX_FLAG_SEEN;
	if (v & 0x0002)
		s->flags |= SBX_FLAG_ANSWERED;
	if (v & 0x0004)
		s->flags |= SBX_FLAG_FLAGGED;
	if (v & 0x0008)
		s->flags |= SBX_FLAG_DELETED;
	if (v & 0x1000)
		kw_add(s, k, "$Forwarded", 10);
}

/* Status, X-Status, X-Keywords, X-Mozilla-Status and X-Mozilla-Keys from
 * the header of a message without an X-Sealbox block. */
static void
parse_foreign(const char *msg, size_t len, struct sbx_mbox_state *s)
{
	struct kwset k;
	enum field cur = F_OTHER;
	unsigned long moz = 0;
	int moz_digits = 0;
	size_t pos = 0, i;

	k.n = 0;
	k.full_warned = 0;
	while (pos < len) {
		const char *line = msg + pos, *nl = memchr(line, '\n', len - pos), *colon;
		size_t n = nl != NULL ? (size_t)(nl - line) : len - pos, vstart;

		pos += n + (nl != NULL ? 1 : 0);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n == 0)
			break;                      /* end of the header */
		if (is_wsp(line[0])) {
			vstart = 0;                 /* continues the field before */
		} else {
			if (cur == F_MOZSTATUS)
				moz_apply(s, &k, moz, moz_digits);
			moz = 0;
			moz_digits = 0;
			colon = memchr(line, ':', n);
			if (colon == NULL)
				break;              /* not a header field: no header */
			i = (size_t)(colon - line);
			while (i > 0 && is_wsp(line[i - 1]))
				i--;
			cur = field_kind(line, i);
			vstart = (size_t)(colon - line) + 1;
		}
		switch (cur) {
		case F_STATUS:
			for (i = vstart; i < n; i++)
				if (line[i] == 'R')
					s->flags |= SBX_FLAG_SEEN;
			break;
		case F_XSTATUS:
			for (i = vstart; i < n; i++) {
				if (line[i] == 'A')
					s->flags |= SBX_FLAG_ANSWERED;
				else if (line[i] == 'F')
					s->flags |= SBX_FLAG_FLAGGED;
				else if (line[i] == 'T')
					s->flags |= SBX_FLAG_DRAFT;
				else if (line[i] == 'D')
					s->flags |= SBX_FLAG_DELETED;
			}
			break;
		case F_XKEYWORDS:
			kw_split(s, &k, line + vstart, n - vstart, " \t,");
			break;
		case F_MOZKEYS:
			kw_split(s, &k, line + vstart, n - vstart, " \t");
			break;
		case F_MOZSTATUS:
			for (i = vstart; i < n; i++) {
				int h = sbx_hexval(line[i]);

				if (is_wsp(line[i]))
					continue;
				if (h < 0 || ++moz_digits > 8) {
					moz_digits = 9;    /* not a hex number: ignored */
					break;
				}
				moz = moz << 4 | (unsigned long)h;
			}
			break;
		case F_OTHER:
			break;
		}
	}
	if (cur == F_MOZSTATUS)
		moz_apply(s, &k, moz, moz_digits);
	kw_finish(s, &k);
}

int
sbx_mbox_state_parse(const char *msg, size_t len, struct sbx_mbox_state *s_r, char **error_r)
{
	memset(s_r, 0, sizeof(*s_r));
	if (len >= strlen(FIELD_FOLDER) && memcmp(msg, FIELD_FOLDER, strlen(FIELD_FOLDER)) == 0)
		return parse_block(msg, len, s_r, error_r);
	parse_foreign(msg, len, s_r);
	return 0;
}

void
sbx_mbox_state_free(struct sbx_mbox_state *s)
{
	size_t i;

	free(s->folder);
	free(s->keywords);
	for (i = 0; i < s->nwarnings; i++)
		free(s->warnings[i]);
	memset(s, 0, sizeof(*s));
}
