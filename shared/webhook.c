/*
 * webhook.c - webhook payload (GMime + json-c), URL options, signature,
 * LMTP reply mapping, and the POST through libcurl's multi interface on a
 * libuv loop. See webhook.h for the payload shape and the contracts.
 *
 * Every string that goes into the JSON passes through json_str(), which
 * makes it valid UTF-8 (invalid bytes and NUL become U+FFFD), so the
 * output is valid UTF-8 JSON whatever the input bytes.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <glib.h>
#include <gmime/gmime.h>
#include <json-c/json.h>
#include <sodium.h>
#include <uv.h>

#include "mime.h"
#include "mimetext.h"
#include "sbx_limits.h"
#include "util.h"
#include "webhook.h"

#define REPLACEMENT "\xef\xbf\xbd"	/* U+FFFD */

struct payload {
	int too_big;		/* a string did not fit json-c's int length */
	int with_attachments;
	/* the MIME walk */
	GString *text, *html;
	int has_text, has_html;
	json_object *attachments;
	size_t nattachments;
	unsigned int parts;
};

/* ---- UTF-8 and JSON strings ---- */

/* A json-c string of s[0..n), made valid UTF-8. */
static json_object *
json_str(struct payload *p, const char *s, size_t n)
{
	json_object *o;
	GString *g;

	if (s == NULL)
		n = 0;
	if (n > 0 && g_utf8_validate(s, n, NULL)) {
		if (n > INT_MAX) {
			p->too_big = 1;
			return json_object_new_string("");
		}
		return json_object_new_string_len(s, (int)n);
	}
	g = g_string_sized_new(n + 16);
	if (n > 0)
		sbx_utf8_append_clean(g, s, n, REPLACEMENT);
	if (g->len > INT_MAX) {
		p->too_big = 1;
		o = json_object_new_string("");
	} else {
		o = json_object_new_string_len(g->str, (int)g->len);
	}
	g_string_free(g, TRUE);
	return o;
}

static json_object *
json_cstr(struct payload *p, const char *s)
{
	return json_str(p, s, s == NULL ? 0 : strlen(s));
}

/* "<" id ">" */
static json_object *
json_msgid(struct payload *p, const char *id)
{
	char *s = sbx_xasprintf("<%s>", id);
	json_object *o = json_cstr(p, s);

	free(s);
	return o;
}

/* Base64 (standard alphabet, padded) of in[0..n), ASCII. */
static json_object *
json_base64(struct payload *p, const unsigned char *in, size_t n)
{
	size_t b64len;
	char *b64;
	json_object *o;

	/* @UNSAFE: the encoded length 4 * ceil(n / 3) must fit an int */
	if (n > (size_t)INT_MAX / 4 * 3 - 3) {
		p->too_big = 1;
		return json_object_new_string("");
	}
	b64len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
	b64 = sbx_xmalloc(b64len);
	sodium_bin2base64(b64, b64len, in, n, sodium_base64_VARIANT_ORIGINAL);
	o = json_object_new_string_len(b64, (int)strlen(b64));
	free(b64);
	return o;
}

/* ISO 8601 UTC with milliseconds, as JavaScript's Date.toISOString(). */
static json_object *
json_iso_time(int64_t sec, int ms)
{
	struct tm tm;
	time_t t = (time_t)sec;
	char buf[64];

	if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 < 0 ||
	    tm.tm_year + 1900 > 9999)
		return NULL;
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ms);
	return json_object_new_string(buf);
}

/* ---- charset conversion ---- */

/* ---- raw header block ---- */

static void
header_line(struct payload *p, json_object *lines, const char *msg,
    size_t start, size_t end)
{
	const char *colon = memchr(msg + start, ':', end - start);
	size_t klen = colon == NULL ? 0 : (size_t)(colon - (msg + start));
	json_object *o = json_object_new_object();
	char *key;
	size_t i;

	/* the name ends at the colon; WSP before it is not part of it */
	while (klen > 0 && (msg[start + klen - 1] == ' ' ||
	    msg[start + klen - 1] == '\t'))
		klen--;
	key = sbx_xstrndup(msg + start, klen);
	for (i = 0; i < klen; i++)
		key[i] = g_ascii_tolower(key[i]);
	json_object_object_add(o, "key", json_str(p, key, klen));
	free(key);
	json_object_object_add(o, "line", json_str(p, msg + start, end - start));
	json_object_array_add(lines, o);
}

/*
 * The top-level header of msg: every line up to the first empty one (LF or
 * CRLF), or all of msg. A line starting with SP or HT continues the field
 * before it. Adds one headerLines entry per field (the raw field without
 * its last line end); returns the length of the block (the last field's
 * line end included, the empty line not).
 */
