/*
 * vfs.h - the encrypted SQLite VFS shim (ARCHITECTURE.md "Keys",
 * ../shared/ENCRYPTED-VFS.md).
 *
 * Registered as "sealbox" over the default unix VFS. Every page of the main
 * database file, of its WAL and of its rollback journal is sealed with
 * XChaCha20-Poly1305: the last SBX_VFS_RESERVE (40) bytes of each page hold
 * the 24-byte nonce (16-byte random per-handle prefix + 64-bit counter) and
 * the 16-byte tag. Associated data: "sbx1" | file id[16] | page number (u32
 * BE) and, for page 1, header bytes 16..23. A WAL frame's AD starts with
 * "sbxw" instead and also holds its frame header's commit size and salts and
 * its frame number, because SQLite trusts those fields and its frame
 * checksum can be recomputed by anyone. Page 1 stores the file id where the
 * magic string was; bytes 16..23 (page size, format versions, reserve count)
 * stay readable and authenticated; everything else is sealed. psow=0 is
 * refused (it splits WAL frames and journal headers at sector boundaries).
 *
 * The key is checked against page 1 when the file is opened, before any WAL
 * or journal is opened, so a wrong key can never make SQLite discard a WAL.
 * Temporary files are refused: every connection must run with
 * temp_store=MEMORY (sbx_vfs_open_db sets it). mmap is never used.
 *
 * Keys never travel in file names or URIs: a key is placed in an in-process
 * table (sodium_malloc'd) and the URI carries only its slot number
 * ("sbxkey=N"). Each open file copies the key into its own guarded memory.
 */
#ifndef SBX_VFS_H
#define SBX_VFS_H

#include <sqlite3.h>

#define SBX_VFS_NAME    "sealbox"
#define SBX_VFS_RESERVE 40
#define SBX_VFS_KEY_BYTES 32

/* Register the VFS (idempotent, thread-safe). Refuses, with -1 and
 * *error_r, a SQLite library version this VFS's test suite has not passed. */
int sbx_vfs_register(char **error_r);
/* 1 if SQLite version number v (sqlite3_libversion_number form) passed the
 * suite; the list lives in vfs.c. */
int sbx_vfs_version_tested(int v);

/* Put a key into the in-process key table; returns its slot id (> 0) or -1
 * when the table is full. Remove it once no open will need it again
 * (already-open files keep their own copy). */
int sbx_vfs_key_add(const unsigned char key[SBX_VFS_KEY_BYTES]);
void sbx_vfs_key_remove(int slot);

/* "file:PATH?sbxkey=SLOT" with PATH percent-escaped, malloc'd: for
 * VACUUM INTO and ATTACH targets. */
char *sbx_vfs_uri(const char *path, int slot);

/* The last VFS error in this thread ("page 7 failed authentication", "wrong
 * key or not a sealbox mailbox file (page 1 failed authentication)"), or "". */
const char *sbx_vfs_last_error(void);

/* Open path through the VFS with key. flags: SQLITE_OPEN_READWRITE |
 * SQLITE_OPEN_CREATE or SQLITE_OPEN_READONLY. Sets 40 reserve bytes on a new
 * file, temp_store=MEMORY, mmap_size=0. On failure returns the SQLite code,
 * *db_r = NULL and a one-line *error_r (wrong key, not encrypted, damaged). */
int sbx_vfs_open_db(const char *path, const unsigned char key[SBX_VFS_KEY_BYTES], int flags,
		    sqlite3 **db_r, char **error_r);

/* Statistics for tests and benchmarks (process-wide, approximate under
 * concurrency). */
struct sbx_vfs_stats {
	unsigned long pages_sealed;
	unsigned long pages_opened;
	unsigned long auth_failures;
};
void sbx_vfs_get_stats(struct sbx_vfs_stats *s);
#endif
