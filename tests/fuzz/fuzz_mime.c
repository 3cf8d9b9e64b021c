/*
 * fuzz_mime.c - ENVELOPE / BODYSTRUCTURE / BODY of arbitrary bytes.
 *
 * Malformed MIME is never an error: sbx_mime_parse must return 0 with three
 * non-empty parenthesised strings for any input, within the depth and part
 * limits, and never read outside the input.
 *
 * The same bytes as a delivered message: lmtpd's hop count (deliver.h
 * sbx_deliver_hops) reads only the input, counts at most one field per
 * line, and never counts more in a prefix than in the whole.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "fuzz_common.h"
#include "mime.h"

static void
check_value(const char *v)
{
	size_t n;

	if (v == NULL)
		abort();
	n = strlen(v);
	if (n < 2 || v[0] != '(' || v[n - 1] != ')')
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sbx_mime_info info;
	char *err = NULL;
	size_t i, lines = 1;
	unsigned hops;

	for (i = 0; i < size; i++)
		lines += data[i] == '\n';
	hops = sbx_deliver_hops((const char *)data, size);
	if (hops > lines || sbx_deliver_hops((const char *)data, size / 2) > hops)
		abort();
	if (sbx_mime_init() < 0)
		abort();
	memset(&info, 0, sizeof(info));
	if (sbx_mime_parse((const char *)data, size, &info, &err) != 0)
		abort();
	check_value(info.envelope);
	check_value(info.bodystructure);
	check_value(info.body);
	if (info.size < size)
		abort();   /* a bare LF counts as two octets, never fewer */
	sbx_mime_info_free(&info);
	return 0;
}
