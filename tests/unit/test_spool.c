/* test_spool.c - the sealed spool (shared/spool.c) and the mailbox lock
 * (shared/lock.c): round trips, the on-disk format, damage of every kind,
 * write failures, directory hygiene. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Format constants restated from spool.h, so a change there fails here. */
#define HDR_BYTES (4 + 1 + 32 + 48 + 24)
#define ABYTES 17
#define META_FIXED 37

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

static int
spool_empty(const char *state, const char *mbox)
{
	char *tmp = sbx_xasprintf("%s/spool/%s/tmp", state, mbox);
	char *new = sbx_xasprintf("%s/spool/%s/new", state, mbox);
	int ok = count_entries(tmp) <= 0 && count_entries(new) <= 0;

	free(tmp);
	free(new);
	return ok;
}

static char *
entry_path(const char *state, const char *mbox, const char *id)
{
	return sbx_xasprintf("%s/spool/%s/new/%s", state, mbox, id);
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

static unsigned char *
pattern(size_t len, unsigned int seed)
{
	unsigned char s[randombytes_SEEDBYTES] = { 0 };
	unsigned char *p = sbx_xmalloc(len ? len : 1);

	memcpy(s, &seed, sizeof(seed));
	randombytes_buf_deterministic(p, len, s);
	return p;
}

/* Expected file size: header, metadata chunk, at least one message chunk. */
static size_t
entry_size(size_t meta_len, size_t msg_len)
{
	size_t chunks = msg_len == 0 ? 1 : (msg_len + SBX_SPOOL_CHUNK - 1) / SBX_SPOOL_CHUNK;

	return HDR_BYTES + 4 + meta_len + ABYTES + msg_len + chunks * (4 + ABYTES);
}

static void
init_meta(struct sbx_spool_meta *m, const char *from, const char *orcpt)
{
	memset(m, 0, sizeof(*m));
	m->arrival = 1700000000;
	m->mail_from = (char *)from;
	m->orcpt = (char *)orcpt;
}

/* Open and read the whole entry: 0 only if both succeed. */
static int
open_read(const char *state, const char *mbox, const char *id, char **msg_r, size_t *len_r,
	  char **error_r)
{
	struct sbx_spool_reader *r;
	int rc;

	*msg_r = NULL;
	*error_r = NULL;
	if (sbx_spool_reader_open(state, mbox, id, pk, sk, &r, error_r) < 0)
		return -1;
	rc = sbx_spool_read_all(r, SBX_MAX_MESSAGE_SIZE, msg_r, len_r, error_r);
	sbx_spool_reader_close(&r);
	return rc;
}

/* Open and stream with sbx_spool_reader_read only (no size check of our
 * own): 0 if the reader ends with a clean 0. */
static int
open_stream(const char *state, const char *mbox, const char *id, size_t *len_r, char **error_r)
{
	struct sbx_spool_reader *r;
	char buf[4096];
	long n;

	*len_r = 0;
	*error_r = NULL;
	if (sbx_spool_reader_open(state, mbox, id, pk, sk, &r, error_r) < 0)
		return -1;
	while ((n = sbx_spool_reader_read(r, buf, sizeof(buf), error_r)) > 0)
		*len_r += (size_t)n;
	sbx_spool_reader_close(&r);
	return n == 0 ? 0 : -1;
}

TEST(round_trip)
{
	static const size_t sizes[] = { 0, 1, 65535, 65536, 65537, 1024 * 1024 + 3 };
	char *state = make_tmpdir(), mbox[SBX_ID_HEX];
	size_t i;

	sbx_random_id(mbox);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = sizes[i], off, step, got = 0;
		unsigned char *msg = pattern(len, (unsigned int)i);
		const char *from = i == 0 ? "" : "sender+tag@example.org";
		const char *orcpt = i == 2 ? "" : "alias@example.net";
		struct sbx_spool_meta m;
		struct sbx_spool_writer *w = NULL;
		struct sbx_spool_reader *r = NULL;
		const struct sbx_spool_meta *rm;
		char id[SBX_ID_HEX] = "", preset[SBX_ID_HEX], *error = NULL, *path, *out = NULL;
		struct stat st;
		long n;

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
		if (i == 3)
			CHECK(strcmp(id, preset) == 0);
		path = entry_path(state, mbox, id);
		CHECK(stat(path, &st) == 0);
		CHECKF((size_t)st.st_size == entry_size(META_FIXED + strlen(from) + strlen(orcpt), len),
		       "size %zu: file %lld bytes, expected %zu", len, (long long)st.st_size,
		       entry_size(META_FIXED + strlen(from) + strlen(orcpt), len));
		free(path);

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
	/* read_all refuses a message above its max */
	{
		char **ids = NULL, *out = NULL, *error = NULL;
		struct sbx_spool_reader *r = NULL;
		size_t n = 0, got, k;

		CHECK(sbx_spool_list(state, mbox, &ids, &n, &error) == 0);
		CHECK(n == 6);
		for (k = 0; k < n; k++) {
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
	rm_rf(state);
}

TEST(file_format_and_modes)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], id[SBX_ID_HEX], *error = NULL;
	char *path, *data = NULL, *dir;
	struct sbx_spool_meta m;
	size_t len = 0;
	struct stat st;

	sbx_random_id(mbox);
	init_meta(&m, "a@b", "c@d");
	CHECK(sbx_spool_deliver(state, mbox, pk, &m, "hello", 5, id, &error) == 0);
	path = entry_path(state, mbox, id);
	CHECK(sbx_read_file(path, 1 << 20, &data, &len) == 0);
	CHECK(len == entry_size(META_FIXED + 6, 5));
	CHECK(len > 5 && memcmp(data, "SBXS\001", 5) == 0);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
	dir = sbx_xasprintf("%s/spool/%s/tmp", state, mbox);
	CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700);
	free(dir);
	dir = sbx_xasprintf("%s/spool/%s/new", state, mbox);
	CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700);
	free(dir);
	dir = sbx_xasprintf("%s/spool/%s", state, mbox);
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0700);
	free(dir);
	free(data);
	free(path);
	rm_rf(state);
}

