/* store.c - see store.h: opening, migrations, transactions, append and
 * fetch. Flags, expunge, copy and folders are in store_ops.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gmime/gmime.h>
#include <sodium.h>
#include <sqlite3.h>

#include "lock.h"
#include "mime.h"
#include "mimetext.h"
#include "store.h"
#include "store_private.h"
#include "util.h"
#include "vfs.h"

static int migrate_v1_messages(struct sbx_store *st, char **error_r);

/* Numbered migrations: migrations[i] takes the schema from version i to
 * i + 1: its SQL, then its C step (NULL for none), in one transaction.
 * Never edit one that has shipped; append a new one. */
static const struct {
	const char *sql;
	int (*step)(struct sbx_store *st, char **error_r);
} migrations[] = {
	/* 1: the foundation schema. */
	{ "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	  "CREATE TABLE folders("
	  "  id INTEGER PRIMARY KEY,"
	  "  name TEXT NOT NULL UNIQUE,"
	  "  uidvalidity INTEGER NOT NULL,"
	  "  uidnext INTEGER NOT NULL DEFAULT 1,"
	  "  subscribed INTEGER NOT NULL DEFAULT 1,"
	  "  special_use TEXT);"
	  "CREATE TABLE messages("
	  "  id INTEGER PRIMARY KEY,"
	  "  folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"
	  "  uid INTEGER NOT NULL,"
	  "  flags INTEGER NOT NULL DEFAULT 0,"
	  "  internaldate TEXT NOT NULL,"
	  "  size INTEGER NOT NULL,"
	  "  raw BLOB NOT NULL,"
	  "  UNIQUE(folder_id, uid));"
	  "CREATE TABLE delivered(id TEXT PRIMARY KEY, at TEXT NOT NULL) WITHOUT ROWID;", NULL },
	/* 2: IMAP metadata, MIME part table, de-duplicated leaf bodies,
	 * tombstones and the FTS5 trigram index. The message bytes move to
	 * `contents` (shared by copies) so `messages` stays narrow and a
	 * flag or UID scan never reads a body. */
	{ "ALTER TABLE folders ADD COLUMN highestmodseq INTEGER NOT NULL DEFAULT 1;"
	  "ALTER TABLE folders ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 0;"
	  "ALTER TABLE messages RENAME TO messages_v1;"
	  "CREATE TABLE contents("
	  "  id INTEGER PRIMARY KEY,"
	  "  refs INTEGER NOT NULL,"           /* messages rows using it */
	  "  raw_len INTEGER NOT NULL,"        /* octets as delivered */
	  "  hdr_len INTEGER NOT NULL,"        /* top-level header, in rest */
	  "  sent_ts INTEGER,"                 /* Date: as Unix time */
	  "  sent_day TEXT,"                   /* Date:'s own day, YYYY-MM-DD */
	  "  envelope TEXT NOT NULL,"
	  "  bodystructure TEXT NOT NULL,"
	  "  body TEXT NOT NULL,"
	  "  sections TEXT NOT NULL,"          /* part table (mime.h) */
	  "  message_id TEXT, in_reply_to TEXT, refs_hdr TEXT,"
	  "  rest BLOB NOT NULL);"             /* raw minus the cut parts */
	  "CREATE TABLE parts("
	  "  id INTEGER PRIMARY KEY,"
	  "  hash BLOB NOT NULL UNIQUE,"       /* BLAKE2b-256 of data */
	  "  refs INTEGER NOT NULL,"
	  "  data BLOB NOT NULL);"
	  "CREATE TABLE content_parts("
	  "  content_id INTEGER NOT NULL REFERENCES contents(id),"
	  "  off INTEGER NOT NULL,"            /* offset in the raw message */
	  "  part_id INTEGER NOT NULL REFERENCES parts(id),"
	  "  PRIMARY KEY(content_id, off)) WITHOUT ROWID;"
	  "CREATE TABLE messages("
	  "  id INTEGER PRIMARY KEY,"
	  "  folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"
	  "  uid INTEGER NOT NULL,"
	  "  content_id INTEGER NOT NULL REFERENCES contents(id),"
	  "  flags INTEGER NOT NULL DEFAULT 0,"
	  "  keywords TEXT NOT NULL DEFAULT '',"
	  "  modseq INTEGER NOT NULL,"
	  "  internaldate TEXT NOT NULL,"
	  "  size INTEGER NOT NULL,"           /* RFC822.SIZE */
	  "  UNIQUE(folder_id, uid));"
	  "CREATE INDEX messages_modseq ON messages(folder_id, modseq);"
	  "CREATE INDEX messages_content ON messages(content_id);"
	  "CREATE TABLE tombstones("
	  "  folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"
	  "  uid INTEGER NOT NULL,"
	  "  modseq INTEGER NOT NULL,"
	  "  PRIMARY KEY(folder_id, uid)) WITHOUT ROWID;"
	  "CREATE TABLE folder_keywords("
	  "  folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"
	  "  name TEXT NOT NULL COLLATE NOCASE,"
	  "  PRIMARY KEY(folder_id, name)) WITHOUT ROWID;"
	  "CREATE VIRTUAL TABLE fts USING fts5(h_from, h_to, h_cc, h_bcc, subject, hdrs, body,"
	  "  tokenize='trigram');"
	  /* FTS5 writes 4050-byte index blocks by default; a sealed page holds
	   * at most 4021 bytes (40 reserved), so nearly every block would
	   * spill into a second page (bench/RESULTS.md). */
	  "INSERT INTO fts(fts, rank) VALUES ('pgsz', 4000);"
	  /* Reference counting: the last message row frees its content; a
	   * freed content frees its FTS row and its unshared parts. Cascade
	   * deletes from folders fire these too. */
	  "CREATE TRIGGER messages_del AFTER DELETE ON messages BEGIN"
	  "  UPDATE contents SET refs = refs - 1 WHERE id = old.content_id;"
	  "  DELETE FROM contents WHERE id = old.content_id AND refs <= 0;"
	  " END;"
	  "CREATE TRIGGER contents_del AFTER DELETE ON contents BEGIN"
	  "  DELETE FROM fts WHERE rowid = old.id;"
	  "  UPDATE parts SET refs = refs - (SELECT count(*) FROM content_parts cp"
	  "    WHERE cp.content_id = old.id AND cp.part_id = parts.id)"
	  "    WHERE id IN (SELECT part_id FROM content_parts WHERE content_id = old.id);"
	  "  DELETE FROM parts WHERE refs <= 0 AND"
	  "    id IN (SELECT part_id FROM content_parts WHERE content_id = old.id);"
	  "  DELETE FROM content_parts WHERE content_id = old.id;"
	  " END;", migrate_v1_messages },
};
#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

static const char *const stmt_sql[Q_NSTMT] = {
	[Q_FOLDER] = "SELECT id, uidvalidity, uidnext, recent_uid, highestmodseq FROM folders "
		     "WHERE name = ?",
	[Q_MSG_INSERT] = "INSERT INTO messages(folder_id, uid, content_id, flags, keywords, modseq, "
			 "internaldate, size) VALUES (?,?,?,?,?,?,?,?)",
	[Q_MSG_GET] = "SELECT content_id FROM messages WHERE folder_id = ? AND uid = ?",
	[Q_UIDNEXT_SET] = "UPDATE folders SET uidnext = ? WHERE id = ?",
	[Q_MODSEQ_SET] = "UPDATE folders SET highestmodseq = ? WHERE id = ?",
	[Q_DELIVERED_GET] = "SELECT 1 FROM delivered WHERE id = ?",
	[Q_DELIVERED_PUT] = "INSERT INTO delivered(id, at) VALUES (?, ?)",
	[Q_CONTENT_INSERT] = "INSERT INTO contents(refs, raw_len, hdr_len, sent_ts, sent_day, envelope, "
			     "bodystructure, body, sections, message_id, in_reply_to, refs_hdr, rest) "
			     "VALUES (0,?,?,?,?,?,?,?,?,?,?,?,?)",
	[Q_CONTENT_GET] = "SELECT raw_len, rest, sections FROM contents WHERE id = ?",
	[Q_CONTENT_PARTS] = "SELECT cp.off, p.data FROM content_parts cp JOIN parts p ON p.id = cp.part_id "
			    "WHERE cp.content_id = ? ORDER BY cp.off",
	[Q_CONTENT_REF] = "UPDATE contents SET refs = refs + 1 WHERE id = ?",
	[Q_PART_FIND] = "SELECT id, length(data) FROM parts WHERE hash = ?",
	[Q_PART_REF] = "UPDATE parts SET refs = refs + 1 WHERE id = ?",
	[Q_PART_INSERT] = "INSERT INTO parts(hash, refs, data) VALUES (?, 1, ?)",
	[Q_CPART_INSERT] = "INSERT INTO content_parts(content_id, off, part_id) VALUES (?,?,?)",
	[Q_FTS_INSERT] = "INSERT INTO fts(rowid, h_from, h_to, h_cc, h_bcc, subject, hdrs, body) "
			 "VALUES (?,?,?,?,?,?,?,?)",
	[Q_INFO_GET] = "SELECT c.envelope, c.bodystructure, c.body, m.size, c.message_id, c.in_reply_to, "
		       "c.refs_hdr, c.sent_ts FROM messages m JOIN contents c ON c.id = m.content_id "
		       "WHERE m.folder_id = ? AND m.uid = ?",
	[Q_KEYWORD_ADD] = "INSERT OR IGNORE INTO folder_keywords(folder_id, name) VALUES (?, ?)",
	[Q_KEYWORD_COUNT] = "SELECT count(*) FROM folder_keywords WHERE folder_id = ?",
};

static const struct {
	const char *name, *special_use;
} default_folders[] = {
	{ "INBOX", NULL },
	{ "Sent", "\\Sent" },
	{ "Drafts", "\\Drafts" },
	{ "Trash", "\\Trash" },
	{ "Junk", "\\Junk" },
	{ "Archive", "\\Archive" },
};

void
sbx_iso8601(time_t t, char out[32])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int
is_damage(int code)
{
	return code == SQLITE_IOERR_DATA || code == SQLITE_NOTADB || (code & 0xff) == SQLITE_CORRUPT;
}

int
sbx_store_sql_err(sqlite3 *db, const char *what, char **error_r)
{
	const char *vfs = sbx_vfs_last_error();

	if (is_damage(sqlite3_extended_errcode(db)) && vfs[0])
		*error_r = sbx_xasprintf("%s: mailbox file damaged: %s", what, vfs);
	else
		*error_r = sbx_xasprintf("%s: %s", what, sqlite3_errmsg(db));
	return -1;
}
#define sql_err sbx_store_sql_err

int
sbx_store_exec(sqlite3 *db, const char *sql, char **error_r)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		const char *vfs = sbx_vfs_last_error();

		if (is_damage(sqlite3_extended_errcode(db)) && vfs[0])
			*error_r = sbx_xasprintf("mailbox file damaged: %s", vfs);
		else
			*error_r = sbx_xasprintf("%s", err ? err : sqlite3_errmsg(db));
		sqlite3_free(err);
		return -1;
	}
	return 0;
}
#define exec sbx_store_exec

