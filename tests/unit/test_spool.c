/* test_spool.c - the sealed spool (shared/spool.c) and the mailbox lock
 * (shared/lock.c): round trips, the record and entry formats, damage of
 * every kind (to a bare entry file and to records inside a journal), torn
 * tails and their repair, claims and import segments, concurrent appends
 * and claims, write failures, directory hygiene. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "sbx_limits.h"
#include "lock.h"
#include "spool.h"
#include "util.h"
#include "tap.h"

/* Format constants restated from spool.h, so a change there fails here.
 * Entry: "SBXS" | version | sealed key (32 + 48) | secretstream header,
 * then chunks of length u32 | ciphertext (plaintext + ABYTES). */
#define HDR_BYTES (4 + 1 + 32 + 48 + 24)
#define ABYTES 17
#define META_FIXED 37
/* Record: "SBXJ" | version 1 | 3 zero bytes | entry length u64 | delivery
 * id[16] | entry | BLAKE2b-128 over header and entry. */
#define REC_HDR (4 + 1 + 3 + 8 + 16)
#define REC_CHECK 16
#define REC_OVERHEAD (REC_HDR + REC_CHECK)

static unsigned char pk[32], sk[32];

static int
rm_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

static void
rm_rf(char *dir)
{
	if (dir == NULL)
		return;
	(void)nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

static char *
make_tmpdir(void)
{
	char tmpl[] = "/tmp/sbx-test-spool-XXXXXX";

	if (mkdtemp(tmpl) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	return sbx_xstrdup(tmpl);
}

/* Entries in dir other than . and ..; -1 when dir is missing. */
static int
count_entries(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static char *
mbox_dir(const char *state, const char *mbox)
{
	return sbx_xasprintf("%s/spool/%s", state, mbox);
}

static char *
journal_path(const char *state, const char *mbox)
{
	return sbx_xasprintf("%s/spool/%s/journal", state, mbox);
}

/* Size of a file, -1 when it is missing. */
static long long
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? -1 : (long long)st.st_size;
}

static long long
journal_size(const char *state, const char *mbox)
{
	char *path = journal_path(state, mbox);
	long long n = file_size(path);

	free(path);
	return n;
}

/* Records waiting for mbox (journal and import segments). */
static uint64_t
records_waiting(const char *state, const char *mbox)
{
	uint64_t bytes = 0, count = 0;

	if (sbx_spool_usage(state, mbox, &bytes, &count) < 0)
		return UINT64_MAX;
	return count;
}

/* Nothing waiting: no record, and no byte in the journal. */
static int
spool_empty(const char *state, const char *mbox)
{
	return records_waiting(state, mbox) == 0 && journal_size(state, mbox) <= 0;
}

static int
write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc;

	if (fd < 0)
		return -1;
	rc = sbx_write_all(fd, data, len);
	if (close(fd) < 0)
		rc = -1;
	return rc;
}

/* Write path as a new file renamed over it: a new inode, as when another
 * process or an admin rewrote it. The writer's per-process knowledge of a
 * journal's tail (by inode and size) then does not apply, even at the same
 * size. */
static int
replace_file(const char *path, const void *data, size_t len)
{
	char *tmp = sbx_xasprintf("%s.new", path);
	int rc = write_file(tmp, data, len);

	if (rc == 0 && rename(tmp, path) < 0)
		rc = -1;
	free(tmp);
	return rc;
}

static int
slurp(const char *path, char **data_r, size_t *len_r)
{
	*data_r = NULL;
	*len_r = 0;
	return sbx_read_file(path, (size_t)64 << 20, data_r, len_r);
}

static unsigned char *
pattern(size_t len, unsigned int seed)
{
	unsigned char s[randombytes_SEEDBYTES] = { 0 };
	unsigned char *p = sbx_xmalloc(len ? len : 1);

	memcpy(s, &seed, sizeof(seed));
	randombytes_buf_deterministic(p, len, s);
	return p;
}

/* Expected entry size: header, metadata chunk, at least one message chunk. */
static size_t
entry_size(size_t meta_len, size_t msg_len)
{
	size_t chunks = msg_len == 0 ? 1 : (msg_len + SBX_SPOOL_CHUNK - 1) / SBX_SPOOL_CHUNK;

	return HDR_BYTES + 4 + meta_len + ABYTES + msg_len + chunks * (4 + ABYTES);
}

/* Expected record size in the journal. */
static size_t
rec_size(size_t meta_len, size_t msg_len)
{
	return REC_OVERHEAD + entry_size(meta_len, msg_len);
}

static void
init_meta(struct sbx_spool_meta *m, const char *from, const char *orcpt)
{
	memset(m, 0, sizeof(*m));
	m->arrival = 1700000000;
	m->mail_from = (char *)from;
	m->orcpt = (char *)orcpt;
}

/* Deliver msg with the envelope a@b -> c@d (a record of rec_size(META_FIXED
 * + 6, len) bytes). */
static int
deliver(const char *state, const char *mbox, const void *msg, size_t len, char id_r[SBX_ID_HEX])
{
	struct sbx_spool_meta m;
	char *error = NULL;

	init_meta(&m, "a@b", "c@d");
	if (sbx_spool_deliver(state, mbox, pk, &m, msg, len, id_r, &error) < 0) {
		printf("# deliver: %s\n", error);
		free(error);
		return -1;
	}
	return 0;
}

/* A journal record around entry bytes, built from spool.h alone. */
static void
rec_append(struct sbx_buf *b, const char *id, const void *entry, size_t len)
{
	struct sbx_buf whole = { 0 };
	unsigned char h[REC_HDR], check[REC_CHECK];

	memcpy(h, "SBXJ\001\0\0\0", 8);
	sbx_put_be64(h + 8, (uint64_t)len);
	CHECK(sbx_unhex(h + 16, 16, id) == 0);
	sbx_buf_append(&whole, h, sizeof(h));
	sbx_buf_append(&whole, entry, len);
	crypto_generichash(check, sizeof(check), (const unsigned char *)whole.data, whole.len, NULL, 0);
	sbx_buf_append(b, whole.data, whole.len);
	sbx_buf_append(b, check, sizeof(check));
	sbx_buf_free(&whole);
}

/* ---- scanning ---- */

struct scan_result {
	struct sbx_spool_rec *rec;
	size_t n;
	uint64_t damaged, torn;
};

/* Scan a whole file: 0, or -1 when the scan fails. */
static int
scan_file(const char *path, struct scan_result *r)
{
	struct sbx_spool_scan *s = NULL;
	struct sbx_spool_rec rec;
	char *error = NULL;
	size_t cap = 0;
	int rc;

	memset(r, 0, sizeof(*r));
	if (sbx_spool_scan_open(path, &s, &error) < 0) {
		free(error);
		return -1;
	}
	while ((rc = sbx_spool_scan_next(s, &rec, &error)) == 1) {
		if (r->n == cap) {
			cap = cap ? cap * 2 : 16;
			r->rec = sbx_xrealloc(r->rec, cap * sizeof(*r->rec));
		}
		r->rec[r->n++] = rec;
	}
	if (rc < 0) {
		printf("# scan %s: %s\n", path, error);
		free(error);
	}
	r->damaged = sbx_spool_scan_damaged(s);
	r->torn = sbx_spool_scan_torn(s);
	sbx_spool_scan_close(&s);
	return rc;
}

static void
scan_result_free(struct scan_result *r)
{
	free(r->rec);
	memset(r, 0, sizeof(*r));
}

/* Open record rec of the file at path (through a scan of its own, as an
 * importer would) and read it all: 0 only if both succeed. */
static int
read_rec(const char *path, const struct sbx_spool_rec *rec, char **msg_r, size_t *len_r,
	 char **error_r)
{
	struct sbx_spool_scan *s = NULL;
	struct sbx_spool_reader *r = NULL;
	int rc;

	*msg_r = NULL;
	*len_r = 0;
	*error_r = NULL;
	if (sbx_spool_scan_open(path, &s, error_r) < 0)
		return -1;
	rc = sbx_spool_reader_open_rec(s, rec, pk, sk, &r, error_r);
	if (rc == 0) {
		CHECK(r != NULL && strcmp(sbx_spool_reader_meta(r)->delivery_id, rec->delivery_id) == 0);
		rc = sbx_spool_read_all(r, SBX_MAX_MESSAGE_SIZE, msg_r, len_r, error_r);
		sbx_spool_reader_close(&r);
	} else {
		CHECK(r == NULL && *error_r != NULL);
	}
	sbx_spool_scan_close(&s);
	return rc;
}

/* read_rec, and the message must be exactly msg. */
static int
rec_is(const char *path, const struct sbx_spool_rec *rec, const void *msg, size_t len)
{
	char *out = NULL, *error = NULL;
	size_t got = 0;
	int ok;

	if (read_rec(path, rec, &out, &got, &error) < 0) {
		printf("# record %s: %s\n", rec->delivery_id, error);
		free(error);
		return 0;
	}
	ok = got == len && memcmp(out, msg, len) == 0;
	free(out);
	return ok;
}

/* Open by id (sbx_spool_reader_open) and read the whole entry: 0 only if
 * both succeed. */
static int
open_read(const char *state, const char *mbox, const char *id, char **msg_r, size_t *len_r,
	  char **error_r)
{
	struct sbx_spool_reader *r;
	int rc;

	*msg_r = NULL;
	*len_r = 0;
	*error_r = NULL;
	if (sbx_spool_reader_open(state, mbox, id, pk, sk, &r, error_r) < 0)
		return -1;
	rc = sbx_spool_read_all(r, SBX_MAX_MESSAGE_SIZE, msg_r, len_r, error_r);
	sbx_spool_reader_close(&r);
	return rc;
}

/* The same for a bare entry in its own file. */
static int
open_read_file(const char *path, const char *id, char **msg_r, size_t *len_r, char **error_r)
{
	struct sbx_spool_reader *r;
	int rc;

	*msg_r = NULL;
	*len_r = 0;
	*error_r = NULL;
	if (sbx_spool_reader_open_file(path, id, pk, sk, &r, error_r) < 0)
		return -1;
	rc = sbx_spool_read_all(r, SBX_MAX_MESSAGE_SIZE, msg_r, len_r, error_r);
	sbx_spool_reader_close(&r);
	return rc;
}

/* Stream a bare entry with sbx_spool_reader_read only (no size check of our
 * own): 0 if the reader ends with a clean 0. */
static int
open_stream_file(const char *path, const char *id, size_t *len_r, char **error_r)
{
	struct sbx_spool_reader *r;
	char buf[4096];
	long n;

	*len_r = 0;
	*error_r = NULL;
	if (sbx_spool_reader_open_file(path, id, pk, sk, &r, error_r) < 0)
		return -1;
	while ((n = sbx_spool_reader_read(r, buf, sizeof(buf), error_r)) > 0)
		*len_r += (size_t)n;
	sbx_spool_reader_close(&r);
	return n == 0 ? 0 : -1;
}

/* The entry bytes of record id in the mailbox's journal. */
static int
extract_entry(const char *state, const char *mbox, const char *id, char **entry_r, size_t *len_r)
{
	char *path = journal_path(state, mbox), *data = NULL;
	struct scan_result sr;
	size_t len = 0, i;
	int rc = -1;

	*entry_r = NULL;
	*len_r = 0;
	if (scan_file(path, &sr) == 0 && slurp(path, &data, &len) == 0) {
		for (i = 0; i < sr.n; i++) {
			const struct sbx_spool_rec *rec = &sr.rec[i];

			if (strcmp(rec->delivery_id, id) != 0 ||
			    rec->offset + REC_OVERHEAD + rec->entry_len > len)
				continue;
			*len_r = (size_t)rec->entry_len;
			*entry_r = sbx_xmalloc(*len_r);
			memcpy(*entry_r, data + rec->offset + REC_HDR, *len_r);
			rc = 0;
			break;
		}
	}
	scan_result_free(&sr);
	free(data);
	free(path);
	return rc;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- round trips and the format ---- */

TEST(round_trip)
{
	static const size_t sizes[] = { 0, 1, 65535, 65536, 65537, 1024 * 1024 + 3, 100 };
	enum { NSIZES = sizeof(sizes) / sizeof(sizes[0]) };
	static char long_from[SBX_MAX_ADDRESS_LEN + 1], long_orcpt[SBX_MAX_ADDRESS_LEN + 1];
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], delivered[NSIZES][SBX_ID_HEX], *jpath;
	size_t i;

	/* the longest addresses the spool takes */
	memset(long_from, 'f', SBX_MAX_ADDRESS_LEN);
	long_from[64] = '@';
	memset(long_orcpt, 'o', SBX_MAX_ADDRESS_LEN);
	long_orcpt[10] = '@';
	sbx_random_id(mbox);
	jpath = journal_path(state, mbox);
	for (i = 0; i < NSIZES; i++) {
		size_t len = sizes[i], off, step, got = 0, meta_len;
		unsigned char *msg = pattern(len, (unsigned int)i);
		const char *from = i == 0 ? "" : i == 6 ? long_from : "sender+tag@example.org";
		const char *orcpt = i == 2 ? "" : i == 6 ? long_orcpt : "alias@example.net";
		struct sbx_spool_meta m;
		struct sbx_spool_writer *w = NULL;
		struct sbx_spool_reader *r = NULL;
		const struct sbx_spool_meta *rm;
		char id[SBX_ID_HEX] = "", preset[SBX_ID_HEX], *error = NULL, *out = NULL;
		struct scan_result sr;
		long long before = journal_size(state, mbox);
		long n;

		if (before < 0)
			before = 0;
		meta_len = META_FIXED + strlen(from) + strlen(orcpt);
		init_meta(&m, from, orcpt);
		m.arrival = 1700000000 + (time_t)i;
		m.size = len;
		if (i == 3) {
			sbx_random_id(preset);
			memcpy(m.delivery_id, preset, SBX_ID_HEX);
		}
		CHECK(sbx_spool_writer_begin(state, mbox, pk, &m, &w, &error) == 0);
		if (w == NULL) {
			printf("# begin: %s\n", error);
			free(error);
			free(msg);
			continue;
		}
		/* odd piece sizes cross chunk boundaries at every offset */
		step = i % 2 ? 4099 : len + 1;
		for (off = 0; off < len; off += step) {
			size_t k = len - off < step ? len - off : step;

			CHECK(sbx_spool_writer_write(w, msg + off, k, &error) == 0);
		}
		CHECK(sbx_spool_writer_commit(&w, id, &error) == 0);
		CHECK(w == NULL);
		CHECK(sbx_is_id(id));
		memcpy(delivered[i], id, SBX_ID_HEX);
		if (i == 3)
			CHECK(strcmp(id, preset) == 0);
		/* one record more, exactly as long as planned, at the old end */
		CHECKF(journal_size(state, mbox) == before + (long long)rec_size(meta_len, len),
		       "size %zu: journal %lld bytes, expected %lld", len, journal_size(state, mbox),
		       before + (long long)rec_size(meta_len, len));
		CHECK(scan_file(jpath, &sr) == 0);
		CHECK(sr.n == i + 1 && sr.damaged == 0 && sr.torn == 0);
		if (sr.n == i + 1) {
			CHECK(strcmp(sr.rec[i].delivery_id, id) == 0);
			CHECK(sr.rec[i].offset == (uint64_t)before);
			CHECK(sr.rec[i].entry_len == entry_size(meta_len, len));
		}
		scan_result_free(&sr);

		CHECK(sbx_spool_reader_open(state, mbox, id, pk, sk, &r, &error) == 0);
		if (r == NULL) {
			printf("# open: %s\n", error);
			free(error);
			free(msg);
			continue;
		}
		rm = sbx_spool_reader_meta(r);
		CHECK(rm->arrival == 1700000000 + (time_t)i);
		CHECK(strcmp(rm->delivery_id, id) == 0);
		CHECK(strcmp(rm->mail_from, from) == 0);
		CHECK(strcmp(rm->orcpt, orcpt) == 0);
		CHECK(rm->size == len);
		if (len > 200000) {
			/* stream in odd-sized reads */
			char buf[7777];

			out = sbx_xmalloc(len);
			while ((n = sbx_spool_reader_read(r, buf, sizeof(buf), &error)) > 0) {
				if ((size_t)n > len - got)
					break;
				memcpy(out + got, buf, (size_t)n);
				got += (size_t)n;
			}
			CHECK(n == 0);
			CHECK(got == len);
			CHECK(sbx_spool_reader_read(r, buf, 1, &error) == 0);
		} else {
			CHECK(sbx_spool_read_all(r, len, &out, &got, &error) == 0);
			CHECK(got == len);
		}
		CHECKF(out != NULL && got == len && memcmp(out, msg, len) == 0,
		       "size %zu: message differs", len);
		sbx_spool_reader_close(&r);
		CHECK(r == NULL);
		free(out);
		free(msg);
	}
	/* list: every id, in journal order; read_all refuses a message above its max */
	{
		char **ids = NULL, *out = NULL, *error = NULL;
		struct sbx_spool_reader *r = NULL;
		size_t n = 0, got, k;

		CHECK(sbx_spool_list(state, mbox, &ids, &n, &error) == 0);
		CHECK(n == NSIZES);
		for (k = 0; k < n && k < NSIZES; k++) {
			CHECKF(strcmp(ids[k], delivered[k]) == 0, "list %zu: %s", k, ids[k]);
			CHECK(sbx_spool_reader_open(state, mbox, ids[k], pk, sk, &r, &error) == 0);
			if (r != NULL && sbx_spool_reader_meta(r)->size == 65537) {
				CHECK(sbx_spool_read_all(r, 65536, &out, &got, &error) < 0);
				CHECK(out == NULL);
				free(error);
				error = NULL;
			}
			sbx_spool_reader_close(&r);
		}
		sbx_spool_list_free(ids, n);
	}
	free(jpath);
	rm_rf(state);
}

TEST(record_format_and_modes)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], id[SBX_ID_HEX], id2[SBX_ID_HEX];
	char *jpath, *data = NULL, *data2 = NULL, *dir;
	unsigned char idb[16], want[REC_CHECK];
	size_t len = 0, len2 = 0, elen = entry_size(META_FIXED + 6, 5), elen2;
	struct sbx_buf b = { 0 };
	struct stat st;

	sbx_random_id(mbox);
	jpath = journal_path(state, mbox);
	CHECK(deliver(state, mbox, "hello", 5, id) == 0);
	CHECK(slurp(jpath, &data, &len) == 0);
	CHECKF(len == REC_OVERHEAD + elen, "journal %zu bytes, expected %zu", len,
	       (size_t)(REC_OVERHEAD + elen));
	if (len == REC_OVERHEAD + elen) {
		CHECK(memcmp(data, "SBXJ\001\0\0\0", 8) == 0);
		CHECK(sbx_get_be64((unsigned char *)data + 8) == elen);
		CHECK(sbx_unhex(idb, sizeof(idb), id) == 0 && memcmp(data + 16, idb, 16) == 0);
		CHECK(memcmp(data + REC_HDR, "SBXS\001", 5) == 0);
		crypto_generichash(want, sizeof(want), (unsigned char *)data, REC_HDR + elen, NULL, 0);
		CHECK(memcmp(want, data + REC_HDR + elen, REC_CHECK) == 0);
		/* a record built from spool.h alone is byte for byte the same */
		rec_append(&b, id, data + REC_HDR, elen);
		CHECK(b.len == len && memcmp(b.data, data, len) == 0);
	}
	/* the next record follows it; the first stays as it was */
	CHECK(deliver(state, mbox, "world!", 6, id2) == 0);
	elen2 = entry_size(META_FIXED + 6, 6);
	CHECK(slurp(jpath, &data2, &len2) == 0);
	CHECK(len2 == len + REC_OVERHEAD + elen2);
	if (len2 == len + REC_OVERHEAD + elen2) {
		CHECK(memcmp(data2, data, len) == 0);
		b.len = 0;
		rec_append(&b, id2, data2 + len + REC_HDR, elen2);
		CHECK(b.len == REC_OVERHEAD + elen2 && memcmp(b.data, data2 + len, b.len) == 0);
	}
	/* modes; nothing but the journal in the mailbox's spool directory */
	CHECK(lstat(jpath, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600);
	dir = mbox_dir(state, mbox);
	CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700);
	CHECK(count_entries(dir) == 1);
	free(dir);
	dir = sbx_xasprintf("%s/spool", state);
	CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700);
	free(dir);
	sbx_buf_free(&b);
	free(data);
	free(data2);
	free(jpath);
	rm_rf(state);
}

