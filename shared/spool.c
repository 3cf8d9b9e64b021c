/* spool.c - see spool.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "sbx_limits.h"
#include "log.h"
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

/* journal records */
#define REC_MAGIC "SBXJ"
#define REC_VERSION 1
#define REC_HEADER_BYTES (4 + 1 + 3 + 8 + SBX_ID_BYTES)
#define REC_CHECK_BYTES 16
#define REC_OVERHEAD (REC_HEADER_BYTES + REC_CHECK_BYTES)
/* the smallest entry: empty addresses, an empty message */
#define ENTRY_MIN (FILE_HEADER_BYTES + 4 + META_FIXED_BYTES + SS_ABYTES + 4 + SS_ABYTES)
#define JOURNAL "journal"
#define IMPORT_PREFIX "import."
#define DAMAGED_PREFIX "damaged."
#define SCAN_BUF 65536

typedef crypto_secretstream_xchacha20poly1305_state ss_state;

struct sbx_spool_writer {
	int fd;                       /* the journal, flock'ed */
	int failed;
	int fresh;                    /* the journal was empty: fsync its directory too */
	char id[SBX_ID_HEX];
	char *dir;                    /* spool/<mailbox-id> */
	uint64_t start;               /* offset of this record */
	uint64_t entry_len, out_len;  /* the entry's planned and written bytes */
	crypto_generichash_state *hs; /* check value over header and entry */
	ss_state *st;                 /* guarded memory: holds the stream key */
	unsigned char *pt;            /* SBX_SPOOL_CHUNK plaintext bytes */
	size_t pt_len;
	unsigned char *out;           /* length prefix + ciphertext of one chunk */
	uint64_t size, written;
};

struct sbx_spool_reader {
	int fd;                       /* our own (dup'd) descriptor */
	int failed;
	int final;                    /* TAG_FINAL seen and checked */
	uint64_t pos, end;            /* the entry's bytes in the file */
	ss_state *st;
	unsigned char *ct;            /* MAX_CHUNK_CT bytes */
	unsigned char *pt;            /* SBX_SPOOL_CHUNK bytes */
	size_t pt_len, pt_pos;
	uint64_t total;
	struct sbx_spool_meta meta;
};

struct sbx_spool_scan {
	int fd;
	int verify_all;               /* 0: only the last record's check value (writers) */
	uint64_t pos, size;
	uint64_t damaged, torn;
	unsigned char *buf;           /* SCAN_BUF bytes */
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
	const char *failed = NULL;
	int ret = -1;

	if (sbx_mkdir_p(state_dir, 0700) < 0)
		failed = state_dir;
	else if (make_dir(spool, state_dir) < 0)
		failed = spool;
	else if (make_dir(mdir, spool) < 0)
		failed = mdir;
	else
		ret = 0;
	if (failed != NULL)
		*error_r = sbx_xasprintf("spool directory %s: %s", failed, strerror(errno));
	free(spool);
	free(mdir);
	return ret;
}

/* ---- scanning a journal or segment ---- */

static ssize_t
pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	unsigned char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, p + got, len - got, (off_t)(off + got));

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

/* A BLAKE2b state (it needs 64-byte alignment; it hashes ciphertext only). */
static crypto_generichash_state *
hs_new(void)
{
	size_t n = (crypto_generichash_statebytes() + 63) & ~(size_t)63;
	void *p = aligned_alloc(64, n);

	if (p == NULL) {
		sbx_error("out of memory");
		abort();
	}
	return p;
}

/* The largest entry a writer can produce. */
static uint64_t
entry_max(void)
{
	uint64_t chunks = ((uint64_t)SBX_MAX_MESSAGE_SIZE + SBX_SPOOL_CHUNK - 1) / SBX_SPOOL_CHUNK;

	return FILE_HEADER_BYTES + 4 + META_FIXED_BYTES + 2 * SBX_MAX_ADDRESS_LEN + SS_ABYTES +
		chunks * (4 + SS_ABYTES) + (uint64_t)SBX_MAX_MESSAGE_SIZE;
}

/* Is there a valid record at off? 1 yes (*rec_r filled), 0 no, -1 I/O
 * error. The check value is verified when verify is set or the record
 * ends the file. */
