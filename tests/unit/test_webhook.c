/*
 * test_webhook.c - webhook payload fields (tests/data/mime messages under
 * $SBX_TOP, else .), URL options, HMAC-SHA256 (RFC 4231), the LMTP reply of
 * every outcome, and real POSTs through the libuv loop to
 * tests/webhook/server.py (python3, loopback, a free port): signature,
 * headers and body as received, each status, 307/308 keeping the body,
 * timeout, refused connection, DNS failure, lost connection, TLS failure,
 * HTTPS with a CA file (when the openssl command exists), client close.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <glib.h>
#include <json-c/json.h>
#include <sodium.h>
#include <uv.h>

#include "tap.h"
#include "sbx_limits.h"
#include "util.h"
#include "webhook.h"

#define HAS(hay, needle) ((hay) != NULL && strstr((hay), (needle)) != NULL)
#define STREQ(a, b) ((a) != NULL && strcmp((a), (b)) == 0)

/* ---- helpers ---- */

static char *
top_path(const char *rel)
{
	const char *top = getenv("SBX_TOP");

	return sbx_xasprintf("%s/%s", top != NULL && *top != '\0' ? top : ".",
	    rel);
}

static char *
load(const char *name, size_t *len)
{
	char *rel = sbx_xasprintf("tests/data/mime/%s", name);
	char *path = top_path(rel);
	char *data = NULL;

	if (sbx_read_file(path, 1 << 20, &data, len) < 0) {
		printf("# cannot read %s\n", path);
		data = NULL;
		*len = 0;
	}
	free(rel);
	free(path);
	return data;
}

/* The payload of msg parsed back; NULL (and a diagnostic) on any failure,
 * including output that is not valid UTF-8 or not one JSON value. */
