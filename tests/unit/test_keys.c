/* test_keys.c - keys.c: subkeys, envelopes, unlock, downgrade and tamper refusal.
 *
 * Argon2id is the only slow part (~0.1-0.3 s per INTERACTIVE run), so the
 * KEKs of the three fixture passwords are derived once and reused; every
 * test that runs the KDF says how many times it expects it to. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "keys.h"
#include "sbx_limits.h"
#include "tap.h"
#include "util.h"

#define OPS  crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE
#define MEM  crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE

/* Byte offsets of the serialized envelope (keys.h). */
#define OFF_MAGIC    0
#define OFF_VERSION  4
#define OFF_ALG      5
#define OFF_OPS      6
#define OFF_MEM      14
#define OFF_SALT     22
#define OFF_NONCE    38
#define OFF_IDLEN    62
#define OFF_ID       63
#define CT_LEN       (65 + 16)

static const char *mailbox_a = "0123456789abcdef0123456789abcdef";
static const char *mailbox_b = "fedcba9876543210fedcba9876543210";
static const char *pw[3] = { "correct horse battery", "phone app password", "laptop app password" };
static const char *env_ids[3] = { "default", "phone", "laptop" };

/* Fixture: one mailbox, three envelopes sharing params P. */
static struct sbx_mailbox_keys *K;
static struct sbx_kdf_params P;
static unsigned char *kek[3];
static unsigned char *env[3];
static size_t env_len[3];

static int
keys_equal(const struct sbx_mailbox_keys *a, const struct sbx_mailbox_keys *b)
{
	return a != NULL && b != NULL &&
		sodium_memcmp(a->mk, b->mk, SBX_KEY_BYTES) == 0 &&
		sodium_memcmp(a->spool_sk, b->spool_sk, SBX_KEY_BYTES) == 0 &&
		sodium_memcmp(a->spool_pk, b->spool_pk, SBX_KEY_BYTES) == 0;
}

static int
contains(const char *s, const char *sub)
{
	return s != NULL && strstr(s, sub) != NULL;
}

static unsigned char *
dup_blob(const unsigned char *b, size_t len, size_t extra)
{
	unsigned char *c = sbx_xmalloc(len + extra);

	memcpy(c, b, len);
	memset(c + len, 0, extra);
	return c;
}

