/*
 * test_search.c - IMAP SEARCH over the store (search.h): decoded text
 * (RFC 2047 ISO-2022-JP / UTF-8 / Latin-1, base64 and quoted-printable
 * bodies, binary attachments left out), substring and case-insensitive
 * semantics on both sides of the FTS threshold (a one-character CJK needle
 * is 3 bytes but below the trigram minimum), HEADER, address fields,
 * INTERNALDATE and Date: days, sizes, flags, keywords, MODSEQ, UID ranges,
 * AND/OR/NOT, folder isolation, expunge removing the index rows, limits.
 *
 * Every expectation is the exact UID list, so a criterion that matches too
 * much fails as surely as one that matches too little. Messages come from
 * tests/data/mime (under $SBX_TOP, else .) and from inline text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "keys.h"
#include "log.h"
#include "search.h"
#include "store.h"
#include "tap.h"
#include "util.h"

static char state[256];
static struct sbx_mailbox_keys *keys;
static struct sbx_store *st;	/* the main mailbox */

/* ---- the mailbox ---- */

/* "会議の議事録について" as RFC 2047 UTF-8 B */
static const char msg2[] =
	"Date: Wed, 10 Jan 2024 09:00:00 +0000\r\n"
	"From: Sato <sato@example.jp>\r\n"
	"To: team@example.jp\r\n"
	"Subject: =?UTF-8?B?5Lya6K2w44Gu6K2w5LqL6Yyy44Gr44Gk44GE44Gm?=\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"Minutes are below.\r\n";

/* the word Marimbaquokka only inside a binary attachment */
static const char msg4[] =
	"Date: Thu, 4 Jan 2024 12:00:00 +0000\r\n"
	"From: binary@example.org\r\n"
	"To: b@example.com\r\n"
	"Subject: binary attachment\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"b4\"\r\n"
	"\r\n"
	"--b4\r\n"
	"Content-Type: text/plain; charset=us-ascii\r\n"
	"\r\n"
	"See the attached file.\r\n"
	"--b4\r\n"
	"Content-Type: application/octet-stream; name=\"data.bin\"\r\n"
	"Content-Disposition: attachment; filename=\"data.bin\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"AAFiaW5hcnkgTWFyaW1iYXF1b2trYSD//gA=\r\n"
	"--b4--\r\n";

/* a base64 text/plain attachment: "Attachment text: Xylophonequartz
 * Marimbaquokka appears here." */
static const char msg5[] =
	"Date: Fri, 5 Jan 2024 12:00:00 +0000\r\n"
	"From: text@example.org\r\n"
	"To: b@example.com\r\n"
	"Subject: text attachment\r\n"
	"X-Custom: other value\r\n"
	"X-Folded: first part\r\n"
	" second part\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"b5\"\r\n"
	"\r\n"
	"--b5\r\n"
	"Content-Type: text/plain; charset=us-ascii\r\n"
	"\r\n"
	"Notes attached.\r\n"
	"--b5\r\n"
	"Content-Type: text/plain; charset=utf-8; name=\"notes.txt\"\r\n"
	"Content-Disposition: attachment; filename=\"notes.txt\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"QXR0YWNobWVudCB0ZXh0OiBYeWxvcGhvbmVxdWFydHogTWFyaW1iYXF1b2trYSBhcHBlYXJzIGhlcmUuDQo=\r\n"
	"--b5--\r\n";

/* sent on 2021-12-31 in its own zone, delivered 2022-01-01 UTC */
static const char msg6[] =
	"Date: Fri, 31 Dec 2021 23:30:00 -0500\r\n"
	"From: Alice Example <alice@example.org>\r\n"
	"To: Bob <bob@example.com>\r\n"
	"Cc: Carol <carol@example.net>\r\n"
	"Bcc: Dave <dave@example.edu>\r\n"
	"Subject: Greetings\r\n"
	"X-Custom: =?UTF-8?Q?r=C3=A9sum=C3=A9_attached?=\r\n"
	"\r\n"
	"Hello World, this is the body.\r\n"
	"Token xqzqx end; they say \"quoted\" things.\r\n";

static const char msg_archive[] =
	"Subject: archived\r\n"
	"\r\n"
	"Hello World in the archive, Xylophonequartz.\r\n";

static char *
corpus(const char *name, size_t *len_r)
{
	const char *top = getenv("SBX_TOP");
	char *path, *data = NULL;

	if (top == NULL)
		top = ".";
	path = sbx_xasprintf("%s/tests/data/mime/%s", top, name);
	if (sbx_read_file(path, 1 << 20, &data, len_r) < 0) {
		printf("# cannot read %s\n", path);
		data = NULL;
	}
	free(path);
	return data;
}

static time_t
utc(int y, int mo, int d, int h, int mi)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	return timegm(&tm);
}

/* Append, printing the error; the UID or 0. */
static uint32_t
append(struct sbx_store *s, const char *folder, const char *msg, size_t len, time_t when)
{
	char *err = NULL;
	uint32_t uid = 0;

	if (msg == NULL)
		return 0;
	if (sbx_store_append(s, folder, msg, len, when, 0, NULL, NULL, &uid, &err) != 0) {
		printf("# append: %s\n", err != NULL ? err : "?");
		free(err);
		return 0;
	}
	return uid;
}

