/* spool.c - see spool.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "sbx_limits.h"
#include "spool.h"
#include "util.h"

#define SPOOL_MAGIC "SBXS"
#define SPOOL_VERSION 1
#define META_VERSION 1
#define SEALED_KEY_BYTES (crypto_secretstream_xchacha20poly1305_KEYBYTES + crypto_box_SEALBYTES)
#define SS_HEADER_BYTES crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define SS_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
/* "SBXS" | version | sealed key | secretstream header */
#define FILE_HEADER_BYTES (4 + 1 + SEALED_KEY_BYTES + SS_HEADER_BYTES)
/* version | arrival | delivery id | 2 length fields | size */
#define META_FIXED_BYTES (1 + 8 + SBX_ID_BYTES + 2 + 2 + 8)
#define MAX_CHUNK_CT (SBX_SPOOL_CHUNK + SS_ABYTES)

typedef crypto_secretstream_xchacha20poly1305_state ss_state;

struct sbx_spool_writer {
	int fd;
	int failed;
	char id[SBX_ID_HEX];
	char *tmp_path, *new_path, *new_dir;
	ss_state *st;                 /* sodium_malloc: holds the stream key */
	unsigned char *pt;            /* SBX_SPOOL_CHUNK plaintext bytes */
	size_t pt_len;
	unsigned char *out;           /* length prefix + ciphertext of one chunk */
	uint64_t size, written;
	int finished;                 /* final chunk written */
};

struct sbx_spool_reader {
	int fd;
	int failed;
	int final;                    /* TAG_FINAL seen and checked */
	ss_state *st;
	unsigned char *ct;            /* MAX_CHUNK_CT bytes */
	unsigned char *pt;            /* SBX_SPOOL_CHUNK bytes */
	size_t pt_len, pt_pos;
	uint64_t total;
	struct sbx_spool_meta meta;
};

void
sbx_spool_meta_free(struct sbx_spool_meta *m)
{
	if (m == NULL)
		return;
	free(m->mail_from);
	free(m->orcpt);
	m->mail_from = NULL;
	m->orcpt = NULL;
}

static char *
spool_dir(const char *state_dir, const char *mailbox_id)
{
	return sbx_xasprintf("%s/spool/%s", state_dir, mailbox_id);
}

/* mkdir one level (0700), fsync the parent when it was created so the new
 * directory itself survives a crash; an existing path must be a real
 * directory (a symlink planted there is refused). */