static void
put_u64(unsigned char *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

/* Open blob with kek0; 0 if it opened (and free the keys). */
static int
try_open(const unsigned char *blob, size_t len, const unsigned char *k,
	 const struct sbx_kdf_params *p, const char *mbox, char **error_r)
{
	struct sbx_mailbox_keys *out = NULL;
	int ret;

	ret = sbx_envelope_open(blob, len, k, p, mbox, &out, error_r);
	if (ret == 0)
		sbx_keys_free(&out);
	else if (out != NULL)
		ret = 99;   /* failure must not hand out keys */
	return ret;
}

/* Unlock with one password; which/keys checked by the caller. */
static int
unlock(const unsigned char *const *blobs, const size_t *lens, size_t n, const char *mbox,
       const char *password, struct sbx_mailbox_keys **keys_r, size_t *which_r, char **error_r)
{
	return sbx_envelope_unlock(blobs, lens, n, mbox, password, strlen(password),
				   keys_r, which_r, error_r);
}

TEST(setup)
{
	char *error = NULL;
	size_t i;

	CHECK(sbx_keys_init() == 0);
	K = sbx_keys_generate();
	CHECK(K != NULL);
	CHECK(sbx_kdf_params_new(OPS, MEM, &P, &error) == 0);
	CHECK(error == NULL);
	for (i = 0; i < 3; i++) {
		CHECK(sbx_kek_derive(pw[i], strlen(pw[i]), &P, &kek[i], &error) == 0);
		CHECK(kek[i] != NULL);
		CHECK(sbx_envelope_seal(K, kek[i], &P, mailbox_a, env_ids[i],
					&env[i], &env_len[i], &error) == 0);
		CHECK(env[i] != NULL);
		CHECK(env_len[i] == OFF_ID + strlen(env_ids[i]) + CT_LEN);
		CHECK(error == NULL);
	}
	CHECK(sodium_memcmp(kek[0], kek[1], SBX_KEY_BYTES) != 0);
	CHECK(sbx_keys_kdf_runs() == 3);
}

TEST(generate_derive)
{
	struct sbx_mailbox_keys *a = sbx_keys_generate(), *b = sbx_keys_generate();
	unsigned char k1[SBX_KEY_BYTES], k2[SBX_KEY_BYTES], k3[SBX_KEY_BYTES], k4[SBX_KEY_BYTES];
	unsigned char pk[SBX_KEY_BYTES], ref[SBX_KEY_BYTES];
	static const unsigned char zero[SBX_KEY_BYTES];

	CHECK(sodium_memcmp(a->mk, b->mk, SBX_KEY_BYTES) != 0);
	CHECK(sodium_memcmp(a->spool_sk, b->spool_sk, SBX_KEY_BYTES) != 0);
	CHECK(sodium_memcmp(a->mk, a->spool_sk, SBX_KEY_BYTES) != 0);
	CHECK(sodium_memcmp(a->mk, zero, SBX_KEY_BYTES) != 0);
	CHECK(crypto_scalarmult_base(pk, a->spool_sk) == 0);
	CHECK(sodium_memcmp(pk, a->spool_pk, SBX_KEY_BYTES) == 0);

	sbx_keys_derive(a, SBX_SUBKEY_VFS, k1);
	sbx_keys_derive(a, SBX_SUBKEY_VFS, k2);
	sbx_keys_derive(a, SBX_SUBKEY_VERIFY, k3);
	sbx_keys_derive(b, SBX_SUBKEY_VFS, k4);
	CHECK(sodium_memcmp(k1, k2, SBX_KEY_BYTES) == 0);   /* deterministic */
	CHECK(sodium_memcmp(k1, k3, SBX_KEY_BYTES) != 0);   /* distinct subkeys */
	CHECK(sodium_memcmp(k1, k4, SBX_KEY_BYTES) != 0);   /* distinct mailboxes */
	CHECK(sodium_memcmp(k1, a->mk, SBX_KEY_BYTES) != 0); /* MK never used directly */
	/* The documented construction, context "sbxkeys1". */
	crypto_kdf_derive_from_key(ref, sizeof(ref), SBX_SUBKEY_VFS, "sbxkeys1", a->mk);
	CHECK(sodium_memcmp(k1, ref, SBX_KEY_BYTES) == 0);

	sbx_keys_free(&a);
	sbx_keys_free(&b);
	CHECK(a == NULL && b == NULL);
	sbx_keys_free(&a);   /* NULL is fine */
}

TEST(params_policy)
{
	struct sbx_kdf_params p1, p2;
	unsigned char *k = NULL;
	unsigned long runs = sbx_keys_kdf_runs();
	char *error = NULL;

	CHECK(sbx_kdf_params_new(OPS - 1, MEM, &p1, &error) == -1);
	CHECK(contains(error, "policy floor"));
	free(error);
	error = NULL;
	CHECK(sbx_kdf_params_new(OPS, MEM - 1, &p1, &error) == -1);
	CHECK(contains(error, "policy floor"));
	free(error);
	error = NULL;
	CHECK(sbx_kdf_params_new((uint64_t)crypto_pwhash_argon2id_OPSLIMIT_MAX + 1, MEM, &p1, &error) == -1);
	CHECK(contains(error, "maximum"));
	free(error);
	error = NULL;
	CHECK(sbx_kdf_params_new(OPS, UINT64_MAX, &p1, &error) == -1);
	CHECK(contains(error, "maximum"));
	free(error);
	error = NULL;

	CHECK(sbx_kdf_params_new(OPS, MEM, &p1, &error) == 0);
	CHECK(sbx_kdf_params_new(OPS + 1, MEM * 2, &p2, &error) == 0);
	CHECK(p1.opslimit == OPS && p1.memlimit == MEM);
	CHECK(p2.opslimit == OPS + 1 && p2.memlimit == MEM * 2);
	CHECK(memcmp(p1.salt, p2.salt, SBX_SALT_BYTES) != 0);   /* random salt */

	/* The KEK refuses the same things, and bad password lengths, before
	 * running Argon2id. */
	p1.opslimit = 1;
	CHECK(sbx_kek_derive("password", 8, &p1, &k, &error) == -1);
	CHECK(k == NULL);
	CHECK(contains(error, "policy floor"));
	free(error);
	error = NULL;
	CHECK(sbx_kek_derive("", 0, &P, &k, &error) == -1);
	CHECK(error != NULL);
	free(error);
	error = NULL;
	{
		char *big = sbx_xmalloc(SBX_MAX_PASSWORD_LEN + 1);

		memset(big, 'x', SBX_MAX_PASSWORD_LEN + 1);
		CHECK(sbx_kek_derive(big, SBX_MAX_PASSWORD_LEN + 1, &P, &k, &error) == -1);
		CHECK(error != NULL);
		free(error);
		error = NULL;
		free(big);
	}
	CHECK(sbx_keys_kdf_runs() == runs);
}

TEST(seal_open_roundtrip)
{
	struct sbx_mailbox_keys *out = NULL;
	struct sbx_kdf_params p;
	unsigned char *blob = NULL;
	size_t len = 0, i;
	char *error = NULL, id[SBX_MAX_ENVELOPE_ID_LEN + 1];

	for (i = 0; i < 3; i++) {
		CHECK(sbx_envelope_open(env[i], env_len[i], kek[i], &P, mailbox_a, &out, &error) == 0);
		CHECKF(error == NULL, "envelope %zu: %s", i, error);
		CHECK(keys_equal(out, K));
		sbx_keys_free(&out);
		CHECK(sbx_envelope_id(env[i], env_len[i], id, sizeof(id)) == 0);
		CHECK(strcmp(id, env_ids[i]) == 0);
		CHECK(sbx_envelope_params(env[i], env_len[i], &p, &error) == 0);
		CHECK(p.opslimit == P.opslimit && p.memlimit == P.memlimit);
		CHECK(memcmp(p.salt, P.salt, SBX_SALT_BYTES) == 0);
	}
	/* Header layout as documented. */
	CHECK(memcmp(env[0], "SBXE", 4) == 0);
	CHECK(env[0][OFF_VERSION] == 1 && env[0][OFF_ALG] == 1);
	CHECK(env[0][OFF_OPS + 7] == OPS && env[0][OFF_OPS] == 0);
	CHECK(env[0][OFF_MEM + 4] == (MEM >> 24) && env[0][OFF_MEM + 7] == 0);
	CHECK(memcmp(env[0] + OFF_SALT, P.salt, SBX_SALT_BYTES) == 0);
	CHECK(env[0][OFF_IDLEN] == strlen("default"));
	CHECK(memcmp(env[0] + OFF_ID, "default", 7) == 0);
	/* The plaintext keys appear nowhere in the blob. */
	CHECK(memmem(env[0], env_len[0], K->mk, 8) == NULL);
	CHECK(memmem(env[0], env_len[0], K->spool_sk, 8) == NULL);

	/* Another KEK (another password) does not open it. */
	CHECK(try_open(env[0], env_len[0], kek[1], &P, mailbox_a, &error) == -1);
	CHECK(error != NULL);
	free(error);
	error = NULL;
	/* Params that differ from the envelope's are refused. */
	p = P;
	p.salt[0] ^= 1;
	CHECK(try_open(env[0], env_len[0], kek[0], &p, mailbox_a, &error) == -1);
	free(error);
	error = NULL;

	/* Two seals of the same keys differ (random nonce), both open. */
	CHECK(sbx_envelope_seal(K, kek[0], &P, mailbox_a, "default", &blob, &len, &error) == 0);
	CHECK(len == env_len[0]);
	CHECK(memcmp(blob + OFF_NONCE, env[0] + OFF_NONCE, 24) != 0);
	CHECK(memcmp(blob + OFF_ID + 7, env[0] + OFF_ID + 7, CT_LEN) != 0);
	CHECK(try_open(blob, len, kek[0], &P, mailbox_a, &error) == 0);
	free(blob);

	/* Seal argument checks. */
	blob = NULL;
	CHECK(sbx_envelope_seal(K, kek[0], &P, mailbox_a, "", &blob, &len, &error) == -1);
	CHECK(blob == NULL && error != NULL);
	free(error);
	error = NULL;
	{
		char longid[SBX_MAX_ENVELOPE_ID_LEN + 2];

		memset(longid, 'a', sizeof(longid) - 1);
		longid[sizeof(longid) - 1] = '\0';
		CHECK(sbx_envelope_seal(K, kek[0], &P, mailbox_a, longid, &blob, &len, &error) == -1);
		free(error);
		error = NULL;
		longid[SBX_MAX_ENVELOPE_ID_LEN] = '\0';   /* exactly the maximum */
		CHECK(sbx_envelope_seal(K, kek[0], &P, mailbox_a, longid, &blob, &len, &error) == 0);
		CHECK(len <= SBX_MAX_ENVELOPE_BLOB);
		CHECK(try_open(blob, len, kek[0], &P, mailbox_a, &error) == 0);
		CHECK(sbx_envelope_id(blob, len, id, sizeof(id)) == 0 && strcmp(id, longid) == 0);
		CHECK(sbx_envelope_id(blob, len, id, SBX_MAX_ENVELOPE_ID_LEN) == -1);  /* no room for NUL */
		free(blob);
		blob = NULL;
	}
	CHECK(sbx_envelope_seal(K, kek[0], &P, mailbox_a, "a\nb", &blob, &len, &error) == -1);
	free(error);
	error = NULL;
	CHECK(sbx_envelope_seal(K, kek[0], &P, "", "default", &blob, &len, &error) == -1);
	free(error);
	error = NULL;
	p = P;
	p.memlimit = 8 * 1024 * 1024;
	CHECK(sbx_envelope_seal(K, kek[0], &p, mailbox_a, "default", &blob, &len, &error) == -1);
	CHECK(contains(error, "policy floor"));
	free(error);
}

/* Build an envelope by hand from the format in keys.h, independently of
 * keys.c, with the given payload version. */
static unsigned char *
hand_envelope(const char *mbox, const char *id, unsigned char payload_version, size_t *len_r)
{
	size_t id_len = strlen(id), hlen = OFF_ID + id_len, mlen = strlen(mbox);
	unsigned char *b = sbx_xmalloc(hlen + CT_LEN), *ad = sbx_xmalloc(mlen + 1 + id_len + 1 + hlen);
	unsigned char payload[65];
	unsigned long long clen;

	memcpy(b, "SBXE", 4);
	b[OFF_VERSION] = 1;
	b[OFF_ALG] = 1;
	put_u64(b + OFF_OPS, P.opslimit);
	put_u64(b + OFF_MEM, P.memlimit);
	memcpy(b + OFF_SALT, P.salt, 16);
	randombytes_buf(b + OFF_NONCE, 24);
	b[OFF_IDLEN] = (unsigned char)id_len;
	memcpy(b + OFF_ID, id, id_len);
	memcpy(ad, mbox, mlen);
	ad[mlen] = 0;
	memcpy(ad + mlen + 1, id, id_len);
	ad[mlen + 1 + id_len] = 0;
	memcpy(ad + mlen + 1 + id_len + 1, b, hlen);
	payload[0] = payload_version;
	memcpy(payload + 1, K->mk, 32);
	memcpy(payload + 33, K->spool_sk, 32);
	crypto_aead_xchacha20poly1305_ietf_encrypt(b + hlen, &clen, payload, sizeof(payload),
		ad, mlen + 1 + id_len + 1 + hlen, NULL, b + OFF_NONCE, kek[0]);
	sodium_memzero(payload, sizeof(payload));
	free(ad);
	*len_r = hlen + CT_LEN;
	return b;
}

TEST(format_matches_header)
{
	struct sbx_mailbox_keys *out = NULL;
	unsigned char *b;
	size_t len;
	char *error = NULL;

	/* keys.c opens an envelope built from the documented format... */
	b = hand_envelope(mailbox_a, "by-hand", 1, &len);
	CHECK(sbx_envelope_open(b, len, kek[0], &P, mailbox_a, &out, &error) == 0);
	CHECKF(error == NULL, "%s", error);
	CHECK(keys_equal(out, K));   /* spool_pk recomputed from spool_sk */
	sbx_keys_free(&out);
	free(b);
	/* ...and refuses an authentic payload of an unknown version. */
	b = hand_envelope(mailbox_a, "by-hand", 2, &len);
	CHECK(sbx_envelope_open(b, len, kek[0], &P, mailbox_a, &out, &error) == -1);
	CHECK(out == NULL);
	CHECKF(contains(error, "payload version"), "error: %s", error);
	free(error);
	error = NULL;
	{
		const unsigned char *blobs[1] = { b };

		CHECK(unlock(blobs, &len, 1, mailbox_a, pw[0], &out, NULL, &error) == -1);
		CHECK(out == NULL);
		CHECKF(contains(error, "payload version"), "error: %s", error);
		free(error);
	}
	free(b);
}

TEST(unlock_picks_right_envelope)
{
	const unsigned char *blobs[3] = { env[0], env[1], env[2] };
	struct sbx_mailbox_keys *out;
	unsigned long runs;
	size_t i, which;
	char *error;

	for (i = 0; i < 3; i++) {
		out = NULL;
		error = NULL;
		which = 99;
		runs = sbx_keys_kdf_runs();
		CHECK(unlock(blobs, env_len, 3, mailbox_a, pw[i], &out, &which, &error) == 0);
		CHECKF(error == NULL, "%s", error);
		CHECKF(which == i, "password %zu opened envelope %zu", i, which);
		CHECK(keys_equal(out, K));
		CHECKF(sbx_keys_kdf_runs() - runs == 1, "%lu Argon2id runs for 3 envelopes sharing params",
		       sbx_keys_kdf_runs() - runs);
		sbx_keys_free(&out);
	}

	/* Two envelopes under the same password: the first one is reported,
	 * and still one Argon2id run. */
	{
		const unsigned char *b3[3] = { env[0], env[1], NULL };
		unsigned char *dup = NULL;
		size_t lens[3] = { env_len[0], env_len[1], 0 };

		error = NULL;
		CHECK(sbx_envelope_seal(K, kek[1], &P, mailbox_a, "phone2", &dup, &lens[2], &error) == 0);
		b3[2] = dup;
		runs = sbx_keys_kdf_runs();
		which = 99;
		CHECK(unlock(b3, lens, 3, mailbox_a, pw[1], &out, &which, &error) == 0);
		CHECKF(which == 1, "opened envelope %zu, expected the first match 1", which);
		CHECK(keys_equal(out, K));
		CHECK(sbx_keys_kdf_runs() - runs == 1);
		sbx_keys_free(&out);
		free(dup);
	}
}

TEST(wrong_password)
{
	const unsigned char *blobs[3] = { env[0], env[1], env[2] };
	struct sbx_mailbox_keys *out = NULL;
	unsigned long runs = sbx_keys_kdf_runs();
	size_t which = 99;
	char *error = NULL;

	CHECK(unlock(blobs, env_len, 3, mailbox_a, "Correct horse battery", &out, &which, &error) == -1);
	CHECK(out == NULL);
	CHECK(which == 99);
	CHECKF(error != NULL && strcmp(error, "wrong password") == 0, "error: %s", error);
	CHECK(sbx_keys_kdf_runs() - runs == 1);
	free(error);
}

TEST(unlock_argument_checks)
{
	const unsigned char *blobs[SBX_MAX_ENVELOPES + 1];
	size_t lens[SBX_MAX_ENVELOPES + 1], i;
	struct sbx_mailbox_keys *out = NULL;
	unsigned long runs = sbx_keys_kdf_runs();
	char *error = NULL;

	for (i = 0; i <= SBX_MAX_ENVELOPES; i++) {
		blobs[i] = env[0];
		lens[i] = env_len[0];
	}
	CHECK(sbx_envelope_unlock(blobs, lens, 0, mailbox_a, pw[0], strlen(pw[0]), &out, NULL, &error) == -1);
	CHECK(error != NULL && strcmp(error, "wrong password") != 0);
	free(error);
	error = NULL;
	CHECK(sbx_envelope_unlock(blobs, lens, SBX_MAX_ENVELOPES + 1, mailbox_a, pw[0], strlen(pw[0]),
				  &out, NULL, &error) == -1);
	CHECK(error != NULL);
	free(error);
	error = NULL;
	CHECK(sbx_envelope_unlock(blobs, lens, 1, mailbox_a, "", 0, &out, NULL, &error) == -1);
	CHECK(error != NULL);
	free(error);
	error = NULL;
	CHECK(sbx_envelope_unlock(blobs, lens, 1, mailbox_a, pw[0], SBX_MAX_PASSWORD_LEN + 1,
				  &out, NULL, &error) == -1);
	CHECK(error != NULL);
	free(error);
	CHECK(out == NULL);
	CHECK(sbx_keys_kdf_runs() == runs);
}

/* Tamper with env[0] at one offset; it must not open with the right KEK,
 * neither with the fixture params nor with the params the tampered header
 * now claims (so the MAC, not only the params comparison, covers them). */
static void
check_refused(const unsigned char *b, size_t len, const char *what, const char *expect)
{
	struct sbx_kdf_params p;
	char *error = NULL;
	int ret;

	ret = try_open(b, len, kek[0], &P, mailbox_a, &error);
	CHECKF(ret == -1, "%s: open returned %d", what, ret);
	CHECKF(error != NULL, "%s: no error message", what);
	if (expect != NULL)
		CHECKF(contains(error, expect), "%s: error \"%s\", expected \"%s\"", what, error, expect);
	free(error);
	error = NULL;
	if (sbx_envelope_params(b, len, &p, &error) == 0) {
		ret = try_open(b, len, kek[0], &p, mailbox_a, &error);
		CHECKF(ret == -1, "%s: open with its own params returned %d", what, ret);
	}
	free(error);
}

TEST(tamper_every_field)
{
	static const struct {
		const char *name;
		size_t off;
		const char *expect;
	} fields[] = {
		{ "magic", OFF_MAGIC, "magic" },
		{ "magic[3]", OFF_MAGIC + 3, "magic" },
		{ "version", OFF_VERSION, "version" },
		{ "alg", OFF_ALG, "algorithm" },
		{ "opslimit high byte", OFF_OPS, "maximum" },
		{ "opslimit low byte", OFF_OPS + 7, NULL },
		{ "memlimit high byte", OFF_MEM, NULL },
		{ "memlimit low byte", OFF_MEM + 7, NULL },
		{ "salt", OFF_SALT, NULL },
		{ "salt end", OFF_SALT + 15, NULL },
		{ "nonce", OFF_NONCE, "does not open" },
		{ "nonce end", OFF_NONCE + 23, "does not open" },
		{ "id_len", OFF_IDLEN, "length" },
		{ "id", OFF_ID, "does not open" },
		{ "id end", OFF_ID + 6, "does not open" },
		{ "ciphertext: payload version", OFF_ID + 7, "does not open" },
		{ "ciphertext: MK", OFF_ID + 7 + 1 + 16, "does not open" },
		{ "ciphertext: spool key", OFF_ID + 7 + 33 + 16, "does not open" },
		{ "tag", OFF_ID + 7 + 65, "does not open" },
		{ "tag end", OFF_ID + 7 + 65 + 15, "does not open" },
	};
	size_t len = env_len[0], i, bit;
	unsigned char *b = dup_blob(env[0], len, 1);
	char what[64];
	char *error = NULL;

	CHECK(len == OFF_ID + 7 + CT_LEN);
	CHECK(try_open(b, len, kek[0], &P, mailbox_a, &error) == 0);   /* the copy is good */

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		b[fields[i].off] ^= 0x01;
		check_refused(b, len, fields[i].name, fields[i].expect);
		b[fields[i].off] ^= 0x01;
	}
	/* The salt and params are also checked against the KEK's. */
	b[OFF_SALT] ^= 0x80;
	check_refused(b, len, "salt vs params", "differ");
	b[OFF_SALT] ^= 0x80;
	put_u64(b + OFF_OPS, OPS + 1);
	check_refused(b, len, "raised opslimit", "differ");
	memcpy(b, env[0], len);
	put_u64(b + OFF_MEM, MEM * 2);
	check_refused(b, len, "raised memlimit", "differ");
	memcpy(b, env[0], len);
	b[OFF_IDLEN] = 0;
	check_refused(b, len, "id_len 0", "id length");
	b[OFF_IDLEN] = SBX_MAX_ENVELOPE_ID_LEN + 1;
	check_refused(b, len, "id_len too big", "id length");
	memcpy(b, env[0], len);
	{
		/* id_len 65 with a total length that matches it. */
		size_t blen = OFF_ID + SBX_MAX_ENVELOPE_ID_LEN + 1 + CT_LEN;
		unsigned char *big = sbx_xcalloc(1, blen);

		memcpy(big, env[0], OFF_ID);
		big[OFF_IDLEN] = SBX_MAX_ENVELOPE_ID_LEN + 1;
		memset(big + OFF_ID, 'a', SBX_MAX_ENVELOPE_ID_LEN + 1);
		check_refused(big, blen, "id_len 65, consistent length", "id length");
		CHECK(sbx_envelope_id(big, blen, what, sizeof(what)) == -1);
		free(big);
	}
	b[OFF_ID] = '\0';
	check_refused(b, len, "NUL in id", "printable");
	memcpy(b, env[0], len);

	/* Every bit of every byte. */
	for (i = 0; i < len; i++) {
		for (bit = 0; bit < 8; bit++) {
			b[i] ^= (unsigned char)(1u << bit);
			snprintf(what, sizeof(what), "byte %zu bit %zu", i, bit);
			check_refused(b, len, what, NULL);
			b[i] ^= (unsigned char)(1u << bit);
		}
	}
	/* Every truncation, and one extra byte. */
	for (i = 0; i < len; i++) {
		snprintf(what, sizeof(what), "truncated to %zu", i);
		check_refused(b, i, what, NULL);
	}
	check_refused(b, len + 1, "extended by a byte", "length");
	CHECK(sbx_envelope_params(b, len + 1, &(struct sbx_kdf_params){ 0 }, NULL) == -1);
	CHECK(sbx_envelope_id(b, len + 1, what, sizeof(what)) == -1);
	CHECK(sbx_envelope_id(b, len - 1, what, sizeof(what)) == -1);
	CHECK(memcmp(b, env[0], len) == 0);

	/* Through unlock with the right password: one KDF, "wrong password"
	 * (a MAC failure is all a tampered ciphertext can be). */
	b[OFF_NONCE + 5] ^= 0x10;
	{
		const unsigned char *blobs[1] = { b };
		struct sbx_mailbox_keys *out = NULL;
		unsigned long runs = sbx_keys_kdf_runs();

		error = NULL;
		CHECK(unlock(blobs, &len, 1, mailbox_a, pw[0], &out, NULL, &error) == -1);
		CHECK(out == NULL);
		CHECKF(error != NULL && strcmp(error, "wrong password") == 0, "error: %s", error);
		CHECK(sbx_keys_kdf_runs() - runs == 1);
		free(error);
	}
	free(b);
}

