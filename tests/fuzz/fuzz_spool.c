/*
 * fuzz_spool.c - the sealed spool: the entry reader, the writer/reader
 * round trip, the journal scanner and the writer's repair of a journal's
 * tail.
 *
 * The first input byte picks a mode (byte % 4), the rest is its payload:
 *  0 raw:        the payload is written as a bare entry in a file of its
 *                own and read with sbx_spool_reader_open_file and the fixed
 *                key pair. Must never crash; the seeds are valid entries,
 *                so mutations reach every check up to the first MAC.
 *  1 round trip: the payload is a message sealed with the library writer
 *                into a mailbox's journal; reading it back by id must give
 *                exactly the same bytes and metadata, and the journal must
 *                hold exactly that one record. The second payload byte is
 *                a repeat count (the rest is repeated that many times, to
 *                cross the 64 KiB chunk boundary) and the third picks the
 *                write sizes.
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
 *                The same entry is also wrapped in a journal record (valid
 *                check value) and read through a scan: both readers must
 *                agree.
 *  3 journal:    the payload is a journal file. The scanner must account
 *                for every byte (records + damaged + torn = the file) with
 *                records in order and inside the file; each record found is
 *                opened and read (must never crash, an accepted entry must
 *                carry the record's delivery id). Then the payload becomes
 *                a mailbox's journal that this process has never seen and a
 *                message is delivered to it: afterwards the journal must
 *                hold every record the scan found, at the same offsets, and
 *                the new one right after them, with nothing torn: the
 *                writer may cut off a torn tail, never a whole record.
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
#define REC_HDR 32       /* "SBXJ" | version | 3 zero | entry length | delivery id */
#define REC_CHECK 16     /* BLAKE2b-128 over header and entry */
#define MAX_RECS 4096

static char *state_dir, *entry_path, *records_path, *journal_path, *other_journal;
static unsigned char pk[32], sk[32];

static void
setup(void)
{
	char *dir;

	if (state_dir != NULL)
		return;
	sbxf_init();
	sbxf_spool_keypair(pk, sk);
	state_dir = sbx_xasprintf("%s/state", sbxf_tempdir());
	dir = sbx_xasprintf("%s/spool/%s", state_dir, SBXF_MAILBOX_ID);
	SBXF_ASSERT(sbx_mkdir_p(dir, 0700) == 0);
	journal_path = sbx_xasprintf("%s/journal", dir);
	free(dir);
	dir = sbx_xasprintf("%s/spool/%s", state_dir, SBXF_OTHER_MBOX);
	SBXF_ASSERT(sbx_mkdir_p(dir, 0700) == 0);
	other_journal = sbx_xasprintf("%s/journal", dir);
	free(dir);
	entry_path = sbx_xasprintf("%s/entry", sbxf_tempdir());
	records_path = sbx_xasprintf("%s/records", sbxf_tempdir());
}

/* A new file each time (unlink first): a new inode, so the writer has
 * never seen it. */
static void
write_new_file(const char *path, const void *data, size_t len)
{
	int fd;

	SBXF_ASSERT(unlink(path) == 0 || errno == ENOENT);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	SBXF_ASSERT(fd >= 0);
	SBXF_ASSERT(sbx_write_all(fd, data, len) == 0);
	SBXF_ASSERT(close(fd) == 0);
}

/* Read everything from an open reader; 0 with *msg_r or -1. A failure must
 * come with an error message and nothing else, and the reader stays failed. */
static int
read_open(struct sbx_spool_reader *r, const char *delivery_id, char **msg_r, size_t *len_r,
	  struct sbx_spool_meta *meta_r)
{
	const struct sbx_spool_meta *m = sbx_spool_reader_meta(r);
	char *error = NULL;
	int ret;

	if (delivery_id != NULL)
		SBXF_ASSERT(strcmp(m->delivery_id, delivery_id) == 0);
	SBXF_ASSERT(sbx_is_id(m->delivery_id));
	SBXF_ASSERT(m->mail_from != NULL && m->orcpt != NULL);
	SBXF_ASSERT(m->size <= (uint64_t)SBX_MAX_MESSAGE_SIZE);
	if (meta_r != NULL) {
		*meta_r = *m;
		meta_r->mail_from = sbx_xstrdup(m->mail_from);
		meta_r->orcpt = sbx_xstrdup(m->orcpt);
	}
	ret = sbx_spool_read_all(r, MAX_MSG, msg_r, len_r, &error);
	if (ret < 0) {
		char b;

		SBXF_ASSERT(*msg_r == NULL && error != NULL);
		free(error);
		error = NULL;
		SBXF_ASSERT(sbx_spool_reader_read(r, &b, 1, &error) < 0 || m->size > MAX_MSG);
		free(error);
		if (meta_r != NULL)
			sbx_spool_meta_free(meta_r);
	} else {
		SBXF_ASSERT(*len_r == m->size && (*msg_r)[*len_r] == '\0');
	}
	return ret;
}

