/*
 * directory.c - see directory.h.
 *
 * One sqlite3 connection per struct sbx_dir; use one handle per thread.
 * Statements come from a small per-connection cache keyed by SQL text
 * (stmt_get) and go back to it reset and unbound (stmt_put) before the call
 * that took them returns, so between calls a handle holds only idle
 * statements: no open read transaction, nothing that blocks a checkpoint.
 * lmtpd and the milter run the same few statements for every message;
 * preparing them once per connection instead of once per call is most of
 * the CPU they spend in this file. Writers run each
 * mutating call as one BEGIN IMMEDIATE transaction; readers that issue more
 * than one statement wrap them in one deferred (read) transaction so they
 * see a single snapshot.
 */
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "directory.h"
#include "sbx_limits.h"
#include "util.h"

#define DIR_FILE              "directory.db"
#define DIR_APPLICATION_ID    1396856900  /* 0x53425844, "SBXD" */
#define DIR_BUSY_TIMEOUT_MS   5000
#define DIR_WEBHOOK_SECRET    32          /* generated secret when none given */
#define DIR_ERROR_MAX         1024        /* bytes of one error line */
#define DIR_ERROR_VALUE_MAX   128         /* bytes of a quoted value in errors */
#define DIR_STMT_CACHE        32          /* cached statements per connection */
#define DIR_PRUNE_INTERVAL    60          /* seconds between lmtp_delivered prunes */

/* One cached statement: sql is its key (a private copy of the text). */
struct dir_stmt {
	sqlite3_stmt *st;
	char *sql;
	uint64_t used;            /* dir->stmt_clock when last handed out (LRU) */
	int busy;                 /* handed out by stmt_get, not yet given back */
};

struct sbx_dir {
	sqlite3 *db;
	int flags;
	char *path;
	struct dir_stmt stmts[DIR_STMT_CACHE];
	uint64_t stmt_clock;
	time_t last_prune;        /* `now` of the last committed lmtp_delivered prune */
};

/*
 * Schema migrations: migrations[i] brings user_version from i to i + 1.
 * Never edit a released entry; append a new one.
 *
 * targets.value holds the mailbox id (mailbox), the normalised address
 * (forward) or the webhook id (webhook; URL and secret live in webhooks).
 * The trigger removes a webhook with its target, including targets removed
 * by the ON DELETE CASCADE of their alias.
 */