TEST(downgrade_refused_without_kdf)
{
	size_t len = env_len[0], which = 99;
	unsigned char *b = dup_blob(env[0], len, 0);
	const unsigned char *blobs[2];
	size_t lens[2];
	struct sbx_mailbox_keys *out = NULL;
	struct sbx_kdf_params p;
	unsigned long runs = sbx_keys_kdf_runs();
	unsigned char *k = NULL;
	char *error = NULL, id[SBX_MAX_ENVELOPE_ID_LEN + 1];

	put_u64(b + OFF_OPS, 1);
	put_u64(b + OFF_MEM, 8 * 1024 * 1024);
	blobs[0] = b;
	lens[0] = len;

	CHECK(unlock(blobs, lens, 1, mailbox_a, pw[0], &out, &which, &error) == -1);
	CHECK(out == NULL);
	CHECKF(contains(error, "key envelope parameters below policy floor (downgrade?)"), "error: %s", error);
	free(error);
	error = NULL;
	CHECK(sbx_envelope_params(b, len, &p, &error) == -1);
	CHECK(contains(error, "below policy floor"));
	free(error);
	error = NULL;
	CHECK(try_open(b, len, kek[0], &P, mailbox_a, &error) == -1);
	CHECK(contains(error, "below policy floor"));
	free(error);
	error = NULL;
	p.opslimit = 1;
	p.memlimit = 8 * 1024 * 1024;
	memcpy(p.salt, P.salt, SBX_SALT_BYTES);
	CHECK(try_open(b, len, kek[0], &p, mailbox_a, &error) == -1);
	free(error);
	error = NULL;
	CHECK(sbx_kek_derive(pw[0], strlen(pw[0]), &p, &k, &error) == -1);
	CHECK(k == NULL);
	free(error);
	error = NULL;
	/* Each limit on its own is enough to refuse. */
	memcpy(b, env[0], len);
	put_u64(b + OFF_OPS, 1);
	CHECK(sbx_envelope_params(b, len, &p, NULL) == -1);
	CHECK(unlock(blobs, lens, 1, mailbox_a, pw[0], &out, &which, &error) == -1);
	CHECK(contains(error, "policy floor"));
	free(error);
	error = NULL;
	memcpy(b, env[0], len);
	put_u64(b + OFF_MEM, MEM - 1024);
	CHECK(sbx_envelope_params(b, len, &p, NULL) == -1);
	CHECK(unlock(blobs, lens, 1, mailbox_a, pw[0], &out, &which, &error) == -1);
	CHECK(contains(error, "policy floor"));
	free(error);
	error = NULL;
	CHECKF(sbx_keys_kdf_runs() == runs, "Argon2id ran %lu times for a downgraded envelope",
	       sbx_keys_kdf_runs() - runs);
	/* Still nameable, so an admin can list and delete it. */
	CHECK(sbx_envelope_id(b, len, id, sizeof(id)) == 0 && strcmp(id, "default") == 0);

	/* A downgraded envelope next to a good one: the good one still opens
	 * (one KDF); a wrong password reports the downgrade, not "wrong password". */
	blobs[1] = env[1];
	lens[1] = env_len[1];
	runs = sbx_keys_kdf_runs();
	CHECK(unlock(blobs, lens, 2, mailbox_a, pw[1], &out, &which, &error) == 0);
	CHECK(which == 1 && keys_equal(out, K));
	sbx_keys_free(&out);
	CHECK(unlock(blobs, lens, 2, mailbox_a, pw[0], &out, &which, &error) == -1);
	CHECK(out == NULL);
	CHECKF(contains(error, "downgrade"), "error: %s", error);
	free(error);
	CHECK(sbx_keys_kdf_runs() - runs == 2);
	free(b);
}