/* Open and read a bare entry file. */
static int
read_entry_file(const char *path, const char *delivery_id, char **msg_r, size_t *len_r)
{
	struct sbx_spool_reader *r = NULL;
	char *error = NULL;
	int ret;

	*msg_r = NULL;
	*len_r = 0;
	if (sbx_spool_reader_open_file(path, delivery_id, pk, sk, &r, &error) < 0) {
		SBXF_ASSERT(r == NULL && error != NULL);
		free(error);
		return -1;
	}
	SBXF_ASSERT(r != NULL && error == NULL);
	ret = read_open(r, delivery_id, msg_r, len_r, NULL);
	sbx_spool_reader_close(&r);
	return ret;
}

/* Open and read a record found by scan s. */
static int
read_record(struct sbx_spool_scan *s, const struct sbx_spool_rec *rec, char **msg_r, size_t *len_r)
{
	struct sbx_spool_reader *r = NULL;
	char *error = NULL;
	int ret;

	*msg_r = NULL;
	*len_r = 0;
	if (sbx_spool_reader_open_rec(s, rec, pk, sk, &r, &error) < 0) {
		SBXF_ASSERT(r == NULL && error != NULL);
		free(error);
		return -1;
	}
	SBXF_ASSERT(r != NULL && error == NULL);
	ret = read_open(r, rec->delivery_id, msg_r, len_r, NULL);
	sbx_spool_reader_close(&r);
	return ret;
}

/*
 * Scan a whole file, checking that the scan accounts for every byte.
 * Fills recs (up to max, the count in *n_r; more are counted, not kept);
 * with readers set, opens and reads each record. Returns the file size.
 */
static uint64_t
scan_all(const char *path, struct sbx_spool_rec *recs, size_t max, size_t *n_r, int readers)
{
	struct sbx_spool_scan *s = NULL;
	struct sbx_spool_rec rec;
	uint64_t covered = 0, next = 0;
	char *error = NULL;
	struct stat st;
	size_t n = 0;
	int rc;

	SBXF_ASSERT(stat(path, &st) == 0);
	SBXF_ASSERT(sbx_spool_scan_open(path, &s, &error) == 0 && s != NULL);
	while ((rc = sbx_spool_scan_next(s, &rec, &error)) == 1) {
		SBXF_ASSERT(rec.offset >= next);   /* in order, never overlapping */
		SBXF_ASSERT(rec.entry_len <= (uint64_t)st.st_size &&
			    rec.offset + REC_HDR + REC_CHECK + rec.entry_len <= (uint64_t)st.st_size);
		SBXF_ASSERT(sbx_is_id(rec.delivery_id));
		next = rec.offset + REC_HDR + REC_CHECK + rec.entry_len;
		covered += REC_HDR + REC_CHECK + rec.entry_len;
		if (readers) {
			char *msg;
			size_t len;

			if (read_record(s, &rec, &msg, &len) == 0)
				free(msg);
		}
		if (n < max)
			recs[n] = rec;
		n++;
	}
	SBXF_ASSERT(rc == 0);
	SBXF_ASSERT(covered + sbx_spool_scan_damaged(s) + sbx_spool_scan_torn(s) == (uint64_t)st.st_size);
	/* torn bytes are the file's end: nothing whole follows them */
	SBXF_ASSERT(sbx_spool_scan_torn(s) == 0 || next <= (uint64_t)st.st_size - sbx_spool_scan_torn(s));
	sbx_spool_scan_close(&s);
	SBXF_ASSERT(s == NULL);
	*n_r = n;
	return (uint64_t)st.st_size;
}

static void
mode_raw(const uint8_t *data, size_t size)
{
	char *msg;
	size_t len;

	write_new_file(entry_path, data, size);
	if (read_entry_file(entry_path, SBXF_DELIVERY_ID, &msg, &len) == 0)
		free(msg);
}

