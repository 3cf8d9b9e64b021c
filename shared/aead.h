/*
 * aead.h - XChaCha20-Poly1305 (detached tag) for the encrypted VFS.
 *
 * XChaCha20-Poly1305 is HChaCha20(key, nonce[0..15]) -> subkey, then the
 * RFC 8439 ChaCha20-Poly1305 AEAD under that subkey with the 12-byte nonce
 * 0x00000000 || nonce[16..23] (draft-irtf-cfrg-xchacha; libsodium's
 * crypto_aead_xchacha20poly1305_ietf_* compute exactly this). HChaCha20 comes
 * from libsodium; the AEAD itself from OpenSSL's EVP_chacha20_poly1305, whose
 * AVX-512/AVX2 code is about twice as fast as libsodium 1.0.18's here:
 * 2.0 against 4.2 us per 4 KiB page (bench/RESULTS.md). The output is
 * byte-identical to libsodium's; test_aead checks both directions.
 *
 * A context is not thread-safe: use one per file handle. OpenSSL keeps the
 * last subkey in its cipher context (heap memory, cleansed when freed).
 */
#ifndef SBX_AEAD_H
#define SBX_AEAD_H
#include <stddef.h>

#define SBX_AEAD_KEYBYTES   32
#define SBX_AEAD_NPUBBYTES  24
#define SBX_AEAD_ABYTES     16

struct sbx_aead;

/* NULL when OpenSSL cannot provide ChaCha20-Poly1305. */
struct sbx_aead *sbx_aead_new(void);
void sbx_aead_free(struct sbx_aead **a);

/* c may equal m (in place); otherwise they must not overlap. 0 or -1. */
int sbx_aead_seal(struct sbx_aead *a, unsigned char *c, unsigned char tag[SBX_AEAD_ABYTES],
		  const unsigned char *m, size_t mlen, const unsigned char *ad, size_t adlen,
		  const unsigned char nonce[SBX_AEAD_NPUBBYTES], const unsigned char key[SBX_AEAD_KEYBYTES]);
/* m may equal c. 0, or -1 when the tag does not verify (m is then wiped). */
int sbx_aead_open(struct sbx_aead *a, unsigned char *m, const unsigned char *c, size_t clen,
		  const unsigned char tag[SBX_AEAD_ABYTES], const unsigned char *ad, size_t adlen,
		  const unsigned char nonce[SBX_AEAD_NPUBBYTES], const unsigned char key[SBX_AEAD_KEYBYTES]);
#endif
