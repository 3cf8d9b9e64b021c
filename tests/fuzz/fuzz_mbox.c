/*
 * fuzz_mbox.c - mboxrd reading, and write/read round trip.
 *
 * The input is read with sbx_mbox_next until it returns <= 0 (once with a
 * large limit, once with a small one to reach the size check). Every
 * message parsed is written again with sbx_mbox_write into one buffer,
 * which must read back as the same messages, in order, with the same
 * dates and the same bytes - except the documented mbox limitation: a
 * message not ending with a newline (the empty one included) comes back
 * with one.
 *
 * The state layer (X-Sealbox block, Status/X-Keywords headers) runs on
 * every message: a parse never reads outside it, gives at most
 * SBX_MBOX_MAX_KEYWORDS well-formed keyword tokens and known flags only,
 * and a message with a block, written again with sbx_mbox_write_state,
 * reads back as the same folder, flags, keywords and bytes. The input's
 * first bytes are also used as a folder name: written and read back, it
 * is the same name or a clean error, and printable ASCII names of 1..512
 * bytes always survive.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz_common.h"
#include "mbox.h"
#include "store.h"
#include "util.h"

#define MAX_MESSAGES 256

struct parsed {
	struct sbx_buf msg;
	time_t date;
};

/* Read every message of data; returns how many (up to max), and whether
 * the iteration ended in an error in *failed_r. */
static size_t
read_all(const char *data, size_t size, size_t limit, struct parsed *out, size_t max, int *failed_r)
{
	struct sbx_buf msg = { 0 };
	size_t pos = 0, prev, n = 0;
	time_t date;
	char *error = NULL;
	int ret;

	*failed_r = 0;
	for (;;) {
		prev = pos;
		ret = sbx_mbox_next(data, size, &pos, limit, &msg, &date, &error);
		if (ret <= 0) {
			SBXF_ASSERT(ret == 0 ? error == NULL && pos >= size : error != NULL);
			*failed_r = ret < 0;
			break;
		}
		SBXF_ASSERT(ret == 1 && error == NULL);
		SBXF_ASSERT(pos > prev && pos <= size);  /* always moves forward */
		SBXF_ASSERT(msg.len <= limit);
		if (out != NULL && n < max) {
			out[n].msg.data = NULL;
			out[n].msg.len = out[n].msg.cap = 0;
			sbx_buf_append(&out[n].msg, msg.data ? msg.data : "", msg.len);
			out[n].date = date;
		}
		n++;
	}
	free(error);
	sbx_buf_free(&msg);
	return n;
}

