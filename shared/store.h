/*
 * store.h - the mailbox store inside the encrypted SQLite file
 * (ARCHITECTURE.md "Mailbox store"): folders with UIDVALIDITY, UIDNEXT,
 * HIGHESTMODSEQ and a recent-UID mark; messages with UID, flags, keywords,
 * MODSEQ, INTERNALDATE and RFC822.SIZE; the raw message kept byte-exact
 * with its MIME leaf bodies de-duplicated; ENVELOPE, BODYSTRUCTURE and the
 * part table computed once at append; an FTS5 trigram index of the decoded
 * text (search.h); the `delivered` table that makes delivery exactly-once.
 *
 * The file is STATE/mailboxes/ab/<id>.sqlite, opened through the encrypted
 * VFS with the mailbox's VFS subkey (SBX_SUBKEY_VFS), never the password.
 * Pragmas: journal_mode=WAL, busy_timeout=5000, foreign_keys=ON,
 * encoding UTF-8, temp_store=MEMORY, cache_size = SBX_STORE_CACHE_KIB.
 * Every commit that adds, moves or removes messages runs with
 * synchronous=FULL; flag and keyword changes alone use NORMAL.
 * Writers must hold the mailbox lock (lock.h); the store does not take it.
 *
 * Every operation is one transaction, unless the caller opened one with
 * sbx_store_begin() (spool import batches), in which case it joins it.
 *
 * Folder names are UTF-8 (the IMAP layer converts modified UTF-7), with
 * "/" as the hierarchy delimiter; "INBOX" is matched case-insensitively.
 *
 * Schema (migration 2; see migrations[] in store.c):
 *   folders(id, name, uidvalidity, uidnext, subscribed, special_use,
 *           highestmodseq, recent_uid)
 *   messages(id, folder_id, uid, content_id, flags, keywords, modseq,
 *            internaldate TEXT ISO 8601 UTC, size = RFC822.SIZE)
 *   contents(id, refs, raw_len, hdr_len, sent_ts, sent_day, envelope,
 *            bodystructure, body, sections, message_id, in_reply_to,
 *            refs_hdr, rest)  -- one per distinct delivered message; COPY
 *            shares it (refs counts the messages rows)
 *   parts(id, hash BLAKE2b-256, refs, data)  -- de-duplicated leaf bodies
 *   content_parts(content_id, off, part_id)  -- where each cut part goes
 *   tombstones(folder_id, uid, modseq)       -- expunged UIDs (QRESYNC)
 *   folder_keywords(folder_id, name)         -- keywords ever used
 *   fts(h_from, h_to, h_cc, h_bcc, subject, hdrs, body) rowid = contents.id,
 *       tokenize='trigram': decoded text from mimetext.h; hdrs is every
 *       top-level header field "Name: decoded value\n"
 *   delivered(id, at), meta(key, value)
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
#define SBX_STORE_SCHEMA_VERSION 2
/* Leaf bodies at least this long are stored once per mailbox. */
#define SBX_STORE_DEDUP_MIN 4096
/* Decoded body text indexed per message; text past it is not searchable. */
#define SBX_STORE_FTS_MAX_BODY (2u * 1024 * 1024)
/* Limits on what a client controls. */
#define SBX_STORE_MAX_FOLDERS 4096
#define SBX_STORE_MAX_FOLDER_NAME 512   /* bytes of UTF-8 */
#define SBX_STORE_MAX_FOLDER_DEPTH 32
#define SBX_STORE_MAX_KEYWORDS 256      /* distinct keywords per folder */
#define SBX_STORE_MAX_KEYWORD_LEN 64

#define SBX_FLAG_SEEN     0x01
#define SBX_FLAG_ANSWERED 0x02
#define SBX_FLAG_FLAGGED  0x04
#define SBX_FLAG_DELETED  0x08
#define SBX_FLAG_DRAFT    0x10
#define SBX_FLAGS_ALL     0x1f

struct sbx_store;

/* A closed range of UIDs, lo <= hi (IMAP "3:7"; "5" is 5:5). */
struct sbx_uid_range {
	uint32_t lo, hi;
};

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

/* For tests and benchmarks only: create/open a store at an explicit path.
 * vfs_key NULL opens a PLAIN, unencrypted SQLite file (the benchmark's
 * peer); schema_version creates that older schema (migration tests;
 * 0 = current). */
