/*
 * test_lmtp.c - the LMTP protocol engine (shared/lmtp.c): whole sessions
 * as Postfix's lmtp client sends them, fed at every split point and one
 * byte at a time; dot-unstuffing and line endings; every limit with its
 * reply code; xtext / RFC 6533 decoding; XFORWARD; bad sequences; and
 * per-recipient DATA replies given out of order.
 *
 * Most tests run a session through drive(), which answers events the way
 * a simple daemon would and writes a transcript: reply bytes as sent, and
 * one "{...}" line per RCPT and MESSAGE event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "lmtp.h"
#include "util.h"

#define HOST "lmtp.test"

static const char *
nz(const char *s)
{
	return s ? s : "-";
}

/*
 * Run input through a new session, fed in chunks of `chunk` bytes (the
 * first chunk `first` bytes if non-zero), feeding only on SBX_LMTP_NONE.
 * RCPT policy: local part "bad*" -> 550, "tmp*" -> NULL reject, else
 * accept. MESSAGE: record accessors and the message, then answer the
 * recipients in reverse order. Returns the transcript (caller frees).
 */
static char *
drive_lim(const struct sbx_lmtp_limits *lim, const char *in, size_t len, size_t first,
	  size_t chunk)
{
	struct sbx_lmtp_session *s = sbx_lmtp_session_new(lim, HOST);
	struct sbx_lmtp_event ev;
	struct sbx_buf t = { 0 };
	size_t pos = 0, i, maxbuf = 0;
	size_t max_line = lim && lim->max_line ? lim->max_line : SBX_LMTP_DEF_MAX_LINE;
	uint64_t max_size = lim && lim->max_size ? lim->max_size : 50u << 20;
	int guard = 0;

	for (;;) {
		enum sbx_lmtp_event_type type = sbx_lmtp_next(s, &ev);

		if (sbx_lmtp_buffered(s) > maxbuf)
			maxbuf = sbx_lmtp_buffered(s);
		CHECK(ev.type == type);
		if (type == SBX_LMTP_NONE) {
			size_t n = pos == 0 && first ? first : chunk;

			if (pos >= len)
				break;
			if (n > len - pos)
				n = len - pos;
			sbx_lmtp_feed(s, in + pos, n);
			pos += n;
		} else if (type == SBX_LMTP_REPLY) {
			CHECK(ev.reply_len > 0);
			sbx_buf_append(&t, ev.reply, ev.reply_len);
		} else if (type == SBX_LMTP_RCPT) {
			const struct sbx_lmtp_rcpt *r = ev.rcpt;

			sbx_buf_appendf(&t, "{RCPT %s|%s|%s|%s|%s|%u}\n", r->addr, r->local,
					r->domain, nz(r->orcpt_type), nz(r->orcpt), r->notify);
			if (strncmp(r->local, "bad", 3) == 0)
				CHECK(sbx_lmtp_rcpt_reply(s, 0, "550 5.1.1 No such mailbox") == 0);
			else if (strncmp(r->local, "tmp", 3) == 0)
				CHECK(sbx_lmtp_rcpt_reply(s, 0, NULL) == 0);
			else
				CHECK(sbx_lmtp_rcpt_reply(s, 1, NULL) == 0);
		} else if (type == SBX_LMTP_MESSAGE) {
			const struct sbx_lmtp_mail *m = sbx_lmtp_mail(s);
			const struct sbx_lmtp_xforward *x = sbx_lmtp_xforward(s);

			CHECK(m != NULL);
			if (m == NULL)
				break;
			sbx_buf_appendf(&t, "{MAIL %s body=%d utf8=%d size=%s%llu ret=%d envid=%s}\n",
					m->from, (int)m->body, m->smtputf8, m->has_size ? "" : "-",
					(unsigned long long)m->size, (int)m->ret, nz(m->envid));
			sbx_buf_appendf(&t, "{XF %s %s %s %s %s %s %s}\n", nz(x->name), nz(x->addr),
					nz(x->port), nz(x->proto), nz(x->helo), nz(x->ident),
					nz(x->source));
			sbx_buf_appendf(&t, "{MSG %zu to", ev.msg_len);
			for (i = 0; i < ev.nrcpts; i++)
				sbx_buf_appendf(&t, " %s", ev.rcpts[i]->addr);
			sbx_buf_appendf(&t, "}");
			sbx_buf_append(&t, ev.msg, ev.msg_len);
			sbx_buf_appendf(&t, "{/MSG}\n");
			for (i = ev.nrcpts; i-- > 0;) {
				char r[64];

				snprintf(r, sizeof(r), "250 2.0.0 Ok %zu", i);
				CHECK(sbx_lmtp_data_reply(s, i, r) == 0);
			}
		} else if (type == SBX_LMTP_CLOSE) {
			sbx_buf_append(&t, ev.reply, ev.reply_len);
			sbx_buf_appendf(&t, "{CLOSE}\n");
			break;
		} else {
			sbx_buf_appendf(&t, "{WAIT}\n");
			break;
		}
		if (++guard > 1000000) {
			CHECK(!"runaway session");
			break;
		}
	}
	/* Bounded: one line (or one chunk) of input plus the message. */
	CHECKF(maxbuf <= max_line + max_size + chunk + first, "buffered %zu", maxbuf);
	sbx_lmtp_session_free(&s);
	CHECK(s == NULL);
	sbx_buf_append(&t, "", 1);   /* NUL-terminate */
	return t.data;
}

static char *
drive(const char *in)
{
	return drive_lim(NULL, in, strlen(in), 0, 1u << 20);
}

/* Compare a transcript with the expected text and free it. */
#define EXPECT(got, want) do { \
	char *g_ = (got); \
	CHECKF(strcmp(g_, (want)) == 0, "transcript\n--- got:\n%s--- want:\n%s---", g_, (want)); \
	free(g_); \
} while (0)

#define LHLO "LHLO mx.test\r\n"
#define LHLO_REPLY \
	"250-" HOST "\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-ENHANCEDSTATUSCODES\r\n" \
	"250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n" \
	"250 XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT\r\n"