static json_object *
payload_ex(const char *msg, size_t len, const struct sbx_webhook_meta *meta,
    int att, int raw, char **json_out, size_t *json_len_out)
{
	char *json = NULL, *err = NULL;
	size_t jlen = 0;
	json_tokener *tok;
	json_object *o;

	if (sbx_webhook_payload(msg, len, meta, att, raw, &json, &jlen,
	    &err) != 0) {
		printf("# payload: %s\n", err != NULL ? err : "?");
		free(err);
		return NULL;
	}
	if (strlen(json) != jlen || !g_utf8_validate(json, jlen, NULL)) {
		printf("# payload output is not NUL-free valid UTF-8\n");
		free(json);
		return NULL;
	}
	tok = json_tokener_new();
	o = json_tokener_parse_ex(tok, json, (int)jlen);
	if (o == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != jlen ||
	    !json_object_is_type(o, json_type_object)) {
		printf("# payload is not one JSON object: %.200s\n", json);
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	if (json_out != NULL && o != NULL) {
		*json_out = json;
		*json_len_out = jlen;
	} else {
		free(json);
	}
	return o;
}

static json_object *
payload(const char *msg, size_t len, int att, int raw)
{
	return payload_ex(msg, len, NULL, att, raw, NULL, NULL);
}

/* o at a dotted path: "from.value.0.address". */
static json_object *
J(json_object *o, const char *path)
{
	char *copy = sbx_xstrdup(path), *save = NULL, *seg;

	for (seg = strtok_r(copy, ".", &save); seg != NULL && o != NULL;
	    seg = strtok_r(NULL, ".", &save)) {
		if (json_object_is_type(o, json_type_array)) {
			char *end;
			long i = strtol(seg, &end, 10);

			o = *end == '\0' && i >= 0 &&
			    (size_t)i < json_object_array_length(o) ?
			    json_object_array_get_idx(o, i) : NULL;
		} else if (!json_object_object_get_ex(o, seg, &o)) {
			o = NULL;
		}
	}
	free(copy);
	return o;
}

static const char *
JS(json_object *o, const char *path)
{
	json_object *v = J(o, path);

	return v != NULL && json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : NULL;
}

static size_t
JN(json_object *o, const char *path)
{
	json_object *v = J(o, path);

	return v != NULL && json_object_is_type(v, json_type_array) ?
	    json_object_array_length(v) : (size_t)-1;
}

static int
b64dec(const char *b64, unsigned char **out, size_t *outlen)
{
	size_t max = strlen(b64) / 4 * 3 + 3;

	*out = sbx_xmalloc(max + 1);
	return sodium_base642bin(*out, max, b64, strlen(b64), NULL, outlen,
	    NULL, sodium_base64_VARIANT_ORIGINAL);
}

static void
sha256_hex(const void *p, size_t n, char hex[65])
{
	unsigned char h[32];

	crypto_hash_sha256(h, p, n);
	sbx_hex(hex, h, 32);
}

/* ---- payload ---- */

TEST(alternative_text_html)
{
	size_t len;
	char *msg = load("003-alternative.eml", &len);
	json_object *o = payload(msg, len, 1, 1);
	const char *h;

	CHECK(o != NULL);
	CHECKF(STREQ(JS(o, "text"), "Plain version.\r\n"), "text '%s'",
	    JS(o, "text"));
	CHECKF(STREQ(JS(o, "html"),
	    "<html><body><p>HTML version.</p></body></html>\r\n"), "html '%s'",
	    JS(o, "html"));
	CHECK(STREQ(JS(o, "from.value.0.address"), "carol@example.org"));
	CHECK(STREQ(JS(o, "from.value.0.name"), "Carol C."));
	CHECKF(HAS(JS(o, "from.text"), "Carol C.") &&
	    HAS(JS(o, "from.text"), "<carol@example.org>"), "from.text '%s'",
	    JS(o, "from.text"));
	CHECK(STREQ(JS(o, "to.value.0.address"), "dave@example.com"));
	CHECK(STREQ(JS(o, "to.value.0.name"), ""));
	CHECK(J(o, "cc") == NULL);
	CHECK(STREQ(JS(o, "subject"), "alternative"));
	CHECKF(STREQ(JS(o, "date"), "2022-03-02T10:12:13.000Z"), "date '%s'",
	    JS(o, "date"));
	CHECK(STREQ(JS(o, "messageId"), "<alt.003@example.org>"));
	CHECK(J(o, "inReplyTo") == NULL && J(o, "references") == NULL);
	CHECK(JN(o, "attachments") == 0);
	CHECK(JN(o, "headerLines") == 7);
	CHECK(STREQ(JS(o, "headerLines.0.key"), "date"));
	CHECK(STREQ(JS(o, "headerLines.0.line"),
	    "Date: Wed, 2 Mar 2022 11:12:13 +0100"));
	CHECK(STREQ(JS(o, "headerLines.6.key"), "content-type"));
	h = JS(o, "headers");
	CHECKF(h != NULL && strncmp(h, "Date: Wed", 9) == 0 &&
	    g_str_has_suffix(h, "boundary=\"=_alt_003\"\r\n"), "headers '%s'", h);
	/* valid UTF-8: raw is the message itself */
	CHECK(STREQ(JS(o, "raw"), msg));
	CHECK(J(o, "rawEncoding") == NULL);
	CHECK(JN(o, "recipients") == 0);
	CHECK(J(o, "session") != NULL &&
	    json_object_object_length(J(o, "session")) == 0);
	json_object_put(o);
	free(msg);
}

/* The base64 body lines of menu.pdf in 004, decoded. */
static unsigned char *
menu_pdf(size_t *n)
{
	const char *b64 =
	    "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKdHJhaWxlcgo8"
	    "PC9Sb290IDEgMCBSPj4KJSVFT0YK";
	unsigned char *out;

	if (b64dec(b64, &out, n) != 0)
		*n = 0;
	return out;
}

TEST(attachments)
{
	size_t len, pdf_len, dec_len;
	char *msg = load("004-nested-mixed-attachments.eml", &len);
	unsigned char *pdf = menu_pdf(&pdf_len), *dec = NULL;
	json_object *o = payload(msg, len, 1, 1);
	char hex[65];
	const char *csv = "item,price\r\ncoffee,2.50\r\ntea,2.00\r\n";

	CHECK(o != NULL && pdf_len > 40);
	CHECKF(STREQ(JS(o, "text"), "Caf\xc3\xa9 menu attached.\r\n"),
	    "text '%s'", JS(o, "text"));
	CHECK(HAS(JS(o, "html"), "<p>Caf\xc3\xa9 menu attached.</p>"));
	CHECK(JN(o, "to.value") == 2);
	CHECK(STREQ(JS(o, "to.value.1.name"), "Grace"));
	CHECK(STREQ(JS(o, "cc.value.0.address"), "heidi@example.com"));
	CHECK(JN(o, "attachments") == 2);
	CHECK(STREQ(JS(o, "attachments.0.filename"), "menu.pdf"));
	CHECK(STREQ(JS(o, "attachments.0.contentType"), "application/pdf"));
	CHECK(STREQ(JS(o, "attachments.0.contentDisposition"), "attachment"));
	CHECK(json_object_get_int64(J(o, "attachments.0.size")) ==
	    (int64_t)pdf_len);
	sha256_hex(pdf, pdf_len, hex);
	CHECK(STREQ(JS(o, "attachments.0.checksum"), hex));
	CHECK(JS(o, "attachments.0.content") != NULL &&
	    b64dec(JS(o, "attachments.0.content"), &dec, &dec_len) == 0 &&
	    dec_len == pdf_len && memcmp(dec, pdf, pdf_len) == 0);
	free(dec);
	CHECK(STREQ(JS(o, "attachments.1.filename"), "prices.csv"));
	CHECK(STREQ(JS(o, "attachments.1.contentType"), "text/csv"));
	CHECK(json_object_get_int64(J(o, "attachments.1.size")) ==
	    (int64_t)strlen(csv));
	sha256_hex(csv, strlen(csv), hex);
	CHECK(STREQ(JS(o, "attachments.1.checksum"), hex));
	json_object_put(o);

	/* ?attachments=false: metadata stays, content goes */
	o = payload(msg, len, 0, 1);
	CHECK(o != NULL && JN(o, "attachments") == 2);
	CHECK(J(o, "attachments.0.content") == NULL &&
	    J(o, "attachments.1.content") == NULL);
	CHECK(STREQ(JS(o, "attachments.0.filename"), "menu.pdf"));
	sha256_hex(pdf, pdf_len, hex);
	CHECK(STREQ(JS(o, "attachments.0.checksum"), hex));
	CHECK(STREQ(JS(o, "raw"), msg));
	json_object_put(o);

	/* ?raw=false */
	o = payload(msg, len, 1, 0);
	CHECK(o != NULL && J(o, "raw") == NULL && J(o, "rawEncoding") == NULL);
	CHECK(JS(o, "attachments.0.content") != NULL);
	json_object_put(o);
	free(pdf);
	free(msg);
}

TEST(zero_byte_and_inline_image)
{
	size_t len;
	char *msg = load("018-zero-byte-attachment.eml", &len);
	json_object *o = payload(msg, len, 1, 1);
	char hex[65];
	size_t i, n;
	int found = 0;

	sha256_hex("", 0, hex);
	n = JN(o, "attachments");
	CHECK(o != NULL && n >= 1 && n != (size_t)-1);
	for (i = 0; o != NULL && i < n; i++) {
		char path[64];

		snprintf(path, sizeof(path), "attachments.%zu", i);
		if (json_object_get_int64(J(J(o, path), "size")) == 0) {
			found = 1;
			CHECK(STREQ(JS(J(o, path), "checksum"), hex));
			CHECK(STREQ(JS(J(o, path), "content"), ""));
		}
	}
	CHECK(found);
	json_object_put(o);
	free(msg);

	msg = load("005-related-inline-image.eml", &len);
	o = payload(msg, len, 1, 1);
	CHECK(o != NULL && JN(o, "attachments") >= 1);
	CHECKF(HAS(JS(o, "attachments.0.contentType"), "image/"),
	    "type '%s'", JS(o, "attachments.0.contentType"));
	CHECKF(JS(o, "attachments.0.contentId") != NULL &&
	    JS(o, "attachments.0.contentId")[0] == '<', "cid '%s'",
	    JS(o, "attachments.0.contentId"));
	CHECK(JS(o, "html") != NULL);
	json_object_put(o);
	free(msg);
}

TEST(rfc822_attached)
{
	size_t len;
	char *msg = load("006-rfc822-attached.eml", &len);
	json_object *o = payload(msg, len, 1, 1);
	unsigned char *dec = NULL;
	size_t dec_len = 0, i, n;
	int found = 0;

	n = JN(o, "attachments");
	CHECK(o != NULL && n != (size_t)-1);
	for (i = 0; o != NULL && i < n; i++) {
		char path[64];

		snprintf(path, sizeof(path), "attachments.%zu", i);
		if (!STREQ(JS(J(o, path), "contentType"), "message/rfc822"))
			continue;
		found = 1;
		CHECK(b64dec(JS(J(o, path), "content"), &dec, &dec_len) == 0);
		CHECK(dec_len > 0 && json_object_get_int64(J(J(o, path),
		    "size")) == (int64_t)dec_len);
		CHECK(dec_len > 0 && memmem(dec, dec_len, "Subject:", 8) != NULL);
		free(dec);
	}
	CHECK(found);
	json_object_put(o);
	free(msg);
}

TEST(rfc2047_subject)
{
	size_t len;
	char *msg = load("008-rfc2047-utf8-q-subject.eml", &len);
	json_object *o = payload(msg, len, 1, 1);

	CHECKF(STREQ(JS(o, "subject"),
	    "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen and more \xe2\x82\xac"),
	    "subject '%s'", JS(o, "subject"));
	/* the raw line keeps its folding and encoded words */
	CHECK(STREQ(JS(o, "headerLines.3.key"), "subject"));
	CHECK(HAS(JS(o, "headerLines.3.line"), "?= and\r\n =?utf-8?q?more_"));
	json_object_put(o);
	free(msg);

	msg = load("009-rfc2047-utf8-b-from.eml", &len);
	o = payload(msg, len, 1, 1);
	CHECK(o != NULL && JS(o, "from.value.0.name") != NULL &&
	    !HAS(JS(o, "from.value.0.name"), "=?"));
	json_object_put(o);
	free(msg);

	msg = load("010-rfc2047-latin1.eml", &len);
	o = payload(msg, len, 1, 1);
	CHECK(o != NULL && JS(o, "subject") != NULL &&
	    !HAS(JS(o, "subject"), "=?"));
	json_object_put(o);
	free(msg);
}

/* "日本語のテストメール", "山田太郎", "こんにちは" */
#define JA_SUBJECT "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae" \
	"\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88\xe3\x83\xa1\xe3\x83\xbc\xe3\x83\xab"
#define JA_NAME "\xe5\xb1\xb1\xe7\x94\xb0\xe5\xa4\xaa\xe9\x83\x8e"
#define JA_BODY "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf"

TEST(iso2022jp)
{
	size_t len;
	char *msg = load("035-iso2022jp-subject.eml", &len);
	json_object *o = payload(msg, len, 1, 1);

	CHECKF(STREQ(JS(o, "subject"), JA_SUBJECT), "subject '%s'",
	    JS(o, "subject"));
	CHECK(STREQ(JS(o, "from.value.0.name"), JA_NAME));
	CHECK(STREQ(JS(o, "from.value.0.address"), "yamada@example.jp"));
	CHECKF(HAS(JS(o, "text"), JA_BODY) && !HAS(JS(o, "text"), "\x1b"),
	    "text '%s'", JS(o, "text"));
	CHECKF(STREQ(JS(o, "date"), "2022-03-15T01:00:00.000Z"), "date '%s'",
	    JS(o, "date"));
	/* ISO-2022-JP bytes are 7-bit (ESC is valid UTF-8): raw stays text */
	CHECK(STREQ(JS(o, "raw"), msg));
	json_object_put(o);
	free(msg);
}

static const char msg_8bit[] =
	"From: J\xf6rg <joerg@example.de>\r\n"
	"To: a@example.com\r\n"
	"Subject: Gr\xfc\xdf" "e\r\n"
	"Content-Type: text/plain; charset=iso-8859-1\r\n"
	"Content-Transfer-Encoding: 8bit\r\n"
	"\r\n"
	"Gr\xfc\xdf" "e, J\xf6rg\r\n";

TEST(eight_bit_and_invalid_utf8)
{
	json_object *o = payload(msg_8bit, sizeof(msg_8bit) - 1, 1, 1);
	unsigned char *dec = NULL;
	size_t dec_len = 0;

	CHECK(o != NULL);
	/* the body is converted from its declared charset */
	CHECKF(STREQ(JS(o, "text"), "Gr\xc3\xbc\xc3\x9f" "e, J\xc3\xb6rg\r\n"),
	    "text '%s'", JS(o, "text"));
	/* raw 8-bit header bytes that are not UTF-8 become U+FFFD */
	CHECKF(HAS(JS(o, "subject"), "Gr\xef\xbf\xbd"), "subject '%s'",
	    JS(o, "subject"));
	CHECK(HAS(JS(o, "headers"), "From: J\xef\xbf\xbdrg <joerg"));
	CHECK(HAS(JS(o, "headerLines.0.line"), "J\xef\xbf\xbdrg"));
	CHECK(STREQ(JS(o, "from.value.0.address"), "joerg@example.de"));
	/* raw is not UTF-8: base64 of the exact bytes, marked */
	CHECK(STREQ(JS(o, "rawEncoding"), "base64"));
	CHECK(JS(o, "raw") != NULL &&
	    b64dec(JS(o, "raw"), &dec, &dec_len) == 0 &&
	    dec_len == sizeof(msg_8bit) - 1 &&
	    memcmp(dec, msg_8bit, dec_len) == 0);
	free(dec);
	json_object_put(o);
}

TEST(eight_bit_utf8_raw)
{
	size_t len;
	char *msg = load("016-8bit-utf8-headers.eml", &len);
	json_object *o = payload(msg, len, 1, 1);

	CHECK(o != NULL && g_utf8_validate(msg, len, NULL));
	CHECK(STREQ(JS(o, "raw"), msg) && J(o, "rawEncoding") == NULL);
	CHECK(JS(o, "subject") != NULL && !HAS(JS(o, "subject"), "\xef\xbf\xbd"));
	json_object_put(o);
	free(msg);
}

TEST(threading_and_groups)
{
	size_t len;
	char *msg = load("025-msgid-inreplyto-references.eml", &len);
	json_object *o = payload(msg, len, 1, 1);
	size_t i, n;

	CHECK(o != NULL);
	CHECK(JS(o, "messageId") != NULL && JS(o, "messageId")[0] == '<');
	CHECK(JS(o, "inReplyTo") != NULL && JS(o, "inReplyTo")[0] == '<');
	n = JN(o, "references");
	CHECK(n >= 2 && n != (size_t)-1);
	for (i = 0; i < n && n != (size_t)-1; i++) {
		char path[32];
		const char *r;

		snprintf(path, sizeof(path), "references.%zu", i);
		r = JS(o, path);
		CHECK(r != NULL && r[0] == '<' && g_str_has_suffix(r, ">"));
	}
	json_object_put(o);
	free(msg);

	msg = load("022-group-team.eml", &len);
	o = payload(msg, len, 1, 1);
	CHECKF(o != NULL && J(o, "to.value.0.group") != NULL &&
	    JN(o, "to.value.0.group") >= 1, "to: %s",
	    o != NULL && J(o, "to") != NULL ?
	    json_object_to_json_string(J(o, "to")) : "-");
	CHECK(JS(o, "to.value.0.name") != NULL &&
	    JS(o, "to.value.0.group.0.address") != NULL);
	json_object_put(o);
	free(msg);

	/* nested groups (not RFC 5322, but GMime parses them) are flattened
	 * into the outer group: the JSON stays shallow */
	{
		static const char m[] = "To: outer: a@x.example, inner: "
		    "b@x.example, deeper: c@x.example;;;, d@x.example\r\n\r\n";

		o = payload(m, sizeof(m) - 1, 1, 1);
		CHECKF(o != NULL && STREQ(JS(o, "to.value.0.name"), "outer") &&
		    JN(o, "to.value.0.group") == 3 &&
		    STREQ(JS(o, "to.value.0.group.2.address"), "c@x.example") &&
		    STREQ(JS(o, "to.value.1.address"), "d@x.example"), "to: %s",
		    o != NULL && J(o, "to") != NULL ?
		    json_object_to_json_string(J(o, "to")) : "-");
		json_object_put(o);
	}
}

TEST(folded_header_lines)
{
	static const char m[] =
	    "Received: from a\r\n\tby b;\r\n Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	    "X-Odd  : spaced name\r\n"
	    "Subject: hi\r\n"
	    "\r\n"
	    "body\r\n";
	json_object *o = payload(m, sizeof(m) - 1, 1, 1);

	CHECK(o != NULL && JN(o, "headerLines") == 3);
	CHECK(STREQ(JS(o, "headerLines.0.key"), "received"));
	CHECK(STREQ(JS(o, "headerLines.0.line"),
	    "Received: from a\r\n\tby b;\r\n Mon, 1 Jan 2024 00:00:00 +0000"));
	CHECK(STREQ(JS(o, "headerLines.1.key"), "x-odd"));
	CHECK(STREQ(JS(o, "headerLines.2.line"), "Subject: hi"));
	CHECK(STREQ(JS(o, "headers"), "Received: from a\r\n\tby b;\r\n Mon, 1 "
	    "Jan 2024 00:00:00 +0000\r\nX-Odd  : spaced name\r\nSubject: hi\r\n"));
	CHECK(STREQ(JS(o, "text"), "body\r\n"));
	CHECK(J(o, "from") == NULL && J(o, "date") == NULL &&
	    J(o, "messageId") == NULL);
	json_object_put(o);
}

TEST(header_line_cap)
{
	GString *m = g_string_new(NULL);
	json_object *o;
	int i;

	for (i = 0; i < SBX_WEBHOOK_MAX_HEADER_LINES + 50; i++)
		g_string_append_printf(m, "X-H%d: v\r\n", i);
	g_string_append(m, "\r\nbody\r\n");
	o = payload(m->str, m->len, 1, 1);
	CHECK(o != NULL && JN(o, "headerLines") == SBX_WEBHOOK_MAX_HEADER_LINES);
	json_object_put(o);
	g_string_free(m, TRUE);
}

TEST(meta_session)
{
	static const char *const rcpts[] = { "hello+tag@example.com",
	    "other@example.com" };
	struct sbx_webhook_meta meta = {
		.recipients = rcpts,
		.nrecipients = 2,
		.remote_address = "192.0.2.1",
		.remote_name = "mx.example.net",
		.helo = "mx.example.net",
		.sender = "",
		.queue_id = "4XyZ1abc",
		.arrival_ms = 1700000000123LL,
	};
	static const char m[] = "Subject: x\r\n\r\nbody\r\n";
	json_object *o = payload_ex(m, sizeof(m) - 1, &meta, 1, 1, NULL, NULL);

	CHECK(o != NULL && JN(o, "recipients") == 2);
	CHECK(STREQ(JS(o, "recipients.0"), "hello+tag@example.com"));
	CHECK(STREQ(JS(o, "session.remoteAddress"), "192.0.2.1"));
	CHECK(STREQ(JS(o, "session.remoteName"), "mx.example.net"));
	CHECK(STREQ(JS(o, "session.helo"), "mx.example.net"));
	CHECKF(STREQ(JS(o, "session.arrivalTime"), "2023-11-14T22:13:20.123Z"),
	    "arrival '%s'", JS(o, "session.arrivalTime"));
	CHECK(STREQ(JS(o, "session.sender"), ""));
	CHECK(STREQ(JS(o, "session.recipient"), "hello+tag@example.com"));
	CHECK(STREQ(JS(o, "session.queueId"), "4XyZ1abc"));
	json_object_put(o);

	meta.remote_name = NULL;
	meta.helo = NULL;
	meta.arrival_ms = 0;
	meta.recipients = NULL;
	meta.nrecipients = 0;
	o = payload_ex(m, sizeof(m) - 1, &meta, 1, 1, NULL, NULL);
	CHECK(o != NULL && J(o, "session.remoteName") == NULL &&
	    J(o, "session.helo") == NULL && J(o, "session.arrivalTime") == NULL &&
	    J(o, "session.recipient") == NULL && JN(o, "recipients") == 0);
	json_object_put(o);
}

TEST(garbage_and_empty)
{
	static const char bin[] = "\x00\xff\xfe\x80:\n\n\x01\x02\xc0\xaf";
	json_object *o;

	o = payload("", 0, 1, 1);
	CHECK(o != NULL && STREQ(JS(o, "headers"), "") &&
	    JN(o, "headerLines") == 0 && JN(o, "attachments") == 0 &&
	    STREQ(JS(o, "raw"), ""));
	json_object_put(o);
	o = payload(bin, sizeof(bin) - 1, 1, 1);
	CHECK(o != NULL && STREQ(JS(o, "rawEncoding"), "base64"));
	json_object_put(o);
	/* NUL in an otherwise ASCII message: raw goes base64 too */
	o = payload("Subject: a\r\n\r\nx\0y\r\n", 19, 1, 1);
	CHECK(o != NULL && STREQ(JS(o, "rawEncoding"), "base64"));
	CHECK(STREQ(JS(o, "text"), "x\xef\xbf\xbdy\r\n"));
	json_object_put(o);
}

/* Every message of the corpus gives one valid UTF-8 JSON object. */
TEST(corpus_all_valid)
{
	static const char *const names[] = {
		"001-plain-text.eml", "002-no-mime-version.eml",
		"007-rfc822-in-rfc822.eml", "011-rfc2231-continuations.eml",
		"012-rfc2231-charset-lang.eml",
		"013-multipart-no-boundary-param.eml",
		"014-boundary-nowhere.eml", "015-missing-closing-boundary.eml",
		"017-empty-body.eml", "019-headers-only-no-blank-line.eml",
		"020-duplicate-subject-to.eml", "021-group-undisclosed.eml",
		"023-quoted-local-comments.eml", "024-missing-date.eml",
		"026-sender-replyto-present.eml", "027-flowed-delsp.eml",
		"028-uppercase-types.eml", "029-missing-charset.eml",
		"030-unknown-application-x-foo.eml", "031-base64-qp.eml",
		"032-disposition-params.eml", "033-language-location-md5.eml",
		"034-long-folded-header.eml", "036-cr-only-body.eml",
		"037-mixed-line-ends.eml", "038-html-only.eml",
		"039-plain-text-lf.eml", "040-alternative-lf.eml",
		"041-rfc822-attached-lf.eml", "042-empty-multipart.eml",
		"043-preamble-epilogue-digest.eml",
		"044-rfc822-base64-encoded.eml", "045-no-content-type-with-cte.eml",
		"046-address-edge-cases.eml", "047-param-quoting.eml",
		"048-malformed-encoded-words.eml", "049-empty-body-lf.eml",
		"050-deep-nesting.eml", "051-rfc822-header-at-boundary.eml",
		"052-part-header-at-boundary.eml",
		"053-header-field-edge-cases.eml",
		"054-header-no-final-newline.eml",
	};
	size_t i, len;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *msg = load(names[i], &len);
		json_object *o;

		CHECKF(msg != NULL, "%s", names[i]);
		if (msg == NULL)
			continue;
		o = payload(msg, len, 1, 1);
		CHECKF(o != NULL && J(o, "headers") != NULL &&
		    J(o, "attachments") != NULL && J(o, "raw") != NULL,
		    "%s", names[i]);
		json_object_put(o);
		free(msg);
	}
	{
		char *msg = load("038-html-only.eml", &len);
		json_object *o = payload(msg, len, 1, 1);

		CHECK(o != NULL && J(o, "html") != NULL && J(o, "text") == NULL);
		json_object_put(o);
		free(msg);
	}
	{
		char *msg = load("019-headers-only-no-blank-line.eml", &len);
		json_object *o = payload(msg, len, 1, 1);

		/* no empty line: the whole message is the header */
		CHECK(o != NULL && STREQ(JS(o, "headers"), msg));
		json_object_put(o);
		free(msg);
	}
}