/* no_plaintext_on_disk: every file under the state directory. */
static const char *plain_needles[8];
static size_t plain_nneedles, plain_hits, plain_files;

static int
plain_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	char *data = NULL;
	size_t len = 0, i;

	for (i = 0; i < plain_nneedles; i++) {
		if (strstr(path, plain_needles[i]) != NULL) {
			printf("# %s: name holds \"%s\"\n", path, plain_needles[i]);
			plain_hits++;
		}
	}
	if (type != FTW_F)
		return 0;
	plain_files++;
	if (slurp(path, &data, &len) < 0) {
		printf("# cannot read %s\n", path);
		plain_hits++;
		return 0;
	}
	for (i = 0; i < plain_nneedles; i++) {
		if (memmem(data, len, plain_needles[i], strlen(plain_needles[i])) != NULL) {
			printf("# %s holds \"%s\"\n", path, plain_needles[i]);
			plain_hits++;
		}
	}
	free(data);
	return 0;
}

TEST(no_plaintext_on_disk)
{
	static const char marker[] = "PLAINTEXT-MARKER-7f3a";
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], ids[3][SBX_ID_HEX], *error = NULL;
	char *msg, **paths = NULL;
	size_t msglen = 150000, i, np = 0;
	struct sbx_spool_meta m;

	sbx_random_id(mbox);
	msg = sbx_xmalloc(msglen);
	for (i = 0; i < msglen; i++)
		msg[i] = marker[i % (sizeof(marker) - 1)];
	init_meta(&m, "from-marker-91c2@example.org", "rcpt-marker-44d1@example.net");
	/* an import segment, a damaged segment and the live journal */
	CHECK(sbx_spool_deliver(state, mbox, pk, &m, msg, msglen, ids[0], &error) == 0);
	CHECK(sbx_spool_claim(state, mbox, &paths, &np, &error) == 0 && np == 1);
	sbx_spool_list_free(paths, np);
	CHECK(sbx_spool_deliver(state, mbox, pk, &m, msg, 1000, ids[1], &error) == 0);
	CHECK(sbx_spool_claim(state, mbox, &paths, &np, &error) == 0 && np == 2);
	if (np == 2)
		CHECK(sbx_spool_segment_done(paths[1], 1, &error) == 0);
	sbx_spool_list_free(paths, np);
	CHECK(sbx_spool_deliver(state, mbox, pk, &m, msg, 30, ids[2], &error) == 0);

	plain_nneedles = 0;
	plain_needles[plain_nneedles++] = "PLAINTEX";
	plain_needles[plain_nneedles++] = "-MARKER-";
	plain_needles[plain_nneedles++] = "from-marker-91c2";
	plain_needles[plain_nneedles++] = "rcpt-marker-44d1";
	for (i = 0; i < 3; i++)
		plain_needles[plain_nneedles++] = ids[i];   /* hex ids: the header holds them binary */
	plain_hits = plain_files = 0;
	CHECK(nftw(state, plain_cb, 16, FTW_PHYS) == 0);
	CHECKF(plain_files == 3, "%zu files", plain_files);
	CHECK(plain_hits == 0);
	free(msg);
	rm_rf(state);
}

TEST(wrong_key)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], id[SBX_ID_HEX], *error = NULL;
	char *entry = NULL, *path, *jpath;
	unsigned char pk2[32], sk2[32];
	struct sbx_spool_reader *r = NULL;
	struct sbx_spool_scan *s = NULL;
	struct sbx_spool_rec rec;
	size_t elen = 0;

	sbx_random_id(mbox);
	crypto_box_keypair(pk2, sk2);
	CHECK(deliver(state, mbox, "secret", 6, id) == 0);
	CHECK(sbx_spool_reader_open(state, mbox, id, pk2, sk2, &r, &error) < 0);
	CHECK(r == NULL && error != NULL);
	free(error);
	error = NULL;
	CHECK(sbx_spool_reader_open(state, mbox, id, pk, sk2, &r, &error) < 0);
	CHECK(r == NULL && error != NULL);
	free(error);
	error = NULL;
	/* through a scan of the journal */
	jpath = journal_path(state, mbox);
	CHECK(sbx_spool_scan_open(jpath, &s, &error) == 0);
	CHECK(s != NULL && sbx_spool_scan_next(s, &rec, &error) == 1);
	CHECK(sbx_spool_reader_open_rec(s, &rec, pk2, sk2, &r, &error) < 0 && r == NULL);
	free(error);
	error = NULL;
	CHECK(sbx_spool_reader_open_rec(s, &rec, pk, sk, &r, &error) == 0 && r != NULL);
	sbx_spool_reader_close(&r);
	sbx_spool_scan_close(&s);
	CHECK(s == NULL);
	/* a bare entry file */
	CHECK(extract_entry(state, mbox, id, &entry, &elen) == 0);
	path = sbx_xasprintf("%s/entry", state);
	CHECK(write_file(path, entry, elen) == 0);
	CHECK(sbx_spool_reader_open_file(path, id, pk2, sk2, &r, &error) < 0 && r == NULL);
	free(error);
	error = NULL;
	CHECK(sbx_spool_reader_open_file(path, NULL, pk, sk2, &r, &error) < 0 && r == NULL);
	free(error);
	error = NULL;
	/* control: the right pair opens it */
	CHECK(sbx_spool_reader_open(state, mbox, id, pk, sk, &r, &error) == 0);
	sbx_spool_reader_close(&r);
	CHECK(sbx_spool_reader_open_file(path, id, pk, sk, &r, &error) == 0);
	sbx_spool_reader_close(&r);
	free(entry);
	free(path);
	free(jpath);
	rm_rf(state);
}

/* ---- damage to a bare entry ---- */

/* A 200 KiB entry with four message chunks, copied out of the journal
 * into a file of its own (*path_r), for the damage tests. */
static char *
damage_setup(char *mbox, char *id, char **orig_r, size_t *len_r, char **path_r)
{
	char *state = make_tmpdir(), *error = NULL;
	unsigned char *msg = pattern(200 * 1024, 42);
	struct sbx_spool_meta m;

	sbx_random_id(mbox);
	init_meta(&m, "sender@example.org", "rcpt@example.net");
	CHECK(sbx_spool_deliver(state, mbox, pk, &m, msg, 200 * 1024, id, &error) == 0);
	free(msg);
	*path_r = sbx_xasprintf("%s/entry", state);
	CHECK(extract_entry(state, mbox, id, orig_r, len_r) == 0);
	CHECK(write_file(*path_r, *orig_r, *len_r) == 0);
	return state;
}

TEST(byte_flips)
{
	char mbox[SBX_ID_HEX], id[SBX_ID_HEX], *orig, *path, *copy, *out, *error;
	size_t len, pos[400], npos = 0, i, outlen, meta_end, silent = 0;
	char *state = damage_setup(mbox, id, &orig, &len, &path);

	meta_end = HDR_BYTES + 4 + META_FIXED + 34 + ABYTES;
	for (i = 0; i < HDR_BYTES + 8; i += 2)            /* header, meta length */
		pos[npos++] = i;
	for (i = 0; i < 4; i++) {                         /* each message chunk's length */
		size_t b = meta_end + i * (4 + SBX_SPOOL_CHUNK + ABYTES), k;

		for (k = 0; k < 6; k++)
			if (b + k < len)
				pos[npos++] = b + k;
	}
	for (i = 0; i < 110; i++)                         /* spread over the file */
		pos[npos++] = HDR_BYTES + (len - HDR_BYTES) * i / 110;
	for (i = 1; i <= 8; i++)                          /* the final tag */
		pos[npos++] = len - i;
	CHECK(npos >= 190);
	CHECK(len == entry_size(META_FIXED + 34, 200 * 1024));
	copy = sbx_xmalloc(len);
	for (i = 0; i < npos; i++) {
		memcpy(copy, orig, len);
		copy[pos[i]] ^= (char)(i % 2 ? 0x01 : 0x80);
		CHECK(write_file(path, copy, len) == 0);
		if (open_read_file(path, id, &out, &outlen, &error) == 0) {
			silent++;
			CHECKF(0, "flip at %zu read back cleanly (%s)", pos[i],
			       outlen == 200 * 1024 ? "same length" : "other length");
			free(out);
		}
		CHECK(error != NULL);
		free(error);
	}
	CHECK(silent == 0);
	/* control: the undamaged file still reads */
	CHECK(write_file(path, orig, len) == 0);
	CHECK(open_read_file(path, id, &out, &outlen, &error) == 0);
	CHECK(outlen == 200 * 1024);
	free(out);
	free(copy);
	free(orig);
	free(path);
	rm_rf(state);
}

