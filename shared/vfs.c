/*
 * vfs.c - the encrypted SQLite VFS shim. See vfs.h for the format and
 * ../shared/ENCRYPTED-VFS.md for why each rule exists.
 *
 * The shim sees only offsets and sizes, so it infers what a buffer is from
 * the file type (xOpen flags) and SQLite's I/O patterns, which are pinned by
 * sbx_vfs_version_tested():
 *   main db   every write is one whole page at a page boundary; reads are
 *             whole pages, plus the 100-byte header read at open and the
 *             16-byte change-counter read at offset 24 (served by opening
 *             page 1 and copying the slice).
 *   WAL       32-byte header, then per frame a 24-byte frame header write
 *             followed by a page write at header+24. Recovery and the
 *             checksum rewrite read whole frames (header + page); normal
 *             reads read the page alone, whose number is then read back from
 *             the frame header on disk.
 *   journal   a 4-byte page number at offset N, the page at N+4, a 4-byte
 *             checksum. Buffers starting with the journal magic are headers.
 *
 * SQLite checksums WAL frames over the plaintext it passes to xWrite,
 * including the reserved bytes. Every page this shim returns has its
 * reserved bytes zeroed and SQLite zero-fills new pages, so the plaintext it
 * checksums is exactly what recovery gets back.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "aead.h"
#include "log.h"
#include "util.h"
#include "vfs.h"

#define FILE_ID_BYTES   16
#define NONCE_BYTES     crypto_aead_xchacha20poly1305_ietf_NPUBBYTES   /* 24 */
#define TAG_BYTES       crypto_aead_xchacha20poly1305_ietf_ABYTES      /* 16 */
#define PAGE1_CLEAR_END 24         /* bytes 16..23 stay readable */
#define WALX_BYTES      16         /* WAL frame: nTruncate, salts, frame number */
#define AD_MAX          (4 + FILE_ID_BYTES + 4 + 8 + WALX_BYTES)
#define WAL_HDR         32
#define WAL_FRAME_HDR   24
#define KEY_SLOTS       64
#define PAGE1_TRIES     5

/* SQLite versions whose I/O patterns this shim's test suite (test_vfs) has
 * passed. Add a version only after `make check` passes against it. */
static const int tested_versions[] = { 3040001 };

static const unsigned char sqlite_magic[16] = "SQLite format 3";
static const unsigned char journal_magic[8] = { 0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7 };

#ifndef SQLITE_IOCAP_SUBPAGE_READ
#define SQLITE_IOCAP_SUBPAGE_READ 0x00008000
#endif

enum ftype { FT_MAIN, FT_WAL, FT_JOURNAL };

struct sbx_file {
	sqlite3_file base;
	sqlite3_file *real;            /* the unix file, allocated right after us */
	enum ftype type;
	struct sbx_file *main;         /* WAL/journal: the main db file (self for main) */
	unsigned char *key;            /* sodium_malloc'd copy, SBX_VFS_KEY_BYTES */
	unsigned char file_id[FILE_ID_BYTES];
	int have_id;                   /* main: file id known (loaded or minted) */
	int verified;                  /* main: key checked against page 1 */
	int page_size;                 /* main: learnt from page 1 or the first write */
	unsigned char nonce_prefix[16];
	uint64_t nonce_ctr;
	struct sbx_aead *aead;         /* XChaCha20-Poly1305 context of this handle */
	unsigned char *scratch;        /* one page, for sealing and partial reads */
	int scratch_size;
	sqlite3_int64 hdr_off;         /* WAL: offset of the last frame header written */
	unsigned char hdr[WAL_FRAME_HDR];   /* ... and its bytes */
	sqlite3_int64 rd_off;          /* WAL: offset of the last whole frame read */
	unsigned char rd_hdr[WAL_FRAME_HDR];   /* ... and its header as on disk */
	sqlite3_int64 j4_off;          /* journal: offset of the last 4-byte write */
	uint32_t j4_val;
	const char *name;
};

static sqlite3_vfs sbx_vfs;
static sqlite3_vfs *unix_vfs;
static struct sqlite3_io_methods sbx_io;
static pthread_mutex_t key_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static unsigned char *key_table;     /* KEY_SLOTS * key bytes, sodium_malloc */
static unsigned char key_used[KEY_SLOTS];
static int reg_rc = -1;
static char reg_error[256];
static __thread char last_error[256];
static struct sbx_vfs_stats stats;

static void seterr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
seterr(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
}

const char *
sbx_vfs_last_error(void)
{
	return last_error;
}

void
sbx_vfs_get_stats(struct sbx_vfs_stats *s)
{
	*s = stats;
}

int
sbx_vfs_version_tested(int v)
{
	size_t i;

	for (i = 0; i < sizeof(tested_versions) / sizeof(tested_versions[0]); i++)
		if (tested_versions[i] == v)
			return 1;
	return 0;
}

/* ---- key table ---------------------------------------------------------- */

int
sbx_vfs_key_add(const unsigned char key[SBX_VFS_KEY_BYTES])
{
	int i, slot = -1;

	pthread_mutex_lock(&key_lock);
	if (key_table != NULL) {
		for (i = 0; i < KEY_SLOTS; i++) {
			if (!key_used[i]) {
				key_used[i] = 1;
				sodium_mprotect_readwrite(key_table);
				memcpy(key_table + (size_t)i * SBX_VFS_KEY_BYTES, key, SBX_VFS_KEY_BYTES);
				sodium_mprotect_noaccess(key_table);
				slot = i + 1;
				break;
			}
		}
	}
	pthread_mutex_unlock(&key_lock);
	return slot;
}