static const char *const migrations[] = {
	/* 1: initial schema */
	"PRAGMA application_id = 1396856900;"
	"CREATE TABLE domains ("
	"  name TEXT PRIMARY KEY NOT NULL,"
	"  created INTEGER NOT NULL"
	");"
	"CREATE TABLE mailboxes ("
	"  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 32),"
	"  address TEXT NOT NULL UNIQUE,"
	"  domain TEXT NOT NULL REFERENCES domains(name),"
	"  quota_bytes INTEGER NOT NULL DEFAULT 0 CHECK (quota_bytes >= 0),"
	"  usage_bytes INTEGER NOT NULL DEFAULT 0 CHECK (usage_bytes >= 0),"
	"  usage_msgs INTEGER NOT NULL DEFAULT 0 CHECK (usage_msgs >= 0),"
	"  spool_pk BLOB NOT NULL CHECK (length(spool_pk) = 32),"
	"  created INTEGER NOT NULL"
	");"
	"CREATE INDEX mailboxes_domain ON mailboxes(domain);"
	"CREATE TABLE envelopes ("
	"  mailbox_id TEXT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,"
	"  envelope_id TEXT NOT NULL,"
	"  blob BLOB NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  PRIMARY KEY (mailbox_id, envelope_id)"
	");"
	"CREATE TABLE aliases ("
	"  id INTEGER PRIMARY KEY,"
	"  address TEXT NOT NULL UNIQUE,"
	"  kind TEXT NOT NULL CHECK (kind IN ('exact', 'catchall', 'regex')),"
	"  domain TEXT NOT NULL REFERENCES domains(name),"
	"  created INTEGER NOT NULL"
	");"
	"CREATE INDEX aliases_domain_kind ON aliases(domain, kind, id);"
	"CREATE TABLE targets ("
	"  alias_id INTEGER NOT NULL REFERENCES aliases(id) ON DELETE CASCADE,"
	"  position INTEGER NOT NULL,"
	"  kind TEXT NOT NULL CHECK (kind IN ('mailbox', 'forward', 'webhook')),"
	"  value TEXT NOT NULL,"
	"  PRIMARY KEY (alias_id, position)"
	");"
	"CREATE INDEX targets_kind_value ON targets(kind, value);"
	"CREATE TABLE webhooks ("
	"  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 32),"
	"  url TEXT NOT NULL,"
	"  secret BLOB NOT NULL,"
	"  created INTEGER NOT NULL"
	");"
	"CREATE TRIGGER targets_webhook_gc AFTER DELETE ON targets"
	"  WHEN old.kind = 'webhook'"
	"  BEGIN DELETE FROM webhooks WHERE id = old.value; END;",
	/* 2: deliveries lmtpd has answered 250 for, by Postfix queue id and
	 * recipient, so a retry after a lost reply is not stored twice
	 * (ARCHITECTURE.md "Exactly-once delivery"). */
	"CREATE TABLE lmtp_delivered ("
	"  queue_id TEXT NOT NULL,"
	"  rcpt TEXT NOT NULL,"
	"  delivery_id TEXT NOT NULL,"
	"  at INTEGER NOT NULL,"
	"  PRIMARY KEY (queue_id, rcpt)"
	") WITHOUT ROWID;"
	"CREATE INDEX lmtp_delivered_at ON lmtp_delivered(at);",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* ------------------------------------------------------------------ errors */

static int fail(char **error_r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int
fail(char **error_r, const char *fmt, ...)
{
	char buf[DIR_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	*error_r = sbx_xstrdup(buf);
	return -1;
}

/* A copy of untrusted s fit for a one-line error: control bytes become '?',
 * long values are cut. */
static char *
printable(const char *s)
{
	size_t n = strlen(s), i, m = n > DIR_ERROR_VALUE_MAX ? DIR_ERROR_VALUE_MAX : n;
	char *p = sbx_xmalloc(m + 4);

	for (i = 0; i < m; i++) {
		unsigned char c = (unsigned char)s[i];

		p[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	strcpy(p + m, n > m ? "..." : "");
	return p;
}

/* "<prefix>: <value><suffix>" with value made printable. */
static int
fail_v(char **error_r, const char *prefix, const char *value, const char *suffix)
{
	char *p = printable(value);

	fail(error_r, "%s: %s%s", prefix, p, suffix);
	free(p);
	return -1;
}

static int
db_fail(struct sbx_dir *dir, char **error_r, const char *what)
{
	return fail(error_r, "directory.db: %s: %s", what, sqlite3_errmsg(dir->db));
}

/* -------------------------------------------------------- sqlite helpers */

/*
 * Statement cache. stmt_get hands out the cached statement for sql,
 * preparing it (SQLITE_PREPARE_PERSISTENT) on first use; stmt_put gives it
 * back reset and with its bindings cleared. Every stmt_get is paired with a
 * stmt_put on every return path of its caller: a statement left stepped
 * holds a read transaction open, blocks WAL checkpoints and keeps this
 * connection on an old snapshot. Keyed by text, not by pointer: some SQL is
 * built in a stack buffer (mailbox_get, pragma_int).
 *
 * At most one cache entry per SQL text. When that entry is already handed
 * out (the same statement needed again before it was given back), or the
 * cache is full of handed-out entries, stmt_get prepares a private
 * statement that stmt_put finalizes. A full cache evicts the least recently
 * used idle entry. NULL on error, with the reason in sqlite3_errmsg().
 */
static sqlite3_stmt *
stmt_get(struct sbx_dir *dir, const char *sql)
{
	struct dir_stmt *slot = NULL, *e;
	sqlite3_stmt *st = NULL;
	size_t i;

	for (i = 0; i < DIR_STMT_CACHE; i++) {
		e = &dir->stmts[i];
		if (e->st == NULL) {
			if (slot == NULL || slot->st != NULL)
				slot = e;
			continue;
		}
		if (strcmp(e->sql, sql) == 0) {
			if (e->busy) {
				slot = NULL;    /* in use: a private statement */
				break;
			}
			e->busy = 1;
			e->used = ++dir->stmt_clock;
			return e->st;
		}
		if (!e->busy && (slot == NULL || (slot->st != NULL && e->used < slot->used)))
			slot = e;
	}
	if (slot == NULL) {
		if (sqlite3_prepare_v2(dir->db, sql, -1, &st, NULL) != SQLITE_OK)
			st = NULL;
		return st;
	}
	if (sqlite3_prepare_v3(dir->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK ||
	    st == NULL) {
		/* Empty SQL gives SQLITE_OK and no statement; never cached. */
		(void)sqlite3_finalize(st);
		return NULL;
	}
	if (slot->st != NULL) {         /* evict: idle, so already reset */
		(void)sqlite3_finalize(slot->st);
		free(slot->sql);
	}
	slot->st = st;
	slot->sql = sbx_xstrdup(sql);
	slot->busy = 1;
	slot->used = ++dir->stmt_clock;
	return st;
}

/* Give back a statement from stmt_get and set *st to NULL; NULL is a no-op.
 * Errors of the last step were reported by whoever stepped it, so the
 * return values of reset and finalize (which repeat them) are ignored. */
static void
stmt_put(struct sbx_dir *dir, sqlite3_stmt **st)
{
	size_t i;

	if (*st == NULL)
		return;
	for (i = 0; i < DIR_STMT_CACHE; i++) {
		if (dir->stmts[i].st == *st) {
			(void)sqlite3_reset(*st);
			(void)sqlite3_clear_bindings(*st);
			dir->stmts[i].busy = 0;
			*st = NULL;
			return;
		}
	}
	(void)sqlite3_finalize(*st);
	*st = NULL;
}

static void
stmt_cache_free(struct sbx_dir *dir)
{
	size_t i;

	for (i = 0; i < DIR_STMT_CACHE; i++) {
		(void)sqlite3_finalize(dir->stmts[i].st);   /* NULL is a no-op */
		free(dir->stmts[i].sql);
		memset(&dir->stmts[i], 0, sizeof(dir->stmts[i]));
	}
}

/*
 * Take sql from the cache and bind its parameters in order as described by
 * fmt:
 *   't' const char *   text (NULL binds NULL)
 *   'b' const void *, size_t   blob
 *   'i' int64_t
 * Give the statement back with stmt_put on every path.
 */
static int
q_vprepare(struct sbx_dir *dir, sqlite3_stmt **st_r, char **error_r,
	   const char *sql, const char *fmt, va_list ap)
{
	sqlite3_stmt *st;
	int i, rc = SQLITE_OK;

	*st_r = NULL;
	if ((st = stmt_get(dir, sql)) == NULL)
		return db_fail(dir, error_r, "prepare");
	for (i = 0; fmt[i] != '\0' && rc == SQLITE_OK; i++) {
		switch (fmt[i]) {
		case 't': {
			const char *s = va_arg(ap, const char *);

			rc = s == NULL ? sqlite3_bind_null(st, i + 1) :
			    sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT);
			break;
		}
		case 'b': {
			const void *p = va_arg(ap, const void *);
			size_t n = va_arg(ap, size_t);

			rc = sqlite3_bind_blob64(st, i + 1, n ? p : "", n, SQLITE_TRANSIENT);
			break;
		}
		case 'i':
			rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
			break;
		default:
			rc = SQLITE_MISUSE;
			break;
		}
	}
	if (rc != SQLITE_OK) {
		db_fail(dir, error_r, "bind");
		stmt_put(dir, &st);
		return -1;
	}
	*st_r = st;
	return 0;
}

static int
q_prepare(struct sbx_dir *dir, sqlite3_stmt **st_r, char **error_r,
	  const char *sql, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = q_vprepare(dir, st_r, error_r, sql, fmt, ap);
	va_end(ap);
	return rc;
}

/* 1 = row, 0 = done, -1 = error. */
static int
q_step(struct sbx_dir *dir, sqlite3_stmt *st, char **error_r)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return db_fail(dir, error_r, "step");
}

/* Run a statement that returns no rows; returns the number of changed rows
 * or -1. */
static int
q_exec(struct sbx_dir *dir, char **error_r, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = q_vprepare(dir, &st, error_r, sql, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return -1;
	while ((rc = q_step(dir, st, error_r)) > 0)
		;
	stmt_put(dir, &st);
	/* Reset leaves sqlite3_changes() alone. */
	return rc < 0 ? -1 : sqlite3_changes(dir->db);
}

/* Run a query returning one integer; *v_r = 0 (and return 0) when no row. */
static int
q_int(struct sbx_dir *dir, char **error_r, int64_t *v_r, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = q_vprepare(dir, &st, error_r, sql, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return -1;
	*v_r = 0;
	rc = q_step(dir, st, error_r);
	if (rc > 0)
		*v_r = sqlite3_column_int64(st, 0);
	stmt_put(dir, &st);
	return rc < 0 ? -1 : 0;
}

/* Run a parameterless statement (BEGIN, COMMIT) from the cache; on failure
 * report "directory.db: <what>: <sqlite error>" and return -1. */
static int
q_simple(struct sbx_dir *dir, const char *sql, const char *what, char **error_r)
{
	sqlite3_stmt *st = stmt_get(dir, sql);
	int rc;

	if (st == NULL)
		return db_fail(dir, error_r, what);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE)
		db_fail(dir, error_r, what);
	stmt_put(dir, &st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* A malloc'd copy of a text column; -1 + error when NULL (corrupt or OOM). */
static int
col_text(struct sbx_dir *dir, sqlite3_stmt *st, int col, char **s_r, char **error_r)
{
	const unsigned char *s = sqlite3_column_text(st, col);

	if (s == NULL) {
		if (sqlite3_errcode(dir->db) == SQLITE_NOMEM)
			return db_fail(dir, error_r, "column");
		return fail(error_r, "directory.db: unexpected NULL in column %s",
			    sqlite3_column_name(st, col));
	}
	*s_r = sbx_xstrdup((const char *)s);
	return 0;
}

static int
tx_begin(struct sbx_dir *dir, char **error_r)
{
	return q_simple(dir, "BEGIN IMMEDIATE", "begin", error_r);
}

static void
tx_rollback(struct sbx_dir *dir)
{
	/* Only on error paths with *error_r already set. Some errors roll the
	 * transaction back by themselves; a failing ROLLBACK leaves nothing
	 * more to report (closing the connection rolls back too). Rare, so
	 * not worth a cache entry. */
	if (!sqlite3_get_autocommit(dir->db))
		(void)sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
}

static int
tx_commit(struct sbx_dir *dir, char **error_r)
{
	if (q_simple(dir, "COMMIT", "commit", error_r) < 0) {
		tx_rollback(dir);
		return -1;
	}
	return 0;
}

/* A read transaction unless the caller already holds one. */
static int
rd_begin(struct sbx_dir *dir, int *began_r, char **error_r)
{
	*began_r = 0;
	if (!sqlite3_get_autocommit(dir->db))
		return 0;
	if (q_simple(dir, "BEGIN", "begin", error_r) < 0)
		return -1;
	*began_r = 1;
	return 0;
}

/* End a read transaction; rc < 0 means an error is already reported. */
static int
rd_end(struct sbx_dir *dir, int began, int rc, char **error_r)
{
	if (!began)
		return rc;
	if (rc < 0) {
		tx_rollback(dir);
		return rc;
	}
	if (q_simple(dir, "COMMIT", "end read", error_r) < 0) {
		tx_rollback(dir);
		return -1;
	}
	return rc;
}

/* ---------------------------------------------------------- open / close */

static int
pragma_int(struct sbx_dir *dir, const char *name, int64_t *v_r, char **error_r)
{
	char sql[64];

	snprintf(sql, sizeof(sql), "PRAGMA %s", name);
	return q_int(dir, error_r, v_r, sql, "");
}

static int
migrate(struct sbx_dir *dir, char **error_r)
{
	int64_t version;
	int v;

	if (tx_begin(dir, error_r) < 0)
		return -1;
	/* Re-read inside the write lock: another writer may have migrated. */
	if (pragma_int(dir, "user_version", &version, error_r) < 0)
		goto fail;
	for (v = (int)version; v < SCHEMA_VERSION; v++) {
		char sql[64];

		if (sqlite3_exec(dir->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK) {
			fail(error_r, "directory.db: migration %d: %s", v + 1,
			     sqlite3_errmsg(dir->db));
			goto fail;
		}
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		if (sqlite3_exec(dir->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
			db_fail(dir, error_r, "set user_version");
			goto fail;
		}
	}
	return tx_commit(dir, error_r);
fail:
	tx_rollback(dir);
	return -1;
}

/* Read the header and schema once, so a damaged or foreign file fails at
 * open with a clear message; returns the schema version. */
static int
check_file(struct sbx_dir *dir, int64_t *version_r, char **error_r)
{
	int64_t appid, nobjects = 0;
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(dir->db, "SELECT count(*) FROM sqlite_schema", -1, &st, NULL) != SQLITE_OK)
		return fail(error_r, "%s: %s", dir->path, sqlite3_errmsg(dir->db));
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		nobjects = sqlite3_column_int64(st, 0);
	else
		fail(error_r, "%s: %s", dir->path, sqlite3_errmsg(dir->db));
	/* Run once per open: not cached. Its step error is reported above. */
	(void)sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return -1;
	if (pragma_int(dir, "user_version", version_r, error_r) < 0 ||
	    pragma_int(dir, "application_id", &appid, error_r) < 0)
		return -1;
	if (appid != DIR_APPLICATION_ID && (appid != 0 || *version_r != 0 || nobjects != 0))
		return fail(error_r, "%s: not a sealbox directory.db", dir->path);
	if (*version_r > SCHEMA_VERSION)
		return fail(error_r, "%s: schema version %lld is newer than this program's (%d)",
			    dir->path, (long long)*version_r, SCHEMA_VERSION);
	return 0;
}

/* Create an empty directory.db with mode 0600 so SQLite opens it (and makes
 * -wal and -shm with the same mode) without a window where it is readable. */
static int
create_file(const char *state_dir, const char *path, char **error_r)
{
	mode_t old;
	int fd, saved;

	if (sbx_mkdir_p(state_dir, 0700) < 0)
		return fail(error_r, "mkdir %s: %s", state_dir, strerror(errno));
	old = umask(077);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	saved = errno;
	umask(old);
	if (fd < 0) {
		if (saved == EEXIST)    /* a concurrent init won; use its file */
			return 0;
		return fail(error_r, "create %s: %s", path, strerror(saved));
	}
	if (fchmod(fd, 0600) < 0) {
		saved = errno;
		close(fd);
		return fail(error_r, "chmod %s: %s", path, strerror(saved));
	}
	if (close(fd) < 0)
		return fail(error_r, "close %s: %s", path, strerror(errno));
	return 0;
}

static int
set_pragmas(struct sbx_dir *dir, char **error_r)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_exec(dir->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(dir, error_r, "foreign_keys");
	/* Like every sealbox connection: sorts stay in memory, no temp files. */
	if (sqlite3_exec(dir->db, "PRAGMA temp_store = MEMORY", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(dir, error_r, "temp_store");
	if (dir->flags & SBX_DIR_RDONLY)
		return 0;
	if (q_prepare(dir, &st, error_r, "PRAGMA journal_mode = WAL", "") < 0)
		return -1;
	rc = q_step(dir, st, error_r);
	if (rc > 0) {
		const unsigned char *mode = sqlite3_column_text(st, 0);

		if (mode == NULL || strcmp((const char *)mode, "wal") != 0) {
			fail(error_r, "directory.db: cannot switch to WAL (journal_mode %s)",
			     mode ? (const char *)mode : "unknown");
			rc = -1;
		}
	} else if (rc == 0) {
		fail(error_r, "directory.db: PRAGMA journal_mode returned nothing");
		rc = -1;
	}
	stmt_put(dir, &st);
	if (rc < 0)
		return -1;
	if (sqlite3_exec(dir->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(dir, error_r, "synchronous");
	return 0;
}

int
sbx_dir_open(const char *state_dir, int flags, struct sbx_dir **dir_r, char **error_r)
{
	struct sbx_dir *dir;
	struct stat sb;
	int64_t version;
	int oflags;

	*dir_r = NULL;
	if ((flags & SBX_DIR_CREATE) && (flags & SBX_DIR_RDONLY))
		return fail(error_r, "directory.db: SBX_DIR_CREATE needs a writable connection");
	dir = sbx_xcalloc(1, sizeof(*dir));
	dir->flags = flags;
	dir->path = sbx_xasprintf("%s/%s", state_dir, DIR_FILE);
	if (stat(dir->path, &sb) < 0) {
		if (errno != ENOENT) {
			fail(error_r, "stat %s: %s", dir->path, strerror(errno));
			goto fail;
		}
		if (!(flags & SBX_DIR_CREATE)) {
			fail(error_r, "no directory.db in %s (run sealboxctl init)", state_dir);
			goto fail;
		}
		if (create_file(state_dir, dir->path, error_r) < 0)
			goto fail;
	} else if (!S_ISREG(sb.st_mode)) {
		fail(error_r, "%s: not a regular file", dir->path);
		goto fail;
	}
	oflags = (flags & SBX_DIR_RDONLY) ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
	if (sqlite3_open_v2(dir->path, &dir->db, oflags, NULL) != SQLITE_OK) {
		if (dir->db == NULL)
			fail(error_r, "cannot open %s: out of memory", dir->path);
		else
			fail(error_r, "cannot open %s: %s", dir->path, sqlite3_errmsg(dir->db));
		goto fail;
	}
	if (sqlite3_extended_result_codes(dir->db, 1) != SQLITE_OK ||
	    sqlite3_busy_timeout(dir->db, DIR_BUSY_TIMEOUT_MS) != SQLITE_OK) {
		db_fail(dir, error_r, "setup");
		goto fail;
	}
	if (check_file(dir, &version, error_r) < 0 || set_pragmas(dir, error_r) < 0)
		goto fail;
	if (version < SCHEMA_VERSION) {
		if (flags & SBX_DIR_RDONLY) {
			if (version == 0)
				fail(error_r, "%s: no schema (run sealboxctl init)", dir->path);
			else
				fail(error_r, "%s: schema version %lld, this program needs %d"
				     " (run sealboxctl init)", dir->path, (long long)version,
				     SCHEMA_VERSION);
			goto fail;
		}
		if (migrate(dir, error_r) < 0)
			goto fail;
	}
	*dir_r = dir;
	return 0;
fail:
	sbx_dir_close(&dir);
	return -1;
}

void
sbx_dir_close(struct sbx_dir **dirp)
{
	struct sbx_dir *dir = *dirp;

	if (dir == NULL)
		return;
	/* The cache holds every statement left on the connection, so close
	 * cannot be busy; close_v2 still frees the handle if it were. */
	stmt_cache_free(dir);
	if (dir->db != NULL && sqlite3_close(dir->db) != SQLITE_OK)
		(void)sqlite3_close_v2(dir->db);
	free(dir->path);
	free(dir);
	*dirp = NULL;
}

struct sqlite3 *
sbx_dir_db(struct sbx_dir *dir)
{
	return dir->db;
}

/* ------------------------------------------------------------ validation */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

/* Check a domain of len bytes, writing it lower-cased and NUL-terminated to
 * out (len + 1 bytes). NULL when valid, else the reason. */
static const char *
domain_check(const char *d, size_t len, char *out)
{
	size_t i, label = 0, dots = 0;

	if (len == 0)
		return "empty domain";
	if (len > SBX_MAX_DOMAIN_LEN)
		return "domain longer than 253 bytes";
	for (i = 0; i < len; i++) {
		char c = d[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out[i] = c;
		if (c == '.') {
			if (label == 0)
				return "empty label in domain";
			if (out[i - 1] == '-')
				return "domain label ends with '-'";
			dots++;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return "invalid character in domain";
		if (label == 0 && c == '-')
			return "domain label starts with '-'";
		if (++label > 63)
			return "domain label longer than 63 bytes";
	}
	if (label == 0)
		return "empty label in domain";
	if (out[len - 1] == '-')
		return "domain label ends with '-'";
	if (dots == 0)
		return "domain needs at least one dot";
	out[len] = '\0';
	return NULL;
}

/* Ordinary local part: lower-case ASCII into out. */
static const char *
local_check(const char *l, size_t len, char *out)
{
	const unsigned char *s = (const unsigned char *)l;
	size_t i, n;

	if (len == 0)
		return "empty local part";
	if (len > SBX_MAX_LOCALPART_LEN)
		return "local part longer than 64 bytes";
	if ((len == 1 && l[0] == '*') || l[0] == '~')
		return "local part '*' or '~...' is reserved for alias forms";
	for (i = 0; i < len; i += n) {
		unsigned char c = s[i];

		n = 1;
		if (c >= 0x80) {
			n = utf8_len(s + i, len - i);
			if (n == 0)
				return "invalid UTF-8 in local part";
			memcpy(out + i, s + i, n);
			continue;
		}
		if (c <= 0x20 || c == 0x7f)
			return "space or control character in local part";
		if (strchr("<>,\"\\@", c) != NULL)
			return "invalid character in local part";
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	return NULL;
}

/* Compile "^(re)$" as sbx_dir_resolve does. */
static int
regex_compile(const char *re, size_t len, regex_t *rx, int cflags, char *err, size_t errsz)
{
	char *anchored = sbx_xasprintf("^(%.*s)$", (int)len, re);
	int rc = regcomp(rx, anchored, cflags);

	free(anchored);
	if (rc != 0) {
		regerror(rc, rx, err, errsz);
		return -1;
	}
	return 0;
}

/* i is just past the '[' opening a bracket expression of re; returns the
 * index just past its closing ']' (or len + 1 when unterminated). A ']'
 * first in the list, and "[:class:]", "[=e=]", "[.c.]" inside it, do not
 * close it. */
static size_t
regex_skip_bracket(const char *re, size_t len, size_t i)
{
	if (i < len && re[i] == '^')
		i++;
	if (i < len && re[i] == ']')
		i++;
	while (i < len && re[i] != ']') {
		if (re[i] == '[' && i + 1 < len &&
		    (re[i + 1] == ':' || re[i + 1] == '=' || re[i + 1] == '.')) {
			char end = re[i + 1];

			for (i += 2; i + 1 < len && !(re[i] == end && re[i + 1] == ']'); i++)
				;
			i += 2;
		} else {
			i++;
		}
	}
	return i + 1;
}

/* 0 when every ')' of the ERE closes a '(' (outside bracket expressions and
 * escapes). glibc reads an unmatched ')' as a literal, so without this
 * "a)|(b)" would compile both alone and as "^(a)|(b))$", which is no longer
 * anchored. */
static int
regex_parens_balanced(const char *re, size_t len)
{
	size_t i = 0, depth = 0;

	while (i < len) {
		char c = re[i++];

		if (c == '\\') {
			i++;
		} else if (c == '(') {
			depth++;
		} else if (c == ')') {
			if (depth == 0)
				return -1;
			depth--;
		} else if (c == '[') {
			i = regex_skip_bracket(re, len, i);
		}
	}
	return depth == 0 ? 0 : -1;
}

/* glibc's regcomp copies the operand of '+' once and that of "{m,n}" up to
 * n times, so nested repetitions compile to exponentially many nodes: "~a"
 * and 22 '+' took 32 s and 3.3 GB. Even without copies, stacked repetitions
 * cost about k^4: "^e" and 80 '*' takes 0.9 s. So before regcomp, refuse
 *  - more than REGEX_MAX_NODES atoms once copies are counted (summed like
 *    the parse tree: a repeated group counts its whole content), and
 *  - a repetition applied to something already repeated more than
 *    REGEX_MAX_NEST - 1 times ("a**", "((a+)*)*"; adjacent repetition
 *    operators are undefined in POSIX EREs anyway),
 *  - groups nested deeper than REGEX_MAX_DEPTH.
 * Bracket expressions and escapes are one atom; the walk mirrors
 * regex_parens_balanced (called first). */
#define REGEX_MAX_NODES 10000
#define REGEX_MAX_NEST  3
#define REGEX_MAX_DEPTH 32

static int
regex_size_ok(const char *re, size_t len)
{
	uint64_t sum[REGEX_MAX_DEPTH + 1], last = 0;
	unsigned nest[REGEX_MAX_DEPTH + 1], last_nest = 0;
	size_t i = 0, depth = 0;

	sum[0] = 0;
	nest[0] = 0;
	while (i < len) {
		char c = re[i++];
		uint64_t copies = 1;

		if (c == '(') {
			if (++depth > REGEX_MAX_DEPTH)
				return -1;
			sum[depth] = 0;
			nest[depth] = 0;
			last = 0;
			last_nest = 0;
			continue;
		}
		if (c == ')') {
			if (depth == 0)
				return -1;
			last_nest = nest[depth];
			last = sum[depth--];
			sum[depth] += last;
			if (last_nest > nest[depth])
				nest[depth] = last_nest;
			continue;
		}
		if (c == '|') {
			last = 0;
			last_nest = 0;
			continue;
		}
		if (c == '*' || c == '?') {
			/* no copies */
		} else if (c == '+') {
			copies = 2;
		} else if (c == '{') {
			uint64_t n = 0;

			/* "{m}", "{m,}" (m + 1 copies) or "{m,n}": the largest bound. */
			while (i < len && re[i] != '}') {
				uint64_t v = 0;

				while (i < len && re[i] >= '0' && re[i] <= '9' && v <= REGEX_MAX_NODES)
					v = v * 10 + (uint64_t)(re[i++] - '0');
				if (v > n)
					n = v;
				if (i < len && re[i] == ',') {
					i++;
					if (i < len && re[i] == '}')
						n++;
				} else if (i < len && re[i] != '}') {
					i++;
				}
			}
			i++;
			copies = n > 1 ? n : 1;
		} else {
			if (c == '\\') {
				i++;
			} else if (c == '[') {
				i = regex_skip_bracket(re, len, i);
			}
			last = 1;
			last_nest = 0;
			if (++sum[depth] > REGEX_MAX_NODES)
				return -1;
			continue;
		}
		/* A repetition operator applies to the last atom or group. */
		if (++last_nest > REGEX_MAX_NEST)
			return -1;
		if (last_nest > nest[depth])
			nest[depth] = last_nest;
		if (copies > 1) {
			if (last > REGEX_MAX_NODES / copies)
				return -1;
			sum[depth] += last * (copies - 1);
			last *= copies;
		}
		if (sum[depth] > REGEX_MAX_NODES)
			return -1;
	}
	return 0;
}

static int
regex_check(const char *re, size_t len, char **error_r)
{
	const unsigned char *s = (const unsigned char *)re;
	char err[128];
	regex_t rx;
	size_t i, n;
	char *raw;
	int rc;

	if (len == 0)
		return fail(error_r, "empty regex");
	if (len > SBX_MAX_REGEX_LEN)
		return fail(error_r, "regex longer than %d bytes", SBX_MAX_REGEX_LEN);
	for (i = 0; i < len; i += n) {
		n = 1;
		if (s[i] <= 0x20 || s[i] == 0x7f)
			return fail(error_r, "space or control character in regex");
		if (s[i] >= 0x80 && (n = utf8_len(s + i, len - i)) == 0)
			return fail(error_r, "invalid UTF-8 in regex");
	}
	/* The bare regex must compile on its own and balance its parentheses,
	 * so nothing like "a)|(b" can escape the ^(...)$ anchoring. */
	if (regex_parens_balanced(re, len) < 0)
		return fail(error_r, "invalid regex: unbalanced parentheses");
	if (regex_size_ok(re, len) < 0)
		return fail(error_r, "invalid regex: too complex (repetitions nested more than %d deep, "
			    "or more than %d atoms once repeated)", REGEX_MAX_NEST, REGEX_MAX_NODES);
	raw = sbx_xstrndup(re, len);
	rc = regcomp(&rx, raw, REG_EXTENDED | REG_NOSUB);
	free(raw);
	if (rc != 0) {
		regerror(rc, &rx, err, sizeof(err));
		return fail(error_r, "invalid regex: %s", err);
	}
	regfree(&rx);
	if (regex_compile(re, len, &rx, REG_EXTENDED | REG_ICASE | REG_NOSUB, err, sizeof(err)) < 0)
		return fail(error_r, "invalid regex: %s", err);
	regfree(&rx);
	return 0;
}

static int
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

int
sbx_addr_normalize(const char *in, int allow_forms, char **out_r, char **error_r)
{
	const char *at, *why;
	size_t len, llen;
	char *out, *e;

	*out_r = NULL;
	if (in == NULL || *in == '\0')
		return fail(error_r, "empty address");
	len = strlen(in);
	if (len > SBX_MAX_REGEX_LEN + 2 + SBX_MAX_DOMAIN_LEN)
		return fail_v(error_r, "address too long", in, "");
	if (is_space(in[0]) || is_space(in[len - 1]))
		return fail_v(error_r, "invalid address (surrounding whitespace)", in, "");
	if (strpbrk(in, "<>") != NULL)
		return fail_v(error_r, "invalid address ('<' or '>')", in, "");
	if ((at = strrchr(in, '@')) == NULL)
		return fail_v(error_r, "invalid address (no '@')", in, "");
	llen = (size_t)(at - in);
	out = sbx_xmalloc(len + 1);
	memcpy(out, in, llen);
	out[llen] = '@';
	if (allow_forms && llen == 1 && in[0] == '*') {
		why = NULL;
	} else if (allow_forms && llen > 0 && in[0] == '~') {
		if (regex_check(in + 1, llen - 1, &e) < 0) {
			fail_v(error_r, e, in, "");
			free(e);
			free(out);
			return -1;
		}
		why = NULL;
	} else {
		why = local_check(in, llen, out);
		if (why == NULL && len > SBX_MAX_ADDRESS_LEN)
			why = "address longer than 320 bytes";
	}
	if (why == NULL)
		why = domain_check(at + 1, len - llen - 1, out + llen + 1);
	if (why != NULL) {
		char *p = printable(in);

		fail(error_r, "invalid address (%s): %s", why, p);
		free(p);
		free(out);
		return -1;
	}
	*out_r = out;
	return 0;
}

static int
domain_normalize(const char *in, char **out_r, char **error_r)
{
	size_t len = in ? strlen(in) : 0;
	const char *why;
	char *out;

	*out_r = NULL;
	if (len > SBX_MAX_DOMAIN_LEN)
		return fail_v(error_r, "invalid domain (longer than 253 bytes)", in, "");
	out = sbx_xmalloc(len + 1);
	if ((why = domain_check(in ? in : "", len, out)) != NULL) {
		char *p = printable(in ? in : "");

		fail(error_r, "invalid domain (%s): %s", why, p);
		free(p);
		free(out);
		return -1;
	}
	*out_r = out;
	return 0;
}

int
sbx_url_validate(const char *url, char **error_r)
{
	const char *p, *host, *host_end, *auth_end;
	size_t len, hlen, i;
	int https;

	if (url == NULL || *url == '\0')
		return fail(error_r, "empty URL");
	len = strlen(url);
	if (len > SBX_MAX_URL_LEN)
		return fail(error_r, "URL longer than %d bytes", SBX_MAX_URL_LEN);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)url[i];

		if (c <= 0x20 || c >= 0x7f)
			return fail_v(error_r, "invalid URL (whitespace, control or non-ASCII byte)", url, "");
	}
	if (strncasecmp(url, "https://", 8) == 0) {
		https = 1;
		p = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		https = 0;
		p = url + 7;
	} else {
		return fail_v(error_r, "invalid URL (need https://)", url, "");
	}
	auth_end = p + strcspn(p, "/?#");
	if (memchr(p, '@', (size_t)(auth_end - p)) != NULL)
		return fail_v(error_r, "invalid URL (user info not allowed)", url, "");
	host = p;
	if (*p == '[') {
		host_end = memchr(p, ']', (size_t)(auth_end - p));
		if (host_end == NULL || host_end == p + 1)
			return fail_v(error_r, "invalid URL (bad IPv6 literal)", url, "");
		for (i = 1; p + i < host_end; i++)
			if (strchr("0123456789abcdefABCDEF:.", p[i]) == NULL)
				return fail_v(error_r, "invalid URL (bad IPv6 literal)", url, "");
		host_end++;
	} else {
		host_end = p + strcspn(p, ":/?#");
		if (host_end == p)
			return fail_v(error_r, "invalid URL (no host)", url, "");
		for (i = 0; p + i < host_end; i++)
			if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_",
				   p[i]) == NULL)
				return fail_v(error_r, "invalid URL (bad character in host)", url, "");
	}
	hlen = (size_t)(host_end - host);
	if (host_end < auth_end) {
		const char *q = host_end + 1;
		unsigned long port = 0;

		if (*host_end != ':' || q == auth_end || auth_end - q > 5)
			return fail_v(error_r, "invalid URL (bad port)", url, "");
		for (; q < auth_end; q++) {
			if (*q < '0' || *q > '9')
				return fail_v(error_r, "invalid URL (bad port)", url, "");
			port = port * 10 + (unsigned long)(*q - '0');
		}
		if (port == 0 || port > 65535)
			return fail_v(error_r, "invalid URL (bad port)", url, "");
	}
	if (!https &&
	    !(hlen == 9 && strncmp(host, "127.0.0.1", 9) == 0) &&
	    !(hlen == 5 && strncmp(host, "[::1]", 5) == 0) &&
	    !(hlen == 9 && strncasecmp(host, "localhost", 9) == 0))
		return fail_v(error_r, "invalid URL (http:// only to 127.0.0.1, ::1 or localhost)", url, "");
	return 0;
}

/* ---------------------------------------------------------------- domains */

static int
domain_hosted(struct sbx_dir *dir, const char *domain, char **error_r)
{
	int64_t n;

	if (q_int(dir, error_r, &n, "SELECT count(*) FROM domains WHERE name = ?", "t", domain) < 0)
		return -1;
	return n > 0;
}

int
sbx_dir_domain_add(struct sbx_dir *dir, const char *domain, char **error_r)
{
	char *d;
	int rc;

	if (domain_normalize(domain, &d, error_r) < 0)
		return -1;
	if (tx_begin(dir, error_r) < 0)
		goto out_free;
	rc = domain_hosted(dir, d, error_r);
	if (rc > 0)
		fail_v(error_r, "domain already exists", d, "");
	if (rc != 0 ||
	    q_exec(dir, error_r, "INSERT INTO domains (name, created) VALUES (?, ?)",
		   "ti", d, (int64_t)time(NULL)) < 0 ||
	    tx_commit(dir, error_r) < 0)
		goto out_rollback;
	free(d);
	return 0;
out_rollback:
	tx_rollback(dir);
out_free:
	free(d);
	return -1;
}

int
sbx_dir_domain_del(struct sbx_dir *dir, const char *domain, char **error_r)
{
	int64_t nmbox, nalias;
	char *d;
	int rc;

	if (domain_normalize(domain, &d, error_r) < 0)
		return -1;
	if (tx_begin(dir, error_r) < 0)
		goto out_free;
	if ((rc = domain_hosted(dir, d, error_r)) < 0)
		goto out_rollback;
	if (rc == 0) {
		fail_v(error_r, "no such domain", d, "");
		goto out_rollback;
	}
	/* A mailbox's own exact alias counts as part of the mailbox. */
	if (q_int(dir, error_r, &nmbox, "SELECT count(*) FROM mailboxes WHERE domain = ?", "t", d) < 0 ||
	    q_int(dir, error_r, &nalias,
		  "SELECT count(*) FROM aliases WHERE domain = ?"
		  " AND address NOT IN (SELECT address FROM mailboxes)", "t", d) < 0)
		goto out_rollback;
	if (nmbox > 0 || nalias > 0) {
		fail(error_r, "domain in use: %s (%lld mailboxes, %lld aliases)", d,
		     (long long)nmbox, (long long)nalias);
		goto out_rollback;
	}
	if (q_exec(dir, error_r, "DELETE FROM domains WHERE name = ?", "t", d) < 0 ||
	    tx_commit(dir, error_r) < 0)
		goto out_rollback;
	free(d);
	return 0;
out_rollback:
	tx_rollback(dir);
out_free:
	free(d);
	return -1;
}

int
sbx_dir_domain_exists(struct sbx_dir *dir, const char *domain, char **error_r)
{
	char *d, *e;
	int rc;

	/* A name that cannot be a domain is simply not hosted. */
	if (domain_normalize(domain, &d, &e) < 0) {
		free(e);
		return 0;
	}
	rc = domain_hosted(dir, d, error_r);
	free(d);
	return rc;
}

int
sbx_dir_domain_list(struct sbx_dir *dir, char ***names_r, size_t *n_r, char **error_r)
{
	sqlite3_stmt *st;
	char **v = NULL;
	size_t n = 0, cap = 0;
	int rc;

	*names_r = NULL;
	*n_r = 0;
	if (q_prepare(dir, &st, error_r, "SELECT name FROM domains ORDER BY name", "") < 0)
		return -1;
	while ((rc = q_step(dir, st, error_r)) > 0) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			v = sbx_xrealloc(v, cap * sizeof(*v));
		}
		if ((rc = col_text(dir, st, 0, &v[n], error_r)) < 0)
			break;
		n++;
	}
	stmt_put(dir, &st);
	if (rc < 0) {
		sbx_strv_free(v, n);
		return -1;
	}
	*names_r = v;
	*n_r = n;
	return 0;
}

void
sbx_strv_free(char **v, size_t n)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* -------------------------------------------------------------- mailboxes */

#define MAILBOX_COLS "id, address, quota_bytes, usage_bytes, usage_msgs, spool_pk"

static uint64_t
col_u64(sqlite3_stmt *st, int col)
{
	int64_t v = sqlite3_column_int64(st, col);

	return v < 0 ? 0 : (uint64_t)v;
}

static int
mailbox_row(struct sbx_dir *dir, sqlite3_stmt *st, struct sbx_dir_mailbox *m, char **error_r)
{
	const unsigned char *id = sqlite3_column_text(st, 0);
	const void *pk;

	memset(m, 0, sizeof(*m));
	if (id == NULL || !sbx_is_id((const char *)id))
		return fail(error_r, "directory.db: bad mailbox id in row");
	memcpy(m->id, id, SBX_ID_HEX);
	pk = sqlite3_column_blob(st, 5);
	if (pk == NULL || sqlite3_column_bytes(st, 5) != 32)
		return fail(error_r, "directory.db: bad spool key for mailbox %s", m->id);
	memcpy(m->spool_pk, pk, 32);
	m->quota_bytes = col_u64(st, 2);
	m->usage_bytes = col_u64(st, 3);
	m->usage_msgs = col_u64(st, 4);
	return col_text(dir, st, 1, &m->address, error_r);
}

/* 1 found, 0 not, -1 error. */
static int
mailbox_get(struct sbx_dir *dir, const char *column, const char *value,
	    struct sbx_dir_mailbox *m_r, char **error_r)
{
	sqlite3_stmt *st;
	char sql[128];
	int rc;

	snprintf(sql, sizeof(sql), "SELECT " MAILBOX_COLS " FROM mailboxes WHERE %s = ?", column);
	if (q_prepare(dir, &st, error_r, sql, "t", value) < 0)
		return -1;
	rc = q_step(dir, st, error_r);
	if (rc > 0 && mailbox_row(dir, st, m_r, error_r) < 0) {
		sbx_dir_mailbox_clear(m_r);
		rc = -1;
	}
	stmt_put(dir, &st);
	return rc;
}

/* By id, by mailbox address, or by an exact alias whose single target is a
 * mailbox. 1 found, 0 not, -1 error. */
static int
mailbox_lookup(struct sbx_dir *dir, const char *key, struct sbx_dir_mailbox *m_r, char **error_r)
{
	sqlite3_stmt *st;
	char *addr, *e, *id = NULL;
	int rc;

	if (sbx_is_id(key))
		return mailbox_get(dir, "id", key, m_r, error_r);
	if (sbx_addr_normalize(key, 0, &addr, &e) < 0) {
		free(e);
		return 0;
	}
	rc = mailbox_get(dir, "address", addr, m_r, error_r);
	if (rc != 0) {
		free(addr);
		return rc;
	}
	rc = q_prepare(dir, &st, error_r,
		       "SELECT t.value FROM aliases a JOIN targets t ON t.alias_id = a.id"
		       " WHERE a.address = ? AND a.kind = 'exact' AND t.kind = 'mailbox'"
		       " AND (SELECT count(*) FROM targets u WHERE u.alias_id = a.id) = 1",
		       "t", addr);
	free(addr);
	if (rc < 0)
		return -1;
	rc = q_step(dir, st, error_r);
	if (rc > 0 && col_text(dir, st, 0, &id, error_r) < 0)
		rc = -1;
	stmt_put(dir, &st);
	if (rc > 0)
		rc = mailbox_get(dir, "id", id, m_r, error_r);
	free(id);
	return rc;
}

static int
mailbox_exists(struct sbx_dir *dir, const char *id, char **error_r)
{
	int64_t n;

	if (q_int(dir, error_r, &n, "SELECT count(*) FROM mailboxes WHERE id = ?", "t", id) < 0)
		return -1;
	return n > 0;
}

static int
alias_taken(struct sbx_dir *dir, const char *addr, char **error_r)
{
	int64_t n;

	if (q_int(dir, error_r, &n,
		  "SELECT (SELECT count(*) FROM aliases WHERE address = ?1)"
		  " + (SELECT count(*) FROM mailboxes WHERE address = ?1)", "t", addr) < 0)
		return -1;
	return n > 0;
}

static int
envelope_id_check(const char *envelope_id, char **error_r)
{
	size_t i, len = envelope_id ? strlen(envelope_id) : 0;

	if (len == 0 || len > SBX_MAX_ENVELOPE_ID_LEN)
		return fail(error_r, "invalid envelope id (1..%d bytes)", SBX_MAX_ENVELOPE_ID_LEN);
	for (i = 0; i < len; i++)
		if ((unsigned char)envelope_id[i] <= 0x20 || (unsigned char)envelope_id[i] >= 0x7f)
			return fail(error_r, "invalid envelope id (printable ASCII only)");
	return 0;
}

static int
envelope_blob_check(const unsigned char *blob, size_t len, char **error_r)
{
	if (blob == NULL || len == 0 || len > SBX_MAX_ENVELOPE_BLOB)
		return fail(error_r, "invalid key envelope (1..%d bytes)", SBX_MAX_ENVELOPE_BLOB);
	return 0;
}

int
sbx_dir_mailbox_add(struct sbx_dir *dir, const char *address, uint64_t quota_bytes,
		    const unsigned char spool_pk[32], const char *envelope_id,
		    const unsigned char *envelope, size_t envelope_len,
		    char id_r[SBX_ID_HEX], char **error_r)
{
	char id[SBX_ID_HEX], *addr;
	const char *domain;
	int64_t now = (int64_t)time(NULL);
	int rc;

	if (quota_bytes > INT64_MAX)
		return fail(error_r, "quota too large");
	if (spool_pk == NULL)
		return fail(error_r, "missing spool public key");
	if (envelope_id_check(envelope_id, error_r) < 0 ||
	    envelope_blob_check(envelope, envelope_len, error_r) < 0)
		return -1;
	/* The caller may choose the id: the key envelope's AD names the
	 * mailbox id, so it must be known before this row exists. */
	if (id_r[0] != '\0') {
		if (!sbx_is_id(id_r))
			return fail(error_r, "invalid mailbox id (want 32 lower-case hex digits)");
		memcpy(id, id_r, SBX_ID_HEX);
	} else {
		sbx_random_id(id);
	}
	if (sbx_addr_normalize(address, 0, &addr, error_r) < 0)
		return -1;
	domain = strrchr(addr, '@') + 1;
	if (tx_begin(dir, error_r) < 0)
		goto out_free;
	if ((rc = mailbox_exists(dir, id, error_r)) < 0)
		goto out_rollback;
	if (rc > 0) {
		fail_v(error_r, "mailbox id already exists", id, "");
		goto out_rollback;
	}
	if ((rc = domain_hosted(dir, domain, error_r)) < 0)
		goto out_rollback;
	if (rc == 0) {
		fail_v(error_r, "domain not hosted", domain, " (sealboxctl domain add)");
		goto out_rollback;
	}
	if ((rc = alias_taken(dir, addr, error_r)) < 0)
		goto out_rollback;
	if (rc > 0) {
		fail_v(error_r, "address already exists", addr, "");
		goto out_rollback;
	}
	if (q_exec(dir, error_r,
		   "INSERT INTO mailboxes (id, address, domain, quota_bytes, spool_pk, created)"
		   " VALUES (?, ?, ?, ?, ?, ?)", "tttibi",
		   id, addr, domain, (int64_t)quota_bytes, spool_pk, (size_t)32, now) < 0 ||
	    q_exec(dir, error_r,
		   "INSERT INTO envelopes (mailbox_id, envelope_id, blob, created) VALUES (?, ?, ?, ?)",
		   "ttbi", id, envelope_id, envelope, envelope_len, now) < 0 ||
	    q_exec(dir, error_r,
		   "INSERT INTO aliases (address, kind, domain, created) VALUES (?, 'exact', ?, ?)",
		   "tti", addr, domain, now) < 0 ||
	    q_exec(dir, error_r,
		   "INSERT INTO targets (alias_id, position, kind, value) VALUES (?, 0, 'mailbox', ?)",
		   "it", (int64_t)sqlite3_last_insert_rowid(dir->db), id) < 0 ||
	    tx_commit(dir, error_r) < 0)
		goto out_rollback;
	memcpy(id_r, id, SBX_ID_HEX);
	free(addr);
	return 0;
out_rollback:
	tx_rollback(dir);
out_free:
	free(addr);
	return -1;
}

int
sbx_dir_mailbox_find(struct sbx_dir *dir, const char *address_or_id,
		     struct sbx_dir_mailbox *m_r, char **error_r)
{
	int began, rc;

	memset(m_r, 0, sizeof(*m_r));
	if (address_or_id == NULL || *address_or_id == '\0')
		return fail(error_r, "no such mailbox: (empty)");
	if (rd_begin(dir, &began, error_r) < 0)
		return -1;
	rc = rd_end(dir, began, mailbox_lookup(dir, address_or_id, m_r, error_r), error_r);
	if (rc < 0)
		sbx_dir_mailbox_clear(m_r);
	if (rc == 0)
		return fail_v(error_r, "no such mailbox", address_or_id, "");
	return rc < 0 ? -1 : 0;
}

int
sbx_dir_mailbox_list(struct sbx_dir *dir, struct sbx_dir_mailbox **v_r, size_t *n_r, char **error_r)
{
	struct sbx_dir_mailbox *v = NULL;
	sqlite3_stmt *st;
	size_t n = 0, cap = 0;
	int rc;

	*v_r = NULL;
	*n_r = 0;
	if (q_prepare(dir, &st, error_r,
		      "SELECT " MAILBOX_COLS " FROM mailboxes ORDER BY address", "") < 0)
		return -1;
	while ((rc = q_step(dir, st, error_r)) > 0) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			v = sbx_xrealloc(v, cap * sizeof(*v));
		}
		if ((rc = mailbox_row(dir, st, &v[n], error_r)) < 0) {
			sbx_dir_mailbox_clear(&v[n]);
			break;
		}
		n++;
	}
	stmt_put(dir, &st);
	if (rc < 0) {
		sbx_dir_mailbox_list_free(v, n);
		return -1;
	}
	*v_r = v;
	*n_r = n;
	return 0;
}

void
sbx_dir_mailbox_clear(struct sbx_dir_mailbox *m)
{
	free(m->address);
	memset(m, 0, sizeof(*m));
}

void
sbx_dir_mailbox_list_free(struct sbx_dir_mailbox *v, size_t n)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++)
		sbx_dir_mailbox_clear(&v[i]);
	free(v);
}

static int
id_check(const char *id, char **error_r)
{
	if (id == NULL || !sbx_is_id(id))
		return fail_v(error_r, "no such mailbox", id ? id : "(null)", " (not a mailbox id)");
	return 0;
}

int
sbx_dir_mailbox_del(struct sbx_dir *dir, const char *mailbox_id, char **error_r)
{
	int rc;

	if (id_check(mailbox_id, error_r) < 0 || tx_begin(dir, error_r) < 0)
		return -1;
	if ((rc = mailbox_exists(dir, mailbox_id, error_r)) < 0)
		goto fail;
	if (rc == 0) {
		fail_v(error_r, "no such mailbox", mailbox_id, "");
		goto fail;
	}
	/* Envelopes go by ON DELETE CASCADE. */
	if (q_exec(dir, error_r, "DELETE FROM targets WHERE kind = 'mailbox' AND value = ?",
		   "t", mailbox_id) < 0 ||
	    q_exec(dir, error_r,
		   "DELETE FROM aliases WHERE NOT EXISTS"
		   " (SELECT 1 FROM targets WHERE targets.alias_id = aliases.id)", "") < 0 ||
	    q_exec(dir, error_r, "DELETE FROM mailboxes WHERE id = ?", "t", mailbox_id) < 0)
		goto fail;
	return tx_commit(dir, error_r);
fail:
	tx_rollback(dir);
	return -1;
}

/* One UPDATE of a mailbox row; a missing row is an error. */
static int
mailbox_update(struct sbx_dir *dir, const char *mailbox_id, const char *sql,
	       int64_t a, int64_t b, char **error_r)
{
	int rc;

	if (id_check(mailbox_id, error_r) < 0 || tx_begin(dir, error_r) < 0)
		return -1;
	rc = q_exec(dir, error_r, sql, "iit", a, b, mailbox_id);
	if (rc == 0)
		fail_v(error_r, "no such mailbox", mailbox_id, "");
	if (rc <= 0) {
		tx_rollback(dir);
		return -1;
	}
	return tx_commit(dir, error_r);
}

int
sbx_dir_mailbox_set_quota(struct sbx_dir *dir, const char *mailbox_id, uint64_t quota_bytes, char **error_r)
{
	if (quota_bytes > INT64_MAX)
		return fail(error_r, "quota too large");
	return mailbox_update(dir, mailbox_id, "UPDATE mailboxes SET quota_bytes = ?1 WHERE id = ?3",
			      (int64_t)quota_bytes, 0, error_r);
}

/* cur + d, clamped to 0..INT64_MAX. */
static int64_t
clamp_add(int64_t cur, int64_t d)
{
	if (cur < 0)
		cur = 0;
	if (d >= 0)
		return cur > INT64_MAX - d ? INT64_MAX : cur + d;
	return cur + d < 0 ? 0 : cur + d;   /* cur >= 0, d < 0: no overflow */
}

int
sbx_dir_usage_add(struct sbx_dir *dir, const char *mailbox_id, int64_t dbytes, int64_t dmsgs, char **error_r)
{
	sqlite3_stmt *st;
	int64_t bytes = 0, msgs = 0;
	int rc;

	if (id_check(mailbox_id, error_r) < 0 || tx_begin(dir, error_r) < 0)
		return -1;
	if (q_prepare(dir, &st, error_r,
		      "SELECT usage_bytes, usage_msgs FROM mailboxes WHERE id = ?", "t", mailbox_id) < 0)
		goto fail;
	rc = q_step(dir, st, error_r);
	if (rc > 0) {
		bytes = clamp_add(sqlite3_column_int64(st, 0), dbytes);
		msgs = clamp_add(sqlite3_column_int64(st, 1), dmsgs);
	}
	stmt_put(dir, &st);
	if (rc == 0)
		fail_v(error_r, "no such mailbox", mailbox_id, "");
	if (rc <= 0 ||
	    q_exec(dir, error_r, "UPDATE mailboxes SET usage_bytes = ?, usage_msgs = ? WHERE id = ?",
		   "iit", bytes, msgs, mailbox_id) < 0)
		goto fail;
	return tx_commit(dir, error_r);
fail:
	tx_rollback(dir);
	return -1;
}

int
sbx_dir_usage_set(struct sbx_dir *dir, const char *mailbox_id, uint64_t bytes, uint64_t msgs, char **error_r)
{
	if (bytes > INT64_MAX || msgs > INT64_MAX)
		return fail(error_r, "usage value too large");
	return mailbox_update(dir, mailbox_id,
			      "UPDATE mailboxes SET usage_bytes = ?1, usage_msgs = ?2 WHERE id = ?3",
			      (int64_t)bytes, (int64_t)msgs, error_r);
}

/* ------------------------------------------------------ lmtp deliveries */

int
sbx_dir_delivery_seen(struct sbx_dir *dir, const char *queue_id, const char *rcpt,
		      char delivery_id_r[SBX_ID_HEX], char **error_r)
{
	sqlite3_stmt *st;
	int rc;

	if (q_prepare(dir, &st, error_r,
		      "SELECT delivery_id FROM lmtp_delivered WHERE queue_id = ? AND rcpt = ?",
		      "tt", queue_id, rcpt) < 0)
		return -1;
	rc = q_step(dir, st, error_r);
	if (rc > 0) {
		const unsigned char *id = sqlite3_column_text(st, 0);

		snprintf(delivery_id_r, SBX_ID_HEX, "%s", id != NULL ? (const char *)id : "");
	}
	stmt_put(dir, &st);
	return rc;
}

int
sbx_dir_deliveries_record(struct sbx_dir *dir, const struct sbx_dir_delivery *v, size_t n,
			  time_t now, char **error_r)
{
	size_t i;
	int prune;

	if (n == 0)
		return 0;
	if (tx_begin(dir, error_r) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (id_check(v[i].mailbox_id, error_r) < 0 || v[i].bytes > INT64_MAX)
			goto fail;
		if (q_exec(dir, error_r, "UPDATE mailboxes SET usage_bytes = min(usage_bytes + ?1, ?3), "
			   "usage_msgs = usage_msgs + 1 WHERE id = ?2", "iti",
			   (int64_t)v[i].bytes, v[i].mailbox_id, (int64_t)INT64_MAX) < 0)
			goto fail;
		if (v[i].queue_id != NULL && v[i].queue_id[0] != '\0' &&
		    q_exec(dir, error_r, "INSERT OR REPLACE INTO lmtp_delivered(queue_id, rcpt, delivery_id, at) "
			   "VALUES (?, ?, ?, ?)", "ttti", v[i].queue_id, v[i].rcpt, v[i].delivery_id,
			   (int64_t)now) < 0)
			goto fail;
	}
	/* Postfix gives up on a message after maximal_queue_lifetime (5 days
	 * by default): a week of records covers every retry. Expired records
	 * are harmless for a while, so prune at most once a DIR_PRUNE_INTERVAL
	 * per connection (or when the clock went back), not on every batch. */
	prune = now < dir->last_prune || now - dir->last_prune >= DIR_PRUNE_INTERVAL;
	if (prune && q_exec(dir, error_r, "DELETE FROM lmtp_delivered WHERE at < ?", "i",
			    (int64_t)now - SBX_DIR_DELIVERED_KEEP) < 0)
		goto fail;
	if (tx_commit(dir, error_r) < 0)
		return -1;
	/* Only a committed prune counts: a rolled back one must run again. */
	if (prune)
		dir->last_prune = now;
	return 0;
fail:
	tx_rollback(dir);
	return -1;
}

/* -------------------------------------------------------------- envelopes */

int
sbx_dir_envelopes_get(struct sbx_dir *dir, const char *mailbox_id,
		      struct sbx_dir_envelope **v_r, size_t *n_r, char **error_r)
{
	struct sbx_dir_envelope *v = NULL;
	sqlite3_stmt *st = NULL;
	size_t n = 0, cap = 0;
	int began, rc;

	*v_r = NULL;
	*n_r = 0;
	if (id_check(mailbox_id, error_r) < 0 || rd_begin(dir, &began, error_r) < 0)
		return -1;
	rc = mailbox_exists(dir, mailbox_id, error_r);
	if (rc == 0) {
		fail_v(error_r, "no such mailbox", mailbox_id, "");
		rc = -1;
	}
	if (rc > 0)
		rc = q_prepare(dir, &st, error_r,
			       "SELECT envelope_id, blob FROM envelopes WHERE mailbox_id = ?"
			       " ORDER BY envelope_id", "t", mailbox_id);
	while (rc >= 0 && (rc = q_step(dir, st, error_r)) > 0) {
		const void *blob = sqlite3_column_blob(st, 1);
		int len = sqlite3_column_bytes(st, 1);

		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			v = sbx_xrealloc(v, cap * sizeof(*v));
		}
		if (blob == NULL || len <= 0) {
			rc = fail(error_r, "directory.db: empty key envelope for mailbox %s", mailbox_id);
			break;
		}
		if ((rc = col_text(dir, st, 0, &v[n].envelope_id, error_r)) < 0)
			break;
		v[n].len = (size_t)len;
		v[n].blob = sbx_xmalloc(v[n].len);
		memcpy(v[n].blob, blob, v[n].len);
		n++;
	}
	stmt_put(dir, &st);
	if (rd_end(dir, began, rc, error_r) < 0) {
		sbx_dir_envelopes_free(v, n);
		return -1;
	}
	*v_r = v;
	*n_r = n;
	return 0;
}

void
sbx_dir_envelopes_free(struct sbx_dir_envelope *v, size_t n)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(v[i].envelope_id);
		free(v[i].blob);
	}
	free(v);
}

int
sbx_dir_envelope_put(struct sbx_dir *dir, const char *mailbox_id, const char *envelope_id,
		     const unsigned char *blob, size_t len, char **error_r)
{
	int64_t count, exists;
	int rc;

	if (id_check(mailbox_id, error_r) < 0 || envelope_id_check(envelope_id, error_r) < 0 ||
	    envelope_blob_check(blob, len, error_r) < 0 || tx_begin(dir, error_r) < 0)
		return -1;
	if ((rc = mailbox_exists(dir, mailbox_id, error_r)) < 0)
		goto fail;
	if (rc == 0) {
		fail_v(error_r, "no such mailbox", mailbox_id, "");
		goto fail;
	}
	if (q_int(dir, error_r, &count,
		  "SELECT count(*) FROM envelopes WHERE mailbox_id = ?", "t", mailbox_id) < 0 ||
	    q_int(dir, error_r, &exists,
		  "SELECT count(*) FROM envelopes WHERE mailbox_id = ? AND envelope_id = ?",
		  "tt", mailbox_id, envelope_id) < 0)
		goto fail;
	if (exists == 0 && count >= SBX_MAX_ENVELOPES) {
		fail(error_r, "too many key envelopes for mailbox %s (at most %d)",
		     mailbox_id, SBX_MAX_ENVELOPES);
		goto fail;
	}
	if (q_exec(dir, error_r,
		   "INSERT INTO envelopes (mailbox_id, envelope_id, blob, created) VALUES (?, ?, ?, ?)"
		   " ON CONFLICT (mailbox_id, envelope_id)"
		   " DO UPDATE SET blob = excluded.blob, created = excluded.created",
		   "ttbi", mailbox_id, envelope_id, blob, len, (int64_t)time(NULL)) < 0)
		goto fail;
	return tx_commit(dir, error_r);
fail:
	tx_rollback(dir);
	return -1;
}

int
sbx_dir_envelope_replace(struct sbx_dir *dir, const char *mailbox_id, const char *envelope_id,
			 const unsigned char *old_blob, size_t old_len,
			 const unsigned char *blob, size_t len, char **error_r)
{
	if (id_check(mailbox_id, error_r) < 0 || envelope_id_check(envelope_id, error_r) < 0 ||
	    envelope_blob_check(blob, len, error_r) < 0 || tx_begin(dir, error_r) < 0)
		return -1;
	if (q_exec(dir, error_r,
		   "UPDATE envelopes SET blob = ?, created = ?"
		   " WHERE mailbox_id = ? AND envelope_id = ? AND blob = ?",
		   "bittb", blob, len, (int64_t)time(NULL), mailbox_id, envelope_id, old_blob, old_len) < 0)
		goto fail;
	if (sqlite3_changes(dir->db) != 1) {
		fail(error_r, "key envelope %s of mailbox %s changed meanwhile (another password change?); "
		     "nothing done, try again", envelope_id, mailbox_id);
		goto fail;
	}
	return tx_commit(dir, error_r);
fail:
	tx_rollback(dir);
	return -1;
}

int
sbx_dir_envelope_del(struct sbx_dir *dir, const char *mailbox_id, const char *envelope_id, char **error_r)
{
	int64_t count, exists;

	if (id_check(mailbox_id, error_r) < 0 || envelope_id_check(envelope_id, error_r) < 0 ||
	    tx_begin(dir, error_r) < 0)
		return -1;
	if (q_int(dir, error_r, &exists,
		  "SELECT count(*) FROM envelopes WHERE mailbox_id = ? AND envelope_id = ?",
		  "tt", mailbox_id, envelope_id) < 0 ||
	    q_int(dir, error_r, &count,
		  "SELECT count(*) FROM envelopes WHERE mailbox_id = ?", "t", mailbox_id) < 0)
		goto fail;
	if (exists == 0) {
		fail_v(error_r, "no such key envelope", envelope_id, "");
		goto fail;
	}
	/* Without an envelope no password could ever open the mailbox again. */
	if (count <= 1) {
		fail(error_r, "cannot delete the last key envelope of mailbox %s", mailbox_id);
		goto fail;
	}
	if (q_exec(dir, error_r, "DELETE FROM envelopes WHERE mailbox_id = ? AND envelope_id = ?",
		   "tt", mailbox_id, envelope_id) < 0)
		goto fail;
	return tx_commit(dir, error_r);
fail:
	tx_rollback(dir);
	return -1;
}

/* ------------------------------------------------------ aliases, targets */

static const char *
target_kind_name(enum sbx_target_kind kind)
{
	switch (kind) {
	case SBX_TARGET_MAILBOX:
		return "mailbox";
	case SBX_TARGET_FORWARD:
		return "forward";
	case SBX_TARGET_WEBHOOK:
		return "webhook";
	}
	return NULL;
}

static int
target_kind_parse(const char *s, enum sbx_target_kind *kind_r)
{
	if (strcmp(s, "mailbox") == 0)
		*kind_r = SBX_TARGET_MAILBOX;
	else if (strcmp(s, "forward") == 0)
		*kind_r = SBX_TARGET_FORWARD;
	else if (strcmp(s, "webhook") == 0)
		*kind_r = SBX_TARGET_WEBHOOK;
	else
		return -1;
	return 0;
}

void
sbx_target_free(struct sbx_target *t)
{
	if (t == NULL)
		return;
	free(t->value);
	if (t->secret != NULL) {
		sodium_memzero(t->secret, t->secret_len);
		free(t->secret);
	}
	memset(t, 0, sizeof(*t));
}

void
sbx_targets_free(struct sbx_target *v, size_t n)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++)
		sbx_target_free(&v[i]);
	free(v);
}