TEST(truncation)
{
	char mbox[SBX_ID_HEX], id[SBX_ID_HEX], *orig, *path, *out, *error;
	size_t len, cut[300], ncut = 0, i, outlen, meta_end;
	char *state = damage_setup(mbox, id, &orig, &len, &path);

	meta_end = HDR_BYTES + 4 + META_FIXED + 34 + ABYTES;
	for (i = 0; i < HDR_BYTES + 8; i += 3)
		cut[ncut++] = i;
	cut[ncut++] = meta_end - 1;
	for (i = 0; i < 4; i++) {   /* at chunk boundaries: a clean-looking cut */
		size_t b = meta_end + i * (4 + SBX_SPOOL_CHUNK + ABYTES);

		cut[ncut++] = b;
		cut[ncut++] = b + 2;
		cut[ncut++] = b + 4;
		cut[ncut++] = b + 5;
	}
	for (i = 0; i < 100; i++)
		cut[ncut++] = HDR_BYTES + (len - HDR_BYTES) * i / 100;
	cut[ncut++] = len - 1;
	cut[ncut++] = len - ABYTES;
	for (i = 0; i < ncut; i++) {
		int boundary = 0;
		size_t k;

		for (k = 0; k < 4; k++)
			if (cut[i] == meta_end + k * (4 + SBX_SPOOL_CHUNK + ABYTES))
				boundary = 1;
		CHECK(write_file(path, orig, cut[i]) == 0);
		if (open_read_file(path, id, &out, &outlen, &error) == 0) {
			CHECKF(0, "cut at %zu read back cleanly (%zu bytes)", cut[i], outlen);
			free(out);
		}
		CHECK(error != NULL);
		if (boundary)
			CHECKF(error != NULL && strcmp(error, "spool entry truncated") == 0,
			       "cut at chunk boundary %zu: %s", cut[i], error ? error : "(none)");
		free(error);
	}
	/* streaming reads of a cut entry end in -1, never a clean 0 */
	{
		struct sbx_spool_reader *r = NULL;
		char buf[10000];
		long n;

		CHECK(write_file(path, orig, meta_end + 2 * (4 + SBX_SPOOL_CHUNK + ABYTES)) == 0);
		error = NULL;
		CHECK(sbx_spool_reader_open_file(path, id, pk, sk, &r, &error) == 0);
		if (r != NULL) {
			while ((n = sbx_spool_reader_read(r, buf, sizeof(buf), &error)) > 0)
				;
			CHECK(n == -1);
			CHECK(error != NULL && strcmp(error, "spool entry truncated") == 0);
			free(error);
			/* and it stays failed */
			error = NULL;
			CHECK(sbx_spool_reader_read(r, buf, sizeof(buf), &error) == -1);
			free(error);
			sbx_spool_reader_close(&r);
		}
	}
	free(orig);
	free(path);
	rm_rf(state);
}

TEST(appended_garbage)
{
	static const size_t extra[] = { 1, 4, 21, 100 };
	char mbox[SBX_ID_HEX], id[SBX_ID_HEX], *orig, *path, *copy, *out, *error, *jf;
	size_t len, i, outlen;
	char *state = damage_setup(mbox, id, &orig, &len, &path);
	struct sbx_buf b = { 0 };
	struct scan_result sr;

	copy = sbx_xmalloc(len + 4 + 8192 + ABYTES);
	for (i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		memcpy(copy, orig, len);
		memset(copy + len, 0, extra[i]);
		if (extra[i] == 21)  /* a plausible empty chunk: length 17 */
			copy[len + 3] = ABYTES;
		CHECK(write_file(path, copy, len + extra[i]) == 0);
		if (open_read_file(path, id, &out, &outlen, &error) == 0) {
			CHECKF(0, "%zu appended bytes read back cleanly", extra[i]);
			free(out);
		}
		CHECK(error != NULL);
		free(error);
	}
	/* a copy of the final chunk appended again */
	memcpy(copy, orig, len);
	memcpy(copy + len, orig + len - (4 + 8192 + ABYTES), 4 + 8192 + ABYTES);
	CHECK(write_file(path, copy, len + 4 + 8192 + ABYTES) == 0);
	CHECK(open_read_file(path, id, &out, &outlen, &error) < 0);
	free(error);

	/* Inside a journal record with a valid check value (anyone can compute
	 * one): the entry must end exactly where the record says, no later
	 * and no earlier. */
	jf = sbx_xasprintf("%s/records", state);
	memcpy(copy, orig, len);
	memset(copy + len, 0, 100);
	rec_append(&b, id, copy, len + 100);
	CHECK(write_file(jf, b.data, b.len) == 0);
	CHECK(scan_file(jf, &sr) == 0 && sr.n == 1 && sr.damaged == 0 && sr.torn == 0);
	if (sr.n == 1) {
		CHECK(sr.rec[0].entry_len == len + 100);
		CHECK(read_rec(jf, &sr.rec[0], &out, &outlen, &error) < 0);
		CHECKF(error != NULL && strcmp(error, "spool entry damaged: data after its end") == 0,
		       "error: %s", error ? error : "(none)");
		free(error);
	}
	scan_result_free(&sr);
	b.len = 0;
	rec_append(&b, id, orig, len - 100);
	CHECK(write_file(jf, b.data, b.len) == 0);
	CHECK(scan_file(jf, &sr) == 0 && sr.n == 1);
	if (sr.n == 1) {
		CHECK(read_rec(jf, &sr.rec[0], &out, &outlen, &error) < 0);
		CHECKF(error != NULL && strcmp(error, "spool entry truncated") == 0,
		       "error: %s", error ? error : "(none)");
		free(error);
	}
	scan_result_free(&sr);
	/* control: the entry as it was, in a record of its own */
	b.len = 0;
	rec_append(&b, id, orig, len);
	CHECK(write_file(jf, b.data, b.len) == 0);
	CHECK(scan_file(jf, &sr) == 0 && sr.n == 1);
	if (sr.n == 1) {
		CHECK(read_rec(jf, &sr.rec[0], &out, &outlen, &error) == 0 && outlen == 200 * 1024);
		free(out);
	}
	scan_result_free(&sr);
	sbx_buf_free(&b);
	free(jf);
	free(copy);
	free(orig);
	free(path);
	rm_rf(state);
}

/* Hand-built entries sealed to the right key: the reader must hold any
 * writer (anyone with the public key) to the format, not only ours. */
struct piece {
	const void *data;
	size_t len;
	unsigned char tag;
};

static int
craft(struct sbx_buf *b, const struct piece *pieces, size_t n)
{
	unsigned char key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
	unsigned char hdr[HDR_BYTES], *out;
	crypto_secretstream_xchacha20poly1305_state st;
	unsigned long long ctlen;
	size_t i;

	b->len = 0;
	crypto_secretstream_xchacha20poly1305_keygen(key);
	memcpy(hdr, "SBXS\001", 5);
	if (crypto_box_seal(hdr + 5, key, sizeof(key), pk) != 0)
		return -1;
	crypto_secretstream_xchacha20poly1305_init_push(&st, hdr + 5 + 80, key);
	sbx_buf_append(b, hdr, sizeof(hdr));
	for (i = 0; i < n; i++) {
		out = sbx_xmalloc(4 + pieces[i].len + ABYTES);
		crypto_secretstream_xchacha20poly1305_push(&st, out + 4, &ctlen, pieces[i].data,
							   pieces[i].len, NULL, 0, pieces[i].tag);
		out[0] = (unsigned char)(ctlen >> 24);
		out[1] = (unsigned char)(ctlen >> 16);
		out[2] = (unsigned char)(ctlen >> 8);
		out[3] = (unsigned char)ctlen;
		sbx_buf_append(b, out, 4 + (size_t)ctlen);
		free(out);
	}
	return 0;
}

/* A metadata record as spool.h describes it. */
static size_t
meta_rec(unsigned char *p, const char *id, const char *from, size_t from_len,
	 const char *orcpt, uint64_t size)
{
	size_t n = 0, orcpt_len = strlen(orcpt);
	int i;

	p[n++] = 1;
	for (i = 7; i >= 0; i--)
		p[n++] = (unsigned char)((uint64_t)1700000123 >> (8 * i));
	(void)sbx_unhex(p + n, 16, id);
	n += 16;
	p[n++] = (unsigned char)(from_len >> 8);
	p[n++] = (unsigned char)from_len;
	memcpy(p + n, from, from_len);
	n += from_len;
	p[n++] = (unsigned char)(orcpt_len >> 8);
	p[n++] = (unsigned char)orcpt_len;
	memcpy(p + n, orcpt, orcpt_len);
	n += orcpt_len;
	for (i = 7; i >= 0; i--)
		p[n++] = (unsigned char)(size >> (8 * i));
	return n;
}

TEST(crafted_entries)
{
	enum { M = crypto_secretstream_xchacha20poly1305_TAG_MESSAGE,
	       F = crypto_secretstream_xchacha20poly1305_TAG_FINAL,
	       P = crypto_secretstream_xchacha20poly1305_TAG_PUSH,
	       R = crypto_secretstream_xchacha20poly1305_TAG_REKEY };
	char *state = make_tmpdir(), id[SBX_ID_HEX], *path, *jf, *out, *error;
	static char from_long[SBX_MAX_ADDRESS_LEN + 1], big[SBX_SPOOL_CHUNK + 1];
	unsigned char meta[8192];
	struct sbx_buf entry = { 0 }, recs = { 0 };
	size_t ml, len, i;
	struct {
		const char *name;
		int ok;
		struct piece p[4];
		size_t n;
		uint64_t size;       /* for the metadata record */
		int meta_kind;       /* 0 normal, 1 long from, 2 NUL in from, 3 extra byte,
					4 version 2, 5 huge size, 6 oversized record, 7 other id */
	} cases[] = {
		{ "control", 1, { { NULL, 0, M }, { "hello", 5, F } }, 2, 5, 0 },
		{ "empty final after data", 1, { { NULL, 0, M }, { "hello", 5, M }, { "", 0, F } }, 3, 5, 0 },
		{ "empty middle chunk", 1, { { NULL, 0, M }, { "he", 2, M }, { "", 0, M }, { "llo", 3, F } }, 4, 5, 0 },
		{ "shorter than declared", 0, { { NULL, 0, M }, { "hello", 5, F } }, 2, 10, 0 },
		{ "longer than declared", 0, { { NULL, 0, M }, { "hello", 5, F } }, 2, 3, 0 },
		{ "longer, split", 0, { { NULL, 0, M }, { "hel", 3, M }, { "lo", 2, F } }, 3, 4, 0 },
		{ "meta chunk is final", 0, { { NULL, 0, F } }, 1, 0, 0 },
		{ "meta final, then data", 0, { { NULL, 0, F }, { "hello", 5, F } }, 2, 5, 0 },
		{ "no final chunk", 0, { { NULL, 0, M }, { "hello", 5, M } }, 2, 5, 0 },
		{ "meta only", 0, { { NULL, 0, M } }, 1, 0, 0 },
		{ "push tag", 0, { { NULL, 0, M }, { "hello", 5, P }, { "", 0, F } }, 3, 5, 0 },
		{ "rekey tag", 0, { { NULL, 0, M }, { "hello", 5, R }, { "", 0, F } }, 3, 5, 0 },
		{ "two finals", 0, { { NULL, 0, M }, { "hel", 3, F }, { "lo", 2, F } }, 3, 5, 0 },
		{ "chunk above SBX_SPOOL_CHUNK", 0, { { NULL, 0, M }, { big, sizeof(big), F } }, 2,
		  sizeof(big), 0 },
		{ "from too long", 0, { { NULL, 0, M }, { "hello", 5, F } }, 2, 5, 1 },
		{ "NUL in from", 0, { { NULL, 0, M }, { "hello", 5, F } }, 2, 5, 2 },
		{ "extra meta byte", 0, { { NULL, 0, M }, { "hello", 5, F } }, 2, 5, 3 },
		{ "meta version 2", 0, { { NULL, 0, M }, { "hello", 5, F } }, 2, 5, 4 },
		{ "size above the ceiling", 0, { { NULL, 0, M }, { "hello", 5, F } }, 2,
		  (uint64_t)SBX_MAX_MESSAGE_SIZE + 1, 0 },
		{ "meta above SBX_SPOOL_MAX_META", 0, { { NULL, 0, M }, { "hello", 5, F } }, 2, 5, 6 },
		{ "other delivery id", 0, { { NULL, 0, M }, { "hello", 5, F } }, 2, 5, 7 },
	};

	memset(from_long, 'a', sizeof(from_long));
	memset(big, 'b', sizeof(big));
	sbx_random_id(id);
	path = sbx_xasprintf("%s/entry", state);
	jf = sbx_xasprintf("%s/records", state);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char other[SBX_ID_HEX];
		struct scan_result sr;

		sbx_random_id(other);
		switch (cases[i].meta_kind) {
		case 1:
			ml = meta_rec(meta, id, from_long, sizeof(from_long), "r@x", cases[i].size);
			break;
		case 2:
			ml = meta_rec(meta, id, "a\0b@x", 5, "r@x", cases[i].size);
			break;
		case 6:
			ml = meta_rec(meta, id, "a@x", 3, "r@x", cases[i].size);
			memset(meta + ml, 0, 4097 - ml);
			ml = 4097;
			break;
		case 7:
			ml = meta_rec(meta, other, "a@x", 3, "r@x", cases[i].size);
			break;
		default:
			ml = meta_rec(meta, id, "a@x", 3, "r@x", cases[i].size);
			break;
		}
		if (cases[i].meta_kind == 3)
			meta[ml++] = 0;
		if (cases[i].meta_kind == 4)
			meta[0] = 2;
		cases[i].p[0].data = meta;
		cases[i].p[0].len = ml;
		CHECK(craft(&entry, cases[i].p, cases[i].n) == 0);

		/* a bare entry in its own file */
		CHECK(write_file(path, entry.data, entry.len) == 0);
		out = NULL;
		len = 0;
		if (open_read_file(path, id, &out, &len, &error) == 0) {
			CHECKF(cases[i].ok, "%s: read back cleanly", cases[i].name);
			CHECKF(len == cases[i].size && memcmp(out, "hello", len) == 0, "%s: wrong data",
			       cases[i].name);
		} else {
			CHECKF(!cases[i].ok, "%s: %s", cases[i].name, error ? error : "(none)");
		}
		free(out);
		free(error);
		if (open_stream_file(path, id, &len, &error) == 0)
			CHECKF(cases[i].ok && len == 5, "%s: streamed cleanly (%zu bytes)", cases[i].name, len);
		else
			CHECKF(!cases[i].ok, "%s: streaming: %s", cases[i].name, error ? error : "(none)");
		free(error);

		/* the same entry in a journal record with a valid check value */
		recs.len = 0;
		rec_append(&recs, id, entry.data, entry.len);
		CHECK(write_file(jf, recs.data, recs.len) == 0);
		CHECK(scan_file(jf, &sr) == 0);
		if (sr.n == 1 && read_rec(jf, &sr.rec[0], &out, &len, &error) == 0) {
			CHECKF(cases[i].ok, "%s: record read back cleanly", cases[i].name);
			CHECKF(len == cases[i].size && memcmp(out, "hello", len) == 0,
			       "%s: record: wrong data", cases[i].name);
			free(out);
		} else {
			/* a record too short for any entry is not a record at all */
			CHECKF(!cases[i].ok, "%s: record: %s", cases[i].name,
			       sr.n != 1 ? "not found" : error ? error : "(none)");
			if (sr.n == 1)
				free(error);
		}
		scan_result_free(&sr);
	}
	sbx_buf_free(&entry);
	sbx_buf_free(&recs);
	free(path);
	free(jf);
	rm_rf(state);
}

