/*
 * fuzz_section.c - BODY[section] of arbitrary bytes.
 *
 * Input: the section spec up to the first LF (at most 1100 bytes, so specs
 * over the 1024-byte limit are tried too), the message after it. The
 * message is parsed with sbx_mime_parse, then:
 *   - the spec is fetched: rc 0 exactly when sbx_mime_section_valid says
 *     the spec is good, and the output is NUL-terminated;
 *   - BODY[] is the message and BODY[HEADER] its first hdr_len bytes;
 *   - the leaves lie inside the message, in order, without overlap;
 *   - a damaged copy of the part table (one byte changed or cut, chosen by
 *     the input) is fetched with the same spec: an error or an answer,
 *     never a crash or a read outside the message (ASan watches).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mime.h"

#define SPEC_MAX 1100

static void
fetch_checked(const char *msg, size_t len, const char *table,
    const char *spec, int want_rc)
{
	char *out = NULL, *err = NULL;
	size_t n = 0;
	int rc;

	rc = sbx_mime_fetch_section(msg, len, table, spec, &out, &n, &err);
	if (want_rc != 1)
		SBXF_ASSERT(rc == want_rc);
	if (rc == 0) {
		SBXF_ASSERT(out != NULL && out[n] == '\0' && err == NULL);
	} else {
		SBXF_ASSERT(rc == -1 && out == NULL && err != NULL);
	}
	free(out);
	free(err);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nl = memchr(data, '\n', size < SPEC_MAX ? size : SPEC_MAX);
	const char *msg;
	char *spec, *out = NULL, *err = NULL, *bad;
	size_t slen, len, n, i, pos = 0, tl;
	struct sbx_mime_info info;
	int valid;

	SBXF_ASSERT(sbx_mime_init() == 0);
	slen = nl != NULL ? (size_t)(nl - (const char *)data) :
	    (size < SPEC_MAX ? size : SPEC_MAX);
	spec = malloc(slen + 1);
	SBXF_ASSERT(spec != NULL);
	memcpy(spec, data, slen);
	spec[slen] = '\0';	/* a NUL in the spec ends it, as in C */
	msg = (const char *)data + slen + (nl != NULL);
	len = size - slen - (nl != NULL);

	SBXF_ASSERT(sbx_mime_parse(msg, len, &info, &err) == 0);
	SBXF_ASSERT(info.sections != NULL && info.hdr_len <= len);
	for (i = 0; i < info.nleaves; i++) {
		SBXF_ASSERT(info.leaves[i].off >= pos &&
		    info.leaves[i].off <= len &&
		    info.leaves[i].len <= len - info.leaves[i].off);
		pos = info.leaves[i].off + info.leaves[i].len;
	}

	valid = sbx_mime_section_valid(spec);
	fetch_checked(msg, len, info.sections, spec, valid ? 0 : -1);

	SBXF_ASSERT(sbx_mime_fetch_section(msg, len, info.sections, "", &out,
	    &n, &err) == 0);
	SBXF_ASSERT(n == len && memcmp(out, msg, len) == 0);
	free(out);
	SBXF_ASSERT(sbx_mime_fetch_section(msg, len, info.sections, "HEADER",
	    &out, &n, &err) == 0);
	SBXF_ASSERT(n == info.hdr_len && memcmp(out, msg, n) == 0);
	free(out);

	/* a damaged table: one byte changed, or the table cut short */
	tl = strlen(info.sections);
	bad = strdup(info.sections);
	SBXF_ASSERT(bad != NULL);
	if (tl > 0 && size > 0) {
		i = (size_t)data[size - 1] * 131 % tl;
		if (data[0] & 1)
			bad[i] = '\0';
		else
			bad[i] = "0123456789 \nmrl-"[data[0] % 16];
	}
	fetch_checked(msg, len, bad, valid ? spec : "1", 1);
	free(bad);

	sbx_mime_info_free(&info);
	free(spec);
	return 0;
}