static size_t
header_scan(struct payload *p, const char *msg, size_t len,
    json_object *lines)
{
	size_t pos = 0, field = 0, field_end = 0, nlines = 0;
	int in_field = 0;

	while (pos < len) {
		const char *nl = memchr(msg + pos, '\n', len - pos);
		size_t next = nl == NULL ? len : (size_t)(nl - msg) + 1;
		size_t eol = nl == NULL ? len : (size_t)(nl - msg);

		if (eol > pos && msg[eol - 1] == '\r' && nl != NULL)
			eol--;
		if (eol == pos && nl != NULL)
			break;		/* the empty line */
		if (in_field && (msg[pos] == ' ' || msg[pos] == '\t')) {
			field_end = eol;
		} else {
			if (in_field && nlines++ < SBX_WEBHOOK_MAX_HEADER_LINES)
				header_line(p, lines, msg, field, field_end);
			in_field = 1;
			field = pos;
			field_end = eol;
		}
		pos = next;
	}
	if (in_field && nlines < SBX_WEBHOOK_MAX_HEADER_LINES)
		header_line(p, lines, msg, field, field_end);
	return pos;
}

/* ---- header fields through GMime ---- */

/* The raw value of field h made valid UTF-8 and unfolded; g_free. */
static char *
unfolded_value(GMimeHeader *h)
{
	const char *raw = g_mime_header_get_raw_value(h);
	GString *clean;
	char *r;

	if (raw == NULL)
		return NULL;
	clean = g_string_new(NULL);
	sbx_utf8_append_clean(clean, raw, strlen(raw), REPLACEMENT);
	r = g_mime_utils_header_unfold(clean->str);
	g_string_free(clean, TRUE);
	return r;
}

static GMimeHeader *
first_header(GMimeObject *obj, const char *name)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
	int i, n = hl == NULL ? 0 : g_mime_header_list_get_count(hl);

	for (i = 0; i < n; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
		const char *hn = h == NULL ? NULL : g_mime_header_get_name(h);

		if (hn != NULL && g_ascii_strcasecmp(hn, name) == 0)
			return h;
	}
	return NULL;
}

/*
 * One {"address", "name"} per mailbox of l appended to arr; a group is
 * {"name", "group": [...]}. RFC 5322 groups do not nest, but GMime parses
 * nested ones: their members are flattened into the outer group (depth
 * > 0), so the JSON stays shallow, and nesting deeper than
 * SBX_MIME_MAX_DEPTH is dropped (bounded recursion).
 */
static void
address_entries(struct payload *p, json_object *arr, InternetAddressList *l,
    size_t *count, int depth)
{
	int i, n = internet_address_list_length(l);

	if (depth > SBX_MIME_MAX_DEPTH)
		return;
	for (i = 0; i < n && *count < SBX_WEBHOOK_MAX_ADDRESSES; i++) {
		InternetAddress *ia = internet_address_list_get_address(l, i);
		const char *name = internet_address_get_name(ia);
		json_object *o;

		if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			InternetAddressList *members =
			    internet_address_group_get_members(
			    INTERNET_ADDRESS_GROUP(ia));
			json_object *group;

			if (depth > 0) {
				address_entries(p, arr, members, count,
				    depth + 1);
				continue;
			}
			(*count)++;
			o = json_object_new_object();
			group = json_object_new_array();
			json_object_object_add(o, "name",
			    json_cstr(p, name != NULL ? name : ""));
			address_entries(p, group, members, count, depth + 1);
			json_object_object_add(o, "group", group);
		} else {
			const char *addr = internet_address_mailbox_get_addr(
			    INTERNET_ADDRESS_MAILBOX(ia));

			(*count)++;
			o = json_object_new_object();
			json_object_object_add(o, "address",
			    json_cstr(p, addr != NULL ? addr : ""));
			json_object_object_add(o, "name",
			    json_cstr(p, name != NULL ? name : ""));
		}
		json_object_array_add(arr, o);
	}
}

/* {"value": [...], "text": "..."} of every field called name, or NULL. */
static json_object *
address_field(struct payload *p, GMimeObject *obj, const char *name)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
	int i, n = hl == NULL ? 0 : g_mime_header_list_get_count(hl), found = 0;
	InternetAddressList *all = internet_address_list_new();
	json_object *o, *value;
	size_t count = 0;
	char *text;

	for (i = 0; i < n; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
		const char *hn = h == NULL ? NULL : g_mime_header_get_name(h);
		InternetAddressList *l;
		char *v;

		if (hn == NULL || g_ascii_strcasecmp(hn, name) != 0)
			continue;
		found = 1;
		if ((v = unfolded_value(h)) == NULL)
			continue;
		l = internet_address_list_parse(NULL, v);
		g_free(v);
		if (l != NULL) {
			internet_address_list_append(all, l);
			g_object_unref(l);
		}
	}
	if (!found) {
		g_object_unref(all);
		return NULL;
	}
	o = json_object_new_object();
	value = json_object_new_array();
	address_entries(p, value, all, &count, 0);
	json_object_object_add(o, "value", value);
	text = internet_address_list_to_string(all, NULL, FALSE);
	json_object_object_add(o, "text", json_cstr(p, text != NULL ? text : ""));
	g_free(text);
	g_object_unref(all);
	return o;
}