#define MAIL_OK "250 2.1.0 Ok\r\n"
#define RCPT_OK "250 2.1.5 Ok\r\n"
#define DATA_GO "354 End data with <CR><LF>.<CR><LF>\r\n"
#define BYE "221 2.0.0 Bye\r\n{CLOSE}\n"
#define MAIL_REC(from) "{MAIL " from " body=0 utf8=0 size=-0 ret=0 envid=-}\n"
#define NO_XF "{XF - - - - - - -}\n"

/* What Postfix 3.7's lmtp client writes: one pipelined burst, then the
 * message after the 354 (here in the same input; it must not matter). */
static const char postfix_session[] =
	"LHLO mx.test\r\n"
	"XFORWARD NAME=spike.example ADDR=192.0.2.7 PORT=40123\r\n"
	"XFORWARD PROTO=ESMTP HELO=spike.example IDENT=4Xyz1 SOURCE=REMOTE\r\n"
	"MAIL FROM:<alice@example.org> SIZE=75 BODY=8BITMIME RET=HDRS ENVID=q+2Bid\r\n"
	"RCPT TO:<0123@mailbox.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;hello+2Btag@example.com\r\n"
	"RCPT TO:<bad1@mailbox.test> ORCPT=rfc822;x@example.com\r\n"
	"RCPT TO:<4567@mailbox.test> NOTIFY=NEVER\r\n"
	"DATA\r\n"
	"Subject: hi\r\n"
	"\r\n"
	"..leading dot\r\n"
	"mid.dot.\r\n"
	".\r\n"
	"QUIT\r\n";

static const char postfix_expected[] =
	LHLO_REPLY
	"250 2.0.0 Ok\r\n"
	"250 2.0.0 Ok\r\n"
	MAIL_OK
	"{RCPT 0123@mailbox.test|0123|mailbox.test|rfc822|hello+tag@example.com|6}\n"
	RCPT_OK
	"{RCPT bad1@mailbox.test|bad1|mailbox.test|rfc822|x@example.com|0}\n"
	"550 5.1.1 No such mailbox\r\n"
	"{RCPT 4567@mailbox.test|4567|mailbox.test|-|-|1}\n"
	RCPT_OK
	DATA_GO
	"{MAIL alice@example.org body=2 utf8=0 size=75 ret=2 envid=q+id}\n"
	"{XF spike.example 192.0.2.7 40123 ESMTP spike.example 4Xyz1 REMOTE}\n"
	"{MSG 39 to 0123@mailbox.test 4567@mailbox.test}"
	"Subject: hi\r\n\r\n.leading dot\r\nmid.dot.\r\n{/MSG}\n"
	"250 2.0.0 Ok 0\r\n250 2.0.0 Ok 1\r\n"
	BYE;

TEST(greeting)
{
	struct sbx_lmtp_session *s = sbx_lmtp_session_new(NULL, HOST);

	CHECK(strcmp(sbx_lmtp_greeting(s), "220 " HOST " LMTP sealbox ready\r\n") == 0);
	sbx_lmtp_session_free(&s);
	/* Hostile host names are cleaned and cut. */
	s = sbx_lmtp_session_new(NULL, "a b\r\n");
	CHECK(strcmp(sbx_lmtp_greeting(s), "220 a?b?? LMTP sealbox ready\r\n") == 0);
	sbx_lmtp_session_free(&s);
	sbx_lmtp_session_free(&s);   /* NULL is fine */
}

TEST(postfix_session)
{
	EXPECT(drive(postfix_session), postfix_expected);
}

TEST(split_every_byte)
{
	size_t len = strlen(postfix_session), k;
	int bad = 0;

	for (k = 1; k < len; k++) {
		char *t = drive_lim(NULL, postfix_session, len, k, len);

		if (strcmp(t, postfix_expected) != 0 && bad++ == 0)
			CHECKF(0, "split at %zu:\n%s", k, t);
		free(t);
	}
	CHECKF(bad == 0, "%d split points differ", bad);
	EXPECT(drive_lim(NULL, postfix_session, len, 0, 1), postfix_expected);
	EXPECT(drive_lim(NULL, postfix_session, len, 0, 3), postfix_expected);
}

TEST(second_transaction_same_connection)
{
	/* Connection reuse: XFORWARD and MAIL state do not leak across. */
	EXPECT(drive(LHLO "XFORWARD IDENT=AAA\r\nMAIL FROM:<>\r\nRCPT TO:<a@m>\r\nDATA\r\nx\r\n.\r\n"
		     "MAIL FROM:<b@c>\r\nRCPT TO:<a@m>\r\nDATA\r\ny\r\n.\r\nQUIT\r\n"),
	       LHLO_REPLY "250 2.0.0 Ok\r\n" MAIL_OK "{RCPT a@m|a|m|-|-|0}\n" RCPT_OK DATA_GO
	       MAIL_REC("") "{XF - - - - - AAA -}\n{MSG 3 to a@m}x\r\n{/MSG}\n250 2.0.0 Ok 0\r\n"
	       MAIL_OK "{RCPT a@m|a|m|-|-|0}\n" RCPT_OK DATA_GO
	       MAIL_REC("b@c") NO_XF "{MSG 3 to a@m}y\r\n{/MSG}\n250 2.0.0 Ok 0\r\n" BYE);
}

TEST(dot_unstuffing)
{
	EXPECT(drive(LHLO "MAIL FROM:<>\r\nRCPT TO:<a@m>\r\nDATA\r\n"
		     "..foo\r\n.\tx\r\na.b\r\n...\r\n..\r\n.x.\r\n\r\n.\r\n"),
	       LHLO_REPLY MAIL_OK "{RCPT a@m|a|m|-|-|0}\n" RCPT_OK DATA_GO MAIL_REC("") NO_XF
	       "{MSG 28 to a@m}.foo\r\n\tx\r\na.b\r\n..\r\n.\r\nx.\r\n\r\n{/MSG}\n"
	       "250 2.0.0 Ok 0\r\n");
	/* Empty message; ". CR CR LF" loses the dot only. */
	EXPECT(drive(LHLO "MAIL FROM:<>\r\nRCPT TO:<a@m>\r\nDATA\r\n.\r\n"
		     "MAIL FROM:<>\r\nRCPT TO:<a@m>\r\nDATA\r\n.\r\r\n.\r\n"),
	       LHLO_REPLY MAIL_OK "{RCPT a@m|a|m|-|-|0}\n" RCPT_OK DATA_GO MAIL_REC("") NO_XF
	       "{MSG 0 to a@m}{/MSG}\n250 2.0.0 Ok 0\r\n"
	       MAIL_OK "{RCPT a@m|a|m|-|-|0}\n" RCPT_OK DATA_GO MAIL_REC("") NO_XF
	       "{MSG 3 to a@m}\r\r\n{/MSG}\n250 2.0.0 Ok 0\r\n");
}