static int
record_at(struct sbx_spool_scan *s, uint64_t off, int verify, struct sbx_spool_rec *rec_r)
{
	unsigned char h[REC_HEADER_BYTES], check[REC_CHECK_BYTES], want[REC_CHECK_BYTES];
	crypto_generichash_state *hs;
	uint64_t len, end, p;
	ssize_t n;
	int ok;

	if (s->size - off < REC_OVERHEAD + ENTRY_MIN)
		return 0;
	n = pread_full(s->fd, h, sizeof(h), off);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(h) || memcmp(h, REC_MAGIC, 4) != 0 || h[4] != REC_VERSION ||
	    h[5] != 0 || h[6] != 0 || h[7] != 0)
		return 0;
	len = sbx_get_be64(h + 8);
	if (len < ENTRY_MIN || len > entry_max() || len > s->size - off - REC_OVERHEAD)
		return 0;
	end = off + REC_HEADER_BYTES + len;
	if (verify || end + REC_CHECK_BYTES == s->size) {
		if (pread_full(s->fd, check, sizeof(check), end) != (ssize_t)sizeof(check))
			return -1;
		hs = hs_new();
		crypto_generichash_init(hs, NULL, 0, sizeof(want));
		crypto_generichash_update(hs, h, sizeof(h));
		for (p = off + REC_HEADER_BYTES; p < end; p += (uint64_t)n) {
			size_t want_n = end - p < SCAN_BUF ? (size_t)(end - p) : SCAN_BUF;

			n = pread_full(s->fd, s->buf, want_n, p);
			if (n < 0 || (size_t)n < want_n) {
				free(hs);
				return -1;
			}
			crypto_generichash_update(hs, s->buf, (size_t)n);
		}
		crypto_generichash_final(hs, want, sizeof(want));
		free(hs);
		ok = sodium_memcmp(want, check, sizeof(want)) == 0;
		if (!ok)
			return 0;
	}
	rec_r->offset = off;
	rec_r->entry_len = len;
	sbx_hex(rec_r->delivery_id, h + 16, SBX_ID_BYTES);
	return 1;
}

/* After damage at off: the offset of the next valid record, or size. */
static int
resync(struct sbx_spool_scan *s, uint64_t off, uint64_t *next_r)
{
	struct sbx_spool_rec rec;
	uint64_t p = off + 1;

	while (p + 4 <= s->size) {
		size_t want = s->size - p < SCAN_BUF ? (size_t)(s->size - p) : SCAN_BUF;
		unsigned char *hit;
		ssize_t n = pread_full(s->fd, s->buf, want, p);

		if (n < 4)
			return n < 0 ? -1 : (*next_r = s->size, 0);
		hit = memmem(s->buf, (size_t)n, REC_MAGIC, 4);
		if (hit == NULL) {
			p += (uint64_t)n - 3;   /* a magic may straddle the windows */
			continue;
		}
		p += (uint64_t)(hit - s->buf);
		switch (record_at(s, p, 1, &rec)) {
		case 1:
			*next_r = p;
			return 0;
		case -1:
			return -1;
		}
		p++;
	}
	*next_r = s->size;
	return 0;
}

static struct sbx_spool_scan *
scan_new(int fd, uint64_t start, uint64_t size, int verify_all)
{
	struct sbx_spool_scan *s = sbx_xcalloc(1, sizeof(*s));

	s->fd = fd;
	s->pos = start;
	s->size = size;
	s->verify_all = verify_all;
	s->buf = sbx_xmalloc(SCAN_BUF);
	return s;
}