/* The message ids of the first field called name, or NULL. */
static GMimeReferences *
references_of(GMimeObject *obj, const char *name)
{
	GMimeHeader *h = first_header(obj, name);
	GMimeReferences *refs;
	char *v;

	if (h == NULL || (v = unfolded_value(h)) == NULL)
		return NULL;
	refs = g_mime_references_parse(NULL, v);
	g_free(v);
	if (refs != NULL && g_mime_references_length(refs) == 0) {
		g_mime_references_free(refs);
		refs = NULL;
	}
	return refs;
}

static json_object *
date_field(GMimeMessage *m)
{
	GDateTime *dt = g_mime_message_get_date(m);	/* owned by m */

	if (dt == NULL)
		return NULL;
	return json_iso_time(g_date_time_to_unix(dt),
	    g_date_time_get_microsecond(dt) / 1000);
}

/* ---- the MIME walk: text, html, attachments ---- */

/* The decoded content (Content-Transfer-Encoding undone) of a leaf part. */
static GByteArray *
part_bytes(GMimeObject *obj)
{
	GByteArray *bytes = g_byte_array_new();
	GMimeStream *out = g_mime_stream_mem_new_with_byte_array(bytes);

	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(out), FALSE);
	if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner = g_mime_message_part_get_message(
		    GMIME_MESSAGE_PART(obj));

		if (inner != NULL)
			(void)g_mime_object_write_to_stream(GMIME_OBJECT(inner),
			    NULL, out);
	} else {
		GMimeDataWrapper *dw = g_mime_part_get_content(GMIME_PART(obj));

		if (dw != NULL)
			(void)g_mime_data_wrapper_write_to_stream(dw, out);
	}
	g_object_unref(out);
	return bytes;
}

static void
body_part(struct payload *p, GMimeObject *obj, int html)
{
	GString *dst = html ? p->html : p->text;
	int *has = html ? &p->has_html : &p->has_text;
	GByteArray *bytes = part_bytes(obj);

	if (*has)
		g_string_append_c(dst, '\n');
	*has = 1;
	sbx_to_utf8(dst, (const char *)bytes->data, bytes->len,
	    g_mime_object_get_content_type_parameter(obj, "charset"), REPLACEMENT);
	g_byte_array_unref(bytes);
}

static void
attachment(struct payload *p, GMimeObject *obj)
{
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	const char *disp = g_mime_object_get_disposition(obj);
	const char *filename = NULL, *cid = NULL;
	json_object *o;
	GByteArray *bytes;
	unsigned char hash[crypto_hash_sha256_BYTES];
	char hex[crypto_hash_sha256_BYTES * 2 + 1];
	char *type, *lower;

	if (p->nattachments >= SBX_WEBHOOK_MAX_ATTACHMENTS)
		return;
	p->nattachments++;
	o = json_object_new_object();
	if (GMIME_IS_PART(obj)) {
		filename = g_mime_part_get_filename(GMIME_PART(obj));
		cid = g_mime_part_get_content_id(GMIME_PART(obj));
	} else {
		filename = g_mime_object_get_content_disposition_parameter(obj,
		    "filename");
		if (filename == NULL)
			filename = g_mime_object_get_content_type_parameter(obj,
			    "name");
	}
	if (filename != NULL)
		json_object_object_add(o, "filename", json_cstr(p, filename));
	type = ct != NULL ? g_mime_content_type_get_mime_type(ct) : NULL;
	lower = g_ascii_strdown(type != NULL ? type : "application/octet-stream",
	    -1);
	json_object_object_add(o, "contentType", json_cstr(p, lower));
	g_free(lower);
	g_free(type);
	if (disp != NULL) {
		lower = g_ascii_strdown(disp, -1);
		json_object_object_add(o, "contentDisposition",
		    json_cstr(p, lower));
		g_free(lower);
	}
	if (cid != NULL)
		json_object_object_add(o, "contentId", json_msgid(p, cid));
	bytes = part_bytes(obj);
	json_object_object_add(o, "size", json_object_new_int64(bytes->len));
	crypto_hash_sha256(hash, bytes->data, bytes->len);
	sbx_hex(hex, hash, sizeof(hash));
	json_object_object_add(o, "checksum", json_object_new_string(hex));
	if (p->with_attachments)
		json_object_object_add(o, "content",
		    json_base64(p, bytes->data, bytes->len));
	g_byte_array_unref(bytes);
	json_object_array_add(p->attachments, o);
}

static void
walk(struct payload *p, GMimeObject *obj, int depth)
{
	GMimeContentType *ct;
	const char *disp;
	int is_attachment;

	if (depth > SBX_MIME_MAX_DEPTH || p->parts >= SBX_MIME_MAX_PARTS)
		return;
	p->parts++;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int i, n = g_mime_multipart_get_count(mp);

		for (i = 0; i < n; i++) {
			GMimeObject *sub = g_mime_multipart_get_part(mp, i);

			if (sub != NULL)
				walk(p, sub, depth + 1);
		}
		return;
	}
	if (!GMIME_IS_PART(obj) && !GMIME_IS_MESSAGE_PART(obj))
		return;
	/* like mailparser: inline text/plain and text/html are the body,
	 * every other leaf (message/rfc822 included) is an attachment */
	ct = g_mime_object_get_content_type(obj);
	disp = g_mime_object_get_disposition(obj);
	is_attachment = disp != NULL && g_ascii_strcasecmp(disp, "attachment") == 0;
	if (!is_attachment && GMIME_IS_PART(obj) && ct != NULL &&
	    g_mime_content_type_is_type(ct, "text", "plain"))
		body_part(p, obj, 0);
	else if (!is_attachment && GMIME_IS_PART(obj) && ct != NULL &&
	    g_mime_content_type_is_type(ct, "text", "html"))
		body_part(p, obj, 1);
	else
		attachment(p, obj);
}