int sbx_store_create_path(const char *path, const unsigned char *vfs_key, int schema_version,
			  char **error_r);
int sbx_store_open_path(const char *path, const unsigned char *vfs_key, int flags,
			struct sbx_store **st_r, char **error_r);

/* Transactions spanning several operations (spool import batches). Every
 * operation inside joins it; commit is synchronous=FULL. */
int sbx_store_begin(struct sbx_store *st, char **error_r);
int sbx_store_commit(struct sbx_store *st, char **error_r);
void sbx_store_rollback(struct sbx_store *st);
/* 1 if delivery_id is recorded, 0 if not, -1 on error. */
int sbx_store_delivered(struct sbx_store *st, const char *delivery_id, char **error_r);

/* ---- messages ---- */

/* Append one message to folder with flags (SBX_FLAG_*) and keywords (NULL
 * or space-separated IMAP atoms). The MIME structure, ENVELOPE,
 * BODYSTRUCTURE and search text are computed here. delivery_id may be
 * NULL; when given and already in `delivered`, nothing is stored and 1 is
 * returned (the exactly-once rule); 0 = stored (uid in *uid_r), -1 = error. */
int sbx_store_append(struct sbx_store *st, const char *folder, const void *msg, size_t len,
		     time_t internaldate, unsigned flags, const char *keywords,
		     const char *delivery_id, uint32_t *uid_r, char **error_r);

struct sbx_store_msg {
	uint32_t uid;
	unsigned flags;
	char *keywords;          /* "" or "kw1 kw2", never NULL */
	uint64_t modseq;
	char internaldate[32];   /* ISO 8601 UTC, "2026-11-25T11:31:49Z" */
	uint64_t size;           /* RFC822.SIZE */
};
/* Messages of folder with UID >= uid_min, in UID order. */
int sbx_store_list(struct sbx_store *st, const char *folder, uint32_t uid_min,
		   struct sbx_store_msg **v_r, size_t *n_r, char **error_r);
void sbx_store_msgs_free(struct sbx_store_msg *v, size_t n);

/* The raw message, byte-exact as delivered (malloc'd, NUL-terminated). */
int sbx_store_fetch_raw(struct sbx_store *st, const char *folder, uint32_t uid,
			char **data_r, size_t *len_r, char **error_r);
/* BODY[spec]<off.maxlen> (mime.h sbx_mime_fetch_section); maxlen
 * UINT64_MAX for the whole section. Partial ranges past the end give "". */
int sbx_store_fetch_section(struct sbx_store *st, const char *folder, uint32_t uid,
			    const char *spec, uint64_t off, uint64_t maxlen,
			    char **data_r, size_t *len_r, char **error_r);

struct sbx_store_info {
	char *envelope, *bodystructure, *body;   /* IMAP strings */
	uint64_t size;                           /* RFC822.SIZE */
	char *message_id, *in_reply_to, *references;  /* NULL when absent */
	int64_t sent_ts;                         /* Date: as Unix time, or -1 */
};
int sbx_store_fetch_info(struct sbx_store *st, const char *folder, uint32_t uid,
			 struct sbx_store_info *info_r, char **error_r);
void sbx_store_info_free(struct sbx_store_info *info);

enum sbx_store_op {
	SBX_STORE_SET,     /* FLAGS */
	SBX_STORE_ADD,     /* +FLAGS */
	SBX_STORE_REMOVE,  /* -FLAGS */
};
struct sbx_store_result {
	uint32_t *uids;      /* changed (store), expunged, or copied source UIDs */
	size_t n;
	uint32_t *new_uids;  /* copy/move: the destination UIDs, same order */
	uint32_t *failed;    /* store: UNCHANGEDSINCE failed (MODIFIED) */
	size_t nfailed;
	uint64_t modseq;     /* the folder's new HIGHESTMODSEQ */
	uint32_t uidvalidity;  /* copy/move: the destination's */
};
void sbx_store_result_free(struct sbx_store_result *r);

/* Change flags and keywords of the messages in ranges (synchronous=NORMAL).
 * Messages whose state changes get one new MODSEQ. unchangedsince != 0
 * (CONDSTORE): a message with MODSEQ above it is left alone and listed in
 * r->failed. Keywords as in append. */