sqlite3_stmt *
sbx_store_stmt(struct sbx_store *st, enum sbx_stmt i, char **error_r)
{
	if (st->stmts[i] == NULL) {
		if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &st->stmts[i], NULL) != SQLITE_OK) {
			sql_err(st->db, "preparing a query", error_r);
			st->stmts[i] = NULL;
			return NULL;
		}
	} else {
		sqlite3_reset(st->stmts[i]);
		sqlite3_clear_bindings(st->stmts[i]);
	}
	return st->stmts[i];
}

/* Step a write statement to DONE and reset it. */
static int
step_done(struct sbx_store *st, sqlite3_stmt *s, const char *what, char **error_r)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return sql_err(st->db, what, error_r);
	return 0;
}

static int
user_version(sqlite3 *db, int *v_r, char **error_r)
{
	sqlite3_stmt *s;

	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
		return sql_err(db, "reading schema version", error_r);
	if (sqlite3_step(s) != SQLITE_ROW) {
		sqlite3_finalize(s);
		return sql_err(db, "reading schema version", error_r);
	}
	*v_r = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return 0;
}

/* Bring the schema to version target (NMIGRATIONS for the current one). */
static int
migrate(struct sbx_store *st, int target, char **error_r)
{
	int v, i;

	if (exec(st->db, "BEGIN IMMEDIATE", error_r) < 0)
		return -1;
	if (user_version(st->db, &v, error_r) < 0)
		goto fail;
	if (v > NMIGRATIONS) {
		*error_r = sbx_xasprintf("mailbox schema version %d is newer than this sealbox (%d)", v, NMIGRATIONS);
		goto fail;
	}
	st->in_tx = 1;   /* migration steps join this transaction */
	for (i = v; i < target; i++) {
		char *sql;

		if (exec(st->db, migrations[i].sql, error_r) < 0)
			goto fail;
		if (migrations[i].step != NULL && migrations[i].step(st, error_r) < 0)
			goto fail;
		sql = sbx_xasprintf("PRAGMA user_version=%d", i + 1);
		if (exec(st->db, sql, error_r) < 0) {
			free(sql);
			goto fail;
		}
		free(sql);
	}
	st->in_tx = 0;
	if (exec(st->db, "COMMIT", error_r) < 0)
		goto fail;
	return 0;
fail:
	st->in_tx = 0;
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static void
store_free(struct sbx_store *st)
{
	size_t i;

	for (i = 0; i < Q_NSTMT; i++)
		sqlite3_finalize(st->stmts[i]);
	sqlite3_close(st->db);
	free(st->path);
	free(st);
}

/* Open path (encrypted with vfs_key, or plain when NULL) with the store's
 * pragmas; a handle without schema checks. */
static int
db_open(const char *path, const unsigned char *vfs_key, int flags, struct sbx_store **st_r,
	char **error_r)
{
	struct sbx_store *st;
	sqlite3 *db = NULL;
	char *sql;

	if (vfs_key != NULL) {
		if (sbx_vfs_open_db(path, vfs_key, flags, &db, error_r) != SQLITE_OK)
			return -1;
	} else if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK ||
		   exec(db, "PRAGMA temp_store=MEMORY", error_r) < 0) {
		if (*error_r == NULL)
			*error_r = sbx_xasprintf("%s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return -1;
	}
	sqlite3_busy_timeout(db, 5000);
	sql = sbx_xasprintf("PRAGMA foreign_keys=ON; PRAGMA cache_size=-%d; PRAGMA synchronous=FULL;",
			    SBX_STORE_CACHE_KIB);
	if (exec(db, sql, error_r) < 0) {
		free(sql);
		sqlite3_close(db);
		return -1;
	}
	free(sql);
	st = sbx_xcalloc(1, sizeof(*st));
	st->db = db;
	st->path = sbx_xstrdup(path);
	*st_r = st;
	return 0;
}

static void
unlink_db(const char *path)
{
	char *w = sbx_xasprintf("%s-wal", path), *s = sbx_xasprintf("%s-shm", path);

	unlink(path);
	unlink(w);
	unlink(s);
	free(w);
	free(s);
}

/* A new mailbox file at path with the default folders, at schema_version
 * (0 = current); mailbox_id, when given, is recorded in meta. */
static int
create_file(const char *path, const unsigned char *vfs_key, int schema_version,
	    const char *mailbox_id, char **error_r)
{
	struct sbx_store *st = NULL;
	sqlite3_stmt *s = NULL;
	struct stat sb;
	size_t i;
	uint32_t uidvalidity = (uint32_t)time(NULL);
	char now[32];

	if (schema_version < 0 || schema_version > NMIGRATIONS) {
		*error_r = sbx_xasprintf("no schema version %d", schema_version);
		return -1;
	}
	if (schema_version == 0)
		schema_version = NMIGRATIONS;
	if (stat(path, &sb) == 0) {
		*error_r = sbx_xasprintf("mailbox file already exists: %s", path);
		return -1;
	}
	if (db_open(path, vfs_key, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &st, error_r) < 0)
		return -1;
	if (chmod(path, 0600) < 0) {
		*error_r = sbx_xasprintf("chmod %s: %s", path, strerror(errno));
		goto fail;
	}
	if (exec(st->db, "PRAGMA encoding='UTF-8'; PRAGMA journal_mode=WAL;", error_r) < 0 ||
	    migrate(st, schema_version, error_r) < 0 ||
	    exec(st->db, "BEGIN IMMEDIATE", error_r) < 0)
		goto fail;
	if (sqlite3_prepare_v2(st->db, "INSERT INTO folders(name, uidvalidity, special_use) VALUES (?,?,?)",
			       -1, &s, NULL) != SQLITE_OK) {
		sql_err(st->db, "creating folders", error_r);
		goto fail;
	}
	for (i = 0; i < sizeof(default_folders) / sizeof(default_folders[0]); i++) {
		sqlite3_bind_text(s, 1, default_folders[i].name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, uidvalidity);
		if (default_folders[i].special_use)
			sqlite3_bind_text(s, 3, default_folders[i].special_use, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(s, 3);
		if (sqlite3_step(s) != SQLITE_DONE) {
			sql_err(st->db, "creating folders", error_r);
			goto fail;
		}
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	s = NULL;
	sbx_iso8601(time(NULL), now);
	if (sqlite3_prepare_v2(st->db, "INSERT INTO meta(key, value) VALUES ('created', ?), "
			       "('next_uidvalidity', ?), ('mailbox_id', ?)", -1, &s, NULL) != SQLITE_OK) {
		sql_err(st->db, "creating mailbox", error_r);
		goto fail;
	}
	sqlite3_bind_text(s, 1, now, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)uidvalidity + 1);
	sqlite3_bind_text(s, 3, mailbox_id != NULL ? mailbox_id : "", -1, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_DONE) {
		sql_err(st->db, "creating mailbox", error_r);
		goto fail;
	}
	sqlite3_finalize(s);
	s = NULL;
	if (exec(st->db, "COMMIT", error_r) < 0 ||
	    exec(st->db, "PRAGMA wal_checkpoint(TRUNCATE)", error_r) < 0)
		goto fail;
	store_free(st);
	return 0;
fail:
	sqlite3_finalize(s);
	store_free(st);
	unlink_db(path);
	return -1;
}

int
sbx_store_create_path(const char *path, const unsigned char *vfs_key, int schema_version,
		      char **error_r)
{
	return create_file(path, vfs_key, schema_version, NULL, error_r);
}

int
sbx_store_create(const char *state_dir, const char *mailbox_id,
		 const struct sbx_mailbox_keys *keys, char **error_r)
{
	char *path = sbx_mailbox_path(state_dir, mailbox_id, ".sqlite"), *dir, *slash;
	unsigned char vkey[SBX_KEY_BYTES];
	int rc = -1;

	if (path == NULL) {
		*error_r = sbx_xasprintf("invalid mailbox id: %s", mailbox_id);
		return -1;
	}
	dir = sbx_xstrdup(path);
	slash = strrchr(dir, '/');
	*slash = '\0';
	if (sbx_mkdir_p(dir, 0700) < 0) {
		*error_r = sbx_xasprintf("cannot create %s: %s", dir, strerror(errno));
		goto out;
	}
	sbx_keys_derive(keys, SBX_SUBKEY_VFS, vkey);
	rc = create_file(path, vkey, 0, mailbox_id, error_r);
	sodium_memzero(vkey, sizeof(vkey));
	if (rc == 0 && sbx_fsync_dir(dir) < 0) {
		*error_r = sbx_xasprintf("fsync %s: %s", dir, strerror(errno));
		rc = -1;
	}
out:
	free(dir);
	free(path);
	return rc;
}

int
sbx_store_open_path(const char *path, const unsigned char *vfs_key, int flags,
		    struct sbx_store **st_r, char **error_r)
{
	struct sbx_store *st;
	struct stat sb;
	int v;

	if (stat(path, &sb) < 0) {
		*error_r = sbx_xasprintf("mailbox file missing: %s: %s", path, strerror(errno));
		return -1;
	}
	if (db_open(path, vfs_key, (flags & SBX_STORE_RDONLY) ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE,
		    &st, error_r) < 0)
		return -1;
	if (user_version(st->db, &v, error_r) < 0)
		goto fail;
	if (v > NMIGRATIONS) {
		*error_r = sbx_xasprintf("%s: mailbox schema version %d is newer than this sealbox (%d)",
					 path, v, NMIGRATIONS);
		goto fail;
	}
	if (!(flags & SBX_STORE_RDONLY)) {
		if (exec(st->db, "PRAGMA journal_mode=WAL", error_r) < 0)
			goto fail;
		if (v < NMIGRATIONS && migrate(st, NMIGRATIONS, error_r) < 0)
			goto fail;
	} else if (v < NMIGRATIONS) {
		*error_r = sbx_xasprintf("%s: schema version %d needs a migration (open it read-write)", path, v);
		goto fail;
	}
	st->rdonly = (flags & SBX_STORE_RDONLY) != 0;
	*st_r = st;
	return 0;
fail:
	store_free(st);
	return -1;
}

int
sbx_store_open(const char *state_dir, const char *mailbox_id,
	       const struct sbx_mailbox_keys *keys, int flags,
	       struct sbx_store **st_r, char **error_r)
{
	char *path = sbx_mailbox_path(state_dir, mailbox_id, ".sqlite");
	unsigned char vkey[SBX_KEY_BYTES];
	int rc;

	if (path == NULL) {
		*error_r = sbx_xasprintf("invalid mailbox id: %s", mailbox_id);
		return -1;
	}
	sbx_keys_derive(keys, SBX_SUBKEY_VFS, vkey);
	rc = sbx_store_open_path(path, vkey, flags, st_r, error_r);
	sodium_memzero(vkey, sizeof(vkey));
	free(path);
	return rc;
}

void
sbx_store_close(struct sbx_store **stp)
{
	struct sbx_store *st = *stp;
	size_t i;

	if (st == NULL)
		return;
	for (i = 0; i < Q_NSTMT; i++) {
		sqlite3_finalize(st->stmts[i]);
		st->stmts[i] = NULL;
	}
	if (st->in_tx)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	if (!st->rdonly)
		sqlite3_exec(st->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
	store_free(st);
	*stp = NULL;
}

struct sqlite3 *
sbx_store_db(struct sbx_store *st)
{
	return st->db;
}

int
sbx_store_begin(struct sbx_store *st, char **error_r)
{
	if (st->in_tx) {
		*error_r = sbx_xstrdup("transaction already open");
		return -1;
	}
	if (exec(st->db, "PRAGMA synchronous=FULL; BEGIN IMMEDIATE", error_r) < 0)
		return -1;
	st->in_tx = 1;
	return 0;
}

int
sbx_store_commit(struct sbx_store *st, char **error_r)
{
	if (!st->in_tx) {
		*error_r = sbx_xstrdup("no transaction open");
		return -1;
	}
	if (exec(st->db, "COMMIT", error_r) < 0) {
		sbx_store_rollback(st);
		return -1;
	}
	st->in_tx = 0;
	return 0;
}

void
sbx_store_rollback(struct sbx_store *st)
{
	if (st->in_tx)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	st->in_tx = 0;
}

int
sbx_store_tx_begin(struct sbx_store *st, int full, int *own_r, char **error_r)
{
	if (st->rdonly) {
		*error_r = sbx_xstrdup("mailbox opened read-only");
		return -1;
	}
	if (st->in_tx) {
		*own_r = 0;
		return 0;
	}
	if (exec(st->db, full ? "PRAGMA synchronous=FULL; BEGIN IMMEDIATE" :
		 "PRAGMA synchronous=NORMAL; BEGIN IMMEDIATE", error_r) < 0) {
		sqlite3_exec(st->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
		return -1;
	}
	st->in_tx = 1;
	*own_r = 1;
	return 0;
}

int
sbx_store_tx_end(struct sbx_store *st, int own, int ok, char **error_r)
{
	int rc = ok ? 0 : -1;

	if (!own)
		return rc;
	if (ok && exec(st->db, "COMMIT", error_r) < 0)
		rc = -1;
	if (rc < 0)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	st->in_tx = 0;
	sqlite3_exec(st->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
	return rc;
}

int
sbx_store_delivered(struct sbx_store *st, const char *delivery_id, char **error_r)
{
	sqlite3_stmt *s = sbx_store_stmt(st, Q_DELIVERED_GET, error_r);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, delivery_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return sql_err(st->db, "checking delivery id", error_r);
}

int
sbx_store_folder_get(struct sbx_store *st, const char *folder, struct sbx_folder_row *f_r,
		     char **error_r)
{
	sqlite3_stmt *s = sbx_store_stmt(st, Q_FOLDER, error_r);
	int rc;

	if (s == NULL)
		return -1;
	if (strncasecmp(folder, "INBOX", 5) == 0 && (folder[5] == '\0' || folder[5] == '/')) {
		/* INBOX is case-insensitive, its children's names are not */
		sqlite3_bind_text(s, 1, "INBOX", 5, SQLITE_STATIC);
		if (folder[5] != '\0')
			sqlite3_bind_text(s, 1, sbx_xasprintf("INBOX%s", folder + 5), -1, free);
	} else {
		sqlite3_bind_text(s, 1, folder, -1, SQLITE_STATIC);
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		f_r->id = sqlite3_column_int64(s, 0);
		f_r->uidvalidity = (uint32_t)sqlite3_column_int64(s, 1);
		f_r->uidnext = (uint32_t)sqlite3_column_int64(s, 2);
		f_r->recent_uid = (uint32_t)sqlite3_column_int64(s, 3);
		f_r->highestmodseq = (uint64_t)sqlite3_column_int64(s, 4);
		sqlite3_reset(s);
		return 0;
	}
	sqlite3_reset(s);
	if (rc == SQLITE_DONE) {
		*error_r = sbx_xasprintf("no such folder: %s", folder);
		return -1;
	}
	return sql_err(st->db, "finding folder", error_r);
}

int
sbx_store_folder_id(struct sbx_store *st, const char *folder, int64_t *id_r, char **error_r)
{
	struct sbx_folder_row f;

	if (sbx_store_folder_get(st, folder, &f, error_r) < 0)
		return -1;
	*id_r = f.id;
	return 0;
}

int
sbx_store_modseq_next(struct sbx_store *st, struct sbx_folder_row *f, char **error_r)
{
	sqlite3_stmt *s = sbx_store_stmt(st, Q_MODSEQ_SET, error_r);

	if (s == NULL)
		return -1;
	if (f->highestmodseq >= (uint64_t)INT64_MAX) {
		*error_r = sbx_xstrdup("folder has run out of MODSEQs");
		return -1;
	}
	f->highestmodseq++;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)f->highestmodseq);
	sqlite3_bind_int64(s, 2, f->id);
	return step_done(st, s, "updating MODSEQ", error_r);
}

/* ---- keywords ---- */

static int
keyword_valid(const char *k, size_t n)
{
	size_t i;

	if (n == 0 || n > SBX_STORE_MAX_KEYWORD_LEN || k[0] == '\\')
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)k[i];

		/* IMAP atom: no atom-specials, CTL, space or 8-bit */
		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return 0;
	}
	return 1;
}

char *
sbx_store_keywords_normalize(const char *keywords, char **error_r)
{
	struct sbx_buf b = { 0 };
	const char *p = keywords != NULL ? keywords : "";
	size_t count = 0;

	sbx_buf_append(&b, "", 1);
	b.len = 0;
	while (*p != '\0') {
		const char *e;
		size_t n;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		e = strchr(p, ' ');
		n = e != NULL ? (size_t)(e - p) : strlen(p);
		if (!keyword_valid(p, n)) {
			*error_r = sbx_xasprintf("invalid keyword: %.*s", (int)(n > 80 ? 80 : n), p);
			sbx_buf_free(&b);
			return NULL;
		}
		/* drop a case-insensitive duplicate */
		{
			const char *q = b.data;
			int dup = 0;

			while (q < b.data + b.len) {
				const char *qe = memchr(q, ' ', (size_t)(b.data + b.len - q));
				size_t qn = qe != NULL ? (size_t)(qe - q) : (size_t)(b.data + b.len - q);

				if (qn == n && strncasecmp(q, p, n) == 0) {
					dup = 1;
					break;
				}
				q += qn + 1;
			}
			if (!dup) {
				if (++count > SBX_STORE_MAX_KEYWORDS) {
					*error_r = sbx_xasprintf("more than %d keywords", SBX_STORE_MAX_KEYWORDS);
					sbx_buf_free(&b);
					return NULL;
				}
				if (b.len > 0)
					sbx_buf_append(&b, " ", 1);
				sbx_buf_append(&b, p, n);
			}
		}
		p += n;
	}
	sbx_buf_append(&b, "", 1);
	return b.data;
}

int
sbx_store_keywords_register(struct sbx_store *st, int64_t folder_id, const char *keywords,
			    char **error_r)
{
	const char *p = keywords;
	sqlite3_stmt *s;
	int added = 0;

	while (*p != '\0') {
		const char *e = strchr(p, ' ');
		size_t n = e != NULL ? (size_t)(e - p) : strlen(p);

		if ((s = sbx_store_stmt(st, Q_KEYWORD_ADD, error_r)) == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, folder_id);
		sqlite3_bind_text(s, 2, p, (int)n, SQLITE_STATIC);
		if (step_done(st, s, "recording keyword", error_r) < 0)
			return -1;
		added += sqlite3_changes(st->db);
		p += n;
		while (*p == ' ')
			p++;
	}
	if (added > 0) {
		sqlite3_int64 count;

		if ((s = sbx_store_stmt(st, Q_KEYWORD_COUNT, error_r)) == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, folder_id);
		if (sqlite3_step(s) != SQLITE_ROW) {
			sqlite3_reset(s);
			return sql_err(st->db, "counting keywords", error_r);
		}
		count = sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
		if (count > SBX_STORE_MAX_KEYWORDS) {
			*error_r = sbx_xasprintf("folder would have more than %d keywords",
						 SBX_STORE_MAX_KEYWORDS);
			return -1;
		}
	}
	return 0;
}

/* ---- contents: the message bytes and what is computed from them ---- */

static void
bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
	if (v != NULL)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

/* Store one leaf body once per mailbox; *part_id_r is its parts row. */
static int
part_put(struct sbx_store *st, const char *data, size_t len, int64_t *part_id_r, char **error_r)
{
	unsigned char hash[32];
	sqlite3_stmt *s;
	int rc;

	crypto_generichash(hash, sizeof(hash), (const unsigned char *)data, len, NULL, 0);
	if ((s = sbx_store_stmt(st, Q_PART_FIND, error_r)) == NULL)
		return -1;
	sqlite3_bind_blob(s, 1, hash, sizeof(hash), SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(s, 0);
		uint64_t have = (uint64_t)sqlite3_column_int64(s, 1);

		sqlite3_reset(s);
		if (have != len) {
			*error_r = sbx_xstrdup("storing part: hash matches a part of another length");
			return -1;
		}
		if ((s = sbx_store_stmt(st, Q_PART_REF, error_r)) == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, id);
		if (step_done(st, s, "storing part", error_r) < 0)
			return -1;
		*part_id_r = id;
		return 0;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return sql_err(st->db, "storing part", error_r);
	if ((s = sbx_store_stmt(st, Q_PART_INSERT, error_r)) == NULL)
		return -1;
	sqlite3_bind_blob(s, 1, hash, sizeof(hash), SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, data, (int)len, SQLITE_STATIC);
	if (step_done(st, s, "storing part", error_r) < 0)
		return -1;
	*part_id_r = sqlite3_last_insert_rowid(st->db);
	return 0;
}

/* Date: as Unix time and as its own calendar day ("YYYY-MM-DD"). */
static int
sent_date(const char *date, int64_t *ts_r, char day[11])
{
	GDateTime *dt;
	gchar *s;

	if (date == NULL || (dt = g_mime_utils_header_decode_date(date)) == NULL)
		return -1;
	*ts_r = g_date_time_to_unix(dt);
	s = g_date_time_format(dt, "%Y-%m-%d");
	if (s == NULL || strlen(s) != 10) {
		g_free(s);
		g_date_time_unref(dt);
		return -1;
	}
	memcpy(day, s, 11);
	g_free(s);
	g_date_time_unref(dt);
	return 0;
}

/* Parse msg once and store it as a new contents row (refs 0: the caller
 * adds the message row, then sbx_store_content_ref). */
static int
content_add(struct sbx_store *st, const char *msg, size_t len, int64_t *content_id_r,
	    uint64_t *size_r, char **error_r)
{
	struct sbx_mime_info info;
	struct sbx_mime_text text;
	struct sbx_buf rest = { 0 };
	int64_t *part_ids = NULL, id, sent_ts;
	size_t *cut_off = NULL, ncut = 0, pos = 0, i;
	sqlite3_stmt *s;
	char day[11];
	int rc = -1, have_date;

	memset(&text, 0, sizeof(text));
	if (sbx_mime_parse(msg, len, &info, error_r) < 0)
		return -1;
	if (sbx_mime_text_extract(msg, len, SBX_STORE_FTS_MAX_BODY, &text, error_r) < 0)
		goto out;
	have_date = sent_date(info.date, &sent_ts, day) == 0;

	/* Cut the large leaf bodies out; the rest keeps everything else. */
	part_ids = sbx_xcalloc(info.nleaves + 1, sizeof(*part_ids));
	cut_off = sbx_xcalloc(info.nleaves + 1, sizeof(*cut_off));
	sbx_buf_append(&rest, "", 0);
	for (i = 0; i < info.nleaves; i++) {
		const struct sbx_mime_leaf *lf = &info.leaves[i];

		if (lf->len < SBX_STORE_DEDUP_MIN)
			continue;
		if (lf->off < pos || lf->off > len || lf->len > len - lf->off) {
			*error_r = sbx_xstrdup("storing message: MIME part table out of order");
			goto out;
		}
		if (part_put(st, msg + lf->off, lf->len, &part_ids[ncut], error_r) < 0)
			goto out;
		sbx_buf_append(&rest, msg + pos, lf->off - pos);
		cut_off[ncut++] = lf->off;
		pos = lf->off + lf->len;
	}
	sbx_buf_append(&rest, msg + pos, len - pos);

	if ((s = sbx_store_stmt(st, Q_CONTENT_INSERT, error_r)) == NULL)
		goto out;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)len);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)info.hdr_len);
	if (have_date) {
		sqlite3_bind_int64(s, 3, sent_ts);
		sqlite3_bind_text(s, 4, day, 10, SQLITE_STATIC);
	}
	sqlite3_bind_text(s, 5, info.envelope, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, info.bodystructure, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 7, info.body, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, info.sections, -1, SQLITE_STATIC);
	bind_text_or_null(s, 9, info.message_id);
	bind_text_or_null(s, 10, info.in_reply_to);
	bind_text_or_null(s, 11, info.references);
	sqlite3_bind_blob(s, 12, rest.len ? rest.data : "", (int)rest.len, SQLITE_STATIC);
	if (step_done(st, s, "storing message", error_r) < 0)
		goto out;
	id = sqlite3_last_insert_rowid(st->db);
	for (i = 0; i < ncut; i++) {
		if ((s = sbx_store_stmt(st, Q_CPART_INSERT, error_r)) == NULL)
			goto out;
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)cut_off[i]);
		sqlite3_bind_int64(s, 3, part_ids[i]);
		if (step_done(st, s, "storing message parts", error_r) < 0)
			goto out;
	}
	if ((s = sbx_store_stmt(st, Q_FTS_INSERT, error_r)) == NULL)
		goto out;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, text.from, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, text.to, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, text.cc, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, text.bcc, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, text.subject, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 7, text.headers, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, text.body, -1, SQLITE_STATIC);
	if (step_done(st, s, "indexing message", error_r) < 0)
		goto out;
	*content_id_r = id;
	*size_r = info.size;
	rc = 0;