void
sbx_vfs_key_remove(int slot)
{
	if (slot < 1 || slot > KEY_SLOTS)
		return;
	pthread_mutex_lock(&key_lock);
	if (key_table != NULL && key_used[slot - 1]) {
		sodium_mprotect_readwrite(key_table);
		sodium_memzero(key_table + (size_t)(slot - 1) * SBX_VFS_KEY_BYTES, SBX_VFS_KEY_BYTES);
		sodium_mprotect_noaccess(key_table);
		key_used[slot - 1] = 0;
	}
	pthread_mutex_unlock(&key_lock);
}

/* Copy slot's key into out (guarded memory); -1 if the slot is empty. */
static int
key_fetch(int slot, unsigned char *out)
{
	int rc = -1;

	if (slot < 1 || slot > KEY_SLOTS)
		return -1;
	pthread_mutex_lock(&key_lock);
	if (key_table != NULL && key_used[slot - 1]) {
		sodium_mprotect_readonly(key_table);
		memcpy(out, key_table + (size_t)(slot - 1) * SBX_VFS_KEY_BYTES, SBX_VFS_KEY_BYTES);
		sodium_mprotect_noaccess(key_table);
		rc = 0;
	}
	pthread_mutex_unlock(&key_lock);
	return rc;
}

/* ---- page sealing ------------------------------------------------------- */

/* walx: NULL for a page of the database file or journal; for a WAL frame,
 * frame header bytes 4..15 (commit size, salt-1, salt-2) and the frame
 * number. SQLite trusts those fields, and its frame checksum is linear, so
 * without them in the AD an edited header could turn a torn transaction
 * into a committed one. */
static size_t
build_ad(unsigned char *ad, const unsigned char *file_id, uint32_t pgno, const unsigned char *page,
	 const unsigned char *walx)
{
	size_t n = 0;

	memcpy(ad, walx ? "sbxw" : "sbx1", 4);
	n += 4;
	memcpy(ad + n, file_id, FILE_ID_BYTES);
	n += FILE_ID_BYTES;
	ad[n++] = (unsigned char)(pgno >> 24);
	ad[n++] = (unsigned char)(pgno >> 16);
	ad[n++] = (unsigned char)(pgno >> 8);
	ad[n++] = (unsigned char)pgno;
	if (pgno == 1) {
		memcpy(ad + n, page + 16, 8);
		n += 8;
	}
	if (walx != NULL) {
		memcpy(ad + n, walx, WALX_BYTES);
		n += WALX_BYTES;
	}
	return n;
}

/* Seal plaintext page src (psz bytes) as page pgno into dst; walx as for
 * build_ad(). */
static int
page_seal(struct sbx_file *f, uint32_t pgno, const unsigned char *src, unsigned char *dst, int psz,
	  const unsigned char *walx)
{
	struct sbx_file *m = f->main;
	int off = pgno == 1 ? PAGE1_CLEAR_END : 0;
	int end = psz - SBX_VFS_RESERVE;
	unsigned char ad[AD_MAX], *nonce = dst + end, *tag = dst + end + NONCE_BYTES;
	uint64_t ctr = ++f->nonce_ctr;
	size_t adlen;
	int i;

	if (pgno == 1) {
		if (src[20] != SBX_VFS_RESERVE) {
			seterr("refusing to write page 1 with %d reserved bytes (need %d)",
			       src[20], SBX_VFS_RESERVE);
			return -1;
		}
		memcpy(dst, m->file_id, FILE_ID_BYTES);
		memcpy(dst + 16, src + 16, 8);
	}
	memcpy(nonce, f->nonce_prefix, 16);
	for (i = 0; i < 8; i++)
		nonce[16 + i] = (unsigned char)(ctr >> (8 * i));
	adlen = build_ad(ad, m->file_id, pgno, src, walx);
	if (sbx_aead_seal(f->aead, dst + off, tag, src + off, (size_t)(end - off), ad, adlen,
			  nonce, f->key) != 0) {
		seterr("page %u: encryption failed", pgno);
		return -1;
	}
	__atomic_add_fetch(&stats.pages_sealed, 1, __ATOMIC_RELAXED);
	return 0;
}

/* Open sealed page pgno from src into dst (src == dst: in place; otherwise
 * the buffers must not overlap). The reserved bytes of dst are zeroed and,
 * for page 1, the magic string restored. -1 when authentication fails. */
static int
page_open_to(struct sbx_file *f, uint32_t pgno, const unsigned char *src, unsigned char *dst, int psz,
	     const unsigned char *walx)
{
	struct sbx_file *m = f->main;
	int off = pgno == 1 ? PAGE1_CLEAR_END : 0;
	int end = psz - SBX_VFS_RESERVE;
	unsigned char ad[AD_MAX], nonce[NONCE_BYTES], tag[TAG_BYTES];
	size_t adlen;

	if (pgno == 1 && sodium_memcmp(src, m->file_id, FILE_ID_BYTES) != 0)
		goto fail;
	memcpy(nonce, src + end, NONCE_BYTES);
	memcpy(tag, src + end + NONCE_BYTES, TAG_BYTES);
	adlen = build_ad(ad, m->file_id, pgno, src, walx);
	if (sbx_aead_open(f->aead, dst + off, src + off, (size_t)(end - off), tag, ad, adlen,
			  nonce, f->key) != 0)
		goto fail;
	memset(dst + end, 0, SBX_VFS_RESERVE);
	if (pgno == 1) {
		memcpy(dst, sqlite_magic, 16);
		if (dst != src)
			memcpy(dst + 16, src + 16, PAGE1_CLEAR_END - 16);
	}
	__atomic_add_fetch(&stats.pages_opened, 1, __ATOMIC_RELAXED);
	return 0;
fail:
	__atomic_add_fetch(&stats.auth_failures, 1, __ATOMIC_RELAXED);
	return -1;
}

/* Open sealed page pgno in place. */
static int
page_open(struct sbx_file *f, uint32_t pgno, unsigned char *buf, int psz, const unsigned char *walx)
{
	return page_open_to(f, pgno, buf, buf, psz, walx);
}

static int
valid_page_size(int psz)
{
	return psz >= 512 && psz <= 65536 && (psz & (psz - 1)) == 0;
}