TEST(line_endings)
{
	/* Commands: bare LF accepted. DATA: only CRLF "." CRLF ends it; bare
	 * LF and bare CR are content, and "\n.\n" is not an end. */
	EXPECT(drive("LHLO mx\nMAIL FROM:<>\nRCPT TO:<a@m>\nDATA\n"
		     "a\n.\nb\rc\r\n.\n\r\n.\r\nNOOP\n"),
	       LHLO_REPLY MAIL_OK "{RCPT a@m|a|m|-|-|0}\n" RCPT_OK DATA_GO MAIL_REC("") NO_XF
	       "{MSG 12 to a@m}a\n.\nb\rc\r\n\n\r\n{/MSG}\n250 2.0.0 Ok 0\r\n250 2.0.0 Ok\r\n");
}

TEST(line_too_long)
{
	struct sbx_lmtp_limits lim;
	char *in;
	size_t n;

	sbx_lmtp_limits_default(&lim);
	lim.max_line = 600;
	/* Exactly max_line bytes incl. CRLF: a command (unknown); one more
	 * byte: 500 5.5.2; the stream stays in sync. */
	in = sbx_xmalloc(4000);
	n = 0;
	memset(in, 'A', 598);
	memcpy(in + 598, "\r\n", 2);
	n = 600;
	memset(in + n, 'B', 599);
	memcpy(in + n + 599, "\r\n", 2);
	n += 601;
	memset(in + n, 'C', 2000);   /* no LF for longer than max_line */
	n += 2000;
	memcpy(in + n, "\r\nNOOP\r\n", 8);
	n += 8;
	EXPECT(drive_lim(&lim, in, n, 0, 1u << 20),
	       "500 5.5.1 Error: command not recognized\r\n"
	       "500 5.5.2 Error: line too long\r\n"
	       "500 5.5.2 Error: line too long\r\n"
	       "250 2.0.0 Ok\r\n");
	/* Same, fed in small pieces: the over-long line is discarded as it comes. */
	EXPECT(drive_lim(&lim, in, n, 0, 7),
	       "500 5.5.1 Error: command not recognized\r\n"
	       "500 5.5.2 Error: line too long\r\n"
	       "500 5.5.2 Error: line too long\r\n"
	       "250 2.0.0 Ok\r\n");
	free(in);
	/* In DATA a long line is fine (counts toward the size only). */
	in = sbx_xmalloc(20000);
	n = (size_t)sprintf(in, LHLO "MAIL FROM:<>\r\nRCPT TO:<a@m>\r\nDATA\r\n");
	memset(in + n, 'x', 10000);
	n += 10000;
	n += (size_t)sprintf(in + n, "\r\n.\r\n");
	{
		char *t = drive_lim(&lim, in, n, 0, 333);

		CHECK(strstr(t, "{MSG 10002 to a@m}") != NULL);
		CHECK(strstr(t, "250 2.0.0 Ok 0\r\n") != NULL);
		free(t);
	}
	free(in);
}

TEST(limit_recipients)
{
	struct sbx_lmtp_limits lim;
	const char *in = LHLO "MAIL FROM:<>\r\nRCPT TO:<a@m>\r\nRCPT TO:<bad@m>\r\nRCPT TO:<b@m>\r\n"
		"RCPT TO:<c@m>\r\nDATA\r\nx\r\n.\r\n";

	sbx_lmtp_limits_default(&lim);
	lim.max_rcpts = 2;
	/* Only accepted recipients count; the third accepted one gets 452. */
	EXPECT(drive_lim(&lim, in, strlen(in), 0, 4096),
	       LHLO_REPLY MAIL_OK "{RCPT a@m|a|m|-|-|0}\n" RCPT_OK
	       "{RCPT bad@m|bad|m|-|-|0}\n550 5.1.1 No such mailbox\r\n"
	       "{RCPT b@m|b|m|-|-|0}\n" RCPT_OK
	       "452 4.5.3 Error: too many recipients\r\n" DATA_GO MAIL_REC("") NO_XF
	       "{MSG 3 to a@m b@m}x\r\n{/MSG}\n250 2.0.0 Ok 0\r\n250 2.0.0 Ok 1\r\n");
}

TEST(limit_size)
{
	struct sbx_lmtp_limits lim;
	const char *in;

	sbx_lmtp_limits_default(&lim);
	lim.max_size = 10;
	/* SIZE= above the limit: 552 at MAIL; at the limit: fine. */
	in = LHLO "MAIL FROM:<> SIZE=11\r\nMAIL FROM:<> SIZE=10\r\nRSET\r\n";
	EXPECT(drive_lim(&lim, in, strlen(in), 0, 4096),
	       "250-" HOST "\r\n250-PIPELINING\r\n250-SIZE 10\r\n250-ENHANCEDSTATUSCODES\r\n"
	       "250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
	       "250 XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT\r\n"
	       "552 5.3.4 Message size exceeds fixed limit\r\n" MAIL_OK "250 2.0.0 Ok\r\n");
	/* 10 bytes after unstuffing pass; 11 give one 552 per recipient after
	 * the dot, and the next command is still understood. */
	in = "LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@m>\r\nDATA\r\n..1234567\r\n.\r\n"
		"MAIL FROM:<>\r\nRCPT TO:<a@m>\r\nRCPT TO:<b@m>\r\nDATA\r\n123456789\r\n.\r\nNOOP\r\n";
	{
		char *t = drive_lim(&lim, in, strlen(in), 0, 5);

		CHECKF(strstr(t, "{MSG 10 to a@m}.1234567\r\n{/MSG}\n250 2.0.0 Ok 0\r\n") != NULL, "%s", t);
		CHECKF(strstr(t, DATA_GO "552 5.3.4 Error: message file too big\r\n"
			      "552 5.3.4 Error: message file too big\r\n250 2.0.0 Ok\r\n") != NULL,
		       "%s", t);
		free(t);
	}
	/* A bad SIZE value is a syntax error. */
	EXPECT(drive(LHLO "MAIL FROM:<> SIZE=99999999999999999999999\r\nMAIL FROM:<> SIZE=\r\n"),
	       LHLO_REPLY "501 5.5.4 Bad SIZE parameter\r\n"
	       "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]\r\n");
}

