/*
 * test_mimetext.c - decoded header and body text for full-text search:
 * RFC 2047 (ISO-2022-JP, ISO-8859-1), base64 / quoted-printable bodies,
 * binary attachments left out, HTML reduced to text, nested messages,
 * max_body cut on a character boundary, garbage input, invalid UTF-8.
 * Messages are inline; tests/data/mime (under $SBX_TOP, else .) is used too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <gmime/gmime.h>

#include "tap.h"
#include "mimetext.h"
#include "util.h"

static int
extract(const char *msg, size_t len, size_t max_body, struct sbx_mime_text *t)
{
	char *err = NULL;
	int r;

	r = sbx_mime_text_extract(msg, len, max_body, t, &err);
	if (r != 0) {
		printf("# extract: %s\n", err != NULL ? err : "?");
		free(err);
	}
	return r;
}

static int
valid(const char *s)
{
	return s != NULL && g_utf8_validate(s, -1, NULL);
}

static int
all_valid(const struct sbx_mime_text *t)
{
	return valid(t->from) && valid(t->to) && valid(t->cc) &&
	    valid(t->bcc) && valid(t->subject) && valid(t->headers) &&
	    valid(t->body);
}

#define HAS(hay, needle) (strstr((hay), (needle)) != NULL)

/* "日本語のテストメール" and "山田太郎" */
#define JA_SUBJECT "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae" \
	"\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88\xe3\x83\xa1\xe3\x83\xbc\xe3\x83\xab"
#define JA_NAME "\xe5\xb1\xb1\xe7\x94\xb0\xe5\xa4\xaa\xe9\x83\x8e"
#define JA_BODY "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf"

static const char msg_ja[] =
	"From: =?ISO-2022-JP?B?GyRCOzNFREJATzobKEI=?= <yamada@example.jp>\r\n"
	"To: tanaka@example.jp\r\n"
	"Subject: =?ISO-2022-JP?B?GyRCRnxLXDhsJE4lRiU5JUglYSE8JWsbKEI=?=\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=ISO-2022-JP\r\n"
	"Content-Transfer-Encoding: 7bit\r\n"
	"\r\n"
	"\x1b$B$3$s$K$A$O\x1b(B\r\n";

TEST(iso2022jp_subject)
{
	struct sbx_mime_text t;

	CHECK(extract(msg_ja, sizeof(msg_ja) - 1, 65536, &t) == 0);
	CHECKF(strcmp(t.subject, JA_SUBJECT) == 0, "subject '%s'", t.subject);
	CHECKF(HAS(t.from, JA_NAME) && HAS(t.from, "<yamada@example.jp>"),
	    "from '%s'", t.from);
	CHECKF(strcmp(t.to, "tanaka@example.jp") == 0, "to '%s'", t.to);
	CHECKF(HAS(t.body, JA_BODY), "body '%s'", t.body);
	CHECK(!HAS(t.body, "\x1b"));
	CHECK(all_valid(&t));
	sbx_mime_text_free(&t);
}

static const char msg_latin1[] =
	"From: =?ISO-8859-1?Q?Fran=E7ois_L=E9vesque?= <francois@example.fr>\r\n"
	"To: =?iso-8859-1?q?Andr=E9?= <andre@example.fr>, bob@example.org\r\n"
	"Cc: Carol <carol@example.org>\r\n"
	"Bcc: dave@example.org\r\n"
	"Subject: =?ISO-8859-1?Q?Caf=E9?= au lait\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=ISO-8859-1\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"Caf=E9 cr=E8me\r\n";