static int
ensure_scratch(struct sbx_file *f, int psz)
{
	if (f->scratch_size >= psz)
		return 0;
	free(f->scratch);
	f->scratch = malloc((size_t)psz);
	if (f->scratch == NULL) {
		f->scratch_size = 0;
		return -1;
	}
	f->scratch_size = psz;
	return 0;
}

/* Read page 1 of the main file (no lock may be held: retry a torn read) and
 * check the key against it. On success the file id and page size are known.
 * Returns SQLITE_OK, SQLITE_NOTADB (wrong key / not ours) or an I/O error. */
static int
main_load_header(struct sbx_file *m)
{
	unsigned char hdr[PAGE1_CLEAR_END];
	int tries, rc, psz;

	for (tries = 0; tries < PAGE1_TRIES; tries++) {
		if (tries > 0) {
			struct timespec ts = { 0, 2000000 };

			nanosleep(&ts, NULL);
		}
		rc = m->real->pMethods->xRead(m->real, hdr, sizeof(hdr), 0);
		if (rc == SQLITE_IOERR_SHORT_READ) {
			seterr("database file too short to be a sealbox mailbox file");
			return SQLITE_NOTADB;
		}
		if (rc != SQLITE_OK)
			return rc;
		if (memcmp(hdr, sqlite_magic, 16) == 0) {
			seterr("database file is NOT encrypted (plain SQLite)");
			return SQLITE_NOTADB;
		}
		psz = (hdr[16] << 8) | hdr[17];
		if (psz == 1)
			psz = 65536;
		if (!valid_page_size(psz) || hdr[20] != SBX_VFS_RESERVE) {
			seterr("not a sealbox mailbox file (bad page size or reserve)");
			continue;
		}
		if (ensure_scratch(m, psz) < 0)
			return SQLITE_NOMEM;
		rc = m->real->pMethods->xRead(m->real, m->scratch, psz, 0);
		if (rc == SQLITE_IOERR_SHORT_READ) {
			seterr("database file truncated inside page 1");
			return SQLITE_NOTADB;
		}
		if (rc != SQLITE_OK)
			return rc;
		memcpy(m->file_id, m->scratch, FILE_ID_BYTES);
		if (page_open(m, 1, m->scratch, psz, NULL) == 0) {
			m->page_size = psz;
			m->have_id = 1;
			m->verified = 1;
			return SQLITE_OK;
		}
		seterr("wrong key or damaged mailbox file (page 1 failed authentication)");
	}
	return SQLITE_NOTADB;
}

/* Make sure m knows its file id: loaded (and key-checked) from a non-empty
 * file, or minted for an empty one. Called under SQLite's locks. */
static int
main_ensure_id(struct sbx_file *m)
{
	sqlite3_int64 size;
	int rc;

	if (m->verified || (m->have_id && m->page_size > 0))
		return SQLITE_OK;
	rc = m->real->pMethods->xFileSize(m->real, &size);
	if (rc != SQLITE_OK)
		return rc;
	if (size > 0)
		return main_load_header(m);
	if (!m->have_id) {
		randombytes_buf(m->file_id, FILE_ID_BYTES);
		m->have_id = 1;
	}
	return SQLITE_OK;
}

/* ---- io methods --------------------------------------------------------- */

