/*
 * mimetext.c - decoded text of a message for full-text search (GMime).
 *
 * The message is parsed by GMime from a private copy of the bytes. Header
 * values come decoded from GMime (RFC 2047, raw 8-bit text); the body is
 * built by walking the MIME tree with explicit depth and part limits.
 * Everything that leaves this file goes through sbx_utf8_append_clean(), so the
 * result is valid UTF-8 without NUL bytes whatever the input.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <gmime/gmime.h>

#include "mime.h"
#include "mimetext.h"
#include "util.h"

#define REPLACEMENT "\xef\xbf\xbd"	/* U+FFFD */

struct walk {
	GString *body;
	size_t max_body;
	unsigned int parts;
	int full;
};

static char *header_text(GMimeObject *obj, const char *name, int addresses);
static void walk_object(struct walk *w, GMimeObject *obj, int depth);

/* ---- UTF-8 helpers ---- */

void
sbx_utf8_append_clean(GString *out, const char *s, size_t n, const char *nul_as)
{
	const char *end, *bad;

	if (n == 0)
		return;
	end = s + n;
	while (s < end) {
		if (g_utf8_validate(s, end - s, &bad)) {
			g_string_append_len(out, s, end - s);
			return;
		}
		g_string_append_len(out, s, bad - s);
		if (*bad == '\0')
			g_string_append(out, nul_as);
		else
			g_string_append(out, REPLACEMENT);
		s = bad + 1;
	}
}

static char *
clean_dup(const char *s)
{
	GString *g;
	char *r;

	if (s == NULL)
		return sbx_xstrdup("");
	g = g_string_new(NULL);
	sbx_utf8_append_clean(g, s, strlen(s), " ");
	r = sbx_xstrdup(g->str);
	g_string_free(g, TRUE);
	return r;
}

static int
is_utf8_name(const char *cs)
{
	return g_ascii_strcasecmp(cs, "utf-8") == 0 ||
	    g_ascii_strcasecmp(cs, "utf8") == 0 ||
	    g_ascii_strcasecmp(cs, "us-ascii") == 0 ||
	    g_ascii_strcasecmp(cs, "ascii") == 0;
}

void
sbx_to_utf8(GString *out, const char *in, size_t n, const char *charset, const char *nul_as)
{
	GIConv cd = (GIConv)-1;
	const char *name;
	char buf[4096];
	gchar *ip = (gchar *)in;
	gsize il = n;
	GString *tmp;

	if (n == 0)
		return;
	if (charset != NULL && *charset != '\0' && !is_utf8_name(charset)) {
		name = g_mime_charset_iconv_name(charset);
		if (name != NULL)
			cd = g_iconv_open("UTF-8", name);
	}
	if (cd == (GIConv)-1) {
		sbx_utf8_append_clean(out, in, n, nul_as);
		return;
	}
	tmp = g_string_new(NULL);
	while (il > 0) {
		gchar *op = buf;
		gsize ol = sizeof(buf);
		gsize r;
		int e;

		r = g_iconv(cd, &ip, &il, &op, &ol);
		e = errno;
		g_string_append_len(tmp, buf, op - buf);
		if (r != (gsize)-1 || e == E2BIG)
			continue;
		/* EILSEQ, EINVAL (truncated sequence): skip one byte */
		g_string_append(tmp, REPLACEMENT);
		ip++;
		il--;
	}
	{
		gchar *op = buf;
		gsize ol = sizeof(buf);

		(void)g_iconv(cd, NULL, NULL, &op, &ol);	/* reset shift state */
		g_string_append_len(tmp, buf, op - buf);
	}
	g_iconv_close(cd);
	sbx_utf8_append_clean(out, tmp->str, tmp->len, nul_as);
	g_string_free(tmp, TRUE);
}