/* ---- URL options ---- */

static int
url_case(const char *in, const char *want, int att, int raw)
{
	char *clean = NULL, *err = NULL;
	int a = -1, r = -1, ok;

	if (sbx_webhook_url_options(in, &clean, &a, &r, &err) != 0) {
		ok = want == NULL;
		if (!ok)
			printf("# %s: %s\n", in, err);
		free(err);
		return ok;
	}
	ok = want != NULL && strcmp(clean, want) == 0 && a == att && r == raw;
	if (!ok)
		printf("# %s -> %s a=%d r=%d\n", in, clean, a, r);
	free(clean);
	return ok;
}

TEST(url_options)
{
	CHECK(url_case("https://h.example/hook", "https://h.example/hook", 1, 1));
	CHECK(url_case("https://h.example/hook?attachments=false",
	    "https://h.example/hook", 0, 1));
	CHECK(url_case("http://h/x?raw=false", "http://h/x", 1, 0));
	CHECK(url_case("http://h/x?a=1&raw=FALSE&b=%20&attachments=false&c",
	    "http://h/x?a=1&b=%20&c", 0, 0));
	CHECK(url_case("http://h/x?attachments=false&raw=true&z=9#frag",
	    "http://h/x?z=9#frag", 0, 1));
	CHECK(url_case("http://h/x?raw=false#frag", "http://h/x#frag", 1, 0));
	CHECK(url_case("http://h/x?raw=false&raw=true", "http://h/x", 1, 1));
	/* byte-exact for the rest: empty params, odd names, a bare "?" */
	CHECK(url_case("http://h/x?a=1&&b=2", "http://h/x?a=1&&b=2", 1, 1));
	CHECK(url_case("http://h/x?", "http://h/x?", 1, 1));
	CHECK(url_case("http://h/x?rawx=false&Raw=false",
	    "http://h/x?rawx=false&Raw=false", 1, 1));
	CHECK(url_case("http://h/x#?raw=false", "http://h/x#?raw=false", 1, 1));
	CHECK(url_case("HTTPS://user:pw@h:8443/p?q=1", "HTTPS://user:pw@h:8443/p?q=1",
	    1, 1));
	CHECK(url_case("http://[::1]:8080/x", "http://[::1]:8080/x", 1, 1));
	/* refused */
	CHECK(url_case("ftp://h/x", NULL, 0, 0));
	CHECK(url_case("file:///etc/passwd", NULL, 0, 0));
	CHECK(url_case("h/x", NULL, 0, 0));
	CHECK(url_case("http://", NULL, 0, 0));
	CHECK(url_case("http:///x", NULL, 0, 0));
	CHECK(url_case("http://u@/x", NULL, 0, 0));
	CHECK(url_case("http://h/a b", NULL, 0, 0));
	CHECK(url_case("http://h/\xc3\xa9", NULL, 0, 0));
	CHECK(url_case("http://h/x?raw=no", NULL, 0, 0));
	CHECK(url_case("http://h/x?attachments", NULL, 0, 0));
	CHECK(url_case("", NULL, 0, 0));
	{
		char *big = g_strnfill(SBX_MAX_URL_LEN + 1, 'a');

		memcpy(big, "http://h/", 9);
		CHECK(url_case(big, NULL, 0, 0));
		g_free(big);
	}
}