static int
x_close(sqlite3_file *pf)
{
	struct sbx_file *f = (struct sbx_file *)pf;
	int rc = SQLITE_OK;

	if (f->real->pMethods != NULL)
		rc = f->real->pMethods->xClose(f->real);
	if (f->key != NULL)
		sodium_free(f->key);
	f->key = NULL;
	if (f->scratch != NULL) {
		sodium_memzero(f->scratch, (size_t)f->scratch_size);
		free(f->scratch);
	}
	f->scratch = NULL;
	sbx_aead_free(&f->aead);
	return rc;
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int
main_read(struct sbx_file *f, void *buf, int amt, sqlite3_int64 ofst)
{
	unsigned char *out = buf;
	sqlite3_int64 size;
	int rc, psz;

	/* Once the key is verified against page 1 the file cannot be a new,
	 * empty database: no fstat per read (it cost a system call per page
	 * on the hot path, bench/RESULTS.md). */
	if (!f->verified) {
		rc = f->real->pMethods->xFileSize(f->real, &size);
		if (rc != SQLITE_OK)
			return rc;
		if (size == 0)  /* a new, empty database */
			return f->real->pMethods->xRead(f->real, buf, amt, ofst);
	}
	rc = main_ensure_id(f);
	if (rc != SQLITE_OK)
		return rc;
	psz = f->page_size;
	while (amt > 0) {
		uint32_t pgno = (uint32_t)(ofst / psz) + 1;
		sqlite3_int64 pstart = (sqlite3_int64)(pgno - 1) * psz;
		int poff = (int)(ofst - pstart);
		int n = psz - poff < amt ? psz - poff : amt;
		unsigned char *page;

		if (poff == 0 && n == psz) {
			page = out;
		} else {
			if (ensure_scratch(f, psz) < 0)
				return SQLITE_NOMEM;
			page = f->scratch;
		}
		rc = f->real->pMethods->xRead(f->real, page, psz, pstart);
		if (rc == SQLITE_IOERR_SHORT_READ) {
			seterr("%s: short read of page %u (file truncated?)", f->name, pgno);
			sbx_warn("vfs: %s", last_error);
			return SQLITE_IOERR_DATA;
		}
		if (rc != SQLITE_OK)
			return rc;
		if (page_open(f, pgno, page, psz, NULL) != 0) {
			seterr("%s: page %u failed authentication", f->name, pgno);
			sbx_warn("vfs: %s", last_error);
			return SQLITE_IOERR_DATA;
		}
		if (page != out)
			memcpy(out, page + poff, (size_t)n);
		out += n;
		ofst += n;
		amt -= n;
	}
	return SQLITE_OK;
}

static int
main_write(struct sbx_file *f, const void *buf, int amt, sqlite3_int64 ofst)
{
	uint32_t pgno;
	int rc;

	if (f->page_size == 0 && valid_page_size(amt) && ofst % amt == 0) {
		rc = main_ensure_id(f);
		if (rc != SQLITE_OK)
			return rc;
		if (f->page_size == 0)
			f->page_size = amt;
	} else {
		rc = main_ensure_id(f);
		if (rc != SQLITE_OK)
			return rc;
	}
	if (amt != f->page_size || ofst % f->page_size != 0) {
		seterr("%s: unexpected write of %d bytes at %lld", f->name, amt, (long long)ofst);
		return SQLITE_IOERR_WRITE;
	}
	pgno = (uint32_t)(ofst / amt) + 1;
	if (ensure_scratch(f, amt) < 0)
		return SQLITE_NOMEM;
	if (page_seal(f, pgno, buf, f->scratch, amt, NULL) != 0)
		return SQLITE_IOERR_WRITE;
	return f->real->pMethods->xWrite(f->real, f->scratch, amt, ofst);
}

static int
wal_page_size(struct sbx_file *f)
{
	return f->main->page_size;
}

/* The frame header of the frame whose page starts at ofst (header at
 * ofst-24): the one just written, or read back from disk. */
static int
wal_frame_hdr(struct sbx_file *f, sqlite3_int64 ofst, unsigned char hdr[WAL_FRAME_HDR])
{
	int rc;

	if (f->hdr_off == ofst - WAL_FRAME_HDR) {
		memcpy(hdr, f->hdr, WAL_FRAME_HDR);
		return SQLITE_OK;
	}
	rc = f->real->pMethods->xRead(f->real, hdr, WAL_FRAME_HDR, ofst - WAL_FRAME_HDR);
	if (rc != SQLITE_OK)
		return rc == SQLITE_IOERR_SHORT_READ ? SQLITE_IOERR_DATA : rc;
	return SQLITE_OK;
}

/* The WAL part of the AD (see build_ad) of frame number frame (1-based)
 * with header hdr. */
static void
wal_ad(unsigned char walx[WALX_BYTES], const unsigned char *hdr, sqlite3_int64 frame)
{
	memcpy(walx, hdr + 4, 12);
	walx[12] = (unsigned char)(frame >> 24);
	walx[13] = (unsigned char)(frame >> 16);
	walx[14] = (unsigned char)(frame >> 8);
	walx[15] = (unsigned char)frame;
}

static int
wal_read(struct sbx_file *f, void *buf, int amt, sqlite3_int64 ofst)
{
	unsigned char *p = buf, walx[WALX_BYTES];
	int psz = wal_page_size(f), rc;
	sqlite3_int64 rel, frame = 0;
	int fo = 0;
	uint32_t pgno;

	if (ofst < WAL_HDR || psz == 0)
		return f->real->pMethods->xRead(f->real, buf, amt, ofst);
	rel = ofst - WAL_HDR;
	frame = rel / (psz + WAL_FRAME_HDR);
	fo = (int)(rel % (psz + WAL_FRAME_HDR));
	if (fo == 0 && amt == psz + WAL_FRAME_HDR) {
		/* A whole frame: recovery or the checksum rewrite. A frame that
		 * fails authentication gets its salt flipped, so SQLite sees a
		 * torn frame and stops there instead of replaying garbage. */
		rc = f->real->pMethods->xRead(f->real, buf, amt, ofst);
		if (rc != SQLITE_OK)
			return rc;
		f->rd_off = ofst;
		memcpy(f->rd_hdr, p, WAL_FRAME_HDR);
		pgno = get32(p);
		wal_ad(walx, p, frame + 1);
		if (pgno == 0 || page_open(f, pgno, p + WAL_FRAME_HDR, psz, walx) != 0) {
			seterr("%s: WAL frame %lld failed authentication; treated as torn",
			       f->name, (long long)frame + 1);
			sbx_warn("vfs: %s", last_error);
			p[8] ^= 0xff;
		}
		return SQLITE_OK;
	}
	if (fo + amt <= WAL_FRAME_HDR)   /* frame header fields only */
		return f->real->pMethods->xRead(f->real, buf, amt, ofst);
	if (fo == WAL_FRAME_HDR && amt <= psz) {
		/* One read for the frame header (the page number, part of the
		 * AD) and the page, then open the page out of place into the
		 * caller's buffer: no second pread for the header, no copy. */
		unsigned char *fbuf, *page;

		if (ensure_scratch(f, psz + WAL_FRAME_HDR) < 0)
			return SQLITE_NOMEM;
		fbuf = f->scratch;
		rc = f->real->pMethods->xRead(f->real, fbuf, psz + WAL_FRAME_HDR, ofst - WAL_FRAME_HDR);
		if (rc == SQLITE_IOERR_SHORT_READ) {
			seterr("%s: short read of WAL frame %lld", f->name, (long long)frame + 1);
			return SQLITE_IOERR_DATA;
		}
		if (rc != SQLITE_OK)
			return rc;
		pgno = get32(fbuf);
		wal_ad(walx, fbuf, frame + 1);
		page = amt == psz ? p : fbuf + WAL_FRAME_HDR;
		if (page_open_to(f, pgno, fbuf + WAL_FRAME_HDR, page, psz, walx) != 0) {
			seterr("%s: WAL frame %lld (page %u) failed authentication",
			       f->name, (long long)frame + 1, pgno);
			sbx_warn("vfs: %s", last_error);
			return SQLITE_IOERR_DATA;
		}
		if (page != p)
			memcpy(p, page, (size_t)amt);
		return SQLITE_OK;
	}
	seterr("%s: unexpected WAL read of %d bytes at %lld", f->name, amt, (long long)ofst);
	return SQLITE_IOERR_READ;
}

/*
 * Once a transaction has overwritten a frame in place (a page spilled from
 * a small cache and changed again), SQLite writes the frames after it with
 * zero salts and checksums, and at commit reads each of them whole and
 * writes its header again with the real salts (walRewriteChecksums). The
 * salts are part of the page's AD, so the page sealed under the zero salts
 * is sealed again under the new header before that header is written.
 * Only a header write right after a whole-frame read of the same frame,
 * with the same page number and commit size and zero salts on disk, gets
 * here. A frame that does not open under its old header (a stale frame
 * from an earlier WAL generation that recovery read last) is left alone:
 * SQLite writes the whole frame anew in that case.
 */
static int
wal_reseal(struct sbx_file *f, sqlite3_int64 ofst, const unsigned char *newhdr)
{
	static const unsigned char zero[8];
	int psz = wal_page_size(f), rc;
	sqlite3_int64 frame = (ofst - WAL_HDR) / (psz + WAL_FRAME_HDR) + 1;
	unsigned char oldx[WALX_BYTES], newx[WALX_BYTES], *page, *sealed;
	uint32_t pgno = get32(f->rd_hdr);

	if (get32(newhdr) != pgno || memcmp(newhdr + 4, f->rd_hdr + 4, 4) != 0 ||
	    memcmp(f->rd_hdr + 8, zero, 8) != 0)
		return SQLITE_OK;
	page = sqlite3_malloc(psz);
	sealed = sqlite3_malloc(psz);
	if (page == NULL || sealed == NULL) {
		sqlite3_free(page);
		sqlite3_free(sealed);
		return SQLITE_NOMEM;
	}
	rc = f->real->pMethods->xRead(f->real, page, psz, ofst + WAL_FRAME_HDR);
	if (rc == SQLITE_OK) {
		wal_ad(oldx, f->rd_hdr, frame);
		wal_ad(newx, newhdr, frame);
		if (page_open(f, pgno, page, psz, oldx) != 0)
			rc = SQLITE_OK;   /* not ours to fix: see above */
		else if (page_seal(f, pgno, page, sealed, psz, newx) != 0)
			rc = SQLITE_IOERR_WRITE;
		else
			rc = f->real->pMethods->xWrite(f->real, sealed, psz, ofst + WAL_FRAME_HDR);
	} else if (rc == SQLITE_IOERR_SHORT_READ) {
		rc = SQLITE_OK;
	}
	sodium_memzero(page, (size_t)psz);
	sqlite3_free(page);
	sqlite3_free(sealed);
	return rc;
}

static int
wal_write(struct sbx_file *f, const void *buf, int amt, sqlite3_int64 ofst)
{
	const unsigned char *p = buf;
	unsigned char hdr[WAL_FRAME_HDR], walx[WALX_BYTES];
	int psz = wal_page_size(f), fo, i;
	uint32_t pgno;

	if (ofst == 0 && amt == WAL_HDR) {
		int hpsz = (int)get32(p + 8);

		if (psz == 0 && valid_page_size(hpsz))
			f->main->page_size = hpsz;
		return f->real->pMethods->xWrite(f->real, buf, amt, ofst);
	}
	if (psz == 0 || ofst < WAL_HDR) {
		seterr("%s: WAL write before the page size is known", f->name);
		return SQLITE_IOERR_WRITE;
	}
	fo = (int)((ofst - WAL_HDR) % (psz + WAL_FRAME_HDR));
	if (fo == 0 && amt == WAL_FRAME_HDR) {
		if (ofst == f->rd_off && memcmp(f->rd_hdr, p, 16) != 0) {
			int rc = wal_reseal(f, ofst, p);

			if (rc != SQLITE_OK)
				return rc;
		}
		f->rd_off = -1;
		f->hdr_off = ofst;
		memcpy(f->hdr, p, WAL_FRAME_HDR);
		return f->real->pMethods->xWrite(f->real, buf, amt, ofst);
	}
	if (fo == 16 && amt == 8)   /* checksum rewrite of a frame header */
		return f->real->pMethods->xWrite(f->real, buf, amt, ofst);
	if (fo == WAL_FRAME_HDR && amt == psz) {
		int rc = wal_frame_hdr(f, ofst, hdr);

		if (rc != SQLITE_OK)
			return rc;
		pgno = get32(hdr);
		wal_ad(walx, hdr, (ofst - WAL_HDR) / (psz + WAL_FRAME_HDR) + 1);
		/* The frame checksum covers these bytes: they must be the zeros
		 * page_open() hands back, or recovery would reject the frame. */
		for (i = psz - SBX_VFS_RESERVE; i < psz; i++) {
			if (p[i] != 0) {
				seterr("%s: page %u has non-zero reserved bytes", f->name, pgno);
				return SQLITE_IOERR_WRITE;
			}
		}
		if (ensure_scratch(f, psz) < 0)
			return SQLITE_NOMEM;
		if (page_seal(f, pgno, p, f->scratch, psz, walx) != 0)
			return SQLITE_IOERR_WRITE;
		return f->real->pMethods->xWrite(f->real, f->scratch, psz, ofst);
	}
	/* e.g. a frame split at a sync point with psow=0: unsupported. */
	seterr("%s: unexpected WAL write of %d bytes at %lld", f->name, amt, (long long)ofst);
	return SQLITE_IOERR_WRITE;
}

static int
journal_read(struct sbx_file *f, void *buf, int amt, sqlite3_int64 ofst)
{
	int psz = f->main->page_size, rc;
	unsigned char b[4];

	rc = f->real->pMethods->xRead(f->real, buf, amt, ofst);
	if (rc != SQLITE_OK || psz == 0 || amt != psz || ofst < 4)
		return rc;
	rc = f->real->pMethods->xRead(f->real, b, 4, ofst - 4);
	if (rc != SQLITE_OK)
		return rc == SQLITE_IOERR_SHORT_READ ? SQLITE_IOERR_DATA : rc;
	/* The pager plays back only records the journal header counts, and
	 * it syncs them before touching the database, so a record that fails
	 * authentication was altered: refuse it rather than roll back into
	 * wrong data. */
	if (page_open(f, get32(b), buf, psz, NULL) != 0) {
		seterr("%s: journal record at %lld failed authentication", f->name, (long long)ofst);
		sbx_warn("vfs: %s", last_error);
		return SQLITE_IOERR_DATA;
	}
	return SQLITE_OK;
}

static int
journal_write(struct sbx_file *f, const void *buf, int amt, sqlite3_int64 ofst)
{
	int psz = f->main->page_size;

	if (amt == 4) {
		f->j4_off = ofst;
		f->j4_val = get32(buf);
	} else if (psz > 0 && amt == psz && f->j4_off == ofst - 4 &&
		   memcmp(buf, journal_magic, sizeof(journal_magic)) != 0) {
		if (ensure_scratch(f, psz) < 0)
			return SQLITE_NOMEM;
		if (page_seal(f, f->j4_val, buf, f->scratch, psz, NULL) != 0)
			return SQLITE_IOERR_WRITE;
		f->j4_off = -1;
		return f->real->pMethods->xWrite(f->real, f->scratch, psz, ofst);
	}
	return f->real->pMethods->xWrite(f->real, buf, amt, ofst);
}

static int
x_read(sqlite3_file *pf, void *buf, int amt, sqlite3_int64 ofst)
{
	struct sbx_file *f = (struct sbx_file *)pf;

	switch (f->type) {
	case FT_MAIN:
		return main_read(f, buf, amt, ofst);
	case FT_WAL:
		return wal_read(f, buf, amt, ofst);
	case FT_JOURNAL:
		return journal_read(f, buf, amt, ofst);
	}
	return SQLITE_IOERR_READ;
}

static int
x_write(sqlite3_file *pf, const void *buf, int amt, sqlite3_int64 ofst)
{
	struct sbx_file *f = (struct sbx_file *)pf;

	switch (f->type) {
	case FT_MAIN:
		return main_write(f, buf, amt, ofst);
	case FT_WAL:
		return wal_write(f, buf, amt, ofst);
	case FT_JOURNAL:
		return journal_write(f, buf, amt, ofst);
	}
	return SQLITE_IOERR_WRITE;
}

#define REAL(pf) (((struct sbx_file *)(pf))->real)

static int x_truncate(sqlite3_file *pf, sqlite3_int64 size) { return REAL(pf)->pMethods->xTruncate(REAL(pf), size); }
static int x_sync(sqlite3_file *pf, int flags) { return REAL(pf)->pMethods->xSync(REAL(pf), flags); }
static int x_file_size(sqlite3_file *pf, sqlite3_int64 *size) { return REAL(pf)->pMethods->xFileSize(REAL(pf), size); }
static int x_lock(sqlite3_file *pf, int lock) { return REAL(pf)->pMethods->xLock(REAL(pf), lock); }
static int x_unlock(sqlite3_file *pf, int lock) { return REAL(pf)->pMethods->xUnlock(REAL(pf), lock); }
static int x_check_reserved(sqlite3_file *pf, int *out) { return REAL(pf)->pMethods->xCheckReservedLock(REAL(pf), out); }
static int x_sector_size(sqlite3_file *pf) { return REAL(pf)->pMethods->xSectorSize(REAL(pf)); }
static int x_shm_lock(sqlite3_file *pf, int ofst, int n, int flags) { return REAL(pf)->pMethods->xShmLock(REAL(pf), ofst, n, flags); }
static void x_shm_barrier(sqlite3_file *pf) { REAL(pf)->pMethods->xShmBarrier(REAL(pf)); }
static int x_shm_unmap(sqlite3_file *pf, int del) { return REAL(pf)->pMethods->xShmUnmap(REAL(pf), del); }

static int
x_shm_map(sqlite3_file *pf, int pg, int pgsz, int extend, void volatile **pp)
{
	return REAL(pf)->pMethods->xShmMap(REAL(pf), pg, pgsz, extend, pp);
}

static int
x_device_characteristics(sqlite3_file *pf)
{
	return REAL(pf)->pMethods->xDeviceCharacteristics(REAL(pf)) & ~SQLITE_IOCAP_SUBPAGE_READ;
}

static int
x_file_control(sqlite3_file *pf, int op, void *arg)
{
	struct sbx_file *f = (struct sbx_file *)pf;

	if (op == SQLITE_FCNTL_MMAP_SIZE) {
		*(sqlite3_int64 *)arg = 0;   /* mapped pages would be ciphertext */
		return SQLITE_OK;
	}
	if (op == SQLITE_FCNTL_PRAGMA) {
		char **a = arg;

		if (a[1] != NULL && a[2] != NULL && sqlite3_stricmp(a[1], "page_size") == 0) {
			sqlite3_int64 size = 0;

			f->real->pMethods->xFileSize(f->real, &size);
			if (size > 0) {
				a[0] = sqlite3_mprintf("page_size is fixed for sealbox mailbox files");
				return SQLITE_ERROR;
			}
		}
	}
	if (op == SQLITE_FCNTL_VFSNAME) {
		/* Leave the default behaviour: unix reports its own name. */
	}
	return f->real->pMethods->xFileControl(f->real, op, arg);
}

/* ---- vfs methods -------------------------------------------------------- */

static int
open_fail(struct sbx_file *f, int rc)
{
	if (f->real->pMethods != NULL)
		f->real->pMethods->xClose(f->real);
	f->real->pMethods = NULL;
	if (f->key != NULL)
		sodium_free(f->key);
	f->key = NULL;
	free(f->scratch);
	f->scratch = NULL;
	sbx_aead_free(&f->aead);
	f->base.pMethods = NULL;
	return rc;
}

static int
x_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *pf, int flags, int *out_flags)
{
	struct sbx_file *f = (struct sbx_file *)pf;
	int rc, slot;

	memset(f, 0, sizeof(*f));
	f->real = (sqlite3_file *)(f + 1);
	f->hdr_off = -1;
	f->rd_off = -1;
	f->j4_off = -1;
	f->name = name ? name : "(temp)";
	if (flags & SQLITE_OPEN_MAIN_DB)
		f->type = FT_MAIN;
	else if (flags & SQLITE_OPEN_WAL)
		f->type = FT_WAL;
	else if (flags & SQLITE_OPEN_MAIN_JOURNAL)
		f->type = FT_JOURNAL;
	else {
		/* Temp databases, statement journals, super-journals: with
		 * temp_store=MEMORY none is ever needed, and a plaintext temp
		 * file must never exist. */
		seterr("refusing to open a temporary file (temp_store must be MEMORY)");
		sbx_warn("vfs: %s", last_error);
		return SQLITE_CANTOPEN;
	}
	if (name == NULL)
		return SQLITE_CANTOPEN;

	f->key = sodium_malloc(SBX_VFS_KEY_BYTES);
	if (f->key == NULL)
		return SQLITE_NOMEM;
	f->real->pMethods = NULL;   /* open_fail() may run before the unix open */
	f->aead = sbx_aead_new();
	if (f->aead == NULL) {
		seterr("no ChaCha20-Poly1305 in OpenSSL");
		return open_fail(f, SQLITE_NOMEM);
	}
	randombytes_buf(f->nonce_prefix, sizeof(f->nonce_prefix));

	if (f->type == FT_MAIN) {
		const char *ks = sqlite3_uri_parameter(name, "sbxkey");

		slot = ks ? atoi(ks) : 0;
		if (slot <= 0 || key_fetch(slot, f->key) < 0) {
			seterr("no key given for %s", name);
			return open_fail(f, SQLITE_CANTOPEN);
		}
		/* psow=0 makes SQLite split WAL frames at sector boundaries and
		 * write journal headers the size of a page: patterns this shim
		 * cannot tell from pages, so it is not allowed. */
		if (!sqlite3_uri_boolean(name, "psow", 1)) {
			seterr("psow=0 is not supported by the sealbox VFS");
			return open_fail(f, SQLITE_CANTOPEN);
		}
		f->main = f;
	} else {
		sqlite3_file *mf = sqlite3_database_file_object(name);
		struct sbx_file *m = (struct sbx_file *)mf;
		struct stat st;

		if (mf == NULL || mf->pMethods != &sbx_io || m->type != FT_MAIN) {
			seterr("WAL or journal without its encrypted database");
			return open_fail(f, SQLITE_CANTOPEN);
		}
		/* The key must be proven against page 1 before SQLite may act
		 * on a WAL or journal: with a wrong key, recovery would find no
		 * valid frame and the close would delete the WAL. */
		rc = main_ensure_id(m);
		if (rc != SQLITE_OK) {
			return open_fail(f, rc);
		}
		if (!m->verified && f->type == FT_WAL && stat(name, &st) == 0 && st.st_size > 0) {
			seterr("refusing a non-empty WAL beside an empty database file");
			return open_fail(f, SQLITE_CANTOPEN);
		}
		memcpy(f->key, m->key, SBX_VFS_KEY_BYTES);
		f->main = m;
	}

	rc = unix_vfs->xOpen(unix_vfs, name, f->real, flags, out_flags);
	if (rc != SQLITE_OK) {
		f->real->pMethods = NULL;
		return open_fail(f, rc);
	}
	f->base.pMethods = &sbx_io;
	if (f->type == FT_MAIN) {
		sqlite3_int64 size = 0;

		rc = f->real->pMethods->xFileSize(f->real, &size);
		if (rc == SQLITE_OK && size > 0)
			rc = main_load_header(f);
		if (rc != SQLITE_OK) {
			if (rc == SQLITE_NOTADB)
				sbx_info("vfs: %s: %s", name, last_error);
			return open_fail(f, rc);
		}
	}
	return SQLITE_OK;
}