TEST(other_mailbox_refused)
{
	const unsigned char *blobs[3] = { env[0], env[1], env[2] };
	struct sbx_mailbox_keys *out = NULL;
	unsigned long runs = sbx_keys_kdf_runs();
	char *error = NULL;
	unsigned char *blob;
	size_t len;

	CHECK(try_open(env[0], env_len[0], kek[0], &P, mailbox_b, &error) == -1);
	free(error);
	error = NULL;
	CHECK(try_open(env[0], env_len[0], kek[0], &P, "0123456789abcdef0123456789abcde", &error) == -1);
	free(error);
	error = NULL;
	CHECK(unlock(blobs, env_len, 3, mailbox_b, pw[0], &out, NULL, &error) == -1);
	CHECK(out == NULL);
	CHECKF(error != NULL && strcmp(error, "wrong password") == 0, "error: %s", error);
	free(error);
	error = NULL;
	CHECK(sbx_keys_kdf_runs() - runs == 1);

	/* The AD separates mailbox id and envelope id: ("ab", "c...") and
	 * ("a", "bc...") do not collide even though the header also holds the id. */
	CHECK(sbx_envelope_seal(K, kek[0], &P, "ab", "c", &blob, &len, &error) == 0);
	CHECK(try_open(blob, len, kek[0], &P, "ab", &error) == 0);
	CHECK(try_open(blob, len, kek[0], &P, "a", &error) == -1);
	free(error);
	free(blob);
}