/* ---- HMAC-SHA256, RFC 4231 section 4 ---- */

TEST(hmac_rfc4231)
{
	static const char t7[] = "This is a test using a larger than block-size "
	    "key and a larger than block-size data. The key needs to be hashed "
	    "before being used by the HMAC algorithm.";
	unsigned char key[131], data[50];
	char hex[65];
	size_t i;

	memset(key, 0x0b, 20);
	sbx_webhook_sign(key, 20, "Hi There", 8, hex);
	CHECK(STREQ(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
	sbx_webhook_sign((const unsigned char *)"Jefe", 4,
	    "what do ya want for nothing?", 28, hex);
	CHECK(STREQ(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
	memset(key, 0xaa, 20);
	memset(data, 0xdd, 50);
	sbx_webhook_sign(key, 20, (const char *)data, 50, hex);
	CHECK(STREQ(hex, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"));
	for (i = 0; i < 25; i++)
		key[i] = (unsigned char)(i + 1);
	memset(data, 0xcd, 50);
	sbx_webhook_sign(key, 25, (const char *)data, 50, hex);
	CHECK(STREQ(hex, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"));
	/* test case 5 gives only the first 128 bits */
	memset(key, 0x0c, 20);
	sbx_webhook_sign(key, 20, "Test With Truncation", 20, hex);
	CHECK(strncmp(hex, "a3b6167473100ee06e0c796c2955552b", 32) == 0);
	/* 131-byte keys: hashed first */
	memset(key, 0xaa, 131);
	sbx_webhook_sign(key, 131,
	    "Test Using Larger Than Block-Size Key - Hash Key First", 54, hex);
	CHECK(STREQ(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));
	sbx_webhook_sign(key, 131, t7, sizeof(t7) - 1, hex);
	CHECK(STREQ(hex, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"));
	CHECK(strlen(hex) == 64);
}

/* ---- status mapping ---- */

static int
reply_is(long st, int outcome, int code, const char *prefix,
    const char *contains)
{
	char r[SBX_WEBHOOK_REPLY_MAX];
	int c = sbx_webhook_reply(st, outcome, r, sizeof(r));
	int ok = c == code && strncmp(r, prefix, strlen(prefix)) == 0 &&
	    (contains == NULL || strstr(r, contains) != NULL) &&
	    strlen(r) < sizeof(r) - 1 && strchr(r, '\r') == NULL &&
	    strchr(r, '\n') == NULL;

	if (!ok)
		printf("# %ld/%d -> %d '%s'\n", st, outcome, c, r);
	return ok;
}

TEST(status_mapping)
{
	long s;

	CHECK(reply_is(200, SBX_WEBHOOK_OK, 250, "250 2.0.0 ", "(HTTP 200)"));
	CHECK(reply_is(201, SBX_WEBHOOK_OK, 250, "250 2.0.0 ", "(HTTP 201)"));
	CHECK(reply_is(204, SBX_WEBHOOK_OK, 250, "250 2.0.0 ", "(HTTP 204)"));
	CHECK(reply_is(299, SBX_WEBHOOK_OK, 250, "250 2.0.0 ", NULL));
	CHECK(reply_is(408, SBX_WEBHOOK_OK, 451, "451 4.4.2 ", "(HTTP 408)"));
	CHECK(reply_is(429, SBX_WEBHOOK_OK, 451, "451 4.4.5 ", "(HTTP 429)"));
	CHECK(reply_is(503, SBX_WEBHOOK_OK, 451, "451 4.4.5 ", "(HTTP 503)"));
	for (s = 500; s <= 599; s++)
		if (s != 503)
			CHECKF(reply_is(s, SBX_WEBHOOK_OK, 451, "451 4.4.0 ",
			    "(HTTP 5"), "%ld", s);
	CHECK(reply_is(401, SBX_WEBHOOK_OK, 550, "550 5.7.1 ", "(HTTP 401)"));
	CHECK(reply_is(403, SBX_WEBHOOK_OK, 550, "550 5.7.1 ", "(HTTP 403)"));
	CHECK(reply_is(404, SBX_WEBHOOK_OK, 550, "550 5.1.1 ", "(HTTP 404)"));
	CHECK(reply_is(410, SBX_WEBHOOK_OK, 550, "550 5.1.1 ", "(HTTP 410)"));
	CHECK(reply_is(413, SBX_WEBHOOK_OK, 550, "550 5.3.4 ", "(HTTP 413)"));
	CHECK(reply_is(400, SBX_WEBHOOK_OK, 550, "550 5.6.0 ", "(HTTP 400)"));
	CHECK(reply_is(415, SBX_WEBHOOK_OK, 550, "550 5.6.0 ", "(HTTP 415)"));
	CHECK(reply_is(422, SBX_WEBHOOK_OK, 550, "550 5.6.0 ", "(HTTP 422)"));
	for (s = 400; s <= 499; s++)
		CHECKF(reply_is(s, SBX_WEBHOOK_OK, s == 408 || s == 429 ? 451 :
		    550, s == 408 || s == 429 ? "451 4." : "550 5.", "(HTTP 4"),
		    "%ld", s);
	for (s = 300; s <= 399; s++)
		CHECKF(reply_is(s, SBX_WEBHOOK_OK, 550, "550 5.1.6 ", "(HTTP 3"),
		    "%ld", s);
	CHECK(reply_is(0, SBX_WEBHOOK_OK, 451, "451 4.3.0 ", NULL));
	CHECK(reply_is(100, SBX_WEBHOOK_OK, 451, "451 4.3.0 ", NULL));
	CHECK(reply_is(600, SBX_WEBHOOK_OK, 451, "451 4.3.0 ", NULL));
	CHECK(reply_is(-1, SBX_WEBHOOK_OK, 451, "451 4.3.0 ", NULL));
	CHECK(reply_is(0, SBX_WEBHOOK_TIMEOUT, 451, "451 4.4.2 ", "timed out"));
	CHECK(reply_is(0, SBX_WEBHOOK_DNS, 451, "451 4.4.3 ", NULL));
	CHECK(reply_is(0, SBX_WEBHOOK_CONNECT, 451, "451 4.4.1 ", NULL));
	CHECK(reply_is(0, SBX_WEBHOOK_LOST, 451, "451 4.4.2 ", NULL));
	CHECK(reply_is(0, SBX_WEBHOOK_TLS, 451, "451 4.7.5 ", NULL));
	CHECK(reply_is(0, SBX_WEBHOOK_OTHER, 451, "451 4.3.0 ", NULL));
	CHECK(reply_is(200, 99, 451, "451 4.3.0 ", NULL));
	/* a short buffer truncates, never overflows */
	{
		char r[8];

		CHECK(sbx_webhook_reply(404, SBX_WEBHOOK_OK, r, sizeof(r)) == 550);
		CHECK(strcmp(r, "550 5.1") == 0);
	}
}

/* ---- real POSTs ---- */

struct server {
	pid_t pid;
	int port;
	char dir[256];
};

static const char secret_hex[] = "736563726574206b6579207769746820f0ff00";
static unsigned char secret[19];

static int
server_start(struct server *s, const char *cert, const char *key)
{
	char *script = top_path("tests/webhook/server.py");
	char line[64];
	int fds[2];
	ssize_t n;
	size_t got = 0;
	struct pollfd pfd;

	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), "%s/sbx-webhook.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(s->dir) == NULL || pipe(fds) < 0) {
		free(script);
		return -1;
	}
	s->pid = fork();
	if (s->pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		if (cert != NULL)
			execlp("python3", "python3", script, secret_hex, s->dir,
			    cert, key, (char *)NULL);
		else
			execlp("python3", "python3", script, secret_hex, s->dir,
			    (char *)NULL);
		_exit(127);
	}
	free(script);
	close(fds[1]);
	pfd.fd = fds[0];
	pfd.events = POLLIN;
	while (got < sizeof(line) - 1 && poll(&pfd, 1, 10000) == 1) {
		n = read(fds[0], line + got, sizeof(line) - 1 - got);
		if (n <= 0)
			break;
		got += n;
		if (memchr(line, '\n', got) != NULL)
			break;
	}
	close(fds[0]);
	line[got] = '\0';
	if (s->pid < 0 || sscanf(line, "PORT %d", &s->port) != 1) {
		printf("# server did not start: '%s'\n", line);
		return -1;
	}
	return 0;
}

static int
rm_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

static void
server_stop(struct server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
	}
	if (s->dir[0] != '\0')
		nftw(s->dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

static char *
server_log(struct server *s)
{
	char *path = sbx_xasprintf("%s/log", s->dir), *data = NULL;
	size_t len;

	if (sbx_read_file(path, 1 << 20, &data, &len) < 0)
		data = sbx_xstrdup("");
	free(path);
	return data;
}

static int
count(const char *hay, const char *needle)
{
	int n = 0;

	for (; (hay = strstr(hay, needle)) != NULL; hay += strlen(needle))
		n++;
	return n;
}

struct result {
	const char *name;
	int done;
	long status;
	int outcome;
	char error[256];
	char reply[SBX_WEBHOOK_REPLY_MAX];
	int *ndone;
	struct sbx_webhook_client **close_client;
};

static void
post_cb(long status, enum sbx_webhook_outcome outcome, const char *error,
    void *arg)
{
	struct result *r = arg;

	r->done++;
	r->status = status;
	r->outcome = outcome;
	snprintf(r->error, sizeof(r->error), "%s", error != NULL ? error : "");
	sbx_webhook_reply(status, outcome, r->reply, sizeof(r->reply));
	(*r->ndone)++;
	if (r->close_client != NULL)
		sbx_webhook_client_close(r->close_client);
}

static void
watchdog_cb(uv_timer_t *t)
{
	*(int *)t->data = 1;
}

/* Run loop until n callbacks have run (or 20 s). */
static int
run_until(uv_loop_t *loop, int *ndone, int n)
{
	uv_timer_t wd;
	int expired = 0;

	uv_timer_init(loop, &wd);
	wd.data = &expired;
	uv_timer_start(&wd, watchdog_cb, 20000, 0);
	while (*ndone < n && !expired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&wd, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	return *ndone >= n ? 0 : -1;
}

static int
closed_port(void)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) < 0)
		return 9;
	port = ntohs(a.sin_port);
	close(fd);		/* nobody listens there now */
	return port;
}

static int
recorded_bodies_equal(struct server *s, const char *body, size_t len,
    int *n_r)
{
	int i, ok = 1;

	*n_r = 0;
	for (i = 1; i < 1000; i++) {
		char *path = sbx_xasprintf("%s/%d.json", s->dir, i), *data;
		size_t dlen;

		if (sbx_read_file(path, 16 << 20, &data, &dlen) < 0) {
			free(path);
			break;
		}
		(*n_r)++;
		if (dlen != len || memcmp(data, body, len) != 0)
			ok = 0;
		free(data);
		free(path);
	}
	return ok;
}

enum {
	P_OK, P_E500, P_E404, P_E429, P_E403, P_SLOW, P_R307, P_R308, P_R302,
	P_LOOP, P_BADSIG, P_REFUSED, P_DNS, P_CLOSE, P_TLS_ON_PLAIN, P_COUNT
};

TEST(post_outcomes)
{
	struct server srv;
	uv_loop_t loop;
	struct sbx_webhook_client *c;
	struct result r[P_COUNT];
	struct sbx_webhook_meta meta = { 0 };
	static const char *const rcpts[] = { "hook@example.com" };
	char *msg, *body = NULL, *err = NULL, *log, sig[65], want[256];
	size_t len, blen = 0;
	int ndone = 0, i, nrec, refused = closed_port();
	json_object *o;
	static const struct {
		const char *path;
		unsigned int timeout_ms;
	} plan[P_COUNT] = {
		[P_OK] = { "/ok", 0 }, [P_E500] = { "/e500", 0 },
		[P_E404] = { "/e404", 0 }, [P_E429] = { "/e429", 0 },
		[P_E403] = { "/e403", 0 }, [P_SLOW] = { "/slow", 700 },
		[P_R307] = { "/r307", 0 }, [P_R308] = { "/r308", 0 },
		[P_R302] = { "/r302", 0 }, [P_LOOP] = { "/loop", 0 },
		[P_BADSIG] = { "/ok", 0 }, [P_REFUSED] = { NULL, 5000 },
		[P_DNS] = { NULL, 5000 }, [P_CLOSE] = { "/close", 0 },
		[P_TLS_ON_PLAIN] = { NULL, 5000 },
	};

	if (server_start(&srv, NULL, NULL) < 0) {
		CHECK(!"server started");
		server_stop(&srv);
		return;
	}
	msg = load("004-nested-mixed-attachments.eml", &len);
	meta.recipients = rcpts;
	meta.nrecipients = 1;
	meta.sender = "sender@example.org";
	CHECK(sbx_webhook_payload(msg, len, &meta, 1, 1, &body, &blen, &err) == 0);
	sbx_webhook_sign(secret, sizeof(secret), body, blen, sig);

	CHECK(uv_loop_init(&loop) == 0);
	c = sbx_webhook_client_new(&loop, NULL, &err);
	CHECK(c != NULL);
	memset(r, 0, sizeof(r));
	for (i = 0; i < P_COUNT && c != NULL; i++) {
		char *url;

		r[i].ndone = &ndone;
		if (i == P_REFUSED)
			url = sbx_xasprintf("http://127.0.0.1:%d/ok", refused);
		else if (i == P_DNS)
			url = sbx_xstrdup("http://sealbox-test.invalid/ok");
		else if (i == P_TLS_ON_PLAIN)
			url = sbx_xasprintf("https://127.0.0.1:%d/ok", srv.port);
		else
			url = sbx_xasprintf("http://127.0.0.1:%d%s", srv.port,
			    plan[i].path);
		CHECKF(sbx_webhook_post(c, url, body, blen, i == P_BADSIG ?
		    "00" : sig, plan[i].timeout_ms, NULL, post_cb, &r[i],
		    &err) == 0, "post %d: %s", i, err);
		free(url);
	}
	CHECK(run_until(&loop, &ndone, P_COUNT) == 0);
	for (i = 0; i < P_COUNT; i++)
		CHECKF(r[i].done == 1, "callback %d ran %d times", i, r[i].done);

	CHECKF(r[P_OK].outcome == SBX_WEBHOOK_OK && r[P_OK].status == 200 &&
	    strncmp(r[P_OK].reply, "250 2.0.0 ", 10) == 0, "ok: %s",
	    r[P_OK].reply);
	CHECKF(strncmp(r[P_E500].reply, "451 4.4.0 ", 10) == 0 &&
	    HAS(r[P_E500].reply, "(HTTP 500)"), "%s", r[P_E500].reply);
	CHECKF(strncmp(r[P_E404].reply, "550 5.1.1 ", 10) == 0 &&
	    HAS(r[P_E404].reply, "(HTTP 404)"), "%s", r[P_E404].reply);
	CHECKF(strncmp(r[P_E429].reply, "451 4.4.5 ", 10) == 0, "%s",
	    r[P_E429].reply);
	CHECKF(strncmp(r[P_E403].reply, "550 5.7.1 ", 10) == 0, "%s",
	    r[P_E403].reply);
	CHECKF(r[P_SLOW].outcome == SBX_WEBHOOK_TIMEOUT &&
	    strncmp(r[P_SLOW].reply, "451 4.4.2 ", 10) == 0, "slow: %d %s %s",
	    r[P_SLOW].outcome, r[P_SLOW].reply, r[P_SLOW].error);
	CHECKF(r[P_R307].status == 200 && r[P_R307].outcome == SBX_WEBHOOK_OK &&
	    strncmp(r[P_R307].reply, "250 ", 4) == 0, "r307: %ld %s",
	    r[P_R307].status, r[P_R307].error);
	CHECKF(r[P_R308].status == 200 && strncmp(r[P_R308].reply, "250 ", 4) == 0,
	    "r308: %ld %s", r[P_R308].status, r[P_R308].error);
	CHECKF(r[P_R302].status == 302 &&
	    strncmp(r[P_R302].reply, "550 5.1.6 ", 10) == 0, "r302: %s",
	    r[P_R302].reply);
	CHECKF(r[P_LOOP].status == 307 &&
	    strncmp(r[P_LOOP].reply, "550 5.1.6 ", 10) == 0 &&
	    HAS(r[P_LOOP].error, "too many redirects"), "loop: %s / %s",
	    r[P_LOOP].reply, r[P_LOOP].error);
	CHECKF(r[P_BADSIG].status == 401 &&
	    strncmp(r[P_BADSIG].reply, "550 5.7.1 ", 10) == 0, "badsig: %s",
	    r[P_BADSIG].reply);
	CHECKF(r[P_REFUSED].outcome == SBX_WEBHOOK_CONNECT &&
	    strncmp(r[P_REFUSED].reply, "451 4.4.1 ", 10) == 0, "refused: %d %s",
	    r[P_REFUSED].outcome, r[P_REFUSED].error);
	CHECKF(r[P_DNS].outcome == SBX_WEBHOOK_DNS &&
	    strncmp(r[P_DNS].reply, "451 4.4.3 ", 10) == 0, "dns: %d %s",
	    r[P_DNS].outcome, r[P_DNS].error);
	CHECKF(r[P_CLOSE].outcome == SBX_WEBHOOK_LOST &&
	    strncmp(r[P_CLOSE].reply, "451 4.4.2 ", 10) == 0, "close: %d %s",
	    r[P_CLOSE].outcome, r[P_CLOSE].error);
	CHECKF(r[P_TLS_ON_PLAIN].outcome == SBX_WEBHOOK_TLS &&
	    strncmp(r[P_TLS_ON_PLAIN].reply, "451 4.7.5 ", 10) == 0,
	    "tls: %d %s", r[P_TLS_ON_PLAIN].outcome, r[P_TLS_ON_PLAIN].error);
	for (i = 0; i < P_COUNT; i++)
		CHECKF(!HAS(r[i].error, "?"), "error %d names a query: %s", i,
		    r[i].error);

	/* what the server saw: signatures, headers, and the same body on
	 * every request, redirected ones included */
	log = server_log(&srv);
	snprintf(want, sizeof(want), " ok %zu sealbox/%s application/json\n",
	    blen, SBX_VERSION);
	CHECKF(HAS(log, want), "log:\n%s", log);
#define SAW(path, n) do { \
	char k[384]; \
	snprintf(k, sizeof(k), " %s%s", path, want); \
	CHECKF(count(log, k) == (n), "%s seen %d times, want %d", path, \
	    count(log, k), n); \
} while (0)
	SAW("/ok", 2);		/* direct and via 307 (not the bad signature) */
	SAW("/r307", 1);
	SAW("/r308", 1);
	SAW("/ok?from=308", 1);
	SAW("/r302", 1);
	SAW("/loop", 1 + SBX_WEBHOOK_MAX_REDIRECTS);
	SAW("/e500", 1);
#undef SAW
	snprintf(want, sizeof(want), " /ok bad %zu ", blen);
	CHECK(count(log, want) == 1);
	CHECK(!HAS(log, "GET"));
	free(log);
	CHECK(recorded_bodies_equal(&srv, body, blen, &nrec));
	CHECKF(nrec >= 18, "%d requests recorded", nrec);
	/* the recorded payload is the JSON we built */
	o = json_tokener_parse(body);
	CHECK(o != NULL && STREQ(JS(o, "recipients.0"), "hook@example.com") &&
	    STREQ(JS(o, "session.sender"), "sender@example.org"));
	json_object_put(o);

	/* a POST after close is refused; the loop ends with no handle left */
	sbx_webhook_client_close(&c);
	CHECK(c == NULL);
	CHECK(sbx_webhook_post(c, "http://127.0.0.1:1/", body, blen, sig, 0,
	    NULL, post_cb, &r[0], &err) == -1);
	free(err);
	err = NULL;
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK(uv_loop_close(&loop) == 0);
	server_stop(&srv);
	free(body);
	free(msg);
}

TEST(post_close)
{
	struct server srv;
	uv_loop_t loop;
	struct sbx_webhook_client *c;
	struct result r[3];
	char *url, *err = NULL, sig[65];
	int ndone = 0;
	static const char body[] = "{\"x\":1}";

	if (server_start(&srv, NULL, NULL) < 0) {
		CHECK(!"server started");
		server_stop(&srv);
		return;
	}
	sbx_webhook_sign(secret, sizeof(secret), body, sizeof(body) - 1, sig);
	CHECK(uv_loop_init(&loop) == 0);
	memset(r, 0, sizeof(r));

	/* closing with a POST in flight runs its callback, once */
	c = sbx_webhook_client_new(&loop, NULL, &err);
	CHECK(c != NULL);
	url = sbx_xasprintf("http://127.0.0.1:%d/slow", srv.port);
	r[0].ndone = &ndone;
	CHECK(sbx_webhook_post(c, url, body, sizeof(body) - 1, sig, 0, NULL,
	    post_cb, &r[0], &err) == 0);
	free(url);
	uv_run(&loop, UV_RUN_NOWAIT);
	sbx_webhook_client_close(&c);
	CHECK(r[0].done == 1 && r[0].outcome == SBX_WEBHOOK_OTHER &&
	    HAS(r[0].error, "closed") && strncmp(r[0].reply, "451 ", 4) == 0);
	uv_run(&loop, UV_RUN_DEFAULT);

	/* closing from a completion callback, another POST still running */
	c = sbx_webhook_client_new(&loop, NULL, &err);
	CHECK(c != NULL);
	r[1].ndone = &ndone;
	r[1].close_client = &c;
	r[2].ndone = &ndone;
	url = sbx_xasprintf("http://127.0.0.1:%d/ok", srv.port);
	CHECK(sbx_webhook_post(c, url, body, sizeof(body) - 1, sig, 0, NULL,
	    post_cb, &r[1], &err) == 0);
	free(url);
	url = sbx_xasprintf("http://127.0.0.1:%d/slow", srv.port);
	CHECK(sbx_webhook_post(c, url, body, sizeof(body) - 1, sig, 0, NULL,
	    post_cb, &r[2], &err) == 0);
	free(url);
	CHECK(run_until(&loop, &ndone, 3) == 0);
	CHECK(c == NULL);
	CHECKF(r[1].done == 1 && r[1].status == 200, "%ld %s", r[1].status,
	    r[1].error);
	CHECK(r[2].done == 1 && r[2].outcome == SBX_WEBHOOK_OTHER);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK(uv_loop_close(&loop) == 0);
	server_stop(&srv);
}

/* HTTPS against a self-signed certificate for 127.0.0.1 (openssl(1)). */
TEST(post_https)
{
	struct server srv;
	uv_loop_t loop;
	struct sbx_webhook_client *c;
	struct result r[3];
	char dir[256], *cert, *key, *cmd, *url, *err = NULL, sig[65];
	int ndone = 0, i;
	static const char body[] = "{\"tls\":true}";

	snprintf(dir, sizeof(dir), "%s/sbx-webhook-tls.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(dir) == NULL) {
		CHECK(!"mkdtemp");
		return;
	}
	cert = sbx_xasprintf("%s/cert.pem", dir);
	key = sbx_xasprintf("%s/key.pem", dir);
	cmd = sbx_xasprintf("openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 "
	    "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s "
	    ">/dev/null 2>&1", key, cert);
	if (system(cmd) != 0) {
		printf("# skipped: openssl(1) cannot make a certificate\n");
		goto out;
	}
	if (server_start(&srv, cert, key) < 0) {
		CHECK(!"TLS server started");
		server_stop(&srv);
		goto out;
	}
	sbx_webhook_sign(secret, sizeof(secret), body, sizeof(body) - 1, sig);
	CHECK(uv_loop_init(&loop) == 0);
	c = sbx_webhook_client_new(&loop, NULL, &err);
	memset(r, 0, sizeof(r));
	for (i = 0; i < 3; i++) {
		r[i].ndone = &ndone;
		url = sbx_xasprintf("https://127.0.0.1:%d/%s", srv.port,
		    i == 2 ? "rdown" : "ok");
		CHECK(sbx_webhook_post(c, url, body, sizeof(body) - 1, sig,
		    5000, i == 1 ? NULL : cert, post_cb, &r[i], &err) == 0);
		free(url);
	}
	CHECK(run_until(&loop, &ndone, 3) == 0);
	CHECKF(r[0].status == 200 && strncmp(r[0].reply, "250 ", 4) == 0,
	    "with CA: %ld %d %s", r[0].status, r[0].outcome, r[0].error);
	CHECKF(r[1].outcome == SBX_WEBHOOK_TLS &&
	    strncmp(r[1].reply, "451 4.7.5 ", 10) == 0, "system CAs: %d %s",
	    r[1].outcome, r[1].error);
	CHECKF(r[2].status == 307 && HAS(r[2].error, "https to http") &&
	    strncmp(r[2].reply, "550 5.1.6 ", 10) == 0, "downgrade: %ld %s",
	    r[2].status, r[2].error);
	sbx_webhook_client_close(&c);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK(uv_loop_close(&loop) == 0);
	server_stop(&srv);
out:
	unlink(cert);
	unlink(key);
	rmdir(dir);
	free(cert);
	free(key);
	free(cmd);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0 ||
	    sbx_unhex(secret, sizeof(secret), secret_hex) < 0)
		return 1;
	RUN(alternative_text_html);
	RUN(attachments);
	RUN(zero_byte_and_inline_image);
	RUN(rfc822_attached);
	RUN(rfc2047_subject);
	RUN(iso2022jp);
	RUN(eight_bit_and_invalid_utf8);
	RUN(eight_bit_utf8_raw);
	RUN(threading_and_groups);
	RUN(folded_header_lines);
	RUN(header_line_cap);
	RUN(meta_session);
	RUN(garbage_and_empty);
	RUN(corpus_all_valid);
	RUN(url_options);
	RUN(hmac_rfc4231);
	RUN(status_mapping);
	RUN(post_outcomes);
	RUN(post_close);
	RUN(post_https);
	return tap_done();
}