static int x_delete(sqlite3_vfs *v, const char *name, int sync) { return unix_vfs->xDelete(unix_vfs, name, sync); }
static int x_access(sqlite3_vfs *v, const char *name, int flags, int *out) { return unix_vfs->xAccess(unix_vfs, name, flags, out); }
static int x_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out) { return unix_vfs->xFullPathname(unix_vfs, name, n, out); }
static void *x_dlopen(sqlite3_vfs *v, const char *name) { return unix_vfs->xDlOpen(unix_vfs, name); }
static void x_dlerror(sqlite3_vfs *v, int n, char *msg) { unix_vfs->xDlError(unix_vfs, n, msg); }
static void (*x_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void) { return unix_vfs->xDlSym(unix_vfs, h, sym); }
static void x_dlclose(sqlite3_vfs *v, void *h) { unix_vfs->xDlClose(unix_vfs, h); }
static int x_randomness(sqlite3_vfs *v, int n, char *out) { randombytes_buf(out, (size_t)n); return n; }
static int x_sleep(sqlite3_vfs *v, int us) { return unix_vfs->xSleep(unix_vfs, us); }
static int x_current_time(sqlite3_vfs *v, double *t) { return unix_vfs->xCurrentTime(unix_vfs, t); }
static int x_get_last_error(sqlite3_vfs *v, int n, char *s) { return unix_vfs->xGetLastError(unix_vfs, n, s); }
static int x_current_time64(sqlite3_vfs *v, sqlite3_int64 *t) { return unix_vfs->xCurrentTimeInt64(unix_vfs, t); }