int
sbx_spool_scan_open(const char *path, struct sbx_spool_scan **s_r, char **error_r)
{
	struct stat st;
	int fd;

	*s_r = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) < 0) {
		*error_r = sbx_xasprintf("open spool %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*s_r = scan_new(fd, 0, (uint64_t)st.st_size, 1);
	return 0;
}

int
sbx_spool_scan_next(struct sbx_spool_scan *s, struct sbx_spool_rec *rec_r, char **error_r)
{
	uint64_t next = s->size;
	int rc;

	while (s->pos < s->size) {
		rc = record_at(s, s->pos, s->verify_all, rec_r);
		if (rc == 1) {
			s->pos += REC_OVERHEAD + rec_r->entry_len;
			return 1;
		}
		if (rc == 0)
			rc = resync(s, s->pos, &next);
		if (rc < 0) {
			*error_r = sbx_xasprintf("read spool: %s", strerror(errno));
			return -1;
		}
		if (next < s->size)
			s->damaged += next - s->pos;
		else
			s->torn += s->size - s->pos;
		s->pos = next;
	}
	return 0;
}

uint64_t
sbx_spool_scan_damaged(const struct sbx_spool_scan *s)
{
	return s->damaged;
}

uint64_t
sbx_spool_scan_torn(const struct sbx_spool_scan *s)
{
	return s->torn;
}

static void
scan_free(struct sbx_spool_scan *s)
{
	free(s->buf);
	free(s);
}

void
sbx_spool_scan_close(struct sbx_spool_scan **sp)
{
	struct sbx_spool_scan *s = *sp;

	if (s == NULL)
		return;
	*sp = NULL;
	close(s->fd);
	scan_free(s);
}

/* ---- the journal's tail ---- */

/*
 * Where each journal this process has written ends, known good. A writer
 * that finds its journal at that size skips the tail check; otherwise
 * (first use, another process appended, an append failed) it scans what
 * it has not seen and cuts a torn last record off.
 */
#define TAIL_SLOTS 256
static struct {
	dev_t dev;
	ino_t ino;
	uint64_t end;
} tail_cache[TAIL_SLOTS];
static pthread_mutex_t tail_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t
tail_known(const struct stat *st)
{
	unsigned slot = (unsigned)(st->st_ino % TAIL_SLOTS);
	uint64_t end = UINT64_MAX;

	pthread_mutex_lock(&tail_lock);
	if (tail_cache[slot].ino == st->st_ino && tail_cache[slot].dev == st->st_dev)
		end = tail_cache[slot].end;
	pthread_mutex_unlock(&tail_lock);
	return end;
}

static void
tail_set(const struct stat *st, uint64_t end)
{
	unsigned slot = (unsigned)(st->st_ino % TAIL_SLOTS);

	pthread_mutex_lock(&tail_lock);
	tail_cache[slot].dev = st->st_dev;
	tail_cache[slot].ino = st->st_ino;
	tail_cache[slot].end = end;
	pthread_mutex_unlock(&tail_lock);
}

/* Scan fd from start to its end; -1 on I/O error. */
static int
scan_all(int fd, uint64_t start, uint64_t size, int verify_all, uint64_t *damaged_r,
	 uint64_t *torn_r, char **error_r)
{
	struct sbx_spool_scan *s = scan_new(fd, start, size, verify_all);
	struct sbx_spool_rec rec;
	int rc;

	while ((rc = sbx_spool_scan_next(s, &rec, error_r)) == 1)
		;
	*damaged_r = s->damaged;
	*torn_r = s->torn;
	scan_free(s);
	return rc;
}

/*
 * Under the lock: make sure the journal ends with a whole record. The
 * quick pass walks the record headers from where this process last saw
 * the journal end, checking only the last record. Any doubt (a torn tail,
 * damage, or a remembered end that is no record boundary: another file
 * that reused the inode) means a full pass from the start that trusts only
 * records whose check value holds, so a damaged length field can never
 * make good records look like a torn tail. Only then is anything cut.
 */
static int
tail_check(int fd, const struct stat *st, const char *path, uint64_t *end_r, char **error_r)
{
	uint64_t size = (uint64_t)st->st_size, known = tail_known(st), damaged, torn;

	if (known == size) {
		*end_r = size;
		return 0;
	}
	if (scan_all(fd, known < size ? known : 0, size, 0, &damaged, &torn, error_r) < 0)
		return -1;
	if ((damaged > 0 || torn > 0) &&
	    scan_all(fd, 0, size, 1, &damaged, &torn, error_r) < 0)
		return -1;
	if (torn > 0) {
		sbx_warn("%s: cutting off an incomplete last record (%llu bytes, an append that "
			 "never finished)", path, (unsigned long long)torn);
		if (ftruncate(fd, (off_t)(size - torn)) < 0 || fdatasync(fd) < 0) {
			*error_r = sbx_xasprintf("repair %s: %s", path, strerror(errno));
			return -1;
		}
		size -= torn;
	}
	tail_set(st, size);
	*end_r = size;
	return 0;
}

/*
 * Open and lock spool/<id>/journal, creating it (and the directories)
 * when missing. After the lock, the file must still be the one named
 * journal: an importer may have renamed it away meanwhile.
 */
static int
journal_lock(const char *state_dir, const char *mailbox_id, const char *dir, int *fd_r,
	     uint64_t *end_r, char **error_r)
{
	char *path = sbx_xasprintf("%s/" JOURNAL, dir);
	struct stat st, named;
	int fd = -1, tries;

	for (tries = 0; tries < 100; tries++) {
		fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0 && errno == ENOENT) {
			if (make_spool_dirs(state_dir, mailbox_id, error_r) < 0)
				goto fail_quiet;
			fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		}
		if (fd < 0)
			goto fail;
		while (flock(fd, LOCK_EX) < 0) {
			if (errno != EINTR)
				goto fail;
		}
		if (fstat(fd, &st) < 0)
			goto fail;
		if (lstat(path, &named) == 0) {
			if (named.st_ino == st.st_ino && named.st_dev == st.st_dev)
				break;
		} else if (errno != ENOENT) {
			goto fail;
		}
		close(fd);   /* claimed by an importer: take the new one */
		fd = -1;
	}
	if (fd < 0) {
		*error_r = sbx_xasprintf("%s: keeps being replaced", path);
		goto fail_quiet;
	}
	if (!S_ISREG(st.st_mode)) {
		*error_r = sbx_xasprintf("%s: not a regular file", path);
		goto fail_quiet;
	}
	if (tail_check(fd, &st, path, end_r, error_r) < 0)
		goto fail_quiet;
	free(path);
	*fd_r = fd;
	return 0;
fail:
	*error_r = sbx_xasprintf("spool journal %s: %s", path, strerror(errno));
fail_quiet:
	if (fd >= 0)
		close(fd);
	free(path);
	return -1;
}

