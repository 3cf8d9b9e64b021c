/*
 * make_seeds.c - write the binary seed inputs of the envelope and spool
 * fuzz targets (valid envelopes, spool entries and journals need the
 * library and the fixed keys of fuzz_common.h; the other corpora are
 * hand-written).
 *
 *   make fuzz-seeds       (runs build/tests/fuzz/make_seeds tests/fuzz/corpus)
 *
 * The outputs hold random nonces and keys, so every run changes the bytes;
 * the committed seeds are one such run. Each seed is < 4 KiB.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "keys.h"
#include "spool.h"
#include "util.h"

static const char *outdir;

static void
die(const char *what, const char *error)
{
	fprintf(stderr, "make_seeds: %s: %s\n", what, error ? error : strerror(errno));
	exit(1);
}

static void
put(const char *target, const char *name, const void *data, size_t len)
{
	char *dir = sbx_xasprintf("%s/%s", outdir, target);
	char *path = sbx_xasprintf("%s/%s", dir, name);
	FILE *fp;

	if (len >= 4096)
		die(path, "seed larger than 4 KiB");
	if (sbx_mkdir_p(dir, 0755) < 0)
		die(dir, NULL);
	fp = fopen(path, "wb");
	if (fp == NULL || fwrite(data, 1, len, fp) != len || fclose(fp) != 0)
		die(path, NULL);
	printf("%s (%zu bytes)\n", path, len);
	free(dir);
	free(path);
}

static void
envelope_seed(const char *name, const char *mailbox_id, const char *envelope_id, int downgrade)
{
	struct sbx_mailbox_keys keys;
	struct sbx_kdf_params p;
	unsigned char kek[SBX_KEY_BYTES], *blob;
	size_t len;
	char *error = NULL;

	sbxf_mailbox_keys(&keys);
	sbxf_kdf_params(&p);
	sbxf_kek(kek, 1);
	if (sbx_envelope_seal(&keys, kek, &p, mailbox_id, envelope_id, &blob, &len, &error) < 0)
		die(name, error);
	if (downgrade)
		blob[4 + 1 + 1 + 7] = 1;  /* opslimit 1: below the floor */
	put("envelope", name, blob, len);
	free(blob);
}

/* Deliver msg into the journal of mailbox_id under state (envelope
 * sender@example.com -> rcpt@example.org, delivery id id or a random one). */
static void
spool_deliver(const char *what, const char *state, const char *mailbox_id, const char *id,
	      const char *msg, size_t len)
{
	unsigned char pk[32], sk[32];
	struct sbx_spool_meta meta;
	char *error = NULL;

	sbxf_spool_keypair(pk, sk);
	memset(&meta, 0, sizeof(meta));
	if (id != NULL)
		memcpy(meta.delivery_id, id, SBX_ID_HEX);
	meta.arrival = 1700000000;
	meta.mail_from = "sender@example.com";
	meta.orcpt = "rcpt@example.org";
	if (sbx_spool_deliver(state, mailbox_id, pk, &meta, msg, len, NULL, &error) < 0)
		die(what, error);
}

/* The journal of mailbox_id, read whole and then removed. */
static void
spool_take_journal(const char *state, const char *mailbox_id, char **data_r, size_t *len_r)
{
	char *path = sbx_xasprintf("%s/spool/%s/journal", state, mailbox_id);

	if (sbx_read_file(path, 1 << 20, data_r, len_r) < 0)
		die(path, NULL);
	if (unlink(path) < 0)
		die(path, NULL);
	free(path);
}

/* A bare spool entry sealed by the library (cut out of its journal
 * record), prefixed with the raw-mode byte. */
static void
spool_raw_seed(const char *name, const char *state, const char *msg, size_t len)
{
	struct sbx_buf seed = { 0 };
	char *data;
	size_t dlen;

	spool_deliver(name, state, SBXF_MAILBOX_ID, SBXF_DELIVERY_ID, msg, len);
	spool_take_journal(state, SBXF_MAILBOX_ID, &data, &dlen);
	/* one record: header (32) | entry | check value (16) */
	if (dlen < 48 || sbx_get_be64((unsigned char *)data + 8) != dlen - 48)
		die(name, "unexpected journal layout");
	sbx_buf_append(&seed, "\x00", 1);
	sbx_buf_append(&seed, data + 32, dlen - 48);
	put("spool", name, seed.data, seed.len);
	free(data);
	sbx_buf_free(&seed);
}

/* A journal written by the library (journal mode, byte 3), with nmsg
 * messages; then damage: 0 none, 1 the last record cut short, 2 a byte of
 * the second record's entry flipped, 3 the second record's length field
 * pointing into the last record, 4 zero bytes after the last record. */