static void
do_register(void)
{
	int v = sqlite3_libversion_number();

	if (!sbx_vfs_version_tested(v)) {
		snprintf(reg_error, sizeof(reg_error),
			 "SQLite %s has not passed sealbox's encrypted VFS test suite; refusing to use it",
			 sqlite3_libversion());
		return;
	}
	if (sodium_init() < 0) {
		snprintf(reg_error, sizeof(reg_error), "libsodium initialisation failed");
		return;
	}
	unix_vfs = sqlite3_vfs_find("unix");
	if (unix_vfs == NULL || unix_vfs->iVersion < 2) {
		snprintf(reg_error, sizeof(reg_error), "SQLite has no usable unix VFS");
		return;
	}
	key_table = sodium_malloc((size_t)KEY_SLOTS * SBX_VFS_KEY_BYTES);
	if (key_table == NULL) {
		snprintf(reg_error, sizeof(reg_error), "cannot allocate the VFS key table");
		return;
	}
	sodium_memzero(key_table, (size_t)KEY_SLOTS * SBX_VFS_KEY_BYTES);
	sodium_mprotect_noaccess(key_table);

	memset(&sbx_io, 0, sizeof(sbx_io));
	sbx_io.iVersion = 2;   /* WAL needs shm; no xFetch, so never mmap */
	sbx_io.xClose = x_close;
	sbx_io.xRead = x_read;
	sbx_io.xWrite = x_write;
	sbx_io.xTruncate = x_truncate;
	sbx_io.xSync = x_sync;
	sbx_io.xFileSize = x_file_size;
	sbx_io.xLock = x_lock;
	sbx_io.xUnlock = x_unlock;
	sbx_io.xCheckReservedLock = x_check_reserved;
	sbx_io.xFileControl = x_file_control;
	sbx_io.xSectorSize = x_sector_size;
	sbx_io.xDeviceCharacteristics = x_device_characteristics;
	sbx_io.xShmMap = x_shm_map;
	sbx_io.xShmLock = x_shm_lock;
	sbx_io.xShmBarrier = x_shm_barrier;
	sbx_io.xShmUnmap = x_shm_unmap;

	memset(&sbx_vfs, 0, sizeof(sbx_vfs));
	sbx_vfs.iVersion = 2;
	sbx_vfs.szOsFile = (int)sizeof(struct sbx_file) + unix_vfs->szOsFile;
	sbx_vfs.mxPathname = unix_vfs->mxPathname;
	sbx_vfs.zName = SBX_VFS_NAME;
	sbx_vfs.xOpen = x_open;
	sbx_vfs.xDelete = x_delete;
	sbx_vfs.xAccess = x_access;
	sbx_vfs.xFullPathname = x_full_pathname;
	sbx_vfs.xDlOpen = x_dlopen;
	sbx_vfs.xDlError = x_dlerror;
	sbx_vfs.xDlSym = x_dlsym;
	sbx_vfs.xDlClose = x_dlclose;
	sbx_vfs.xRandomness = x_randomness;
	sbx_vfs.xSleep = x_sleep;
	sbx_vfs.xCurrentTime = x_current_time;
	sbx_vfs.xGetLastError = x_get_last_error;
	sbx_vfs.xCurrentTimeInt64 = x_current_time64;
	if (sqlite3_vfs_register(&sbx_vfs, 0) != SQLITE_OK) {
		snprintf(reg_error, sizeof(reg_error), "sqlite3_vfs_register failed");
		return;
	}
	reg_rc = 0;
}