TEST(no_plaintext_on_disk)
{
	static const char marker[] = "PLAINTEXT-MARKER-7f3a";
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], id[SBX_ID_HEX], *error = NULL;
	char *path, *data = NULL, *msg;
	size_t len = 0, msglen = 150000, i;
	struct sbx_spool_meta m;

	sbx_random_id(mbox);
	msg = sbx_xmalloc(msglen);
	for (i = 0; i < msglen; i++)
		msg[i] = marker[i % (sizeof(marker) - 1)];
	init_meta(&m, "from-marker-91c2@example.org", "rcpt-marker-44d1@example.net");
	CHECK(sbx_spool_deliver(state, mbox, pk, &m, msg, msglen, id, &error) == 0);
	path = entry_path(state, mbox, id);
	CHECK(sbx_read_file(path, 1 << 20, &data, &len) == 0);
	CHECK(len > msglen);
	CHECK(memmem(data, len, marker, 8) == NULL);
	CHECK(memmem(data, len, "from-marker-91c2", 16) == NULL);
	CHECK(memmem(data, len, "rcpt-marker-44d1", 16) == NULL);
	CHECK(memmem(data, len, id, 32) == NULL);
	free(data);
	free(path);
	free(msg);
	rm_rf(state);
}

TEST(wrong_key)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], id[SBX_ID_HEX], *error = NULL;
	unsigned char pk2[32], sk2[32];
	struct sbx_spool_reader *r = NULL;
	struct sbx_spool_meta m;

	sbx_random_id(mbox);
	crypto_box_keypair(pk2, sk2);
	init_meta(&m, "a@b", "");
	CHECK(sbx_spool_deliver(state, mbox, pk, &m, "secret", 6, id, &error) == 0);
	CHECK(sbx_spool_reader_open(state, mbox, id, pk2, sk2, &r, &error) < 0);
	CHECK(r == NULL && error != NULL);
	free(error);
	error = NULL;
	CHECK(sbx_spool_reader_open(state, mbox, id, pk, sk2, &r, &error) < 0);
	CHECK(r == NULL && error != NULL);
	free(error);
	error = NULL;
	/* control: the right pair opens it */
	CHECK(sbx_spool_reader_open(state, mbox, id, pk, sk, &r, &error) == 0);
	sbx_spool_reader_close(&r);
	rm_rf(state);
}