/* The targets of one alias in order; webhook targets carry the URL in value
 * and the webhook id, not the secret. */
static int
targets_load(struct sbx_dir *dir, int64_t alias_id, struct sbx_target **v_r, size_t *n_r,
	     char **error_r)
{
	struct sbx_target *v = NULL;
	sqlite3_stmt *st;
	size_t n = 0, cap = 0;
	int rc;

	*v_r = NULL;
	*n_r = 0;
	if (q_prepare(dir, &st, error_r,
		      "SELECT t.kind, t.value, w.url FROM targets t"
		      " LEFT JOIN webhooks w ON t.kind = 'webhook' AND w.id = t.value"
		      " WHERE t.alias_id = ? ORDER BY t.position", "i", alias_id) < 0)
		return -1;
	while ((rc = q_step(dir, st, error_r)) > 0) {
		const char *kind = (const char *)sqlite3_column_text(st, 0);
		struct sbx_target *t;

		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			v = sbx_xrealloc(v, cap * sizeof(*v));
		}
		t = &v[n];
		memset(t, 0, sizeof(*t));
		if (kind == NULL || target_kind_parse(kind, &t->kind) < 0) {
			rc = fail(error_r, "directory.db: bad target kind for alias %lld",
				  (long long)alias_id);
			break;
		}
		if (t->kind == SBX_TARGET_WEBHOOK) {
			const char *wid = (const char *)sqlite3_column_text(st, 1);

			if (wid == NULL || !sbx_is_id(wid) ||
			    sqlite3_column_type(st, 2) == SQLITE_NULL) {
				rc = fail(error_r, "directory.db: missing webhook for alias %lld",
					  (long long)alias_id);
				break;
			}
			memcpy(t->webhook_id, wid, SBX_ID_HEX);
			rc = col_text(dir, st, 2, &t->value, error_r);
		} else {
			rc = col_text(dir, st, 1, &t->value, error_r);
		}
		if (rc < 0)
			break;
		n++;
	}
	stmt_put(dir, &st);
	if (rc < 0) {
		sbx_targets_free(v, n);
		return -1;
	}
	*v_r = v;
	*n_r = n;
	return 0;
}

