/* test_directory.c - directory.db: open, schema, domains, addresses, URLs,
 * mailboxes, envelopes, aliases and resolution, usage counters, the
 * statement cache and the lmtp_delivered records. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "directory.h"
#include "sbx_limits.h"
#include "tap.h"
#include "util.h"

#define CHECK_STR(a, b) do { \
	const char *a_ = (a), *b_ = (b); \
	CHECKF(a_ != NULL && b_ != NULL && strcmp(a_, b_) == 0, "'%s' != '%s' (%s)", \
	       a_ ? a_ : "(null)", b_ ? b_ : "(null)", #a); \
} while (0)

static const unsigned char test_pk[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
static const unsigned char test_env[] = "envelope-blob-0";

/* rc must be 0; prints and frees the error otherwise. */
static int
ok(int rc, char **err)
{
	if (rc != 0)
		printf("# unexpected rc=%d error=%s\n", rc, *err ? *err : "(none)");
	free(*err);
	*err = NULL;
	return rc == 0;
}

/* rc must be -1 with a one-line error containing want. */
static int
fails_with(int rc, char **err, const char *want)
{
	int good = rc == -1 && *err != NULL && strstr(*err, want) != NULL &&
	    strchr(*err, '\n') == NULL;

	if (!good)
		printf("# rc=%d error='%s', wanted '%s'\n", rc, *err ? *err : "(none)", want);
	free(*err);
	*err = NULL;
	return good;
}

static int
rm_cb(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	return remove(path);
}