out:
	free(part_ids);
	free(cut_off);
	sbx_wipe_free(rest.data, rest.cap);
	sbx_mime_text_free(&text);
	sbx_mime_info_free(&info);
	return rc;
}

static int
content_ref(struct sbx_store *st, int64_t content_id, char **error_r)
{
	sqlite3_stmt *s = sbx_store_stmt(st, Q_CONTENT_REF, error_r);

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, content_id);
	return step_done(st, s, "storing message", error_r);
}

/* The raw bytes of a content row, reassembled (malloc'd, NUL-terminated),
 * and its part table (malloc'd) when sections_r is not NULL. */
static int
content_raw(struct sbx_store *st, int64_t content_id, char **data_r, size_t *len_r,
	    char **sections_r, char **error_r)
{
	sqlite3_stmt *s = sbx_store_stmt(st, Q_CONTENT_GET, error_r);
	const char *rest;
	size_t raw_len, rest_len, rpos = 0, opos = 0;
	char *out;
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, content_id);
	if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
		sqlite3_reset(s);
		if (rc == SQLITE_DONE) {
			*error_r = sbx_xstrdup("fetching message: content missing (mailbox damaged)");
			return -1;
		}
		return sql_err(st->db, "fetching message", error_r);
	}
	raw_len = (size_t)sqlite3_column_int64(s, 0);
	rest = sqlite3_column_blob(s, 1);
	rest_len = (size_t)sqlite3_column_bytes(s, 1);
	if (raw_len > (size_t)INT32_MAX || rest_len > raw_len) {
		sqlite3_reset(s);
		*error_r = sbx_xstrdup("fetching message: sizes inconsistent (mailbox damaged)");
		return -1;
	}
	out = sbx_xmalloc(raw_len + 1);
	if (rest_len == raw_len) {
		/* nothing was cut out */
		if (raw_len)
			memcpy(out, rest, raw_len);
		opos = raw_len;
		rpos = rest_len;
	} else {
		char *rest_copy = sbx_xmalloc(rest_len + 1);
		sqlite3_stmt *p;

		memcpy(rest_copy, rest, rest_len);
		if ((p = sbx_store_stmt(st, Q_CONTENT_PARTS, error_r)) == NULL) {
			sbx_wipe_free(rest_copy, rest_len + 1);
			goto fail_out;
		}
		sqlite3_bind_int64(p, 1, content_id);
		while ((rc = sqlite3_step(p)) == SQLITE_ROW) {
			size_t off = (size_t)sqlite3_column_int64(p, 0);
			const void *data = sqlite3_column_blob(p, 1);
			size_t dlen = (size_t)sqlite3_column_bytes(p, 1);
			size_t gap = off - opos;

			if (off < opos || off > raw_len || gap > rest_len - rpos || dlen > raw_len - off) {
				rc = SQLITE_CORRUPT;
				break;
			}
			memcpy(out + opos, rest_copy + rpos, gap);
			rpos += gap;
			opos = off;
			if (dlen)
				memcpy(out + opos, data, dlen);
			opos += dlen;
		}
		sqlite3_reset(p);
		if (rc == SQLITE_DONE && raw_len - opos == rest_len - rpos) {
			memcpy(out + opos, rest_copy + rpos, rest_len - rpos);
			opos += rest_len - rpos;
			rpos = rest_len;
		} else if (rc == SQLITE_DONE || rc == SQLITE_CORRUPT) {
			*error_r = sbx_xstrdup("fetching message: parts do not fit (mailbox damaged)");
			sbx_wipe_free(rest_copy, rest_len + 1);
			goto fail_out;
		} else {
			sql_err(st->db, "fetching message parts", error_r);
			sbx_wipe_free(rest_copy, rest_len + 1);
			goto fail_out;
		}
		sbx_wipe_free(rest_copy, rest_len + 1);
	}
	if (sections_r != NULL) {
		const unsigned char *t = sqlite3_column_text(s, 2);

		*sections_r = sbx_xstrdup(t != NULL ? (const char *)t : "");
	}
	sqlite3_reset(s);
	out[raw_len] = '\0';
	*data_r = out;
	*len_r = raw_len;
	return 0;