static uint32_t
append_file(const char *name, time_t when)
{
	size_t len = 0;
	char *data = corpus(name, &len);
	uint32_t uid = append(st, "INBOX", data, len, when);

	free(data);
	return uid;
}

/* Build INBOX uids 1..9 and Archive uid 1; 0 when it all went in. */
static int
build_mailbox(void)
{
	uint32_t u[10];
	int i;

	u[1] = append_file("035-iso2022jp-subject.eml", utc(2024, 1, 1, 10, 0));
	u[2] = append(st, "INBOX", msg2, sizeof(msg2) - 1, utc(2024, 1, 2, 10, 0));
	u[3] = append_file("031-base64-qp.eml", utc(2024, 1, 3, 10, 0));
	u[4] = append(st, "INBOX", msg4, sizeof(msg4) - 1, utc(2024, 1, 4, 10, 0));
	u[5] = append(st, "INBOX", msg5, sizeof(msg5) - 1, utc(2024, 1, 5, 10, 0));
	u[6] = append(st, "INBOX", msg6, sizeof(msg6) - 1, utc(2022, 1, 1, 4, 30));
	u[7] = append_file("024-missing-date.eml", utc(2024, 1, 7, 10, 0));
	u[8] = append_file("010-rfc2047-latin1.eml", utc(2024, 1, 8, 10, 0));
	u[9] = append_file("004-nested-mixed-attachments.eml", utc(2024, 1, 9, 23, 59));
	for (i = 1; i <= 9; i++)
		if (u[i] != (uint32_t)i) {
			printf("# message %d got uid %u\n", i, u[i]);
			return -1;
		}
	if (append(st, "Archive", msg_archive, sizeof(msg_archive) - 1,
	    utc(2024, 2, 1, 0, 0)) != 1)
		return -1;
	return 0;
}

/* ---- running queries ---- */

/* The matching UIDs as "1 3 5" ("" for none), or "error: ..." (malloc'd). */
static char *
run_in(struct sbx_store *s, const char *folder, const struct sbx_search *q)
{
	struct sbx_buf b = { 0 };
	uint32_t *uids = NULL;
	size_t n = 0, i;
	char *err = NULL, *r;

	if (sbx_store_search(s, folder, q, &uids, &n, &err) < 0) {
		r = sbx_xasprintf("error: %s", err != NULL ? err : "(no message)");
		free(err);
		free(uids);
		return r;
	}
	if (uids == NULL)
		return sbx_xstrdup("error: NULL uids");
	for (i = 0; i < n; i++) {
		sbx_buf_appendf(&b, "%s%u", i > 0 ? " " : "", uids[i]);
		if (i > 0 && uids[i] <= uids[i - 1])
			sbx_buf_appendf(&b, "(not ascending)");
	}
	free(uids);
	r = sbx_xstrndup(b.data != NULL ? b.data : "", b.len);
	sbx_buf_free(&b);
	return r;
}

#define EXPECT_IN(s, folder, q, want) do {				\
	char *got_ = run_in((s), (folder), (q));			\
	CHECKF(strcmp(got_, (want)) == 0, "got '%s', want '%s'",	\
	    got_, (want));						\
	free(got_);							\
} while (0)
#define EXPECT(q, want) EXPECT_IN(st, "INBOX", (q), (want))
/* an error whose text contains `part` */
#define EXPECT_ERROR(q, part) do {					\
	char *got_ = run_in(st, "INBOX", (q));				\
	CHECKF(strncmp(got_, "error: ", 7) == 0 &&			\
	    strstr(got_, (part)) != NULL, "got '%s', want an error "	\
	    "with '%s'", got_, (part));					\
	free(got_);							\
} while (0)

#define Q(...) (&(struct sbx_search){ __VA_ARGS__ })
#define T(t, s) Q(.type = (t), .str = (s))
#define HDR(h, s) Q(.type = SBX_SEARCH_HEADER, .header = (h), .str = (s))
#define DAY(t, d) Q(.type = (t), .day = d)
#define NUM(t, n) Q(.type = (t), .num = (n))
#define ALL_UIDS "1 2 3 4 5 6 7 8 9"

/* ---- tests ---- */

TEST(japanese_subjects)
{
	/* ISO-2022-JP "日本語のテストメール" (035), UTF-8 "会議の議事録について" */
	EXPECT(T(SBX_SEARCH_SUBJECT, "\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88"), "1");
	EXPECT(T(SBX_SEARCH_SUBJECT, "\xe8\xad\xb0\xe4\xba\x8b\xe9\x8c\xb2"), "2");
	EXPECT(T(SBX_SEARCH_TEXT, "\xe8\xad\xb0\xe4\xba\x8b\xe9\x8c\xb2"), "2");
	/* one character (3 bytes) and two characters: below the trigram
	 * minimum, so these must scan rather than ask FTS */
	EXPECT(T(SBX_SEARCH_SUBJECT, "\xe8\xad\xb0"), "2");
	EXPECT(T(SBX_SEARCH_SUBJECT, "\xe6\x97\xa5\xe6\x9c\xac"), "1");
	EXPECT(T(SBX_SEARCH_FROM, "\xe5\xb1\xb1\xe7\x94\xb0"), "1");   /* 山田 */
	/* the ISO-2022-JP body "こんにちは" */
	EXPECT(T(SBX_SEARCH_BODY, "\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1"), "1");
	EXPECT(T(SBX_SEARCH_SUBJECT, "\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe4\xbc\x9a"), "");
}