static void
mode_roundtrip(const uint8_t *data, size_t size)
{
	struct sbx_spool_meta meta, got;
	struct sbx_spool_writer *w;
	struct sbx_spool_reader *r = NULL;
	struct sbx_spool_rec rec;
	size_t reps = 1, step = 0, len, off, i, n;
	char *msg = NULL, *back = NULL, *error = NULL, id[SBX_ID_HEX];
	uint64_t jsize;

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
		size_t k = step == 0 ? len - off : (size_t)step * 97;

		if (k > len - off)
			k = len - off;
		SBXF_ASSERT(sbx_spool_writer_write(w, msg + off, k, &error) == 0);
		off += k;
	}
	SBXF_ASSERT(sbx_spool_writer_commit(&w, id, &error) == 0);
	SBXF_ASSERT(strcmp(id, SBXF_ROUNDTRIP_ID) == 0);

	/* exactly one record, the whole journal */
	jsize = scan_all(journal_path, &rec, 1, &n, 0);
	SBXF_ASSERT(n == 1 && jsize == REC_HDR + REC_CHECK + rec.entry_len);
	SBXF_ASSERT(rec.offset == 0 && strcmp(rec.delivery_id, SBXF_ROUNDTRIP_ID) == 0);

	SBXF_ASSERT(sbx_spool_reader_open(state_dir, SBXF_MAILBOX_ID, SBXF_ROUNDTRIP_ID, pk, sk, &r,
					  &error) == 0);
	SBXF_ASSERT(read_open(r, SBXF_ROUNDTRIP_ID, &back, &i, &got) == 0);
	sbx_spool_reader_close(&r);
	SBXF_ASSERT(i == len && (len == 0 || memcmp(back, msg, len) == 0));
	SBXF_ASSERT(got.arrival == meta.arrival && got.size == meta.size);
	SBXF_ASSERT(strcmp(got.mail_from, meta.mail_from) == 0);
	SBXF_ASSERT(strcmp(got.orcpt, meta.orcpt) == 0);
	sbx_spool_meta_free(&got);
	free(back);
	free(msg);
	/* Plain unlink: a claim and segment_done would fsync the directory. */
	SBXF_ASSERT(unlink(journal_path) == 0);
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

/* A journal record around entry bytes, as spool.h describes it. */
static void
wrap_record(struct sbx_buf *out, const char *delivery_id, const void *entry, size_t len)
{
	unsigned char h[REC_HDR], check[REC_CHECK];
	crypto_generichash_state *hs;
	void *mem;
	size_t hsize = (crypto_generichash_statebytes() + 63) & ~(size_t)63;

	mem = aligned_alloc(64, hsize);
	SBXF_ASSERT(mem != NULL);
	hs = mem;
	memcpy(h, "SBXJ\001\0\0\0", 8);
	put_be(h + 8, len, 8);
	SBXF_ASSERT(sbx_unhex(h + 16, 16, delivery_id) == 0);
	crypto_generichash_init(hs, NULL, 0, sizeof(check));
	crypto_generichash_update(hs, h, sizeof(h));
	crypto_generichash_update(hs, entry, len);
	crypto_generichash_final(hs, check, sizeof(check));
	free(mem);
	sbx_buf_append(out, h, sizeof(h));
	sbx_buf_append(out, entry, len);
	sbx_buf_append(out, check, sizeof(check));
}