TEST(limit_commands)
{
	struct sbx_lmtp_limits lim;
	const char *in = "NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n";
	const char *in2 = LHLO "MAIL FROM:<>\r\nRCPT TO:<a@m>\r\nDATA\r\nx\r\n.\r\n"
		"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n";

	sbx_lmtp_limits_default(&lim);
	lim.max_commands = 4;
	EXPECT(drive_lim(&lim, in, strlen(in), 0, 4096),
	       "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
	       "421 4.7.0 " HOST " Error: too many commands, closing connection\r\n{CLOSE}\n");
	/* A message handed to the daemon starts the count again. */
	EXPECT(drive_lim(&lim, in2, strlen(in2), 0, 4096),
	       LHLO_REPLY MAIL_OK "{RCPT a@m|a|m|-|-|0}\n" RCPT_OK DATA_GO MAIL_REC("") NO_XF
	       "{MSG 3 to a@m}x\r\n{/MSG}\n250 2.0.0 Ok 0\r\n"
	       "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
	       "421 4.7.0 " HOST " Error: too many commands, closing connection\r\n{CLOSE}\n");
}

TEST(limit_errors)
{
	struct sbx_lmtp_limits lim;
	const char *in = "FOO\r\nNOOP\r\nRCPT TO:<a@b>\r\nMAIL FROM:<>\r\nNOOP\r\n";

	sbx_lmtp_limits_default(&lim);
	lim.max_errors = 3;
	EXPECT(drive_lim(&lim, in, strlen(in), 0, 4096),
	       "500 5.5.1 Error: command not recognized\r\n250 2.0.0 Ok\r\n"
	       "503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: send LHLO first\r\n"
	       "421 4.7.0 " HOST " Error: too many errors, closing connection\r\n{CLOSE}\n");
	/* Default: 20. */
	{
		struct sbx_buf b = { 0 };
		char *t;
		int i;

		for (i = 0; i < 25; i++)
			sbx_buf_appendf(&b, "XYZZY\r\n");
		sbx_buf_append(&b, "", 1);
		t = drive(b.data);
		CHECK(strstr(t, "421 4.7.0") != NULL);
		CHECK(strlen(t) == 20 * strlen("500 5.5.1 Error: command not recognized\r\n") +
		      strlen("421 4.7.0 " HOST " Error: too many errors, closing connection\r\n{CLOSE}\n"));
		free(t);
		sbx_buf_free(&b);
	}
}

TEST(xtext)
{
	char *out = NULL;

	CHECK(sbx_lmtp_xtext_decode("a+2Bb@x", 7, &out) == 0 && strcmp(out, "a+b@x") == 0);
	free(out);
	CHECK(sbx_lmtp_xtext_decode("+3d+3D+20", 9, &out) == 0 && strcmp(out, "== ") == 0);
	free(out);
	CHECK(sbx_lmtp_xtext_decode("", 0, &out) == 0 && strcmp(out, "") == 0);
	free(out);
	out = NULL;
	CHECK(sbx_lmtp_xtext_decode("a+2", 3, &out) < 0);
	CHECK(sbx_lmtp_xtext_decode("a+ZZ", 4, &out) < 0);
	CHECK(sbx_lmtp_xtext_decode("a=b", 3, &out) < 0);
	CHECK(sbx_lmtp_xtext_decode("a b", 3, &out) < 0);
	CHECK(sbx_lmtp_xtext_decode("+00", 3, &out) < 0);
	CHECK(sbx_lmtp_xtext_decode("\xc3\xa9", 2, &out) < 0);
	CHECK(out == NULL);
	/* In ORCPT: decoded, or 501. */
	EXPECT(drive(LHLO "MAIL FROM:<>\r\nRCPT TO:<a@m> ORCPT=rfc822;a+2Bb@x\r\n"
		     "RCPT TO:<a@m> ORCPT=rfc822;a+2@x\r\nRCPT TO:<a@m> ORCPT=rfc822\r\n"
		     "RCPT TO:<a@m> ORCPT=;x@y\r\nRCPT TO:<a@m> ORCPT=rfc822;\r\n"
		     "RCPT TO:<a@m> ORCPT=rfc822;a+0Ab@x\r\nRCPT TO:<a@m> ORCPT=RFC822;a@x ORCPT=rfc822;a@x\r\n"),
	       LHLO_REPLY MAIL_OK "{RCPT a@m|a|m|rfc822|a+b@x|0}\n" RCPT_OK
	       "501 5.5.4 Bad ORCPT parameter syntax\r\n501 5.5.4 Bad ORCPT parameter syntax\r\n"
	       "501 5.5.4 Bad ORCPT parameter syntax\r\n501 5.5.4 Bad ORCPT parameter syntax\r\n"
	       "501 5.5.4 Bad ORCPT parameter syntax\r\n501 5.5.4 Bad ORCPT parameter syntax\r\n");
	/* ENVID is xtext too. */
	EXPECT(drive(LHLO "MAIL FROM:<> ENVID=a+4\r\n"),
	       LHLO_REPLY "501 5.5.4 Bad ENVID parameter\r\n");
}

