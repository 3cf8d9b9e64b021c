/*
 * fuzz_spool.c - the sealed spool reader, and the writer/reader round trip.
 *
 * The first input byte picks a mode (byte % 3), the rest is its payload:
 *  0 raw:        the payload is written as new/<id> with plain write(2) and
 *                read back with the fixed key pair. Must never crash; the
 *                seeds are valid entries, so mutations reach every check
 *                up to the first MAC.
 *  1 round trip: the payload is a message sealed with the library writer;
 *                reading it back must give exactly the same bytes and
 *                metadata. The second payload byte is a repeat count (the
 *                rest is repeated that many times, to cross the 64 KiB
 *                chunk boundary) and the third picks the write sizes.
 *  2 structured: the payload describes an entry that the harness encrypts
 *                itself with the right keys, so malformed but authentic
 *                metadata records, chunk tags and sizes reach the parser:
 *                  record* where record = flags u8 | len u16 BE | bytes
 *                The first record is the metadata: raw plaintext when
 *                flags & 1, else built from the bytes (mail_from NUL orcpt,
 *                the correct delivery id and, unless flags & 2, the true
 *                message size). Each further record is one chunk:
 *                tag = flags & 3 (MESSAGE, PUSH, REKEY, FINAL), flags & 4
 *                writes a wrong length prefix, flags & 8 ends the file
 *                in the middle of the chunk. If the reader accepts the
 *                entry, the message must be the chunks' plaintexts in order.
 * The state directory is created once per process under a temp dir.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fuzz_common.h"
#include "sbx_limits.h"
#include "spool.h"
#include "util.h"

#define MAX_MSG (4u << 20)

static char *state_dir, *entry_path, *roundtrip_path;
static unsigned char pk[32], sk[32];

static void
setup(void)
{
	char *newdir;

	if (state_dir != NULL)
		return;
	sbxf_init();
	sbxf_spool_keypair(pk, sk);
	state_dir = sbx_xasprintf("%s/state", sbxf_tempdir());
	newdir = sbx_xasprintf("%s/spool/%s/new", state_dir, SBXF_MAILBOX_ID);
	SBXF_ASSERT(sbx_mkdir_p(newdir, 0700) == 0);
	entry_path = sbx_xasprintf("%s/%s", newdir, SBXF_DELIVERY_ID);
	roundtrip_path = sbx_xasprintf("%s/%s", newdir, SBXF_ROUNDTRIP_ID);
	free(newdir);
}

static void
write_entry(const void *data, size_t len)
{
	int fd = open(entry_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	SBXF_ASSERT(fd >= 0);
	SBXF_ASSERT(sbx_write_all(fd, data, len) == 0);
	SBXF_ASSERT(close(fd) == 0);
}

/* Open and read the entry; 0 with *msg_r (and meta fields copied) or -1.
 * A failure must come with an error message and nothing else. */
static int
read_entry(const char *delivery_id, char **msg_r, size_t *len_r, struct sbx_spool_meta *meta_r)
{
	struct sbx_spool_reader *r = NULL;
	const struct sbx_spool_meta *m;
	char *error = NULL;
	int ret;

	*msg_r = NULL;
	*len_r = 0;
	if (sbx_spool_reader_open(state_dir, SBXF_MAILBOX_ID, delivery_id, pk, sk, &r, &error) < 0) {
		SBXF_ASSERT(r == NULL && error != NULL);
		free(error);
		return -1;
	}
	SBXF_ASSERT(r != NULL && error == NULL);
	m = sbx_spool_reader_meta(r);
	SBXF_ASSERT(strcmp(m->delivery_id, delivery_id) == 0);
	SBXF_ASSERT(m->mail_from != NULL && m->orcpt != NULL);
	SBXF_ASSERT(m->size <= (uint64_t)SBX_MAX_MESSAGE_SIZE);
	if (meta_r != NULL) {
		*meta_r = *m;
		meta_r->mail_from = sbx_xstrdup(m->mail_from);
		meta_r->orcpt = sbx_xstrdup(m->orcpt);
	}
	ret = sbx_spool_read_all(r, MAX_MSG, msg_r, len_r, &error);
	if (ret < 0) {
		SBXF_ASSERT(*msg_r == NULL && error != NULL);
		free(error);
		/* A failed reader stays failed. */
		{
			char b;

			error = NULL;
			SBXF_ASSERT(sbx_spool_reader_read(r, &b, 1, &error) < 0 || m->size > MAX_MSG);
			free(error);
		}
		if (meta_r != NULL)
			sbx_spool_meta_free(meta_r);
	} else {
		SBXF_ASSERT(*len_r == m->size && (*msg_r)[*len_r] == '\0');
	}
	sbx_spool_reader_close(&r);
	return ret;
}

