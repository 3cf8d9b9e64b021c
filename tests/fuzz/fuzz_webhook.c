/*
 * fuzz_webhook.c - the webhook JSON payload of arbitrary bytes.
 *
 * Malformed MIME is never an error: sbx_webhook_payload must return 0 for
 * any input, and its output must be valid UTF-8 without NUL bytes and
 * parse as exactly one JSON object (json-c) with the fields every payload
 * has, within the documented caps. Each input runs with attachment
 * contents and raw, then (when small) without both (the URL options).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <json-c/json.h>

#include "fuzz_common.h"
#include "webhook.h"

static size_t
array_len(json_object *root, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(root, key, &v) ||
	    !json_object_is_type(v, json_type_array))
		return (size_t)-1;
	return json_object_array_length(v);
}

static void
check(const uint8_t *data, size_t size, int opts)
{
	static const char *const rcpts[] = { "hook+t\xe9st@example.com", "" };
	struct sbx_webhook_meta meta = {
		.recipients = rcpts,
		.nrecipients = 2,
		.remote_address = "192.0.2.7",
		.helo = "h\xff\xfe",
		.sender = "",
		.queue_id = "4Q1",
		.arrival_ms = 1700000000001LL,
	};
	char *json = NULL, *err = NULL;
	size_t len = 0, n;
	json_tokener *tok;
	json_object *root, *v;

	if (sbx_webhook_payload((const char *)data, size, &meta, opts & 1,
	    (opts >> 1) & 1, &json, &len, &err) != 0) {
		fprintf(stderr, "payload: %s\n", err != NULL ? err : "?");
		abort();
	}
	SBXF_ASSERT(json != NULL && strlen(json) == len);
	SBXF_ASSERT(g_utf8_validate(json, len, NULL));
	tok = json_tokener_new();
	root = json_tokener_parse_ex(tok, json, (int)len);
	SBXF_ASSERT(root != NULL &&
	    json_tokener_get_error(tok) == json_tokener_success &&
	    json_tokener_get_parse_end(tok) == len);
	SBXF_ASSERT(json_object_is_type(root, json_type_object));
	SBXF_ASSERT(json_object_object_get_ex(root, "headers", &v) &&
	    json_object_is_type(v, json_type_string));
	n = array_len(root, "headerLines");
	SBXF_ASSERT(n <= SBX_WEBHOOK_MAX_HEADER_LINES);
	n = array_len(root, "attachments");
	SBXF_ASSERT(n <= SBX_WEBHOOK_MAX_ATTACHMENTS);
	SBXF_ASSERT(array_len(root, "recipients") == 2);
	SBXF_ASSERT(json_object_object_get_ex(root, "raw", &v) ==
	    ((opts >> 1) & 1));
	json_object_put(root);
	json_tokener_free(tok);
	free(json);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check(data, size, 3);
	if (size < 65536)
		check(data, size, 0);
	return 0;
}