static void
spool_journal_seed(const char *name, const char *state, size_t nmsg, int damage)
{
	static const char *msgs[] = { "Subject: one\r\n\r\nfirst\r\n", "", "Subject: 3\r\n\r\nthird\r\n" };
	struct sbx_buf seed = { 0 };
	uint64_t off[3] = { 0 }, len2;
	char *data;
	size_t dlen, i;

	for (i = 0; i < nmsg; i++)
		spool_deliver(name, state, SBXF_OTHER_MBOX, NULL, msgs[i], strlen(msgs[i]));
	spool_take_journal(state, SBXF_OTHER_MBOX, &data, &dlen);
	for (i = 1; i < nmsg; i++)
		off[i] = off[i - 1] + 48 + sbx_get_be64((unsigned char *)data + off[i - 1] + 8);
	sbx_buf_append(&seed, "\x03", 1);
	sbx_buf_append(&seed, data, dlen);
	switch (damage) {
	case 1:
		seed.len -= 40;
		break;
	case 2:
		seed.data[1 + off[1] + 32 + 100] ^= 0x20;
		break;
	case 3:
		len2 = off[2] + 100 - off[1] - 48;
		sbx_put_be64((unsigned char *)seed.data + 1 + off[1] + 8, len2);
		break;
	case 4:
		sbx_buf_append(&seed, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
		break;
	}
	put("spool", name, seed.data, seed.len);
	free(data);
	sbx_buf_free(&seed);
}

/* Structured-mode record: flags | len u16 | bytes. */
static void
rec(struct sbx_buf *b, unsigned flags, const char *p, size_t len)
{
	unsigned char h[3] = { (unsigned char)flags, (unsigned char)(len >> 8), (unsigned char)len };

	sbx_buf_append(b, h, 3);
	sbx_buf_append(b, p, len);
}

int
main(int argc, char **argv)
{
	static const char msg[] = "From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n";
	static const char id64[] =
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde!";
	char state[] = "/tmp/sbx-seeds.XXXXXX";
	struct sbx_buf b = { 0 };
	char *cmd;
	size_t i;

	if (argc != 2) {
		fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
		return 2;
	}
	outdir = argv[1];
	sbxf_init();

	envelope_seed("valid", SBXF_MAILBOX_ID, SBXF_ENVELOPE_ID, 0);
	envelope_seed("valid_id64", SBXF_MAILBOX_ID, id64, 0);
	envelope_seed("other_mailbox", SBXF_OTHER_MBOX, "phone", 0);
	envelope_seed("downgraded", SBXF_MAILBOX_ID, SBXF_ENVELOPE_ID, 1);

	if (mkdtemp(state) == NULL)
		die("mkdtemp", NULL);
	spool_raw_seed("raw_small", state, msg, sizeof(msg) - 1);
	spool_raw_seed("raw_empty", state, "", 0);
	/* Journal: mode 3, then a journal file. */
	spool_journal_seed("j_one", state, 1, 0);
	spool_journal_seed("j_three", state, 3, 0);
	spool_journal_seed("j_torn", state, 3, 1);
	spool_journal_seed("j_damaged", state, 3, 2);
	spool_journal_seed("j_bad_length", state, 3, 3);
	spool_journal_seed("j_zeros", state, 2, 4);

	/* Round trip: mode 1, repeat count, step, message. */
	sbx_buf_append(&b, "\x01\x00\x00", 3);
	sbx_buf_append(&b, msg, sizeof(msg) - 1);
	put("spool", "rt_small", b.data, b.len);
	b.len = 0;
	/* 24 x 3000 bytes in 291-byte writes: crosses the 64 KiB chunk size. */
	sbx_buf_append(&b, "\x01\x17\x03", 3);
	for (i = 0; i < 3000; i++)
		sbx_buf_append(&b, i % 64 == 63 ? "\n" : "x", 1);
	put("spool", "rt_multichunk", b.data, b.len);
	b.len = 0;

	/* Structured: mode 2, then records (see fuzz_spool.c). */
	sbx_buf_append(&b, "\x02", 1);
	rec(&b, 0x00, "from@example.com\0rcpt@example.org", 33);
	rec(&b, 0x00, "hello", 5);
	rec(&b, 0x03, " world\n", 7);
	put("spool", "st_valid", b.data, b.len);
	b.len = 0;
	sbx_buf_append(&b, "\x02", 1);
	rec(&b, 0x00, "", 0);
	rec(&b, 0x03, "", 0);
	put("spool", "st_empty", b.data, b.len);
	b.len = 0;
	sbx_buf_append(&b, "\x02", 1);
	rec(&b, 0x00, "a@b.c", 5);
	rec(&b, 0x01, "pushed", 6);
	rec(&b, 0x03, "end", 3);
	put("spool", "st_push_tag", b.data, b.len);
	b.len = 0;
	sbx_buf_append(&b, "\x02", 1);
	rec(&b, 0x02, "a@b.c", 5);   /* size field one short */
	rec(&b, 0x00, "abc", 3);
	rec(&b, 0x03, "def", 3);
	put("spool", "st_size_mismatch", b.data, b.len);
	b.len = 0;
	sbx_buf_append(&b, "\x02", 1);
	rec(&b, 0x01, "\x01\0\0\0\0\0\0\0\0", 9);  /* raw, short metadata */
	rec(&b, 0x03, "x", 1);
	put("spool", "st_raw_meta", b.data, b.len);
	b.len = 0;
	sbx_buf_append(&b, "\x02", 1);
	rec(&b, 0x00, "a@b.c", 5);
	rec(&b, 0x00, "abc", 3);
	rec(&b, 0x0b, "def", 3);   /* FINAL, cut in the middle */
	put("spool", "st_truncated", b.data, b.len);
	sbx_buf_free(&b);

	cmd = sbx_xasprintf("rm -rf '%s'", state);
	if (system(cmd) != 0)
		die(cmd, "failed");
	free(cmd);
	return 0;
}