static void
append_utf8_char(GString *out, gunichar c)
{
	if (c == 0 || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		g_string_append(out, REPLACEMENT);
	else
		g_string_append_unichar(out, c);
}

/* ---- HTML to text ---- */

static int
tag_is(const char *p, const char *end, const char *name)
{
	size_t n = strlen(name);

	if ((size_t)(end - p) < n || g_ascii_strncasecmp(p, name, n) != 0)
		return 0;
	if (p + n == end)
		return 1;
	return !g_ascii_isalnum(p[n]);
}

static const char *
find_ci(const char *p, const char *end, const char *needle)
{
	size_t n = strlen(needle);

	for (; (size_t)(end - p) >= n; p++)
		if (g_ascii_strncasecmp(p, needle, n) == 0)
			return p;
	return NULL;
}

/* Decode the entity at p ('&'); 1 and *next set if recognised. */
static int
html_entity(GString *out, const char *p, const char *end, const char **next)
{
	static const struct { const char *name; const char *text; } ents[] = {
		{ "amp", "&" }, { "lt", "<" }, { "gt", ">" }, { "quot", "\"" },
		{ "apos", "'" }, { "nbsp", " " },
	};
	const char *semi, *q = p + 1;
	size_t i, n;

	semi = memchr(q, ';', MIN((size_t)(end - q), 12));
	if (semi == NULL)
		return 0;
	n = semi - q;
	if (n >= 2 && q[0] == '#') {
		gunichar c = 0;
		size_t j = 1;
		int hex = 0;

		if (q[1] == 'x' || q[1] == 'X') {
			hex = 1;
			j = 2;
		}
		if (j >= n)
			return 0;
		for (; j < n; j++) {
			int d = hex ? g_ascii_xdigit_value(q[j]) :
			    g_ascii_digit_value(q[j]);
			if (d < 0)
				return 0;
			c = c * (hex ? 16 : 10) + d;
			if (c > 0x10FFFF)
				c = 0x110000;	/* stays invalid */
		}
		append_utf8_char(out, c);
		*next = semi + 1;
		return 1;
	}
	for (i = 0; i < G_N_ELEMENTS(ents); i++) {
		if (strlen(ents[i].name) == n &&
		    strncmp(q, ents[i].name, n) == 0) {
			g_string_append(out, ents[i].text);
			*next = semi + 1;
			return 1;
		}
	}
	return 0;
}

/* Reduce (valid UTF-8) HTML s[0..n) to text appended to out. */
static void
html_to_text(GString *out, const char *s, size_t n)
{
	static const char *const breaks[] = {
		"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5",
		"h6", "table", "ul", "ol", "blockquote", "pre", "hr", "title",
	};
	const char *p = s, *end = s + n, *q, *next;
	size_t i;

	while (p < end) {
		if (*p == '&') {
			if (html_entity(out, p, end, &next)) {
				p = next;
				continue;
			}
			g_string_append_c(out, *p++);
			continue;
		}
		if (*p != '<') {
			q = p;
			while (q < end && *q != '<' && *q != '&')
				q++;
			g_string_append_len(out, p, q - p);
			p = q;
			continue;
		}
		/* a tag, comment or declaration */
		q = p + 1;
		if (end - q >= 3 && memcmp(q, "!--", 3) == 0) {
			const char *c = find_ci(q + 3, end, "-->");
			p = c == NULL ? end : c + 3;
			continue;
		}
		if (tag_is(q, end, "script") || tag_is(q, end, "style")) {
			const char *close = tag_is(q, end, "script") ?
			    "</script" : "</style";
			const char *c = find_ci(q, end, close);

			if (c == NULL) {
				p = end;
				continue;
			}
			q = memchr(c, '>', end - c);
			p = q == NULL ? end : q + 1;
			continue;
		}
		if (q < end && *q == '/')
			q++;
		for (i = 0; i < G_N_ELEMENTS(breaks); i++) {
			if (tag_is(q, end, breaks[i])) {
				g_string_append_c(out, '\n');
				break;
			}
		}
		if (tag_is(q, end, "td") || tag_is(q, end, "th"))
			g_string_append_c(out, ' ');
		/* skip to the closing '>' outside quotes */
		{
			char quote = 0;

			for (; q < end; q++) {
				if (quote) {
					if (*q == quote)
						quote = 0;
				} else if (*q == '"' || *q == '\'') {
					quote = *q;
				} else if (*q == '>') {
					break;
				}
			}
			p = q < end ? q + 1 : end;
		}
	}
}

/* ---- body walk ---- */

/* Append valid UTF-8 s[0..n) to the body, cut at max_body on a character
 * boundary. A separator "\n" goes between pieces. */
static void
body_append(struct walk *w, const char *s, size_t n)
{
	size_t room;

	if (w->full || n == 0)
		return;
	if (w->body->len > 0) {
		if (w->body->len >= w->max_body) {
			w->full = 1;
			return;
		}
		g_string_append_c(w->body, '\n');
	}
	room = w->max_body - w->body->len;
	if (n > room) {
		n = room;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
		w->full = 1;
	}
	g_string_append_len(w->body, s, n);
}

static void
walk_text_part(struct walk *w, GMimePart *part)
{
	GMimeObject *obj = GMIME_OBJECT(part);
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	GMimeDataWrapper *dw = g_mime_part_get_content(part);
	GMimeStream *out;
	GByteArray *bytes;
	GString *utf8, *text;
	const char *charset = NULL;

	if (dw == NULL)
		return;
	if (ct != NULL)
		charset = g_mime_content_type_get_parameter(ct, "charset");
	bytes = g_byte_array_new();
	out = g_mime_stream_mem_new_with_byte_array(bytes);
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(out), FALSE);
	/* decodes the Content-Transfer-Encoding */
	(void)g_mime_data_wrapper_write_to_stream(dw, out);
	g_object_unref(out);

	utf8 = g_string_new(NULL);
	sbx_to_utf8(utf8, (const char *)bytes->data, bytes->len, charset, " ");
	g_byte_array_unref(bytes);
	if (ct != NULL && g_mime_content_type_is_type(ct, "text", "html")) {
		text = g_string_new(NULL);
		html_to_text(text, utf8->str, utf8->len);
		body_append(w, text->str, text->len);
		g_string_free(text, TRUE);
	} else {
		body_append(w, utf8->str, utf8->len);
	}
	g_string_free(utf8, TRUE);
}