int
sbx_dir_target_parse(struct sbx_dir *dir, const char *spec, struct sbx_target *t_r, char **error_r)
{
	struct sbx_dir_mailbox m;
	const char *colon = spec ? strchr(spec, ':') : NULL;
	char kind[16];
	size_t klen;

	memset(t_r, 0, sizeof(*t_r));
	klen = colon ? (size_t)(colon - spec) : 0;
	if (colon == NULL || klen >= sizeof(kind))
		return fail_v(error_r, "invalid target (mailbox:ADDRESS, forward:ADDRESS or webhook:URL)",
			      spec ? spec : "", "");
	memcpy(kind, spec, klen);
	kind[klen] = '\0';
	if (target_kind_parse(kind, &t_r->kind) < 0)
		return fail_v(error_r, "invalid target (mailbox:ADDRESS, forward:ADDRESS or webhook:URL)",
			      spec, "");
	switch (t_r->kind) {
	case SBX_TARGET_MAILBOX:
		if (sbx_dir_mailbox_find(dir, colon + 1, &m, error_r) < 0)
			return -1;
		t_r->value = sbx_xstrdup(m.id);
		sbx_dir_mailbox_clear(&m);
		return 0;
	case SBX_TARGET_FORWARD:
		return sbx_addr_normalize(colon + 1, 0, &t_r->value, error_r);
	case SBX_TARGET_WEBHOOK:
		if (sbx_url_validate(colon + 1, error_r) < 0)
			return -1;
		t_r->value = sbx_xstrdup(colon + 1);
		return 0;
	}
	return -1;
}