TEST(attachments)
{
	EXPECT(T(SBX_SEARCH_BODY, "Zweite Zeile"), "3");      /* base64 text */
	EXPECT(T(SBX_SEARCH_BODY, "10\xe2\x82\xac"), "3");    /* QP "10€" */
	EXPECT(T(SBX_SEARCH_BODY, "Xylophonequartz"), "5");   /* base64 text attachment */
	/* in the text attachment of 5 and the binary attachment of 4 */
	EXPECT(T(SBX_SEARCH_BODY, "Marimbaquokka"), "5");
	EXPECT(T(SBX_SEARCH_TEXT, "marimbaquokka"), "5");
	EXPECT(T(SBX_SEARCH_BODY, "AAFiaW5h"), "");           /* encoded bytes */
	EXPECT(T(SBX_SEARCH_BODY, "iVBORw0KGgo"), "");        /* the PNG of 031 */
	EXPECT(T(SBX_SEARCH_BODY, "coffee,2.50"), "9");       /* text/csv attachment */
}

TEST(substrings_and_case)
{
	EXPECT(T(SBX_SEARCH_BODY, "ell"), "6");
	EXPECT(T(SBX_SEARCH_BODY, "HELLO wORLD"), "6");
	EXPECT(T(SBX_SEARCH_BODY, "ZQ"), "6");                /* 2 bytes: scan */
	EXPECT(T(SBX_SEARCH_BODY, "qzqx e"), "6");
	EXPECT(T(SBX_SEARCH_BODY, "qzqx  e"), "");
	EXPECT(T(SBX_SEARCH_BODY, "\"quoted\""), "6");        /* FTS quoting */
	EXPECT(T(SBX_SEARCH_BODY, "\"quo"), "6");
	EXPECT(T(SBX_SEARCH_BODY, "\"\"quoted"), "");
	EXPECT(T(SBX_SEARCH_BODY, ""), ALL_UIDS);
	/* non-ASCII case folding: "CAFÉ", "crÈme", "ÄÖÜ äöü" */
	EXPECT(T(SBX_SEARCH_BODY, "CAF\xc3\x89"), "8 9");
	EXPECT(T(SBX_SEARCH_BODY, "cr\xc3\x88me"), "8");
	EXPECT(T(SBX_SEARCH_BODY, "\xc3\xa4\xc3\xb6\xc3\xbc \xc3\x84\xc3\x96\xc3\x9c"), "3");
	EXPECT(T(SBX_SEARCH_BODY, "\xc3\x84\xc3\x96\xc3\x9c \xc3\xa4\xc3\xb6\xc3\xbc"), "3");
	EXPECT(T(SBX_SEARCH_BODY, "\xc3\x89"), "8 9");           /* 1 char: scan */
	EXPECT(T(SBX_SEARCH_BODY, "Nosuchwordanywhere"), "");
}

TEST(header_criteria)
{
	EXPECT(HDR("X-Custom", "R\xc3\x89SUM\xc3\x89"), "6");  /* decoded */
	EXPECT(HDR("x-custom", ""), "5 6");                     /* present */
	EXPECT(HDR("X-Custom", "sum"), "6");
	EXPECT(HDR("X-Custom", "ot"), "5");                     /* scan */
	EXPECT(HDR("X-Custom", "X-Custom"), "");                /* not the name */
	EXPECT(HDR("X-Custom", "greet"), "");                   /* nor other fields */
	EXPECT(HDR("Subject", "r\xc3\xa9sum\xc3\xa9"), "");
	EXPECT(HDR("X-Cust", ""), "");
	EXPECT(HDR("X-Custom", "=?UTF-8"), "");                 /* not raw */
	EXPECT(HDR("X-Nothing", ""), "");
	EXPECT(HDR("Subject", "greet"), "6");
	EXPECT(HDR("Message-ID", "mixed.004"), "9");
	EXPECT(HDR("X-Folded", "part second"), "5");            /* unfolded */
	EXPECT(HDR("X-Folded", "part\r\n"), "");
	EXPECT(T(SBX_SEARCH_TEXT, "part second"), "5");
	EXPECT(HDR("Content-Type", "multipart/mixed"), "3 4 5 9");
	EXPECT(T(SBX_SEARCH_TEXT, "r\xc3\xa9sum\xc3\xa9 attached"), "6");
	EXPECT(T(SBX_SEARCH_TEXT, "x-folded: first"), "5");
}