/* ---- writer ---- */

static void
writer_free(struct sbx_spool_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);   /* releases the flock */
	free(w->dir);
	free(w->hs);
	st_put(w->st);
	sbx_wipe_free(w->pt, SBX_SPOOL_CHUNK);
	sbx_wipe_free(w->out, 4 + MAX_CHUNK_CT);
	sodium_memzero(w, sizeof(*w));
	free(w);
}

/* Cut this record off the journal again (still under the lock). If even
 * that fails, forget what we knew of the tail: the next writer checks it. */
static void
writer_cut(struct sbx_spool_writer *w)
{
	struct stat st;

	if (w->fd < 0 || w->failed)
		return;
	w->failed = 1;
	if (fstat(w->fd, &st) < 0)
		return;
	if (ftruncate(w->fd, (off_t)w->start) < 0) {
		sbx_warn("spool entry %s: cannot cut off a failed append: %s", w->id, strerror(errno));
		tail_set(&st, UINT64_MAX);
		return;
	}
	tail_set(&st, w->start);
}

/* A write error: the record can never be completed, so cut it off now
 * (the caller still aborts or commits to free w). Takes msg. */
static int
writer_fail(struct sbx_spool_writer *w, char **error_r, char *msg)
{
	*error_r = msg;
	writer_cut(w);
	return -1;
}

/* writer_fail with "<what> spool entry <id>: <errno text>". */
static int
writer_errno(struct sbx_spool_writer *w, char **error_r, const char *what)
{
	return writer_fail(w, error_r, sbx_xasprintf("%s spool entry %s: %s", what, w->id,
						     strerror(errno)));
}