static void
rm_rf(char *dir)
{
	if (dir != NULL)
		nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

static char *
new_state(void)
{
	char tmpl[] = "/tmp/sbx-test-dir-XXXXXX";

	if (mkdtemp(tmpl) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	return sbx_xstrdup(tmpl);
}

static struct sbx_dir *
open_new(const char *state)
{
	struct sbx_dir *dir = NULL;
	char *err = NULL;

	if (sbx_dir_open(state, SBX_DIR_CREATE, &dir, &err) < 0) {
		printf("# open %s: %s\n", state, err);
		exit(1);
	}
	return dir;
}

static int64_t
sql_int(struct sbx_dir *dir, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;

	if (sqlite3_prepare_v2(sbx_dir_db(dir), sql, -1, &st, NULL) != SQLITE_OK)
		return -2;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static int
add_mailbox(struct sbx_dir *dir, const char *address, char id[SBX_ID_HEX])
{
	char *err = NULL;

	return ok(sbx_dir_mailbox_add(dir, address, 0, test_pk, "e0", test_env,
				      sizeof(test_env), id, &err), &err);
}

static int
add_domain(struct sbx_dir *dir, const char *domain)
{
	char *err = NULL;

	return ok(sbx_dir_domain_add(dir, domain, &err), &err);
}

static int
file_mode(const char *state, const char *name)
{
	char *path = sbx_xasprintf("%s/%s", state, name);
	struct stat sb;
	int mode = stat(path, &sb) < 0 ? -1 : (int)(sb.st_mode & 07777);

	free(path);
	return mode;
}

/* Add an alias from "kind:value" specs (NULL-terminated). */
static int
add_alias(struct sbx_dir *dir, const char *alias, const char *const *specs)
{
	struct sbx_target t[8];
	char *err = NULL;
	size_t n = 0, i;
	int rc = 0;

	memset(t, 0, sizeof(t));
	for (; specs[n] != NULL && rc == 0; n++)
		rc = sbx_dir_target_parse(dir, specs[n], &t[n], &err);
	if (rc == 0)
		rc = sbx_dir_alias_add(dir, alias, t, n, &err);
	for (i = 0; i < n; i++)
		sbx_target_free(&t[i]);
	return ok(rc, &err);
}

/* "matched -> kind:value, ..." or "unknown" or "error: ...". */
static char *
resolve_str(struct sbx_dir *dir, const char *address)
{
	static const char *const kinds[] = { "?", "mailbox", "forward", "webhook" };
	struct sbx_target *t;
	struct sbx_buf b = { 0 };
	char *matched, *err = NULL, *s;
	size_t n, i;
	int rc = sbx_dir_resolve(dir, address, &t, &n, &matched, &err);

	if (rc < 0) {
		s = sbx_xasprintf("error: %s", err);
		free(err);
		return s;
	}
	if (rc == 0)
		return sbx_xstrdup(t == NULL && n == 0 && matched == NULL ? "unknown" : "bad unknown");
	sbx_buf_appendf(&b, "%s ->", matched);
	for (i = 0; i < n; i++)
		sbx_buf_appendf(&b, "%s %s:%s", i ? "," : "", kinds[t[i].kind], t[i].value);
	sbx_buf_append(&b, "", 1);
	sbx_targets_free(t, n);
	free(matched);
	return b.data;
}

#define CHECK_RESOLVE(dir, addr, want) do { \
	char *got_ = resolve_str(dir, addr); \
	CHECKF(strcmp(got_, want) == 0, "resolve %s: got '%s', want '%s'", addr, got_, want); \
	free(got_); \
} while (0)

/* How many statements the connection holds (*total_r) and how many of them
 * are stepped and not reset: each call must give its statements back
 * reset, or the connection keeps a read transaction open. */
static int
stmts_busy(struct sbx_dir *dir, int *total_r)
{
	sqlite3_stmt *st = NULL;
	int busy = 0, total = 0;

	while ((st = sqlite3_next_stmt(sbx_dir_db(dir), st)) != NULL) {
		total++;
		busy += sqlite3_stmt_busy(st) != 0;
	}
	if (total_r != NULL)
		*total_r = total;
	return busy;
}

/* ------------------------------------------------------------------ tests */

TEST(open_create_reopen)
{
	struct sbx_dir *dir = NULL;
	char *state = new_state(), *nested, *err = NULL, *want;
	char **names;
	size_t n;
	mode_t old;

	want = sbx_xasprintf("no directory.db in %s (run sealboxctl init)", state);
	CHECK(fails_with(sbx_dir_open(state, 0, &dir, &err), &err, want));
	CHECK(dir == NULL);
	free(want);
	CHECK(fails_with(sbx_dir_open(state, SBX_DIR_CREATE | SBX_DIR_RDONLY, &dir, &err), &err,
			 "writable"));

	old = umask(0);     /* the file must be 0600 whatever the umask */
	CHECK(ok(sbx_dir_open(state, SBX_DIR_CREATE, &dir, &err), &err));
	umask(old);
	CHECK(dir != NULL);
	CHECK(file_mode(state, "directory.db") == 0600);
	CHECK(add_domain(dir, "example.com"));
	CHECK(file_mode(state, "directory.db-wal") == 0600);
	CHECK(file_mode(state, "directory.db-shm") == 0600);
	CHECK(sql_int(dir, "PRAGMA foreign_keys") == 1);
	CHECK(sql_int(dir, "PRAGMA busy_timeout") == 5000);
	CHECK(sql_int(dir, "PRAGMA synchronous") == 2);   /* FULL */
	CHECK(sql_int(dir, "SELECT journal_mode = 'wal' FROM pragma_journal_mode") == 1);
	sbx_dir_close(&dir);
	CHECK(dir == NULL);
	sbx_dir_close(&dir);    /* harmless twice */

	/* Reopen without CREATE: the data is still there. */
	CHECK(ok(sbx_dir_open(state, 0, &dir, &err), &err));
	CHECK(ok(sbx_dir_domain_list(dir, &names, &n, &err), &err));
	CHECK(n == 1 && strcmp(names[0], "example.com") == 0);
	sbx_strv_free(names, n);
	sbx_dir_close(&dir);

	/* CREATE makes a missing state directory. */
	nested = sbx_xasprintf("%s/a/b", state);
	CHECK(ok(sbx_dir_open(nested, SBX_DIR_CREATE, &dir, &err), &err));
	CHECK(file_mode(state, "a/b/directory.db") == 0600);
	sbx_dir_close(&dir);
	free(nested);
	rm_rf(state);
}

TEST(schema_version)
{
	char *state = new_state(), *err = NULL;
	struct sbx_dir *dir = open_new(state);
	const char *tables[] = { "domains", "mailboxes", "envelopes", "aliases", "targets", "webhooks",
				 "lmtp_delivered" };
	size_t i;

	CHECK(sql_int(dir, "PRAGMA user_version") == 2);
	CHECK(sql_int(dir, "PRAGMA application_id") == 0x53425844);
	for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		char *sql = sbx_xasprintf("SELECT count(*) FROM sqlite_schema WHERE type = 'table'"
					  " AND name = '%s'", tables[i]);

		CHECKF(sql_int(dir, sql) == 1, "table %s", tables[i]);
		free(sql);
	}
	sbx_dir_close(&dir);
	/* Reopening does not migrate again. */
	CHECK(ok(sbx_dir_open(state, SBX_DIR_CREATE, &dir, &err), &err));
	CHECK(sql_int(dir, "PRAGMA user_version") == 2);
	/* A version 1 file (before lmtp_delivered) migrates on open. */
	CHECK(sqlite3_exec(sbx_dir_db(dir), "DROP TABLE lmtp_delivered; PRAGMA user_version = 1",
			   NULL, NULL, NULL) == SQLITE_OK);
	sbx_dir_close(&dir);
	CHECK(ok(sbx_dir_open(state, 0, &dir, &err), &err));
	CHECK(dir != NULL && sql_int(dir, "PRAGMA user_version") == 2);
	CHECK(dir != NULL && sql_int(dir, "SELECT count(*) FROM lmtp_delivered") == 0);
	/* A newer schema is refused. */
	CHECK(sqlite3_exec(sbx_dir_db(dir), "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK);
	sbx_dir_close(&dir);
	CHECK(fails_with(sbx_dir_open(state, 0, &dir, &err), &err, "newer"));
	CHECK(fails_with(sbx_dir_open(state, SBX_DIR_RDONLY, &dir, &err), &err, "newer"));
	CHECK(dir == NULL);
	rm_rf(state);
}

TEST(readonly)
{
	char *state = new_state(), *err = NULL, *path;
	struct sbx_dir *w = open_new(state), *r = NULL;
	char id[SBX_ID_HEX] = "", want[128];
	int fd;

	CHECK(add_domain(w, "example.com"));
	CHECK(ok(sbx_dir_open(state, SBX_DIR_RDONLY, &r, &err), &err));
	CHECK(r != NULL);
	if (r == NULL)
		goto out;
	CHECK(sbx_dir_domain_exists(r, "example.com", &err) == 1);
	CHECK(sbx_dir_domain_add(r, "other.com", &err) == -1 && err != NULL);
	free(err);
	err = NULL;
	CHECK(sbx_dir_mailbox_add(r, "a@example.com", 0, test_pk, "e0", test_env,
				  sizeof(test_env), id, &err) == -1);
	free(err);
	err = NULL;
	CHECK(sqlite3_exec(sbx_dir_db(r), "INSERT INTO domains VALUES ('x.com', 0)",
			   NULL, NULL, NULL) != SQLITE_OK);
	CHECK(sbx_dir_domain_exists(r, "other.com", &err) == 0);
	/* The reader sees the writer's later commits (WAL). */
	CHECK(add_mailbox(w, "a@example.com", id));
	snprintf(want, sizeof(want), "a@example.com -> mailbox:%s", id);
	CHECK_RESOLVE(r, "a@example.com", want);
	sbx_dir_close(&r);
out:
	sbx_dir_close(&w);
	rm_rf(state);

	/* A read-only open of an empty file: no schema yet. */
	state = new_state();
	path = sbx_xasprintf("%s/directory.db", state);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	CHECK(fd >= 0);
	close(fd);
	CHECK(fails_with(sbx_dir_open(state, SBX_DIR_RDONLY, &r, &err), &err, "no schema"));
	free(path);
	rm_rf(state);
}

TEST(garbage_file)
{
	char *state = new_state(), *err = NULL, *path, buf[8192];
	struct sbx_dir *dir = NULL;
	sqlite3 *db;
	FILE *f;
	size_t i;

	path = sbx_xasprintf("%s/directory.db", state);
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = "this is not a database\n"[i % 23];
	f = fopen(path, "w");
	CHECK(f != NULL && fwrite(buf, 1, sizeof(buf), f) == sizeof(buf));
	if (f)
		fclose(f);
	CHECK(fails_with(sbx_dir_open(state, 0, &dir, &err), &err, "not a database"));
	CHECK(fails_with(sbx_dir_open(state, SBX_DIR_CREATE, &dir, &err), &err, "not a database"));
	CHECK(fails_with(sbx_dir_open(state, SBX_DIR_RDONLY, &dir, &err), &err, path));
	CHECK(dir == NULL);
	unlink(path);

	/* Some other SQLite database. */
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	CHECK(fails_with(sbx_dir_open(state, 0, &dir, &err), &err, "not a sealbox directory.db"));

	/* directory.db is a directory. */
	unlink(path);
	CHECK(mkdir(path, 0700) == 0);
	CHECK(fails_with(sbx_dir_open(state, SBX_DIR_CREATE, &dir, &err), &err, "not a regular file"));
	free(path);
	rm_rf(state);
}

TEST(domains)
{
	char *state = new_state(), *err = NULL;
	struct sbx_dir *dir = open_new(state);
	char id[SBX_ID_HEX] = "", **names = NULL;
	size_t n = 0;

	CHECK(add_domain(dir, "Example.COM"));
	CHECK(fails_with(sbx_dir_domain_add(dir, "example.com", &err), &err,
			 "domain already exists: example.com"));
	CHECK(fails_with(sbx_dir_domain_add(dir, "nodot", &err), &err, "invalid domain"));
	CHECK(fails_with(sbx_dir_domain_add(dir, "-bad.com", &err), &err, "invalid domain"));
	CHECK(fails_with(sbx_dir_domain_add(dir, "", &err), &err, "invalid domain"));
	CHECK(fails_with(sbx_dir_domain_add(dir, "a b.com", &err), &err, "invalid domain"));
	CHECK(add_domain(dir, "b.example.org"));
	CHECK(ok(sbx_dir_domain_list(dir, &names, &n, &err), &err));
	CHECK(n == 2);
	if (n == 2) {
		CHECK_STR(names[0], "b.example.org");
		CHECK_STR(names[1], "example.com");
	}
	sbx_strv_free(names, n);
	CHECK(sbx_dir_domain_exists(dir, "EXAMPLE.com", &err) == 1);
	CHECK(sbx_dir_domain_exists(dir, "other.com", &err) == 0);
	CHECK(sbx_dir_domain_exists(dir, "not a domain", &err) == 0);

	CHECK(add_mailbox(dir, "a@example.com", id));
	CHECK(add_alias(dir, "info@example.com", (const char *const[]){ "mailbox:a@example.com", NULL }));
	CHECK(fails_with(sbx_dir_domain_del(dir, "example.com", &err), &err,
			 "domain in use: example.com (1 mailboxes, 1 aliases)"));
	CHECK(ok(sbx_dir_domain_del(dir, "b.example.org", &err), &err));
	CHECK(fails_with(sbx_dir_domain_del(dir, "b.example.org", &err), &err,
			 "no such domain: b.example.org"));
	CHECK(ok(sbx_dir_alias_del(dir, "info@example.com", &err), &err));
	CHECK(fails_with(sbx_dir_domain_del(dir, "example.com", &err), &err,
			 "domain in use: example.com (1 mailboxes, 0 aliases)"));
	CHECK(ok(sbx_dir_mailbox_del(dir, id, &err), &err));
	CHECK(ok(sbx_dir_domain_del(dir, "example.com", &err), &err));
	CHECK(ok(sbx_dir_domain_list(dir, &names, &n, &err), &err));
	CHECK(n == 0);
	sbx_strv_free(names, n);
	sbx_dir_close(&dir);
	rm_rf(state);
}

TEST(addr_normalize)
{
	char a64[80], a65[80], lab64[100], dom254[300], re513[600];
	struct {
		const char *in;
		int forms;
		const char *out;    /* NULL = must be refused */
	} cases[] = {
		{ "User@Example.COM", 0, "user@example.com" },
		{ "a.b-c_d+tag@mail.example.co.uk", 0, "a.b-c_d+tag@mail.example.co.uk" },
		{ "x@a.b", 0, "x@a.b" },
		{ "\xc3\xb6@example.com", 0, "\xc3\xb6@example.com" },
		{ "\xc3\x96X@Example.com", 0, "\xc3\x96x@example.com" },
		{ "!#$%&'*+/=?^_`{|}~-@example.com", 0, "!#$%&'*+/=?^_`{|}~-@example.com" },
		{ a64, 0, NULL },   /* filled below: 64-byte local part, valid */
		{ a65, 0, NULL },
		{ "*@Example.com", 1, "*@example.com" },
		{ "~Sales[0-9]+@Example.COM", 1, "~Sales[0-9]+@example.com" },
		{ "~[^@]+@example.com", 1, "~[^@]+@example.com" },
		{ "*@example.com", 0, NULL },
		{ "~x@example.com", 0, NULL },
		{ "~(@example.com", 1, NULL },
		{ "~a)|(b@example.com", 1, NULL },
		{ "~a)|(b)@example.com", 1, NULL },     /* would unanchor ^(...)$ */
		{ "~x)@example.com", 1, NULL },
		{ "~[)]+@example.com", 1, "~[)]+@example.com" },
		{ "~[]a)]|\\)|([[:alpha:]])@example.com", 1, "~[]a)]|\\)|([[:alpha:]])@example.com" },
		{ "~(a|b)(c)@example.com", 1, "~(a|b)(c)@example.com" },
		/* regcomp blow-ups found by tests/fuzz/fuzz_addr: refused before regcomp */
		{ "~a++++++++++++++++++++++@example.com", 1, NULL },
		{ "~^e********************************************************************************@example.com", 1, NULL },
		{ "~(((a+)*)*)*@example.com", 1, NULL },
		{ "~a{1000}{1000}@example.com", 1, NULL },
		{ "~(sales|info)-[0-9]+@example.com", 1, "~(sales|info)-[0-9]+@example.com" },
		{ "~([a-z]+\\.)*[a-z]+@example.com", 1, "~([a-z]+\\.)*[a-z]+@example.com" },
		{ "~[0-9]{4}-[0-9]{2}@example.com", 1, "~[0-9]{4}-[0-9]{2}@example.com" },
		{ "~@example.com", 1, NULL },
		{ "~a b@example.com", 1, NULL },
		{ "~a\x01@example.com", 1, NULL },
		{ re513, 1, NULL },
		{ "*@nodot", 1, NULL },
		{ "", 0, NULL },
		{ "example.com", 0, NULL },
		{ "@example.com", 0, NULL },
		{ "user@", 0, NULL },
		{ "a@@example.com", 0, NULL },
		{ "a@b@example.com", 0, NULL },
		{ "user@localhost", 0, NULL },
		{ "user@-bad.com", 0, NULL },
		{ "user@bad-.com", 0, NULL },
		{ "user@ex_ample.com", 0, NULL },
		{ "user@example..com", 0, NULL },
		{ "user@.example.com", 0, NULL },
		{ "user@example.com.", 0, NULL },
		{ "user@ex\xc3\xa4mple.com", 0, NULL },
		{ lab64, 0, NULL },
		{ dom254, 0, NULL },
		{ "<user@example.com>", 0, NULL },
		{ "user@example.com>", 0, NULL },
		{ " user@example.com", 0, NULL },
		{ "user@example.com ", 0, NULL },
		{ "user@example.com\n", 0, NULL },
		{ "us er@example.com", 0, NULL },
		{ "us\ter@example.com", 0, NULL },
		{ "us\x01" "er@example.com", 0, NULL },
		{ "us\x7f" "er@example.com", 0, NULL },
		{ "us,er@example.com", 0, NULL },
		{ "us\"er@example.com", 0, NULL },
		{ "us\\er@example.com", 0, NULL },
		{ "\xc3@example.com", 0, NULL },            /* truncated UTF-8 */
		{ "\xc0\xaf@example.com", 0, NULL },        /* overlong */
		{ "\xed\xa0\x80@example.com", 0, NULL },    /* surrogate */
		{ "\xff@example.com", 0, NULL },
	};
	size_t i;

	memset(a64, 'a', 64);
	strcpy(a64 + 64, "@example.com");
	cases[6].out = a64;
	memset(a65, 'a', 65);
	strcpy(a65 + 65, "@example.com");
	strcpy(lab64, "u@");
	memset(lab64 + 2, 'x', 64);
	strcpy(lab64 + 66, ".com");
	strcpy(dom254, "u@");
	for (i = 0; i < 254; i++)     /* "a.a.a...": 254 bytes, labels fine */
		dom254[2 + i] = i % 2 ? '.' : 'a';
	dom254[2 + 253] = 'a';
	dom254[2 + 254] = '\0';
	re513[0] = '~';
	memset(re513 + 1, 'a', 513);
	strcpy(re513 + 514, "@example.com");

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = NULL, *err = NULL;
		int rc = sbx_addr_normalize(cases[i].in, cases[i].forms, &out, &err);

		if (cases[i].out != NULL) {
			CHECKF(rc == 0 && out != NULL && strcmp(out, cases[i].out) == 0,
			       "case %zu '%s': rc=%d out='%s' err='%s'", i, cases[i].in, rc,
			       out ? out : "", err ? err : "");
		} else {
			CHECKF(rc == -1 && out == NULL && err != NULL && strchr(err, '\n') == NULL,
			       "case %zu '%s' accepted as '%s'", i, cases[i].in, out ? out : "");
		}
		free(out);
		free(err);
	}
	/* NULL input */
	{
		char *out = NULL, *err = NULL;

		CHECK(sbx_addr_normalize(NULL, 0, &out, &err) == -1 && err != NULL);
		free(err);
	}
	/* The split is at the last '@': the error blames the local part. */
	{
		char *out = NULL, *err = NULL;

		CHECK(fails_with(sbx_addr_normalize("a@b@example.com", 0, &out, &err), &err,
				 "local part"));
	}
}

TEST(url_validate)
{
	char longurl[SBX_MAX_URL_LEN + 16];
	struct {
		const char *url;
		int good;
	} cases[] = {
		{ "https://example.com/hook", 1 },
		{ "https://example.com", 1 },
		{ "https://example.com:8443/a?b=c&d=%20", 1 },
		{ "HTTPS://Example.COM/x", 1 },
		{ "https://[2001:db8::1]:443/x", 1 },
		{ "http://127.0.0.1:8080/hook", 1 },
		{ "http://localhost/hook", 1 },
		{ "http://LOCALHOST:1/", 1 },
		{ "http://[::1]:9000/x", 1 },
		{ longurl, 0 },     /* filled below */
		{ "", 0 },
		{ "http://example.com/hook", 0 },
		{ "http://127.0.0.2/", 0 },
		{ "http://localhost.evil.com/", 0 },
		{ "http://127.0.0.1@evil.com/", 0 },
		{ "https://user:pw@example.com/", 0 },
		{ "ftp://example.com/", 0 },
		{ "example.com/hook", 0 },
		{ "https://", 0 },
		{ "https:///path", 0 },
		{ "https://:443/", 0 },
		{ "https://[]/x", 0 },
		{ "https://[::1/x", 0 },
		{ "https://exa mple.com/", 0 },
		{ "https://example.com/a b", 0 },
		{ "https://example.com/\x01", 0 },
		{ "https://example.com/\n", 0 },
		{ "https://ex\xc3\xa4mple.com/", 0 },
		{ "https://example.com:0/", 0 },
		{ "https://example.com:65536/", 0 },
		{ "https://example.com:/", 0 },
		{ "https://example.com:12ab/", 0 },
	};
	size_t i;
	char *err = NULL;

	strcpy(longurl, "https://example.com/");
	memset(longurl + 20, 'a', SBX_MAX_URL_LEN - 19);
	longurl[SBX_MAX_URL_LEN + 1] = '\0';
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = sbx_url_validate(cases[i].url, &err);

		CHECKF(cases[i].good ? rc == 0 : rc == -1 && err != NULL,
		       "case %zu '%.60s': rc=%d err=%s", i, cases[i].url, rc, err ? err : "");
		free(err);
		err = NULL;
	}
	longurl[SBX_MAX_URL_LEN] = '\0';    /* exactly at the limit */
	CHECK(ok(sbx_url_validate(longurl, &err), &err));
	CHECK(sbx_url_validate(NULL, &err) == -1);
	free(err);
}

TEST(mailboxes)
{
	char *state = new_state(), *err = NULL, *sql, *want;
	struct sbx_dir *dir = open_new(state);
	struct sbx_dir_mailbox m, *list = NULL;
	struct sbx_dir_alias *aliases = NULL;
	char alice[SBX_ID_HEX] = "", bob[SBX_ID_HEX] = "", id[SBX_ID_HEX] = "";
	size_t n = 0, i;
	int found;

	CHECK(add_domain(dir, "example.com"));
	CHECK(ok(sbx_dir_mailbox_add(dir, "Alice@Example.com", 1000, test_pk, "e0", test_env,
				     sizeof(test_env), alice, &err), &err));
	CHECK(sbx_is_id(alice));
	CHECK(add_mailbox(dir, "bob@example.com", bob));
	CHECK(strcmp(alice, bob) != 0);
	CHECK(fails_with(sbx_dir_mailbox_add(dir, "ALICE@example.com", 0, test_pk, "e0", test_env,
					     sizeof(test_env), id, &err), &err,
			 "address already exists: alice@example.com"));
	CHECK(fails_with(sbx_dir_mailbox_add(dir, "bob@unhosted.org", 0, test_pk, "e0", test_env,
					     sizeof(test_env), id, &err), &err,
			 "domain not hosted: unhosted.org (sealboxctl domain add)"));
	CHECK(fails_with(sbx_dir_mailbox_add(dir, "bad address@example.com", 0, test_pk, "e0",
					     test_env, sizeof(test_env), id, &err), &err,
			 "invalid address"));
	CHECK(fails_with(sbx_dir_mailbox_add(dir, "c@example.com", 0, test_pk, "e0", test_env,
					     0, id, &err), &err, "envelope"));
	CHECK(add_alias(dir, "al@example.com", (const char *const[]){ "mailbox:alice@example.com", NULL }));
	CHECK(add_alias(dir, "both@example.com",
			(const char *const[]){ "mailbox:alice@example.com", "mailbox:bob@example.com", NULL }));
	CHECK(fails_with(sbx_dir_mailbox_add(dir, "al@example.com", 0, test_pk, "e0", test_env,
					     sizeof(test_env), id, &err), &err,
			 "address already exists: al@example.com"));

	/* find: by address (any case), by id, by a single-target alias */
	{
		const char *keys[] = { "alice@example.com", "ALICE@Example.COM", alice, "al@example.com" };

		for (i = 0; i < 4; i++) {
			CHECKF(ok(sbx_dir_mailbox_find(dir, keys[i], &m, &err), &err), "find %s", keys[i]);
			CHECK(strcmp(m.id, alice) == 0);
			CHECK_STR(m.address, "alice@example.com");
			CHECK(m.quota_bytes == 1000 && m.usage_bytes == 0 && m.usage_msgs == 0);
			CHECK(memcmp(m.spool_pk, test_pk, 32) == 0);
			sbx_dir_mailbox_clear(&m);
			CHECK(m.address == NULL);
		}
	}
	CHECK(fails_with(sbx_dir_mailbox_find(dir, "both@example.com", &m, &err), &err,
			 "no such mailbox: both@example.com"));
	CHECK(fails_with(sbx_dir_mailbox_find(dir, "nobody@example.com", &m, &err), &err,
			 "no such mailbox: nobody@example.com"));
	CHECK(fails_with(sbx_dir_mailbox_find(dir, "00000000000000000000000000000000", &m, &err),
			 &err, "no such mailbox"));

	CHECK(ok(sbx_dir_mailbox_list(dir, &list, &n, &err), &err));
	CHECK(n == 2);
	if (n == 2) {
		CHECK_STR(list[0].address, "alice@example.com");
		CHECK_STR(list[1].address, "bob@example.com");
		CHECK(strcmp(list[1].id, bob) == 0);
	}
	sbx_dir_mailbox_list_free(list, n);

	/* del: envelopes, targets and emptied aliases go with it */
	CHECK(ok(sbx_dir_envelope_put(dir, alice, "e1", test_env, 5, &err), &err));
	CHECK(ok(sbx_dir_mailbox_del(dir, alice, &err), &err));
	sql = sbx_xasprintf("SELECT count(*) FROM envelopes WHERE mailbox_id = '%s'", alice);
	CHECK(sql_int(dir, sql) == 0);
	free(sql);
	sql = sbx_xasprintf("SELECT count(*) FROM targets WHERE value = '%s'", alice);
	CHECK(sql_int(dir, sql) == 0);
	free(sql);
	CHECK(sql_int(dir, "SELECT count(*) FROM envelopes") == 1);   /* bob's */
	CHECK(fails_with(sbx_dir_mailbox_find(dir, alice, &m, &err), &err, "no such mailbox"));
	CHECK(fails_with(sbx_dir_mailbox_find(dir, "al@example.com", &m, &err), &err, "no such mailbox"));
	CHECK(ok(sbx_dir_alias_list(dir, &aliases, &n, &err), &err));
	found = 0;
	for (i = 0; i < n; i++) {
		CHECK(strcmp(aliases[i].alias, "al@example.com") != 0);
		CHECK(strcmp(aliases[i].alias, "alice@example.com") != 0);
		if (strcmp(aliases[i].alias, "both@example.com") == 0) {
			found = 1;
			CHECK(aliases[i].ntargets == 1 && strcmp(aliases[i].targets[0].value, bob) == 0);
		}
	}
	CHECK(found && n == 2);    /* bob@ and both@ */
	sbx_dir_alias_list_free(aliases, n);
	/* "both" now has bob as its single target, so it finds bob */
	CHECK(ok(sbx_dir_mailbox_find(dir, "both@example.com", &m, &err), &err));
	CHECK(strcmp(m.id, bob) == 0);
	sbx_dir_mailbox_clear(&m);
	want = sbx_xasprintf("no such mailbox: %s", alice);
	CHECK(fails_with(sbx_dir_mailbox_del(dir, alice, &err), &err, want));
	free(want);
	CHECK(fails_with(sbx_dir_mailbox_del(dir, "bob@example.com", &err), &err, "no such mailbox"));
	/* The address is free again. */
	CHECK(add_mailbox(dir, "alice@example.com", id));
	CHECK(strcmp(id, alice) != 0);
	sbx_dir_close(&dir);
	rm_rf(state);
}

TEST(envelopes)
{
	char *state = new_state(), *err = NULL;
	struct sbx_dir *dir = open_new(state);
	struct sbx_dir_envelope *v = NULL;
	char id[SBX_ID_HEX] = "", other[SBX_ID_HEX] = "", eid[80];
	size_t n = 0, i;

	CHECK(add_domain(dir, "example.com"));
	CHECK(add_mailbox(dir, "a@example.com", id));
	CHECK(ok(sbx_dir_envelopes_get(dir, id, &v, &n, &err), &err));
	CHECK(n == 1 && strcmp(v[0].envelope_id, "e0") == 0 && v[0].len == sizeof(test_env) &&
	      memcmp(v[0].blob, test_env, sizeof(test_env)) == 0);
	sbx_dir_envelopes_free(v, n);

	CHECK(ok(sbx_dir_envelope_put(dir, id, "e1", (const unsigned char *)"BBBB", 4, &err), &err));
	CHECK(ok(sbx_dir_envelope_put(dir, id, "e0", (const unsigned char *)"CCCCCC", 6, &err), &err));
	CHECK(ok(sbx_dir_envelopes_get(dir, id, &v, &n, &err), &err));
	CHECK(n == 2);
	if (n == 2) {
		CHECK(strcmp(v[0].envelope_id, "e0") == 0 && v[0].len == 6 && memcmp(v[0].blob, "CCCCCC", 6) == 0);
		CHECK(strcmp(v[1].envelope_id, "e1") == 0 && v[1].len == 4 && memcmp(v[1].blob, "BBBB", 4) == 0);
	}
	/* A password change replaces an envelope only if it is still the one
	 * it unlocked: the second of two racing changes is refused. */
	CHECK(ok(sbx_dir_envelope_replace(dir, id, "e1", (const unsigned char *)"BBBB", 4,
					  (const unsigned char *)"DDDD", 4, &err), &err));
	CHECK(sbx_dir_envelope_replace(dir, id, "e1", (const unsigned char *)"BBBB", 4,
				       (const unsigned char *)"EEEE", 4, &err) < 0);
	CHECK(err != NULL && strstr(err, "changed meanwhile") != NULL);
	free(err);
	err = NULL;
	sbx_dir_envelopes_free(v, n);

	CHECK(ok(sbx_dir_envelope_del(dir, id, "e1", &err), &err));
	CHECK(fails_with(sbx_dir_envelope_del(dir, id, "e1", &err), &err, "no such key envelope: e1"));
	CHECK(fails_with(sbx_dir_envelope_del(dir, id, "e0", &err), &err, "last key envelope"));

	/* At most SBX_MAX_ENVELOPES; replacing one at the limit still works. */
	for (i = 1; i < SBX_MAX_ENVELOPES; i++) {
		snprintf(eid, sizeof(eid), "e%zu", i);
		CHECK(ok(sbx_dir_envelope_put(dir, id, eid, test_env, 3, &err), &err));
	}
	CHECK(ok(sbx_dir_envelopes_get(dir, id, &v, &n, &err), &err));
	CHECK(n == SBX_MAX_ENVELOPES);
	sbx_dir_envelopes_free(v, n);
	CHECK(fails_with(sbx_dir_envelope_put(dir, id, "one-too-many", test_env, 3, &err), &err,
			 "too many key envelopes"));
	CHECK(ok(sbx_dir_envelope_put(dir, id, "e5", test_env, 7, &err), &err));
	CHECK(ok(sbx_dir_envelopes_get(dir, id, &v, &n, &err), &err));
	CHECK(n == SBX_MAX_ENVELOPES);
	sbx_dir_envelopes_free(v, n);

	/* Bad arguments and unknown mailboxes. */
	sbx_random_id(other);
	CHECK(fails_with(sbx_dir_envelope_put(dir, other, "e0", test_env, 3, &err), &err, "no such mailbox"));
	CHECK(fails_with(sbx_dir_envelopes_get(dir, other, &v, &n, &err), &err, "no such mailbox"));
	CHECK(v == NULL && n == 0);
	CHECK(fails_with(sbx_dir_envelope_put(dir, id, "", test_env, 3, &err), &err, "envelope id"));
	CHECK(fails_with(sbx_dir_envelope_put(dir, id, "has space", test_env, 3, &err), &err, "envelope id"));
	memset(eid, 'x', SBX_MAX_ENVELOPE_ID_LEN + 1);
	eid[SBX_MAX_ENVELOPE_ID_LEN + 1] = '\0';
	CHECK(fails_with(sbx_dir_envelope_put(dir, id, eid, test_env, 3, &err), &err, "envelope id"));
	CHECK(fails_with(sbx_dir_envelope_put(dir, id, "e0", test_env, 0, &err), &err, "envelope"));
	{
		unsigned char big[SBX_MAX_ENVELOPE_BLOB + 1] = { 0 };

		CHECK(fails_with(sbx_dir_envelope_put(dir, id, "e0", big, sizeof(big), &err), &err,
				 "envelope"));
		CHECK(ok(sbx_dir_envelope_put(dir, id, "e0", big, SBX_MAX_ENVELOPE_BLOB, &err), &err));
	}
	sbx_dir_close(&dir);
	rm_rf(state);
}

TEST(aliases_resolve)
{
	char *state = new_state(), *err = NULL, *want, *matched = NULL;
	struct sbx_dir *dir = open_new(state);
	char sales[SBX_ID_HEX] = "", user[SBX_ID_HEX] = "", rx1[SBX_ID_HEX] = "", rx2[SBX_ID_HEX] = "",
	    catchall[SBX_ID_HEX] = "", s[320];
	struct sbx_target t[3], *rt = NULL, w;
	struct sbx_dir_alias *aliases = NULL;
	size_t n = 0, i;

	CHECK(add_domain(dir, "example.com"));
	CHECK(add_domain(dir, "other.org"));
	CHECK(add_mailbox(dir, "sales-box@example.com", sales));
	CHECK(add_mailbox(dir, "user@example.com", user));
	CHECK(add_mailbox(dir, "rx1@other.org", rx1));
	CHECK(add_mailbox(dir, "rx2@other.org", rx2));
	CHECK(add_mailbox(dir, "catch@other.org", catchall));

	CHECK(add_alias(dir, "Sales@Example.com", (const char *const[]){ "mailbox:sales-box@example.com", NULL }));
	CHECK(add_alias(dir, "*@example.com", (const char *const[]){ "mailbox:catch@other.org", NULL }));
	CHECK(add_alias(dir, "~r[0-9]+@example.com", (const char *const[]){ "mailbox:rx1@other.org", NULL }));
	CHECK(add_alias(dir, "~R1.*@example.com", (const char *const[]){ "mailbox:rx2@other.org", NULL }));
	CHECK(add_alias(dir, "~user.*@example.com", (const char *const[]){ "mailbox:rx2@other.org", NULL }));
	CHECK(add_alias(dir, "user+vip@example.com", (const char *const[]){ "forward:VIP@Elsewhere.net", NULL }));

#define EXPECT(addr, matched_, id_) do { \
	snprintf(s, sizeof(s), "%s -> mailbox:%s", matched_, id_); \
	CHECK_RESOLVE(dir, addr, s); \
} while (0)
	EXPECT("sales@example.com", "sales@example.com", sales);        /* exact */
	EXPECT("SALES@Example.COM", "sales@example.com", sales);
	EXPECT("sales+news@example.com", "sales@example.com", sales);   /* plus folds */
	EXPECT("user@example.com", "user@example.com", user);           /* mailbox's own alias */
	EXPECT("user+tag@example.com", "user@example.com", user);       /* plus beats regex */
	CHECK_RESOLVE(dir, "user+vip@example.com", "user+vip@example.com -> forward:vip@elsewhere.net");
	EXPECT("r5@example.com", "~r[0-9]+@example.com", rx1);          /* regex */
	EXPECT("r12@example.com", "~r[0-9]+@example.com", rx1);         /* first by id */
	EXPECT("R1x@example.com", "~R1.*@example.com", rx2);            /* case-insensitive */
	EXPECT("userx@example.com", "~user.*@example.com", rx2);
	EXPECT("xr5@example.com", "*@example.com", catchall);           /* anchored */
	EXPECT("nobody@example.com", "*@example.com", catchall);        /* catch-all last */
	EXPECT("rx1@other.org", "rx1@other.org", rx1);
	/* A stored regex that would escape ^(...)$ (alias_add refuses it) still
	 * has to match the whole local part. */
	snprintf(s, sizeof(s),
		 "INSERT INTO aliases (address, kind, domain, created)"
		 " VALUES ('~zz)|(q)@example.com', 'regex', 'example.com', 0);"
		 "INSERT INTO targets VALUES (last_insert_rowid(), 0, 'mailbox', '%s');"
		 "DELETE FROM aliases WHERE 0", rx1);
	CHECK(sqlite3_exec(sbx_dir_db(dir), s, NULL, NULL, NULL) == SQLITE_OK);
	EXPECT("zzfoo@example.com", "*@example.com", catchall);
	CHECK(sqlite3_exec(sbx_dir_db(dir), "DELETE FROM aliases WHERE address = '~zz)|(q)@example.com'",
			   NULL, NULL, NULL) == SQLITE_OK);
	CHECK_RESOLVE(dir, "nobody@other.org", "unknown");             /* no catch-all */
	CHECK_RESOLVE(dir, "sales@unknown.net", "unknown");            /* not hosted */
	CHECK_RESOLVE(dir, "not an address", "unknown");
	CHECK_RESOLVE(dir, "", "unknown");
	/* matched_alias_r may be NULL */
	CHECK(sbx_dir_resolve(dir, "sales@example.com", &rt, &n, NULL, &err) == 1 && n == 1);
	sbx_targets_free(rt, n);

	/* Several targets, kept in order; the webhook gets an id. */
	memset(t, 0, sizeof(t));
	CHECK(ok(sbx_dir_target_parse(dir, "forward:Ext@Example.NET", &t[0], &err), &err));
	CHECK(t[0].kind == SBX_TARGET_FORWARD && strcmp(t[0].value, "ext@example.net") == 0);
	CHECK(ok(sbx_dir_target_parse(dir, "mailbox:user@example.com", &t[1], &err), &err));
	CHECK(t[1].kind == SBX_TARGET_MAILBOX && strcmp(t[1].value, user) == 0);
	CHECK(ok(sbx_dir_target_parse(dir, "webhook:https://hooks.example.net/in", &t[2], &err), &err));
	CHECK(t[2].kind == SBX_TARGET_WEBHOOK);
	t[2].secret = (unsigned char *)sbx_xstrdup("s3cret");
	t[2].secret_len = 6;
	CHECK(ok(sbx_dir_alias_add(dir, "team@example.com", t, 3, &err), &err));
	CHECK(sbx_is_id(t[2].webhook_id));
	CHECK(t[0].webhook_id[0] == '\0');
	want = sbx_xasprintf("team@example.com -> forward:ext@example.net, mailbox:%s,"
			     " webhook:https://hooks.example.net/in", user);
	CHECK_RESOLVE(dir, "team@example.com", want);
	free(want);
	CHECK(sbx_dir_resolve(dir, "team+x@example.com", &rt, &n, &matched, &err) == 1 && n == 3);
	if (n == 3) {
		CHECK(strcmp(rt[2].webhook_id, t[2].webhook_id) == 0);
		CHECK(rt[2].secret == NULL);
	}
	sbx_targets_free(rt, n);
	free(matched);
	CHECK(ok(sbx_dir_webhook_get(dir, t[2].webhook_id, &w, &err), &err));
	CHECK(w.kind == SBX_TARGET_WEBHOOK && strcmp(w.value, "https://hooks.example.net/in") == 0);
	CHECK(w.secret_len == 6 && memcmp(w.secret, "s3cret", 6) == 0);
	CHECK(strcmp(w.webhook_id, t[2].webhook_id) == 0);
	sbx_target_free(&w);
	CHECK(fails_with(sbx_dir_webhook_get(dir, "0123456789abcdef0123456789abcdef", &w, &err), &err,
			 "no such webhook"));

	/* Duplicates and bad aliases are refused. */
	CHECK(fails_with(sbx_dir_alias_add(dir, "TEAM@example.com", t, 1, &err), &err,
			 "alias already exists: team@example.com"));
	CHECK(fails_with(sbx_dir_alias_add(dir, "user@example.com", t, 1, &err), &err,
			 "alias already exists: user@example.com"));
	CHECK(fails_with(sbx_dir_alias_add(dir, "*@example.com", t, 1, &err), &err,
			 "alias already exists: *@example.com"));
	CHECK(fails_with(sbx_dir_alias_add(dir, "x@unknown.net", t, 1, &err), &err,
			 "domain not hosted: unknown.net"));
	CHECK(fails_with(sbx_dir_alias_add(dir, "x@example.com", t, 0, &err), &err, "targets"));
	CHECK(fails_with(sbx_dir_alias_add(dir, "x@example.com", t, SBX_MAX_TARGETS_PER_ALIAS + 1, &err),
			 &err, "targets"));
	CHECK(fails_with(sbx_dir_alias_add(dir, "~a)|(b@example.com", t, 1, &err), &err, "regex"));
	{
		struct sbx_target dup[2] = { t[1], t[1] };

		CHECK(fails_with(sbx_dir_alias_add(dir, "dup@example.com", dup, 2, &err), &err,
				 "duplicate target"));
	}
	{
		struct sbx_target self = { .kind = SBX_TARGET_FORWARD, .value = (char *)"loop@example.com" };

		CHECK(fails_with(sbx_dir_alias_add(dir, "loop@example.com", &self, 1, &err), &err,
				 "forwards to itself"));
	}
	{
		struct sbx_target ghost = { .kind = SBX_TARGET_MAILBOX,
					    .value = (char *)"0123456789abcdef0123456789abcdef" };

		CHECK(fails_with(sbx_dir_alias_add(dir, "ghost@example.com", &ghost, 1, &err), &err,
				 "no such mailbox"));
	}
	for (i = 0; i < 3; i++)
		sbx_target_free(&t[i]);

	/* target_parse errors */
	CHECK(fails_with(sbx_dir_target_parse(dir, "mailbox:nobody@example.com", &t[0], &err), &err,
			 "no such mailbox: nobody@example.com"));
	CHECK(fails_with(sbx_dir_target_parse(dir, "forward:Bad Address", &t[0], &err), &err,
			 "invalid address"));
	CHECK(fails_with(sbx_dir_target_parse(dir, "webhook:http://evil.com/", &t[0], &err), &err,
			 "URL"));
	CHECK(fails_with(sbx_dir_target_parse(dir, "smtp:x@y.com", &t[0], &err), &err, "invalid target"));
	CHECK(fails_with(sbx_dir_target_parse(dir, "nocolon", &t[0], &err), &err, "invalid target"));
	CHECK(t[0].value == NULL);

	/* A webhook without a secret gets a generated one. */
	memset(t, 0, sizeof(t));
	CHECK(ok(sbx_dir_target_parse(dir, "webhook:http://127.0.0.1:8080/h", &t[0], &err), &err));
	CHECK(ok(sbx_dir_alias_add(dir, "hook2@example.com", t, 1, &err), &err));
	CHECK(t[0].secret != NULL && t[0].secret_len == 32);
	CHECK(ok(sbx_dir_webhook_get(dir, t[0].webhook_id, &w, &err), &err));
	CHECK(w.secret_len == 32 && t[0].secret != NULL && memcmp(w.secret, t[0].secret, 32) == 0);
	sbx_target_free(&w);

	/* alias_list: every alias in id order with its targets */
	CHECK(ok(sbx_dir_alias_list(dir, &aliases, &n, &err), &err));
	CHECK(n == 13);     /* 5 mailbox aliases + 6 + team + hook2 */
	for (i = 0; i < n; i++) {
		if (strcmp(aliases[i].alias, "team@example.com") == 0) {
			CHECK(aliases[i].ntargets == 3);
			CHECK(aliases[i].targets[0].kind == SBX_TARGET_FORWARD);
			CHECK(aliases[i].targets[1].kind == SBX_TARGET_MAILBOX);
			CHECK(aliases[i].targets[2].kind == SBX_TARGET_WEBHOOK &&
			      sbx_is_id(aliases[i].targets[2].webhook_id));
		}
	}
	if (n == 13) {
		CHECK_STR(aliases[0].alias, "sales-box@example.com");
		CHECK_STR(aliases[7].alias, "~r[0-9]+@example.com");
	}
	sbx_dir_alias_list_free(aliases, n);

	/* alias_del: the webhook goes too; refusals */
	CHECK(ok(sbx_dir_alias_del(dir, "hook2@example.com", &err), &err));
	CHECK(fails_with(sbx_dir_webhook_get(dir, t[0].webhook_id, &w, &err), &err, "no such webhook"));
	sbx_target_free(&t[0]);
	CHECK(sql_int(dir, "SELECT count(*) FROM webhooks") == 1);
	CHECK(ok(sbx_dir_alias_del(dir, "Team@example.com", &err), &err));
	CHECK(sql_int(dir, "SELECT count(*) FROM webhooks") == 0);
	EXPECT("team@example.com", "*@example.com", catchall);
	CHECK(fails_with(sbx_dir_alias_del(dir, "user@example.com", &err), &err, "is a mailbox"));
	CHECK(fails_with(sbx_dir_alias_del(dir, "nope@example.com", &err), &err,
			 "no such alias: nope@example.com"));
	CHECK(ok(sbx_dir_alias_del(dir, "~r[0-9]+@example.com", &err), &err));
	EXPECT("r12@example.com", "~R1.*@example.com", rx2);
	CHECK(ok(sbx_dir_alias_del(dir, "*@example.com", &err), &err));
	CHECK_RESOLVE(dir, "nobody@example.com", "unknown");
#undef EXPECT
	sbx_dir_close(&dir);
	rm_rf(state);
}