TEST(address_fields)
{
	EXPECT(T(SBX_SEARCH_FROM, "alice"), "6");
	EXPECT(T(SBX_SEARCH_FROM, "Alice Example <alice@"), "6");
	EXPECT(T(SBX_SEARCH_FROM, "Fran\xc3\xa7ois"), "8");
	EXPECT(T(SBX_SEARCH_FROM, "bob"), "");
	EXPECT(T(SBX_SEARCH_TO, "bob@example.com"), "6");
	EXPECT(T(SBX_SEARCH_TO, "frank"), "9");
	EXPECT(T(SBX_SEARCH_CC, "carol"), "6");
	EXPECT(T(SBX_SEARCH_CC, "HEIDI"), "9");
	EXPECT(T(SBX_SEARCH_CC, "alice"), "");
	EXPECT(T(SBX_SEARCH_BCC, "dave"), "6");
	EXPECT(T(SBX_SEARCH_BCC, "carol"), "");
	EXPECT(T(SBX_SEARCH_SUBJECT, "greetings"), "6");
	EXPECT(T(SBX_SEARCH_SUBJECT, "CR\xc3\x88ME"), "8");
	EXPECT(T(SBX_SEARCH_SUBJECT, "hello"), "");
}

TEST(dates)
{
	/* INTERNALDATE, UTC day */
	EXPECT(DAY(SBX_SEARCH_ON, "2022-01-01"), "6");
	EXPECT(DAY(SBX_SEARCH_ON, "2021-12-31"), "");
	EXPECT(DAY(SBX_SEARCH_ON, "2024-01-09"), "9");
	EXPECT(DAY(SBX_SEARCH_BEFORE, "2024-01-03"), "1 2 6");
	EXPECT(DAY(SBX_SEARCH_SINCE, "2024-01-08"), "8 9");
	EXPECT(DAY(SBX_SEARCH_SINCE, "2024-01-10"), "");
	/* Date:, its own calendar day: 6 was sent late on 2021-12-31 -0500 */
	EXPECT(DAY(SBX_SEARCH_SENTON, "2021-12-31"), "6");
	EXPECT(DAY(SBX_SEARCH_SENTON, "2022-01-01"), "");
	EXPECT(DAY(SBX_SEARCH_SENTON, "2022-03-15"), "1");   /* 10:00 +0900 */
	EXPECT(DAY(SBX_SEARCH_SENTSINCE, "2024-01-01"), "2 4 5");
	EXPECT(DAY(SBX_SEARCH_SENTBEFORE, "2022-03-08"), "6 7 8 9");
	/* no Date: counts as 1970-01-01, as in Dovecot */
	EXPECT(DAY(SBX_SEARCH_SENTBEFORE, "2000-01-01"), "7");
	EXPECT(DAY(SBX_SEARCH_SENTON, "1970-01-01"), "7");
	/* malformed days */
	EXPECT_ERROR(DAY(SBX_SEARCH_ON, "2024-02-30"), "YYYY-MM-DD");
	EXPECT_ERROR(DAY(SBX_SEARCH_SINCE, "2023-02-29"), "YYYY-MM-DD");
	EXPECT(DAY(SBX_SEARCH_SINCE, "2024-02-29"), "");     /* leap day is fine */
	EXPECT_ERROR(DAY(SBX_SEARCH_BEFORE, "2024-13-01"), "YYYY-MM-DD");
	EXPECT_ERROR(DAY(SBX_SEARCH_SENTON, "20240101"), "YYYY-MM-DD");
	EXPECT_ERROR(DAY(SBX_SEARCH_SENTON, "2024-1-01"), "YYYY-MM-DD");
	EXPECT_ERROR(DAY(SBX_SEARCH_SENTON, ""), "YYYY-MM-DD");
}

TEST(sizes)
{
	struct sbx_store_msg *v = NULL;
	size_t n = 0, i;
	char *err = NULL;
	uint64_t s6 = 0;
	struct sbx_buf larger = { 0 }, smaller = { 0 };

	CHECK(sbx_store_list(st, "INBOX", 1, &v, &n, &err) == 0);
	CHECK(n == 9);
	for (i = 0; i < n; i++)
		if (v[i].uid == 6)
			s6 = v[i].size;
	CHECK(s6 == sizeof(msg6) - 1);
	for (i = 0; i < n; i++) {
		if (v[i].size > s6)
			sbx_buf_appendf(&larger, "%s%u", larger.len ? " " : "", v[i].uid);
		if (v[i].size < s6)
			sbx_buf_appendf(&smaller, "%s%u", smaller.len ? " " : "", v[i].uid);
	}
	sbx_buf_append(&larger, "", 1);
	sbx_buf_append(&smaller, "", 1);
	CHECK(larger.len > 1 && smaller.len > 1);   /* both sides non-empty */
	EXPECT(NUM(SBX_SEARCH_LARGER, s6), larger.data);
	EXPECT(NUM(SBX_SEARCH_SMALLER, s6), smaller.data);
	EXPECT(Q(.type = SBX_SEARCH_AND, .nchildren = 2,
	    .children = (struct sbx_search[]){
		{ .type = SBX_SEARCH_LARGER, .num = s6 - 1 },
		{ .type = SBX_SEARCH_SMALLER, .num = s6 + 1 } }), "6");
	EXPECT(NUM(SBX_SEARCH_LARGER, UINT64_MAX), "");
	EXPECT(NUM(SBX_SEARCH_SMALLER, 0), "");
	EXPECT(NUM(SBX_SEARCH_LARGER, 0), ALL_UIDS);
	sbx_buf_free(&larger);
	sbx_buf_free(&smaller);
	sbx_store_msgs_free(v, n);
	free(err);
}

