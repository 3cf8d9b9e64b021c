/* keys.c - see keys.h. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "keys.h"
#include "sbx_limits.h"
#include "util.h"

#define KDF_CONTEXT "sbxkeys1"

#define ENV_MAGIC      "SBXE"
#define ENV_MAGIC_LEN  4
#define ENV_NONCE_LEN  crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define ENV_TAG_LEN    crypto_aead_xchacha20poly1305_ietf_ABYTES
/* magic | version | alg | opslimit | memlimit | salt | nonce | id_len */
#define ENV_NONCE_OFF  (ENV_MAGIC_LEN + 1 + 1 + 8 + 8 + SBX_SALT_BYTES)
#define ENV_FIXED_LEN  (ENV_NONCE_OFF + ENV_NONCE_LEN + 1)
#define PAYLOAD_VERSION 1
#define PAYLOAD_LEN    (1 + SBX_KEY_BYTES + SBX_KEY_BYTES)
#define ENV_CT_LEN     (PAYLOAD_LEN + ENV_TAG_LEN)

/* Policy floor and ceiling for Argon2id parameters. */
#define KDF_OPS_MIN    ((uint64_t)crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE)
#define KDF_MEM_MIN    ((uint64_t)crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE)
#define KDF_OPS_MAX    ((uint64_t)crypto_pwhash_argon2id_OPSLIMIT_MAX)
#define KDF_MEM_MAX    ((uint64_t)crypto_pwhash_argon2id_MEMLIMIT_MAX)