/* A sub-message: its From and Subject, then its body. */
static void
walk_message(struct walk *w, GMimeMessage *msg, int depth)
{
	GMimeObject *top;
	char *c;

	c = header_text(GMIME_OBJECT(msg), "From", 1);
	body_append(w, c, strlen(c));
	free(c);
	c = header_text(GMIME_OBJECT(msg), "Subject", 0);
	body_append(w, c, strlen(c));
	free(c);
	top = g_mime_message_get_mime_part(msg);
	if (top != NULL)
		walk_object(w, top, depth + 1);
}

static void
walk_object(struct walk *w, GMimeObject *obj, int depth)
{
	GMimeContentType *ct;

	if (w->full || depth > SBX_MIME_MAX_DEPTH ||
	    w->parts >= SBX_MIME_MAX_PARTS)
		return;
	w->parts++;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int i, n = g_mime_multipart_get_count(mp);

		for (i = 0; i < n && !w->full; i++) {
			GMimeObject *sub = g_mime_multipart_get_part(mp, i);

			if (sub != NULL)
				walk_object(w, sub, depth + 1);
		}
		return;
	}
	if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *msg =
		    g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

		if (msg != NULL)
			walk_message(w, msg, depth);
		return;
	}
	if (!GMIME_IS_PART(obj))
		return;
	ct = g_mime_object_get_content_type(obj);
	/* text parts only, attachments included; never binary parts */
	if (ct == NULL || !g_mime_content_type_is_type(ct, "text", "*"))
		return;
	walk_text_part(w, GMIME_PART(obj));
}