fail_out:
	sqlite3_reset(s);
	sbx_wipe_free(out, raw_len + 1);
	return -1;
}

/* ---- append ---- */

int
sbx_store_append(struct sbx_store *st, const char *folder, const void *msg, size_t len,
		 time_t internaldate, unsigned flags, const char *keywords,
		 const char *delivery_id, uint32_t *uid_r, char **error_r)
{
	struct sbx_folder_row f;
	sqlite3_stmt *s;
	int64_t content_id;
	uint64_t size;
	char date[32], *kw = NULL;
	int own, rc;

	if (len > (size_t)INT32_MAX) {
		*error_r = sbx_xstrdup("message too large");
		return -1;
	}
	if ((flags & ~(unsigned)SBX_FLAGS_ALL) != 0) {
		*error_r = sbx_xasprintf("invalid flags 0x%x", flags);
		return -1;
	}
	if ((kw = sbx_store_keywords_normalize(keywords, error_r)) == NULL)
		return -1;
	if (sbx_store_tx_begin(st, 1, &own, error_r) < 0) {
		free(kw);
		return -1;
	}
	if (delivery_id != NULL) {
		rc = sbx_store_delivered(st, delivery_id, error_r);
		if (rc != 0) {
			free(kw);
			sbx_store_tx_end(st, own, 0, error_r);
			return rc;   /* 1: already delivered, nothing stored */
		}
	}
	if (sbx_store_folder_get(st, folder, &f, error_r) < 0)
		goto fail;
	if (f.uidnext == 0 || f.uidnext == UINT32_MAX) {
		*error_r = sbx_xasprintf("folder %s has run out of UIDs", folder);
		goto fail;
	}
	if (sbx_store_keywords_register(st, f.id, kw, error_r) < 0 ||
	    content_add(st, msg, len, &content_id, &size, error_r) < 0 ||
	    content_ref(st, content_id, error_r) < 0 ||
	    sbx_store_modseq_next(st, &f, error_r) < 0)
		goto fail;
	sbx_iso8601(internaldate, date);
	if ((s = sbx_store_stmt(st, Q_MSG_INSERT, error_r)) == NULL)
		goto fail;
	sqlite3_bind_int64(s, 1, f.id);
	sqlite3_bind_int64(s, 2, f.uidnext);
	sqlite3_bind_int64(s, 3, content_id);
	sqlite3_bind_int(s, 4, (int)flags);
	sqlite3_bind_text(s, 5, kw, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 6, (sqlite3_int64)f.highestmodseq);
	sqlite3_bind_text(s, 7, date, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 8, (sqlite3_int64)size);
	if (step_done(st, s, "storing message", error_r) < 0)
		goto fail;
	if ((s = sbx_store_stmt(st, Q_UIDNEXT_SET, error_r)) == NULL)
		goto fail;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)f.uidnext + 1);
	sqlite3_bind_int64(s, 2, f.id);
	if (step_done(st, s, "storing message", error_r) < 0)
		goto fail;
	if (delivery_id != NULL) {
		if ((s = sbx_store_stmt(st, Q_DELIVERED_PUT, error_r)) == NULL)
			goto fail;
		sqlite3_bind_text(s, 1, delivery_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, date, -1, SQLITE_STATIC);
		if (step_done(st, s, "recording delivery", error_r) < 0)
			goto fail;
	}
	free(kw);
	if (sbx_store_tx_end(st, own, 1, error_r) < 0)
		return -1;
	if (uid_r)
		*uid_r = f.uidnext;
	return 0;
