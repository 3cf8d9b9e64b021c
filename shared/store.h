/*
 * store.h - the mailbox store inside the encrypted SQLite file
 * (ARCHITECTURE.md "Mailbox store"). This is the foundation's minimal store:
 * folders, messages kept byte-exact, and the `delivered` table that makes
 * spool import and live delivery exactly-once. The next issue grows it.
 *
 * The file is STATE/mailboxes/ab/<id>.sqlite, opened through the encrypted
 * VFS with the mailbox's VFS subkey (SBX_SUBKEY_VFS), never the password.
 * Pragmas: journal_mode=WAL, busy_timeout=5000, foreign_keys=ON,
 * encoding UTF-8, temp_store=MEMORY, cache_size = SBX_STORE_CACHE_KIB.
 * Every commit that adds, moves or removes messages runs with
 * synchronous=FULL; flag changes alone use NORMAL.
 * Writers must hold the mailbox lock (lock.h); the store does not take it.
 */
#ifndef SBX_STORE_H
#define SBX_STORE_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "keys.h"

/* Page cache per connection: 32 MiB. Reads of pages already in the cache
 * cost no decryption, so this bounds the VFS overhead (bench/RESULTS.md). */
#define SBX_STORE_CACHE_KIB 32768
#define SBX_STORE_SCHEMA_VERSION 1

#define SBX_FLAG_SEEN     0x01
#define SBX_FLAG_ANSWERED 0x02
#define SBX_FLAG_FLAGGED  0x04
#define SBX_FLAG_DELETED  0x08
#define SBX_FLAG_DRAFT    0x10

struct sbx_store;

#define SBX_STORE_RDONLY 0x1

/* Create a new mailbox file with the default folders (INBOX, Sent, Drafts,
 * Trash, Junk, Archive with SPECIAL-USE). Fails if the file exists. */
int sbx_store_create(const char *state_dir, const char *mailbox_id,
		     const struct sbx_mailbox_keys *keys, char **error_r);
/* Open an existing mailbox file (migrating its schema if it is older).
 * A wrong key or a damaged file gives -1 and a clear *error_r. */
int sbx_store_open(const char *state_dir, const char *mailbox_id,
		   const struct sbx_mailbox_keys *keys, int flags,
		   struct sbx_store **st_r, char **error_r);
/* Checkpoint the WAL (TRUNCATE) and close. */
void sbx_store_close(struct sbx_store **st);
struct sqlite3 *sbx_store_db(struct sbx_store *st);

/* Append one message to folder. delivery_id may be NULL; when given and
 * already in `delivered`, nothing is stored and 1 is returned (the
 * exactly-once rule); 0 = stored (uid in *uid_r), -1 = error. One
 * synchronous=FULL transaction. */
int sbx_store_append(struct sbx_store *st, const char *folder, const void *msg, size_t len,
		     time_t internaldate, unsigned flags, const char *delivery_id,
		     uint32_t *uid_r, char **error_r);
/* Transactions spanning several appends (spool import batches). Appends
 * inside use the open transaction; commit is synchronous=FULL. */
int sbx_store_begin(struct sbx_store *st, char **error_r);
int sbx_store_commit(struct sbx_store *st, char **error_r);
void sbx_store_rollback(struct sbx_store *st);
/* 1 if delivery_id is recorded, 0 if not, -1 on error. */
int sbx_store_delivered(struct sbx_store *st, const char *delivery_id, char **error_r);

struct sbx_store_folder {
	char *name;
	uint32_t uidvalidity, uidnext;
	int subscribed;
	char *special_use;     /* "\\Sent" ... or NULL */
	uint64_t messages;
};
int sbx_store_folders(struct sbx_store *st, struct sbx_store_folder **v_r, size_t *n_r, char **error_r);
void sbx_store_folders_free(struct sbx_store_folder *v, size_t n);

struct sbx_store_msg {
	uint32_t uid;
	unsigned flags;
	char internaldate[32];   /* ISO 8601 UTC, "2026-11-25T11:31:49Z" */
	uint64_t size;
};
/* Messages of folder in UID order. */
int sbx_store_list(struct sbx_store *st, const char *folder, struct sbx_store_msg **v_r,
		   size_t *n_r, char **error_r);
/* The raw message, byte-exact as delivered (malloc'd). */
int sbx_store_fetch_raw(struct sbx_store *st, const char *folder, uint32_t uid,
			char **data_r, size_t *len_r, char **error_r);
/* Set flags of one message (synchronous=NORMAL). */
int sbx_store_set_flags(struct sbx_store *st, const char *folder, uint32_t uid, unsigned flags, char **error_r);
/* Total bytes and messages in all folders (quota usage). */
int sbx_store_usage(struct sbx_store *st, uint64_t *bytes_r, uint64_t *msgs_r, char **error_r);

/* ISO 8601 UTC text of t into out (>= 21 bytes). */
void sbx_iso8601(time_t t, char out[32]);
#endif