/* The delivery id sealed in the metadata must match the name it is found
 * under: the record header's id, or the id asked for. */
TEST(id_mismatch)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], id[SBX_ID_HEX], other[SBX_ID_HEX];
	char *error = NULL, *entry = NULL, *path, *jpath, **ids = NULL;
	struct sbx_spool_reader *r = NULL;
	struct sbx_buf b = { 0 };
	struct scan_result sr;
	size_t elen = 0, n = 0, len;
	char *out;

	sbx_random_id(mbox);
	sbx_random_id(other);
	CHECK(deliver(state, mbox, "x", 1, id) == 0);
	CHECK(extract_entry(state, mbox, id, &entry, &elen) == 0);
	path = sbx_xasprintf("%s/entry", state);
	CHECK(write_file(path, entry, elen) == 0);
	CHECK(sbx_spool_reader_open_file(path, other, pk, sk, &r, &error) < 0);
	CHECK(r == NULL);
	CHECKF(error != NULL && strcmp(error, "spool entry name does not match its sealed delivery id") == 0,
	       "error: %s", error ? error : "(none)");
	free(error);
	error = NULL;
	/* NULL takes any id */
	CHECK(sbx_spool_reader_open_file(path, NULL, pk, sk, &r, &error) == 0);
	CHECK(r != NULL && strcmp(sbx_spool_reader_meta(r)->delivery_id, id) == 0);
	sbx_spool_reader_close(&r);

	/* the entry under another id in a record header (valid check value) */
	rec_append(&b, other, entry, elen);
	jpath = journal_path(state, mbox);
	CHECK(replace_file(jpath, b.data, b.len) == 0);
	CHECK(sbx_spool_list(state, mbox, &ids, &n, &error) == 0);
	CHECK(n == 1 && strcmp(ids[0], other) == 0);
	sbx_spool_list_free(ids, n);
	CHECK(sbx_spool_reader_open(state, mbox, other, pk, sk, &r, &error) < 0 && r == NULL);
	CHECKF(error != NULL && strcmp(error, "spool entry name does not match its sealed delivery id") == 0,
	       "error: %s", error ? error : "(none)");
	free(error);
	error = NULL;
	CHECK(scan_file(jpath, &sr) == 0 && sr.n == 1);
	if (sr.n == 1)
		CHECK(read_rec(jpath, &sr.rec[0], &out, &len, &error) < 0);
	free(error);
	scan_result_free(&sr);
	CHECK(sbx_spool_reader_open(state, mbox, id, pk, sk, &r, &error) < 0 && r == NULL);
	free(error);
	sbx_buf_free(&b);
	free(entry);
	free(path);
	free(jpath);
	rm_rf(state);
}

/* ---- the writer ---- */

TEST(writer_abort)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], mbox2[SBX_ID_HEX], *error = NULL;
	char id[SBX_ID_HEX], id2[SBX_ID_HEX], *jpath;
	unsigned char *msg = pattern(100000, 7);
	struct sbx_spool_writer *w = NULL;
	struct sbx_spool_meta m;
	struct scan_result sr;
	long long before;

	sbx_random_id(mbox);
	sbx_random_id(mbox2);
	jpath = journal_path(state, mbox);
	CHECK(deliver(state, mbox, "first", 5, id) == 0);
	before = journal_size(state, mbox);
	init_meta(&m, "a@b", "c@d");
	m.size = 200000;
	CHECK(sbx_spool_writer_begin(state, mbox, pk, &m, &w, &error) == 0);
	CHECK(w != NULL && sbx_spool_writer_write(w, msg, 100000, &error) == 0);
	CHECK(journal_size(state, mbox) > before);   /* streamed, not buffered */
	sbx_spool_writer_abort(&w);
	CHECK(w == NULL);
	CHECK(journal_size(state, mbox) == before);
	sbx_spool_writer_abort(&w);  /* NULL is fine */
	CHECK(scan_file(jpath, &sr) == 0 && sr.n == 1 && sr.damaged == 0 && sr.torn == 0);
	if (sr.n == 1)
		CHECK(rec_is(jpath, &sr.rec[0], "first", 5));
	scan_result_free(&sr);
	/* the next record goes where the aborted one was */
	CHECK(deliver(state, mbox, msg, 1000, id2) == 0);
	CHECK(scan_file(jpath, &sr) == 0 && sr.n == 2 && sr.damaged == 0 && sr.torn == 0);
	if (sr.n == 2) {
		CHECK(sr.rec[1].offset == (uint64_t)before && strcmp(sr.rec[1].delivery_id, id2) == 0);
		CHECK(rec_is(jpath, &sr.rec[1], msg, 1000));
	}
	scan_result_free(&sr);
	/* an abort in a mailbox's first record leaves no record */
	CHECK(sbx_spool_writer_begin(state, mbox2, pk, &m, &w, &error) == 0);
	CHECK(w != NULL && sbx_spool_writer_write(w, msg, 100000, &error) == 0);
	sbx_spool_writer_abort(&w);
	CHECK(spool_empty(state, mbox2));
	free(jpath);
	free(msg);
	rm_rf(state);
}

/* A writer holds the journal until commit: another process's writer waits,
 * and its record comes after. */
TEST(writer_lock_blocks)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], *error = NULL, id[SBX_ID_HEX], *jpath;
	int to_child[2], status = 0;
	struct sbx_spool_writer *w = NULL;
	struct sbx_spool_meta m;
	struct scan_result sr;
	char c = 0;
	pid_t pid;

	sbx_random_id(mbox);
	jpath = journal_path(state, mbox);
	/* the journal exists before the fork: both processes know its end */
	CHECK(deliver(state, mbox, "first", 5, id) == 0);
	/* the child is forked before the writer exists: a copy of the
	 * writer's descriptor would be a copy of its lock */
	CHECK(pipe(to_child) == 0);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		char cid[SBX_ID_HEX];

		close(to_child[1]);
		if (read(to_child[0], &c, 1) != 1)
			_exit(2);
		_exit(deliver(state, mbox, "child", 5, cid) == 0 ? 0 : 1);
	}
	CHECK(pid > 0);
	close(to_child[0]);
	init_meta(&m, "a@b", "c@d");
	m.size = 6;
	CHECK(sbx_spool_writer_begin(state, mbox, pk, &m, &w, &error) == 0);
	CHECK(w != NULL && sbx_spool_writer_write(w, "parent", 6, &error) == 0);
	CHECK(write(to_child[1], "g", 1) == 1);
	usleep(300000);
	CHECK(waitpid(pid, &status, WNOHANG) == 0);   /* still waiting for the lock */
	CHECK(sbx_spool_writer_commit(&w, id, &error) == 0);
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(scan_file(jpath, &sr) == 0 && sr.n == 3 && sr.damaged == 0 && sr.torn == 0);
	if (sr.n == 3) {
		CHECK(rec_is(jpath, &sr.rec[0], "first", 5));
		CHECK(strcmp(sr.rec[1].delivery_id, id) == 0);
		CHECK(rec_is(jpath, &sr.rec[1], "parent", 6));
		CHECK(rec_is(jpath, &sr.rec[2], "child", 5));
	}
	scan_result_free(&sr);
	close(to_child[1]);
	free(jpath);
	rm_rf(state);
}

TEST(commit_wrong_size)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], *error = NULL, id[SBX_ID_HEX], id2[SBX_ID_HEX];
	unsigned char *msg = pattern(1000, 9);
	struct sbx_spool_writer *w = NULL;
	struct sbx_spool_meta m;
	char **ids;
	size_t n;

	sbx_random_id(mbox);
	init_meta(&m, "a@b", "c@d");
	/* short */
	m.size = 1000;
	CHECK(sbx_spool_writer_begin(state, mbox, pk, &m, &w, &error) == 0);
	CHECK(sbx_spool_writer_write(w, msg, 999, &error) == 0);
	CHECK(sbx_spool_writer_commit(&w, id, &error) < 0);
	CHECK(w == NULL && error != NULL);
	free(error);
	error = NULL;
	CHECK(spool_empty(state, mbox));
	/* long */
	m.size = 10;
	CHECK(sbx_spool_writer_begin(state, mbox, pk, &m, &w, &error) == 0);
	CHECK(sbx_spool_writer_write(w, msg, 11, &error) < 0);
	free(error);
	error = NULL;
	CHECK(sbx_spool_writer_commit(&w, id, &error) < 0);
	CHECK(w == NULL);
	free(error);
	error = NULL;
	CHECK(spool_empty(state, mbox));
	/* too long envelope address, oversized message */
	m.mail_from = sbx_xmalloc(SBX_MAX_ADDRESS_LEN + 2);
	memset(m.mail_from, 'a', SBX_MAX_ADDRESS_LEN + 1);
	m.mail_from[SBX_MAX_ADDRESS_LEN + 1] = '\0';
	CHECK(sbx_spool_writer_begin(state, mbox, pk, &m, &w, &error) < 0 && w == NULL);
	free(error);
	error = NULL;
	free(m.mail_from);
	m.mail_from = "a@b";
	m.orcpt = sbx_xmalloc(SBX_MAX_ADDRESS_LEN + 2);
	memset(m.orcpt, 'o', SBX_MAX_ADDRESS_LEN + 1);
	m.orcpt[SBX_MAX_ADDRESS_LEN + 1] = '\0';
	CHECK(sbx_spool_writer_begin(state, mbox, pk, &m, &w, &error) < 0 && w == NULL);
	free(error);
	error = NULL;
	free(m.orcpt);
	m.orcpt = "c@d";
	m.size = (uint64_t)SBX_MAX_MESSAGE_SIZE + 1;
	CHECK(sbx_spool_writer_begin(state, mbox, pk, &m, &w, &error) < 0 && w == NULL);
	free(error);
	error = NULL;
	CHECK(spool_empty(state, mbox));
	/* control: the exact size commits */
	m.size = 10;
	CHECK(sbx_spool_writer_begin(state, mbox, pk, &m, &w, &error) == 0);
	CHECK(sbx_spool_writer_write(w, msg, 10, &error) == 0);
	CHECK(sbx_spool_writer_commit(&w, id, &error) == 0);
	CHECK(sbx_spool_list(state, mbox, &ids, &n, &error) == 0 && n == 1);
	sbx_spool_list_free(ids, n);
	/* The same delivery id again: the journal cannot refuse it cheaply (the
	 * import is what de-duplicates by delivery id), but the first record
	 * must stay intact and be the one found by that id. */
	memcpy(m.delivery_id, id, SBX_ID_HEX);
	if (sbx_spool_deliver(state, mbox, pk, &m, "different!", 10, id2, &error) == 0) {
		CHECK(strcmp(id2, id) == 0);
		CHECK(sbx_spool_list(state, mbox, &ids, &n, &error) == 0 && n == 2);
		sbx_spool_list_free(ids, n);
	} else {
		free(error);
		error = NULL;
		CHECK(records_waiting(state, mbox) == 1);
	}
	{
		char *out = NULL;
		size_t len = 0;

		CHECK(open_read(state, mbox, id, &out, &len, &error) == 0);
		CHECK(len == 10 && out != NULL && memcmp(out, msg, 10) == 0);
		free(out);
	}
	free(msg);
	rm_rf(state);
}

/* ---- journals ---- */

/* (a) records come back in order, contiguous, with their ids and lengths */
TEST(journal_order)
{
	enum { N = 12 };
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], ids[N][SBX_ID_HEX], *jpath;
	unsigned char *msg = pattern(70000, 11);
	size_t sizes[N], i;
	struct scan_result sr;
	uint64_t off = 0;

	sbx_random_id(mbox);
	jpath = journal_path(state, mbox);
	for (i = 0; i < N; i++) {
		sizes[i] = i == 7 ? 70000 : i * 4099;
		CHECK(deliver(state, mbox, msg, sizes[i], ids[i]) == 0);
	}
	CHECK(scan_file(jpath, &sr) == 0);
	CHECK(sr.n == N && sr.damaged == 0 && sr.torn == 0);
	for (i = 0; i < sr.n && i < N; i++) {
		CHECKF(strcmp(sr.rec[i].delivery_id, ids[i]) == 0, "record %zu: %s", i,
		       sr.rec[i].delivery_id);
		CHECKF(sr.rec[i].offset == off, "record %zu at %llu, expected %llu", i,
		       (unsigned long long)sr.rec[i].offset, (unsigned long long)off);
		CHECK(sr.rec[i].entry_len == entry_size(META_FIXED + 6, sizes[i]));
		CHECKF(rec_is(jpath, &sr.rec[i], msg, sizes[i]), "record %zu", i);
		off = sr.rec[i].offset + REC_OVERHEAD + sr.rec[i].entry_len;
	}
	CHECK((long long)off == file_size(jpath));
	scan_result_free(&sr);
	/* an empty journal: no record, nothing damaged */
	CHECK(write_file(jpath, "", 0) == 0);
	CHECK(scan_file(jpath, &sr) == 0 && sr.n == 0 && sr.damaged == 0 && sr.torn == 0);
	scan_result_free(&sr);
	free(jpath);
	free(msg);
	rm_rf(state);
}