TEST(latin1_q_subject_and_addresses)
{
	struct sbx_mime_text t;

	CHECK(extract(msg_latin1, sizeof(msg_latin1) - 1, 65536, &t) == 0);
	CHECKF(strcmp(t.subject, "Caf\xc3\xa9 au lait") == 0, "subject '%s'",
	    t.subject);
	CHECKF(HAS(t.from, "Fran\xc3\xa7ois L\xc3\xa9vesque") &&
	    HAS(t.from, "<francois@example.fr>"), "from '%s'", t.from);
	CHECKF(HAS(t.to, "Andr\xc3\xa9 <andre@example.fr>") &&
	    HAS(t.to, ", bob@example.org"), "to '%s'", t.to);
	CHECKF(strcmp(t.cc, "Carol <carol@example.org>") == 0, "cc '%s'", t.cc);
	CHECKF(strcmp(t.bcc, "dave@example.org") == 0, "bcc '%s'", t.bcc);
	CHECKF(HAS(t.body, "Caf\xc3\xa9 cr\xc3\xa8me"), "body '%s'", t.body);
	CHECK(!HAS(t.body, "=E9"));
	sbx_mime_text_free(&t);
}

/* "secret word: Zanzibarquux" in base64, a binary attachment holding
 * "attached Xylophonequark only" in base64 */
static const char msg_b64[] =
	"From: a@example.org\r\n"
	"Subject: attachments\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"BB\"\r\n"
	"\r\n"
	"preamble Preamblewordzz\r\n"
	"--BB\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"c2VjcmV0IHdvcmQ6IFphbnppYmFycXV1eA==\r\n"
	"--BB\r\n"
	"Content-Type: application/octet-stream; name=\"x.bin\"\r\n"
	"Content-Disposition: attachment; filename=\"x.bin\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"YXR0YWNoZWQgWHlsb3Bob25lcXVhcmsgb25seQ==\r\n"
	"--BB\r\n"
	"Content-Type: image/png\r\n"
	"\r\n"
	"Imagewordplain\r\n"
	"--BB\r\n"
	"Content-Type: text/plain; name=\"notes.txt\"\r\n"
	"Content-Disposition: attachment; filename=\"notes.txt\"\r\n"
	"\r\n"
	"Textattachmentword\r\n"
	"--BB--\r\n";

TEST(base64_text_found)
{
	struct sbx_mime_text t;

	CHECK(extract(msg_b64, sizeof(msg_b64) - 1, 65536, &t) == 0);
	CHECKF(HAS(t.body, "secret word: Zanzibarquux"), "body '%s'", t.body);
	CHECK(!HAS(t.body, "c2VjcmV0"));
	/* a text/plain attachment is text */
	CHECKF(HAS(t.body, "Textattachmentword"), "body '%s'", t.body);
	sbx_mime_text_free(&t);
}

TEST(binary_attachment_not_found)
{
	struct sbx_mime_text t;

	CHECK(extract(msg_b64, sizeof(msg_b64) - 1, 65536, &t) == 0);
	CHECKF(!HAS(t.body, "Xylophonequark"), "body '%s'", t.body);
	CHECK(!HAS(t.body, "YXR0YWNoZWQ"));
	CHECK(!HAS(t.body, "Imagewordplain"));
	CHECK(!HAS(t.body, "Preamblewordzz"));
	/* and the words are there when the part is text */
	CHECK(HAS(t.body, "Zanzibarquux"));
	sbx_mime_text_free(&t);
}

static const char msg_qp[] =
	"From: a@example.org\r\n"
	"Subject: qp\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"The word Supercali=\r\n"
	"fragilistic is split, =C3=A9t=C3=A9 too.\r\n";

TEST(quoted_printable_soft_breaks)
{
	struct sbx_mime_text t;

	CHECK(extract(msg_qp, sizeof(msg_qp) - 1, 65536, &t) == 0);
	CHECKF(HAS(t.body, "Supercalifragilistic"), "body '%s'", t.body);
	CHECKF(HAS(t.body, "\xc3\xa9t\xc3\xa9 too"), "body '%s'", t.body);
	CHECK(!HAS(t.body, "=\r\n"));
	sbx_mime_text_free(&t);
}

