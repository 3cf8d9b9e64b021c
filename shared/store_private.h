/*
 * store_private.h - what store.c, store_ops.c and search.c share inside
 * libsealbox: the store handle, its cached statements and the
 * transaction helpers. Not for the daemons; they use store.h.
 */
#ifndef SBX_STORE_PRIVATE_H
#define SBX_STORE_PRIVATE_H
#include <sqlite3.h>

#include "store.h"

/* Statements prepared once per handle (SQLITE_PREPARE_PERSISTENT). */
enum sbx_stmt {
	Q_FOLDER,
	Q_MSG_INSERT,
	Q_MSG_GET,
	Q_UIDNEXT_SET,
	Q_MODSEQ_SET,
	Q_DELIVERED_GET,
	Q_DELIVERED_PUT,
	Q_CONTENT_INSERT,
	Q_CONTENT_GET,
	Q_CONTENT_PARTS,
	Q_CONTENT_REF,
	Q_PART_FIND,
	Q_PART_REF,
	Q_PART_INSERT,
	Q_CPART_INSERT,
	Q_FTS_INSERT,
	Q_INFO_GET,
	Q_KEYWORD_ADD,
	Q_KEYWORD_COUNT,
	Q_NSTMT
};

struct sbx_store {
	sqlite3 *db;
	char *path;
	int in_tx;
	int rdonly;
	sqlite3_stmt *stmts[Q_NSTMT];
};

/* The cached statement i, reset and unbound; NULL + *error_r on error.
 * Reset it (sqlite3_reset) after use so no read transaction lingers. */
sqlite3_stmt *sbx_store_stmt(struct sbx_store *st, enum sbx_stmt i, char **error_r);
/* -1 with *error_r describing the last SQLite error of db (damage from the
 * VFS is reported as such). */
int sbx_store_sql_err(sqlite3 *db, const char *what, char **error_r);
int sbx_store_exec(sqlite3 *db, const char *sql, char **error_r);

/* Start one operation's transaction, or join the caller's (sbx_store_begin).
 * full: synchronous=FULL (adds, moves, removes) or NORMAL (flags only).
 * *own_r tells tx_end whether to commit. */
int sbx_store_tx_begin(struct sbx_store *st, int full, int *own_r, char **error_r);
/* ok: commit (own) / nothing (joined); !ok: roll back (own). Returns ok
 * ? 0 : -1, or -1 with *error_r when the commit fails. */
int sbx_store_tx_end(struct sbx_store *st, int own, int ok, char **error_r);

/* Folder row by name ("inbox" finds INBOX). */
struct sbx_folder_row {
	int64_t id;
	uint32_t uidvalidity, uidnext, recent_uid;
	uint64_t highestmodseq;
};
int sbx_store_folder_get(struct sbx_store *st, const char *folder, struct sbx_folder_row *f_r,
			 char **error_r);
/* Allocate the folder's next MODSEQ (HIGHESTMODSEQ + 1, stored). */
int sbx_store_modseq_next(struct sbx_store *st, struct sbx_folder_row *f, char **error_r);
/* Record keywords (normalised list) as used in folder, within the limit. */
int sbx_store_keywords_register(struct sbx_store *st, int64_t folder_id, const char *keywords,
				char **error_r);
#endif