/* Append bytes of the record, hashing them for the check value. */
static int
writer_out(struct sbx_spool_writer *w, const void *p, size_t len, char **error_r)
{
	crypto_generichash_update(w->hs, p, len);
	if (sbx_write_all(w->fd, p, len) < 0)
		return writer_errno(w, error_r, "write");
	w->out_len += len;
	return 0;
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
	return writer_out(w, w->out, 4 + (size_t)ctlen, error_r);
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
	unsigned char header[FILE_HEADER_BYTES], rec[REC_HEADER_BYTES];
	unsigned char *key;
	size_t from_len, orcpt_len, meta_len;
	uint64_t chunks;

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
	w->failed = 1;  /* until the journal is locked, there is nothing to cut */
	w->size = meta->size;
	if (meta->delivery_id[0] != '\0')
		memcpy(w->id, meta->delivery_id, SBX_ID_HEX);
	else
		sbx_random_id(w->id);
	w->dir = spool_dir(state_dir, mailbox_id);
	/* the entry's length is known before the first byte: the record
	 * header carries it, and O_APPEND cannot patch it in later */
	meta_len = META_FIXED_BYTES + from_len + orcpt_len;
	chunks = w->size == 0 ? 1 : (w->size + SBX_SPOOL_CHUNK - 1) / SBX_SPOOL_CHUNK;
	w->entry_len = FILE_HEADER_BYTES + 4 + meta_len + SS_ABYTES + chunks * (4 + SS_ABYTES) + w->size;

	if (journal_lock(state_dir, mailbox_id, w->dir, &w->fd, &w->start, error_r) < 0) {
		writer_free(w);
		return -1;
	}
	w->failed = 0;
	w->fresh = w->start == 0;
	w->hs = hs_new();
	crypto_generichash_init(w->hs, NULL, 0, REC_CHECK_BYTES);
	w->st = st_get();
	w->pt = sbx_xmalloc(SBX_SPOOL_CHUNK);
	w->out = sbx_xmalloc(4 + MAX_CHUNK_CT);

	memcpy(rec, REC_MAGIC, 4);
	rec[4] = REC_VERSION;
	rec[5] = rec[6] = rec[7] = 0;
	sbx_put_be64(rec + 8, w->entry_len);
	(void)sbx_unhex(rec + 16, SBX_ID_BYTES, w->id);

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
	if (writer_out(w, rec, sizeof(rec), error_r) < 0 ||
	    writer_out(w, header, sizeof(header), error_r) < 0) {
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

int
sbx_spool_writer_commit(struct sbx_spool_writer **wp, char delivery_id_r[SBX_ID_HEX], char **error_r)
{
	struct sbx_spool_writer *w = *wp;
	unsigned char check[REC_CHECK_BYTES];
	struct stat st;
	int rc = -1;

	*wp = NULL;
	if (w->failed) {
		*error_r = sbx_xasprintf("spool entry %s: writer already failed", w->id);
		goto out;
	}
	if (w->written != w->size) {
		writer_fail(w, error_r, sbx_xasprintf("spool entry %s: message is %llu bytes, declared %llu",
						      w->id, (unsigned long long)w->written,
						      (unsigned long long)w->size));
		goto out;
	}
	if (writer_push(w, w->pt, w->pt_len, crypto_secretstream_xchacha20poly1305_TAG_FINAL,
			error_r) < 0)
		goto out;
	if (w->out_len != REC_HEADER_BYTES + w->entry_len) {   /* a bug, never data */
		writer_fail(w, error_r, sbx_xasprintf("spool entry %s: wrote %llu bytes, planned %llu", w->id,
						      (unsigned long long)w->out_len,
						      (unsigned long long)(REC_HEADER_BYTES + w->entry_len)));
		goto out;
	}
	crypto_generichash_final(w->hs, check, sizeof(check));
	if (sbx_write_all(w->fd, check, sizeof(check)) < 0) {
		writer_errno(w, error_r, "write");
		goto out;
	}
	if (fdatasync(w->fd) < 0) {
		writer_errno(w, error_r, "fdatasync");
		goto out;
	}
	/* a journal created for this record: its name must be durable too */
	if (w->fresh && sbx_fsync_dir(w->dir) < 0) {
		writer_errno(w, error_r, "fsync directory of");
		goto out;
	}
	if (fstat(w->fd, &st) == 0)
		tail_set(&st, w->start + REC_OVERHEAD + w->entry_len);
	if (delivery_id_r != NULL)
		memcpy(delivery_id_r, w->id, SBX_ID_HEX);
	rc = 0;
out:
	writer_free(w);
	return rc;
}

void
sbx_spool_writer_abort(struct sbx_spool_writer **wp)
{
	struct sbx_spool_writer *w = *wp;

	if (w == NULL)
		return;
	*wp = NULL;
	writer_cut(w);
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

/* ---- segments: claim, list, usage ---- */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "import.<32 hex>" (or damaged.) */
static int
is_segment_name(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);

	return strncmp(name, prefix, n) == 0 && sbx_is_id(name + n);
}

/* Paths of the mailbox's import segments, oldest first, and with
 * with_journal the live journal last when it exists. */
static int
segments(const char *state_dir, const char *mailbox_id, int with_journal, char ***paths_r,
	 size_t *n_r, char **error_r)
{
	char *dir, **v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	struct stat st;
	DIR *d;

	*paths_r = NULL;
	*n_r = 0;
	if (!sbx_is_id(mailbox_id)) {
		*error_r = sbx_xstrdup("invalid mailbox id");
		return -1;
	}
	dir = spool_dir(state_dir, mailbox_id);
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
		if (!is_segment_name(de->d_name, IMPORT_PREFIX))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			v = sbx_xrealloc(v, (cap + 1) * sizeof(*v));
		}
		v[n++] = sbx_xasprintf("%s/%s", dir, de->d_name);
	}
	if (errno != 0) {
		*error_r = sbx_xasprintf("spool directory %s: %s", dir, strerror(errno));
		closedir(d);
		free(dir);
		sbx_spool_list_free(v, n);
		return -1;
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_str);
	if (with_journal) {
		char *j = sbx_xasprintf("%s/" JOURNAL, dir);

		if (lstat(j, &st) == 0 && S_ISREG(st.st_mode)) {
			v = sbx_xrealloc(v, (n + 1) * sizeof(*v));
			v[n++] = j;
		} else {
			free(j);
		}
	}
	free(dir);
	*paths_r = v;
	*n_r = n;
	return 0;
}

