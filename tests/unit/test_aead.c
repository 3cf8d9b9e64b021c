/*
 * test_aead.c - sbx_aead (OpenSSL ChaCha20-Poly1305 + libsodium HChaCha20)
 * must be byte-identical to libsodium's XChaCha20-Poly1305-IETF, in both
 * directions, and refuse every tampered input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "aead.h"
#include "tap.h"

static const size_t lens[] = { 0, 1, 15, 16, 63, 64, 65, 4032, 4056, 4072, 65536 };

TEST(identical_to_libsodium)
{
	struct sbx_aead *a = sbx_aead_new();
	unsigned char key[32], nonce[24], ad[40], *m, *c1, *c2, tag1[16], tag2[16];
	size_t i, r;
	int mismatches = 0;

	CHECK(a != NULL);
	if (a == NULL)
		return;
	m = malloc(65536);
	c1 = malloc(65536);
	c2 = malloc(65536);
	for (r = 0; r < 20; r++) {
		for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			size_t adlen = r % 3 == 0 ? 0 : (size_t)randombytes_uniform(sizeof(ad) + 1);

			randombytes_buf(key, sizeof(key));
			randombytes_buf(nonce, sizeof(nonce));
			randombytes_buf(ad, sizeof(ad));
			randombytes_buf(m, lens[i]);
			crypto_aead_xchacha20poly1305_ietf_encrypt_detached(c1, tag1, NULL, m, lens[i], ad, adlen,
									    NULL, nonce, key);
			if (sbx_aead_seal(a, c2, tag2, m, lens[i], ad, adlen, nonce, key) != 0 ||
			    memcmp(c1, c2, lens[i]) != 0 || memcmp(tag1, tag2, 16) != 0)
				mismatches++;
			/* libsodium opens ours; we open libsodium's, in place. */
			if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(c2, NULL, c2, lens[i], tag2, ad,
										adlen, nonce, key) != 0 ||
			    memcmp(c2, m, lens[i]) != 0)
				mismatches++;
			if (sbx_aead_open(a, c1, c1, lens[i], tag1, ad, adlen, nonce, key) != 0 ||
			    memcmp(c1, m, lens[i]) != 0)
				mismatches++;
		}
	}
	CHECKF(mismatches == 0, "%d mismatches", mismatches);
	free(m);
	free(c1);
	free(c2);
	sbx_aead_free(&a);
	CHECK(a == NULL);
}

TEST(tampering_refused)
{
	struct sbx_aead *a = sbx_aead_new();
	unsigned char key[32], nonce[24], ad[28], m[4056], c[4056], out[4056], tag[16];
	int accepted = 0, i;

	if (a == NULL) {
		CHECK(a != NULL);
		return;
	}
	randombytes_buf(key, sizeof(key));
	randombytes_buf(nonce, sizeof(nonce));
	randombytes_buf(ad, sizeof(ad));
	randombytes_buf(m, sizeof(m));
	CHECK(sbx_aead_seal(a, c, tag, m, sizeof(m), ad, sizeof(ad), nonce, key) == 0);
	CHECK(sbx_aead_open(a, out, c, sizeof(c), tag, ad, sizeof(ad), nonce, key) == 0);
	CHECK(memcmp(out, m, sizeof(m)) == 0);
	for (i = 0; i < 200; i++) {
		unsigned char c2[4056], t2[16], ad2[28], n2[24], k2[32];
		unsigned which = randombytes_uniform(5);

		memcpy(c2, c, sizeof(c));
		memcpy(t2, tag, sizeof(tag));
		memcpy(ad2, ad, sizeof(ad));
		memcpy(n2, nonce, sizeof(nonce));
		memcpy(k2, key, sizeof(key));
		switch (which) {
		case 0: c2[randombytes_uniform(sizeof(c2))] ^= 1; break;
		case 1: t2[randombytes_uniform(sizeof(t2))] ^= 0x80; break;
		case 2: ad2[randombytes_uniform(sizeof(ad2))] ^= 4; break;
		case 3: n2[randombytes_uniform(sizeof(n2))] ^= 2; break;
		default: k2[randombytes_uniform(sizeof(k2))] ^= 8; break;
		}
		memset(out, 0xaa, sizeof(out));
		if (sbx_aead_open(a, out, c2, sizeof(c2), t2, ad2, sizeof(ad2), n2, k2) == 0)
			accepted++;
		else if (out[0] != 0 || out[sizeof(out) - 1] != 0)
			accepted += 1000;   /* failed open must not leave plaintext */
	}
	CHECKF(accepted == 0, "%d tampered inputs accepted or left plaintext", accepted);
	/* The context keeps working after failures. */
	CHECK(sbx_aead_open(a, out, c, sizeof(c), tag, ad, sizeof(ad), nonce, key) == 0);
	sbx_aead_free(&a);
}

int
main(void)
{
	if (sodium_init() < 0)
		return 2;
	RUN(identical_to_libsodium);
	RUN(tampering_refused);
	return tap_done();
}