/* (b) a torn last record: reported as torn, and cut off by the next append.
 * The journals are written by this process only and damaged as a crash
 * would: a shorter file (the writer, which knows where the journal ended,
 * looks again from the start) or bytes past the end it knows (it looks
 * from there). */
TEST(torn_tail)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], ids[3][SBX_ID_HEX], nid[SBX_ID_HEX];
	char *jpath, *orig = NULL;
	unsigned char *msg = pattern(70000, 5);
	static const size_t sizes[3] = { 1000, 70000, 3000 };
	size_t olen = 0, good, full, cuts[16], ncut = 0, i, k, newrec;
	struct scan_result sr;

	good = rec_size(META_FIXED + 6, sizes[0]) + rec_size(META_FIXED + 6, sizes[1]);
	full = good + rec_size(META_FIXED + 6, sizes[2]);
	newrec = rec_size(META_FIXED + 6, 10);
	cuts[ncut++] = good + 1;
	cuts[ncut++] = good + 4;
	cuts[ncut++] = good + REC_HDR - 1;
	cuts[ncut++] = good + REC_HDR;
	cuts[ncut++] = good + REC_HDR + 200;
	cuts[ncut++] = good + (full - good) / 2;
	cuts[ncut++] = full - REC_CHECK;
	cuts[ncut++] = full - 1;
	for (i = 0; i < ncut; i++) {   /* a mailbox for each cut */
		sbx_random_id(mbox);
		jpath = journal_path(state, mbox);
		for (k = 0; k < 3; k++)
			CHECK(deliver(state, mbox, msg, sizes[k], ids[k]) == 0);
		CHECK(journal_size(state, mbox) == (long long)full);
		CHECK(truncate(jpath, (off_t)cuts[i]) == 0);
		CHECK(scan_file(jpath, &sr) == 0);
		CHECKF(sr.n == 2 && sr.torn == cuts[i] - good && sr.damaged == 0,
		       "cut at %zu: %zu records, torn %llu, damaged %llu", cuts[i], sr.n,
		       (unsigned long long)sr.torn, (unsigned long long)sr.damaged);
		for (k = 0; k < sr.n && k < 2; k++)
			CHECK(rec_is(jpath, &sr.rec[k], msg, sizes[k]));
		scan_result_free(&sr);
		/* the next append cuts the torn record off first */
		CHECK(deliver(state, mbox, msg, 10, nid) == 0);
		CHECKF(journal_size(state, mbox) == (long long)(good + newrec),
		       "cut at %zu: journal %lld bytes after the append, expected %zu", cuts[i],
		       journal_size(state, mbox), good + newrec);
		CHECK(scan_file(jpath, &sr) == 0 && sr.n == 3 && sr.damaged == 0 && sr.torn == 0);
		if (sr.n == 3) {
			CHECK(strcmp(sr.rec[0].delivery_id, ids[0]) == 0);
			CHECK(strcmp(sr.rec[1].delivery_id, ids[1]) == 0);
			CHECK(strcmp(sr.rec[2].delivery_id, nid) == 0 && sr.rec[2].offset == good);
			for (k = 0; k < 2; k++)
				CHECK(rec_is(jpath, &sr.rec[k], msg, sizes[k]));
			CHECK(rec_is(jpath, &sr.rec[2], msg, 10));
		}
		scan_result_free(&sr);
		free(jpath);
	}

	/* garbage after the last whole record */
	sbx_random_id(mbox);
	jpath = journal_path(state, mbox);
	for (k = 0; k < 3; k++)
		CHECK(deliver(state, mbox, msg, sizes[k], ids[k]) == 0);
	CHECK(slurp(jpath, &orig, &olen) == 0 && olen == full);
	for (i = 0; i < 6 && olen == full; i++) {
		struct sbx_buf g = { 0 };
		long long clen = journal_size(state, mbox);
		size_t nrec = 3 + i;
		unsigned char *rnd;
		int fd;

		switch (i) {
		case 0:   /* one zero byte */
			sbx_buf_append(&g, "", 1);
			break;
		case 1:   /* zeros, about a header's worth */
			rnd = sbx_xcalloc(1, 47);
			sbx_buf_append(&g, rnd, 47);
			free(rnd);
			break;
		case 2:   /* random bytes */
			rnd = sbx_xmalloc(5000);
			randombytes_buf(rnd, 5000);
			sbx_buf_append(&g, rnd, 5000);
			free(rnd);
			break;
		case 3:   /* a magic and a partial header */
			sbx_buf_append(&g, "SBXJ\001\0\0", 7);
			break;
		case 4:   /* the start of a record: a header claiming bytes past the end */
			sbx_buf_append(&g, orig, 300);
			break;
		default:  /* a whole record with its last byte wrong */
			sbx_buf_append(&g, orig + good, full - good);
			g.data[g.len - 1] ^= 0x40;
			break;
		}
		fd = open(jpath, O_WRONLY | O_APPEND | O_CLOEXEC);
		CHECK(fd >= 0 && sbx_write_all(fd, g.data, g.len) == 0);
		if (fd >= 0)
			close(fd);
		CHECK(scan_file(jpath, &sr) == 0);
		CHECKF(sr.n == nrec && sr.torn == g.len && sr.damaged == 0,
		       "garbage %zu: %zu records, torn %llu, damaged %llu", i, sr.n,
		       (unsigned long long)sr.torn, (unsigned long long)sr.damaged);
		scan_result_free(&sr);
		CHECK(deliver(state, mbox, msg, 10, nid) == 0);
		CHECKF(journal_size(state, mbox) == clen + (long long)newrec,
		       "garbage %zu: journal %lld bytes after the append, expected %lld", i,
		       journal_size(state, mbox), clen + (long long)newrec);
		CHECK(scan_file(jpath, &sr) == 0 && sr.n == nrec + 1 && sr.damaged == 0 && sr.torn == 0);
		if (sr.n == nrec + 1) {
			for (k = 0; k < 3; k++)
				CHECK(strcmp(sr.rec[k].delivery_id, ids[k]) == 0 &&
				      rec_is(jpath, &sr.rec[k], msg, sizes[k]));
			CHECK(strcmp(sr.rec[nrec].delivery_id, nid) == 0 &&
			      sr.rec[nrec].offset == (uint64_t)clen);
			CHECK(rec_is(jpath, &sr.rec[nrec], msg, 10));
		}
		scan_result_free(&sr);
		sbx_buf_free(&g);
	}
	free(jpath);
	free(orig);
	free(msg);
	rm_rf(state);
}

/* (c) damage in the middle: skipped and counted, the rest intact */
TEST(journal_damage_mid)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], ids[4][SBX_ID_HEX], nid[SBX_ID_HEX];
	char *jpath, *orig = NULL, *copy, *out, *error;
	unsigned char *msg = pattern(200 * 1024, 6);
	static const size_t sizes[4] = { 500, 200 * 1024, 800, 1200 };
	size_t olen = 0, pos[128], npos = 0, i, k, outlen, r2size;
	struct scan_result before, sr;
	struct sbx_spool_rec r2;

	sbx_random_id(mbox);
	jpath = journal_path(state, mbox);
	for (i = 0; i < 4; i++)
		CHECK(deliver(state, mbox, msg, sizes[i], ids[i]) == 0);
	CHECK(slurp(jpath, &orig, &olen) == 0);
	CHECK(scan_file(jpath, &before) == 0 && before.n == 4);
	if (before.n != 4) {
		free(orig);
		free(msg);
		free(jpath);
		rm_rf(state);
		return;
	}
	r2 = before.rec[1];
	r2size = REC_OVERHEAD + (size_t)r2.entry_len;
	/* every header byte, the start and end of the entry, spread over the
	 * entry, the check value */
	for (i = 0; i < REC_HDR; i++)
		pos[npos++] = i;
	for (i = 0; i < 8; i++)
		pos[npos++] = REC_HDR + i;
	for (i = 0; i < 40; i++)
		pos[npos++] = REC_HDR + (size_t)r2.entry_len * i / 40;
	for (i = 1; i <= 8; i++)
		pos[npos++] = REC_HDR + (size_t)r2.entry_len - i;
	for (i = 0; i < REC_CHECK; i += 3)
		pos[npos++] = REC_HDR + (size_t)r2.entry_len + i;
	copy = sbx_xmalloc(olen);
	for (i = 0; i < npos; i++) {
		memcpy(copy, orig, olen);
		copy[r2.offset + pos[i]] ^= (char)(1 << (i % 8));
		CHECK(replace_file(jpath, copy, olen) == 0);
		CHECK(scan_file(jpath, &sr) == 0);
		CHECKF(sr.n == 3 && sr.damaged == r2size && sr.torn == 0,
		       "flip at record 2 + %zu: %zu records, damaged %llu, torn %llu", pos[i], sr.n,
		       (unsigned long long)sr.damaged, (unsigned long long)sr.torn);
		if (sr.n == 3) {
			CHECK(strcmp(sr.rec[0].delivery_id, ids[0]) == 0);
			CHECK(strcmp(sr.rec[1].delivery_id, ids[2]) == 0);
			CHECK(strcmp(sr.rec[2].delivery_id, ids[3]) == 0);
			for (k = 0; k < 3; k++)
				CHECK(rec_is(jpath, &sr.rec[k], msg, sizes[k == 0 ? 0 : k + 1]));
		}
		scan_result_free(&sr);
		/* not found by id; and a reader pointed at the damaged entry refuses it */
		CHECK(open_read(state, mbox, ids[1], &out, &outlen, &error) < 0);
		free(error);
		if (pos[i] >= REC_HDR && pos[i] < REC_HDR + r2.entry_len) {
			if (read_rec(jpath, &r2, &out, &outlen, &error) == 0) {
				CHECKF(0, "flip in the entry at %zu read back cleanly", pos[i]);
				free(out);
			} else {
				free(error);
			}
		}
	}
	/* Damage in the middle is not a torn tail. After a crash (the last
	 * record cut short, so the writer looks from the start) the next append
	 * cuts only the torn bytes: damage in record 2's entry, then in its
	 * magic. In mailboxes of their own, written by this process. */
	for (i = 0; i < 2; i++) {
		char mbox2[SBX_ID_HEX], *j2, t[SBX_ID_HEX];
		long long end4;
		int fd;

		sbx_random_id(mbox2);
		j2 = journal_path(state, mbox2);
		for (k = 0; k < 4; k++)
			CHECK(deliver(state, mbox2, msg, sizes[k], ids[k]) == 0);
		end4 = journal_size(state, mbox2);
		CHECK(end4 == (long long)olen);
		CHECK(deliver(state, mbox2, msg, 10, t) == 0);
		fd = open(j2, O_RDWR | O_CLOEXEC);
		CHECK(fd >= 0 && pwrite(fd, i == 0 ? "\x55" : "X", 1,
					 (off_t)(r2.offset + (i == 0 ? REC_HDR + 1000 : 0))) == 1);
		if (fd >= 0)
			close(fd);
		CHECK(truncate(j2, (off_t)end4 + 100) == 0);
		CHECK(deliver(state, mbox2, msg, 10, nid) == 0);
		CHECKF(journal_size(state, mbox2) == end4 + (long long)rec_size(META_FIXED + 6, 10),
		       "damage %zu: journal %lld bytes after the append, expected %lld", i,
		       journal_size(state, mbox2), end4 + (long long)rec_size(META_FIXED + 6, 10));
		CHECK(scan_file(j2, &sr) == 0 && sr.n == 4 && sr.damaged == r2size && sr.torn == 0);
		if (sr.n == 4) {
			CHECK(strcmp(sr.rec[0].delivery_id, ids[0]) == 0);
			CHECK(strcmp(sr.rec[1].delivery_id, ids[2]) == 0);
			CHECK(strcmp(sr.rec[2].delivery_id, ids[3]) == 0 && rec_is(j2, &sr.rec[2], msg, sizes[3]));
			CHECK(strcmp(sr.rec[3].delivery_id, nid) == 0 && sr.rec[3].offset == (uint64_t)end4);
		}
		scan_result_free(&sr);
		free(j2);
	}
	/* control: the undamaged journal reads whole */
	CHECK(replace_file(jpath, orig, olen) == 0);
	CHECK(scan_file(jpath, &sr) == 0 && sr.n == 4 && sr.damaged == 0 && sr.torn == 0);
	CHECK(read_rec(jpath, &r2, &out, &outlen, &error) == 0 && outlen == sizes[1]);
	free(out);
	scan_result_free(&sr);
	scan_result_free(&before);
	free(copy);
	free(orig);
	free(msg);
	free(jpath);
	rm_rf(state);
}

/*
 * A damaged length field in the middle of a journal, pointing into its last
 * whole record, and then a crash (the record after it cut short): the
 * writer looks from the start and must cut off only the torn bytes, never
 * the committed record the bad length points into.
 */
TEST(journal_damaged_length_keeps_tail)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], ids[4][SBX_ID_HEX], nid[SBX_ID_HEX];
	char *jpath;
	unsigned char *msg = pattern(5000, 8), lenbuf[8];
	static const size_t sizes[4] = { 1000, 2000, 3000, 10 };
	size_t i, r1size = rec_size(META_FIXED + 6, sizes[0]);
	uint64_t end3 = 0;
	struct scan_result sr;
	int fd;

	sbx_random_id(mbox);
	jpath = journal_path(state, mbox);
	for (i = 0; i < 4; i++) {
		CHECK(deliver(state, mbox, msg, sizes[i], ids[i]) == 0);
		if (i == 2)
			end3 = (uint64_t)journal_size(state, mbox);
	}
	/* record 1 claims to end 100 bytes into record 3 */
	sbx_put_be64(lenbuf, end3 - rec_size(META_FIXED + 6, sizes[2]) + 100 - REC_OVERHEAD);
	fd = open(jpath, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0 && pwrite(fd, lenbuf, 8, 8) == 8);
	if (fd >= 0)
		close(fd);
	CHECK(truncate(jpath, (off_t)end3 + 50) == 0);   /* record 4 torn */
	CHECK(scan_file(jpath, &sr) == 0 && sr.n == 2 && sr.damaged == r1size && sr.torn == 50);
	scan_result_free(&sr);
	CHECK(deliver(state, mbox, msg, 10, nid) == 0);
	CHECKF(journal_size(state, mbox) == (long long)(end3 + rec_size(META_FIXED + 6, 10)),
	       "journal %lld bytes after the append, expected %llu: committed records cut off",
	       journal_size(state, mbox), (unsigned long long)(end3 + rec_size(META_FIXED + 6, 10)));
	CHECK(scan_file(jpath, &sr) == 0);
	CHECKF(sr.n == 3 && sr.damaged == r1size && sr.torn == 0, "%zu records, damaged %llu, torn %llu",
	       sr.n, (unsigned long long)sr.damaged, (unsigned long long)sr.torn);
	if (sr.n == 3) {
		CHECK(strcmp(sr.rec[0].delivery_id, ids[1]) == 0);
		CHECK(strcmp(sr.rec[1].delivery_id, ids[2]) == 0 && rec_is(jpath, &sr.rec[1], msg, sizes[2]));
		CHECK(strcmp(sr.rec[2].delivery_id, nid) == 0 && sr.rec[2].offset == end3);
	}
	scan_result_free(&sr);
	free(msg);
	free(jpath);
	rm_rf(state);
}