/* ---- headers ---- */

/*
 * Decoded text of the header field(s) called name of obj. The raw value is
 * made valid UTF-8 first (so raw 8-bit UTF-8 stays UTF-8 and only invalid
 * bytes become U+FFFD), then unfolded and RFC 2047 decoded by GMime. Every
 * field of that name contributes to an address list ("Name <addr>, ...");
 * for text only the first counts. Never NULL.
 */
static char *
header_text(GMimeObject *obj, const char *name, int addresses)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
	GString *out = g_string_new(NULL);
	int i, n;
	char *r;

	n = hl == NULL ? 0 : g_mime_header_list_get_count(hl);
	for (i = 0; i < n; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
		const char *hn, *raw;
		char *clean, *unfolded;

		if (h == NULL || (hn = g_mime_header_get_name(h)) == NULL ||
		    g_ascii_strcasecmp(hn, name) != 0)
			continue;
		if ((raw = g_mime_header_get_raw_value(h)) == NULL)
			continue;
		clean = clean_dup(raw);
		unfolded = g_mime_utils_header_unfold(clean);
		free(clean);
		if (unfolded == NULL)
			continue;
		if (addresses) {
			InternetAddressList *l;
			char *s;

			l = internet_address_list_parse(NULL, unfolded);
			if (l != NULL && internet_address_list_length(l) > 0) {
				s = internet_address_list_to_string(l, NULL,
				    FALSE);
				if (s != NULL && *s != '\0') {
					if (out->len > 0)
						g_string_append(out, ", ");
					g_string_append(out, s);
				}
				g_free(s);
			}
			if (l != NULL)
				g_object_unref(l);
			g_free(unfolded);
			continue;
		}
		{
			char *dec = g_mime_utils_header_decode_text(NULL,
			    unfolded);

			if (dec != NULL)
				g_string_append(out, g_strstrip(dec));
			g_free(dec);
			g_free(unfolded);
			break;
		}
	}
	r = clean_dup(out->str);
	g_string_free(out, TRUE);
	return r;
}

char *
sbx_mime_text_decode_header(const char *raw, size_t len)
{
	GString *clean = g_string_new(NULL);
	char *unfolded, *dec = NULL, *r;

	sbx_utf8_append_clean(clean, raw, len, " ");
	if (sbx_mime_init() < 0) {	/* no GMime: the raw text, still clean */
		r = sbx_xstrdup(clean->str);
		g_string_free(clean, TRUE);
		return r;
	}
	unfolded = g_mime_utils_header_unfold(clean->str);
	g_string_free(clean, TRUE);
	if (unfolded != NULL)
		dec = g_mime_utils_header_decode_text(NULL, unfolded);
	g_free(unfolded);
	if (dec == NULL)
		return sbx_xstrdup("");
	g_strstrip(dec);
	/* decoding can yield invalid UTF-8 from a lying charset label */
	r = clean_dup(dec);
	g_free(dec);
	return r;
}

/* One field as "Name: decoded value\n" (sbx_mime_text_decode_header)
 * appended to out; the whole is cut at SBX_MIME_TEXT_MAX_HEADERS bytes on
 * a character boundary. 0 when there is room for more, 1 when out is full. */
static int
headers_append(GString *out, GMimeHeader *h)
{
	const char *hn, *raw;
	char *dec;
	GString *line;
	size_t room, n;
	int full = 0;

	if (h == NULL || (hn = g_mime_header_get_name(h)) == NULL)
		return 0;
	raw = g_mime_header_get_raw_value(h);
	line = g_string_new(NULL);
	sbx_utf8_append_clean(line, hn, strlen(hn), " ");
	g_string_append(line, ": ");
	dec = sbx_mime_text_decode_header(raw != NULL ? raw : "",
	    raw != NULL ? strlen(raw) : 0);
	g_string_append(line, dec);
	free(dec);
	g_string_append_c(line, '\n');
	room = SBX_MIME_TEXT_MAX_HEADERS - out->len;	/* out->len <= max */
	n = line->len;
	if (n >= room) {
		n = room;
		while (n > 0 && n < line->len &&
		    ((unsigned char)line->str[n] & 0xC0) == 0x80)
			n--;
		full = 1;
	}
	g_string_append_len(out, line->str, n);
	g_string_free(line, TRUE);
	return full;
}