TEST(usage)
{
	char *state = new_state(), *err = NULL, other[SBX_ID_HEX] = "", id[SBX_ID_HEX] = "";
	struct sbx_dir *dir = open_new(state);
	struct sbx_dir_mailbox m;

#define USAGE(b, n) do { \
	CHECK(ok(sbx_dir_mailbox_find(dir, id, &m, &err), &err)); \
	CHECKF(m.usage_bytes == (uint64_t)(b) && m.usage_msgs == (uint64_t)(n), \
	       "usage %llu/%llu, want %llu/%llu", (unsigned long long)m.usage_bytes, \
	       (unsigned long long)m.usage_msgs, (unsigned long long)(b), (unsigned long long)(n)); \
	sbx_dir_mailbox_clear(&m); \
} while (0)
	CHECK(add_domain(dir, "example.com"));
	CHECK(add_mailbox(dir, "a@example.com", id));
	USAGE(0, 0);
	CHECK(ok(sbx_dir_usage_add(dir, id, 1000, 2, &err), &err));
	USAGE(1000, 2);
	CHECK(ok(sbx_dir_usage_add(dir, id, -300, -1, &err), &err));
	USAGE(700, 1);
	CHECK(ok(sbx_dir_usage_add(dir, id, -5000, -10, &err), &err));   /* clamps at 0 */
	USAGE(0, 0);
	CHECK(ok(sbx_dir_usage_add(dir, id, INT64_MIN, INT64_MIN, &err), &err));
	USAGE(0, 0);
	CHECK(ok(sbx_dir_usage_set(dir, id, 42, 7, &err), &err));
	USAGE(42, 7);
	CHECK(ok(sbx_dir_usage_add(dir, id, INT64_MAX, 0, &err), &err));  /* saturates */
	USAGE(INT64_MAX, 7);
	CHECK(ok(sbx_dir_usage_set(dir, id, 0, 0, &err), &err));
	USAGE(0, 0);
	CHECK(ok(sbx_dir_mailbox_set_quota(dir, id, 5000, &err), &err));
	CHECK(ok(sbx_dir_mailbox_find(dir, id, &m, &err), &err));
	CHECK(m.quota_bytes == 5000);
	sbx_dir_mailbox_clear(&m);

	sbx_random_id(other);
	CHECK(fails_with(sbx_dir_usage_add(dir, other, 1, 1, &err), &err, "no such mailbox"));
	CHECK(fails_with(sbx_dir_usage_add(dir, "not-an-id", 1, 1, &err), &err, "no such mailbox"));
	CHECK(fails_with(sbx_dir_usage_set(dir, other, 1, 1, &err), &err, "no such mailbox"));
	CHECK(fails_with(sbx_dir_mailbox_set_quota(dir, other, 1, &err), &err, "no such mailbox"));
	CHECK(fails_with(sbx_dir_usage_set(dir, id, UINT64_MAX, 0, &err), &err, "too large"));
	CHECK(fails_with(sbx_dir_mailbox_set_quota(dir, id, UINT64_MAX, &err), &err, "too large"));
	USAGE(0, 0);
