/*
 * fuzz_envelope.c - key envelope parsing and opening on arbitrary bytes.
 *
 * No Argon2id: the KEKs are fixed (fuzz_common.h). Properties:
 *  - sbx_envelope_params / sbx_envelope_id never crash; a returned id is
 *    1..64 printable ASCII bytes.
 *  - sbx_envelope_open with the dummy KEK never succeeds.
 *  - With the seed KEK (under which the corpus envelopes were sealed) an
 *    open may succeed, but then it must give the seed keys, must fail for
 *    another mailbox id, and must fail once any byte is flipped.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "keys.h"
#include "sbx_limits.h"

static int
try_open(const uint8_t *data, size_t size, const unsigned char *kek,
	 const struct sbx_kdf_params *p, const char *mailbox_id, struct sbx_mailbox_keys **keys_r)
{
	char *error = NULL;
	int ret;

	*keys_r = NULL;
	ret = sbx_envelope_open(data, size, kek, p, mailbox_id, keys_r, &error);
	if (ret < 0) {
		SBXF_ASSERT(*keys_r == NULL);
		SBXF_ASSERT(error != NULL);
	} else {
		SBXF_ASSERT(ret == 0 && *keys_r != NULL);
	}
	free(error);
	return ret;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char dummy_kek[SBX_KEY_BYTES], seed_kek[SBX_KEY_BYTES];
	struct sbx_kdf_params fixed, parsed;
	struct sbx_mailbox_keys expect, *keys;
	char id[SBX_MAX_ENVELOPE_ID_LEN + 1], small[4];
	char *error = NULL;
	int have_params;
	size_t i, n;

	sbxf_init();
	sbxf_kdf_params(&fixed);
	sbxf_kek(dummy_kek, 0);
	sbxf_kek(seed_kek, 1);

	have_params = sbx_envelope_params(data, size, &parsed, &error) == 0;
	SBXF_ASSERT(have_params ? error == NULL : error != NULL);
	free(error);
	error = NULL;

	if (sbx_envelope_id(data, size, id, sizeof(id)) == 0) {
		n = strlen(id);
		SBXF_ASSERT(n >= 1 && n <= SBX_MAX_ENVELOPE_ID_LEN);
		for (i = 0; i < n; i++)
			SBXF_ASSERT(id[i] >= 0x20 && id[i] <= 0x7e);
		/* A buffer too small for the id is refused, not overrun. */
		if (n + 1 > sizeof(small))
			SBXF_ASSERT(sbx_envelope_id(data, size, small, sizeof(small)) < 0);
	} else {
		/* Whatever has a valid policy has a valid id. */
		SBXF_ASSERT(!have_params);
	}

	/* The dummy KEK opens nothing, whatever the parameters. */
	SBXF_ASSERT(try_open(data, size, dummy_kek, &fixed, SBXF_MAILBOX_ID, &keys) < 0);
	if (have_params)
		SBXF_ASSERT(try_open(data, size, dummy_kek, &parsed, SBXF_MAILBOX_ID, &keys) < 0);

	/* The seed KEK opens only unmodified seeds, and then gives their keys. */
	if (!have_params || try_open(data, size, seed_kek, &parsed, SBXF_MAILBOX_ID, &keys) < 0)
		return 0;
	sbxf_mailbox_keys(&expect);
	SBXF_ASSERT(memcmp(keys->mk, expect.mk, SBX_KEY_BYTES) == 0);
	SBXF_ASSERT(memcmp(keys->spool_sk, expect.spool_sk, SBX_KEY_BYTES) == 0);
	SBXF_ASSERT(memcmp(keys->spool_pk, expect.spool_pk, SBX_KEY_BYTES) == 0);
	sbx_keys_free(&keys);
	SBXF_ASSERT(try_open(data, size, seed_kek, &parsed, SBXF_OTHER_MBOX, &keys) < 0);
	if (size > 0) {
		uint8_t *copy = malloc(size);

		SBXF_ASSERT(copy != NULL);
		for (i = 0; i < size; i++) {
			memcpy(copy, data, size);
			copy[i] ^= 0x01;
			/* The salt or limits may change with the flip: open with the
			 * parameters the flipped copy claims when it has any. */
			if (sbx_envelope_params(copy, size, &parsed, NULL) == 0)
				SBXF_ASSERT(try_open(copy, size, seed_kek, &parsed, SBXF_MAILBOX_ID, &keys) < 0);
		}
		free(copy);
	}
	return 0;
}