static const char msg_html[] =
	"From: a@example.org\r\n"
	"Subject: html\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/html; charset=utf-8\r\n"
	"\r\n"
	"<html><head><title>T</title><style>p { color: Stylewordqq; }</style>"
	"<script type=\"text/javascript\">var Scriptwordqq = \"<b>\";</script>"
	"</head><body><!-- Commentwordqq --><p class=\"x>y\">Fish &amp; chips "
	"&lt;tag&gt; &quot;q&quot; caf&#233; &#x4E2D;&nbsp;end</p>"
	"<div>Hello<b>World</b></div>&bogus; &#xD800; a&b</body></html>\r\n";

TEST(html_reduced)
{
	struct sbx_mime_text t;

	CHECK(extract(msg_html, sizeof(msg_html) - 1, 65536, &t) == 0);
	CHECKF(HAS(t.body, "Fish & chips <tag> \"q\" caf\xc3\xa9 \xe4\xb8\xad end"),
	    "body '%s'", t.body);
	CHECKF(HAS(t.body, "HelloWorld"), "body '%s'", t.body);
	CHECK(!HAS(t.body, "<p"));
	CHECK(!HAS(t.body, "<b>"));
	CHECK(!HAS(t.body, "Scriptwordqq"));
	CHECK(!HAS(t.body, "Stylewordqq"));
	CHECK(!HAS(t.body, "Commentwordqq"));
	CHECK(!HAS(t.body, "class"));
	CHECK(HAS(t.body, "&bogus;"));
	CHECK(HAS(t.body, "a&b"));
	CHECK(HAS(t.body, "\xef\xbf\xbd"));	/* &#xD800; */
	CHECK(all_valid(&t));
	sbx_mime_text_free(&t);
}

static const char msg_nested[] =
	"From: outer@example.org\r\n"
	"Subject: Fwd: inner\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"OUT\"\r\n"
	"\r\n"
	"--OUT\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"Outerbodyword\r\n"
	"--OUT\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"From: =?UTF-8?Q?Inner_=C3=85sa?= <inner@example.org>\r\n"
	"Subject: =?UTF-8?Q?Innersubject_=C3=BCber?=\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/alternative; boundary=\"IN\"\r\n"
	"\r\n"
	"--IN\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"SW5uZXJib2R5d29yZA==\r\n"
	"--IN\r\n"
	"Content-Type: application/pdf\r\n"
	"\r\n"
	"Innerpdfword\r\n"
	"--IN--\r\n"
	"--OUT--\r\n";

TEST(nested_rfc822)
{
	struct sbx_mime_text t;

	CHECK(extract(msg_nested, sizeof(msg_nested) - 1, 65536, &t) == 0);
	CHECKF(HAS(t.body, "Outerbodyword"), "body '%s'", t.body);
	CHECKF(HAS(t.body, "Innerbodyword"), "body '%s'", t.body);	/* base64 */
	CHECKF(HAS(t.body, "Innersubject \xc3\xbc" "ber"), "body '%s'", t.body);
	CHECKF(HAS(t.body, "Inner \xc3\x85sa <inner@example.org>"), "body '%s'",
	    t.body);
	CHECK(!HAS(t.body, "Innerpdfword"));
	CHECKF(strcmp(t.subject, "Fwd: inner") == 0, "subject '%s'", t.subject);
	CHECKF(strcmp(t.from, "outer@example.org") == 0, "from '%s'", t.from);
	sbx_mime_text_free(&t);
}

TEST(max_body_utf8_boundary)
{
	/* body "aé€😀b" = 1 + 2 + 3 + 4 + 1 bytes */
	static const char msg[] =
		"Subject: cut\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"\r\n"
		"a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" "b";
	static const size_t expect[] = { 0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10, 11,
	    11 };
	struct sbx_mime_text t;
	size_t max;

	for (max = 0; max < G_N_ELEMENTS(expect); max++) {
		CHECK(extract(msg, sizeof(msg) - 1, max, &t) == 0);
		CHECKF(strlen(t.body) == expect[max], "max %zu: len %zu",
		    max, strlen(t.body));
		CHECK(strlen(t.body) <= max);
		CHECK(valid(t.body));
		CHECK(strncmp(t.body, "a\xc3\xa9\xe2\x82\xac", strlen(t.body) <
		    6 ? strlen(t.body) : 6) == 0);
		sbx_mime_text_free(&t);
	}
	/* across parts: the separators count too */
	CHECK(extract(msg_b64, sizeof(msg_b64) - 1, 30, &t) == 0);
	CHECKF(strlen(t.body) <= 30, "len %zu", strlen(t.body));
	CHECK(HAS(t.body, "secret word"));
	CHECK(!HAS(t.body, "Textattachmentword"));
	sbx_mime_text_free(&t);
}