/* A claim name that sorts after every earlier one: the time, then randomness. */
static char *
claim_name(const char *dir, const char *prefix)
{
	struct timespec ts;
	unsigned char r[8];
	char hex[17];

	clock_gettime(CLOCK_REALTIME, &ts);
	randombytes_buf(r, sizeof(r));
	sbx_hex(hex, r, sizeof(r));
	return sbx_xasprintf("%s/%s%016llx%s", dir, prefix,
			     (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec,
			     hex);
}

int
sbx_spool_claim(const char *state_dir, const char *mailbox_id, char ***paths_r, size_t *n_r,
		char **error_r)
{
	char *dir, *path, *claimed = NULL;
	struct stat st, named;
	int fd;

	*paths_r = NULL;
	*n_r = 0;
	if (!sbx_is_id(mailbox_id)) {
		*error_r = sbx_xstrdup("invalid mailbox id");
		return -1;
	}
	dir = spool_dir(state_dir, mailbox_id);
	path = sbx_xasprintf("%s/" JOURNAL, dir);
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno != ENOENT) {
		*error_r = sbx_xasprintf("spool journal %s: %s", path, strerror(errno));
		goto fail;
	}
	if (fd >= 0) {
		while (flock(fd, LOCK_EX) < 0) {
			if (errno != EINTR) {
				*error_r = sbx_xasprintf("lock %s: %s", path, strerror(errno));
				goto fail;
			}
		}
		/* renamed under us only by another importer: then nothing to do */
		if (fstat(fd, &st) == 0 && lstat(path, &named) == 0 && named.st_ino == st.st_ino &&
		    st.st_size > 0) {
			claimed = claim_name(dir, IMPORT_PREFIX);
			if (rename(path, claimed) < 0 || sbx_fsync_dir(dir) < 0) {
				*error_r = sbx_xasprintf("claim %s: %s", path, strerror(errno));
				goto fail;
			}
		}
		close(fd);
		fd = -1;
	}
	free(claimed);
	free(path);
	free(dir);
	return segments(state_dir, mailbox_id, 0, paths_r, n_r, error_r);
fail:
	if (fd >= 0)
		close(fd);
	free(claimed);
	free(path);
	free(dir);
	return -1;
}