TEST(change_one_envelope)
{
	static const char *newpw = "a brand new phone password";
	const unsigned char *blobs[3];
	unsigned char *copy0 = dup_blob(env[0], env_len[0], 0), *copy2 = dup_blob(env[2], env_len[2], 0);
	unsigned char *k = NULL, *blob = NULL;
	struct sbx_mailbox_keys *out = NULL;
	struct sbx_kdf_params p;
	size_t len = 0, lens[3], which;
	unsigned long runs;
	char *error = NULL;

	/* sealboxctl: read the params of an existing envelope, derive the new
	 * password's KEK with them, seal, replace the one row. */
	CHECK(sbx_envelope_params(env[1], env_len[1], &p, &error) == 0);
	CHECK(sbx_kek_derive(newpw, strlen(newpw), &p, &k, &error) == 0);
	CHECK(sbx_envelope_seal(K, k, &p, mailbox_a, "phone", &blob, &len, &error) == 0);
	sbx_kek_free(&k);
	CHECK(k == NULL);
	CHECK(memcmp(env[0], copy0, env_len[0]) == 0);
	CHECK(memcmp(env[2], copy2, env_len[2]) == 0);
	CHECK(memcmp(blob, env[1], OFF_NONCE) == 0);    /* same header up to the nonce */

	blobs[0] = env[0];
	blobs[1] = blob;
	blobs[2] = env[2];
	lens[0] = env_len[0];
	lens[1] = len;
	lens[2] = env_len[2];
	runs = sbx_keys_kdf_runs();
	CHECK(unlock(blobs, lens, 3, mailbox_a, newpw, &out, &which, &error) == 0);
	CHECK(which == 1 && keys_equal(out, K));
	sbx_keys_free(&out);
	CHECK(unlock(blobs, lens, 3, mailbox_a, pw[0], &out, &which, &error) == 0);
	CHECK(which == 0 && keys_equal(out, K));
	sbx_keys_free(&out);
	CHECK(unlock(blobs, lens, 3, mailbox_a, pw[1], &out, &which, &error) == -1);
	CHECK(out == NULL);
	CHECK(error != NULL && strcmp(error, "wrong password") == 0);
	free(error);
	error = NULL;
	CHECK(sbx_keys_kdf_runs() - runs == 3);
	/* The other envelopes still open with their old KEKs. */
	CHECK(try_open(env[2], env_len[2], kek[2], &P, mailbox_a, &error) == 0);
	CHECK(try_open(blob, len, kek[1], &P, mailbox_a, &error) == -1);
	free(error);
	free(blob);
	free(copy0);
	free(copy2);
}

