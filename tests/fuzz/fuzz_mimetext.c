/*
 * fuzz_mimetext.c - decoded search text of arbitrary bytes.
 *
 * Malformed MIME is never an error: sbx_mime_text_extract must return 0
 * for any input, with every field non-NULL, valid UTF-8 without embedded
 * NUL, a body no longer than max_body and headers no longer than
 * SBX_MIME_TEXT_MAX_HEADERS.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "fuzz_common.h"
#include "mime.h"
#include "mimetext.h"

#define FUZZ_MAX_BODY 65536

static void
check_text(const char *v)
{
	if (v == NULL || !g_utf8_validate(v, -1, NULL))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sbx_mime_text t;
	char *err = NULL;

	if (sbx_mime_init() < 0)
		abort();
	if (sbx_mime_text_extract((const char *)data, size, FUZZ_MAX_BODY, &t,
	    &err) != 0)
		abort();
	check_text(t.from);
	check_text(t.to);
	check_text(t.cc);
	check_text(t.bcc);
	check_text(t.subject);
	check_text(t.body);
	check_text(t.headers);
	if (strlen(t.body) > FUZZ_MAX_BODY ||
	    strlen(t.headers) > SBX_MIME_TEXT_MAX_HEADERS)
		abort();
	sbx_mime_text_free(&t);
	return 0;
}