/* Invariants of one parsed state. */
static void
state_check(const struct sbx_mbox_state *s, size_t len)
{
	const char *p;
	size_t n = 0, tok = 0;

	SBXF_ASSERT(s->skip <= len);
	SBXF_ASSERT(!s->has_block || (s->folder != NULL && s->skip > 0 && s->skip < len));
	SBXF_ASSERT(s->has_block || (s->folder == NULL && s->skip == 0));
	SBXF_ASSERT((s->flags & ~(unsigned)SBX_FLAGS_ALL) == 0);
	SBXF_ASSERT(s->nkeywords <= SBX_MBOX_MAX_KEYWORDS);
	SBXF_ASSERT(s->nwarnings <= SBX_MBOX_MAX_WARNINGS);
	SBXF_ASSERT(s->keywords != NULL);
	for (p = s->keywords; *p != '\0'; p++) {
		if (*p == ' ') {
			SBXF_ASSERT(tok > 0 && p[1] != '\0');   /* single spaces between */
			tok = 0;
			continue;
		}
		SBXF_ASSERT((unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f);
		if (tok++ == 0)
			n++;
		SBXF_ASSERT(tok <= SBX_STORE_MAX_KEYWORD_LEN);
	}
	SBXF_ASSERT(n == s->nkeywords);
}

/* Write the message with its state and read it back. */
static void
state_roundtrip(const struct sbx_mbox_state *s, time_t date, const char *body, size_t blen)
{
	struct sbx_buf out = { 0 }, msg = { 0 };
	struct sbx_mbox_state s2;
	size_t pos = 0;
	time_t date2;
	char *error = NULL;
	int add_nl = blen == 0 || body[blen - 1] != '\n';

	sbx_mbox_write_state(&out, date, s->folder, s->flags, s->keywords, body, blen);
	SBXF_ASSERT(sbx_mbox_next(out.data, out.len, &pos, out.len, &msg, &date2, &error) == 1);
	SBXF_ASSERT(pos == out.len && date2 == date);
	SBXF_ASSERT(sbx_mbox_state_parse(msg.data, msg.len, &s2, &error) == 0);
	SBXF_ASSERT(s2.has_block && strcmp(s2.folder, s->folder) == 0);
	SBXF_ASSERT(s2.flags == s->flags && strcmp(s2.keywords, s->keywords) == 0);
	SBXF_ASSERT(s2.nwarnings == 0);
	SBXF_ASSERT(msg.len - s2.skip == blen + (size_t)add_nl);
	SBXF_ASSERT(memcmp(msg.data + s2.skip, body, blen) == 0);
	sbx_mbox_state_free(&s2);
	sbx_buf_free(&msg);
	sbx_buf_free(&out);
}

static void
state_all(const struct sbx_buf *m, time_t date)
{
	struct sbx_mbox_state s;
	char *error = NULL;
	const char *data = m->data ? m->data : "";

	if (sbx_mbox_state_parse(data, m->len, &s, &error) < 0) {
		SBXF_ASSERT(error != NULL);
		free(error);
	} else {
		SBXF_ASSERT(error == NULL);
		state_check(&s, m->len);
		if (s.has_block)
			state_roundtrip(&s, date, data + s.skip, m->len - s.skip);
	}
	sbx_mbox_state_free(&s);
}

/* The input's first bytes (up to a NUL, at most 600) as a folder name. */
static void
folder_roundtrip(const uint8_t *data, size_t size)
{
	static const char body[] = "Subject: x\r\n\r\nbody\r\n";
	struct sbx_buf out = { 0 }, msg = { 0 };
	struct sbx_mbox_state s;
	char name[601], *error = NULL;
	size_t n = 0, pos = 0, i;
	time_t date;
	int printable = 1;

	while (n < size && n < sizeof(name) - 1 && data[n] != 0) {
		name[n] = (char)data[n];
		n++;
	}
	name[n] = '\0';
	if (n == 0)
		return;
	for (i = 0; i < n; i++)
		if (data[i] < 0x20 || data[i] > 0x7e)
			printable = 0;
	sbx_mbox_write_state(&out, 86400, name, (unsigned)size & SBX_FLAGS_ALL, "a $b",
			     body, sizeof(body) - 1);
	SBXF_ASSERT(sbx_mbox_next(out.data, out.len, &pos, out.len, &msg, &date, &error) == 1);
	if (sbx_mbox_state_parse(msg.data, msg.len, &s, &error) == 0) {
		SBXF_ASSERT(strcmp(s.folder, name) == 0 && n <= SBX_MBOX_MAX_FOLDER);
		SBXF_ASSERT(s.flags == ((unsigned)size & SBX_FLAGS_ALL));
		SBXF_ASSERT(strcmp(s.keywords, "a $b") == 0);
		SBXF_ASSERT(msg.len - s.skip == sizeof(body) - 1);
	} else {
		SBXF_ASSERT(error != NULL);
		SBXF_ASSERT(!printable || n > SBX_MBOX_MAX_FOLDER);
		free(error);
	}
	sbx_mbox_state_free(&s);
	sbx_buf_free(&msg);
	sbx_buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct parsed orig[MAX_MESSAGES], again[MAX_MESSAGES];
	struct sbx_buf out = { 0 };
	size_t n, n2, i, keep;
	int failed, failed2;

	n = read_all((const char *)data, size, 1u << 20, orig, MAX_MESSAGES, &failed);
	(void)read_all((const char *)data, size, 16, NULL, 0, &failed2);

	keep = n < MAX_MESSAGES ? n : MAX_MESSAGES;
	for (i = 0; i < keep; i++)
		state_all(&orig[i].msg, orig[i].date);
	folder_roundtrip(data, size);
	for (i = 0; i < keep; i++)
		sbx_mbox_write(&out, i % 2 ? NULL : "sender@example.com", orig[i].date,
			       orig[i].msg.data ? orig[i].msg.data : "", orig[i].msg.len);
	n2 = read_all(out.data ? out.data : "", out.len, 1u << 21, again, MAX_MESSAGES, &failed2);
	SBXF_ASSERT(!failed2);
	SBXF_ASSERT(n2 == keep);
	for (i = 0; i < keep; i++) {
		const struct sbx_buf *a = &orig[i].msg, *b = &again[i].msg;
		int add_nl = a->len == 0 || a->data[a->len - 1] != '\n';

		SBXF_ASSERT(b->len == a->len + (size_t)add_nl);
		SBXF_ASSERT(a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
		SBXF_ASSERT(!add_nl || b->data[a->len] == '\n');
		SBXF_ASSERT(again[i].date == orig[i].date);
	}
	for (i = 0; i < keep; i++) {
		sbx_buf_free(&orig[i].msg);
		sbx_buf_free(&again[i].msg);
	}
	sbx_buf_free(&out);
	return 0;
}