static const char *
alias_kind(const char *addr)
{
	if (addr[0] == '*' && addr[1] == '@')
		return "catchall";
	if (addr[0] == '~')
		return "regex";
	return "exact";
}

/* Validated, stored form of one target: what goes into targets.value, plus
 * for webhooks the URL, a new id and the secret. */
struct stored_target {
	const char *kind;
	char *value;
	char webhook_id[SBX_ID_HEX];
	unsigned char *gen_secret;     /* generated here when none was given */
};

static void
stored_targets_free(struct stored_target *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(s[i].value);
		if (s[i].gen_secret != NULL) {
			sodium_memzero(s[i].gen_secret, DIR_WEBHOOK_SECRET);
			free(s[i].gen_secret);
		}
	}
	free(s);
}

/* Checks that need no database. */
static int
target_precheck(const char *addr, struct sbx_target *t, struct stored_target *s, char **error_r)
{
	s->kind = target_kind_name(t->kind);
	if (s->kind == NULL)
		return fail(error_r, "invalid target kind %d", (int)t->kind);
	if (t->value == NULL || *t->value == '\0')
		return fail(error_r, "empty %s target", s->kind);
	switch (t->kind) {
	case SBX_TARGET_MAILBOX:
		return 0;
	case SBX_TARGET_FORWARD:
		if (sbx_addr_normalize(t->value, 0, &s->value, error_r) < 0)
			return -1;
		if (strcmp(s->value, addr) == 0)
			return fail_v(error_r, "alias forwards to itself", addr, "");
		return 0;
	case SBX_TARGET_WEBHOOK:
		if (sbx_url_validate(t->value, error_r) < 0)
			return -1;
		if (t->secret != NULL && t->secret_len > SBX_MAX_WEBHOOK_SECRET)
			return fail(error_r, "webhook secret longer than %d bytes", SBX_MAX_WEBHOOK_SECRET);
		if (t->secret == NULL || t->secret_len == 0) {
			s->gen_secret = sbx_xmalloc(DIR_WEBHOOK_SECRET);
			randombytes_buf(s->gen_secret, DIR_WEBHOOK_SECRET);
		}
		sbx_random_id(s->webhook_id);
		s->value = sbx_xstrdup(s->webhook_id);
		return 0;
	}
	return -1;
}