/* A 200 KiB entry with four message chunks, for the damage tests. */
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
	*path_r = entry_path(state, mbox, id);
	*orig_r = NULL;
	*len_r = 0;
	CHECK(sbx_read_file(*path_r, 1 << 20, orig_r, len_r) == 0);
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
		if (open_read(state, mbox, id, &out, &outlen, &error) == 0) {
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
	CHECK(open_read(state, mbox, id, &out, &outlen, &error) == 0);
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
		if (open_read(state, mbox, id, &out, &outlen, &error) == 0) {
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
		CHECK(sbx_spool_reader_open(state, mbox, id, pk, sk, &r, &error) == 0);
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
	char mbox[SBX_ID_HEX], id[SBX_ID_HEX], *orig, *path, *copy, *out, *error;
	size_t len, i, outlen;
	char *state = damage_setup(mbox, id, &orig, &len, &path);

	copy = sbx_xmalloc(len + 4 + 8192 + ABYTES);
	for (i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		memcpy(copy, orig, len);
		memset(copy + len, 0, extra[i]);
		if (extra[i] == 21)  /* a plausible empty chunk: length 17 */
			copy[len + 3] = ABYTES;
		CHECK(write_file(path, copy, len + extra[i]) == 0);
		if (open_read(state, mbox, id, &out, &outlen, &error) == 0) {
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
	CHECK(open_read(state, mbox, id, &out, &outlen, &error) < 0);
	free(error);
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
craft(const char *path, const struct piece *pieces, size_t n)
{
	unsigned char key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
	unsigned char hdr[HDR_BYTES], *out;
	crypto_secretstream_xchacha20poly1305_state st;
	unsigned long long ctlen;
	int fd, rc = 0;
	size_t i;

	crypto_secretstream_xchacha20poly1305_keygen(key);
	memcpy(hdr, "SBXS\001", 5);
	if (crypto_box_seal(hdr + 5, key, sizeof(key), pk) != 0)
		return -1;
	crypto_secretstream_xchacha20poly1305_init_push(&st, hdr + 5 + 80, key);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (sbx_write_all(fd, hdr, sizeof(hdr)) < 0)
		rc = -1;
	for (i = 0; i < n && rc == 0; i++) {
		out = sbx_xmalloc(4 + pieces[i].len + ABYTES);
		crypto_secretstream_xchacha20poly1305_push(&st, out + 4, &ctlen, pieces[i].data,
							   pieces[i].len, NULL, 0, pieces[i].tag);
		out[0] = (unsigned char)(ctlen >> 24);
		out[1] = (unsigned char)(ctlen >> 16);
		out[2] = (unsigned char)(ctlen >> 8);
		out[3] = (unsigned char)ctlen;
		if (sbx_write_all(fd, out, 4 + (size_t)ctlen) < 0)
			rc = -1;
		free(out);
	}
	if (close(fd) < 0)
		rc = -1;
	return rc;
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
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], id[SBX_ID_HEX], *path, *out, *error;
	static char from_long[SBX_MAX_ADDRESS_LEN + 1], big[SBX_SPOOL_CHUNK + 1];
	unsigned char meta[8192];
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
	sbx_random_id(mbox);
	sbx_random_id(id);
	{
		struct sbx_spool_meta m;

		init_meta(&m, "", "");
		CHECK(sbx_spool_deliver(state, mbox, pk, &m, "", 0, id, &error) == 0);  /* makes the dirs */
	}
	path = entry_path(state, mbox, id);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char other[SBX_ID_HEX];

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
		CHECK(craft(path, cases[i].p, cases[i].n) == 0);
		out = NULL;
		len = 0;
		if (open_read(state, mbox, id, &out, &len, &error) == 0) {
			CHECKF(cases[i].ok, "%s: read back cleanly", cases[i].name);
			CHECKF(len == cases[i].size && memcmp(out, "hello", len) == 0, "%s: wrong data",
			       cases[i].name);
		} else {
			CHECKF(!cases[i].ok, "%s: %s", cases[i].name, error ? error : "(none)");
		}
		free(out);
		free(error);
		if (open_stream(state, mbox, id, &len, &error) == 0)
			CHECKF(cases[i].ok && len == 5, "%s: streamed cleanly (%zu bytes)", cases[i].name, len);
		else
			CHECKF(!cases[i].ok, "%s: streaming: %s", cases[i].name, error ? error : "(none)");
		free(error);
	}
	free(path);
	rm_rf(state);
}

TEST(renamed_entry)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], id[SBX_ID_HEX], other[SBX_ID_HEX];
	char *error = NULL, *from, *to;
	struct sbx_spool_reader *r = NULL;
	struct sbx_spool_meta m;

	sbx_random_id(mbox);
	sbx_random_id(other);
	init_meta(&m, "a@b", "c@d");
	CHECK(sbx_spool_deliver(state, mbox, pk, &m, "x", 1, id, &error) == 0);
	from = entry_path(state, mbox, id);
	to = entry_path(state, mbox, other);
	CHECK(rename(from, to) == 0);
	CHECK(sbx_spool_reader_open(state, mbox, other, pk, sk, &r, &error) < 0);
	CHECK(r == NULL);
	CHECKF(error != NULL && strcmp(error, "spool entry name does not match its sealed delivery id") == 0,
	       "error: %s", error ? error : "(none)");
	free(error);
	free(from);
	free(to);
	rm_rf(state);
}

