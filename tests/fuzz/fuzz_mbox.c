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
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz_common.h"
#include "mbox.h"
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