static int
alias_find(struct sbx_dir *dir, const char *addr, const char *kind, int64_t *id_r, char **error_r)
{
	int64_t id;

	if (q_int(dir, error_r, &id, "SELECT id FROM aliases WHERE address = ? AND kind = ?",
		  "tt", addr, kind) < 0)
		return -1;
	*id_r = id;
	return id > 0;
}

int
sbx_dir_alias_add(struct sbx_dir *dir, const char *alias, struct sbx_target *targets, size_t n, char **error_r)
{
	struct stored_target *s = NULL;
	struct sbx_dir_mailbox m;
	int64_t alias_id, now = (int64_t)time(NULL);
	const char *domain;
	char *addr;
	size_t i, j;
	int rc;

	if (n == 0 || n > SBX_MAX_TARGETS_PER_ALIAS)
		return fail(error_r, "an alias needs 1..%d targets", SBX_MAX_TARGETS_PER_ALIAS);
	if (sbx_addr_normalize(alias, 1, &addr, error_r) < 0)
		return -1;
	domain = strrchr(addr, '@') + 1;
	s = sbx_xcalloc(n, sizeof(*s));
	for (i = 0; i < n; i++)
		if (target_precheck(addr, &targets[i], &s[i], error_r) < 0)
			goto out_free;
	if (tx_begin(dir, error_r) < 0)
		goto out_free;
	if ((rc = domain_hosted(dir, domain, error_r)) < 0)
		goto out_rollback;
	if (rc == 0) {
		fail_v(error_r, "domain not hosted", domain, " (sealboxctl domain add)");
		goto out_rollback;
	}
	if ((rc = alias_taken(dir, addr, error_r)) < 0)
		goto out_rollback;
	if (rc > 0) {
		fail_v(error_r, "alias already exists", addr, "");
		goto out_rollback;
	}
	for (i = 0; i < n; i++) {
		if (targets[i].kind != SBX_TARGET_MAILBOX)
			continue;
		if ((rc = mailbox_lookup(dir, targets[i].value, &m, error_r)) < 0)
			goto out_rollback;
		if (rc == 0) {
			fail_v(error_r, "no such mailbox", targets[i].value, "");
			goto out_rollback;
		}
		s[i].value = sbx_xstrdup(m.id);
		sbx_dir_mailbox_clear(&m);
	}
	for (i = 0; i < n; i++) {
		for (j = 0; j < i; j++) {
			int hook = targets[i].kind == SBX_TARGET_WEBHOOK;
			const char *a = hook ? targets[i].value : s[i].value;
			const char *b = hook ? targets[j].value : s[j].value;

			if (targets[i].kind == targets[j].kind && strcmp(a, b) == 0) {
				fail(error_r, "duplicate target %zu: %s", i + 1, s[i].kind);
				goto out_rollback;
			}
		}
	}
	if (q_exec(dir, error_r,
		   "INSERT INTO aliases (address, kind, domain, created) VALUES (?, ?, ?, ?)",
		   "ttti", addr, alias_kind(addr), domain, now) < 0)
		goto out_rollback;
	alias_id = (int64_t)sqlite3_last_insert_rowid(dir->db);
	for (i = 0; i < n; i++) {
		if (targets[i].kind == SBX_TARGET_WEBHOOK) {
			const unsigned char *secret = s[i].gen_secret ? s[i].gen_secret : targets[i].secret;
			size_t slen = s[i].gen_secret ? DIR_WEBHOOK_SECRET : targets[i].secret_len;

			if (q_exec(dir, error_r,
				   "INSERT INTO webhooks (id, url, secret, created) VALUES (?, ?, ?, ?)",
				   "ttbi", s[i].webhook_id, targets[i].value, secret, slen, now) < 0)
				goto out_rollback;
		}
		if (q_exec(dir, error_r,
			   "INSERT INTO targets (alias_id, position, kind, value) VALUES (?, ?, ?, ?)",
			   "iitt", alias_id, (int64_t)i, s[i].kind, s[i].value) < 0)
			goto out_rollback;
	}
	if (tx_commit(dir, error_r) < 0)
		goto out_free;
	/* Committed: hand webhook ids and generated secrets to the caller. */
	for (i = 0; i < n; i++) {
		if (targets[i].kind != SBX_TARGET_WEBHOOK)
			continue;
		memcpy(targets[i].webhook_id, s[i].webhook_id, SBX_ID_HEX);
		if (s[i].gen_secret != NULL) {
			free(targets[i].secret);
			targets[i].secret = s[i].gen_secret;
			targets[i].secret_len = DIR_WEBHOOK_SECRET;
			s[i].gen_secret = NULL;
		}
	}
	stored_targets_free(s, n);
	free(addr);
	return 0;
out_rollback:
	tx_rollback(dir);
out_free:
	stored_targets_free(s, n);
	free(addr);
	return -1;
}