int
sbx_spool_segment_done(const char *path, int damaged, char **error_r)
{
	const char *base = strrchr(path, '/');
	char *dir, *to = NULL;
	int rc = 0;

	if (base == NULL || !is_segment_name(base + 1, IMPORT_PREFIX)) {
		*error_r = sbx_xasprintf("not an import segment: %s", path);
		return -1;
	}
	dir = sbx_xstrndup(path, (size_t)(base - path));
	if (damaged) {
		to = sbx_xasprintf("%s/" DAMAGED_PREFIX "%s", dir, base + 1 + strlen(IMPORT_PREFIX));
		rc = rename(path, to);
	} else {
		rc = unlink(path);
	}
	if (rc < 0 || sbx_fsync_dir(dir) < 0) {
		*error_r = sbx_xasprintf("%s %s: %s", damaged ? "set aside" : "remove", path,
					 strerror(errno));
		rc = -1;
	}
	free(to);
	free(dir);
	return rc;
}

int
sbx_spool_list(const char *state_dir, const char *mailbox_id, char ***ids_r, size_t *n_r, char **error_r)
{
	char **paths, **ids = NULL;
	size_t np, i, n = 0, cap = 0;
	int rc = 0;

	*ids_r = NULL;
	*n_r = 0;
	if (segments(state_dir, mailbox_id, 1, &paths, &np, error_r) < 0)
		return -1;
	for (i = 0; i < np && rc == 0; i++) {
		struct sbx_spool_scan *s;
		struct sbx_spool_rec rec;

		if (sbx_spool_scan_open(paths[i], &s, error_r) < 0) {
			if (errno == ENOENT) {   /* claimed or imported meanwhile */
				free(*error_r);
				*error_r = NULL;
				continue;
			}
			rc = -1;
			break;
		}
		while ((rc = sbx_spool_scan_next(s, &rec, error_r)) == 1) {
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				ids = sbx_xrealloc(ids, cap * sizeof(*ids));
			}
			ids[n++] = sbx_xstrdup(rec.delivery_id);
		}
		sbx_spool_scan_close(&s);
	}
	sbx_spool_list_free(paths, np);
	if (rc < 0) {
		sbx_spool_list_free(ids, n);
		return -1;
	}
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
	char **paths, *err = NULL;
	size_t np, i;
	int rc = 0;

	*bytes_r = 0;
	*count_r = 0;
	if (segments(state_dir, mailbox_id, 1, &paths, &np, &err) < 0) {
		free(err);
		errno = EINVAL;
		return -1;
	}
	for (i = 0; i < np && rc == 0; i++) {
		struct sbx_spool_scan *s;
		struct sbx_spool_rec rec;

		if (sbx_spool_scan_open(paths[i], &s, &err) < 0) {
			free(err);
			err = NULL;
			if (errno == ENOENT)
				continue;
			rc = -1;
			break;
		}
		bytes += s->size;
		while ((rc = sbx_spool_scan_next(s, &rec, &err)) == 1)
			count++;
		sbx_spool_scan_close(&s);
	}
	free(err);
	sbx_spool_list_free(paths, np);
	if (rc < 0) {
		errno = EIO;
		return -1;
	}
	*bytes_r = bytes;
	*count_r = count;
	return 0;
}

/* ---- reader ---- */

/* Read up to len bytes of the entry; returns the count (short only at its end) or -1. */
static ssize_t
rd(struct sbx_spool_reader *r, void *buf, size_t len)
{
	ssize_t n;

	if (len > r->end - r->pos)
		len = (size_t)(r->end - r->pos);
	n = pread_full(r->fd, buf, len, r->pos);
	if (n > 0)
		r->pos += (uint64_t)n;
	return n;
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

	n = rd(r, lenbuf, sizeof(lenbuf));
	if (n < 0)
		return reader_error(r, error_r, sbx_xasprintf("read spool entry: %s", strerror(errno)));
	if (n < (ssize_t)sizeof(lenbuf))
		return reader_error(r, error_r, sbx_xstrdup("spool entry truncated"));
	ctlen = sbx_get_be32(lenbuf);
	if (ctlen < SS_ABYTES || ctlen > max_pt + SS_ABYTES)
		return reader_error(r, error_r, sbx_xstrdup("spool entry damaged: bad chunk length"));
	n = rd(r, r->ct, ctlen);
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
	if (delivery_id != NULL && strcmp(r->meta.delivery_id, delivery_id) != 0)
		return reader_error(r, error_r,
				    sbx_xstrdup("spool entry name does not match its sealed delivery id"));
	return 0;
bad:
	return reader_error(r, error_r, sbx_xstrdup("spool entry damaged: bad metadata record"));
}