TEST(uid_ranges)
{
	static const struct sbx_uid_range r1[] = { { 2, 4 }, { 8, 8 } };
	static const struct sbx_uid_range r2[] = { { 8, 8 }, { 3, 4 }, { 2, 3 }, { 3, 3 } };
	static const struct sbx_uid_range r3[] = { { 100, 200 } };
	static const struct sbx_uid_range r4[] = { { 9, 4294967295u }, { 1, 1 } };

	EXPECT(Q(.type = SBX_SEARCH_UID, .ranges = r1, .nranges = 2), "2 3 4 8");
	EXPECT(Q(.type = SBX_SEARCH_UID, .ranges = r2, .nranges = 4), "2 3 4 8");
	EXPECT(Q(.type = SBX_SEARCH_UID, .ranges = r3, .nranges = 1), "");
	EXPECT(Q(.type = SBX_SEARCH_UID, .ranges = r4, .nranges = 2), "1 9");
	EXPECT(Q(.type = SBX_SEARCH_UID, .ranges = r1, .nranges = 0), "");
	EXPECT_ERROR(Q(.type = SBX_SEARCH_UID, .ranges = NULL, .nranges = 1), "UID");
}

TEST(boolean_combinations)
{
	static const struct sbx_uid_range low[] = { { 1, 5 } };
	const struct sbx_search tx = { .type = SBX_SEARCH_TEXT, .str = "hello" };

	EXPECT(Q(.type = SBX_SEARCH_ALL), ALL_UIDS);
	EXPECT(Q(.type = SBX_SEARCH_AND), ALL_UIDS);
	EXPECT(Q(.type = SBX_SEARCH_OR), "");
	EXPECT(Q(.type = SBX_SEARCH_NOT, .nchildren = 1, .children =
	    Q(.type = SBX_SEARCH_UID, .ranges = low, .nranges = 1)), "6 7 8 9");
	EXPECT(Q(.type = SBX_SEARCH_AND, .nchildren = 2,
	    .children = (struct sbx_search[]){
		{ .type = SBX_SEARCH_FROM, .str = "alice" },
		{ .type = SBX_SEARCH_NOT, .nchildren = 1,
		  .children = T(SBX_SEARCH_SUBJECT, "greetings") } }), "");
	EXPECT(Q(.type = SBX_SEARCH_AND, .nchildren = 2,
	    .children = (struct sbx_search[]){
		{ .type = SBX_SEARCH_FROM, .str = "alice" },
		{ .type = SBX_SEARCH_NOT, .nchildren = 1,
		  .children = T(SBX_SEARCH_SUBJECT, "xyz") } }), "6");
	EXPECT(Q(.type = SBX_SEARCH_OR, .nchildren = 2,
	    .children = (struct sbx_search[]){
		{ .type = SBX_SEARCH_SUBJECT, .str = "\xe8\xad\xb0" },
		{ .type = SBX_SEARCH_BODY, .str = "zweite" } }), "2 3");
	/* the same criterion twice: x OR NOT x is everything */
	EXPECT(Q(.type = SBX_SEARCH_OR, .nchildren = 2,
	    .children = (struct sbx_search[]){ tx,
		{ .type = SBX_SEARCH_NOT, .nchildren = 1, .children = &tx } }),
	    ALL_UIDS);
	EXPECT(Q(.type = SBX_SEARCH_AND, .nchildren = 2,
	    .children = (struct sbx_search[]){ tx,
		{ .type = SBX_SEARCH_NOT, .nchildren = 1, .children = &tx } }), "");
	/* NOT of a text criterion covers the messages FTS never returned */
	EXPECT(Q(.type = SBX_SEARCH_NOT, .nchildren = 1,
	    .children = T(SBX_SEARCH_BODY, "Marimbaquokka")), "1 2 3 4 6 7 8 9");
	EXPECT(Q(.type = SBX_SEARCH_AND, .nchildren = 3,
	    .children = (struct sbx_search[]){
		{ .type = SBX_SEARCH_SINCE, .day = "2024-01-01" },
		{ .type = SBX_SEARCH_OR, .nchildren = 2,
		  .children = (struct sbx_search[]){
			{ .type = SBX_SEARCH_HEADER, .header = "X-Custom", .str = "" },
			{ .type = SBX_SEARCH_CC, .str = "heidi" } } },
		{ .type = SBX_SEARCH_NOT, .nchildren = 1,
		  .children = Q(.type = SBX_SEARCH_UID, .ranges = low, .nranges = 1) } }),
	    "9");
}

