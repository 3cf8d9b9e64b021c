/*
 * fuzz_common.h - fixed ids and keys shared by the fuzz targets and
 * make_seeds.c, so the committed seeds match what the targets expect.
 *
 * Every target defines LLVMFuzzerTestOneInput. It is linked either with
 * libFuzzer (clang-14, `make fuzz`) or with replay.c (gcc, `make check`,
 * which runs every file of tests/fuzz/corpus/<target>/ once). A target
 * that finds a broken property calls abort(), so both count it as a crash.
 */
#ifndef SBX_FUZZ_COMMON_H
#define SBX_FUZZ_COMMON_H
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SBXF_MAILBOX_ID   "0123456789abcdef0123456789abcdef"
#define SBXF_OTHER_MBOX   "0123456789abcdef0123456789abcdee"
#define SBXF_DELIVERY_ID  "fedcba9876543210fedcba9876543210"  /* reader-only modes */
#define SBXF_ROUNDTRIP_ID "00112233445566778899aabbccddeeff"  /* writer round trip */
#define SBXF_ENVELOPE_ID  "default"
#define SBXF_SALT         "sealbox-fuzzsalt"                  /* 16 bytes */

/* Print what broke and abort (libFuzzer saves the input as a crash). */
#define SBXF_ASSERT(c) do { \
	if (!(c)) { \
		fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__, __LINE__, #c); \
		abort(); \
	} \
} while (0)

static inline void
sbxf_init(void)
{
	static int done;

	if (!done) {
		SBXF_ASSERT(sbx_keys_init() == 0);
		done = 1;
	}
}

/* The mailbox spool key pair the spool seeds are sealed to. */
static inline void
sbxf_spool_keypair(unsigned char pk[32], unsigned char sk[32])
{
	unsigned char seed[crypto_box_SEEDBYTES];

	memset(seed, 0x5b, sizeof(seed));
	SBXF_ASSERT(crypto_box_seed_keypair(pk, sk, seed) == 0);
}

/* KDF parameters of the envelope seeds (the policy floor; never derived:
 * the targets use the fixed KEKs below instead of running Argon2id). */
static inline void
sbxf_kdf_params(struct sbx_kdf_params *p)
{
	p->opslimit = crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE;
	p->memlimit = crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE;
	memcpy(p->salt, SBXF_SALT, SBX_SALT_BYTES);
}

/* seed: the KEK the envelope seeds are sealed under; otherwise a dummy KEK
 * under which nothing may ever open. */
static inline void
sbxf_kek(unsigned char kek[SBX_KEY_BYTES], int seed)
{
	size_t i;

	for (i = 0; i < SBX_KEY_BYTES; i++)
		kek[i] = seed ? (unsigned char)(0x11 * (i + 1)) : 0xd0;
}

/* The mailbox keys inside the envelope seeds. */
static inline void
sbxf_mailbox_keys(struct sbx_mailbox_keys *k)
{
	size_t i;

	for (i = 0; i < SBX_KEY_BYTES; i++)
		k->mk[i] = (unsigned char)(7 * i + 3);
	sbxf_spool_keypair(k->spool_pk, k->spool_sk);
}

static inline int
sbxf_rm_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(path);
	return unlink(path);
}

static char sbxf_tmp[256] __attribute__((unused));

static inline void
sbxf_tempdir_cleanup(void)
{
	if (sbxf_tmp[0] != '\0')
		(void)nftw(sbxf_tmp, sbxf_rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

/* One temporary directory per process, removed at exit. Prefers $TMPDIR,
 * else /dev/shm (tmpfs: fsync costs nothing there), else /tmp. */
static inline const char *
sbxf_tempdir(void)
{
	const char *base;

	if (sbxf_tmp[0] != '\0')
		return sbxf_tmp;
	base = getenv("TMPDIR");
	if (base == NULL || *base == '\0')
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(sbxf_tmp, sizeof(sbxf_tmp), "%s/sbx-fuzz.XXXXXX", base);
	if (mkdtemp(sbxf_tmp) == NULL) {
		perror("mkdtemp");
		abort();
	}
	atexit(sbxf_tempdir_cleanup);
	return sbxf_tmp;
}
#endif