int
sbx_dir_alias_del(struct sbx_dir *dir, const char *alias, char **error_r)
{
	int64_t id, nmbox;
	char *addr;
	int rc;

	if (sbx_addr_normalize(alias, 1, &addr, error_r) < 0)
		return -1;
	if (tx_begin(dir, error_r) < 0)
		goto out_free;
	if ((rc = alias_find(dir, addr, alias_kind(addr), &id, error_r)) < 0)
		goto out_rollback;
	if (rc == 0) {
		fail_v(error_r, "no such alias", addr, "");
		goto out_rollback;
	}
	if (q_int(dir, error_r, &nmbox, "SELECT count(*) FROM mailboxes WHERE address = ?",
		  "t", addr) < 0)
		goto out_rollback;
	if (nmbox > 0) {
		fail_v(error_r, "address is a mailbox", addr, " (sealboxctl mailbox del)");
		goto out_rollback;
	}
	/* Targets go by ON DELETE CASCADE, their webhooks by trigger. */
	if (q_exec(dir, error_r, "DELETE FROM aliases WHERE id = ?", "i", id) < 0 ||
	    tx_commit(dir, error_r) < 0)
		goto out_rollback;
	free(addr);
	return 0;
out_rollback:
	tx_rollback(dir);
out_free:
	free(addr);
	return -1;
}

