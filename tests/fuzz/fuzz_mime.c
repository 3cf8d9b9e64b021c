/*
 * fuzz_mime.c - ENVELOPE / BODYSTRUCTURE / BODY of arbitrary bytes.
 *
 * Malformed MIME is never an error: sbx_mime_parse must return 0 with three
 * non-empty parenthesised strings for any input, within the depth and part
 * limits, and never read outside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