TEST(flags_keywords_modseq)
{
	static const struct sbx_uid_range r36[] = { { 3, 3 }, { 6, 6 } };
	static const struct sbx_uid_range r6[] = { { 6, 6 } };
	static const struct sbx_uid_range r2[] = { { 2, 2 } };
	struct sbx_store_result r;
	char *err = NULL;
	uint64_t m1 = 0, m3 = 0;

	EXPECT(Q(.type = SBX_SEARCH_FLAGS, .flags = SBX_FLAG_FLAGGED), "");
	EXPECT(Q(.type = SBX_SEARCH_FLAGS, .flags = 0), ALL_UIDS);
	memset(&r, 0, sizeof(r));
	CHECK(sbx_store_store(st, "INBOX", r36, 2, SBX_STORE_ADD, SBX_FLAG_FLAGGED,
	    NULL, 0, &r, &err) == 0);
	m1 = r.modseq;
	sbx_store_result_free(&r);
	memset(&r, 0, sizeof(r));
	CHECK(sbx_store_store(st, "INBOX", r6, 1, SBX_STORE_ADD, SBX_FLAG_SEEN,
	    NULL, 0, &r, &err) == 0);
	sbx_store_result_free(&r);
	memset(&r, 0, sizeof(r));
	CHECK(sbx_store_store(st, "INBOX", r2, 1, SBX_STORE_ADD, 0, "$Work Later",
	    0, &r, &err) == 0);
	m3 = r.modseq;
	sbx_store_result_free(&r);
	if (err != NULL) {
		printf("# store: %s\n", err);
		free(err);
		err = NULL;
	}
	CHECK(m1 > 0 && m3 > m1);

	EXPECT(Q(.type = SBX_SEARCH_FLAGS, .flags = SBX_FLAG_FLAGGED), "3 6");
	EXPECT(Q(.type = SBX_SEARCH_FLAGS, .flags = SBX_FLAG_FLAGGED | SBX_FLAG_SEEN), "6");
	EXPECT(Q(.type = SBX_SEARCH_NOT, .nchildren = 1,
	    .children = Q(.type = SBX_SEARCH_FLAGS, .flags = SBX_FLAG_SEEN)),
	    "1 2 3 4 5 7 8 9");
	EXPECT(Q(.type = SBX_SEARCH_FLAGS, .flags = SBX_FLAG_DELETED), "");
	EXPECT(T(SBX_SEARCH_KEYWORD, "$work"), "2");
	EXPECT(T(SBX_SEARCH_KEYWORD, "LATER"), "2");
	EXPECT(T(SBX_SEARCH_KEYWORD, "$Wor"), "");
	EXPECT(T(SBX_SEARCH_KEYWORD, "Work"), "");
	EXPECT(T(SBX_SEARCH_KEYWORD, ""), "");
	EXPECT_ERROR(T(SBX_SEARCH_KEYWORD, NULL), "KEYWORD");
	/* MODSEQ: the three stores changed 3, 6 (twice) and 2 */
	EXPECT(NUM(SBX_SEARCH_MODSEQ, m1), "2 3 6");
	EXPECT(NUM(SBX_SEARCH_MODSEQ, m3), "2");
	EXPECT(NUM(SBX_SEARCH_MODSEQ, m3 + 1), "");
	EXPECT(NUM(SBX_SEARCH_MODSEQ, 0), ALL_UIDS);
}

TEST(folder_isolation)
{
	EXPECT(T(SBX_SEARCH_BODY, "Xylophonequartz"), "5");
	EXPECT_IN(st, "Archive", T(SBX_SEARCH_BODY, "Xylophonequartz"), "1");
	EXPECT_IN(st, "Archive", T(SBX_SEARCH_BODY, "ZQ"), "");
	EXPECT_IN(st, "Archive", T(SBX_SEARCH_BODY, "hello world"), "1");
	EXPECT_IN(st, "Sent", Q(.type = SBX_SEARCH_ALL), "");
	EXPECT_IN(st, "inbox", T(SBX_SEARCH_BODY, "zweite"), "3");
	{
		char *got = run_in(st, "No/Such/Folder", Q(.type = SBX_SEARCH_ALL));

		CHECKF(strncmp(got, "error: ", 7) == 0, "got '%s'", got);
		free(got);
	}
}