static void
check_garbage(const char *msg, size_t len)
{
	struct sbx_mime_text t;

	CHECK(extract(msg, len, 65536, &t) == 0);
	CHECK(all_valid(&t));
	sbx_mime_text_free(&t);
}

TEST(garbage_input)
{
	struct sbx_mime_text t;
	char buf[4096], *copy;
	uint32_t x = 12345;
	size_t i, round;

	CHECK(extract("", 0, 65536, &t) == 0);
	CHECK(all_valid(&t));
	CHECK(*t.subject == '\0' && *t.from == '\0' && *t.to == '\0' &&
	    *t.cc == '\0' && *t.bcc == '\0' && *t.headers == '\0' &&
	    *t.body == '\0');
	sbx_mime_text_free(&t);
	CHECK(extract(NULL, 0, 65536, &t) == 0);
	CHECK(all_valid(&t));
	sbx_mime_text_free(&t);

	for (round = 0; round < 50; round++) {
		for (i = 0; i < sizeof(buf); i++) {
			x = x * 1103515245 + 12345;
			buf[i] = (char)(x >> 16);
		}
		copy = sbx_xmalloc(sizeof(buf));
		memcpy(copy, buf, sizeof(buf));
		check_garbage(copy, 1 + round * 80);
		CHECK(memcmp(copy, buf, sizeof(buf)) == 0);	/* untouched */
		free(copy);
	}
	/* headers without a body, and a NUL inside the body */
	check_garbage("Subject: x", 10);
	check_garbage("Subject: x\r\n\r\nab\0cd", 19);
	CHECK(extract("Subject: x\r\n\r\nab\0cd", 19, 65536, &t) == 0);
	CHECKF(strcmp(t.body, "ab cd") == 0, "body '%s'", t.body);
	sbx_mime_text_free(&t);
	/* empty text parts (an empty decoded buffer) */
	{
		static const char m[] =
			"Content-Type: multipart/mixed; boundary=e\r\n\r\n"
			"--e\r\nContent-Type: text/plain\r\n\r\n"
			"--e\r\nContent-Type: text/html; charset=iso-8859-1\r\n"
			"Content-Transfer-Encoding: base64\r\n\r\n"
			"--e\r\nContent-Type: text/plain\r\n\r\nLastword\r\n--e--\r\n";

		CHECK(extract(m, sizeof(m) - 1, 65536, &t) == 0);
		CHECKF(HAS(t.body, "Lastword"), "body '%s'", t.body);
		CHECK(all_valid(&t));
		sbx_mime_text_free(&t);
	}
	/* deep nesting stops, without a crash */
	{
		GString *g = g_string_new("Content-Type: multipart/mixed; boundary=b0\r\n\r\n");

		for (i = 1; i < 200; i++)
			g_string_append_printf(g, "--b%zu\r\nContent-Type: "
			    "multipart/mixed; boundary=b%zu\r\n\r\n", i - 1, i);
		g_string_append_printf(g, "--b%zu\r\n\r\nDeepword\r\n", i - 1);
		check_garbage(g->str, g->len);
		g_string_free(g, TRUE);
	}
}