static void
mode_structured(const uint8_t *data, size_t size)
{
	struct record rec[64];
	crypto_secretstream_xchacha20poly1305_state st;
	unsigned char key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
	unsigned char *ct;
	struct sbx_buf file = { 0 }, meta = { 0 }, expect = { 0 }, wrapped = { 0 };
	unsigned char hdr[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
	unsigned char sealed[sizeof(key) + crypto_box_SEALBYTES], num[8];
	unsigned long long ctlen;
	size_t n, i, total = 0;
	int damaged = 0, bare;
	char *msg = NULL;
	size_t len = 0;

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

	write_new_file(entry_path, file.data, file.len);
	bare = read_entry_file(entry_path, SBXF_DELIVERY_ID, &msg, &len);
	if (bare == 0) {
		SBXF_ASSERT(!damaged);
		SBXF_ASSERT(len == expect.len && (len == 0 || memcmp(msg, expect.data, len) == 0));
	}

	/* The same entry inside a journal record: the same verdict, the same bytes. */
	wrap_record(&wrapped, SBXF_DELIVERY_ID, file.data, file.len);
	write_new_file(records_path, wrapped.data, wrapped.len);
	{
		struct sbx_spool_scan *s = NULL;
		struct sbx_spool_rec r;
		char *error = NULL, *msg2;
		size_t len2;
		int more;

		SBXF_ASSERT(sbx_spool_scan_open(records_path, &s, &error) == 0);
		more = sbx_spool_scan_next(s, &r, &error);
		SBXF_ASSERT(more >= 0);
		if (more == 1) {
			SBXF_ASSERT(r.offset == 0 && r.entry_len == file.len);
			SBXF_ASSERT(read_record(s, &r, &msg2, &len2) == bare);
			if (bare == 0) {
				SBXF_ASSERT(len2 == len && (len == 0 || memcmp(msg2, msg, len) == 0));
				free(msg2);
			}
			SBXF_ASSERT(sbx_spool_scan_next(s, &r, &error) == 0);
		} else {
			/* too short to be a record: then not a valid entry either */
			SBXF_ASSERT(bare < 0);
		}
		sbx_spool_scan_close(&s);
	}
	free(msg);
	sbx_buf_free(&file);
	sbx_buf_free(&meta);
	sbx_buf_free(&expect);
	sbx_buf_free(&wrapped);
}

static void
mode_journal(const uint8_t *data, size_t size)
{
	static struct sbx_spool_rec before[MAX_RECS], after[MAX_RECS + 1];
	struct sbx_spool_meta meta;
	size_t nb, na, i;
	uint64_t fsize, asize;
	char *error = NULL, id[SBX_ID_HEX];

	/* the scanner and the readers, on the payload as it is */
	write_new_file(records_path, data, size);
	fsize = scan_all(records_path, before, MAX_RECS, &nb, 1);
	SBXF_ASSERT(fsize == size);
	if (nb > MAX_RECS)
		return;

	/* the writer's tail repair: a journal this process never wrote */
	write_new_file(other_journal, data, size);
	memset(&meta, 0, sizeof(meta));
	meta.arrival = 1700000000;
	meta.mail_from = "a@b";
	meta.orcpt = "";
	SBXF_ASSERT(sbx_spool_deliver(state_dir, SBXF_OTHER_MBOX, pk, &meta, "x", 1, id, &error) == 0);
	asize = scan_all(other_journal, after, MAX_RECS + 1, &na, 0);
	SBXF_ASSERT(na == nb + 1);
	for (i = 0; i < nb; i++) {
		SBXF_ASSERT(after[i].offset == before[i].offset);
		SBXF_ASSERT(after[i].entry_len == before[i].entry_len);
		SBXF_ASSERT(strcmp(after[i].delivery_id, before[i].delivery_id) == 0);
	}
	SBXF_ASSERT(strcmp(after[nb].delivery_id, id) == 0);
	SBXF_ASSERT(after[nb].offset + REC_HDR + REC_CHECK + after[nb].entry_len == asize);
	SBXF_ASSERT(nb == 0 || after[nb].offset >= before[nb - 1].offset + REC_HDR + REC_CHECK +
		    before[nb - 1].entry_len);
	{
		/* nothing torn is left, and the new record reads back */
		struct sbx_spool_scan *s = NULL;
		struct sbx_spool_rec r;
		char *msg;
		size_t len;
		int more;

		SBXF_ASSERT(sbx_spool_scan_open(other_journal, &s, &error) == 0);
		while ((more = sbx_spool_scan_next(s, &r, &error)) == 1)
			if (strcmp(r.delivery_id, id) == 0)
				break;
		SBXF_ASSERT(more == 1 && read_record(s, &r, &msg, &len) == 0);
		SBXF_ASSERT(len == 1 && msg[0] == 'x');
		free(msg);
		while ((more = sbx_spool_scan_next(s, &r, &error)) == 1)
			;
		SBXF_ASSERT(more == 0 && sbx_spool_scan_torn(s) == 0);
		sbx_spool_scan_close(&s);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	if (size == 0)
		return 0;
	switch (data[0] % 4) {
	case 0:
		mode_raw(data + 1, size - 1);
		break;
	case 1:
		mode_roundtrip(data + 1, size - 1);
		break;
	case 2:
		mode_structured(data + 1, size - 1);
		break;
	default:
		mode_journal(data + 1, size - 1);
		break;
	}
	return 0;
}
