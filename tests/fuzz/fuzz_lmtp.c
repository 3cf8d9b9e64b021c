/*
 * fuzz_lmtp.c - the LMTP engine (shared/lmtp.c) on arbitrary client bytes.
 *
 * Input layout: byte 0 picks the mode and small limits, bytes 1-4 seed the
 * chunking and answer-order PRNG, the rest is the client's byte stream.
 *
 * Mode "session" (byte 0 even): the bytes are fed in random chunks, only
 * when the engine asks for input, like the daemon does. Every RCPT is
 * accepted (with an occasional odd reply text), every MESSAGE answered in
 * a random order. Properties: every reply line is CRLF-terminated, at most
 * 512 bytes, starts with a 3-digit code and ' ' or '-'; buffered bytes stay
 * within max_line + max_size + the last chunk; MESSAGE has 1..max_rcpts
 * recipients and at most max_size bytes; the per-recipient replies come out
 * in RCPT order with the texts given; nothing happens after CLOSE.
 *
 * Mode "roundtrip" (byte 0 odd): the bytes are a message; it is dot-stuffed
 * and sent in a fixed transaction, and the MESSAGE must be exactly the
 * original (or 552 per recipient when over max_size).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "lmtp.h"
#include "util.h"

static uint32_t rng;

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static int
valid_utf8_no_ctl(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	for (; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 0;
	return 1;   /* UTF-8 well-formedness is checked by the engine's tests */
}

/* Check reply bytes; count lines into *nlines. */
static void
check_reply(const char *r, size_t len, size_t *nlines)
{
	size_t i = 0;

	SBXF_ASSERT(len > 0);
	while (i < len) {
		const char *lf = memchr(r + i, '\n', len - i);
		size_t n;

		SBXF_ASSERT(lf != NULL);
		n = (size_t)(lf - (r + i)) + 1;
		SBXF_ASSERT(n <= SBX_LMTP_MAX_REPLY_LINE);
		SBXF_ASSERT(n >= 5 && r[i + n - 2] == '\r');
		SBXF_ASSERT(memchr(r + i, '\r', n - 2) == NULL);
		SBXF_ASSERT(r[i] >= '2' && r[i] <= '5' && r[i + 1] >= '0' && r[i + 1] <= '9' &&
			    r[i + 2] >= '0' && r[i + 2] <= '9');
		SBXF_ASSERT(r[i + 3] == ' ' || r[i + 3] == '-' || r[i + 3] == '\r');
		i += n;
		if (nlines)
			(*nlines)++;
	}
}

static const char *const odd_replies[] = {
	NULL, "250 2.1.5 Ok", "250", "2", "", "550 5.1.1 x", "250 x\r\nRCPT TO:<a@b>",
	"451 4.3.0 \x01\x7f", "999 bad",
};

/* Answer MESSAGE replies in a random order, checking the ones that come
 * back are in RCPT order with the expected texts. */
static void
answer_message(struct sbx_lmtp_session *s, const struct sbx_lmtp_event *msg)
{
	size_t n = msg->nrcpts, answered = 0, emitted = 0, i;
	char (*texts)[48] = sbx_xcalloc(n, sizeof(*texts));
	unsigned char *done = sbx_xcalloc(n, 1);
	struct sbx_lmtp_event ev;

	for (i = 0; i < n; i++)
		snprintf(texts[i], sizeof(texts[i]), "%s %zu", (rnd() & 3) ? "250 2.0.0 Ok" :
			 "452 4.2.2 Full", i);
	while (emitted < n) {
		enum sbx_lmtp_event_type t;

		if (answered < n && (rnd() & 1)) {
			size_t k = rnd() % n;

			SBXF_ASSERT(sbx_lmtp_data_reply(s, k, texts[k]) == (done[k] ? -1 : 0));
			if (!done[k]) {
				done[k] = 1;
				answered++;
			}
			continue;
		}
		t = sbx_lmtp_next(s, &ev);
		if (t == SBX_LMTP_WAIT) {
			SBXF_ASSERT(!done[emitted]);
			if (answered == n)
				abort();
			/* Answer the next missing one so the loop ends. */
			for (i = 0; i < n && done[i]; i++)
				;
			SBXF_ASSERT(sbx_lmtp_data_reply(s, i, texts[i]) == 0);
			done[i] = 1;
			answered++;
			continue;
		}
		SBXF_ASSERT(t == SBX_LMTP_REPLY);
		check_reply(ev.reply, ev.reply_len, NULL);
		/* The lines are texts[emitted], texts[emitted+1], ... */
		{
			size_t off = 0;

			while (off < ev.reply_len) {
				size_t tl = strlen(texts[emitted]);

				SBXF_ASSERT(emitted < n && done[emitted]);
				SBXF_ASSERT(ev.reply_len - off >= tl + 2 &&
					    memcmp(ev.reply + off, texts[emitted], tl) == 0 &&
					    memcmp(ev.reply + off + tl, "\r\n", 2) == 0);
				off += tl + 2;
				emitted++;
			}
		}
	}
	SBXF_ASSERT(sbx_lmtp_mail(s) == NULL);
	free(texts);
	free(done);
}