/* ---- the payload ---- */

static GMimeMessage *
parse_message(const char *msg, size_t len)
{
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *m;

	/* the stream owns a copy: the caller's bytes are never touched */
	stream = g_mime_stream_mem_new_with_buffer(len > 0 ? msg : "", len);
	parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	g_object_unref(stream);
	m = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	return m;
}

static void
add_if(json_object *root, const char *key, json_object *v)
{
	if (v != NULL)
		json_object_object_add(root, key, v);
}

static void
message_fields(struct payload *p, json_object *root, GMimeMessage *m)
{
	GMimeObject *o = GMIME_OBJECT(m);
	GMimeReferences *refs;
	GMimeHeader *h;
	const char *id;

	add_if(root, "from", address_field(p, o, "From"));
	add_if(root, "to", address_field(p, o, "To"));
	add_if(root, "cc", address_field(p, o, "Cc"));
	if ((h = first_header(o, "Subject")) != NULL) {
		const char *raw = g_mime_header_get_raw_value(h);
		char *s = sbx_mime_text_decode_header(raw != NULL ? raw : "",
		    raw != NULL ? strlen(raw) : 0);

		json_object_object_add(root, "subject", json_cstr(p, s));
		free(s);
	}
	add_if(root, "date", date_field(m));
	if ((id = g_mime_message_get_message_id(m)) != NULL && *id != '\0')
		json_object_object_add(root, "messageId", json_msgid(p, id));
	if ((refs = references_of(o, "In-Reply-To")) != NULL) {
		json_object_object_add(root, "inReplyTo",
		    json_msgid(p, g_mime_references_get_message_id(refs, 0)));
		g_mime_references_free(refs);
	}
	if ((refs = references_of(o, "References")) != NULL) {
		json_object *arr = json_object_new_array();
		int i, n = g_mime_references_length(refs);

		for (i = 0; i < n && i < SBX_WEBHOOK_MAX_REFERENCES; i++)
			json_object_array_add(arr, json_msgid(p,
			    g_mime_references_get_message_id(refs, i)));
		json_object_object_add(root, "references", arr);
		g_mime_references_free(refs);
	}
	if (g_mime_message_get_mime_part(m) != NULL)
		walk(p, g_mime_message_get_mime_part(m), 0);
	if (p->has_text)
		json_object_object_add(root, "text",
		    json_str(p, p->text->str, p->text->len));
	if (p->has_html)
		json_object_object_add(root, "html",
		    json_str(p, p->html->str, p->html->len));
}

static void
session_fields(struct payload *p, json_object *root,
    const struct sbx_webhook_meta *meta)
{
	json_object *s = json_object_new_object();
	json_object *t;

	if (meta->remote_address != NULL)
		json_object_object_add(s, "remoteAddress",
		    json_cstr(p, meta->remote_address));
	if (meta->remote_name != NULL)
		json_object_object_add(s, "remoteName",
		    json_cstr(p, meta->remote_name));
	if (meta->helo != NULL)
		json_object_object_add(s, "helo", json_cstr(p, meta->helo));
	if (meta->arrival_ms > 0 && (t = json_iso_time(meta->arrival_ms / 1000,
	    (int)(meta->arrival_ms % 1000))) != NULL)
		json_object_object_add(s, "arrivalTime", t);
	if (meta->sender != NULL)
		json_object_object_add(s, "sender", json_cstr(p, meta->sender));
	if (meta->nrecipients > 0 && meta->recipients[0] != NULL)
		json_object_object_add(s, "recipient",
		    json_cstr(p, meta->recipients[0]));
	if (meta->queue_id != NULL)
		json_object_object_add(s, "queueId",
		    json_cstr(p, meta->queue_id));
	json_object_object_add(root, "session", s);
}