TEST(orcpt_utf8)
{
	char *out = NULL;

	CHECK(sbx_lmtp_orcpt_decode("utf-8", "j\\x{F6}rg@x", 11, &out) == 0 &&
	      strcmp(out, "j\xc3\xb6rg@x") == 0);
	free(out);
	CHECK(sbx_lmtp_orcpt_decode("UTF-8", "\\x{1F600}\\x{2B}\\x{5C}@x", 23, &out) == 0 &&
	      strcmp(out, "\xf0\x9f\x98\x80+\\@x") == 0);
	free(out);
	/* Raw UTF-8 (utf-8-addr-unitext) and xtext-encoded UTF-8 both work. */
	CHECK(sbx_lmtp_orcpt_decode("utf-8", "j\xc3\xb6rg@x", 7, &out) == 0 &&
	      strcmp(out, "j\xc3\xb6rg@x") == 0);
	free(out);
	CHECK(sbx_lmtp_orcpt_decode("utf-8", "j+C3+B6rg@x", 11, &out) == 0 &&
	      strcmp(out, "j\xc3\xb6rg@x") == 0);
	free(out);
	/* rfc822 + xtext-encoded UTF-8: accepted as UTF-8; other types ASCII. */
	CHECK(sbx_lmtp_orcpt_decode("rfc822", "j+C3+B6@x", 9, &out) == 0);
	free(out);
	out = NULL;
	CHECK(sbx_lmtp_orcpt_decode("x400", "j+C3+B6@x", 9, &out) < 0);
	CHECK(sbx_lmtp_orcpt_decode("rfc822", "j\xc3\xb6@x", 5, &out) < 0);   /* raw: not xtext */
	CHECK(sbx_lmtp_orcpt_decode("utf-8", "\\x{D800}@x", 10, &out) < 0);
	CHECK(sbx_lmtp_orcpt_decode("utf-8", "\\x{110000}@x", 12, &out) < 0);
	CHECK(sbx_lmtp_orcpt_decode("utf-8", "\\x{}@x", 6, &out) < 0);
	CHECK(sbx_lmtp_orcpt_decode("utf-8", "\\x{0}@x", 7, &out) < 0);
	CHECK(sbx_lmtp_orcpt_decode("utf-8", "\\x{1234567}@x", 14, &out) < 0);
	CHECK(sbx_lmtp_orcpt_decode("utf-8", "\\x{41@x", 7, &out) < 0);
	CHECK(sbx_lmtp_orcpt_decode("utf-8", "a\\b@x", 5, &out) < 0);
	CHECK(sbx_lmtp_orcpt_decode("utf-8", "\xc3@x", 3, &out) < 0);
	CHECK(sbx_lmtp_orcpt_decode("utf-8", "\\x{7}@x", 7, &out) < 0);   /* control */
	CHECK(out == NULL);
	EXPECT(drive(LHLO "MAIL FROM:<>\r\nRCPT TO:<a@m> ORCPT=utf-8;j\\x{F6}rg@b\\x{FC}cher.example\r\n"
		     "RCPT TO:<a@m> ORCPT=utf-8;bad\\x{DFFF}\r\n"),
	       LHLO_REPLY MAIL_OK
	       "{RCPT a@m|a|m|utf-8|j\xc3\xb6rg@b\xc3\xbc" "cher.example|0}\n" RCPT_OK
	       "501 5.5.4 Bad ORCPT parameter syntax\r\n");
}

TEST(utf8_addresses)
{
	/* Without SMTPUTF8: 553 5.6.7; with it: accepted; broken UTF-8: 501. */
	EXPECT(drive(LHLO "MAIL FROM:<j\xc3\xb6rg@x>\r\nMAIL FROM:<a@x>\r\nRCPT TO:<\xc3\xa9@m>\r\nRSET\r\n"
		     "MAIL FROM:<j\xc3\xb6rg@b\xc3\xbc" "cher.example> SMTPUTF8\r\n"
		     "RCPT TO:<\xc3\xa9@m>\r\nRCPT TO:<\xc3@m>\r\nRCPT TO:<\xed\xa0\x80@m>\r\n"),
	       LHLO_REPLY "553 5.6.7 Must declare SMTPUTF8 to send UTF-8 address\r\n" MAIL_OK
	       "553 5.6.7 Must declare SMTPUTF8 to send UTF-8 address\r\n250 2.0.0 Ok\r\n" MAIL_OK
	       "{RCPT \xc3\xa9@m|\xc3\xa9|m|-|-|0}\n" RCPT_OK
	       "501 5.1.3 Bad recipient address syntax\r\n501 5.1.3 Bad recipient address syntax\r\n");
	EXPECT(drive(LHLO "MAIL FROM:<a@x> SMTPUTF8=yes\r\nMAIL FROM:<a@x> SMTPUTF8 SMTPUTF8\r\n"),
	       LHLO_REPLY "501 5.5.4 Bad SMTPUTF8 parameter\r\n501 5.5.4 Bad SMTPUTF8 parameter\r\n");
}

TEST(mail_params)
{
	/* Postfix's form, lower case, BODY=7BIT, RET=FULL, BINARYMIME, unknown. */
	EXPECT(drive(LHLO "mail from:<a@x> size=1 body=7bit ret=full smtputf8\r\nRSET\r\n"
		     "MAIL FROM:<a@x> BODY=BINARYMIME\r\nMAIL FROM:<a@x> BODY=9BIT\r\n"
		     "MAIL FROM:<a@x> AUTH=<>\r\nMAIL FROM:<a@x> RET=ALL\r\n"
		     "MAIL FROM:<a@x> BODY=7BIT BODY=7BIT\r\nMAIL FROM:<a@x>SIZE=1\r\n"
		     "MAIL FROM:<a@x> SIZE=1 \r\n"
		     "rcpt to:<b@m> notify=delay\r\ndata\r\nhi\r\n.\r\n"),
	       LHLO_REPLY MAIL_OK "250 2.0.0 Ok\r\n"
	       "555 5.5.4 BODY=BINARYMIME requires CHUNKING, not offered\r\n"
	       "501 5.5.4 Bad BODY parameter\r\n555 5.5.4 Unsupported option\r\n"
	       "501 5.5.4 Bad RET parameter\r\n501 5.5.4 Bad BODY parameter\r\n"
	       "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]\r\n" MAIL_OK
	       "{RCPT b@m|b|m|-|-|8}\n" RCPT_OK DATA_GO
	       "{MAIL a@x body=0 utf8=0 size=1 ret=0 envid=-}\n" NO_XF
	       "{MSG 4 to b@m}hi\r\n{/MSG}\n250 2.0.0 Ok 0\r\n");
	/* NOTIFY syntax; unknown RCPT parameter. */
	EXPECT(drive(LHLO "MAIL FROM:<>\r\nRCPT TO:<a@m> NOTIFY=NEVER,DELAY\r\n"
		     "RCPT TO:<a@m> NOTIFY=SUCCESS,SUCCESS\r\nRCPT TO:<a@m> NOTIFY=\r\n"
		     "RCPT TO:<a@m> NOTIFY=SOMETIMES\r\nRCPT TO:<a@m> FOO=BAR\r\n"
		     "RCPT TO:<a@m> NOTIFY=FAILURE NOTIFY=FAILURE\r\n"),
	       LHLO_REPLY MAIL_OK "501 5.5.4 Bad NOTIFY parameter syntax\r\n"
	       "501 5.5.4 Bad NOTIFY parameter syntax\r\n"
	       "501 5.5.4 Syntax: RCPT TO:<address> [parameters]\r\n"
	       "501 5.5.4 Bad NOTIFY parameter syntax\r\n555 5.5.4 Unsupported option\r\n"
	       "501 5.5.4 Bad NOTIFY parameter syntax\r\n");
}