int
sbx_vfs_register(char **error_r)
{
	pthread_once(&reg_once, do_register);
	if (reg_rc != 0) {
		*error_r = sbx_xstrdup(reg_error);
		return -1;
	}
	return 0;
}

char *
sbx_vfs_uri(const char *path, int slot)
{
	struct sbx_buf b = { 0 };
	const unsigned char *p;

	sbx_buf_append(&b, "file:", 5);
	for (p = (const unsigned char *)path; *p; p++) {
		if (*p == '%' || *p == '?' || *p == '#' || *p <= 0x20 || *p >= 0x7f)
			sbx_buf_appendf(&b, "%%%02X", *p);
		else
			sbx_buf_append(&b, p, 1);
	}
	sbx_buf_appendf(&b, "?sbxkey=%d", slot);
	sbx_buf_append(&b, "", 1);
	return b.data;
}

int
sbx_vfs_open_db(const char *path, const unsigned char key[SBX_VFS_KEY_BYTES], int flags,
		sqlite3 **db_r, char **error_r)
{
	sqlite3 *db = NULL;
	char *uri, *err = NULL;
	int slot, rc, reserve = SBX_VFS_RESERVE;

	*db_r = NULL;
	if (sbx_vfs_register(error_r) < 0)
		return SQLITE_ERROR;
	slot = sbx_vfs_key_add(key);
	if (slot < 0) {
		*error_r = sbx_xstrdup("VFS key table full");
		return SQLITE_FULL;
	}
	uri = sbx_vfs_uri(path, slot);
	last_error[0] = '\0';
	rc = sqlite3_open_v2(uri, &db, flags | SQLITE_OPEN_URI, SBX_VFS_NAME);
	sbx_vfs_key_remove(slot);
	free(uri);
	if (rc != SQLITE_OK) {
		const char *why = last_error[0] ? last_error : db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);

		if (strncmp(why, path, strlen(path)) == 0)
			*error_r = sbx_xstrdup(why);
		else
			*error_r = sbx_xasprintf("%s: %s", path, why);
		sqlite3_close(db);
		return rc;
	}
	sqlite3_extended_result_codes(db, 1);
	/* On a new file this sets the reserve before the first page is
	 * written; on an existing file it asks for what page 1 already has. */
	rc = sqlite3_file_control(db, "main", SQLITE_FCNTL_RESERVE_BYTES, &reserve);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "PRAGMA temp_store=MEMORY; PRAGMA mmap_size=0;", NULL, NULL, &err);
	if (rc != SQLITE_OK) {
		*error_r = sbx_xasprintf("%s: %s", path, err ? err : sqlite3_errmsg(db));
		sqlite3_free(err);
		sqlite3_close(db);
		return rc;
	}
	*db_r = db;
	return SQLITE_OK;
}