static int
make_dir(const char *path, const char *parent)
{
	struct stat st;

	if (mkdir(path, 0700) == 0)
		return sbx_fsync_dir(parent);
	if (errno != EEXIST)
		return -1;
	if (lstat(path, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

/*
 * The stream state and the entry key live in guarded memory. sodium_malloc
 * costs a few system calls (mmap, mprotect, mlock), which showed up as a
 * fifth of lmtpd's CPU per delivery (bench/RESULTS.md), so each thread
 * keeps one block for a writer's state and one for a key, wiped after
 * every use; a second writer alive in the same thread gets its own.
 */
static __thread ss_state *cached_st;
static __thread int cached_st_busy;
static __thread unsigned char *cached_key;
static __thread int cached_key_busy;

static ss_state *
st_get(void)
{
	if (cached_st_busy)
		return sbx_secure_xmalloc(sizeof(ss_state));
	if (cached_st == NULL)
		cached_st = sbx_secure_xmalloc(sizeof(ss_state));
	cached_st_busy = 1;
	return cached_st;
}

static void
st_put(ss_state *st)
{
	if (st == NULL)
		return;
	if (st == cached_st) {
		sodium_memzero(st, sizeof(*st));
		cached_st_busy = 0;
	} else {
		sbx_secure_free(st, sizeof(*st));
	}
}

static unsigned char *
key_get(void)
{
	if (cached_key_busy)
		return sbx_secure_xmalloc(crypto_secretstream_xchacha20poly1305_KEYBYTES);
	if (cached_key == NULL)
		cached_key = sbx_secure_xmalloc(crypto_secretstream_xchacha20poly1305_KEYBYTES);
	cached_key_busy = 1;
	return cached_key;
}

static void
key_put(unsigned char *key)
{
	if (key == cached_key) {
		sodium_memzero(key, crypto_secretstream_xchacha20poly1305_KEYBYTES);
		cached_key_busy = 0;
	} else {
		sbx_secure_free(key, crypto_secretstream_xchacha20poly1305_KEYBYTES);
	}
}

static int
make_spool_dirs(const char *state_dir, const char *mailbox_id, char **error_r)
{
	char *spool = sbx_xasprintf("%s/spool", state_dir);
	char *mdir = spool_dir(state_dir, mailbox_id);
	char *tmp = sbx_xasprintf("%s/tmp", mdir);
	char *new = sbx_xasprintf("%s/new", mdir);
	const char *failed = NULL;
	int ret = -1;

	if (sbx_mkdir_p(state_dir, 0700) < 0)
		failed = state_dir;
	else if (make_dir(spool, state_dir) < 0)
		failed = spool;
	else if (make_dir(mdir, spool) < 0)
		failed = mdir;
	else if (make_dir(tmp, mdir) < 0)
		failed = tmp;
	else if (make_dir(new, mdir) < 0)
		failed = new;
	else
		ret = 0;
	if (failed != NULL)
		*error_r = sbx_xasprintf("spool directory %s: %s", failed, strerror(errno));
	free(spool);
	free(mdir);
	free(tmp);
	free(new);
	return ret;
}

static void
writer_free(struct sbx_spool_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	free(w->tmp_path);
	free(w->new_path);
	free(w->new_dir);
	st_put(w->st);
	sbx_wipe_free(w->pt, SBX_SPOOL_CHUNK);
	sbx_wipe_free(w->out, 4 + MAX_CHUNK_CT);
	sodium_memzero(w, sizeof(*w));
	free(w);
}

/* A write error: the entry can never be completed, so drop the tmp file now
 * (the caller still aborts or commits to free w). Takes msg. */
static int
writer_fail(struct sbx_spool_writer *w, char **error_r, char *msg)
{
	*error_r = msg;
	if (w->fd >= 0) {
		close(w->fd);
		w->fd = -1;
	}
	if (!w->failed)
		(void)unlink(w->tmp_path);
	w->failed = 1;
	return -1;
}

/* writer_fail with "<what> spool entry <id>: <errno text>". */
static int
writer_errno(struct sbx_spool_writer *w, char **error_r, const char *what)
{
	return writer_fail(w, error_r, sbx_xasprintf("%s spool entry %s: %s", what, w->id,
						     strerror(errno)));
}

/* Encrypt pt[0..len) as one chunk and write length + ciphertext. */
static int
writer_push(struct sbx_spool_writer *w, const unsigned char *pt, size_t len,
	    unsigned char tag, char **error_r)
{
	unsigned long long ctlen;

	if (crypto_secretstream_xchacha20poly1305_push(w->st, w->out + 4, &ctlen,
						       pt, len, NULL, 0, tag) != 0) {
		return writer_fail(w, error_r, sbx_xasprintf("encrypt spool entry %s failed", w->id));
	}
	sbx_put_be32(w->out, (uint32_t)ctlen);
	if (sbx_write_all(w->fd, w->out, 4 + (size_t)ctlen) < 0)
		return writer_errno(w, error_r, "write");
	return 0;
}

static size_t
meta_encode(unsigned char *p, const struct sbx_spool_meta *meta, const char *id)
{
	const char *from = meta->mail_from ? meta->mail_from : "";
	const char *orcpt = meta->orcpt ? meta->orcpt : "";
	size_t from_len = strlen(from), orcpt_len = strlen(orcpt), n = 0;

	p[n++] = META_VERSION;
	sbx_put_be64(p + n, (uint64_t)(int64_t)meta->arrival);
	n += 8;
	(void)sbx_unhex(p + n, SBX_ID_BYTES, id);
	n += SBX_ID_BYTES;
	sbx_put_be16(p + n, (uint16_t)from_len);
	n += 2;
	memcpy(p + n, from, from_len);
	n += from_len;
	sbx_put_be16(p + n, (uint16_t)orcpt_len);
	n += 2;
	memcpy(p + n, orcpt, orcpt_len);
	n += orcpt_len;
	sbx_put_be64(p + n, meta->size);
	n += 8;
	return n;
}

int
sbx_spool_writer_begin(const char *state_dir, const char *mailbox_id,
		       const unsigned char pk[32], const struct sbx_spool_meta *meta,
		       struct sbx_spool_writer **w_r, char **error_r)
{
	struct sbx_spool_writer *w;
	unsigned char header[FILE_HEADER_BYTES];
	unsigned char *key;
	char *mdir;
	size_t from_len, orcpt_len, meta_len;
	struct stat st;

	*w_r = NULL;
	if (!sbx_is_id(mailbox_id)) {
		*error_r = sbx_xstrdup("invalid mailbox id");
		return -1;
	}
	if (meta->delivery_id[0] != '\0' && !sbx_is_id(meta->delivery_id)) {
		*error_r = sbx_xstrdup("invalid delivery id");
		return -1;
	}
	from_len = meta->mail_from ? strlen(meta->mail_from) : 0;
	orcpt_len = meta->orcpt ? strlen(meta->orcpt) : 0;
	if (from_len > SBX_MAX_ADDRESS_LEN || orcpt_len > SBX_MAX_ADDRESS_LEN) {
		*error_r = sbx_xstrdup("envelope address too long for the spool");
		return -1;
	}
	if (meta->size > (uint64_t)SBX_MAX_MESSAGE_SIZE) {
		*error_r = sbx_xasprintf("message of %llu bytes too large for the spool",
					 (unsigned long long)meta->size);
		return -1;
	}
	w = sbx_xcalloc(1, sizeof(*w));
	w->fd = -1;
	w->failed = 1;  /* until the tmp file exists, there is nothing to unlink */
	w->size = meta->size;
	if (meta->delivery_id[0] != '\0')
		memcpy(w->id, meta->delivery_id, SBX_ID_HEX);
	else
		sbx_random_id(w->id);
	mdir = spool_dir(state_dir, mailbox_id);
	w->tmp_path = sbx_xasprintf("%s/tmp/%s", mdir, w->id);
	w->new_path = sbx_xasprintf("%s/new/%s", mdir, w->id);
	w->new_dir = sbx_xasprintf("%s/new", mdir);
	free(mdir);

	/* Never replace an entry already spooled under this id. */
	if (lstat(w->new_path, &st) == 0) {
		*error_r = sbx_xasprintf("delivery %s is already spooled", w->id);
		writer_free(w);
		return -1;
	}
	if (errno != ENOENT) {
		*error_r = sbx_xasprintf("spool entry %s: %s", w->id, strerror(errno));
		writer_free(w);
		return -1;
	}
	w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (w->fd < 0 && errno == ENOENT) {
		/* the first entry of this mailbox: create the directories */
		if (make_spool_dirs(state_dir, mailbox_id, error_r) < 0) {
			writer_free(w);
			return -1;
		}
		w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	}
	if (w->fd < 0) {
		*error_r = sbx_xasprintf("create spool entry %s: %s", w->id, strerror(errno));
		writer_free(w);
		return -1;
	}
	w->failed = 0;
	w->st = st_get();
	w->pt = sbx_xmalloc(SBX_SPOOL_CHUNK);
	w->out = sbx_xmalloc(4 + MAX_CHUNK_CT);

	key = key_get();
	crypto_secretstream_xchacha20poly1305_keygen(key);
	memcpy(header, SPOOL_MAGIC, 4);
	header[4] = SPOOL_VERSION;
	if (crypto_box_seal(header + 5, key, crypto_secretstream_xchacha20poly1305_KEYBYTES, pk) != 0) {
		key_put(key);
		writer_fail(w, error_r, sbx_xstrdup("cannot seal to this mailbox public key"));
		writer_free(w);
		return -1;
	}
	crypto_secretstream_xchacha20poly1305_init_push(w->st, header + 5 + SEALED_KEY_BYTES, key);
	key_put(key);
	if (sbx_write_all(w->fd, header, sizeof(header)) < 0) {
		writer_errno(w, error_r, "write");
		writer_free(w);
		return -1;
	}

	/* The metadata record goes through the chunk buffer; it is tiny. */
	meta_len = meta_encode(w->pt, meta, w->id);
	if (writer_push(w, w->pt, meta_len, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE,
			error_r) < 0) {
		writer_free(w);
		return -1;
	}
	sodium_memzero(w->pt, meta_len);
	*w_r = w;
	return 0;
}

int
sbx_spool_writer_write(struct sbx_spool_writer *w, const void *data, size_t len, char **error_r)
{
	const unsigned char *p = data;

	if (w->failed) {
		*error_r = sbx_xasprintf("spool entry %s: writer already failed", w->id);
		return -1;
	}
	if (len > w->size - w->written)
		return writer_fail(w, error_r,
				   sbx_xasprintf("spool entry %s: message larger than its declared %llu bytes",
						 w->id, (unsigned long long)w->size));
	while (len > 0) {
		size_t n;

		/* A full buffer is pushed only once more data arrives, so the
		 * last chunk (TAG_FINAL) is empty only for an empty message. */
		if (w->pt_len == SBX_SPOOL_CHUNK) {
			if (writer_push(w, w->pt, w->pt_len,
					crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, error_r) < 0)
				return -1;
			w->pt_len = 0;
		}
		n = SBX_SPOOL_CHUNK - w->pt_len;
		if (n > len)
			n = len;
		memcpy(w->pt + w->pt_len, p, n);
		w->pt_len += n;
		w->written += n;
		p += n;
		len -= n;
	}
	return 0;
}

/* rename without replacing an existing entry; link + unlink where the file
 * system lacks RENAME_NOREPLACE. */
static int
rename_noreplace(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (link(from, to) < 0)
		return -1;
	if (unlink(from) < 0) {
		int saved = errno;

		(void)unlink(to);
		errno = saved;
		return -1;
	}
	return 0;
}

int
sbx_spool_writer_finish(struct sbx_spool_writer *w, int sync_data, char **error_r)
{
	if (w->failed) {
		*error_r = sbx_xasprintf("spool entry %s: writer already failed", w->id);
		return -1;
	}
	if (w->written != w->size)
		return writer_fail(w, error_r, sbx_xasprintf("spool entry %s: message is %llu bytes, declared %llu",
							       w->id, (unsigned long long)w->written,
							       (unsigned long long)w->size));
	if (writer_push(w, w->pt, w->pt_len, crypto_secretstream_xchacha20poly1305_TAG_FINAL,
			error_r) < 0)
		return -1;
	/* the stream is done: its state goes back for the next writer */
	st_put(w->st);
	w->st = NULL;
	if (sync_data && fsync(w->fd) < 0) {
		writer_errno(w, error_r, "fsync");
		return -1;
	}
	w->finished = 1;
	return 0;
}

int
sbx_spool_writer_fd(const struct sbx_spool_writer *w)
{
	return w->fd;
}

int
sbx_spool_writer_publish(struct sbx_spool_writer **wp, int sync_dir, char delivery_id_r[SBX_ID_HEX],
			 char **error_r)
{
	struct sbx_spool_writer *w = *wp;
	int fd;

	*wp = NULL;
	if (!w->finished || w->failed) {
		*error_r = sbx_xasprintf("spool entry %s: not finished", w->id);
		if (!w->failed && w->fd >= 0)
			(void)unlink(w->tmp_path);
		writer_free(w);
		return -1;
	}
	fd = w->fd;
	w->fd = -1;
	if (close(fd) < 0) {
		writer_errno(w, error_r, "close");
		writer_free(w);
		return -1;
	}
	if (rename_noreplace(w->tmp_path, w->new_path) < 0) {
		writer_errno(w, error_r, "rename");
		writer_free(w);
		return -1;
	}
	if (sync_dir && sbx_fsync_dir(w->new_dir) < 0) {
		int saved = errno;

		/* Not durable: do not leave an entry the caller was told failed. */
		*error_r = sbx_xasprintf("fsync spool entry %s: %s", w->id, strerror(saved));
		(void)unlink(w->new_path);
		(void)sbx_fsync_dir(w->new_dir);
		w->failed = 1;
		writer_free(w);
		return -1;
	}
	if (delivery_id_r != NULL)
		memcpy(delivery_id_r, w->id, SBX_ID_HEX);
	writer_free(w);
	return 0;
}

int
sbx_spool_writer_commit(struct sbx_spool_writer **wp, char delivery_id_r[SBX_ID_HEX], char **error_r)
{
	if (sbx_spool_writer_finish(*wp, 1, error_r) < 0) {
		writer_free(*wp);
		*wp = NULL;
		return -1;
	}
	return sbx_spool_writer_publish(wp, 1, delivery_id_r, error_r);
}

int
sbx_spool_sync_new(const char *state_dir, const char *mailbox_id, char **error_r)
{
	char *dir = sbx_xasprintf("%s/spool/%s/new", state_dir, mailbox_id);
	int rc = 0;

	if (!sbx_is_id(mailbox_id)) {
		*error_r = sbx_xasprintf("invalid mailbox id: %s", mailbox_id);
		rc = -1;
	} else if (sbx_fsync_dir(dir) < 0) {
		*error_r = sbx_xasprintf("fsync %s: %s", dir, strerror(errno));
		rc = -1;
	}
	free(dir);
	return rc;
}

void
sbx_spool_writer_abort(struct sbx_spool_writer **wp)
{
	struct sbx_spool_writer *w = *wp;

	if (w == NULL)
		return;
	*wp = NULL;
	if (w->fd >= 0) {
		close(w->fd);
		w->fd = -1;
	}
	if (!w->failed)
		(void)unlink(w->tmp_path);
	writer_free(w);
}

/* The buffer is the whole message: its length is the size (meta->size is
 * ignored), so callers need not fill it in. */
int
sbx_spool_deliver(const char *state_dir, const char *mailbox_id, const unsigned char pk[32],
		  const struct sbx_spool_meta *meta, const void *msg, size_t len,
		  char delivery_id_r[SBX_ID_HEX], char **error_r)
{
	struct sbx_spool_meta m = *meta;
	struct sbx_spool_writer *w;

	m.size = len;
	if (sbx_spool_writer_begin(state_dir, mailbox_id, pk, &m, &w, error_r) < 0)
		return -1;
	if (sbx_spool_writer_write(w, msg, len, error_r) < 0) {
		sbx_spool_writer_abort(&w);
		return -1;
	}
	return sbx_spool_writer_commit(&w, delivery_id_r, error_r);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
sbx_spool_list(const char *state_dir, const char *mailbox_id, char ***ids_r, size_t *n_r, char **error_r)
{
	char *dir, **ids = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;

	*ids_r = NULL;
	*n_r = 0;
	if (!sbx_is_id(mailbox_id)) {
		*error_r = sbx_xstrdup("invalid mailbox id");
		return -1;
	}
	dir = sbx_xasprintf("%s/spool/%s/new", state_dir, mailbox_id);
	d = opendir(dir);
	if (d == NULL) {
		if (errno == ENOENT) {
			free(dir);
			return 0;
		}
		*error_r = sbx_xasprintf("spool directory %s: %s", dir, strerror(errno));
		free(dir);
		return -1;
	}
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (de == NULL)
			break;
		if (!sbx_is_id(de->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			ids = sbx_xrealloc(ids, cap * sizeof(*ids));
		}
		ids[n++] = sbx_xstrdup(de->d_name);
	}
	if (errno != 0) {
		*error_r = sbx_xasprintf("spool directory %s: %s", dir, strerror(errno));
		closedir(d);
		free(dir);
		sbx_spool_list_free(ids, n);
		return -1;
	}
	closedir(d);
	free(dir);
	if (n > 1)
		qsort(ids, n, sizeof(*ids), cmp_str);
	*ids_r = ids;
	*n_r = n;
	return 0;
}

void
sbx_spool_list_free(char **ids, size_t n)
{
	size_t i;

	if (ids == NULL)
		return;
	for (i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

int
sbx_spool_usage(const char *state_dir, const char *mailbox_id, uint64_t *bytes_r, uint64_t *count_r)
{
	uint64_t bytes = 0, count = 0;
	struct dirent *de;
	struct stat st;
	char *dir;
	DIR *d;
	int ret = 0;

	*bytes_r = 0;
	*count_r = 0;
	if (!sbx_is_id(mailbox_id)) {
		errno = EINVAL;
		return -1;
	}
	dir = sbx_xasprintf("%s/spool/%s/new", state_dir, mailbox_id);
	d = opendir(dir);
	free(dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -1;
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (de == NULL) {
			if (errno != 0)
				ret = -1;
			break;
		}
		if (!sbx_is_id(de->d_name))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)  /* imported and removed meanwhile */
				continue;
			ret = -1;
			break;
		}
		if (!S_ISREG(st.st_mode))
			continue;
		bytes += (uint64_t)st.st_size;
		count++;
	}
	if (ret < 0) {
		int saved = errno;

		closedir(d);
		errno = saved;
		return -1;
	}
	closedir(d);
	*bytes_r = bytes;
	*count_r = count;
	return 0;
}

/* ---- reader ---- */

/* Read up to len bytes; returns the count (short only at EOF) or -1. */
static ssize_t
read_full(int fd, void *buf, size_t len)
{
	unsigned char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int
reader_error(struct sbx_spool_reader *r, char **error_r, char *msg)
{
	r->failed = 1;
	*error_r = msg;
	return -1;
}

/* Read, bound and authenticate the next chunk into r->pt. */
static int
reader_next_chunk(struct sbx_spool_reader *r, size_t max_pt, unsigned char *tag_r, char **error_r)
{
	unsigned char lenbuf[4];
	unsigned long long ptlen;
	uint32_t ctlen;
	ssize_t n;

	n = read_full(r->fd, lenbuf, sizeof(lenbuf));
	if (n < 0)
		return reader_error(r, error_r, sbx_xasprintf("read spool entry: %s", strerror(errno)));
	if (n < (ssize_t)sizeof(lenbuf))
		return reader_error(r, error_r, sbx_xstrdup("spool entry truncated"));
	ctlen = sbx_get_be32(lenbuf);
	if (ctlen < SS_ABYTES || ctlen > max_pt + SS_ABYTES)
		return reader_error(r, error_r, sbx_xstrdup("spool entry damaged: bad chunk length"));
	n = read_full(r->fd, r->ct, ctlen);
	if (n < 0)
		return reader_error(r, error_r, sbx_xasprintf("read spool entry: %s", strerror(errno)));
	if ((size_t)n < ctlen)
		return reader_error(r, error_r, sbx_xstrdup("spool entry truncated"));
	if (crypto_secretstream_xchacha20poly1305_pull(r->st, r->pt, &ptlen, tag_r,
						       r->ct, ctlen, NULL, 0) != 0)
		return reader_error(r, error_r, sbx_xstrdup("spool entry damaged: authentication failed"));
	r->pt_len = (size_t)ptlen;
	r->pt_pos = 0;
	return 0;
}

static int
meta_parse(struct sbx_spool_reader *r, const unsigned char *p, size_t len,
	   const char *delivery_id, char **error_r)
{
	size_t from_len, orcpt_len, off;
	unsigned char id[SBX_ID_BYTES];

	if (len < META_FIXED_BYTES || p[0] != META_VERSION)
		goto bad;
	off = 1;
	r->meta.arrival = (time_t)(int64_t)sbx_get_be64(p + off);
	off += 8;
	memcpy(id, p + off, SBX_ID_BYTES);
	off += SBX_ID_BYTES;
	from_len = sbx_get_be16(p + off);
	off += 2;
	if (from_len > SBX_MAX_ADDRESS_LEN || len - off < from_len + 2)
		goto bad;
	if (memchr(p + off, '\0', from_len) != NULL)
		goto bad;
	r->meta.mail_from = sbx_xstrndup((const char *)p + off, from_len);
	off += from_len;
	orcpt_len = sbx_get_be16(p + off);
	off += 2;
	/* what remains must be exactly orcpt + size */
	if (orcpt_len > SBX_MAX_ADDRESS_LEN || len - off != orcpt_len + 8)
		goto bad;
	if (memchr(p + off, '\0', orcpt_len) != NULL)
		goto bad;
	r->meta.orcpt = sbx_xstrndup((const char *)p + off, orcpt_len);
	off += orcpt_len;
	r->meta.size = sbx_get_be64(p + off);
	if (r->meta.size > (uint64_t)SBX_MAX_MESSAGE_SIZE)
		goto bad;
	sbx_hex(r->meta.delivery_id, id, sizeof(id));
	if (strcmp(r->meta.delivery_id, delivery_id) != 0)
		return reader_error(r, error_r,
				    sbx_xstrdup("spool entry name does not match its sealed delivery id"));
	return 0;
bad:
	return reader_error(r, error_r, sbx_xstrdup("spool entry damaged: bad metadata record"));
}

int
sbx_spool_reader_open(const char *state_dir, const char *mailbox_id, const char *delivery_id,
		      const unsigned char pk[32], const unsigned char sk[32],
		      struct sbx_spool_reader **r_r, char **error_r)
{
	struct sbx_spool_reader *r;
	unsigned char header[FILE_HEADER_BYTES], tag;
	unsigned char *key;
	char *path;
	ssize_t n;

	*r_r = NULL;
	if (!sbx_is_id(mailbox_id)) {
		*error_r = sbx_xstrdup("invalid mailbox id");
		return -1;
	}
	if (!sbx_is_id(delivery_id)) {
		*error_r = sbx_xstrdup("invalid delivery id");
		return -1;
	}
	r = sbx_xcalloc(1, sizeof(*r));
	path = sbx_xasprintf("%s/spool/%s/new/%s", state_dir, mailbox_id, delivery_id);
	r->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (r->fd < 0) {
		*error_r = sbx_xasprintf("open spool entry %s: %s", delivery_id, strerror(errno));
		sbx_spool_reader_close(&r);
		return -1;
	}
	r->st = sbx_secure_xmalloc(sizeof(*r->st));
	r->ct = sbx_xmalloc(MAX_CHUNK_CT);
	r->pt = sbx_xmalloc(SBX_SPOOL_CHUNK);

	n = read_full(r->fd, header, sizeof(header));
	if (n < 0) {
		*error_r = sbx_xasprintf("read spool entry %s: %s", delivery_id, strerror(errno));
		goto fail;
	}
	if ((n < 4 || memcmp(header, SPOOL_MAGIC, 4) != 0)) {
		*error_r = sbx_xstrdup("not a sealbox spool entry");
		goto fail;
	}
	if (n < 5 || header[4] != SPOOL_VERSION) {
		*error_r = n < 5 ? sbx_xstrdup("spool entry truncated") :
			sbx_xasprintf("unsupported spool entry version %u", header[4]);
		goto fail;
	}
	if ((size_t)n < sizeof(header)) {
		*error_r = sbx_xstrdup("spool entry truncated");
		goto fail;
	}
	key = sbx_secure_xmalloc(crypto_secretstream_xchacha20poly1305_KEYBYTES);
	if (crypto_box_seal_open(key, header + 5, SEALED_KEY_BYTES, pk, sk) != 0) {
		sbx_secure_free(key, crypto_secretstream_xchacha20poly1305_KEYBYTES);
		*error_r = sbx_xstrdup("spool entry cannot be opened: sealed to another key or damaged");
		goto fail;
	}
	if (crypto_secretstream_xchacha20poly1305_init_pull(r->st, header + 5 + SEALED_KEY_BYTES,
							    key) != 0) {
		sbx_secure_free(key, crypto_secretstream_xchacha20poly1305_KEYBYTES);
		*error_r = sbx_xstrdup("spool entry damaged: bad stream header");
		goto fail;
	}
	sbx_secure_free(key, crypto_secretstream_xchacha20poly1305_KEYBYTES);

	if (reader_next_chunk(r, SBX_SPOOL_MAX_META, &tag, error_r) < 0)
		goto fail;
	if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE) {
		*error_r = sbx_xstrdup("spool entry damaged: bad metadata record");
		goto fail;
	}
	if (meta_parse(r, r->pt, r->pt_len, delivery_id, error_r) < 0)
		goto fail;
	sodium_memzero(r->pt, r->pt_len);
	r->pt_len = r->pt_pos = 0;
	*r_r = r;
	return 0;
fail:
	sbx_spool_reader_close(&r);
	return -1;
}

const struct sbx_spool_meta *
sbx_spool_reader_meta(const struct sbx_spool_reader *r)
{
	return &r->meta;
}

/* Next message chunk; at TAG_FINAL check the total and that nothing follows. */
static int
reader_fill(struct sbx_spool_reader *r, char **error_r)
{
	unsigned char tag, extra;
	ssize_t n;

	if (reader_next_chunk(r, SBX_SPOOL_CHUNK, &tag, error_r) < 0)
		return -1;
	if (r->pt_len > r->meta.size - r->total)
		return reader_error(r, error_r,
				    sbx_xstrdup("spool entry damaged: message longer than its metadata says"));
	r->total += r->pt_len;
	if (tag == crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)
		return 0;
	if (tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL)
		return reader_error(r, error_r, sbx_xstrdup("spool entry damaged: unexpected chunk tag"));
	if (r->total != r->meta.size)
		return reader_error(r, error_r,
				    sbx_xstrdup("spool entry damaged: message shorter than its metadata says"));
	n = read_full(r->fd, &extra, 1);
	if (n < 0)
		return reader_error(r, error_r, sbx_xasprintf("read spool entry: %s", strerror(errno)));
	if (n > 0)
		return reader_error(r, error_r, sbx_xstrdup("spool entry damaged: data after its end"));
	r->final = 1;
	return 0;
}

long
sbx_spool_reader_read(struct sbx_spool_reader *r, void *buf, size_t len, char **error_r)
{
	size_t n;

	if (r->failed) {
		*error_r = sbx_xstrdup("spool entry reader already failed");
		return -1;
	}
	if (len > SBX_SPOOL_CHUNK)  /* one chunk at most; keeps the count in a long */
		len = SBX_SPOOL_CHUNK;
	if (len == 0)
		return 0;
	while (r->pt_pos == r->pt_len) {
		if (r->final)
			return 0;
		if (reader_fill(r, error_r) < 0)
			return -1;
	}
	n = r->pt_len - r->pt_pos;
	if (n > len)
		n = len;
	memcpy(buf, r->pt + r->pt_pos, n);
	r->pt_pos += n;
	return (long)n;
}

void
sbx_spool_reader_close(struct sbx_spool_reader **rp)
{
	struct sbx_spool_reader *r = *rp;

	if (r == NULL)
		return;
	*rp = NULL;
	if (r->fd >= 0)
		close(r->fd);
	sbx_secure_free(r->st, sizeof(*r->st));
	free(r->ct);
	sbx_wipe_free(r->pt, SBX_SPOOL_CHUNK);
	sbx_spool_meta_free(&r->meta);
	free(r);
}

int
sbx_spool_read_all(struct sbx_spool_reader *r, size_t max, char **msg_r, size_t *len_r, char **error_r)
{
	size_t size, got = 0;
	char *msg, probe;
	long n;

	*msg_r = NULL;
	*len_r = 0;
	if (r->meta.size > max || r->meta.size > SIZE_MAX - 1) {
		*error_r = sbx_xasprintf("spooled message of %llu bytes exceeds the limit of %zu",
					 (unsigned long long)r->meta.size, max);
		return -1;
	}
	/* The authenticated size bounds the buffer; a NUL is added for text users. */
	size = (size_t)r->meta.size;
	msg = sbx_xmalloc(size + 1);
	while (got < size) {
		n = sbx_spool_reader_read(r, msg + got, size - got, error_r);
		if (n <= 0) {
			if (n == 0)
				*error_r = sbx_xstrdup("spool entry damaged: message shorter than its metadata says");
			sbx_wipe_free(msg, size + 1);
			return -1;
		}
		got += (size_t)n;
	}
	/* Reach the authenticated end (TAG_FINAL, nothing after it). */
	n = sbx_spool_reader_read(r, &probe, 1, error_r);
	if (n != 0) {
		if (n > 0)
			*error_r = sbx_xstrdup("spool entry damaged: message longer than its metadata says");
		sbx_wipe_free(msg, size + 1);
		return -1;
	}
	msg[size] = '\0';
	*msg_r = msg;
	*len_r = size;
	return 0;
}

int
sbx_spool_remove(const char *state_dir, const char *mailbox_id, const char *delivery_id, char **error_r)
{
	char *dir, *path;
	int ret = 0;

	if (!sbx_is_id(mailbox_id) || !sbx_is_id(delivery_id)) {
		*error_r = sbx_xstrdup(sbx_is_id(mailbox_id) ? "invalid delivery id" : "invalid mailbox id");
		return -1;
	}
	dir = sbx_xasprintf("%s/spool/%s/new", state_dir, mailbox_id);
	path = sbx_xasprintf("%s/%s", dir, delivery_id);
	if (unlink(path) < 0) {
		*error_r = sbx_xasprintf("remove spool entry %s: %s", delivery_id, strerror(errno));
		ret = -1;
	} else if (sbx_fsync_dir(dir) < 0) {
		*error_r = sbx_xasprintf("fsync spool directory: %s", strerror(errno));
		ret = -1;
	}
	free(dir);
	free(path);
	return ret;
}

int
sbx_spool_sweep_tmp(const char *state_dir, const char *mailbox_id, time_t max_age)
{
	time_t now = time(NULL);
	struct dirent *de;
	struct stat st;
	int removed = 0, ret = 0;
	char *dir;
	DIR *d;

	if (!sbx_is_id(mailbox_id)) {
		errno = EINVAL;
		return -1;
	}
	dir = sbx_xasprintf("%s/spool/%s/tmp", state_dir, mailbox_id);
	d = opendir(dir);
	if (d == NULL) {
		ret = errno == ENOENT ? 0 : -1;
		free(dir);
		return ret;
	}
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (de == NULL) {
			if (errno != 0)
				ret = -1;
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode) || st.st_mtime > now - max_age)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			removed++;
		else if (errno != ENOENT)
			ret = -1;
	}
	closedir(d);
	if (removed > 0 && sbx_fsync_dir(dir) < 0)
		ret = -1;
	free(dir);
	return ret;
}

static int
destroy_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_DP)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int
sbx_spool_destroy(const char *state_dir, const char *mailbox_id, char **error_r)
{
	char *spool, *dir;
	struct stat st;
	int ret = 0;

	if (!sbx_is_id(mailbox_id)) {
		*error_r = sbx_xstrdup("invalid mailbox id");
		return -1;
	}
	spool = sbx_xasprintf("%s/spool", state_dir);
	dir = spool_dir(state_dir, mailbox_id);
	if (lstat(dir, &st) < 0) {
		if (errno != ENOENT) {
			*error_r = sbx_xasprintf("spool directory %s: %s", dir, strerror(errno));
			ret = -1;
		}
	} else if (nftw(dir, destroy_cb, 8, FTW_DEPTH | FTW_PHYS) != 0) {
		*error_r = sbx_xasprintf("remove spool directory %s: %s", dir, strerror(errno));
		ret = -1;
	} else if (sbx_fsync_dir(spool) < 0) {
		*error_r = sbx_xasprintf("fsync spool directory: %s", strerror(errno));
		ret = -1;
	}
	free(spool);
	free(dir);
	return ret;
}