TEST(addresses)
{
	EXPECT(drive(LHLO "MAIL FROM: <@r1.example,@r2.example:a.b@x.example>\r\n"
		     "RCPT TO:<\"j doe\\\"q\"@m>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<>\r\n"
		     "RCPT TO:a@m\r\nRCPT TO:<a@m\r\nRCPT TO:<a..b@m>\r\nRCPT TO:<a@m.>\r\n"
		     "RCPT TO:<a@[192.0.2.1]>\r\nRCPT TO:<a@-m>\r\nRCPT TO:<a b@m>\r\n"
		     "RCPT TO:<@x:a@m>\r\nRCPT TO:<nobody>\r\nRCPT FROM:<a@m>\r\n"
		     "RCPT TO:<a@m>x\r\nDATA\r\n.\r\n"),
	       LHLO_REPLY MAIL_OK
	       "{RCPT \"j doe\\\"q\"@m|j doe\"q|m|-|-|0}\n" RCPT_OK
	       "{RCPT Postmaster|Postmaster||-|-|0}\n" RCPT_OK
	       "501 5.1.3 Bad recipient address syntax\r\n"
	       "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
	       "501 5.1.3 Bad recipient address syntax\r\n"
	       "501 5.1.3 Bad recipient address syntax\r\n"
	       "501 5.1.3 Bad recipient address syntax\r\n"
	       "{RCPT a@[192.0.2.1]|a|[192.0.2.1]|-|-|0}\n" RCPT_OK
	       "501 5.1.3 Bad recipient address syntax\r\n"
	       "501 5.1.3 Bad recipient address syntax\r\n"
	       "{RCPT a@m|a|m|-|-|0}\n" RCPT_OK
	       "501 5.1.3 Bad recipient address syntax\r\n"
	       "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
	       "501 5.5.4 Syntax: RCPT TO:<address> [parameters]\r\n"
	       DATA_GO "{MAIL a.b@x.example body=0 utf8=0 size=-0 ret=0 envid=-}\n" NO_XF
	       "{MSG 0 to \"j doe\\\"q\"@m Postmaster a@[192.0.2.1] a@m}{/MSG}\n"
	       "250 2.0.0 Ok 0\r\n250 2.0.0 Ok 1\r\n250 2.0.0 Ok 2\r\n250 2.0.0 Ok 3\r\n");
	EXPECT(drive(LHLO "MAIL FROM:<a@[x>y]>\r\nMAIL FROM:a@x\r\nMAIL TO:<a@x>\r\nMAIL FROM:<a@x\r\n"),
	       LHLO_REPLY "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]\r\n"
	       "501 5.5.4 Syntax: MAIL FROM:<address>\r\n501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
	       "501 5.1.7 Bad sender address syntax\r\n");
}

TEST(xforward)
{
	EXPECT(drive(LHLO "XFORWARD NAME=[UNAVAILABLE] ADDR=2001:db8::1 HELO=h+2Eexample\r\n"
		     "xforward name=[tempunavail] proto=SMTP source=LOCAL port=[unavailable]\r\n"
		     "XFORWARD FOO=bar\r\nXFORWARD\r\nXFORWARD NAME\r\nXFORWARD NAME=a+20b\r\n"
		     "XFORWARD NAME=a NAME=b\r\nXFORWARD ADDR=+ZZ\r\nXFORWARD IDENT=+C3+A9\r\n"
		     "MAIL FROM:<>\r\nXFORWARD IDENT=X\r\nRCPT TO:<a@m>\r\nDATA\r\n.\r\n"),
	       LHLO_REPLY "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
	       "501 5.5.4 Syntax: XFORWARD attribute=value...\r\n"
	       "501 5.5.4 Syntax: XFORWARD attribute=value...\r\n"
	       "501 5.5.4 Syntax: XFORWARD attribute=value...\r\n"
	       "501 5.5.4 Syntax: XFORWARD attribute=value...\r\n"
	       "501 5.5.4 Syntax: XFORWARD attribute=value...\r\n"
	       "501 5.5.4 Syntax: XFORWARD attribute=value...\r\n"
	       "501 5.5.4 Syntax: XFORWARD attribute=value...\r\n"
	       MAIL_OK "503 5.5.1 Error: MAIL transaction in progress\r\n"
	       "{RCPT a@m|a|m|-|-|0}\n" RCPT_OK DATA_GO MAIL_REC("")
	       "{XF - 2001:db8::1 - SMTP h.example - LOCAL}\n"
	       "{MSG 0 to a@m}{/MSG}\n250 2.0.0 Ok 0\r\n");
	/* Before LHLO: 503; RSET clears the attributes (as Postfix smtpd). */
	EXPECT(drive("XFORWARD NAME=a\r\n" LHLO "XFORWARD NAME=a\r\nRSET\r\n"
		     "MAIL FROM:<>\r\nRCPT TO:<a@m>\r\nDATA\r\n.\r\n"),
	       "503 5.5.1 Error: send LHLO first\r\n" LHLO_REPLY "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
	       MAIL_OK "{RCPT a@m|a|m|-|-|0}\n" RCPT_OK DATA_GO MAIL_REC("") NO_XF
	       "{MSG 0 to a@m}{/MSG}\n250 2.0.0 Ok 0\r\n");
}