int
sbx_webhook_payload(const char *msg, size_t len,
    const struct sbx_webhook_meta *meta, int with_attachments, int with_raw,
    char **json_r, size_t *json_len_r, char **error_r)
{
	static const struct sbx_webhook_meta no_meta;
	struct payload p;
	json_object *root, *lines, *recipients;
	GMimeMessage *m;
	const char *out;
	size_t hdr_len, i, out_len = 0;

	*json_r = NULL;
	*json_len_r = 0;
	if (meta == NULL)
		meta = &no_meta;
	if (sbx_mime_init() < 0 || sodium_init() < 0) {
		*error_r = sbx_xstrdup("webhook: library initialisation failed");
		return -1;
	}
	memset(&p, 0, sizeof(p));
	p.with_attachments = with_attachments;
	p.text = g_string_new(NULL);
	p.html = g_string_new(NULL);
	p.attachments = json_object_new_array();
	root = json_object_new_object();

	m = parse_message(msg, len);
	if (m != NULL) {
		message_fields(&p, root, m);
		g_object_unref(m);
	}
	lines = json_object_new_array();
	/* the block without the empty line that ends it */
	hdr_len = header_scan(&p, msg, len, lines);
	json_object_object_add(root, "headers", json_str(&p, msg, hdr_len));
	json_object_object_add(root, "headerLines", lines);
	json_object_object_add(root, "attachments", p.attachments);
	if (with_raw) {
		if (len == 0 || g_utf8_validate(msg, len, NULL)) {
			json_object_object_add(root, "raw", json_str(&p, msg, len));
		} else {
			json_object_object_add(root, "raw",
			    json_base64(&p, (const unsigned char *)msg, len));
			json_object_object_add(root, "rawEncoding",
			    json_object_new_string("base64"));
		}
	}
	recipients = json_object_new_array();
	for (i = 0; i < meta->nrecipients; i++)
		if (meta->recipients[i] != NULL)
			json_object_array_add(recipients,
			    json_cstr(&p, meta->recipients[i]));
	json_object_object_add(root, "recipients", recipients);
	session_fields(&p, root, meta);
	g_string_free(p.text, TRUE);
	g_string_free(p.html, TRUE);

	out = p.too_big ? NULL : json_object_to_json_string_length(root,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &out_len);
	if (out == NULL) {
		json_object_put(root);
		*error_r = sbx_xstrdup("webhook: payload too large for json-c");
		return -1;
	}
	*json_r = sbx_xmalloc(out_len + 1);
	memcpy(*json_r, out, out_len);
	(*json_r)[out_len] = '\0';
	*json_len_r = out_len;
	json_object_put(root);
	return 0;
}

/* ---- URL options ---- */

static int
parse_bool(const char *v, size_t n, int *out)
{
	if (n == 4 && strncasecmp(v, "true", 4) == 0)
		*out = 1;
	else if (n == 5 && strncasecmp(v, "false", 5) == 0)
		*out = 0;
	else
		return -1;
	return 0;
}

int
sbx_webhook_url_options(const char *url, char **clean_url_r,
    int *attachments_r, int *raw_r, char **error_r)
{
	size_t len = strlen(url), i, scheme, auth_end, q, frag, seg;
	const char *at;
	struct sbx_buf out = { 0 };
	int kept = 0;

	*clean_url_r = NULL;
	*attachments_r = 1;
	*raw_r = 1;
	if (len == 0 || len > SBX_MAX_URL_LEN) {
		*error_r = sbx_xasprintf("webhook URL: empty or longer than %d "
		    "bytes", SBX_MAX_URL_LEN);
		return -1;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)url[i];

		if (c <= 0x20 || c >= 0x7f) {
			*error_r = sbx_xstrdup("webhook URL: control, space or "
			    "non-ASCII byte (percent-encode it)");
			return -1;
		}
	}
	if (strncasecmp(url, "http://", 7) == 0)
		scheme = 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		scheme = 8;
	else {
		*error_r = sbx_xstrdup("webhook URL: not http:// or https://");
		return -1;
	}
	auth_end = scheme + strcspn(url + scheme, "/?#");
	at = memrchr(url + scheme, '@', auth_end - scheme);
	if (at != NULL)
		at++;
	else
		at = url + scheme;
	if (at == url + auth_end || *at == ':') {
		*error_r = sbx_xstrdup("webhook URL: no host");
		return -1;
	}
	frag = strcspn(url, "#");
	q = strcspn(url, "?");
	if (q > frag)
		q = frag;			/* no query */
	sbx_buf_append(&out, url, q);
	if (q < frag) {
		/* every '&'-separated parameter of url[q+1 .. frag) */
		for (seg = q + 1; seg <= frag;) {
			const char *s = url + seg;
			size_t n = strcspn(s, "&#"), name_len;
			const char *eq;
			int *opt = NULL;

			if (seg + n > frag)
				n = frag - seg;
			eq = memchr(s, '=', n);
			name_len = eq == NULL ? n : (size_t)(eq - s);
			if (name_len == 11 && memcmp(s, "attachments", 11) == 0)
				opt = attachments_r;
			else if (name_len == 3 && memcmp(s, "raw", 3) == 0)
				opt = raw_r;
			if (opt != NULL) {
				if (eq == NULL || parse_bool(eq + 1,
				    n - name_len - 1, opt) < 0) {
					*error_r = sbx_xasprintf("webhook URL: "
					    "%.*s must be true or false",
					    (int)name_len, s);
					sbx_buf_free(&out);
					return -1;
				}
			} else {
				sbx_buf_append(&out, kept++ ? "&" : "?", 1);
				sbx_buf_append(&out, s, n);
			}
			seg += n + 1;
		}
	}
	sbx_buf_append(&out, url + frag, len - frag);
	sbx_buf_append(&out, "", 1);
	*clean_url_r = out.data;
	return 0;
}