#undef USAGE
	sbx_dir_close(&dir);
	rm_rf(state);
}

TEST(statement_cache)
{
	char *state = new_state(), *err = NULL, id[SBX_ID_HEX] = "", id2[SBX_ID_HEX] = "";
	char seen[SBX_ID_HEX], want[128], **names;
	struct sbx_dir *w = open_new(state), *r = NULL;
	struct sbx_dir_mailbox m, *mv;
	struct sbx_dir_alias *av;
	struct sbx_dir_envelope *ev;
	struct sbx_dir_delivery d;
	int i, total = 0, log = -1, ckpt = -1;
	size_t n;

	CHECK(add_domain(w, "example.com"));
	CHECK(add_mailbox(w, "a@example.com", id));
	CHECK(ok(sbx_dir_open(state, SBX_DIR_RDONLY, &r, &err), &err));
	if (r == NULL)
		goto out;
	snprintf(want, sizeof(want), "a@example.com -> mailbox:%s", id);
	/* The per-message lookups, again and again, hits and misses: the
	 * statements are reused and always given back reset. */
	for (i = 0; i < 3; i++) {
		CHECK(ok(sbx_dir_mailbox_find(r, "a@example.com", &m, &err), &err));
		sbx_dir_mailbox_clear(&m);
		CHECK(ok(sbx_dir_mailbox_find(r, id, &m, &err), &err));
		sbx_dir_mailbox_clear(&m);
		CHECK(fails_with(sbx_dir_mailbox_find(r, "b@example.com", &m, &err), &err,
				 "no such mailbox"));
		CHECK(sbx_dir_delivery_seen(r, "Q1", "a@example.com", seen, &err) == 0);
		CHECK_RESOLVE(r, "a+tag@example.com", want);
		CHECK_RESOLVE(r, "b@example.com", "unknown");
		CHECK(stmts_busy(r, NULL) == 0);
	}
	/* A failing write on the read-only connection gives its statements back. */
	CHECK(sbx_dir_domain_add(r, "other.com", &err) == -1);
	free(err);
	err = NULL;
	CHECK(stmts_busy(r, NULL) == 0);

	/* The reader's cached statements see the writer's later commits. */
	CHECK(add_mailbox(w, "b@example.com", id2));
	d.mailbox_id = id;
	d.queue_id = "Q1";
	d.rcpt = "a@example.com";
	d.delivery_id = id2;
	d.bytes = 10;
	CHECK(ok(sbx_dir_deliveries_record(w, &d, 1, time(NULL), &err), &err));
	CHECK(ok(sbx_dir_mailbox_find(r, "b@example.com", &m, &err), &err));
	sbx_dir_mailbox_clear(&m);
	CHECK(ok(sbx_dir_mailbox_find(r, "a@example.com", &m, &err), &err));
	CHECK(m.usage_msgs == 1 && m.usage_bytes == 10);
	sbx_dir_mailbox_clear(&m);
	CHECK(sbx_dir_delivery_seen(r, "Q1", "a@example.com", seen, &err) == 1);
	CHECK(strcmp(seen, id2) == 0);
	/* An idle reader does not hold the WAL: a TRUNCATE checkpoint
	 * completes (it would wait out the busy timeout otherwise). */
	CHECK(sqlite3_wal_checkpoint_v2(sbx_dir_db(w), NULL, SQLITE_CHECKPOINT_TRUNCATE,
					&log, &ckpt) == SQLITE_OK);
	CHECK(log == 0 && ckpt == 0);

	/* Much of the API on one connection, with error paths: nothing stays
	 * stepped, and the cache stays bounded (DIR_STMT_CACHE, 32). */
	CHECK(fails_with(sbx_dir_domain_add(w, "example.com", &err), &err, "already exists"));
	CHECK(fails_with(sbx_dir_domain_del(w, "example.com", &err), &err, "in use"));
	CHECK(add_domain(w, "example.org"));
	CHECK(ok(sbx_dir_domain_list(w, &names, &n, &err), &err));
	sbx_strv_free(names, n);
	CHECK(ok(sbx_dir_mailbox_list(w, &mv, &n, &err), &err));
	sbx_dir_mailbox_list_free(mv, n);
	CHECK(add_alias(w, "team@example.com", (const char *const[]){ "mailbox:a@example.com",
		"forward:x@example.net", "webhook:https://hooks.example.net/x", NULL }));
	CHECK(add_alias(w, "~r[0-9]+@example.com", (const char *const[]){ "mailbox:b@example.com", NULL }));
	CHECK(add_alias(w, "*@example.com", (const char *const[]){ "mailbox:a@example.com", NULL }));
	CHECK(fails_with(sbx_dir_alias_del(w, "a@example.com", &err), &err, "is a mailbox"));
	CHECK(ok(sbx_dir_alias_list(w, &av, &n, &err), &err));
	sbx_dir_alias_list_free(av, n);
	CHECK(ok(sbx_dir_envelope_put(w, id, "e1", test_env, sizeof(test_env), &err), &err));
	CHECK(ok(sbx_dir_envelopes_get(w, id, &ev, &n, &err), &err));
	CHECK(n == 2);
	sbx_dir_envelopes_free(ev, n);
	CHECK(fails_with(sbx_dir_envelope_replace(w, id, "e1", test_pk, sizeof(test_pk), test_env,
						  sizeof(test_env), &err), &err, "changed meanwhile"));
	CHECK(ok(sbx_dir_envelope_del(w, id, "e1", &err), &err));
	CHECK(ok(sbx_dir_usage_add(w, id, 5, 1, &err), &err));
	CHECK(ok(sbx_dir_usage_set(w, id, 5, 1, &err), &err));
	CHECK(ok(sbx_dir_mailbox_set_quota(w, id, 100, &err), &err));
	snprintf(want, sizeof(want), "~r[0-9]+@example.com -> mailbox:%s", id2);
	CHECK_RESOLVE(w, "r12@example.com", want);
	CHECK(stmts_busy(w, &total) == 0);
	CHECKF(total > 0 && total <= 32, "%d statements cached", total);
	CHECK(ok(sbx_dir_mailbox_del(w, id2, &err), &err));
	CHECK(stmts_busy(w, &total) == 0);
	CHECKF(total > 0 && total <= 32, "%d statements cached", total);
	CHECK(stmts_busy(r, NULL) == 0);
	sbx_dir_close(&r);
out:
	sbx_dir_close(&w);
	rm_rf(state);
}