/*
 * The writer remembers, per process, where each journal it wrote ended, by
 * (dev, inode). A journal that is claimed, imported and removed frees its
 * inode, and the filesystem may give that inode to the next journal. If
 * another process writes that new journal past the remembered end, this
 * process's next append must still see the records there as whole.
 */
TEST(journal_inode_reused)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], id[SBX_ID_HEX], cids[2][SBX_ID_HEX];
	char *jpath, *error = NULL, **paths = NULL;
	unsigned char *msg = pattern(5000, 12);
	size_t np = 0, i;
	struct stat before, after;
	struct scan_result sr;
	long long known, csize;
	int fds[2], status = 0;
	pid_t pid;

	sbx_random_id(mbox);
	jpath = journal_path(state, mbox);
	/* this process writes a journal: it knows its end */
	CHECK(deliver(state, mbox, msg, 3000, id) == 0);
	known = journal_size(state, mbox);
	CHECK(lstat(jpath, &before) == 0);
	/* imported and removed: the inode is free */
	CHECK(sbx_spool_claim(state, mbox, &paths, &np, &error) == 0 && np == 1);
	if (np == 1)
		CHECK(sbx_spool_segment_done(paths[0], 0, &error) == 0);
	sbx_spool_list_free(paths, np);
	/* another process writes the next journal past that end, the end
	 * falling inside its last record */
	CHECK(pipe(fds) == 0);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		char got[2][SBX_ID_HEX];

		close(fds[0]);
		if (deliver(state, mbox, msg, 1000, got[0]) < 0 ||
		    deliver(state, mbox, msg, 5000, got[1]) < 0 ||
		    write(fds[1], got, sizeof(got)) != (ssize_t)sizeof(got))
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	CHECK(pid > 0 && read(fds[0], cids, sizeof(cids)) == (ssize_t)sizeof(cids));
	close(fds[0]);
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	csize = journal_size(state, mbox);
	CHECK(csize == (long long)(rec_size(META_FIXED + 6, 1000) + rec_size(META_FIXED + 6, 5000)));
	CHECK(known > (long long)rec_size(META_FIXED + 6, 1000) && known < csize);
	CHECK(lstat(jpath, &after) == 0);
	if (after.st_ino != before.st_ino || after.st_dev != before.st_dev)
		printf("# the filesystem did not reuse the inode: nothing to show here\n");
	/* this process appends */
	CHECK(deliver(state, mbox, msg, 10, id) == 0);
	CHECKF(journal_size(state, mbox) == csize + (long long)rec_size(META_FIXED + 6, 10),
	       "journal %lld bytes after the append, expected %lld: another process's records cut off",
	       journal_size(state, mbox), csize + (long long)rec_size(META_FIXED + 6, 10));
	CHECK(scan_file(jpath, &sr) == 0);
	CHECKF(sr.n == 3 && sr.damaged == 0 && sr.torn == 0, "%zu records, damaged %llu, torn %llu",
	       sr.n, (unsigned long long)sr.damaged, (unsigned long long)sr.torn);
	for (i = 0; i < 2 && i < sr.n; i++)
		CHECK(strcmp(sr.rec[i].delivery_id, cids[i]) == 0 &&
		      rec_is(jpath, &sr.rec[i], msg, i == 0 ? 1000 : 5000));
	scan_result_free(&sr);
	free(msg);
	free(jpath);
	rm_rf(state);
}

/* (d) claims: the journal becomes an import segment; segments oldest first */
TEST(claim_segments)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], ids[6][SBX_ID_HEX], *error = NULL;
	char **paths = NULL, **paths2 = NULL, **list = NULL, *jpath, *dir, *damaged;
	size_t np = 0, np2 = 0, n = 0, i;
	struct sbx_spool_writer *w = NULL;
	struct sbx_spool_meta m;
	struct scan_result sr;
	uint64_t bytes, count;
	struct stat st;

	sbx_random_id(mbox);
	jpath = journal_path(state, mbox);
	dir = mbox_dir(state, mbox);
	/* nothing to claim: no directory, then an empty journal */
	CHECK(sbx_spool_claim(state, mbox, &paths, &np, &error) == 0 && np == 0);
	sbx_spool_list_free(paths, np);
	init_meta(&m, "a@b", "c@d");
	m.size = 5;
	CHECK(sbx_spool_writer_begin(state, mbox, pk, &m, &w, &error) == 0);
	sbx_spool_writer_abort(&w);
	CHECK(journal_size(state, mbox) == 0);
	CHECK(sbx_spool_claim(state, mbox, &paths, &np, &error) == 0 && np == 0);
	sbx_spool_list_free(paths, np);

	for (i = 0; i < 3; i++)
		CHECK(deliver(state, mbox, "claimed", 7, ids[i]) == 0);
	CHECK(lstat(jpath, &st) == 0);
	CHECK(sbx_spool_claim(state, mbox, &paths, &np, &error) == 0);
	CHECK(np == 1);
	if (np != 1)
		goto out;
	/* renamed, not copied */
	{
		struct stat seg;
		const char *base = strrchr(paths[0], '/');

		CHECK(lstat(paths[0], &seg) == 0 && seg.st_ino == st.st_ino && (seg.st_mode & 07777) == 0600);
		CHECK(base != NULL && strncmp(base + 1, "import.", 7) == 0 && sbx_is_id(base + 8));
		CHECK(strncmp(paths[0], dir, strlen(dir)) == 0 && base == paths[0] + strlen(dir));
	}
	CHECK(access(jpath, F_OK) < 0 && errno == ENOENT);
	CHECK(scan_file(paths[0], &sr) == 0 && sr.n == 3 && sr.damaged == 0 && sr.torn == 0);
	for (i = 0; i < sr.n && i < 3; i++)
		CHECK(strcmp(sr.rec[i].delivery_id, ids[i]) == 0 && rec_is(paths[0], &sr.rec[i], "claimed", 7));
	scan_result_free(&sr);
	/* still listed, readable by id and counted while it waits */
	CHECK(records_waiting(state, mbox) == 3);
	{
		char *out = NULL;
		size_t len = 0;

		CHECK(open_read(state, mbox, ids[1], &out, &len, &error) == 0 && len == 7);
		free(out);
	}

	/* a deliver after the claim starts a fresh journal */
	for (i = 3; i < 5; i++)
		CHECK(deliver(state, mbox, "fresh", 5, ids[i]) == 0);
	CHECK(journal_size(state, mbox) == (long long)(2 * rec_size(META_FIXED + 6, 5)));
	CHECK(lstat(jpath, &st) == 0);
	CHECK(sbx_spool_list(state, mbox, &list, &n, &error) == 0 && n == 5);
	for (i = 0; i < n && i < 5; i++)   /* the segment first, then the journal */
		CHECKF(strcmp(list[i], ids[i]) == 0, "list %zu: %s", i, list[i]);
	sbx_spool_list_free(list, n);
	/* claim again: both segments, oldest first */
	CHECK(sbx_spool_claim(state, mbox, &paths2, &np2, &error) == 0);
	CHECK(np2 == 2);
	if (np2 != 2)
		goto out;
	CHECK(strcmp(paths2[0], paths[0]) == 0);
	CHECK(strcmp(paths2[0], paths2[1]) < 0);
	{
		struct stat seg;

		CHECK(lstat(paths2[1], &seg) == 0 && seg.st_ino == st.st_ino);
	}
	CHECK(access(jpath, F_OK) < 0);
	CHECK(scan_file(paths2[1], &sr) == 0 && sr.n == 2);
	if (sr.n == 2)
		CHECK(strcmp(sr.rec[0].delivery_id, ids[3]) == 0 && strcmp(sr.rec[1].delivery_id, ids[4]) == 0);
	scan_result_free(&sr);
	/* claiming with nothing new returns the same segments */
	sbx_spool_list_free(paths, np);
	CHECK(sbx_spool_claim(state, mbox, &paths, &np, &error) == 0 && np == 2);
	sbx_spool_list_free(paths, np);
	paths = NULL;
	np = 0;

	/* done with the older one: gone; the newer one damaged: set aside */
	CHECK(deliver(state, mbox, "journal", 7, ids[5]) == 0);
	CHECK(sbx_spool_segment_done(paths2[0], 0, &error) == 0);
	CHECK(access(paths2[0], F_OK) < 0 && errno == ENOENT);
	CHECK(sbx_spool_segment_done(paths2[1], 1, &error) == 0);
	CHECK(access(paths2[1], F_OK) < 0 && errno == ENOENT);
	damaged = sbx_xasprintf("%s/damaged.%s", dir, strrchr(paths2[1], '/') + 8);
	CHECK(lstat(damaged, &st) == 0 && S_ISREG(st.st_mode));
	CHECK(count_entries(dir) == 2);   /* damaged.<claim> and the journal */
	/* ignored by list, usage and claim from now on */
	CHECK(sbx_spool_list(state, mbox, &list, &n, &error) == 0 && n == 1);
	if (n == 1)
		CHECK(strcmp(list[0], ids[5]) == 0);
	sbx_spool_list_free(list, n);
	CHECK(sbx_spool_usage(state, mbox, &bytes, &count) == 0);
	CHECK(count == 1 && bytes == rec_size(META_FIXED + 6, 7));
	CHECK(sbx_spool_claim(state, mbox, &paths, &np, &error) == 0 && np == 1);
	if (np == 1)
		CHECK(strstr(paths[0], "/import.") != NULL);
	CHECK(lstat(damaged, &st) == 0);
	/* only import segments can be done */
	CHECK(sbx_spool_segment_done(damaged, 0, &error) < 0);
	free(error);
	error = NULL;
	CHECK(sbx_spool_segment_done(jpath, 0, &error) < 0);
	free(error);
	error = NULL;
	CHECK(lstat(damaged, &st) == 0);
	if (np == 1) {
		CHECK(sbx_spool_segment_done(paths[0], 0, &error) == 0);
		CHECK(sbx_spool_segment_done(paths[0], 0, &error) < 0);   /* already gone */
		free(error);
		error = NULL;
	}
	CHECK(spool_empty(state, mbox));
	free(damaged);
out:
	sbx_spool_list_free(paths, np);
	sbx_spool_list_free(paths2, np2);
	free(dir);
	free(jpath);
	rm_rf(state);
}

/* A writer waiting for the journal's lock while an importer claims it
 * retries on the new journal, whatever errno its caller left behind. */
struct waiting_writer {
	const char *state, *mbox;
	int preset_errno, rc;
	char id[SBX_ID_HEX];
	char *error;
};

static void *
waiting_writer_run(void *arg)
{
	struct waiting_writer *ww = arg;
	struct sbx_spool_meta m;

	init_meta(&m, "a@b", "c@d");
	errno = ww->preset_errno;
	ww->rc = sbx_spool_deliver(ww->state, ww->mbox, pk, &m, "waited", 6, ww->id, &ww->error);
	return NULL;
}

TEST(claim_while_writer_waits)
{
	static const int preset[] = { 0, EAGAIN };
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], id[SBX_ID_HEX], *jpath, *seg;
	struct scan_result sr;
	size_t i;

	for (i = 0; i < sizeof(preset) / sizeof(preset[0]); i++) {
		struct waiting_writer ww = { state, mbox, preset[i], -2, "", NULL };
		pthread_t th;
		int fd;

		sbx_random_id(mbox);
		jpath = journal_path(state, mbox);
		seg = sbx_xasprintf("%s/spool/%s/import.0123456789abcdef0123456789abcdef", state, mbox);
		CHECK(deliver(state, mbox, "old", 3, id) == 0);
		/* hold the journal's lock as sbx_spool_claim does */
		fd = open(jpath, O_RDWR | O_CLOEXEC);
		CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0);
		CHECK(pthread_create(&th, NULL, waiting_writer_run, &ww) == 0);
		usleep(200000);   /* the writer waits in flock now */
		/* claimed: renamed away; then another delivery starts the next journal */
		CHECK(rename(jpath, seg) == 0);
		CHECK(deliver(state, mbox, "new", 3, id) == 0);
		close(fd);
		pthread_join(th, NULL);
		CHECKF(ww.rc == 0, "errno %d before: %s", preset[i], ww.error ? ww.error : "(none)");
		free(ww.error);
		/* the segment keeps what it had; the waiting record is in the journal */
		CHECK(scan_file(seg, &sr) == 0 && sr.n == 1 && sr.torn == 0 && sr.damaged == 0);
		scan_result_free(&sr);
		CHECK(scan_file(jpath, &sr) == 0 && sr.n == (ww.rc == 0 ? 2 : 1) && sr.torn == 0 &&
		      sr.damaged == 0);
		if (ww.rc == 0 && sr.n == 2)
			CHECK(strcmp(sr.rec[1].delivery_id, ww.id) == 0 && rec_is(jpath, &sr.rec[1], "waited", 6));
		scan_result_free(&sr);
		free(seg);
		free(jpath);
	}
	rm_rf(state);
}

/* ---- concurrency ---- */

/* The message of appender t, number k: its size varies, every tenth one
 * is more than a chunk. */
static void
conc_msg(struct sbx_buf *b, int t, int k)
{
	size_t len = k % 10 == 9 ? 70000 : 100 + (size_t)(37 * k + 11 * t) % 3000;

	b->len = 0;
	sbx_buf_appendf(b, "thread %d message %d\r\n", t, k);
	while (b->len < len)
		sbx_buf_append(b, "0123456789abcdef", len - b->len < 16 ? len - b->len : 16);
}