static void
session_mode(const uint8_t *data, size_t size, const struct sbx_lmtp_limits *lim)
{
	struct sbx_lmtp_session *s = sbx_lmtp_session_new(lim, "fuzz.test");
	struct sbx_lmtp_event ev;
	size_t pos = 0, last_chunk = 0, steps = 0;
	int closed = 0;

	for (;;) {
		enum sbx_lmtp_event_type t = sbx_lmtp_next(s, &ev);

		SBXF_ASSERT(++steps < 4 * size + 1000);
		SBXF_ASSERT(ev.type == t);
		SBXF_ASSERT(sbx_lmtp_buffered(s) <= lim->max_line + lim->max_size + last_chunk);
		if (closed) {
			SBXF_ASSERT(t == SBX_LMTP_CLOSE && ev.reply_len == 0);
			break;
		}
		switch (t) {
		case SBX_LMTP_NONE:
			if (pos >= size)
				goto out;
			last_chunk = 1 + rnd() % ((rnd() & 1) ? 8 : 4096);
			if (last_chunk > size - pos)
				last_chunk = size - pos;
			sbx_lmtp_feed(s, data + pos, last_chunk);
			pos += last_chunk;
			break;
		case SBX_LMTP_REPLY:
			check_reply(ev.reply, ev.reply_len, NULL);
			break;
		case SBX_LMTP_RCPT:
			SBXF_ASSERT(ev.rcpt != NULL && ev.rcpt->addr && ev.rcpt->local &&
				    ev.rcpt->domain);
			SBXF_ASSERT((ev.rcpt->orcpt == NULL) == (ev.rcpt->orcpt_type == NULL));
			if (ev.rcpt->orcpt)
				SBXF_ASSERT(valid_utf8_no_ctl(ev.rcpt->orcpt));
			SBXF_ASSERT(sbx_lmtp_data_reply(s, 0, NULL) == -1);
			SBXF_ASSERT(sbx_lmtp_rcpt_reply(s, (rnd() % 8) != 0,
				odd_replies[rnd() % (sizeof(odd_replies) / sizeof(*odd_replies))]) == 0);
			SBXF_ASSERT(sbx_lmtp_rcpt_reply(s, 1, NULL) == -1);
			break;
		case SBX_LMTP_MESSAGE:
			SBXF_ASSERT(ev.nrcpts >= 1 && ev.nrcpts <= lim->max_rcpts);
			SBXF_ASSERT(ev.msg != NULL && ev.msg_len <= lim->max_size);
			SBXF_ASSERT(sbx_lmtp_mail(s) != NULL);
			answer_message(s, &ev);
			break;
		case SBX_LMTP_CLOSE:
			if (ev.reply_len > 0)
				check_reply(ev.reply, ev.reply_len, NULL);
			closed = 1;
			break;
		case SBX_LMTP_WAIT:
			abort();   /* every event is answered at once here */
		}
	}
out:
	sbx_lmtp_session_free(&s);
}