static void
mode_raw(const uint8_t *data, size_t size)
{
	char *msg;
	size_t len;

	write_entry(data, size);
	if (read_entry(SBXF_DELIVERY_ID, &msg, &len, NULL) == 0)
		free(msg);
}

static void
mode_roundtrip(const uint8_t *data, size_t size)
{
	struct sbx_spool_meta meta, got;
	struct sbx_spool_writer *w;
	size_t reps = 1, step = 0, len, off, i;
	char *msg = NULL, *back, *error = NULL, id[SBX_ID_HEX];

	if (size > 0) {
		reps = 1 + data[0] % 24;
		data++, size--;
	}
	if (size > 0) {
		step = data[0];  /* 0: all at once, else chunks of step * 97 bytes */
		data++, size--;
	}
	len = size * reps;
	if (len > 0) {
		msg = sbx_xmalloc(len);
		for (i = 0; i < reps; i++)
			memcpy(msg + i * size, data, size);
	}

	memset(&meta, 0, sizeof(meta));
	memcpy(meta.delivery_id, SBXF_ROUNDTRIP_ID, SBX_ID_HEX);
	meta.arrival = (time_t)1700000000 + (time_t)len;
	meta.mail_from = "sender@example.com";
	meta.orcpt = len % 2 ? "" : "Rcpt@Example.COM";
	meta.size = len;
	SBXF_ASSERT(sbx_spool_writer_begin(state_dir, SBXF_MAILBOX_ID, pk, &meta, &w, &error) == 0);
	for (off = 0; off < len; ) {
		size_t n = step == 0 ? len - off : (size_t)step * 97;

		if (n > len - off)
			n = len - off;
		SBXF_ASSERT(sbx_spool_writer_write(w, msg + off, n, &error) == 0);
		off += n;
	}
	SBXF_ASSERT(sbx_spool_writer_commit(&w, id, &error) == 0);
	SBXF_ASSERT(strcmp(id, SBXF_ROUNDTRIP_ID) == 0);

	SBXF_ASSERT(read_entry(SBXF_ROUNDTRIP_ID, &back, &i, &got) == 0);
	SBXF_ASSERT(i == len && (len == 0 || memcmp(back, msg, len) == 0));
	SBXF_ASSERT(got.arrival == meta.arrival && got.size == meta.size);
	SBXF_ASSERT(strcmp(got.mail_from, meta.mail_from) == 0);
	SBXF_ASSERT(strcmp(got.orcpt, meta.orcpt) == 0);
	sbx_spool_meta_free(&got);
	free(back);
	free(msg);
	/* Plain unlink: sbx_spool_remove would fsync the directory. */
	SBXF_ASSERT(unlink(roundtrip_path) == 0);
}

struct record {
	unsigned flags;
	const uint8_t *p;
	size_t len;
};

/* Split the payload into records; a short last record is cut to fit. */
static size_t
split_records(const uint8_t *data, size_t size, struct record *rec, size_t max)
{
	size_t n = 0;

	while (size >= 3 && n < max) {
		size_t len = (size_t)data[1] << 8 | data[2];

		rec[n].flags = data[0];
		data += 3;
		size -= 3;
		if (len > size)
			len = size;
		rec[n].p = data;
		rec[n].len = len;
		data += len;
		size -= len;
		n++;
	}
	return n;
}

static void
put_be(unsigned char *p, uint64_t v, int bytes)
{
	int i;

	for (i = bytes - 1; i >= 0; i--) {
		p[i] = (unsigned char)v;
		v >>= 8;
	}
}

static const unsigned char tags[4] = {
	crypto_secretstream_xchacha20poly1305_TAG_MESSAGE,
	crypto_secretstream_xchacha20poly1305_TAG_PUSH,
	crypto_secretstream_xchacha20poly1305_TAG_REKEY,
	crypto_secretstream_xchacha20poly1305_TAG_FINAL,
};