TEST(writer_abort)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], *error = NULL, *tmp;
	unsigned char *msg = pattern(100000, 7);
	struct sbx_spool_writer *w = NULL;
	struct sbx_spool_meta m;

	sbx_random_id(mbox);
	init_meta(&m, "a@b", "c@d");
	m.size = 200000;
	CHECK(sbx_spool_writer_begin(state, mbox, pk, &m, &w, &error) == 0);
	CHECK(w != NULL && sbx_spool_writer_write(w, msg, 100000, &error) == 0);
	tmp = sbx_xasprintf("%s/spool/%s/tmp", state, mbox);
	CHECK(count_entries(tmp) == 1);
	sbx_spool_writer_abort(&w);
	CHECK(w == NULL);
	CHECK(count_entries(tmp) == 0);
	CHECK(spool_empty(state, mbox));
	sbx_spool_writer_abort(&w);  /* NULL is fine */
	free(tmp);
	free(msg);
	rm_rf(state);
}

TEST(commit_wrong_size)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], *error = NULL, id[SBX_ID_HEX];
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
	/* the same delivery id twice: refused, the first entry intact */
	memcpy(m.delivery_id, id, SBX_ID_HEX);
	CHECK(sbx_spool_deliver(state, mbox, pk, &m, "different!", 10, NULL, &error) < 0);
	free(error);
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

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