static void
roundtrip_mode(const uint8_t *data, size_t size, const struct sbx_lmtp_limits *lim)
{
	static const char head[] = "LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n";
	struct sbx_lmtp_session *s = sbx_lmtp_session_new(lim, "fuzz.test");
	struct sbx_lmtp_event ev;
	struct sbx_buf in = { 0 }, orig = { 0 };
	size_t i, pos = 0, replies = 0;
	int bol = 1, got_msg = 0;

	sbx_buf_append(&orig, data, size);
	if (size > 0 && (size < 2 || memcmp(data + size - 2, "\r\n", 2) != 0))
		sbx_buf_append(&orig, "\r\n", 2);
	sbx_buf_append(&in, head, sizeof(head) - 1);
	for (i = 0; i < orig.len; i++) {
		if (bol && orig.data[i] == '.')
			sbx_buf_append(&in, ".", 1);
		sbx_buf_append(&in, orig.data + i, 1);
		bol = i > 0 && orig.data[i] == '\n' && orig.data[i - 1] == '\r';
	}
	sbx_buf_append(&in, ".\r\nQUIT\r\n", 9);
	for (;;) {
		enum sbx_lmtp_event_type t = sbx_lmtp_next(s, &ev);

		if (t == SBX_LMTP_NONE) {
			size_t n = 1 + rnd() % 64;

			SBXF_ASSERT(pos < in.len);
			if (n > in.len - pos)
				n = in.len - pos;
			sbx_lmtp_feed(s, in.data + pos, n);
			pos += n;
		} else if (t == SBX_LMTP_RCPT) {
			SBXF_ASSERT(sbx_lmtp_rcpt_reply(s, 1, NULL) == 0);
		} else if (t == SBX_LMTP_MESSAGE) {
			SBXF_ASSERT(orig.len <= lim->max_size);
			SBXF_ASSERT(ev.nrcpts == 2 && ev.msg_len == orig.len &&
				    (orig.len == 0 || memcmp(ev.msg, orig.data, orig.len) == 0));
			got_msg = 1;
			SBXF_ASSERT(sbx_lmtp_data_reply(s, 1, "250 b") == 0);
			SBXF_ASSERT(sbx_lmtp_data_reply(s, 0, "250 a") == 0);
		} else if (t == SBX_LMTP_REPLY) {
			check_reply(ev.reply, ev.reply_len, NULL);
			if (memcmp(ev.reply, "552 5.3.4 Error: message", 24) == 0) {
				SBXF_ASSERT(orig.len > lim->max_size);
				check_reply(ev.reply, ev.reply_len, &replies);
				SBXF_ASSERT(replies == 2);   /* one per recipient */
			}
		} else {
			SBXF_ASSERT(t == SBX_LMTP_CLOSE);
			SBXF_ASSERT(ev.reply_len == 15 && memcmp(ev.reply, "221 2.0.0 Bye\r\n", 15) == 0);
			break;
		}
	}
	SBXF_ASSERT(got_msg == (orig.len <= lim->max_size));
	sbx_buf_free(&in);
	sbx_buf_free(&orig);
	sbx_lmtp_session_free(&s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sbx_lmtp_limits lim;
	uint8_t mode;

	if (size < 5 || size > (1u << 20))
		return 0;
	mode = data[0];
	rng = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
	      (uint32_t)data[4] << 24;
	if (rng == 0)
		rng = 0x9e3779b9;
	sbx_lmtp_limits_default(&lim);
	/* Small limits so fuzzing reaches them. */
	lim.max_line = 512 + (size_t)((mode >> 1) & 3) * 256;
	lim.max_rcpts = 1 + ((mode >> 3) & 7);
	lim.max_size = (mode & 0x40) ? 64 : 4096;
	lim.max_commands = (mode & 0x80) ? 40 : 10000;
	lim.max_errors = (mode & 0x80) ? 5 : 20;
	if (mode & 1) {
		lim.max_rcpts = 2;
		roundtrip_mode(data + 5, size - 5, &lim);
	} else {
		session_mode(data + 5, size - 5, &lim);
	}
	return 0;
}