TEST(distinct_params_groups)
{
	static const char *otherpw = "an envelope with its own salt";
	struct sbx_kdf_params p2;
	const unsigned char *blobs[3];
	unsigned char *k = NULL, *blob = NULL;
	struct sbx_mailbox_keys *out = NULL;
	size_t len = 0, lens[3], which = 99;
	unsigned long runs;
	char *error = NULL;

	CHECK(sbx_kdf_params_new(OPS, MEM, &p2, &error) == 0);
	CHECK(sbx_kek_derive(otherpw, strlen(otherpw), &p2, &k, &error) == 0);
	CHECK(sbx_envelope_seal(K, k, &p2, mailbox_a, "legacy", &blob, &len, &error) == 0);
	sbx_kek_free(&k);
	blobs[0] = env[0];
	blobs[1] = env[1];
	blobs[2] = blob;
	lens[0] = env_len[0];
	lens[1] = env_len[1];
	lens[2] = len;
	runs = sbx_keys_kdf_runs();
	CHECK(unlock(blobs, lens, 3, mailbox_a, otherpw, &out, &which, &error) == 0);
	CHECK(which == 2 && keys_equal(out, K));
	sbx_keys_free(&out);
	CHECKF(sbx_keys_kdf_runs() - runs == 2, "%lu runs for two parameter groups",
	       sbx_keys_kdf_runs() - runs);
	free(blob);
}