/* ---- signature ---- */

void
sbx_webhook_sign(const unsigned char *secret, size_t secret_len,
    const char *body, size_t len, char hex_out[65])
{
	crypto_auth_hmacsha256_state st;
	unsigned char mac[crypto_auth_hmacsha256_BYTES];

	/* the _init/_update/_final API takes a key of any length (hashed
	 * when longer than the block, RFC 2104); the one-shot
	 * crypto_auth_hmacsha256() would require exactly 32 bytes */
	crypto_auth_hmacsha256_init(&st, secret, secret_len);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(&st, sizeof(st));
	sbx_hex(hex_out, mac, sizeof(mac));
}

/* ---- status mapping ---- */

int
sbx_webhook_reply(long st, int outcome, char *reply_out, size_t n)
{
	int code;
	const char *ext, *text;

	switch (outcome) {
	case SBX_WEBHOOK_OK:
		break;
	case SBX_WEBHOOK_TIMEOUT:
		snprintf(reply_out, n, "451 4.4.2 webhook timed out");
		return 451;
	case SBX_WEBHOOK_DNS:
		snprintf(reply_out, n, "451 4.4.3 webhook host name lookup "
		    "failed");
		return 451;
	case SBX_WEBHOOK_CONNECT:
		snprintf(reply_out, n, "451 4.4.1 webhook connection failed");
		return 451;
	case SBX_WEBHOOK_LOST:
		snprintf(reply_out, n, "451 4.4.2 webhook connection lost");
		return 451;
	case SBX_WEBHOOK_TLS:
		snprintf(reply_out, n, "451 4.7.5 webhook TLS handshake or "
		    "certificate verification failed");
		return 451;
	default:
		snprintf(reply_out, n, "451 4.3.0 webhook request failed");
		return 451;
	}
	if (st >= 200 && st <= 299) {
		code = 250, ext = "2.0.0", text = "delivered to webhook";
	} else if (st == 408) {
		code = 451, ext = "4.4.2", text = "webhook timed out the request";
	} else if (st == 429 || st == 503) {
		code = 451, ext = "4.4.5", text = "webhook busy, try again later";
	} else if (st >= 500 && st <= 599) {
		code = 451, ext = "4.4.0", text = "webhook server error";
	} else if (st == 401 || st == 403) {
		code = 550, ext = "5.7.1", text = "webhook refused the delivery";
	} else if (st == 404 || st == 410) {
		code = 550, ext = "5.1.1", text = "webhook endpoint does not exist";
	} else if (st == 413) {
		code = 550, ext = "5.3.4", text = "message too big for webhook";
	} else if (st == 400 || st == 415 || st == 422) {
		code = 550, ext = "5.6.0", text = "webhook refused the payload";
	} else if (st >= 400 && st <= 499) {
		code = 550, ext = "5.0.0", text = "webhook refused the message";
	} else if (st >= 300 && st <= 399) {
		code = 550, ext = "5.1.6", text = "webhook moved (redirect not "
		    "followed)";
	} else {
		snprintf(reply_out, n, "451 4.3.0 webhook gave no valid HTTP "
		    "status (%ld)", st);
		return 451;
	}
	snprintf(reply_out, n, "%d %s %s (HTTP %ld)", code, ext, text, st);
	return code;
}

/* ---- the client: libcurl multi on a libuv loop ---- */

struct sockctx {
	uv_poll_t poll;
	curl_socket_t fd;
	struct sbx_webhook_client *client;
	struct sockctx *prev, *next;
};

struct transfer {
	struct sbx_webhook_client *client;
	CURL *easy;
	struct curl_slist *headers;
	int https;		/* the current URL is https (no downgrade) */
	int hops;		/* redirects followed */
	uint64_t deadline_us;	/* sbx_now_us() */
	sbx_webhook_cb *cb;
	void *arg;
	char errbuf[CURL_ERROR_SIZE];
	struct transfer *prev, *next;
};

struct sbx_webhook_client {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	char *proxy;
	struct transfer *transfers;
	struct sockctx *socks;
	int closing;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void
curl_do_init(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void check_multi_info(struct sbx_webhook_client *c);

static void
sock_free_cb(uv_handle_t *h)
{
	free(h->data);
}

static void
sock_close(struct sbx_webhook_client *c, struct sockctx *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		c->socks = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	uv_poll_stop(&s->poll);
	uv_close((uv_handle_t *)&s->poll, sock_free_cb);
}

static void
poll_cb(uv_poll_t *h, int status, int events)
{
	struct sockctx *s = h->data;
	struct sbx_webhook_client *c = s->client;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	else {
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
	}
	(void)curl_multi_socket_action(c->multi, s->fd, flags, &running);
	check_multi_info(c);
}

static int
socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp,
    void *socketp)
{
	struct sbx_webhook_client *c = userp;
	struct sockctx *s = socketp;
	int events = 0;

	if (action == CURL_POLL_REMOVE) {
		if (s != NULL) {
			sock_close(c, s);
			if (!c->closing)
				(void)curl_multi_assign(c->multi, fd, NULL);
		}
		return 0;
	}
	if (s == NULL) {
		s = sbx_xcalloc(1, sizeof(*s));
		if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
			free(s);
			return -1;
		}
		s->poll.data = s;
		s->fd = fd;
		s->client = c;
		s->next = c->socks;
		if (c->socks != NULL)
			c->socks->prev = s;
		c->socks = s;
		(void)curl_multi_assign(c->multi, fd, s);
	}
	if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
		events |= UV_READABLE;
	if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
		events |= UV_WRITABLE;
	return uv_poll_start(&s->poll, events, poll_cb) == 0 ? 0 : -1;
}