/*
 * Every top-level header field of m in message order. GMime keeps the
 * Content-* fields of the top level in the top MIME part's list, not the
 * message's, so the two lists are merged by their offsets in the input.
 */
static char *
headers_text(GMimeMessage *m)
{
	GMimeObject *top = g_mime_message_get_mime_part(m);
	GMimeHeaderList *a = g_mime_object_get_header_list(GMIME_OBJECT(m));
	GMimeHeaderList *b = top == NULL ? NULL :
	    g_mime_object_get_header_list(top);
	int i = 0, j = 0, na, nb, full = 0;
	GString *out = g_string_new(NULL);
	char *r;

	na = a == NULL ? 0 : g_mime_header_list_get_count(a);
	nb = b == NULL ? 0 : g_mime_header_list_get_count(b);
	while (!full && (i < na || j < nb)) {
		GMimeHeader *ha = i < na ?
		    g_mime_header_list_get_header_at(a, i) : NULL;
		GMimeHeader *hb = j < nb ?
		    g_mime_header_list_get_header_at(b, j) : NULL;

		if (hb == NULL || (ha != NULL && g_mime_header_get_offset(ha) <=
		    g_mime_header_get_offset(hb))) {
			full = headers_append(out, ha);
			i++;
		} else {
			full = headers_append(out, hb);
			j++;
		}
	}
	r = sbx_xstrndup(out->str, out->len);
	g_string_free(out, TRUE);
	return r;
}

int
sbx_mime_text_extract(const char *msg, size_t len, size_t max_body,
    struct sbx_mime_text *t_r, char **error_r)
{
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *m;
	struct walk w;

	memset(t_r, 0, sizeof(*t_r));
	if (sbx_mime_init() < 0) {
		*error_r = sbx_xstrdup("mimetext: GMime initialisation failed");
		return -1;
	}
	/* the stream owns a copy: the caller's bytes are never touched */
	stream = g_mime_stream_mem_new_with_buffer(len > 0 ? msg : "", len);
	parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	g_object_unref(stream);
	m = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);

	memset(&w, 0, sizeof(w));
	w.body = g_string_new(NULL);
	w.max_body = max_body;
	if (m != NULL) {
		GMimeObject *o = GMIME_OBJECT(m);

		t_r->from = header_text(o, "From", 1);
		t_r->to = header_text(o, "To", 1);
		t_r->cc = header_text(o, "Cc", 1);
		t_r->bcc = header_text(o, "Bcc", 1);
		t_r->subject = header_text(o, "Subject", 0);
		t_r->headers = headers_text(m);
		if (g_mime_message_get_mime_part(m) != NULL)
			walk_object(&w, g_mime_message_get_mime_part(m), 0);
		g_object_unref(m);
	} else {
		t_r->from = sbx_xstrdup("");
		t_r->to = sbx_xstrdup("");
		t_r->cc = sbx_xstrdup("");
		t_r->bcc = sbx_xstrdup("");
		t_r->subject = sbx_xstrdup("");
		t_r->headers = sbx_xstrdup("");
	}
	t_r->body = sbx_xstrndup(w.body->str, w.body->len);
	g_string_free(w.body, TRUE);
	return 0;
}

void
sbx_mime_text_free(struct sbx_mime_text *t)
{
	if (t == NULL)
		return;
	free(t->from);
	free(t->to);
	free(t->cc);
	free(t->bcc);
	free(t->subject);
	free(t->headers);
	free(t->body);
	memset(t, 0, sizeof(*t));
}