TEST(delivered_prune)
{
	char *state = new_state(), *err = NULL, id[SBX_ID_HEX] = "", seen[SBX_ID_HEX];
	struct sbx_dir *dir = open_new(state), *other = NULL;
	struct sbx_dir_delivery d;
	time_t t0 = time(NULL);
	char *sql;

#define OLD_ROW(q, at) do { \
	sql = sbx_xasprintf("INSERT INTO lmtp_delivered VALUES ('%s', 'r@example.com', 'x', %lld)", \
			    q, (long long)(at)); \
	CHECK(sqlite3_exec(sbx_dir_db(dir), sql, NULL, NULL, NULL) == SQLITE_OK); \
	free(sql); \
} while (0)
#define RECORD(dir_, now) CHECK(ok(sbx_dir_deliveries_record(dir_, &d, 1, now, &err), &err))
#define SEEN(q) sbx_dir_delivery_seen(dir, q, "r@example.com", seen, &err)
	CHECK(add_domain(dir, "example.com"));
	CHECK(add_mailbox(dir, "a@example.com", id));
	d.mailbox_id = id;
	d.queue_id = "QNEW";
	d.rcpt = "a@example.com";
	d.delivery_id = id;
	d.bytes = 1;
	/* The first batch of a connection prunes. */
	OLD_ROW("OLD1", t0 - SBX_DIR_DELIVERED_KEEP - 1);
	OLD_ROW("KEEP", t0 - SBX_DIR_DELIVERED_KEEP);
	RECORD(dir, t0);
	CHECK(SEEN("OLD1") == 0);
	CHECK(SEEN("KEEP") == 1);
	/* Within a minute of that prune, expired records stay... */
	OLD_ROW("OLD2", t0 - SBX_DIR_DELIVERED_KEEP - 1);
	RECORD(dir, t0 + 59);
	CHECK(SEEN("OLD2") == 1);
	CHECK(SEEN("KEEP") == 1);
	/* ...a minute later they go, with the same cutoff as ever. */
	RECORD(dir, t0 + 60);
	CHECK(SEEN("OLD2") == 0);
	CHECK(SEEN("KEEP") == 0);
	CHECK(sbx_dir_delivery_seen(dir, "QNEW", "a@example.com", seen, &err) == 1);
	/* A clock that went back prunes at once. */
	OLD_ROW("OLD3", t0 - 10 - SBX_DIR_DELIVERED_KEEP - 1);
	RECORD(dir, t0 - 10);
	CHECK(SEEN("OLD3") == 0);
	/* Each connection keeps its own prune time. */
	OLD_ROW("OLD4", t0 - SBX_DIR_DELIVERED_KEEP - 1);
	CHECK(ok(sbx_dir_open(state, 0, &other, &err), &err));
	if (other != NULL) {
		RECORD(other, t0);
		CHECK(SEEN("OLD4") == 0);
		sbx_dir_close(&other);
	}
	/* An empty batch does nothing at all. */
	OLD_ROW("OLD5", t0 - SBX_DIR_DELIVERED_KEEP - 1);
	CHECK(ok(sbx_dir_deliveries_record(dir, &d, 0, t0 + 3600, &err), &err));
	CHECK(SEEN("OLD5") == 1);
#undef OLD_ROW
#undef RECORD
#undef SEEN
	sbx_dir_close(&dir);
	rm_rf(state);
}

int
main(void)
{
	RUN(open_create_reopen);
	RUN(schema_version);
	RUN(readonly);
	RUN(garbage_file);
	RUN(domains);
	RUN(addr_normalize);
	RUN(url_validate);
	RUN(mailboxes);
	RUN(envelopes);
	RUN(aliases_resolve);
	RUN(usage);
	RUN(statement_cache);
	RUN(delivered_prune);
	return tap_done();
}