TEST(bad_sequences)
{
	EXPECT(drive("MAIL FROM:<>\r\nDATA\r\n" LHLO "RCPT TO:<a@m>\r\nDATA\r\n"
		     "MAIL FROM:<>\r\nMAIL FROM:<>\r\nDATA\r\nRCPT TO:<bad@m>\r\nDATA\r\n"
		     "DATA x\r\nRSET x\r\n"),
	       "503 5.5.1 Error: send LHLO first\r\n503 5.5.1 Error: need MAIL command\r\n"
	       LHLO_REPLY
	       "503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need MAIL command\r\n"
	       MAIL_OK "503 5.5.1 Error: nested MAIL command\r\n503 5.5.1 No valid recipients\r\n"
	       "{RCPT bad@m|bad|m|-|-|0}\n550 5.1.1 No such mailbox\r\n"
	       "503 5.5.1 No valid recipients\r\n501 5.5.4 Syntax: DATA\r\n501 5.5.4 Syntax: RSET\r\n");
}

TEST(rset_mid_transaction)
{
	EXPECT(drive(LHLO "MAIL FROM:<a@x>\r\nRCPT TO:<a@m>\r\nRSET\r\nRCPT TO:<b@m>\r\nDATA\r\n"
		     "MAIL FROM:<c@x>\r\nRCPT TO:<c@m>\r\nLHLO again\r\nDATA\r\n"
		     "MAIL FROM:<d@x>\r\nRCPT TO:<d@m>\r\nDATA\r\n.\r\n"),
	       LHLO_REPLY MAIL_OK "{RCPT a@m|a|m|-|-|0}\n" RCPT_OK "250 2.0.0 Ok\r\n"
	       "503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need MAIL command\r\n"
	       MAIL_OK "{RCPT c@m|c|m|-|-|0}\n" RCPT_OK LHLO_REPLY
	       "503 5.5.1 Error: need MAIL command\r\n"
	       MAIL_OK "{RCPT d@m|d|m|-|-|0}\n" RCPT_OK DATA_GO MAIL_REC("d@x") NO_XF
	       "{MSG 0 to d@m}{/MSG}\n250 2.0.0 Ok 0\r\n");
}

TEST(other_commands)
{
	EXPECT(drive("NOOP hello\r\nVRFY a@b\r\nhelp\r\nHELO x\r\nEHLO x\r\nEXPN x\r\n\r\n"
		     "LHLO\r\nNO\x01OP\r\nBDAT 10 LAST\r\n0123456789NOOP\r\n"),
	       "250 2.0.0 Ok\r\n252 2.5.2 Cannot VRFY user, but will attempt delivery\r\n"
	       "214 2.0.0 See RFC 2033\r\n500 5.5.1 Error: this is LMTP, send LHLO\r\n"
	       "500 5.5.1 Error: this is LMTP, send LHLO\r\n500 5.5.1 Error: command not recognized\r\n"
	       "500 5.5.1 Error: command not recognized\r\n501 5.5.4 Syntax: LHLO hostname\r\n"
	       "500 5.5.2 Error: invalid character in command\r\n"
	       "421 4.5.1 " HOST " Error: BDAT not supported, closing connection\r\n{CLOSE}\n");
}

TEST(quit)
{
	struct sbx_lmtp_session *s = sbx_lmtp_session_new(NULL, HOST);
	struct sbx_lmtp_event ev;
	const char *in = "QUIT\r\nNOOP\r\n";

	sbx_lmtp_feed(s, in, strlen(in));
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_CLOSE);
	CHECK(ev.reply_len == 15 && memcmp(ev.reply, "221 2.0.0 Bye\r\n", 15) == 0);
	/* Input after QUIT is ignored; CLOSE repeats with nothing to send. */
	sbx_lmtp_feed(s, in, strlen(in));
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_CLOSE && ev.reply_len == 0);
	CHECK(sbx_lmtp_buffered(s) == 0);
	CHECK(sbx_lmtp_rcpt_reply(s, 1, NULL) < 0);
	CHECK(sbx_lmtp_data_reply(s, 0, NULL) < 0);
	sbx_lmtp_session_free(&s);
}

static enum sbx_lmtp_event_type
next_str(struct sbx_lmtp_session *s, struct sbx_lmtp_event *ev, char *buf, size_t size)
{
	enum sbx_lmtp_event_type t = sbx_lmtp_next(s, ev);

	buf[0] = '\0';
	if (t == SBX_LMTP_REPLY || t == SBX_LMTP_CLOSE)
		snprintf(buf, size, "%.*s", (int)ev->reply_len, ev->reply);
	return t;
}