TEST(invalid_utf8_header)
{
	static const char msg[] =
		"From: J\xc3\xbcrgen \xff\xfe <j@example.org>\r\n"
		"To: \xe7\x94\xa8\xe6\x88\xb7 <u@example.cn>\r\n"
		"Subject: caf\xc3\xa9 bad\xc3 \xed\xa0\x80 end\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"\r\n"
		"ok \xc3\xa9 bad \xff\xc0\xaf end\r\n";
	static const char msg2[] =
		"Subject: unknown charset\r\n"
		"Content-Type: text/plain; charset=x-no-such-charset\r\n"
		"\r\n"
		"plain \xff word\r\n";
	struct sbx_mime_text t;

	CHECK(extract(msg, sizeof(msg) - 1, 65536, &t) == 0);
	CHECK(all_valid(&t));
	CHECKF(HAS(t.subject, "caf\xc3\xa9 bad") && HAS(t.subject, "end"),
	    "subject '%s'", t.subject);
	CHECKF(HAS(t.from, "J\xc3\xbcrgen \xef\xbf\xbd\xef\xbf\xbd") &&
	    HAS(t.from, "<j@example.org>"), "from '%s'", t.from);
	CHECKF(HAS(t.to, "\xe7\x94\xa8\xe6\x88\xb7"), "to '%s'", t.to);
	CHECKF(HAS(t.body, "ok \xc3\xa9 bad \xef\xbf\xbd"), "body '%s'", t.body);
	CHECK(HAS(t.body, "end"));
	sbx_mime_text_free(&t);

	CHECK(extract(msg2, sizeof(msg2) - 1, 65536, &t) == 0);
	CHECK(all_valid(&t));
	CHECKF(HAS(t.body, "plain \xef\xbf\xbd word"), "body '%s'", t.body);
	sbx_mime_text_free(&t);
}

/* ---- all top-level headers ---- */

TEST(headers_decoded_in_order)
{
	static const char msg[] =
		"Received: from a.example\r\n"
		"\tby b.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
		"From: =?UTF-8?B?SsO8cmdlbg==?= <j@example.org>\r\n"
		"X-Custom: =?UTF-8?Q?caf=C3=A9_cr=C3=A8me?= and\r\n"
		" =?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?= tail\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Subject: plain\r\n"
		"X-Empty:\r\n"
		"X-Bad: a\xff b\r\n"
		"Content-Transfer-Encoding: 8bit\r\n"
		"\r\n"
		"X-Not-A-Header: body line\r\n";
	static const char want[] =
		"Received: from a.example\tby b.example; Mon, 1 Jan 2024 00:00:00 +0000\n"
		"From: J\xc3\xbcrgen <j@example.org>\n"
		"X-Custom: caf\xc3\xa9 cr\xc3\xa8me and \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e tail\n"
		"Content-Type: text/plain; charset=utf-8\n"
		"Subject: plain\n"
		"X-Empty: \n"
		"X-Bad: a\xef\xbf\xbd b\n"
		"Content-Transfer-Encoding: 8bit\n";
	struct sbx_mime_text t;

	CHECK(extract(msg, sizeof(msg) - 1, 65536, &t) == 0);
	CHECKF(strcmp(t.headers, want) == 0, "headers '%s'", t.headers);
	CHECK(!HAS(t.headers, "X-Not-A-Header"));
	CHECK(all_valid(&t));
	sbx_mime_text_free(&t);

	/* multipart: the top-level Content-Type is there, the parts' are not */
	CHECK(extract(msg_b64, sizeof(msg_b64) - 1, 65536, &t) == 0);
	CHECKF(HAS(t.headers, "Content-Type: multipart/mixed"), "headers '%s'",
	    t.headers);
	CHECK(!HAS(t.headers, "text/plain"));
	sbx_mime_text_free(&t);
}