TEST(list_and_usage)
{
	static const char *junk[] = { "foo", ".x", "0123456789ABCDEF0123456789ABCDEF",
				      "0123456789abcdef0123456789abcde",
				      "0123456789abcdef0123456789abcdef0", "0123456789abcdef0123456789abcdef.tmp" };
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], other[SBX_ID_HEX], *error = NULL;
	char *ids_in[5], **ids = NULL, *path;
	uint64_t bytes = 1, count = 1, sum = 0;
	struct sbx_spool_meta m;
	struct stat st;
	size_t n = 99, i;

	sbx_random_id(mbox);
	sbx_random_id(other);
	/* missing directory: empty */
	CHECK(sbx_spool_list(state, other, &ids, &n, &error) == 0);
	CHECK(n == 0 && ids == NULL);
	CHECK(sbx_spool_usage(state, other, &bytes, &count) == 0 && bytes == 0 && count == 0);

	init_meta(&m, "a@b", "c@d");
	for (i = 0; i < 5; i++) {
		char id[SBX_ID_HEX];

		CHECK(sbx_spool_deliver(state, mbox, pk, &m, "message message message message message",
					7 * (i + 1), id, &error) == 0);
		ids_in[i] = sbx_xstrdup(id);
		path = entry_path(state, mbox, id);
		CHECK(stat(path, &st) == 0);
		sum += (uint64_t)st.st_size;
		free(path);
	}
	for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		path = entry_path(state, mbox, junk[i]);
		CHECK(write_file(path, "junk", 4) == 0);
		free(path);
	}
	qsort(ids_in, 5, sizeof(ids_in[0]), cmp_str);
	CHECK(sbx_spool_list(state, mbox, &ids, &n, &error) == 0);
	CHECKF(n == 5, "listed %zu", n);
	for (i = 0; i < n && i < 5; i++)
		CHECKF(strcmp(ids[i], ids_in[i]) == 0, "entry %zu: %s", i, ids[i]);
	sbx_spool_list_free(ids, n);
	CHECK(sbx_spool_usage(state, mbox, &bytes, &count) == 0);
	CHECK(count == 5);
	CHECKF(bytes == sum, "usage %llu, files %llu", (unsigned long long)bytes, (unsigned long long)sum);
	for (i = 0; i < 5; i++)
		free(ids_in[i]);
	rm_rf(state);
}

TEST(invalid_ids)
{
	static const char *bad[] = { "../etc", "", "..", "0123456789ABCDEF0123456789ABCDEF",
				     "0123456789abcdef0123456789abcde", "../../../../../../tmp/x",
				     "0123456789abcdef0123456789abcde/" };
	char *state = make_tmpdir(), good[SBX_ID_HEX], *error, *p;
	struct sbx_spool_writer *w;
	struct sbx_spool_reader *r;
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
		CHECK(sbx_spool_remove(state, bad[i], good, &error) < 0);
		free(error);
		error = NULL;
		CHECK(sbx_spool_remove(state, good, bad[i], &error) < 0);
		free(error);
		error = NULL;
		CHECK(sbx_spool_destroy(state, bad[i], &error) < 0);
		free(error);
		error = NULL;
		CHECK(sbx_spool_usage(state, bad[i], &b, &c) < 0);
		CHECK(sbx_spool_sweep_tmp(state, bad[i], 0) < 0);
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
	}
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