TEST(async_replies_out_of_order)
{
	struct sbx_lmtp_session *s = sbx_lmtp_session_new(NULL, HOST);
	struct sbx_lmtp_event ev;
	char r[2048];
	const char *in = LHLO "MAIL FROM:<a@x>\r\nRCPT TO:<a@m>\r\nRCPT TO:<b@m>\r\n"
		"RCPT TO:<c@m>\r\nRCPT TO:<d@m>\r\nDATA\r\nhello\r\n.\r\nNOOP\r\n";
	int i;

	sbx_lmtp_feed(s, in, strlen(in));
	CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_REPLY);   /* LHLO */
	CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_REPLY && strcmp(r, MAIL_OK) == 0);
	CHECK(sbx_lmtp_mail(s) != NULL && strcmp(sbx_lmtp_mail(s)->from, "a@x") == 0);
	for (i = 0; i < 4; i++) {
		CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_RCPT);
		/* The daemon is slow: nothing moves until it answers. */
		CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_WAIT);
		CHECK(sbx_lmtp_data_reply(s, 0, NULL) < 0);
		if (i == 1) {
			/* Mismatched verdict text: the flag wins, with a safe text. */
			CHECK(sbx_lmtp_rcpt_reply(s, 0, "250 2.1.5 looks fine") == 0);
			CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_REPLY &&
			      strcmp(r, "451 4.3.0 Internal error\r\n") == 0);
		} else {
			CHECK(sbx_lmtp_rcpt_reply(s, 1, "250 2.1.5 Mailbox\r\nok") == 0);
			CHECK(sbx_lmtp_rcpt_reply(s, 1, NULL) < 0);   /* answered already */
			CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_REPLY &&
			      strcmp(r, "250 2.1.5 Mailbox??ok\r\n") == 0);
		}
	}
	CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_REPLY && strcmp(r, DATA_GO) == 0);
	CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_MESSAGE);
	CHECK(ev.nrcpts == 3 && ev.msg_len == 7 && memcmp(ev.msg, "hello\r\n", 7) == 0);
	CHECK(ev.nrcpts == 3 && strcmp(ev.rcpts[0]->addr, "a@m") == 0 &&
	      strcmp(ev.rcpts[1]->addr, "c@m") == 0 && strcmp(ev.rcpts[2]->addr, "d@m") == 0);
	CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_WAIT);
	/* Last recipient first: held back until the first ones are known. */
	CHECK(sbx_lmtp_data_reply(s, 2, "452 4.2.2 Mailbox full") == 0);
	CHECK(sbx_lmtp_data_reply(s, 2, "250 2.0.0 Ok") < 0);
	CHECK(sbx_lmtp_data_reply(s, 3, "250 2.0.0 Ok") < 0);
	CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_WAIT);
	CHECK(sbx_lmtp_data_reply(s, 0, "250 2.0.0 <id0> Saved") == 0);
	CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_REPLY &&
	      strcmp(r, "250 2.0.0 <id0> Saved\r\n") == 0);
	CHECK(sbx_lmtp_mail(s) != NULL);   /* still in the transaction */
	CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_WAIT);
	/* A malformed reply never turns into a 250. */
	CHECK(sbx_lmtp_data_reply(s, 1, "25O oops") == 0);
	CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_REPLY &&
	      strcmp(r, "451 4.3.0 Internal error\r\n452 4.2.2 Mailbox full\r\n") == 0);
	CHECK(sbx_lmtp_mail(s) == NULL);
	CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_REPLY && strcmp(r, "250 2.0.0 Ok\r\n") == 0);
	CHECK(next_str(s, &ev, r, sizeof(r)) == SBX_LMTP_NONE);
	sbx_lmtp_session_free(&s);
}

TEST(pipeline_cap)
{
	struct sbx_lmtp_limits lim;
	struct sbx_lmtp_session *s;
	struct sbx_lmtp_event ev;
	const char *in = LHLO "MAIL FROM:<>\r\nRCPT TO:<a@m>\r\n";
	char noops[600];
	size_t i, cap;

	sbx_lmtp_limits_default(&lim);
	lim.max_line = 512;
	lim.max_rcpts = 2;
	cap = 512 * (2 + 8);
	for (i = 0; i + 6 <= sizeof(noops); i += 6)
		memcpy(noops + i, "NOOP\r\n", 6);
	s = sbx_lmtp_session_new(&lim, HOST);
	sbx_lmtp_feed(s, in, strlen(in));
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_REPLY);
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_REPLY);
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_RCPT);
	/* A daemon that keeps reading while the RCPT is judged: the engine
	 * holds up to the cap, then refuses. */
	for (i = 0; sbx_lmtp_buffered(s) + 600 <= cap; i++)
		sbx_lmtp_feed(s, noops, 600);
	CHECK(i == cap / 600);
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_WAIT);
	sbx_lmtp_feed(s, noops, 600);
	CHECK(sbx_lmtp_buffered(s) <= cap);
	CHECK(sbx_lmtp_rcpt_reply(s, 1, NULL) == 0);
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_REPLY);
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_CLOSE && ev.reply_len > 0 &&
	      strncmp(ev.reply, "421 4.7.0 " HOST " Error: too much pipelined input", 43) == 0);
	sbx_lmtp_session_free(&s);
}

TEST(reply_text_bounds)
{
	struct sbx_lmtp_session *s = sbx_lmtp_session_new(NULL, HOST);
	struct sbx_lmtp_event ev;
	char big[2000];
	const char *in = LHLO "MAIL FROM:<>\r\nRCPT TO:<a@m>\r\nRCPT TO:<b@m>\r\n";

	memset(big, 'x', sizeof(big));
	memcpy(big, "550 5.1.1 ", 10);
	big[sizeof(big) - 1] = '\0';
	sbx_lmtp_feed(s, in, strlen(in));
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_REPLY);
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_REPLY);
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_RCPT);
	CHECK(sbx_lmtp_rcpt_reply(s, 0, big) == 0);
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_REPLY);
	CHECK(ev.reply_len == SBX_LMTP_MAX_REPLY_LINE &&
	      memcmp(ev.reply + ev.reply_len - 2, "\r\n", 2) == 0 &&
	      memcmp(ev.reply, "550 5.1.1 xxx", 13) == 0);
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_RCPT);
	CHECK(sbx_lmtp_rcpt_reply(s, 0, NULL) == 0);
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_REPLY && ev.reply_len == 38 &&
	      memcmp(ev.reply, "550 5.1.1 Recipient address rejected\r\n", 38) == 0);
	CHECK(sbx_lmtp_next(s, &ev) == SBX_LMTP_NONE);
	sbx_lmtp_session_free(&s);
	/* A long host name is cut to 255 bytes. */
	memset(big, 'h', 600);
	big[600] = '\0';
	s = sbx_lmtp_session_new(NULL, big);
	CHECK(strlen(sbx_lmtp_greeting(s)) == 4 + 255 + strlen(" LMTP sealbox ready\r\n"));
	sbx_lmtp_session_free(&s);
}

int
main(void)
{
	RUN(greeting);
	RUN(postfix_session);
	RUN(split_every_byte);
	RUN(second_transaction_same_connection);
	RUN(dot_unstuffing);
	RUN(line_endings);
	RUN(line_too_long);
	RUN(limit_recipients);
	RUN(limit_size);
	RUN(limit_commands);
	RUN(limit_errors);
	RUN(xtext);
	RUN(orcpt_utf8);
	RUN(utf8_addresses);
	RUN(mail_params);
	RUN(addresses);
	RUN(xforward);
	RUN(bad_sequences);
	RUN(rset_mid_transaction);
	RUN(other_commands);
	RUN(quit);
	RUN(async_replies_out_of_order);
	RUN(pipeline_cap);
	RUN(reply_text_bounds);
	return tap_done();
}
