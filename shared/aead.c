/* aead.c - see aead.h. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "aead.h"

struct sbx_aead {
	EVP_CIPHER_CTX *ctx;
	int initialised;   /* cipher set; later inits pass only key and IV */
};

struct sbx_aead *
sbx_aead_new(void)
{
	struct sbx_aead *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->ctx = EVP_CIPHER_CTX_new();
	if (a->ctx == NULL) {
		free(a);
		return NULL;
	}
	return a;
}

void
sbx_aead_free(struct sbx_aead **ap)
{
	if (*ap == NULL)
		return;
	EVP_CIPHER_CTX_free((*ap)->ctx);   /* cleanses the key state */
	free(*ap);
	*ap = NULL;
}

/* Derive the XChaCha20 subkey and the RFC 8439 nonce, and key the context
 * for encryption (enc = 1) or decryption (enc = 0). */
static int
setup(struct sbx_aead *a, const unsigned char nonce[SBX_AEAD_NPUBBYTES],
      const unsigned char key[SBX_AEAD_KEYBYTES], int enc)
{
	unsigned char subkey[32], n12[12];
	int ok;

	crypto_core_hchacha20(subkey, nonce, key, NULL);
	memset(n12, 0, 4);
	memcpy(n12 + 4, nonce + 16, 8);
	if (!a->initialised) {
		ok = EVP_CipherInit_ex(a->ctx, EVP_chacha20_poly1305(), NULL, NULL, NULL, enc) == 1 &&
		     EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) == 1;
		if (!ok) {
			sodium_memzero(subkey, sizeof(subkey));
			return -1;
		}
		a->initialised = 1;
	}
	ok = EVP_CipherInit_ex(a->ctx, NULL, NULL, subkey, n12, enc) == 1;
	sodium_memzero(subkey, sizeof(subkey));
	return ok ? 0 : -1;
}

int
sbx_aead_seal(struct sbx_aead *a, unsigned char *c, unsigned char tag[SBX_AEAD_ABYTES],
	      const unsigned char *m, size_t mlen, const unsigned char *ad, size_t adlen,
	      const unsigned char nonce[SBX_AEAD_NPUBBYTES], const unsigned char key[SBX_AEAD_KEYBYTES])
{
	int outl = 0, fin = 0;

	if (mlen > INT_MAX || adlen > INT_MAX || setup(a, nonce, key, 1) < 0)
		return -1;
	if ((adlen > 0 && EVP_CipherUpdate(a->ctx, NULL, &outl, ad, (int)adlen) != 1) ||
	    EVP_CipherUpdate(a->ctx, c, &outl, m, (int)mlen) != 1 ||
	    EVP_CipherFinal_ex(a->ctx, c + outl, &fin) != 1 ||
	    (size_t)(outl + fin) != mlen ||
	    EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, SBX_AEAD_ABYTES, tag) != 1)
		return -1;
	return 0;
}

int
sbx_aead_open(struct sbx_aead *a, unsigned char *m, const unsigned char *c, size_t clen,
	      const unsigned char tag[SBX_AEAD_ABYTES], const unsigned char *ad, size_t adlen,
	      const unsigned char nonce[SBX_AEAD_NPUBBYTES], const unsigned char key[SBX_AEAD_KEYBYTES])
{
	unsigned char t[SBX_AEAD_ABYTES];
	int outl = 0, fin = 0;

	if (clen > INT_MAX || adlen > INT_MAX || setup(a, nonce, key, 0) < 0)
		return -1;
	memcpy(t, tag, sizeof(t));
	if (EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, SBX_AEAD_ABYTES, t) != 1 ||
	    (adlen > 0 && EVP_CipherUpdate(a->ctx, NULL, &outl, ad, (int)adlen) != 1) ||
	    EVP_CipherUpdate(a->ctx, m, &outl, c, (int)clen) != 1)
		goto fail;
	/* Final verifies the tag (in constant time); on failure the decrypted
	 * bytes must not be used. */
	if (EVP_CipherFinal_ex(a->ctx, m + outl, &fin) != 1 || (size_t)(outl + fin) != clen)
		goto fail;
	return 0;
fail:
	sodium_memzero(m, clen);
	return -1;
}
