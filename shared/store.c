/* store.c - see store.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "lock.h"
#include "store.h"
#include "util.h"
#include "vfs.h"

struct sbx_store {
	sqlite3 *db;
	char *path;
	int in_tx;
	int rdonly;
};

/* Numbered migrations: migrations[i] takes the schema from version i to
 * i + 1. Never edit one that has shipped; append a new one. */
static const char *const migrations[] = {
	/* 1: the foundation schema. */
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
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
	"CREATE TABLE delivered(id TEXT PRIMARY KEY, at TEXT NOT NULL) WITHOUT ROWID;",
};
#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

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
sql_err(sqlite3 *db, const char *what, char **error_r)
{
	const char *vfs = sbx_vfs_last_error();
	int code = sqlite3_extended_errcode(db);

	if ((code == SQLITE_IOERR_DATA || code == SQLITE_NOTADB || (code & 0xff) == SQLITE_CORRUPT) && vfs[0])
		*error_r = sbx_xasprintf("%s: mailbox file damaged: %s", what, vfs);
	else
		*error_r = sbx_xasprintf("%s: %s", what, sqlite3_errmsg(db));
	return -1;
}

static int
exec(sqlite3 *db, const char *sql, char **error_r)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		const char *vfs = sbx_vfs_last_error();
		int code = sqlite3_extended_errcode(db);

		if ((code == SQLITE_IOERR_DATA || (code & 0xff) == SQLITE_CORRUPT) && vfs[0])
			*error_r = sbx_xasprintf("mailbox file damaged: %s", vfs);
		else
			*error_r = sbx_xasprintf("%s", err ? err : sqlite3_errmsg(db));
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

static int
user_version(sqlite3 *db, int *v_r, char **error_r)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return sql_err(db, "reading schema version", error_r);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return sql_err(db, "reading schema version", error_r);
	}
	*v_r = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return 0;
}