TEST(password_generate)
{
	static const char alphabet[] = "23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
	char a[25], b[25];
	int seen[256] = { 0 };
	size_t i, j, distinct = 0;

	sbx_password_generate(a, sizeof(a));
	sbx_password_generate(b, sizeof(b));
	CHECK(strlen(a) == 24 && strlen(b) == 24);
	CHECK(strcmp(a, b) != 0);
	for (i = 0; i < 2000; i++) {
		sbx_password_generate(a, sizeof(a));
		CHECK(strlen(a) == 24);
		for (j = 0; j < 24; j++)
			seen[(unsigned char)a[j]]++;
	}
	for (i = 0; i < 256; i++) {
		if (!seen[i])
			continue;
		distinct++;
		CHECKF(i != 0 && strchr(alphabet, (int)i) != NULL, "unexpected character 0x%02zx", i);
	}
	CHECK(!seen['0'] && !seen['O'] && !seen['1'] && !seen['l'] && !seen['I']);
	CHECKF(distinct == sizeof(alphabet) - 1, "%zu distinct characters in 48000", distinct);
}

int
main(void)
{
	size_t i;
	uint64_t start = sbx_now_us();

	RUN(setup);
	if (tap_done() != 0)
		return 1;
	RUN(generate_derive);
	RUN(params_policy);
	RUN(seal_open_roundtrip);
	RUN(format_matches_header);
	RUN(unlock_picks_right_envelope);
	RUN(wrong_password);
	RUN(unlock_argument_checks);
	RUN(tamper_every_field);
	RUN(downgrade_refused_without_kdf);
	RUN(other_mailbox_refused);
	RUN(change_one_envelope);
	RUN(distinct_params_groups);
	RUN(password_generate);
	printf("# %lu Argon2id runs, %.2f s\n", sbx_keys_kdf_runs(),
	       (double)(sbx_now_us() - start) / 1e6);

	for (i = 0; i < 3; i++) {
		sbx_kek_free(&kek[i]);
		free(env[i]);
	}
	sbx_keys_free(&K);
	return tap_done();
}
