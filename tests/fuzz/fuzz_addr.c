/*
 * fuzz_addr.c - address normalisation and webhook URL validation.
 *
 * The input, cut at its first NUL, is one string. Properties:
 *  - sbx_addr_normalize (allow_forms 0 and 1) and sbx_url_validate never
 *    crash, and fail with an error message or succeed without one;
 *  - normalising is idempotent: normalising a result gives it back;
 *  - an address accepted without alias forms is accepted, unchanged, with
 *    them (the forms only add "*@" and "~regex@").
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "directory.h"
#include "fuzz_common.h"

static char *
normalize(const char *s, int allow_forms)
{
	char *out = NULL, *error = NULL;

	if (sbx_addr_normalize(s, allow_forms, &out, &error) < 0) {
		SBXF_ASSERT(out == NULL && error != NULL);
		free(error);
		return NULL;
	}
	SBXF_ASSERT(out != NULL && error == NULL);
	SBXF_ASSERT(strlen(out) == strlen(s));
	return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s, *a0, *a1, *again, *error = NULL;
	int forms;

	s = malloc(size + 1);
	SBXF_ASSERT(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';

	a0 = normalize(s, 0);
	a1 = normalize(s, 1);
	if (a0 != NULL)
		SBXF_ASSERT(a1 != NULL && strcmp(a0, a1) == 0);
	for (forms = 0; forms <= 1; forms++) {
		char *a = forms ? a1 : a0;

		if (a == NULL)
			continue;
		again = normalize(a, forms);
		SBXF_ASSERT(again != NULL);
		SBXF_ASSERT(strcmp(again, a) == 0);
		free(again);
	}
	free(a0);
	free(a1);

	if (sbx_url_validate(s, &error) < 0) {
		SBXF_ASSERT(error != NULL);
		free(error);
	} else {
		SBXF_ASSERT(error == NULL);
	}
	free(s);
	return 0;
}