TEST(limits)
{
	struct sbx_search *v;
	char *big;
	size_t i;

	EXPECT_ERROR(T(SBX_SEARCH_TEXT, NULL), "TEXT without a string");
	EXPECT_ERROR(T(SBX_SEARCH_BODY, NULL), "BODY");
	EXPECT_ERROR(HDR(NULL, "x"), "HEADER");
	EXPECT_ERROR(HDR("", "x"), "HEADER");
	EXPECT_ERROR(HDR("Bad Name", "x"), "HEADER");
	EXPECT_ERROR(HDR("X-Custom", NULL), "HEADER");
	EXPECT_ERROR(T(SBX_SEARCH_SUBJECT, "bad \xff utf8"), "UTF-8");
	EXPECT_ERROR(Q(.type = SBX_SEARCH_NOT), "NOT");
	EXPECT_ERROR(Q(.type = SBX_SEARCH_NOT, .nchildren = 2,
	    .children = (struct sbx_search[]){ { .type = SBX_SEARCH_ALL },
		{ .type = SBX_SEARCH_ALL } }), "NOT");
	EXPECT_ERROR(Q(.type = SBX_SEARCH_AND, .nchildren = 3), "AND");
	EXPECT_ERROR(Q(.type = (enum sbx_search_type)999), "unknown");

	/* string length: SBX_SEARCH_MAX_STRING is fine, one more is not */
	big = sbx_xmalloc(SBX_SEARCH_MAX_STRING + 2);
	memset(big, 'a', SBX_SEARCH_MAX_STRING + 1);
	big[SBX_SEARCH_MAX_STRING + 1] = '\0';
	EXPECT_ERROR(T(SBX_SEARCH_BODY, big), "longer than");
	big[SBX_SEARCH_MAX_STRING] = '\0';
	EXPECT(T(SBX_SEARCH_BODY, big), "");
	free(big);

	/* nodes: AND of MAX-1 children is MAX nodes; one more child fails */
	v = sbx_xcalloc(SBX_SEARCH_MAX_NODES, sizeof(*v));
	for (i = 0; i < SBX_SEARCH_MAX_NODES; i++) {
		v[i].type = i % 2 ? SBX_SEARCH_ALL : SBX_SEARCH_BODY;
		v[i].str = "hello";
	}
	EXPECT(Q(.type = SBX_SEARCH_AND, .children = v,
	    .nchildren = SBX_SEARCH_MAX_NODES - 1), "6");
	EXPECT_ERROR(Q(.type = SBX_SEARCH_AND, .children = v,
	    .nchildren = SBX_SEARCH_MAX_NODES), "criteria");

	/* depth: a chain of MAX nodes nests MAX levels; one more fails */
	for (i = 0; i < SBX_SEARCH_MAX_DEPTH; i++) {
		v[i].type = SBX_SEARCH_NOT;
		v[i].children = &v[i + 1];
		v[i].nchildren = 1;
	}
	v[SBX_SEARCH_MAX_DEPTH - 1].type = SBX_SEARCH_SUBJECT;
	v[SBX_SEARCH_MAX_DEPTH - 1].str = "greetings";
	v[SBX_SEARCH_MAX_DEPTH - 1].nchildren = 0;
	/* MAX - 1 NOTs (odd: 63) around SUBJECT: everything but 6 */
	EXPECT(&v[0], "1 2 3 4 5 7 8 9");
	v[SBX_SEARCH_MAX_DEPTH - 1].type = SBX_SEARCH_NOT;
	v[SBX_SEARCH_MAX_DEPTH - 1].nchildren = 1;
	v[SBX_SEARCH_MAX_DEPTH].type = SBX_SEARCH_SUBJECT;
	v[SBX_SEARCH_MAX_DEPTH].str = "greetings";
	v[SBX_SEARCH_MAX_DEPTH].nchildren = 0;
	EXPECT_ERROR(&v[0], "nested deeper");
	free(v);
}