struct appender {
	const char *state, *mbox;
	int t, n;
	char (*ids)[SBX_ID_HEX];
	int failures;
	pthread_t th;
};

static void *
appender_run(void *arg)
{
	struct appender *a = arg;
	struct sbx_buf b = { 0 };
	int k;

	for (k = 0; k < a->n; k++) {
		struct sbx_spool_meta m;
		char from[64], *error = NULL;

		conc_msg(&b, a->t, k);
		snprintf(from, sizeof(from), "t%d-k%d@example.org", a->t, k);
		init_meta(&m, from, "rcpt@example.net");
		/* errno left over from the caller's last system call must not matter */
		errno = k % 2 ? EAGAIN : EEXIST;
		if (sbx_spool_deliver(a->state, a->mbox, pk, &m, b.data, b.len, a->ids[k], &error) < 0) {
			printf("# appender %d, message %d: %s\n", a->t, k, error);
			free(error);
			a->ids[k][0] = '\0';
			a->failures++;
		}
	}
	sbx_buf_free(&b);
	return NULL;
}

/* Check the records of the files in paths against want[0..nwant): every
 * wanted id exactly once, nothing else, no damage, each message the one
 * its envelope names. */
static void
check_records(char **paths, size_t np, char **want, size_t nwant)
{
	char **got = NULL;
	size_t ngot = 0, cap = 0, i, bad = 0;
	struct sbx_buf b = { 0 };

	for (i = 0; i < np; i++) {
		struct scan_result sr;
		size_t k;

		CHECK(scan_file(paths[i], &sr) == 0);
		CHECKF(sr.damaged == 0 && sr.torn == 0, "%s: damaged %llu, torn %llu", paths[i],
		       (unsigned long long)sr.damaged, (unsigned long long)sr.torn);
		for (k = 0; k < sr.n; k++) {
			char *out = NULL, *error = NULL;
			struct sbx_spool_scan *s = NULL;
			struct sbx_spool_reader *r = NULL;
			size_t len = 0;
			int t = -1, n = -1;

			if (ngot == cap) {
				cap = cap ? cap * 2 : 256;
				got = sbx_xrealloc(got, cap * sizeof(*got));
			}
			got[ngot++] = sbx_xstrdup(sr.rec[k].delivery_id);
			if (sbx_spool_scan_open(paths[i], &s, &error) < 0 ||
			    sbx_spool_reader_open_rec(s, &sr.rec[k], pk, sk, &r, &error) < 0 ||
			    sscanf(sbx_spool_reader_meta(r)->mail_from, "t%d-k%d@", &t, &n) != 2 ||
			    sbx_spool_read_all(r, SBX_MAX_MESSAGE_SIZE, &out, &len, &error) < 0) {
				printf("# %s record %zu: %s\n", paths[i], k, error ? error : "bad envelope");
				bad++;
			} else {
				conc_msg(&b, t, n);
				if (len != b.len || memcmp(out, b.data, len) != 0) {
					printf("# %s record %zu: not the message of t%d-k%d\n", paths[i], k, t, n);
					bad++;
				}
			}
			free(out);
			free(error);
			sbx_spool_reader_close(&r);
			sbx_spool_scan_close(&s);
		}
		scan_result_free(&sr);
	}
	CHECK(bad == 0);
	CHECKF(ngot == nwant, "%zu records, %zu delivered", ngot, nwant);
	if (ngot > 1)
		qsort(got, ngot, sizeof(*got), cmp_str);
	if (nwant > 1)
		qsort(want, nwant, sizeof(*want), cmp_str);
	for (i = 0; i < ngot && i < nwant; i++) {
		if (strcmp(got[i], want[i]) != 0 || (i > 0 && strcmp(got[i], got[i - 1]) == 0)) {
			CHECKF(0, "record %zu: %s, delivered %s", i, got[i], want[i]);
			break;
		}
	}
	sbx_spool_list_free(got, ngot);
	sbx_buf_free(&b);
}

/* (e) 4 threads x 50 and 4 processes x 25 appending to one journal at once */
TEST(concurrent_appends)
{
	enum { T = 4, N = 50, P = 4, PN = 25 };
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], *jpath;
	static char ids[T][N][SBX_ID_HEX];
	struct appender a[T];
	char *want[1 + T * N + P * PN], first[SBX_ID_HEX];
	size_t nwant = 0;
	int fds[2], t, k, failures = 0;
	pid_t pids[P];
	FILE *fp;
	char line[64];
	struct sbx_buf b = { 0 };

	sbx_random_id(mbox);
	jpath = journal_path(state, mbox);
	/* the journal exists before the fork: every process knows its end */
	{
		struct sbx_spool_meta m;
		char *error = NULL;

		conc_msg(&b, 99, 0);
		init_meta(&m, "t99-k0@example.org", "");
		CHECK(sbx_spool_deliver(state, mbox, pk, &m, b.data, b.len, first, &error) == 0);
		want[nwant++] = sbx_xstrdup(first);
		sbx_buf_free(&b);
	}
	CHECK(pipe(fds) == 0);
	fflush(stdout);
	for (t = 0; t < P; t++) {
		pids[t] = fork();
		if (pids[t] == 0) {
			static char cids[PN][SBX_ID_HEX];
			struct appender c = { state, mbox, T + t, PN, cids, 0, 0 };
			FILE *out;

			close(fds[0]);
			appender_run(&c);
			out = fdopen(fds[1], "w");
			for (k = 0; out != NULL && k < PN; k++)
				if (cids[k][0] != '\0')
					fprintf(out, "%s\n", cids[k]);
			_exit(out != NULL && fclose(out) == 0 && c.failures == 0 ? 0 : 1);
		}
		CHECK(pids[t] > 0);
	}
	close(fds[1]);
	for (t = 0; t < T; t++) {
		a[t] = (struct appender){ state, mbox, t, N, ids[t], 0, 0 };
		CHECK(pthread_create(&a[t].th, NULL, appender_run, &a[t]) == 0);
	}
	for (t = 0; t < T; t++) {
		pthread_join(a[t].th, NULL);
		failures += a[t].failures;
		for (k = 0; k < N; k++)
			if (ids[t][k][0] != '\0')
				want[nwant++] = sbx_xstrdup(ids[t][k]);
	}
	fp = fdopen(fds[0], "r");
	while (fp != NULL && fgets(line, sizeof(line), fp) != NULL && nwant < 1 + T * N + P * PN) {
		line[strcspn(line, "\n")] = '\0';
		want[nwant++] = sbx_xstrdup(line);
	}
	if (fp != NULL)
		fclose(fp);
	for (t = 0; t < P; t++) {
		int status = 0;

		CHECK(waitpid(pids[t], &status, 0) == pids[t] && WIFEXITED(status) &&
		      WEXITSTATUS(status) == 0);
	}
	CHECK(failures == 0);
	CHECK(nwant == 1 + T * N + P * PN);
	check_records(&jpath, 1, want, nwant);
	CHECK(records_waiting(state, mbox) == 1 + T * N + P * PN);
	while (nwant > 0)
		free(want[--nwant]);
	free(jpath);
	rm_rf(state);
}

struct claimer {
	const char *state, *mbox;
	int stop;                  /* set by the main thread (atomic) */
	int claims, lists, failures;
	pthread_t th;
};

static void *
claimer_run(void *arg)
{
	struct claimer *c = arg;

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		char **paths = NULL, *error = NULL;
		size_t np = 0;

		if (sbx_spool_claim(c->state, c->mbox, &paths, &np, &error) < 0) {
			printf("# claim: %s\n", error);
			free(error);
			c->failures++;
		}
		sbx_spool_list_free(paths, np);
		c->claims++;
		usleep(2000);
	}
	return NULL;
}

static void *
lister_run(void *arg)
{
	struct claimer *c = arg;

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		char **ids = NULL, *error = NULL;
		uint64_t bytes, count;
		size_t n = 0, i;

		if (sbx_spool_list(c->state, c->mbox, &ids, &n, &error) < 0) {
			printf("# list: %s\n", error);
			free(error);
			c->failures++;
		}
		for (i = 0; i < n; i++)
			if (!sbx_is_id(ids[i]))
				c->failures++;
		sbx_spool_list_free(ids, n);
		if (sbx_spool_usage(c->state, c->mbox, &bytes, &count) < 0)
			c->failures++;
		c->lists++;
	}
	return NULL;
}

/* (e) claims, lists and usage running while 4 threads append: nothing is
 * lost or doubled, every delivered id ends up in exactly one segment */
TEST(concurrent_claim)
{
	enum { T = 4, N = 50 };
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], *error = NULL, **paths = NULL;
	static char ids[T][N][SBX_ID_HEX];
	struct appender a[T];
	struct claimer c, l;
	char *want[T * N];
	size_t nwant = 0, np = 0;
	int t, k, failures = 0;

	sbx_random_id(mbox);
	memset(&c, 0, sizeof(c));
	c.state = state;
	c.mbox = mbox;
	l = c;
	CHECK(pthread_create(&c.th, NULL, claimer_run, &c) == 0);
	CHECK(pthread_create(&l.th, NULL, lister_run, &l) == 0);
	for (t = 0; t < T; t++) {
		a[t] = (struct appender){ state, mbox, t, N, ids[t], 0, 0 };
		CHECK(pthread_create(&a[t].th, NULL, appender_run, &a[t]) == 0);
	}
	for (t = 0; t < T; t++) {
		pthread_join(a[t].th, NULL);
		failures += a[t].failures;
		for (k = 0; k < N; k++)
			if (ids[t][k][0] != '\0')
				want[nwant++] = sbx_xstrdup(ids[t][k]);
	}
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&l.stop, 1, __ATOMIC_RELEASE);
	pthread_join(c.th, NULL);
	pthread_join(l.th, NULL);
	CHECK(failures == 0 && c.failures == 0 && l.failures == 0);
	CHECKF(c.claims > 1, "%d claims", c.claims);
	/* the last claim takes what the appenders left in the journal */
	CHECK(sbx_spool_claim(state, mbox, &paths, &np, &error) == 0);
	CHECK(journal_size(state, mbox) <= 0);
	printf("# %d claims, %d lists while appending; %zu segments\n", c.claims, l.lists, np);
	check_records(paths, np, want, nwant);
	sbx_spool_list_free(paths, np);
	while (nwant > 0)
		free(want[--nwant]);
	rm_rf(state);
}

/* ---- list, usage, destroy ---- */

/* (f) usage counts records and the bytes of the journal and import
 * segments; files of other names are ignored */
TEST(list_and_usage)
{
	static const char *junk[] = { "foo", ".x", "import.", "import.0123456789ABCDEF0123456789ABCDEF",
				      "import.0123456789abcdef0123456789abcde",
				      "import.0123456789abcdef0123456789abcdef0",
				      "damaged.0123456789abcdef0123456789abcdef", "journal.tmp",
				      "journal.new", "0123456789abcdef0123456789abcdef", "journal~" };
	static const char text[] = "message message message message message message message message";
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], other[SBX_ID_HEX], *error = NULL;
	char ids_in[7][SBX_ID_HEX], **ids = NULL, *path, *jpath, *data = NULL, **paths = NULL;
	uint64_t bytes = 1, count = 1, sum = 0;
	size_t n = 99, i, dlen = 0, np = 0;

	sbx_random_id(mbox);
	sbx_random_id(other);
	jpath = journal_path(state, mbox);
	/* missing directory: empty */
	CHECK(sbx_spool_list(state, other, &ids, &n, &error) == 0);
	CHECK(n == 0 && ids == NULL);
	CHECK(sbx_spool_usage(state, other, &bytes, &count) == 0 && bytes == 0 && count == 0);

	for (i = 0; i < 5; i++) {
		CHECK(deliver(state, mbox, text, 7 * (i + 1),
			      ids_in[i]) == 0);
		sum += rec_size(META_FIXED + 6, 7 * (i + 1));
	}
	CHECK(journal_size(state, mbox) == (long long)sum);
	/* other names in the spool directory, each holding a copy of the
	 * journal's valid records */
	CHECK(slurp(jpath, &data, &dlen) == 0);
	for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		path = sbx_xasprintf("%s/spool/%s/%s", state, mbox, junk[i]);
		CHECK(write_file(path, data, dlen) == 0);
		free(path);
	}
	CHECK(sbx_spool_list(state, mbox, &ids, &n, &error) == 0);
	CHECKF(n == 5, "listed %zu", n);
	for (i = 0; i < n && i < 5; i++)   /* journal order */
		CHECKF(strcmp(ids[i], ids_in[i]) == 0, "entry %zu: %s", i, ids[i]);
	sbx_spool_list_free(ids, n);
	CHECK(sbx_spool_usage(state, mbox, &bytes, &count) == 0);
	CHECK(count == 5);
	CHECKF(bytes == sum, "usage %llu, journal %llu", (unsigned long long)bytes, (unsigned long long)sum);
	/* an import segment and the journal together */
	CHECK(sbx_spool_claim(state, mbox, &paths, &np, &error) == 0 && np == 1);
	sbx_spool_list_free(paths, np);
	for (i = 5; i < 7; i++) {
		CHECK(deliver(state, mbox, text, 7 * (i + 1),
			      ids_in[i]) == 0);
		sum += rec_size(META_FIXED + 6, 7 * (i + 1));
	}
	CHECK(sbx_spool_usage(state, mbox, &bytes, &count) == 0);
	CHECK(count == 7 && bytes == sum);
	CHECK(sbx_spool_list(state, mbox, &ids, &n, &error) == 0 && n == 7);
	for (i = 0; i < n && i < 7; i++)
		CHECKF(strcmp(ids[i], ids_in[i]) == 0, "entry %zu: %s", i, ids[i]);
	sbx_spool_list_free(ids, n);
	/* a torn tail counts as bytes, not as a record */
	{
		int fd = open(jpath, O_WRONLY | O_APPEND | O_CLOEXEC);

		CHECK(fd >= 0 && sbx_write_all(fd, "SBXJ\001\0\0\0torn", 12) == 0);
		if (fd >= 0)
			close(fd);
	}
	CHECK(sbx_spool_usage(state, mbox, &bytes, &count) == 0);
	CHECK(count == 7 && bytes == sum + 12);
	free(data);
	free(jpath);
	rm_rf(state);
}