_Static_assert(crypto_kdf_KEYBYTES == SBX_KEY_BYTES, "MK size");
_Static_assert(crypto_kdf_CONTEXTBYTES == sizeof(KDF_CONTEXT) - 1, "kdf context size");
_Static_assert(crypto_scalarmult_curve25519_BYTES == SBX_KEY_BYTES, "X25519 public key size");
_Static_assert(crypto_scalarmult_curve25519_SCALARBYTES == SBX_KEY_BYTES, "X25519 secret key size");
_Static_assert(crypto_box_PUBLICKEYBYTES == SBX_KEY_BYTES, "box public key size");
_Static_assert(crypto_box_SECRETKEYBYTES == SBX_KEY_BYTES, "box secret key size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == SBX_KEY_BYTES, "KEK size");
_Static_assert(crypto_pwhash_argon2id_SALTBYTES == SBX_SALT_BYTES, "salt size");
_Static_assert(ENV_FIXED_LEN + SBX_MAX_ENVELOPE_ID_LEN + ENV_CT_LEN <= SBX_MAX_ENVELOPE_BLOB,
	       "largest envelope fits SBX_MAX_ENVELOPE_BLOB");
_Static_assert(SBX_MAX_ENVELOPE_ID_LEN <= 255, "id_len is one byte");

static atomic_ulong kdf_runs;

/* A serialized envelope, split into its fields (pointers into the blob). */
struct envelope {
	uint64_t opslimit;
	uint64_t memlimit;
	const unsigned char *salt;
	const unsigned char *nonce;
	const unsigned char *id;
	size_t id_len;
	size_t header_len;          /* bytes before the ciphertext */
	const unsigned char *ct;
	size_t ct_len;
};

static void
set_error(char **error_r, char *msg)
{
	if (error_r != NULL)
		*error_r = msg;
	else
		free(msg);
}

/* Envelope ids are printable ASCII: they are stored next to the blob, shown
 * by sealboxctl and end at the NUL that separates them in the AD. */
static int
id_valid(const unsigned char *id, size_t len)
{
	size_t i;

	if (len < 1 || len > SBX_MAX_ENVELOPE_ID_LEN)
		return 0;
	for (i = 0; i < len; i++)
		if (id[i] < 0x20 || id[i] > 0x7e)
			return 0;
	return 1;
}

/* from_envelope: the values come from a stored envelope (a value below the
 * floor there means someone rewrote it), not from configuration. */
static int
params_check(uint64_t opslimit, uint64_t memlimit, int from_envelope, char **error_r)
{
	if (opslimit < KDF_OPS_MIN || memlimit < KDF_MEM_MIN) {
		if (from_envelope)
			set_error(error_r, sbx_xstrdup("key envelope parameters below policy floor (downgrade?)"));
		else
			set_error(error_r, sbx_xasprintf("KDF parameters below policy floor "
				"(opslimit %llu < %llu or memlimit %llu < %llu)",
				(unsigned long long)opslimit, (unsigned long long)KDF_OPS_MIN,
				(unsigned long long)memlimit, (unsigned long long)KDF_MEM_MIN));
		return -1;
	}
	if (opslimit > KDF_OPS_MAX || memlimit > KDF_MEM_MAX) {
		set_error(error_r, sbx_xasprintf("%s parameters above libsodium's maximum "
			"(opslimit %llu, memlimit %llu)", from_envelope ? "key envelope" : "KDF",
			(unsigned long long)opslimit, (unsigned long long)memlimit));
		return -1;
	}
	return 0;
}

/* Split blob into e. Strict: exact magic, version, algorithm, id length and
 * total length. check_policy: also refuse parameters outside the policy. */
static int
envelope_parse(const unsigned char *blob, size_t len, int check_policy,
	       struct envelope *e, char **error_r)
{
	const unsigned char *p = blob;

	if (blob == NULL || len < ENV_FIXED_LEN + 1 + ENV_CT_LEN) {
		set_error(error_r, sbx_xasprintf("key envelope too short (%zu bytes)", blob ? len : 0));
		return -1;
	}
	if (len > SBX_MAX_ENVELOPE_BLOB) {
		set_error(error_r, sbx_xasprintf("key envelope too long (%zu bytes)", len));
		return -1;
	}
	if (memcmp(p, ENV_MAGIC, ENV_MAGIC_LEN) != 0) {
		set_error(error_r, sbx_xstrdup("not a key envelope (bad magic)"));
		return -1;
	}
	p += ENV_MAGIC_LEN;
	if (*p != SBX_ENVELOPE_VERSION) {
		set_error(error_r, sbx_xasprintf("unsupported key envelope version %u", *p));
		return -1;
	}
	p++;
	if (*p != SBX_ENVELOPE_ALG_ARGON2ID_XCHACHA) {
		set_error(error_r, sbx_xasprintf("unsupported key envelope algorithm %u", *p));
		return -1;
	}
	p++;
	e->opslimit = sbx_get_be64(p);
	p += 8;
	e->memlimit = sbx_get_be64(p);
	p += 8;
	e->salt = p;
	p += SBX_SALT_BYTES;
	e->nonce = p;
	p += ENV_NONCE_LEN;
	e->id_len = *p++;
	e->id = p;
	if (e->id_len < 1 || e->id_len > SBX_MAX_ENVELOPE_ID_LEN) {
		set_error(error_r, sbx_xasprintf("bad key envelope id length %zu", e->id_len));
		return -1;
	}
	/* Both sides are small (checked above), so the sum cannot overflow. */
	if (len != ENV_FIXED_LEN + e->id_len + ENV_CT_LEN) {
		set_error(error_r, sbx_xasprintf("key envelope length %zu, expected %zu",
			len, (size_t)(ENV_FIXED_LEN + e->id_len + ENV_CT_LEN)));
		return -1;
	}
	if (!id_valid(e->id, e->id_len)) {
		set_error(error_r, sbx_xstrdup("key envelope id is not printable ASCII"));
		return -1;
	}
	e->header_len = ENV_FIXED_LEN + e->id_len;
	e->ct = blob + e->header_len;
	e->ct_len = ENV_CT_LEN;
	if (check_policy && params_check(e->opslimit, e->memlimit, 1, error_r) < 0)
		return -1;
	return 0;
}

/* AD = mailbox id || 0 || envelope id || 0 || header; malloc'd. */
static unsigned char *
ad_build(const char *mailbox_id, const unsigned char *id, size_t id_len,
	 const unsigned char *header, size_t header_len, size_t *len_r)
{
	size_t mlen = strlen(mailbox_id);
	size_t n = mlen + 1 + id_len + 1 + header_len;
	unsigned char *ad = sbx_xmalloc(n);
	unsigned char *p = ad;

	memcpy(p, mailbox_id, mlen);
	p += mlen;
	*p++ = 0;
	memcpy(p, id, id_len);
	p += id_len;
	*p++ = 0;
	memcpy(p, header, header_len);
	*len_r = n;
	return ad;
}

static int
mailbox_id_check(const char *mailbox_id, char **error_r)
{
	if (mailbox_id == NULL || *mailbox_id == '\0') {
		set_error(error_r, sbx_xstrdup("empty mailbox id"));
		return -1;
	}
	return 0;
}

int
sbx_keys_init(void)
{
	if (sodium_init() < 0)
		return -1;
	if (crypto_pwhash_alg_argon2id13() != crypto_pwhash_ALG_ARGON2ID13)
		return -1;
	return 0;
}

unsigned long
sbx_keys_kdf_runs(void)
{
	return atomic_load(&kdf_runs);
}

struct sbx_mailbox_keys *
sbx_keys_generate(void)
{
	struct sbx_mailbox_keys *keys = sbx_secure_xmalloc(sizeof(*keys));

	randombytes_buf(keys->mk, sizeof(keys->mk));
	/* Random secret key, public key = X25519 base point multiple of it. */
	crypto_box_keypair(keys->spool_pk, keys->spool_sk);
	return keys;
}

void
sbx_keys_free(struct sbx_mailbox_keys **keys)
{
	if (keys == NULL || *keys == NULL)
		return;
	sodium_memzero(*keys, sizeof(**keys));
	sodium_free(*keys);
	*keys = NULL;
}

void
sbx_keys_derive(const struct sbx_mailbox_keys *keys, uint64_t subkey_id,
		unsigned char out[SBX_KEY_BYTES])
{
	crypto_kdf_derive_from_key(out, SBX_KEY_BYTES, subkey_id, KDF_CONTEXT, keys->mk);
}

int
sbx_kdf_params_new(uint64_t opslimit, uint64_t memlimit, struct sbx_kdf_params *p_r, char **error_r)
{
	if (params_check(opslimit, memlimit, 0, error_r) < 0)
		return -1;
	p_r->opslimit = opslimit;
	p_r->memlimit = memlimit;
	randombytes_buf(p_r->salt, sizeof(p_r->salt));
	return 0;
}

int
sbx_envelope_params(const unsigned char *blob, size_t len, struct sbx_kdf_params *p_r, char **error_r)
{
	struct envelope e;

	if (envelope_parse(blob, len, 1, &e, error_r) < 0)
		return -1;
	p_r->opslimit = e.opslimit;
	p_r->memlimit = e.memlimit;
	memcpy(p_r->salt, e.salt, SBX_SALT_BYTES);
	return 0;
}

int
sbx_kek_derive(const char *password, size_t pwlen, const struct sbx_kdf_params *p,
	       unsigned char **kek_r, char **error_r)
{
	unsigned char *kek;

	*kek_r = NULL;
	if (password == NULL || pwlen < 1 || pwlen > SBX_MAX_PASSWORD_LEN) {
		set_error(error_r, sbx_xasprintf("password length must be 1..%d bytes",
			SBX_MAX_PASSWORD_LEN));
		return -1;
	}
	/* The policy check comes before any Argon2id work. */
	if (params_check(p->opslimit, p->memlimit, 0, error_r) < 0)
		return -1;
	kek = sbx_secure_xmalloc(SBX_KEY_BYTES);
	atomic_fetch_add(&kdf_runs, 1);
	if (crypto_pwhash(kek, SBX_KEY_BYTES, password, pwlen, p->salt,
			  (unsigned long long)p->opslimit, (size_t)p->memlimit,
			  crypto_pwhash_ALG_ARGON2ID13) != 0) {
		sodium_memzero(kek, SBX_KEY_BYTES);
		sodium_free(kek);
		set_error(error_r, sbx_xasprintf("Argon2id failed (out of memory for memlimit %llu?)",
			(unsigned long long)p->memlimit));
		return -1;
	}
	*kek_r = kek;
	return 0;
}

void
sbx_kek_free(unsigned char **kek)
{
	if (kek == NULL || *kek == NULL)
		return;
	sodium_memzero(*kek, SBX_KEY_BYTES);
	sodium_free(*kek);
	*kek = NULL;
}

int
sbx_envelope_seal(const struct sbx_mailbox_keys *keys, const unsigned char *kek,
		  const struct sbx_kdf_params *p, const char *mailbox_id, const char *envelope_id,
		  unsigned char **blob_r, size_t *len_r, char **error_r)
{
	unsigned char *blob, *payload, *ad, *h;
	size_t id_len, len, header_len, ad_len;
	unsigned long long ct_len;
	int ret;

	*blob_r = NULL;
	*len_r = 0;
	if (keys == NULL || kek == NULL || p == NULL) {
		set_error(error_r, sbx_xstrdup("key envelope seal: missing keys, KEK or parameters"));
		return -1;
	}
	if (mailbox_id_check(mailbox_id, error_r) < 0)
		return -1;
	id_len = envelope_id != NULL ? strlen(envelope_id) : 0;
	if (!id_valid((const unsigned char *)envelope_id, id_len)) {
		set_error(error_r, sbx_xasprintf("envelope id must be 1..%d printable ASCII characters",
			SBX_MAX_ENVELOPE_ID_LEN));
		return -1;
	}
	if (params_check(p->opslimit, p->memlimit, 0, error_r) < 0)
		return -1;

	header_len = ENV_FIXED_LEN + id_len;
	len = header_len + ENV_CT_LEN;
	blob = sbx_xmalloc(len);
	h = blob;
	memcpy(h, ENV_MAGIC, ENV_MAGIC_LEN);
	h += ENV_MAGIC_LEN;
	*h++ = SBX_ENVELOPE_VERSION;
	*h++ = SBX_ENVELOPE_ALG_ARGON2ID_XCHACHA;
	sbx_put_be64(h, p->opslimit);
	h += 8;
	sbx_put_be64(h, p->memlimit);
	h += 8;
	memcpy(h, p->salt, SBX_SALT_BYTES);
	h += SBX_SALT_BYTES;
	randombytes_buf(h, ENV_NONCE_LEN);
	h += ENV_NONCE_LEN;
	*h++ = (unsigned char)id_len;
	memcpy(h, envelope_id, id_len);

	payload = sbx_secure_xmalloc(PAYLOAD_LEN);
	payload[0] = PAYLOAD_VERSION;
	memcpy(payload + 1, keys->mk, SBX_KEY_BYTES);
	memcpy(payload + 1 + SBX_KEY_BYTES, keys->spool_sk, SBX_KEY_BYTES);

	ad = ad_build(mailbox_id, (const unsigned char *)envelope_id, id_len, blob, header_len, &ad_len);
	ret = crypto_aead_xchacha20poly1305_ietf_encrypt(blob + header_len, &ct_len,
		payload, PAYLOAD_LEN, ad, ad_len, NULL,
		blob + ENV_NONCE_OFF, kek);
	sodium_memzero(payload, PAYLOAD_LEN);
	sodium_free(payload);
	free(ad);
	if (ret != 0 || ct_len != ENV_CT_LEN) {
		free(blob);
		set_error(error_r, sbx_xstrdup("key envelope encryption failed"));
		return -1;
	}
	*blob_r = blob;
	*len_r = len;
	return 0;
}

/* Decrypt a parsed envelope. Returns 0 and *keys_r, -1 on MAC failure (no
 * message: the caller decides what to say), -2 + *error_r on a payload that
 * authenticated but is not one we understand. */
static int
envelope_decrypt(const struct envelope *e, const unsigned char *blob, const unsigned char *kek,
		 const char *mailbox_id, struct sbx_mailbox_keys **keys_r, char **error_r)
{
	struct sbx_mailbox_keys *keys;
	unsigned char *payload, *ad;
	unsigned long long plen = 0;
	size_t ad_len;
	int ret;

	ad = ad_build(mailbox_id, e->id, e->id_len, blob, e->header_len, &ad_len);
	payload = sbx_secure_xmalloc(PAYLOAD_LEN);
	ret = crypto_aead_xchacha20poly1305_ietf_decrypt(payload, &plen, NULL,
		e->ct, e->ct_len, ad, ad_len, e->nonce, kek);
	free(ad);
	if (ret != 0) {
		sodium_memzero(payload, PAYLOAD_LEN);
		sodium_free(payload);
		return -1;
	}
	if (plen != PAYLOAD_LEN || payload[0] != PAYLOAD_VERSION) {
		unsigned int version = plen > 0 ? payload[0] : 0;

		sodium_memzero(payload, PAYLOAD_LEN);
		sodium_free(payload);
		set_error(error_r, sbx_xasprintf("unsupported key envelope payload version %u", version));
		return -2;
	}
	keys = sbx_secure_xmalloc(sizeof(*keys));
	memcpy(keys->mk, payload + 1, SBX_KEY_BYTES);
	memcpy(keys->spool_sk, payload + 1 + SBX_KEY_BYTES, SBX_KEY_BYTES);
	sodium_memzero(payload, PAYLOAD_LEN);
	sodium_free(payload);
	if (crypto_scalarmult_base(keys->spool_pk, keys->spool_sk) != 0) {
		sbx_keys_free(&keys);
		set_error(error_r, sbx_xstrdup("key envelope holds an unusable spool key"));
		return -2;
	}
	*keys_r = keys;
	return 0;
}

static int
params_equal(const struct envelope *e, const struct sbx_kdf_params *p)
{
	/* The salt and parameters are public; no need for constant time. */
	return e->opslimit == p->opslimit && e->memlimit == p->memlimit &&
		memcmp(e->salt, p->salt, SBX_SALT_BYTES) == 0;
}

int
sbx_envelope_open(const unsigned char *blob, size_t len, const unsigned char *kek,
		  const struct sbx_kdf_params *p, const char *mailbox_id,
		  struct sbx_mailbox_keys **keys_r, char **error_r)
{
	struct envelope e;
	int ret;

	*keys_r = NULL;
	if (kek == NULL || p == NULL) {
		set_error(error_r, sbx_xstrdup("key envelope open: missing KEK or parameters"));
		return -1;
	}
	if (mailbox_id_check(mailbox_id, error_r) < 0)
		return -1;
	if (envelope_parse(blob, len, 1, &e, error_r) < 0)
		return -1;
	if (!params_equal(&e, p)) {
		set_error(error_r, sbx_xstrdup("key envelope parameters differ from the KEK's"));
		return -1;
	}
	ret = envelope_decrypt(&e, blob, kek, mailbox_id, keys_r, error_r);
	if (ret == -1)
		set_error(error_r, sbx_xstrdup("key envelope does not open "
			"(wrong password, tampered, or another mailbox's)"));
	return ret < 0 ? -1 : 0;
}

int
sbx_envelope_unlock(const unsigned char *const *blobs, const size_t *lens, size_t n,
		    const char *mailbox_id, const char *password, size_t pwlen,
		    struct sbx_mailbox_keys **keys_r, size_t *which_r, char **error_r)
{
	struct envelope e[SBX_MAX_ENVELOPES];
	int ok[SBX_MAX_ENVELOPES], tried[SBX_MAX_ENVELOPES];
	struct sbx_mailbox_keys *found = NULL, *k;
	struct sbx_kdf_params p;
	unsigned char *kek;
	char *first_error = NULL, *err;
	size_t i, j, which = 0;
	int ret;

	*keys_r = NULL;
	if (n == 0 || blobs == NULL || lens == NULL) {
		set_error(error_r, sbx_xstrdup("mailbox has no key envelopes"));
		return -1;
	}
	if (n > SBX_MAX_ENVELOPES) {
		set_error(error_r, sbx_xasprintf("mailbox has %zu key envelopes, more than %d",
			n, SBX_MAX_ENVELOPES));
		return -1;
	}
	if (mailbox_id_check(mailbox_id, error_r) < 0)
		return -1;
	if (password == NULL || pwlen < 1 || pwlen > SBX_MAX_PASSWORD_LEN) {
		set_error(error_r, sbx_xasprintf("password length must be 1..%d bytes",
			SBX_MAX_PASSWORD_LEN));
		return -1;
	}

	/* Parse everything first. A malformed or downgraded envelope is never
	 * tried (no KDF run for it); the others still are, so one damaged app
	 * password does not lock the mailbox. Its error is reported only when
	 * nothing opened. */
	for (i = 0; i < n; i++) {
		err = NULL;
		ok[i] = envelope_parse(blobs[i], lens[i], 1, &e[i], &err) == 0;
		tried[i] = 0;
		if (!ok[i] && first_error == NULL)
			first_error = sbx_xasprintf("key envelope %zu: %s", i, err);
		free(err);
	}

	/* One Argon2id per distinct (salt, opslimit, memlimit), in order of first
	 * appearance; every envelope of a group is tried with its KEK, even after
	 * one opened, so the time taken does not depend on which one did. */
	for (i = 0; i < n && found == NULL; i++) {
		if (!ok[i] || tried[i])
			continue;
		p.opslimit = e[i].opslimit;
		p.memlimit = e[i].memlimit;
		memcpy(p.salt, e[i].salt, SBX_SALT_BYTES);
		err = NULL;
		if (sbx_kek_derive(password, pwlen, &p, &kek, &err) < 0) {
			free(first_error);
			set_error(error_r, err);
			return -1;
		}
		for (j = i; j < n; j++) {
			if (!ok[j] || tried[j] || !params_equal(&e[j], &p))
				continue;
			tried[j] = 1;
			k = NULL;
			err = NULL;
			ret = envelope_decrypt(&e[j], blobs[j], kek, mailbox_id, &k, &err);
			if (ret == 0 && found == NULL) {
				found = k;
				which = j;
			} else if (ret == 0) {
				sbx_keys_free(&k);
			} else if (ret == -2 && first_error == NULL) {
				first_error = sbx_xasprintf("key envelope %zu: %s", j, err);
			}
			free(err);
		}
		sbx_kek_free(&kek);
	}

	if (found == NULL) {
		set_error(error_r, first_error != NULL ? first_error : sbx_xstrdup("wrong password"));
		return -1;
	}
	free(first_error);
	*keys_r = found;
	if (which_r != NULL)
		*which_r = which;
	return 0;
}

int
sbx_envelope_id(const unsigned char *blob, size_t len, char *out, size_t outsz)
{
	struct envelope e;

	/* No policy check: a downgraded envelope must still be nameable, so an
	 * admin can list and delete it. */
	if (envelope_parse(blob, len, 0, &e, NULL) < 0 || outsz < e.id_len + 1)
		return -1;
	memcpy(out, e.id, e.id_len);
	out[e.id_len] = '\0';
	return 0;
}

void
sbx_password_generate(char *out, size_t outsz)
{
	/* No 0/O/o, 1/l/I: 56 symbols, log2(56) * 24 = 139 bits. */
	static const char alphabet[] =
		"23456789"
		"abcdefghijkmnpqrstuvwxyz"
		"ABCDEFGHJKLMNPQRSTUVWXYZ";
	size_t i;

	if (outsz < 25) {
		fprintf(stderr, "sealbox: sbx_password_generate: buffer of %zu bytes < 25\n", outsz);
		abort();
	}
	for (i = 0; i < 24; i++)
		out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
	out[24] = '\0';
}