/* The entry at [pos, end) of fd (dup'd: the reader keeps its own). */
static int
reader_open_at(int fd, uint64_t pos, uint64_t end, const char *delivery_id,
	       const unsigned char pk[32], const unsigned char sk[32],
	       struct sbx_spool_reader **r_r, char **error_r)
{
	struct sbx_spool_reader *r;
	unsigned char header[FILE_HEADER_BYTES], tag;
	unsigned char *key;
	const char *what = delivery_id != NULL ? delivery_id : "";
	ssize_t n;

	*r_r = NULL;
	r = sbx_xcalloc(1, sizeof(*r));
	r->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	r->pos = pos;
	r->end = end;
	if (r->fd < 0) {
		*error_r = sbx_xasprintf("open spool entry %s: %s", what, strerror(errno));
		sbx_spool_reader_close(&r);
		return -1;
	}
	r->st = sbx_secure_xmalloc(sizeof(*r->st));
	r->ct = sbx_xmalloc(MAX_CHUNK_CT);
	r->pt = sbx_xmalloc(SBX_SPOOL_CHUNK);

	n = rd(r, header, sizeof(header));
	if (n < 0) {
		*error_r = sbx_xasprintf("read spool entry %s: %s", what, strerror(errno));
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

int
sbx_spool_reader_open_rec(struct sbx_spool_scan *s, const struct sbx_spool_rec *rec,
			  const unsigned char pk[32], const unsigned char sk[32],
			  struct sbx_spool_reader **r_r, char **error_r)
{
	uint64_t pos = rec->offset + REC_HEADER_BYTES;

	return reader_open_at(s->fd, pos, pos + rec->entry_len, rec->delivery_id, pk, sk, r_r, error_r);
}

int
sbx_spool_reader_open_file(const char *path, const char *delivery_id,
			   const unsigned char pk[32], const unsigned char sk[32],
			   struct sbx_spool_reader **r_r, char **error_r)
{
	struct stat st;
	int fd, rc;

	*r_r = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) < 0) {
		*error_r = sbx_xasprintf("open spool entry %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	rc = reader_open_at(fd, 0, (uint64_t)st.st_size, delivery_id, pk, sk, r_r, error_r);
	close(fd);
	return rc;
}

int
sbx_spool_reader_open(const char *state_dir, const char *mailbox_id, const char *delivery_id,
		      const unsigned char pk[32], const unsigned char sk[32],
		      struct sbx_spool_reader **r_r, char **error_r)
{
	char **paths;
	size_t np, i;
	int rc = 1;

	*r_r = NULL;
	if (!sbx_is_id(delivery_id)) {
		*error_r = sbx_xstrdup("invalid delivery id");
		return -1;
	}
	if (segments(state_dir, mailbox_id, 1, &paths, &np, error_r) < 0)
		return -1;
	for (i = 0; i < np && rc == 1; i++) {
		struct sbx_spool_scan *s;
		struct sbx_spool_rec rec;
		int more;

		if (sbx_spool_scan_open(paths[i], &s, error_r) < 0) {
			if (errno == ENOENT) {
				free(*error_r);
				*error_r = NULL;
				continue;
			}
			rc = -1;
			break;
		}
		while ((more = sbx_spool_scan_next(s, &rec, error_r)) == 1) {
			if (strcmp(rec.delivery_id, delivery_id) == 0) {
				rc = sbx_spool_reader_open_rec(s, &rec, pk, sk, r_r, error_r);
				break;
			}
		}
		if (more < 0)
			rc = -1;
		sbx_spool_scan_close(&s);
	}
	sbx_spool_list_free(paths, np);
	if (rc == 1) {
		*error_r = sbx_xasprintf("open spool entry %s: no such entry", delivery_id);
		rc = -1;
	}
	return rc;
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
	unsigned char tag;

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
	if (r->pos < r->end)
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