static void
timeout_cb(uv_timer_t *t)
{
	struct sbx_webhook_client *c = t->data;
	int running;

	(void)curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0,
	    &running);
	check_multi_info(c);
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct sbx_webhook_client *c = userp;

	/* curl asks for a call "as soon as possible" with 0: the next loop
	 * iteration; socket_action must not be called from here */
	if (timeout_ms < 0)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, timeout_cb, (uint64_t)timeout_ms, 0);
	return 0;
}

static enum sbx_webhook_outcome
classify(CURLcode r)
{
	switch (r) {
	case CURLE_OK:
		return SBX_WEBHOOK_OK;
	case CURLE_OPERATION_TIMEDOUT:
		return SBX_WEBHOOK_TIMEOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return SBX_WEBHOOK_DNS;
	case CURLE_COULDNT_CONNECT:
		return SBX_WEBHOOK_CONNECT;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return SBX_WEBHOOK_LOST;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_USE_SSL_FAILED:
		return SBX_WEBHOOK_TLS;
	default:
		return SBX_WEBHOOK_OTHER;
	}
}

/* Remove t from the client, free it, then run its callback. */
static void
transfer_finish(struct sbx_webhook_client *c, struct transfer *t,
    long status, enum sbx_webhook_outcome outcome, const char *error)
{
	char err[CURL_ERROR_SIZE + 64];
	sbx_webhook_cb *cb = t->cb;
	void *arg = t->arg;

	snprintf(err, sizeof(err), "%s", error != NULL ? error : "");
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		c->transfers = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	(void)curl_multi_remove_handle(c->multi, t->easy);
	curl_easy_cleanup(t->easy);
	curl_slist_free_all(t->headers);
	free(t);
	cb(status, outcome, error != NULL ? err : NULL, arg);
}

/* A 307/308 answer: repeat the POST at the Location. 1 when it went out
 * again, 0 when not followed (*why_r says why). */
static int
follow_redirect(struct sbx_webhook_client *c, struct transfer *t,
    const char **why_r)
{
	char *loc = NULL, *url;
	uint64_t now = sbx_now_us();
	long left_ms;
	int https;

	if (curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_URL, &loc) !=
	    CURLE_OK || loc == NULL) {
		*why_r = "redirect without a usable Location";
		return 0;
	}
	if (t->hops >= SBX_WEBHOOK_MAX_REDIRECTS) {
		*why_r = "too many redirects";
		return 0;
	}
	if (strncasecmp(loc, "https://", 8) == 0)
		https = 1;
	else if (strncasecmp(loc, "http://", 7) == 0)
		https = 0;
	else {
		*why_r = "redirect to a non-HTTP URL refused";
		return 0;
	}
	if (t->https && !https) {
		*why_r = "redirect from https to http refused";
		return 0;
	}
	if (now >= t->deadline_us) {
		*why_r = "timed out before the redirect";
		return 0;
	}
	left_ms = (long)((t->deadline_us - now + 999) / 1000);
	url = sbx_xstrdup(loc);	/* loc belongs to the handle */
	(void)curl_multi_remove_handle(c->multi, t->easy);
	t->errbuf[0] = '\0';
	if (curl_easy_setopt(t->easy, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, left_ms) != CURLE_OK ||
	    curl_multi_add_handle(c->multi, t->easy) != CURLM_OK) {
		free(url);
		*why_r = "cannot restart the request for the redirect";
		return 0;
	}
	free(url);
	t->https = https;
	t->hops++;
	return 1;
}

static void
transfer_done(struct sbx_webhook_client *c, struct transfer *t, CURLcode r)
{
	long status = 0;
	const char *why = NULL;

	(void)curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	if (r != CURLE_OK) {
		transfer_finish(c, t, status, classify(r), t->errbuf[0] != '\0' ?
		    t->errbuf : curl_easy_strerror(r));
		return;
	}
	if (status == 307 || status == 308) {
		if (follow_redirect(c, t, &why))
			return;
	}
	transfer_finish(c, t, status, SBX_WEBHOOK_OK, why);
}