static int64_t
fts_rows(struct sbx_store *s)
{
	sqlite3_stmt *stmt;
	int64_t n = -1;

	if (sqlite3_prepare_v2(sbx_store_db(s), "SELECT count(*) FROM fts", -1,
	    &stmt, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(stmt) == SQLITE_ROW)
		n = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return n;
}

static void
expunge(struct sbx_store *s, const char *folder, uint32_t uid)
{
	struct sbx_uid_range rg = { uid, uid };
	struct sbx_store_result r;
	char *err = NULL;

	memset(&r, 0, sizeof(r));
	if (sbx_store_expunge(s, folder, &rg, 1, 0, &r, &err) != 0) {
		CHECKF(0, "expunge %s %u: %s", folder, uid, err != NULL ? err : "?");
		free(err);
	} else {
		CHECKF(r.n == 1 && r.uids[0] == uid, "expunged %zu", r.n);
	}
	sbx_store_result_free(&r);
}

TEST(expunge_removes_from_index)
{
	static const char eph[] =
		"Subject: Ephemeral\r\nX-Custom: Evanescent\r\n\r\nEphemeralword body\r\n";
	static const char keep[] = "Subject: keep\r\n\r\nPermanentword\r\n";
	char id[SBX_ID_HEX], *err = NULL;
	struct sbx_store *s = NULL;
	struct sbx_uid_range r1 = { 1, 1 };
	struct sbx_store_result r;
	int64_t n0;

	sbx_random_id(id);
	if (sbx_store_create(state, id, keys, &err) < 0 ||
	    sbx_store_open(state, id, keys, 0, &s, &err) < 0) {
		CHECKF(0, "store: %s", err != NULL ? err : "?");
		free(err);
		return;
	}
	CHECK(append(s, "INBOX", eph, sizeof(eph) - 1, utc(2024, 3, 1, 0, 0)) == 1);
	CHECK(append(s, "INBOX", keep, sizeof(keep) - 1, utc(2024, 3, 1, 0, 0)) == 2);
	/* a copy in the same folder (uid 3) and one in Archive share the content */
	memset(&r, 0, sizeof(r));
	CHECK(sbx_store_copy(s, "INBOX", &r1, 1, "INBOX", 0, &r, &err) == 0);
	CHECK(r.n == 1 && r.new_uids != NULL && r.new_uids[0] == 3);
	sbx_store_result_free(&r);
	memset(&r, 0, sizeof(r));
	CHECK(sbx_store_copy(s, "INBOX", &r1, 1, "Archive", 0, &r, &err) == 0);
	sbx_store_result_free(&r);
	free(err);
	err = NULL;

	n0 = fts_rows(s);
	CHECKF(n0 == 2, "fts rows %lld", (long long)n0);
	EXPECT_IN(s, "INBOX", T(SBX_SEARCH_BODY, "ephemeralword"), "1 3");
	EXPECT_IN(s, "INBOX", T(SBX_SEARCH_BODY, "al"), "1 3");   /* scan */
	EXPECT_IN(s, "INBOX", HDR("X-Custom", "evanescent"), "1 3");
	EXPECT_IN(s, "Archive", T(SBX_SEARCH_BODY, "ephemeralword"), "1");

	expunge(s, "INBOX", 1);
	EXPECT_IN(s, "INBOX", T(SBX_SEARCH_BODY, "ephemeralword"), "3");
	CHECK(fts_rows(s) == n0);
	expunge(s, "INBOX", 3);
	EXPECT_IN(s, "INBOX", T(SBX_SEARCH_BODY, "ephemeralword"), "");
	EXPECT_IN(s, "INBOX", HDR("X-Custom", ""), "");
	EXPECT_IN(s, "INBOX", Q(.type = SBX_SEARCH_ALL), "2");
	CHECKF(fts_rows(s) == n0, "fts rows %lld, Archive still has a copy",
	    (long long)fts_rows(s));
	expunge(s, "Archive", 1);
	EXPECT_IN(s, "Archive", T(SBX_SEARCH_BODY, "ephemeralword"), "");
	CHECKF(fts_rows(s) == n0 - 1, "fts rows %lld", (long long)fts_rows(s));
	EXPECT_IN(s, "INBOX", T(SBX_SEARCH_BODY, "permanentword"), "2");

	/* inside a caller's transaction (the search nests a savepoint) */
	CHECK(sbx_store_begin(s, &err) == 0);
	EXPECT_IN(s, "INBOX", HDR("Subject", "keep"), "2");
	CHECK(append(s, "INBOX", eph, sizeof(eph) - 1, utc(2024, 3, 2, 0, 0)) == 4);
	EXPECT_IN(s, "INBOX", T(SBX_SEARCH_BODY, "ephemeralword"), "4");
	CHECK(sbx_store_commit(s, &err) == 0);
	EXPECT_IN(s, "INBOX", T(SBX_SEARCH_TEXT, "evanescent"), "4");
	sbx_store_close(&s);

	/* a read-only store */
	if (sbx_store_open(state, id, keys, SBX_STORE_RDONLY, &s, &err) < 0) {
		CHECKF(0, "open read-only: %s", err != NULL ? err : "?");
		free(err);
		return;
	}
	EXPECT_IN(s, "INBOX", T(SBX_SEARCH_BODY, "ephemeralword"), "4");
	EXPECT_IN(s, "INBOX", HDR("x-custom", ""), "4");
	sbx_store_close(&s);
	free(err);
}

int
main(void)
{
	char tmpl[] = "/tmp/sbx-search-XXXXXX", *cmd, *err = NULL;
	char id[SBX_ID_HEX];
	int ok;

	if (sbx_keys_init() < 0 || mkdtemp(tmpl) == NULL)
		return 2;
	sbx_log_set_level(LOG_ERR);
	snprintf(state, sizeof(state), "%s", tmpl);
	keys = sbx_keys_generate();

	sbx_random_id(id);
	ok = sbx_store_create(state, id, keys, &err) == 0 &&
	    sbx_store_open(state, id, keys, 0, &st, &err) == 0;
	if (!ok) {
		printf("# store: %s\n", err != NULL ? err : "?");
		free(err);
	}
	ok = ok && build_mailbox() == 0;
	printf("%s - build_mailbox\n", ok ? "ok" : "not ok");
	if (ok) {
		RUN(japanese_subjects);
		RUN(attachments);
		RUN(substrings_and_case);
		RUN(header_criteria);
		RUN(address_fields);
		RUN(dates);
		RUN(sizes);
		RUN(uid_ranges);
		RUN(boolean_combinations);
		RUN(flags_keywords_modseq);
		RUN(folder_isolation);
		RUN(limits);
		RUN(expunge_removes_from_index);
	}
	if (st != NULL)
		sbx_store_close(&st);
	sbx_keys_free(&keys);
	cmd = sbx_xasprintf("rm -rf '%s'", state);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", state);
	free(cmd);
	return ok ? tap_done() : 1;
}