static int
migrate(sqlite3 *db, char **error_r)
{
	int v, i;

	if (exec(db, "BEGIN IMMEDIATE", error_r) < 0)
		return -1;
	if (user_version(db, &v, error_r) < 0)
		goto fail;
	if (v > NMIGRATIONS) {
		*error_r = sbx_xasprintf("mailbox schema version %d is newer than this sealbox (%d)", v, NMIGRATIONS);
		goto fail;
	}
	for (i = v; i < NMIGRATIONS; i++) {
		char *sql;

		if (exec(db, migrations[i], error_r) < 0)
			goto fail;
		sql = sbx_xasprintf("PRAGMA user_version=%d", i + 1);
		if (exec(db, sql, error_r) < 0) {
			free(sql);
			goto fail;
		}
		free(sql);
	}
	if (exec(db, "COMMIT", error_r) < 0)
		goto fail;
	return 0;
fail:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static int
open_db(const char *path, const struct sbx_mailbox_keys *keys, int flags, sqlite3 **db_r, char **error_r)
{
	unsigned char vkey[SBX_KEY_BYTES];
	sqlite3 *db = NULL;
	char *sql;
	int rc;

	sbx_keys_derive(keys, SBX_SUBKEY_VFS, vkey);
	rc = sbx_vfs_open_db(path, vkey, flags, &db, error_r);
	sodium_memzero(vkey, sizeof(vkey));
	if (rc != SQLITE_OK)
		return -1;
	sqlite3_busy_timeout(db, 5000);
	sql = sbx_xasprintf("PRAGMA foreign_keys=ON; PRAGMA cache_size=-%d; PRAGMA synchronous=FULL;",
			    SBX_STORE_CACHE_KIB);
	if (exec(db, sql, error_r) < 0) {
		free(sql);
		sqlite3_close(db);
		return -1;
	}
	free(sql);
	*db_r = db;
	return 0;
}

int
sbx_store_create(const char *state_dir, const char *mailbox_id,
		 const struct sbx_mailbox_keys *keys, char **error_r)
{
	char *path = sbx_mailbox_path(state_dir, mailbox_id, ".sqlite"), *dir, *slash;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	struct stat sb;
	size_t i;
	uint32_t uidvalidity = (uint32_t)time(NULL);
	char now[32];

	if (path == NULL) {
		*error_r = sbx_xasprintf("invalid mailbox id: %s", mailbox_id);
		return -1;
	}
	dir = sbx_xstrdup(path);
	slash = strrchr(dir, '/');
	*slash = '\0';
	if (sbx_mkdir_p(dir, 0700) < 0) {
		*error_r = sbx_xasprintf("cannot create %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (stat(path, &sb) == 0) {
		*error_r = sbx_xasprintf("mailbox file already exists: %s", path);
		goto fail;
	}
	if (open_db(path, keys, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &db, error_r) < 0)
		goto fail;
	chmod(path, 0600);
	if (exec(db, "PRAGMA encoding='UTF-8'; PRAGMA journal_mode=WAL;", error_r) < 0)
		goto fail;
	if (migrate(db, error_r) < 0)
		goto fail;
	if (exec(db, "BEGIN IMMEDIATE", error_r) < 0)
		goto fail;
	if (sqlite3_prepare_v2(db, "INSERT INTO folders(name, uidvalidity, special_use) VALUES (?,?,?)",
			       -1, &st, NULL) != SQLITE_OK) {
		sql_err(db, "creating folders", error_r);
		goto fail;
	}
	for (i = 0; i < sizeof(default_folders) / sizeof(default_folders[0]); i++) {
		sqlite3_bind_text(st, 1, default_folders[i].name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, uidvalidity);
		if (default_folders[i].special_use)
			sqlite3_bind_text(st, 3, default_folders[i].special_use, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 3);
		if (sqlite3_step(st) != SQLITE_DONE) {
			sql_err(db, "creating folders", error_r);
			goto fail;
		}
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	st = NULL;
	sbx_iso8601(time(NULL), now);
	sqlite3_stmt *m;
	if (sqlite3_prepare_v2(db, "INSERT INTO meta(key, value) VALUES ('mailbox_id', ?), ('created', ?), "
			       "('next_uidvalidity', ?)", -1, &m, NULL) != SQLITE_OK) {
		sql_err(db, "creating mailbox", error_r);
		goto fail;
	}
	sqlite3_bind_text(m, 1, mailbox_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(m, 2, now, -1, SQLITE_STATIC);
	sqlite3_bind_int64(m, 3, (sqlite3_int64)uidvalidity + 1);
	if (sqlite3_step(m) != SQLITE_DONE) {
		sqlite3_finalize(m);
		sql_err(db, "creating mailbox", error_r);
		goto fail;
	}
	sqlite3_finalize(m);
	if (exec(db, "COMMIT", error_r) < 0)
		goto fail;
	if (exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", error_r) < 0)
		goto fail;
	sqlite3_close(db);
	if (sbx_fsync_dir(dir) < 0) {
		*error_r = sbx_xasprintf("fsync %s: %s", dir, strerror(errno));
		goto fail_unlinked;
	}
	free(dir);
	free(path);
	return 0;
fail:
	sqlite3_finalize(st);
	if (db != NULL) {
		char *w = sbx_xasprintf("%s-wal", path), *s = sbx_xasprintf("%s-shm", path);

		sqlite3_close(db);
		unlink(path);
		unlink(w);
		unlink(s);
		free(w);
		free(s);
	}
fail_unlinked:
	free(dir);
	free(path);
	return -1;
}

int
sbx_store_open(const char *state_dir, const char *mailbox_id,
	       const struct sbx_mailbox_keys *keys, int flags,
	       struct sbx_store **st_r, char **error_r)
{
	struct sbx_store *st;
	char *path = sbx_mailbox_path(state_dir, mailbox_id, ".sqlite");
	struct stat sb;
	sqlite3 *db;
	int v;

	if (path == NULL) {
		*error_r = sbx_xasprintf("invalid mailbox id: %s", mailbox_id);
		return -1;
	}
	if (stat(path, &sb) < 0) {
		*error_r = sbx_xasprintf("mailbox file missing: %s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	if (open_db(path, keys, (flags & SBX_STORE_RDONLY) ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE,
		    &db, error_r) < 0) {
		free(path);
		return -1;
	}
	if (user_version(db, &v, error_r) < 0)
		goto fail;
	if (v > NMIGRATIONS) {
		*error_r = sbx_xasprintf("%s: mailbox schema version %d is newer than this sealbox (%d)",
					 path, v, NMIGRATIONS);
		goto fail;
	}
	if (!(flags & SBX_STORE_RDONLY)) {
		if (exec(db, "PRAGMA journal_mode=WAL", error_r) < 0)
			goto fail;
		if (v < NMIGRATIONS && migrate(db, error_r) < 0)
			goto fail;
	} else if (v < NMIGRATIONS) {
		*error_r = sbx_xasprintf("%s: schema version %d needs a migration (open it read-write)", path, v);
		goto fail;
	}
	st = sbx_xcalloc(1, sizeof(*st));
	st->db = db;
	st->path = path;
	st->rdonly = (flags & SBX_STORE_RDONLY) != 0;
	*st_r = st;
	return 0;
fail:
	sqlite3_close(db);
	free(path);
	return -1;
}

void
sbx_store_close(struct sbx_store **stp)
{
	struct sbx_store *st = *stp;

	if (st == NULL)
		return;
	if (st->in_tx)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	if (!st->rdonly)
		sqlite3_exec(st->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
	sqlite3_close(st->db);
	free(st->path);
	free(st);
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
sbx_store_delivered(struct sbx_store *st, const char *delivery_id, char **error_r)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM delivered WHERE id = ?", -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "checking delivery id", error_r);
	sqlite3_bind_text(s, 1, delivery_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return sql_err(st->db, "checking delivery id", error_r);
}

static int
folder_id(struct sbx_store *st, const char *folder, sqlite3_int64 *id_r, uint32_t *uidnext_r, char **error_r)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(st->db, "SELECT id, uidnext FROM folders WHERE name = ?", -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "finding folder", error_r);
	sqlite3_bind_text(s, 1, folder, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*id_r = sqlite3_column_int64(s, 0);
		if (uidnext_r)
			*uidnext_r = (uint32_t)sqlite3_column_int64(s, 1);
		sqlite3_finalize(s);
		return 0;
	}
	sqlite3_finalize(s);
	if (rc == SQLITE_DONE) {
		*error_r = sbx_xasprintf("no such folder: %s", folder);
		return -1;
	}
	return sql_err(st->db, "finding folder", error_r);
}

int
sbx_store_append(struct sbx_store *st, const char *folder, const void *msg, size_t len,
		 time_t internaldate, unsigned flags, const char *delivery_id,
		 uint32_t *uid_r, char **error_r)
{
	sqlite3_stmt *s = NULL;
	sqlite3_int64 fid;
	uint32_t uid;
	char date[32];
	int own_tx = !st->in_tx, rc;

	if (len > SIZE_MAX / 2 || (uint64_t)len > (uint64_t)INT32_MAX) {
		*error_r = sbx_xstrdup("message too large");
		return -1;
	}
	if (own_tx && sbx_store_begin(st, error_r) < 0)
		return -1;
	if (delivery_id != NULL) {
		rc = sbx_store_delivered(st, delivery_id, error_r);
		if (rc != 0) {
			if (own_tx)
				sbx_store_rollback(st);
			return rc;   /* 1: already delivered, nothing stored */
		}
	}
	if (folder_id(st, folder, &fid, &uid, error_r) < 0)
		goto fail;
	if (uid == 0 || uid == UINT32_MAX) {
		*error_r = sbx_xasprintf("folder %s has run out of UIDs", folder);
		goto fail;
	}
	sbx_iso8601(internaldate, date);
	if (sqlite3_prepare_v2(st->db, "INSERT INTO messages(folder_id, uid, flags, internaldate, size, raw) "
			       "VALUES (?,?,?,?,?,?)", -1, &s, NULL) != SQLITE_OK) {
		sql_err(st->db, "storing message", error_r);
		goto fail;
	}
	sqlite3_bind_int64(s, 1, fid);
	sqlite3_bind_int64(s, 2, uid);
	sqlite3_bind_int(s, 3, (int)flags);
	sqlite3_bind_text(s, 4, date, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)len);
	sqlite3_bind_blob(s, 6, len ? msg : "", (int)len, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_DONE) {
		sql_err(st->db, "storing message", error_r);
		goto fail;
	}
	sqlite3_finalize(s);
	s = NULL;
	if (sqlite3_prepare_v2(st->db, "UPDATE folders SET uidnext = ? WHERE id = ?", -1, &s, NULL) != SQLITE_OK) {
		sql_err(st->db, "storing message", error_r);
		goto fail;
	}
	sqlite3_bind_int64(s, 1, (sqlite3_int64)uid + 1);
	sqlite3_bind_int64(s, 2, fid);
	if (sqlite3_step(s) != SQLITE_DONE) {
		sql_err(st->db, "storing message", error_r);
		goto fail;
	}
	sqlite3_finalize(s);
	s = NULL;
	if (delivery_id != NULL) {
		if (sqlite3_prepare_v2(st->db, "INSERT INTO delivered(id, at) VALUES (?, ?)", -1, &s, NULL) != SQLITE_OK) {
			sql_err(st->db, "recording delivery", error_r);
			goto fail;
		}
		sqlite3_bind_text(s, 1, delivery_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, date, -1, SQLITE_STATIC);
		if (sqlite3_step(s) != SQLITE_DONE) {
			sql_err(st->db, "recording delivery", error_r);
			goto fail;
		}
		sqlite3_finalize(s);
		s = NULL;
	}
	if (own_tx && sbx_store_commit(st, error_r) < 0)
		return -1;
	if (uid_r)
		*uid_r = uid;
	return 0;
fail:
	sqlite3_finalize(s);
	if (own_tx)
		sbx_store_rollback(st);
	return -1;
}

int
sbx_store_folders(struct sbx_store *st, struct sbx_store_folder **v_r, size_t *n_r, char **error_r)
{
	sqlite3_stmt *s;
	struct sbx_store_folder *v = NULL;
	size_t n = 0;
	int rc;

	if (sqlite3_prepare_v2(st->db, "SELECT f.name, f.uidvalidity, f.uidnext, f.subscribed, f.special_use, "
			       "(SELECT count(*) FROM messages m WHERE m.folder_id = f.id) FROM folders f ORDER BY f.id",
			       -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "listing folders", error_r);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		v = sbx_xrealloc(v, (n + 1) * sizeof(*v));
		v[n].name = sbx_xstrdup((const char *)sqlite3_column_text(s, 0));
		v[n].uidvalidity = (uint32_t)sqlite3_column_int64(s, 1);
		v[n].uidnext = (uint32_t)sqlite3_column_int64(s, 2);
		v[n].subscribed = sqlite3_column_int(s, 3);
		v[n].special_use = sqlite3_column_type(s, 4) == SQLITE_NULL ? NULL :
				   sbx_xstrdup((const char *)sqlite3_column_text(s, 4));
		v[n].messages = (uint64_t)sqlite3_column_int64(s, 5);
		n++;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		sbx_store_folders_free(v, n);
		return sql_err(st->db, "listing folders", error_r);
	}
	*v_r = v;
	*n_r = n;
	return 0;
}

void
sbx_store_folders_free(struct sbx_store_folder *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].special_use);
	}
	free(v);
}

int
sbx_store_list(struct sbx_store *st, const char *folder, struct sbx_store_msg **v_r,
	       size_t *n_r, char **error_r)
{
	sqlite3_stmt *s;
	sqlite3_int64 fid;
	struct sbx_store_msg *v = NULL;
	size_t n = 0;
	int rc;

	if (folder_id(st, folder, &fid, NULL, error_r) < 0)
		return -1;
	if (sqlite3_prepare_v2(st->db, "SELECT uid, flags, internaldate, size FROM messages "
			       "WHERE folder_id = ? ORDER BY uid", -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "listing messages", error_r);
	sqlite3_bind_int64(s, 1, fid);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *d = (const char *)sqlite3_column_text(s, 2);

		v = sbx_xrealloc(v, (n + 1) * sizeof(*v));
		v[n].uid = (uint32_t)sqlite3_column_int64(s, 0);
		v[n].flags = (unsigned)sqlite3_column_int(s, 1);
		snprintf(v[n].internaldate, sizeof(v[n].internaldate), "%s", d ? d : "");
		v[n].size = (uint64_t)sqlite3_column_int64(s, 3);
		n++;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		free(v);
		return sql_err(st->db, "listing messages", error_r);
	}
	*v_r = v;
	*n_r = n;
	return 0;
}

int
sbx_store_fetch_raw(struct sbx_store *st, const char *folder, uint32_t uid,
		    char **data_r, size_t *len_r, char **error_r)
{
	sqlite3_stmt *s;
	sqlite3_int64 fid;
	int rc;

	if (folder_id(st, folder, &fid, NULL, error_r) < 0)
		return -1;
	if (sqlite3_prepare_v2(st->db, "SELECT raw FROM messages WHERE folder_id = ? AND uid = ?",
			       -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "fetching message", error_r);
	sqlite3_bind_int64(s, 1, fid);
	sqlite3_bind_int64(s, 2, uid);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		size_t len = (size_t)sqlite3_column_bytes(s, 0);
		const void *p = sqlite3_column_blob(s, 0);

		*data_r = sbx_xmalloc(len + 1);
		if (len)
			memcpy(*data_r, p, len);
		(*data_r)[len] = '\0';
		*len_r = len;
		sqlite3_finalize(s);
		return 0;
	}
	sqlite3_finalize(s);
	if (rc == SQLITE_DONE) {
		*error_r = sbx_xasprintf("no message with UID %u in %s", uid, folder);
		return -1;
	}
	return sql_err(st->db, "fetching message", error_r);
}

int
sbx_store_set_flags(struct sbx_store *st, const char *folder, uint32_t uid, unsigned flags, char **error_r)
{
	sqlite3_stmt *s;
	sqlite3_int64 fid;
	int rc;

	if (folder_id(st, folder, &fid, NULL, error_r) < 0)
		return -1;
	if (exec(st->db, "PRAGMA synchronous=NORMAL", error_r) < 0)
		return -1;
	if (sqlite3_prepare_v2(st->db, "UPDATE messages SET flags = ? WHERE folder_id = ? AND uid = ?",
			       -1, &s, NULL) != SQLITE_OK) {
		sql_err(st->db, "setting flags", error_r);
		exec(st->db, "PRAGMA synchronous=FULL", error_r);
		return -1;
	}
	sqlite3_bind_int(s, 1, (int)flags);
	sqlite3_bind_int64(s, 2, fid);
	sqlite3_bind_int64(s, 3, uid);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		sql_err(st->db, "setting flags", error_r);
		sqlite3_exec(st->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
		return -1;
	}
	sqlite3_exec(st->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
	if (sqlite3_changes(st->db) == 0) {
		*error_r = sbx_xasprintf("no message with UID %u in %s", uid, folder);
		return -1;
	}
	return 0;
}

int
sbx_store_usage(struct sbx_store *st, uint64_t *bytes_r, uint64_t *msgs_r, char **error_r)
{
	sqlite3_stmt *s;

	if (sqlite3_prepare_v2(st->db, "SELECT coalesce(sum(size), 0), count(*) FROM messages", -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "computing usage", error_r);
	if (sqlite3_step(s) != SQLITE_ROW) {
		sqlite3_finalize(s);
		return sql_err(st->db, "computing usage", error_r);
	}
	*bytes_r = (uint64_t)sqlite3_column_int64(s, 0);
	*msgs_r = (uint64_t)sqlite3_column_int64(s, 1);
	sqlite3_finalize(s);
	return 0;
}