TEST(invalid_ids)
{
	static const char *bad[] = { "../etc", "", "..", "0123456789ABCDEF0123456789ABCDEF",
				     "0123456789abcdef0123456789abcde", "../../../../../../tmp/x",
				     "0123456789abcdef0123456789abcde/" };
	char *state = make_tmpdir(), good[SBX_ID_HEX], *error, *p, **paths;
	struct sbx_spool_writer *w;
	struct sbx_spool_reader *r;
	struct sbx_spool_scan *s;
	struct sbx_spool_meta m;
	uint64_t b, c;
	char **ids;
	size_t i, n;

	sbx_random_id(good);
	init_meta(&m, "a@b", "c@d");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		w = (void *)1;
		CHECK(sbx_spool_writer_begin(state, bad[i], pk, &m, &w, &error) < 0 && w == NULL);
		free(error);
		error = NULL;
		CHECK(sbx_spool_deliver(state, bad[i], pk, &m, "x", 1, NULL, &error) < 0);
		free(error);
		error = NULL;
		CHECK(sbx_spool_list(state, bad[i], &ids, &n, &error) < 0);
		free(error);
		error = NULL;
		CHECK(sbx_spool_reader_open(state, bad[i], good, pk, sk, &r, &error) < 0);
		free(error);
		error = NULL;
		CHECK(sbx_spool_reader_open(state, good, bad[i], pk, sk, &r, &error) < 0);
		free(error);
		error = NULL;
		CHECK(sbx_spool_claim(state, bad[i], &paths, &n, &error) < 0);
		free(error);
		error = NULL;
		CHECK(sbx_spool_destroy(state, bad[i], &error) < 0);
		free(error);
		error = NULL;
		CHECK(sbx_spool_usage(state, bad[i], &b, &c) < 0);
		CHECK(sbx_mailbox_lock(state, bad[i], 0, &error) < 0);
		free(error);
		CHECK(sbx_mailbox_path(state, bad[i], ".lock") == NULL);
		/* a bad delivery id in the metadata */
		memcpy(m.delivery_id, bad[i], strlen(bad[i]) + 1 < SBX_ID_HEX ? strlen(bad[i]) + 1 : SBX_ID_HEX);
		m.delivery_id[SBX_ID_HEX - 1] = '\0';
		error = NULL;
		if (m.delivery_id[0] != '\0') {
			CHECK(sbx_spool_writer_begin(state, good, pk, &m, &w, &error) < 0 && w == NULL);
			free(error);
		}
		m.delivery_id[0] = '\0';
		/* segment_done only takes import.<claim> names */
		p = sbx_xasprintf("%s/spool/%s/import.%s", state, good, bad[i]);
		error = NULL;
		CHECK(sbx_spool_segment_done(p, 0, &error) < 0);
		free(error);
		free(p);
	}
	error = NULL;
	CHECK(sbx_spool_segment_done("import.0123456789abcdef0123456789abcdef", 0, &error) < 0);
	free(error);
	/* missing files */
	error = NULL;
	p = sbx_xasprintf("%s/nothing", state);
	s = (void *)1;
	CHECK(sbx_spool_scan_open(p, &s, &error) < 0 && s == NULL && error != NULL);
	free(error);
	error = NULL;
	r = (void *)1;
	CHECK(sbx_spool_reader_open_file(p, NULL, pk, sk, &r, &error) < 0 && r == NULL && error != NULL);
	free(error);
	free(p);
	/* nothing was created anywhere but under state/spool/<good> */
	p = sbx_xasprintf("%s/etc", state);
	CHECK(access(p, F_OK) < 0);
	free(p);
	p = sbx_xasprintf("%s/spool/%s", state, good);
	CHECK(access(p, F_OK) < 0 || spool_empty(state, good));
	free(p);
	CHECK(access("/tmp/x", F_OK) < 0);
	rm_rf(state);
}

/* A symlink planted as the journal (or a segment) is never followed. */
TEST(journal_symlink)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], id[SBX_ID_HEX], *error = NULL;
	char *jpath, *target, *dir, *data = NULL;
	struct sbx_spool_scan *s = NULL;
	struct sbx_spool_meta m;
	size_t len = 0;

	sbx_random_id(mbox);
	dir = mbox_dir(state, mbox);
	jpath = journal_path(state, mbox);
	target = sbx_xasprintf("%s/target", state);
	CHECK(write_file(target, "precious", 8) == 0);
	CHECK(sbx_mkdir_p(dir, 0700) == 0);
	CHECK(symlink(target, jpath) == 0);
	init_meta(&m, "a@b", "c@d");
	CHECK(sbx_spool_deliver(state, mbox, pk, &m, "x", 1, id, &error) < 0);
	free(error);
	error = NULL;
	CHECK(slurp(target, &data, &len) == 0 && len == 8 && memcmp(data, "precious", 8) == 0);
	CHECK(sbx_spool_scan_open(jpath, &s, &error) < 0 && s == NULL);
	free(error);
	free(data);
	free(target);
	free(jpath);
	free(dir);
	rm_rf(state);
}

/* (f) destroy removes the journal, import and damaged segments */
TEST(destroy)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], other[SBX_ID_HEX], id[SBX_ID_HEX];
	char *error = NULL, *dir, **paths = NULL;
	size_t np = 0;

	sbx_random_id(mbox);
	sbx_random_id(other);
	CHECK(deliver(state, other, "other", 5, id) == 0);
	CHECK(deliver(state, mbox, "x", 1, id) == 0);
	CHECK(sbx_spool_claim(state, mbox, &paths, &np, &error) == 0 && np == 1);
	sbx_spool_list_free(paths, np);
	CHECK(deliver(state, mbox, "y", 1, id) == 0);
	CHECK(sbx_spool_claim(state, mbox, &paths, &np, &error) == 0 && np == 2);
	if (np == 2)
		CHECK(sbx_spool_segment_done(paths[1], 1, &error) == 0);
	sbx_spool_list_free(paths, np);
	CHECK(deliver(state, mbox, "z", 1, id) == 0);
	dir = mbox_dir(state, mbox);
	CHECK(count_entries(dir) == 3);
	CHECK(sbx_spool_destroy(state, mbox, &error) == 0);
	CHECK(access(dir, F_OK) < 0 && errno == ENOENT);
	CHECK(spool_empty(state, mbox));
	CHECK(sbx_spool_destroy(state, mbox, &error) == 0);  /* already gone */
	CHECK(records_waiting(state, other) == 1);            /* the other mailbox stays */
	/* and a later delivery starts over */
	CHECK(deliver(state, mbox, "again", 5, id) == 0);
	CHECK(records_waiting(state, mbox) == 1);
	free(dir);
	rm_rf(state);
}

TEST(mailbox_lock)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], *error = NULL, *path, *want, *dir;
	int to_parent[2], to_child[2], fd, fd2, status;
	struct stat st;
	char c = 0;
	pid_t pid;

	sbx_random_id(mbox);
	path = sbx_mailbox_path(state, mbox, ".lock");
	want = sbx_xasprintf("%s/mailboxes/%c%c/%s.lock", state, mbox[0], mbox[1], mbox);
	CHECK(path != NULL && strcmp(path, want) == 0);
	free(want);
	want = sbx_mailbox_path("/s", "ab0123456789abcdef0123456789abcd", ".sqlite");
	CHECK(want != NULL && strcmp(want, "/s/mailboxes/ab/ab0123456789abcdef0123456789abcd.sqlite") == 0);
	free(want);

	CHECK(pipe(to_parent) == 0 && pipe(to_child) == 0);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		char *e = NULL;
		int lfd = sbx_mailbox_lock(state, mbox, 0, &e);

		c = lfd >= 0 ? 'y' : 'n';
		if (write(to_parent[1], &c, 1) != 1 || read(to_child[0], &c, 1) != 1)
			_exit(2);
		usleep(100000);  /* the parent is blocked in a waiting lock now */
		_exit(lfd >= 0 ? 0 : 1);
	}
	CHECK(pid > 0);
	CHECK(read(to_parent[0], &c, 1) == 1 && c == 'y');
	fd = sbx_mailbox_lock(state, mbox, 0, &error);
	CHECK(fd == -1);
	CHECKF(error != NULL && strcmp(error, "mailbox in use by sealbox-imapd") == 0,
	       "error: %s", error ? error : "(none)");
	free(error);
	error = NULL;
	/* a waiting lock returns once the child exits */
	CHECK(write(to_child[1], "x", 1) == 1);
	fd = sbx_mailbox_lock(state, mbox, 1, &error);
	CHECK(fd >= 0);
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* flock is per open file: a second open in this process conflicts too */
	fd2 = sbx_mailbox_lock(state, mbox, 0, &error);
	CHECK(fd2 == -1);
	free(error);
	error = NULL;
	sbx_mailbox_unlock(fd);
	fd = sbx_mailbox_lock(state, mbox, 0, &error);
	CHECK(fd >= 0);
	sbx_mailbox_unlock(fd);
	CHECK(stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600);
	dir = sbx_xasprintf("%s/mailboxes/%c%c", state, mbox[0], mbox[1]);
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0700);
	free(dir);
	close(to_parent[0]);
	close(to_parent[1]);
	close(to_child[0]);
	close(to_child[1]);
	free(path);
	rm_rf(state);
}

/* ---- write failures ---- */

/* In a child limited by RLIMIT_FSIZE, delivering msg must fail with EFBIG
 * and leave the journal exactly as long as before. Returns the child's
 * exit status bits: 1 delivered, 2 no EFBIG error, 4 journal changed. */
static int
deliver_limited(const char *state, const char *mbox, rlim_t limit, const void *msg, size_t len)
{
	long long before = journal_size(state, mbox);
	pid_t pid;
	int status;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct sbx_spool_meta m;
		struct rlimit rl;
		char *error = NULL;
		int bits = 0;

		signal(SIGXFSZ, SIG_IGN);
		if (getrlimit(RLIMIT_FSIZE, &rl) < 0)
			_exit(64);
		rl.rlim_cur = limit;
		if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
			_exit(64);
		init_meta(&m, "a@b", "c@d");
		if (sbx_spool_deliver(state, mbox, pk, &m, msg, len, NULL, &error) != -1)
			bits |= 1;
		if (error == NULL || strstr(error, strerror(EFBIG)) == NULL)
			bits |= 2;
		if (journal_size(state, mbox) != (before < 0 ? 0 : before))
			bits |= 4;
		_exit(bits);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return 128;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 129;
}

TEST(write_failure_keeps_journal)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], mbox2[SBX_ID_HEX], *jpath;
	size_t len = 200 * 1024, total = rec_size(META_FIXED + 6, 200 * 1024), i, k;
	unsigned char *msg = pattern(len, 3);
	char ids[2][SBX_ID_HEX], id[SBX_ID_HEX];
	struct scan_result sr;
	rlim_t j;

	sbx_random_id(mbox);
	sbx_random_id(mbox2);
	jpath = journal_path(state, mbox);
	/* two records already there */
	CHECK(deliver(state, mbox, msg, 1000, ids[0]) == 0);
	CHECK(deliver(state, mbox, msg, 2000, ids[1]) == 0);
	j = (rlim_t)journal_size(state, mbox);
	{
		/* fail in begin (record and entry header), in write (second chunk),
		 * in commit (final chunk, then the check value) */
		rlim_t limits[] = { j + 20, j + 50, j + 100000, j + (rlim_t)(total - REC_CHECK - 100),
				    j + (rlim_t)(total - 10), j + (rlim_t)(total - 1) };

		for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
			int bits = deliver_limited(state, mbox, limits[i], msg, len);

			CHECKF(bits == 0, "limit journal + %lu: child status %d",
			       (unsigned long)(limits[i] - j), bits);
			CHECK(journal_size(state, mbox) == (long long)j);
			CHECK(scan_file(jpath, &sr) == 0 && sr.n == 2 && sr.damaged == 0 && sr.torn == 0);
			for (k = 0; k < sr.n && k < 2; k++)
				CHECK(strcmp(sr.rec[k].delivery_id, ids[k]) == 0 &&
				      rec_is(jpath, &sr.rec[k], msg, k == 0 ? 1000 : 2000));
			scan_result_free(&sr);
		}
		/* control: with the limit at exactly the size it succeeds */
		CHECK(deliver_limited(state, mbox, j + (rlim_t)total, msg, len) == (1 | 2 | 4));
		CHECK(scan_file(jpath, &sr) == 0 && sr.n == 3 && sr.damaged == 0 && sr.torn == 0);
		scan_result_free(&sr);
	}
	/* the first record of a new journal */
	CHECK(deliver_limited(state, mbox2, 50, msg, len) == 0);
	CHECK(spool_empty(state, mbox2));
	/* and delivering works again without the limit */
	CHECK(deliver(state, mbox, msg, len, id) == 0);
	CHECK(deliver(state, mbox2, msg, len, id) == 0);
	CHECK(records_waiting(state, mbox) == 4 && records_waiting(state, mbox2) == 1);
	free(msg);
	free(jpath);
	rm_rf(state);
}

/* Runs every test, or only those named on the command line. */
static int
wanted(int argc, char **argv, const char *name)
{
	int i;

	if (argc < 2)
		return 1;
	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

#define RUN_IF(name) do { if (wanted(argc, argv, #name)) RUN(name); } while (0)

int
main(int argc, char **argv)
{
	if (sodium_init() < 0) {
		printf("not ok - sodium_init\n");
		return 1;
	}
	crypto_box_keypair(pk, sk);
	RUN_IF(round_trip);
	RUN_IF(record_format_and_modes);
	RUN_IF(no_plaintext_on_disk);
	RUN_IF(wrong_key);
	RUN_IF(byte_flips);
	RUN_IF(truncation);
	RUN_IF(appended_garbage);
	RUN_IF(crafted_entries);
	RUN_IF(id_mismatch);
	RUN_IF(writer_abort);
	RUN_IF(writer_lock_blocks);
	RUN_IF(commit_wrong_size);
	RUN_IF(journal_order);
	RUN_IF(torn_tail);
	RUN_IF(journal_damage_mid);
	RUN_IF(journal_damaged_length_keeps_tail);
	RUN_IF(journal_inode_reused);
	RUN_IF(claim_segments);
	RUN_IF(claim_while_writer_waits);
	RUN_IF(concurrent_appends);
	RUN_IF(concurrent_claim);
	RUN_IF(list_and_usage);
	RUN_IF(invalid_ids);
	RUN_IF(journal_symlink);
	RUN_IF(destroy);
	RUN_IF(mailbox_lock);
	RUN_IF(write_failure_keeps_journal);
	return tap_done();
}