TEST(headers_bounded)
{
	GString *g = g_string_new(NULL);
	struct sbx_mime_text t;
	size_t i;

	/* 4000 fields of "X-Field-N: " + 3 UTF-8 bytes * 10 */
	for (i = 0; i < 4000; i++) {
		g_string_append_printf(g, "X-Field-%zu: ", i);
		g_string_append(g, JA_NAME JA_NAME "\xe3\x81\x82\xe3\x81\x82\r\n");
	}
	g_string_append(g, "Subject: last\r\n\r\nbody\r\n");
	CHECK(extract(g->str, g->len, 65536, &t) == 0);
	CHECKF(strlen(t.headers) <= SBX_MIME_TEXT_MAX_HEADERS &&
	    strlen(t.headers) > SBX_MIME_TEXT_MAX_HEADERS - 64,
	    "len %zu", strlen(t.headers));
	CHECK(HAS(t.headers, "X-Field-0: " JA_NAME));
	CHECK(!HAS(t.headers, "Subject: last"));
	CHECK(strcmp(t.subject, "last") == 0);
	CHECK(all_valid(&t));
	sbx_mime_text_free(&t);
	g_string_free(g, TRUE);
}

/* ---- the shared corpus (SBX_TOP) ---- */

static int
corpus(const char *name, struct sbx_mime_text *t)
{
	const char *top = getenv("SBX_TOP");
	char *path, *data = NULL;
	size_t len = 0;
	int r;

	if (top == NULL)
		top = ".";   /* run from the top of the tree, as test_mime does */
	path = sbx_xasprintf("%s/tests/data/mime/%s", top, name);
	r = sbx_read_file(path, 1 << 20, &data, &len);
	CHECKF(r == 0, "read %s", path);
	free(path);
	if (r != 0)
		return -1;
	r = extract(data, len, 65536, t);
	free(data);
	return r;
}

TEST(corpus_files)
{
	struct sbx_mime_text t;

	if (corpus("035-iso2022jp-subject.eml", &t) == 0) {
		CHECKF(strcmp(t.subject, JA_SUBJECT) == 0, "subject '%s'", t.subject);
		CHECK(HAS(t.from, JA_NAME));
		CHECKF(HAS(t.body, JA_BODY), "body '%s'", t.body);
		sbx_mime_text_free(&t);
	}
	if (corpus("010-rfc2047-latin1.eml", &t) == 0) {
		CHECKF(strcmp(t.subject, "Caf\xc3\xa9 cr\xc3\xa8me") == 0,
		    "subject '%s'", t.subject);
		CHECK(HAS(t.from, "Fran\xc3\xa7ois L\xc3\xa9vesque"));
		CHECK(HAS(t.to, "Andr\xc3\xa9"));
		CHECKF(HAS(t.body, "Caf\xc3\xa9 cr\xc3\xa8me"), "body '%s'", t.body);
		sbx_mime_text_free(&t);
	}
	if (corpus("016-8bit-utf8-headers.eml", &t) == 0) {
		CHECKF(HAS(t.subject, "\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 raw"),
		    "subject '%s'", t.subject);
		CHECKF(HAS(t.from, "J\xc3\xbcrgen M\xc3\xbcller"), "from '%s'", t.from);
		CHECK(HAS(t.body, "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln."));
		CHECK(all_valid(&t));
		sbx_mime_text_free(&t);
	}
	if (corpus("007-rfc822-in-rfc822.eml", &t) == 0) {
		CHECK(all_valid(&t));
		CHECK(*t.body != '\0');
		sbx_mime_text_free(&t);
	}
	if (corpus("050-deep-nesting.eml", &t) == 0) {
		CHECK(all_valid(&t));
		sbx_mime_text_free(&t);
	}
}

int
main(void)
{
	RUN(iso2022jp_subject);
	RUN(latin1_q_subject_and_addresses);
	RUN(base64_text_found);
	RUN(binary_attachment_not_found);
	RUN(quoted_printable_soft_breaks);
	RUN(html_reduced);
	RUN(nested_rfc822);
	RUN(max_body_utf8_boundary);
	RUN(garbage_input);
	RUN(invalid_utf8_header);
	RUN(headers_decoded_in_order);
	RUN(headers_bounded);
	RUN(corpus_files);
	g_mime_shutdown();
	return tap_done();
}
