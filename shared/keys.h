/*
 * keys.h - mailbox keys and password key envelopes (ARCHITECTURE.md "Keys").
 *
 * Each mailbox has a random 256-bit master key MK and an X25519 key pair for
 * the spool. MK is never used directly: every working key is
 * crypto_kdf_derive_from_key(MK, subkey id, "sbxkeys1").
 *
 * A key envelope wraps (MK, spool secret key) under one password:
 *   Argon2id(password, salt, opslimit, memlimit) -> KEK
 *   XChaCha20-Poly1305(KEK, payload, AD = mailbox id || 0 || envelope id || 0 || header)
 * Serialized envelope (all integers big-endian):
 *   "SBXE" | version u8 (1) | alg u8 (1 = argon2id13 + xchacha20poly1305)
 *   | opslimit u64 | memlimit u64 | salt[16] | nonce[24]
 *   | id_len u8 | id[id_len] | ciphertext (payload 65 bytes + 16-byte tag)
 * where the header is every byte before the ciphertext, and the payload is
 *   version u8 (1) | MK[32] | spool_sk[32].
 * A mailbox's envelopes share salt and parameters, so unlocking costs one
 * Argon2id however many app passwords exist. Parameters below the policy
 * floor (INTERACTIVE: opslimit 2, memlimit 64 MiB) are refused before any
 * work, so a rewritten (downgraded) envelope is never even tried.
 *
 * All key material lives in sodium_malloc'd memory and is wiped on release.
 */
#ifndef SBX_KEYS_H
#define SBX_KEYS_H
#include <stddef.h>
#include <stdint.h>

#define SBX_KEY_BYTES 32
#define SBX_SALT_BYTES 16
#define SBX_ENVELOPE_VERSION 1
#define SBX_ENVELOPE_ALG_ARGON2ID_XCHACHA 1

/* Subkey ids for sbx_keys_derive(); never reuse a number for another purpose. */
#define SBX_SUBKEY_VFS     1   /* the encrypted SQLite VFS key of the mailbox file */
#define SBX_SUBKEY_VERIFY  2   /* keyed hash for imapd's re-login check */

struct sbx_mailbox_keys {         /* always in sodium_malloc memory */
	unsigned char mk[SBX_KEY_BYTES];
	unsigned char spool_sk[SBX_KEY_BYTES];  /* X25519 secret key */
	unsigned char spool_pk[SBX_KEY_BYTES];  /* X25519 public key */
};

struct sbx_kdf_params {
	uint64_t opslimit;
	uint64_t memlimit;
	unsigned char salt[SBX_SALT_BYTES];
};

/* Call once per process before anything else here (sodium_init + checks).
 * 0 on success, -1 if libsodium cannot be initialised. */
int sbx_keys_init(void);

/* New random MK and spool key pair. */
struct sbx_mailbox_keys *sbx_keys_generate(void);
void sbx_keys_free(struct sbx_mailbox_keys **keys);

/* out = crypto_kdf_derive_from_key(MK, subkey_id, "sbxkeys1"). */
void sbx_keys_derive(const struct sbx_mailbox_keys *keys, uint64_t subkey_id,
		     unsigned char out[SBX_KEY_BYTES]);

/* Fresh parameters with a random salt; -1 + *error_r if the values are below
 * the floor or above libsodium's maximum. */
int sbx_kdf_params_new(uint64_t opslimit, uint64_t memlimit, struct sbx_kdf_params *p_r, char **error_r);
/* Parameters and salt of an existing serialized envelope (to add another
 * envelope sharing them). -1 + *error_r when malformed or below the floor. */
int sbx_envelope_params(const unsigned char *blob, size_t len, struct sbx_kdf_params *p_r, char **error_r);

/* The KEK for (password, params): one Argon2id run, in sodium_malloc memory.
 * -1 + *error_r on failure (e.g. out of memory for memlimit). */
int sbx_kek_derive(const char *password, size_t pwlen, const struct sbx_kdf_params *p,
		   unsigned char **kek_r, char **error_r);
void sbx_kek_free(unsigned char **kek);

/* Wrap keys under kek into a new serialized envelope (malloc'd, *len_r bytes). */
int sbx_envelope_seal(const struct sbx_mailbox_keys *keys, const unsigned char *kek,
		      const struct sbx_kdf_params *p, const char *mailbox_id, const char *envelope_id,
		      unsigned char **blob_r, size_t *len_r, char **error_r);

/* Unwrap one envelope with a KEK derived from the same params.
 * Returns 0 and *keys_r; -1 + *error_r when malformed, when its params differ
 * from p, or when the MAC fails (wrong password, tampered, other mailbox). */
int sbx_envelope_open(const unsigned char *blob, size_t len, const unsigned char *kek,
		      const struct sbx_kdf_params *p, const char *mailbox_id,
		      struct sbx_mailbox_keys **keys_r, char **error_r);

/* Try a password against all envelopes of a mailbox, running Argon2id once
 * per distinct parameter set (normally once). 0 + *keys_r + *which_r (index
 * of the envelope that opened); -1 + *error_r = "wrong password" when none
 * opened, or a more specific message for malformed/downgraded envelopes. */
int sbx_envelope_unlock(const unsigned char *const *blobs, const size_t *lens, size_t n,
			const char *mailbox_id, const char *password, size_t pwlen,
			struct sbx_mailbox_keys **keys_r, size_t *which_r, char **error_r);

/* The envelope id stored in a serialized envelope, into out (NUL-terminated). */
int sbx_envelope_id(const unsigned char *blob, size_t len, char *out, size_t outsz);

/* A strong random password for "mailbox add" without --password-stdin:
 * 24 characters from an unambiguous alphabet (~138 bits). out >= 25 bytes. */
void sbx_password_generate(char *out, size_t outsz);

/* For tests: how many Argon2id derivations this process has run. */
unsigned long sbx_keys_kdf_runs(void);
#endif