static int
alias_list_q(struct sbx_dir *dir, struct sbx_dir_alias **v_r, size_t *n_r, char **error_r)
{
	struct sbx_dir_alias *v = NULL;
	sqlite3_stmt *st;
	int64_t *ids = NULL;
	size_t n = 0, cap = 0, i;
	int rc;

	if (q_prepare(dir, &st, error_r, "SELECT id, address FROM aliases ORDER BY id", "") < 0)
		return -1;
	while ((rc = q_step(dir, st, error_r)) > 0) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			v = sbx_xrealloc(v, cap * sizeof(*v));
			ids = sbx_xrealloc(ids, cap * sizeof(*ids));
		}
		memset(&v[n], 0, sizeof(v[n]));
		ids[n] = sqlite3_column_int64(st, 0);
		if ((rc = col_text(dir, st, 1, &v[n].alias, error_r)) < 0)
			break;
		n++;
	}
	stmt_put(dir, &st);
	for (i = 0; rc >= 0 && i < n; i++)
		rc = targets_load(dir, ids[i], &v[i].targets, &v[i].ntargets, error_r);
	free(ids);
	if (rc < 0) {
		sbx_dir_alias_list_free(v, n);
		return -1;
	}
	*v_r = v;
	*n_r = n;
	return 0;
}

int
sbx_dir_alias_list(struct sbx_dir *dir, struct sbx_dir_alias **v_r, size_t *n_r, char **error_r)
{
	int began;

	*v_r = NULL;
	*n_r = 0;
	if (rd_begin(dir, &began, error_r) < 0)
		return -1;
	return rd_end(dir, began, alias_list_q(dir, v_r, n_r, error_r), error_r);
}

void
sbx_dir_alias_list_free(struct sbx_dir_alias *v, size_t n)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(v[i].alias);
		sbx_targets_free(v[i].targets, v[i].ntargets);
	}
	free(v);
}

/* Exact alias lookup for resolve: 1 + targets, 0 none, -1 error. */
static int
resolve_alias(struct sbx_dir *dir, const char *addr, const char *kind,
	      struct sbx_target **targets_r, size_t *n_r, char **matched_r, char **error_r)
{
	int64_t id;
	int rc;

	if ((rc = alias_find(dir, addr, kind, &id, error_r)) <= 0)
		return rc;
	if (targets_load(dir, id, targets_r, n_r, error_r) < 0)
		return -1;
	if (*n_r == 0) {        /* cannot happen by construction; not a match */
		sbx_targets_free(*targets_r, 0);
		*targets_r = NULL;
		return 0;
	}
	*matched_r = sbx_xstrdup(addr);
	return 1;
}

/* Regex aliases of the domain in id order, matched against local. */
static int
resolve_regex(struct sbx_dir *dir, const char *domain, const char *local,
	      struct sbx_target **targets_r, size_t *n_r, char **matched_r, char **error_r)
{
	sqlite3_stmt *st;
	int64_t id = 0;
	char *matched = NULL;
	int rc;

	if (q_prepare(dir, &st, error_r,
		      "SELECT id, address FROM aliases WHERE domain = ? AND kind = 'regex' ORDER BY id",
		      "t", domain) < 0)
		return -1;
	while ((rc = q_step(dir, st, error_r)) > 0) {
		const char *a = (const char *)sqlite3_column_text(st, 1);
		const char *at = a ? strrchr(a, '@') : NULL;
		char err[128];
		regmatch_t pm[1];
		regex_t rx;
		int m;

		if (at == NULL || a[0] != '~') {
			rc = fail(error_r, "directory.db: bad regex alias %lld",
				  (long long)sqlite3_column_int64(st, 0));
			break;
		}
		if (regex_compile(a + 1, (size_t)(at - a - 1), &rx,
				  REG_EXTENDED | REG_ICASE, err, sizeof(err)) < 0) {
			char *p = printable(a);

			rc = fail(error_r, "directory.db: regex alias %s: %s", p, err);
			free(p);
			break;
		}
		/* Anchored twice: by ^(...)$ and by requiring the match to
		 * span the whole local part. */
		m = regexec(&rx, local, 1, pm, 0) == 0 && pm[0].rm_so == 0 &&
		    (size_t)pm[0].rm_eo == strlen(local);
		regfree(&rx);
		if (m) {
			id = sqlite3_column_int64(st, 0);
			matched = sbx_xstrdup(a);
			break;
		}
	}
	stmt_put(dir, &st);
	if (rc < 0 || matched == NULL)
		return rc < 0 ? -1 : 0;
	if (targets_load(dir, id, targets_r, n_r, error_r) < 0) {
		free(matched);
		return -1;
	}
	*matched_r = matched;
	return 1;
}

static int
resolve_q(struct sbx_dir *dir, const char *addr, struct sbx_target **targets_r, size_t *n_r,
	  char **matched_r, char **error_r)
{
	const char *at = strrchr(addr, '@'), *plus;
	char *local, *other;
	int rc;

	if ((rc = domain_hosted(dir, at + 1, error_r)) <= 0)
		return rc;
	if ((rc = resolve_alias(dir, addr, "exact", targets_r, n_r, matched_r, error_r)) != 0)
		return rc;
	plus = memchr(addr, '+', (size_t)(at - addr));
	if (plus != NULL && plus > addr) {
		other = sbx_xasprintf("%.*s%s", (int)(plus - addr), addr, at);
		rc = resolve_alias(dir, other, "exact", targets_r, n_r, matched_r, error_r);
		free(other);
		if (rc != 0)
			return rc;
	}
	local = sbx_xstrndup(addr, (size_t)(at - addr));
	rc = resolve_regex(dir, at + 1, local, targets_r, n_r, matched_r, error_r);
	free(local);
	if (rc != 0)
		return rc;
	other = sbx_xasprintf("*%s", at);
	rc = resolve_alias(dir, other, "catchall", targets_r, n_r, matched_r, error_r);
	free(other);
	return rc;
}

int
sbx_dir_resolve(struct sbx_dir *dir, const char *address, struct sbx_target **targets_r,
		size_t *n_r, char **matched_alias_r, char **error_r)
{
	char *addr, *e, *matched = NULL;
	int began, rc;

	*targets_r = NULL;
	*n_r = 0;
	if (matched_alias_r != NULL)
		*matched_alias_r = NULL;
	/* An address that cannot be normalised is no address of ours. */
	if (sbx_addr_normalize(address, 0, &addr, &e) < 0) {
		free(e);
		return 0;
	}
	if (rd_begin(dir, &began, error_r) < 0) {
		free(addr);
		return -1;
	}
	rc = rd_end(dir, began, resolve_q(dir, addr, targets_r, n_r, &matched, error_r), error_r);
	free(addr);
	if (rc <= 0) {
		sbx_targets_free(*targets_r, *n_r);
		*targets_r = NULL;
		*n_r = 0;
		free(matched);
		return rc;
	}
	if (matched_alias_r != NULL)
		*matched_alias_r = matched;
	else
		free(matched);
	return 1;
}

int
sbx_dir_webhook_get(struct sbx_dir *dir, const char *webhook_id, struct sbx_target *t_r, char **error_r)
{
	sqlite3_stmt *st;
	const void *secret;
	int rc, len;

	memset(t_r, 0, sizeof(*t_r));
	if (webhook_id == NULL || !sbx_is_id(webhook_id))
		return fail_v(error_r, "no such webhook", webhook_id ? webhook_id : "(null)", "");
	if (q_prepare(dir, &st, error_r, "SELECT url, secret FROM webhooks WHERE id = ?",
		      "t", webhook_id) < 0)
		return -1;
	rc = q_step(dir, st, error_r);
	if (rc == 0)
		rc = fail_v(error_r, "no such webhook", webhook_id, "");
	if (rc > 0) {
		t_r->kind = SBX_TARGET_WEBHOOK;
		memcpy(t_r->webhook_id, webhook_id, SBX_ID_HEX);
		secret = sqlite3_column_blob(st, 1);
		len = sqlite3_column_bytes(st, 1);
		if (secret == NULL || len <= 0) {
			rc = fail(error_r, "directory.db: webhook %s has no secret", webhook_id);
		} else {
			t_r->secret = sbx_xmalloc((size_t)len);
			memcpy(t_r->secret, secret, (size_t)len);
			t_r->secret_len = (size_t)len;
			rc = col_text(dir, st, 0, &t_r->value, error_r);
		}
	}
	stmt_put(dir, &st);
	if (rc < 0) {
		sbx_target_free(t_r);
		return -1;
	}
	return 0;
}