static void
check_multi_info(struct sbx_webhook_client *c)
{
	CURLMsg *msg;
	int pending;

	while (!c->closing &&
	    (msg = curl_multi_info_read(c->multi, &pending)) != NULL) {
		struct transfer *t = NULL;
		CURL *easy = msg->easy_handle;
		CURLcode r = msg->data.result;

		if (msg->msg != CURLMSG_DONE)
			continue;
		(void)curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
		if (t != NULL)
			transfer_done(c, t, r);
	}
}

static size_t
discard_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	return size * nmemb;	/* the response body is not used */
}

struct sbx_webhook_client *
sbx_webhook_client_new(uv_loop_t *loop, const char *proxy, char **error_r)
{
	struct sbx_webhook_client *c;

	pthread_once(&curl_once, curl_do_init);
	if (curl_init_result != CURLE_OK) {
		*error_r = sbx_xasprintf("webhook: curl_global_init: %s",
		    curl_easy_strerror(curl_init_result));
		return NULL;
	}
	c = sbx_xcalloc(1, sizeof(*c));
	c->loop = loop;
	if ((c->multi = curl_multi_init()) == NULL) {
		free(c);
		*error_r = sbx_xstrdup("webhook: curl_multi_init failed");
		return NULL;
	}
	c->proxy = sbx_xstrdup(proxy != NULL ? proxy : "");
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	return c;
}

static void
client_free_cb(uv_handle_t *h)
{
	struct sbx_webhook_client *c = h->data;

	free(c->proxy);
	free(c);
}

void
sbx_webhook_client_close(struct sbx_webhook_client **client)
{
	struct sbx_webhook_client *c = *client;

	*client = NULL;
	if (c == NULL || c->closing)
		return;
	c->closing = 1;
	while (c->transfers != NULL)
		transfer_finish(c, c->transfers, 0, SBX_WEBHOOK_OTHER,
		    "webhook client closed");
	curl_multi_cleanup(c->multi);	/* may still report sockets removed */
	c->multi = NULL;
	while (c->socks != NULL)
		sock_close(c, c->socks);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, client_free_cb);
}

#define SETOPT(opt, val) do { \
	if (rc == CURLE_OK) rc = curl_easy_setopt(t->easy, opt, val); \
} while (0)

int
sbx_webhook_post(struct sbx_webhook_client *c, const char *url,
    const char *body, size_t len, const char *signature,
    unsigned int timeout_ms, const char *ca_file, sbx_webhook_cb *cb,
    void *arg, char **error_r)
{
	struct transfer *t;
	CURLcode rc = CURLE_OK;
	char *h;

	if (c == NULL || c->closing) {
		*error_r = sbx_xstrdup("webhook: client closed");
		return -1;
	}
	if (strncasecmp(url, "http://", 7) != 0 &&
	    strncasecmp(url, "https://", 8) != 0) {
		*error_r = sbx_xstrdup("webhook: URL is not http(s)");
		return -1;
	}
	if (timeout_ms == 0)
		timeout_ms = SBX_WEBHOOK_DEF_TIMEOUT_MS;
	t = sbx_xcalloc(1, sizeof(*t));
	t->client = c;
	t->cb = cb;
	t->arg = arg;
	t->https = strncasecmp(url, "https://", 8) == 0;
	t->deadline_us = sbx_now_us() + (uint64_t)timeout_ms * 1000;
	if ((t->easy = curl_easy_init()) == NULL) {
		free(t);
		*error_r = sbx_xstrdup("webhook: curl_easy_init failed");
		return -1;
	}
	t->headers = curl_slist_append(NULL, "Content-Type: application/json");
	t->headers = curl_slist_append(t->headers, "Expect:");
	if (signature != NULL) {
		h = sbx_xasprintf("X-Webhook-Signature: %s", signature);
		t->headers = curl_slist_append(t->headers, h);
		free(h);
	}
	SETOPT(CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SETOPT(CURLOPT_POST, 1L);
	SETOPT(CURLOPT_POSTFIELDS, len > 0 ? body : "");
	SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	SETOPT(CURLOPT_HTTPHEADER, t->headers);
	SETOPT(CURLOPT_USERAGENT, "sealbox/" SBX_VERSION);
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);	/* 307/308 by hand */
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	if (ca_file != NULL && *ca_file != '\0')
		SETOPT(CURLOPT_CAINFO, ca_file);
	/* "" disables the proxy environment variables */
	SETOPT(CURLOPT_PROXY, c->proxy);
	SETOPT(CURLOPT_WRITEFUNCTION, discard_cb);
	SETOPT(CURLOPT_ERRORBUFFER, t->errbuf);
	SETOPT(CURLOPT_PRIVATE, t);
	if (rc != CURLE_OK || curl_multi_add_handle(c->multi, t->easy) !=
	    CURLM_OK) {
		*error_r = sbx_xasprintf("webhook: cannot set up the request: %s",
		    rc != CURLE_OK ? curl_easy_strerror(rc) : "curl_multi_add_handle");
		curl_easy_cleanup(t->easy);
		curl_slist_free_all(t->headers);
		free(t);
		return -1;
	}
	t->next = c->transfers;
	if (c->transfers != NULL)
		c->transfers->prev = t;
	c->transfers = t;
	return 0;
}