fail:
	free(kw);
	sbx_store_tx_end(st, own, 0, error_r);
	return -1;
}

/* Migration 2's C step: every v1 message becomes a contents row (parsed,
 * indexed, de-duplicated) and a messages row with MODSEQ 1. */
static int
migrate_v1_messages(struct sbx_store *st, char **error_r)
{
	sqlite3_stmt *s, *ins;
	int rc;

	if (sqlite3_prepare_v2(st->db, "SELECT folder_id, uid, flags, internaldate, raw FROM messages_v1 "
			       "ORDER BY id", -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "migrating messages", error_r);
	if (sqlite3_prepare_v2(st->db, "INSERT INTO messages(folder_id, uid, content_id, flags, modseq, "
			       "internaldate, size) VALUES (?,?,?,?,1,?,?)", -1, &ins, NULL) != SQLITE_OK) {
		sqlite3_finalize(s);
		return sql_err(st->db, "migrating messages", error_r);
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *raw = sqlite3_column_blob(s, 4);
		size_t len = (size_t)sqlite3_column_bytes(s, 4);
		char *copy = sbx_xmalloc(len + 1);
		int64_t content_id;
		uint64_t size;
		int ok;

		if (len)
			memcpy(copy, raw, len);
		ok = content_add(st, copy, len, &content_id, &size, error_r) == 0 &&
		     content_ref(st, content_id, error_r) == 0;
		sbx_wipe_free(copy, len + 1);
		if (!ok)
			goto fail;
		sqlite3_bind_int64(ins, 1, sqlite3_column_int64(s, 0));
		sqlite3_bind_int64(ins, 2, sqlite3_column_int64(s, 1));
		sqlite3_bind_int64(ins, 3, content_id);
		sqlite3_bind_int(ins, 4, sqlite3_column_int(s, 2) & SBX_FLAGS_ALL);
		sqlite3_bind_value(ins, 5, sqlite3_column_value(s, 3));
		sqlite3_bind_int64(ins, 6, (sqlite3_int64)size);
		if (step_done(st, ins, "migrating messages", error_r) < 0)
			goto fail;
	}
	if (rc != SQLITE_DONE) {
		sql_err(st->db, "migrating messages", error_r);
		goto fail;
	}
	sqlite3_finalize(s);
	sqlite3_finalize(ins);
	return exec(st->db, "DROP TABLE messages_v1", error_r);
fail:
	sqlite3_finalize(s);
	sqlite3_finalize(ins);
	return -1;
}

/* ---- fetch ---- */

static int
msg_content(struct sbx_store *st, const char *folder, uint32_t uid, int64_t *content_id_r,
	    char **error_r)
{
	struct sbx_folder_row f;
	sqlite3_stmt *s;
	int rc;

	if (sbx_store_folder_get(st, folder, &f, error_r) < 0)
		return -1;
	if ((s = sbx_store_stmt(st, Q_MSG_GET, error_r)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, f.id);
	sqlite3_bind_int64(s, 2, uid);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*content_id_r = sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
		return 0;
	}
	sqlite3_reset(s);
	if (rc == SQLITE_DONE) {
		*error_r = sbx_xasprintf("no message with UID %u in %s", uid, folder);
		return -1;
	}
	return sql_err(st->db, "fetching message", error_r);
}

int
sbx_store_fetch_raw(struct sbx_store *st, const char *folder, uint32_t uid,
		    char **data_r, size_t *len_r, char **error_r)
{
	int64_t cid;

	if (msg_content(st, folder, uid, &cid, error_r) < 0)
		return -1;
	return content_raw(st, cid, data_r, len_r, NULL, error_r);
}

int
sbx_store_fetch_section(struct sbx_store *st, const char *folder, uint32_t uid,
			const char *spec, uint64_t off, uint64_t maxlen,
			char **data_r, size_t *len_r, char **error_r)
{
	char *raw = NULL, *sections = NULL, *sec = NULL;
	size_t len, slen;
	int64_t cid;

	if (!sbx_mime_section_valid(spec)) {
		*error_r = sbx_xasprintf("invalid section spec: %.80s", spec);
		return -1;
	}
	if (msg_content(st, folder, uid, &cid, error_r) < 0 ||
	    content_raw(st, cid, &raw, &len, &sections, error_r) < 0)
		return -1;
	if (spec[0] == '\0') {
		sec = raw;
		slen = len;
		raw = NULL;
	} else if (sbx_mime_fetch_section(raw, len, sections, spec, &sec, &slen, error_r) < 0) {
		sbx_wipe_free(raw, len + 1);
		free(sections);
		return -1;
	}
	sbx_wipe_free(raw, len + 1);
	free(sections);
	if (off >= slen) {
		sbx_wipe_free(sec, slen);
		*data_r = sbx_xstrdup("");
		*len_r = 0;
		return 0;
	}
	if (off > 0 || maxlen < slen - off) {
		size_t n = maxlen < slen - off ? (size_t)maxlen : slen - (size_t)off;
		char *part = sbx_xmalloc(n + 1);

		memcpy(part, sec + off, n);
		part[n] = '\0';
		sbx_wipe_free(sec, slen);
		sec = part;
		slen = n;
	}
	*data_r = sec;
	*len_r = slen;
	return 0;
}

static char *
col_dup(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	return t != NULL ? sbx_xstrdup((const char *)t) : NULL;
}

int
sbx_store_fetch_info(struct sbx_store *st, const char *folder, uint32_t uid,
		     struct sbx_store_info *info_r, char **error_r)
{
	struct sbx_folder_row f;
	sqlite3_stmt *s;
	int rc;

	memset(info_r, 0, sizeof(*info_r));
	if (sbx_store_folder_get(st, folder, &f, error_r) < 0)
		return -1;
	if ((s = sbx_store_stmt(st, Q_INFO_GET, error_r)) == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, f.id);
	sqlite3_bind_int64(s, 2, uid);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		if (rc == SQLITE_DONE) {
			*error_r = sbx_xasprintf("no message with UID %u in %s", uid, folder);
			return -1;
		}
		return sql_err(st->db, "fetching message", error_r);
	}
	info_r->envelope = col_dup(s, 0);
	info_r->bodystructure = col_dup(s, 1);
	info_r->body = col_dup(s, 2);
	info_r->size = (uint64_t)sqlite3_column_int64(s, 3);
	info_r->message_id = col_dup(s, 4);
	info_r->in_reply_to = col_dup(s, 5);
	info_r->references = col_dup(s, 6);
	info_r->sent_ts = sqlite3_column_type(s, 7) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 7);
	sqlite3_reset(s);
	if (info_r->envelope == NULL || info_r->bodystructure == NULL || info_r->body == NULL) {
		sbx_store_info_free(info_r);
		*error_r = sbx_xstrdup("fetching message: structure missing (mailbox damaged)");
		return -1;
	}
	return 0;
}

void
sbx_store_info_free(struct sbx_store_info *info)
{
	if (info == NULL)
		return;
	free(info->envelope);
	free(info->bodystructure);
	free(info->body);
	free(info->message_id);
	free(info->in_reply_to);
	free(info->references);
	memset(info, 0, sizeof(*info));
}