TEST(remove_sweep_destroy)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], id[SBX_ID_HEX], *error = NULL;
	char *tmp, *dir, *tmpfile;
	struct sbx_spool_writer *w = NULL;
	struct sbx_spool_meta m;
	struct timespec old[2];
	char **ids;
	size_t n;

	sbx_random_id(mbox);
	init_meta(&m, "a@b", "c@d");
	CHECK(sbx_spool_deliver(state, mbox, pk, &m, "x", 1, id, &error) == 0);
	CHECK(sbx_spool_remove(state, mbox, id, &error) == 0);
	CHECK(sbx_spool_list(state, mbox, &ids, &n, &error) == 0 && n == 0);
	sbx_spool_list_free(ids, n);
	CHECK(sbx_spool_remove(state, mbox, id, &error) < 0);
	free(error);
	error = NULL;

	/* sweep: a fresh tmp file stays, an old one goes */
	m.size = 5;
	CHECK(sbx_spool_writer_begin(state, mbox, pk, &m, &w, &error) == 0);
	tmp = sbx_xasprintf("%s/spool/%s/tmp", state, mbox);
	CHECK(sbx_spool_sweep_tmp(state, mbox, 3600) == 0);
	CHECK(count_entries(tmp) == 1);
	tmpfile = sbx_xasprintf("%s/0123456789abcdef0123456789abcdef", tmp);
	CHECK(write_file(tmpfile, "left over", 9) == 0);
	old[0].tv_sec = old[1].tv_sec = time(NULL) - 7200;
	old[0].tv_nsec = old[1].tv_nsec = 0;
	CHECK(utimensat(AT_FDCWD, tmpfile, old, 0) == 0);
	CHECK(sbx_spool_sweep_tmp(state, mbox, 3600) == 0);
	CHECK(count_entries(tmp) == 1);   /* only the live writer's file */
	CHECK(access(tmpfile, F_OK) < 0);
	sbx_spool_writer_abort(&w);
	CHECK(count_entries(tmp) == 0);
	free(tmpfile);

	CHECK(sbx_spool_deliver(state, mbox, pk, &m, "y", 1, id, &error) == 0);
	CHECK(sbx_spool_destroy(state, mbox, &error) == 0);
	dir = sbx_xasprintf("%s/spool/%s", state, mbox);
	CHECK(access(dir, F_OK) < 0 && errno == ENOENT);
	CHECK(sbx_spool_destroy(state, mbox, &error) == 0);  /* already gone */
	CHECK(sbx_spool_sweep_tmp(state, mbox, 0) == 0);
	free(dir);
	free(tmp);
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

/* In a child limited by RLIMIT_FSIZE, delivering msg must fail with EFBIG
 * and leave nothing behind. Returns the child's exit status bits. */
static int
deliver_limited(const char *state, const char *mbox, rlim_t limit, const void *msg, size_t len)
{
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
		if (!spool_empty(state, mbox))
			bits |= 4;
		_exit(bits);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return 128;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 129;
}

TEST(write_failure_leaves_nothing)
{
	char *state = make_tmpdir(), mbox[SBX_ID_HEX], *error = NULL;
	size_t len = 200 * 1024, total = entry_size(META_FIXED + 6, 200 * 1024);
	/* fail in begin (header), in write (second chunk), in commit (final chunk) */
	rlim_t limits[] = { 50, 100000, (rlim_t)(total - 10) };
	unsigned char *msg = pattern(len, 3);
	struct sbx_spool_meta m;
	char id[SBX_ID_HEX];
	size_t i;

	sbx_random_id(mbox);
	for (i = 0; i < 3; i++) {
		int bits = deliver_limited(state, mbox, limits[i], msg, len);

		CHECKF(bits == 0, "limit %lu: child status %d", (unsigned long)limits[i], bits);
		CHECK(spool_empty(state, mbox));
	}
	/* control: with the limit at exactly the size it succeeds */
	CHECK(deliver_limited(state, mbox, (rlim_t)total, msg, len) == (1 | 2 | 4));
	CHECK(sbx_spool_destroy(state, mbox, &error) == 0);
	init_meta(&m, "a@b", "c@d");
	CHECK(sbx_spool_deliver(state, mbox, pk, &m, msg, len, id, &error) == 0);
	free(msg);
	rm_rf(state);
}

int
main(void)
{
	if (sodium_init() < 0) {
		printf("not ok - sodium_init\n");
		return 1;
	}
	crypto_box_keypair(pk, sk);
	RUN(round_trip);
	RUN(file_format_and_modes);
	RUN(no_plaintext_on_disk);
	RUN(wrong_key);
	RUN(byte_flips);
	RUN(truncation);
	RUN(appended_garbage);
	RUN(crafted_entries);
	RUN(renamed_entry);
	RUN(writer_abort);
	RUN(commit_wrong_size);
	RUN(list_and_usage);
	RUN(invalid_ids);
	RUN(remove_sweep_destroy);
	RUN(mailbox_lock);
	RUN(write_failure_leaves_nothing);
	return tap_done();
}