int sbx_store_store(struct sbx_store *st, const char *folder,
		    const struct sbx_uid_range *ranges, size_t nranges,
		    enum sbx_store_op op, unsigned flags, const char *keywords,
		    uint64_t unchangedsince, struct sbx_store_result *r, char **error_r);

/* Remove the messages in ranges (those with \Deleted only, when
 * deleted_only); their UIDs go to the tombstones with a new MODSEQ. */
int sbx_store_expunge(struct sbx_store *st, const char *folder,
		      const struct sbx_uid_range *ranges, size_t nranges, int deleted_only,
		      struct sbx_store_result *r, char **error_r);

/* Copy (move = 0) or move the messages in ranges to dst, keeping flags,
 * keywords and INTERNALDATE; r->uids / r->new_uids give COPYUID. The
 * message bytes are shared, not duplicated. */
int sbx_store_copy(struct sbx_store *st, const char *folder,
		   const struct sbx_uid_range *ranges, size_t nranges, const char *dst,
		   int move, struct sbx_store_result *r, char **error_r);

/* ---- folders ---- */

struct sbx_store_folder {
	char *name;
	uint32_t uidvalidity, uidnext;
	int subscribed;
	char *special_use;     /* "\\Sent" ... or NULL */
	uint64_t messages;
	uint64_t highestmodseq;
	int has_children;
};
int sbx_store_folders(struct sbx_store *st, struct sbx_store_folder **v_r, size_t *n_r, char **error_r);
void sbx_store_folders_free(struct sbx_store_folder *v, size_t n);

/* Create folder and any missing parents (RFC 3501 CREATE). */
int sbx_store_folder_create(struct sbx_store *st, const char *name, char **error_r);
/* Rename a folder and its children. Renaming INBOX moves its messages to
 * a new folder and leaves INBOX empty (RFC 3501 RENAME). */
int sbx_store_folder_rename(struct sbx_store *st, const char *from, const char *to, char **error_r);
/* Delete a folder and its messages. INBOX, and folders with children,
 * cannot be deleted. */
int sbx_store_folder_delete(struct sbx_store *st, const char *name, char **error_r);
int sbx_store_folder_subscribe(struct sbx_store *st, const char *name, int subscribe, char **error_r);
/* Keywords used in folder, space-separated (FLAGS response). */
int sbx_store_folder_keywords(struct sbx_store *st, const char *name, char **keywords_r, char **error_r);

struct sbx_store_status {
	uint64_t messages, recent, unseen, size;
	uint32_t uidnext, uidvalidity;
	uint64_t highestmodseq;
	uint32_t first_unseen_uid;   /* 0 when none */
};
int sbx_store_status(struct sbx_store *st, const char *folder, struct sbx_store_status *s_r,
		     char **error_r);
/* The first read-write SELECT of new messages claims them: UIDs in
 * (*lo_r, *hi_r] are \Recent for the caller's session and for no other. */
int sbx_store_claim_recent(struct sbx_store *st, const char *folder, uint32_t *lo_r,
			   uint32_t *hi_r, char **error_r);
/* CONDSTORE/QRESYNC: messages whose MODSEQ is above since (changed) and
 * the UIDs expunged after it (expunged). */
int sbx_store_changes(struct sbx_store *st, const char *folder, uint64_t since,
		      struct sbx_store_msg **changed_r, size_t *nchanged_r,
		      uint32_t **expunged_r, size_t *nexpunged_r, char **error_r);

/* Total RFC822.SIZE and messages in all folders (quota usage). */
int sbx_store_usage(struct sbx_store *st, uint64_t *bytes_r, uint64_t *msgs_r, char **error_r);
/* Internal: id of folder (NULL-safe errors), for search.c. */
int sbx_store_folder_id(struct sbx_store *st, const char *folder, int64_t *id_r, char **error_r);

/* ISO 8601 UTC text of t into out (>= 21 bytes). */
void sbx_iso8601(time_t t, char out[32]);
/* Normalise a keyword list (validate atoms, drop duplicates
 * case-insensitively, keep first spelling); malloc'd or NULL + error. */
char *sbx_store_keywords_normalize(const char *keywords, char **error_r);
#endif