static void
mode_structured(const uint8_t *data, size_t size)
{
	struct record rec[64];
	crypto_secretstream_xchacha20poly1305_state st;
	unsigned char key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
	unsigned char *ct;
	struct sbx_buf file = { 0 }, meta = { 0 }, expect = { 0 };
	unsigned char hdr[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
	unsigned char sealed[sizeof(key) + crypto_box_SEALBYTES], num[8];
	unsigned long long ctlen;
	size_t n, i, total = 0;
	int damaged = 0;
	char *msg;
	size_t len;

	n = split_records(data, size, rec, sizeof(rec) / sizeof(rec[0]));
	if (n == 0)
		return;
	for (i = 1; i < n; i++)
		total += rec[i].len;

	/* The metadata record. */
	if (rec[0].flags & 1) {
		sbx_buf_append(&meta, rec[0].p, rec[0].len);
	} else {
		const uint8_t *nul = memchr(rec[0].p, '\0', rec[0].len);
		size_t flen = nul ? (size_t)(nul - rec[0].p) : rec[0].len;
		size_t olen = nul ? rec[0].len - flen - 1 : 0;
		unsigned char id[SBX_ID_BYTES];

		sbx_buf_append(&meta, "\x01", 1);
		put_be(num, (uint64_t)(rec[0].flags >> 4) * 1000003u, 8);
		sbx_buf_append(&meta, num, 8);
		SBXF_ASSERT(sbx_unhex(id, sizeof(id), SBXF_DELIVERY_ID) == 0);
		sbx_buf_append(&meta, id, sizeof(id));
		put_be(num, flen, 2);
		sbx_buf_append(&meta, num, 2);
		sbx_buf_append(&meta, rec[0].p, flen);
		put_be(num, olen, 2);
		sbx_buf_append(&meta, num, 2);
		sbx_buf_append(&meta, nul ? nul + 1 : rec[0].p, olen);
		put_be(num, (rec[0].flags & 2) ? total + (rec[0].flags >> 2 & 3) - 1 : total, 8);
		sbx_buf_append(&meta, num, 8);
	}

	crypto_secretstream_xchacha20poly1305_keygen(key);
	SBXF_ASSERT(crypto_box_seal(sealed, key, sizeof(key), pk) == 0);
	crypto_secretstream_xchacha20poly1305_init_push(&st, hdr, key);
	sbx_buf_append(&file, "SBXS\x01", 5);
	sbx_buf_append(&file, sealed, sizeof(sealed));
	sbx_buf_append(&file, hdr, sizeof(hdr));

	ct = sbx_xmalloc((meta.len > 65535 ? meta.len : 65535) + crypto_secretstream_xchacha20poly1305_ABYTES);
	for (i = 0; i < n; i++) {
		const unsigned char *pt = i == 0 ? (const unsigned char *)meta.data : rec[i].p;
		size_t ptlen = i == 0 ? meta.len : rec[i].len;
		unsigned tagi = i == 0 ? 0 : rec[i].flags & 3;

		crypto_secretstream_xchacha20poly1305_push(&st, ct, &ctlen, pt, ptlen, NULL, 0, tags[tagi]);
		put_be(num, (i > 0 && (rec[i].flags & 4)) ? ctlen + 1 + (rec[i].flags >> 4) : ctlen, 4);
		sbx_buf_append(&file, num, 4);
		if (i > 0 && (rec[i].flags & 8)) {
			sbx_buf_append(&file, ct, (size_t)ctlen / 2);
			damaged = 1;
			break;
		}
		sbx_buf_append(&file, ct, (size_t)ctlen);
		if (i > 0) {
			sbx_buf_append(&expect, pt, ptlen);
			if (rec[i].flags & 4)
				damaged = 1;
		}
	}
	free(ct);
	sodium_memzero(key, sizeof(key));

	write_entry(file.data, file.len);
	if (read_entry(SBXF_DELIVERY_ID, &msg, &len, NULL) == 0) {
		SBXF_ASSERT(!damaged);
		SBXF_ASSERT(len == expect.len && (len == 0 || memcmp(msg, expect.data, len) == 0));
		free(msg);
	}
	sbx_buf_free(&file);
	sbx_buf_free(&meta);
	sbx_buf_free(&expect);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0:
		mode_raw(data + 1, size - 1);
		break;
	case 1:
		mode_roundtrip(data + 1, size - 1);
		break;
	default:
		mode_structured(data + 1, size - 1);
		break;
	}
	return 0;
}
