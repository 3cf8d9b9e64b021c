/*
 * test_store.c - the minimal mailbox store and the spool import:
 * default folders, byte-exact messages, exactly-once delivery ids, schema
 * versions, and an importer killed at every step losing and duplicating
 * nothing.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "import.h"
#include "keys.h"
#include "lock.h"
#include "log.h"
#include "mbox.h"
#include "sbx_limits.h"
#include "spool.h"
#include "store.h"
#include "tap.h"
#include "util.h"

static char state[256];
static struct sbx_mailbox_keys *keys;

static void
new_mailbox(char id[SBX_ID_HEX])
{
	char *err = NULL;

	sbx_random_id(id);
	if (sbx_store_create(state, id, keys, &err) < 0) {
		printf("# create: %s\n", err);
		free(err);
	}
}

static struct sbx_store *
open_store(const char *id)
{
	struct sbx_store *st = NULL;
	char *err = NULL;

	if (sbx_store_open(state, id, keys, 0, &st, &err) < 0) {
		printf("# open: %s\n", err);
		free(err);
	}
	return st;
}

TEST(create_has_default_folders)
{
	char id[SBX_ID_HEX], *err = NULL;
	struct sbx_store *st;
	struct sbx_store_folder *f = NULL;
	size_t n = 0;
	static const char *names[] = { "INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive" };
	static const char *uses[] = { NULL, "\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive" };
	size_t i;
	struct stat sb;
	char *path;

	new_mailbox(id);
	path = sbx_mailbox_path(state, id, ".sqlite");
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 077) == 0);
	st = open_store(id);
	CHECK(st != NULL);
	if (st == NULL)
		return;
	CHECK(sbx_store_folders(st, &f, &n, &err) == 0);
	CHECK(n == 6);
	for (i = 0; i < n && i < 6; i++) {
		CHECK(strcmp(f[i].name, names[i]) == 0);
		CHECK((uses[i] == NULL) == (f[i].special_use == NULL));
		CHECK(uses[i] == NULL || strcmp(uses[i], f[i].special_use) == 0);
		CHECK(f[i].uidnext == 1 && f[i].uidvalidity > 0 && f[i].messages == 0);
	}
	sbx_store_folders_free(f, n);
	sbx_store_close(&st);
	CHECK(sbx_store_create(state, id, keys, &err) < 0);
	CHECK(err && strstr(err, "already exists"));
	free(err);
	free(path);
}

TEST(append_fetch_byte_exact_and_exactly_once)
{
	char id[SBX_ID_HEX], did[SBX_ID_HEX], *err = NULL, *data = NULL;
	static const char msg[] = "From: a@b.example\r\nSubject: x\r\n\r\nbody\0with NUL\r\n\xff\xfe";
	struct sbx_store *st;
	struct sbx_store_msg *v = NULL;
	size_t n = 0, len = 0;
	uint32_t uid = 0;
	uint64_t bytes, msgs;

	new_mailbox(id);
	st = open_store(id);
	CHECK(st != NULL);
	if (st == NULL)
		return;
	sbx_random_id(did);
	CHECK(sbx_store_append(st, "INBOX", msg, sizeof(msg) - 1, 1764070309, 0, NULL, did, &uid, &err) == 0);
	CHECK(uid == 1);
	CHECK(sbx_store_delivered(st, did, &err) == 1);
	/* The same delivery id again: nothing stored. */
	CHECK(sbx_store_append(st, "INBOX", msg, sizeof(msg) - 1, 1764070309, 0, NULL, did, &uid, &err) == 1);
	CHECK(sbx_store_append(st, "INBOX", "x", 1, 1764070309, SBX_FLAG_SEEN, NULL, NULL, &uid, &err) == 0);
	CHECK(uid == 2);
	CHECK(sbx_store_list(st, "INBOX", 0, &v, &n, &err) == 0);
	CHECK(n == 2);
	if (n == 2) {
		CHECK(v[0].uid == 1 && v[0].size == sizeof(msg) - 1);
		CHECK(strcmp(v[0].internaldate, "2025-11-25T11:31:49Z") == 0);
		CHECK(v[1].flags == SBX_FLAG_SEEN);
	}
	sbx_store_msgs_free(v, n);
	CHECK(sbx_store_fetch_raw(st, "INBOX", 1, &data, &len, &err) == 0);
	CHECK(len == sizeof(msg) - 1 && memcmp(data, msg, len) == 0);
	free(data);
	CHECK(sbx_store_append(st, "NoSuchFolder", "x", 1, 0, 0, NULL, NULL, &uid, &err) < 0);
	CHECK(err && strstr(err, "no such folder"));
	free(err);
	err = NULL;
	CHECK(sbx_store_usage(st, &bytes, &msgs, &err) == 0);
	CHECK(bytes == sizeof(msg) && msgs == 2);
	sbx_store_close(&st);
}

TEST(wrong_key_and_newer_schema_refused)
{
	char id[SBX_ID_HEX], *err = NULL;
	struct sbx_mailbox_keys *other = sbx_keys_generate();
	struct sbx_store *st = NULL;

	new_mailbox(id);
	CHECK(sbx_store_open(state, id, other, 0, &st, &err) < 0);
	CHECKF(err && strstr(err, "wrong key"), "error: %s", err ? err : "(null)");
	free(err);
	err = NULL;
	sbx_keys_free(&other);

	st = open_store(id);
	CHECK(st != NULL);
	if (st == NULL)
		return;
	CHECK(sqlite3_exec(sbx_store_db(st), "PRAGMA user_version=99", NULL, NULL, NULL) == SQLITE_OK);
	sbx_store_close(&st);
	CHECK(sbx_store_open(state, id, keys, 0, &st, &err) < 0);
	CHECKF(err && strstr(err, "newer than this sealbox"), "error: %s", err ? err : "(null)");
	free(err);
}

#define NSPOOL 150

/* Spool messages first .. first + n - 1. */
static void
spool_from(const char *id, int first, int n)
{
	int i;

	for (i = first; i < first + n; i++) {
		struct sbx_spool_meta meta = { 0 };
		char *msg = sbx_xasprintf("Subject: message %d\r\n\r\nbody %d SEALBOX-STORE-MARKER\r\n", i, i);
		char *err = NULL;

		meta.arrival = 1764070309 + i;
		meta.mail_from = "sender@example.org";
		meta.orcpt = "rcpt@example.com";
		meta.size = strlen(msg);
		if (sbx_spool_deliver(state, id, keys->spool_pk, &meta, msg, strlen(msg), NULL, &err) < 0) {
			printf("# spool: %s\n", err);
			free(err);
		}
		free(msg);
	}
}

static void
spool_n(const char *id, int n)
{
	spool_from(id, 0, n);
}

static const char *crash_point;
static size_t crash_n, crash_seen, crash_nth;

static void
crash_hook(const char *point, size_t n)
{
	if (strcmp(point, crash_point) == 0 && n == crash_n && ++crash_seen == crash_nth)
		_exit(0);   /* killed: no rollback, no close */
}

/* Run an import in a child that dies at the nth time it reaches the given
 * point (2: in the second batch). */
static void
import_and_die(const char *id, const char *point, size_t n, size_t nth)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		struct sbx_store *st = open_store(id);
		struct sbx_import_stats stats;
		char *err = NULL;

		if (st == NULL)
			_exit(2);
		crash_point = point;
		crash_n = n;
		crash_nth = nth;
		crash_seen = 0;
		sbx_import_test_hook = crash_hook;
		sbx_spool_import(state, id, keys, st, 1 << 20, &stats, &err);
		_exit(3);   /* should have died in the hook */
	}
	waitpid(pid, &status, 0);
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "importer for %s/%zu did not die there", point, n);
}

static void
verify_all_once(const char *id, int n)
{
	struct sbx_store *st = open_store(id);
	struct sbx_import_stats stats;
	struct sbx_store_msg *v = NULL;
	size_t nv = 0, i, left = 99;
	char **ids = NULL, *err = NULL;
	int *seen = sbx_xcalloc((size_t)n, sizeof(int)), bad = 0;

	CHECK(st != NULL);
	if (st == NULL) {
		free(seen);
		return;
	}
	CHECK(sbx_spool_import(state, id, keys, st, 1 << 20, &stats, &err) == 0);
	CHECK(stats.damaged == 0);
	CHECK(sbx_store_list(st, "INBOX", 0, &v, &nv, &err) == 0);
	CHECKF(nv == (size_t)n, "%zu messages, expected %d", nv, n);
	for (i = 0; i < nv; i++) {
		char *data = NULL;
		size_t len;
		int k;

		if (sbx_store_fetch_raw(st, "INBOX", v[i].uid, &data, &len, &err) < 0) {
			bad++;
			continue;
		}
		if (sscanf(data, "Subject: message %d", &k) == 1 && k >= 0 && k < n) {
			char *want = sbx_xasprintf("Subject: message %d\r\n\r\nbody %d SEALBOX-STORE-MARKER\r\n", k, k);

			if (strlen(want) != len || memcmp(want, data, len) != 0)
				bad++;
			seen[k]++;
			free(want);
		} else {
			bad++;
		}
		free(data);
	}
	for (i = 0; i < (size_t)n; i++)
		if (seen[i] != 1)
			bad++;
	CHECKF(bad == 0, "%d messages missing, duplicated or altered", bad);
	CHECK(sbx_spool_list(state, id, &ids, &left, &err) == 0);
	CHECKF(left == 0, "%zu spool entries left", left);
	sbx_spool_list_free(ids, left);
	sbx_store_msgs_free(v, nv);
	free(seen);
	sbx_store_close(&st);
}

TEST(import_crash_before_commit)
{
	char id[SBX_ID_HEX];

	new_mailbox(id);
	spool_n(id, NSPOOL);
	import_and_die(id, "appended", 10, 2);   /* mid-batch, before its commit */
	verify_all_once(id, NSPOOL);
}

TEST(import_crash_after_commit_before_unlink)
{
	char id[SBX_ID_HEX];

	new_mailbox(id);
	spool_n(id, NSPOOL);
	import_and_die(id, "committed", SBX_IMPORT_BATCH, 2);
	verify_all_once(id, NSPOOL);
}

TEST(import_crash_before_segment_removed)
{
	char id[SBX_ID_HEX];

	new_mailbox(id);
	spool_n(id, NSPOOL);
	import_and_die(id, "segment", 0, 1);   /* all committed, segment still there */
	verify_all_once(id, NSPOOL);
}

/* A crash after the claim and a first batch; more mail arrives meanwhile
 * into a fresh journal: the next import takes both segments. */
TEST(import_crash_then_more_mail)
{
	char id[SBX_ID_HEX];

	new_mailbox(id);
	spool_n(id, NSPOOL - 20);
	import_and_die(id, "committed", SBX_IMPORT_BATCH, 1);
	spool_from(id, NSPOOL - 20, 20);
	verify_all_once(id, NSPOOL);
}

TEST(import_damaged_record_kept)
{
	char id[SBX_ID_HEX], *err = NULL, *path, *cmd;
	struct sbx_spool_scan *sc = NULL;
	struct sbx_spool_rec rec;
	struct sbx_store *st;
	struct sbx_import_stats stats;
	uint64_t off = 0;
	size_t n = 0;
	int fd;

	new_mailbox(id);
	spool_n(id, 3);
	path = sbx_xasprintf("%s/spool/%s/journal", state, id);
	CHECK(sbx_spool_scan_open(path, &sc, &err) == 0);
	while (sc != NULL && sbx_spool_scan_next(sc, &rec, &err) == 1)
		if (++n == 2)
			off = rec.offset + 200;   /* inside the second record's entry */
	sbx_spool_scan_close(&sc);
	CHECK(n == 3 && off > 0);
	fd = open(path, O_WRONLY);
	CHECK(fd >= 0 && pwrite(fd, "XXXX", 4, (off_t)off) == 4);
	close(fd);
	st = open_store(id);
	CHECK(st != NULL);
	if (st == NULL)
		return;
	CHECK(sbx_spool_import(state, id, keys, st, 1 << 20, &stats, &err) == 0);
	CHECKF(stats.imported == 2 && stats.damaged == 1, "imported %zu damaged %zu",
	       stats.imported, stats.damaged);
	/* the segment is kept for the admin, not imported again */
	cmd = sbx_xasprintf("ls '%s/spool/%s' | grep -q '^damaged\\.'", state, id);
	CHECK(system(cmd) == 0);
	CHECK(access(path, F_OK) < 0);
	CHECK(sbx_spool_import(state, id, keys, st, 1 << 20, &stats, &err) == 0);
	CHECK(stats.imported == 0 && stats.damaged == 0);
	sbx_store_close(&st);
	free(cmd);
	free(path);
}

TEST(no_plaintext_under_state_dir)
{
	char *cmd = sbx_xasprintf("grep -r -a -l SEALBOX-STORE-MARKER '%s' >/dev/null 2>&1", state);
	char *cmd2 = sbx_xasprintf("grep -r -a -l 'Subject: message' '%s' >/dev/null 2>&1", state);

	/* grep exits 1 when nothing matched anywhere. */
	CHECK(WEXITSTATUS(system(cmd)) == 1);
	CHECK(WEXITSTATUS(system(cmd2)) == 1);
	free(cmd);
	free(cmd2);
}

TEST(mbox_round_trip)
{
	static const char *msgs[] = {
		"Subject: a\n\nFrom here\n>From there\n",
		"Subject: b\r\n\r\nCRLF body\r\nFrom x\r\n",
		"",
		"no newline at end",
	};
	struct sbx_buf out = { 0 }, m = { 0 };
	size_t pos = 0, i;
	time_t date = 0;
	char *err = NULL;

	for (i = 0; i < 4; i++)
		sbx_mbox_write(&out, "s@example.org", 1764070309, msgs[i], strlen(msgs[i]));
	for (i = 0; i < 4; i++) {
		CHECK(sbx_mbox_next(out.data, out.len, &pos, 1 << 20, &m, &date, &err) == 1);
		CHECK(date == 1764070309);
		if (i < 2)
			CHECKF(m.len == strlen(msgs[i]) && memcmp(m.data, msgs[i], m.len) == 0, "message %zu", i);
		else if (i == 3)
			CHECK(m.len == strlen(msgs[i]) + 1 && m.data[m.len - 1] == '\n');
	}
	CHECK(sbx_mbox_next(out.data, out.len, &pos, 1 << 20, &m, &date, &err) == 0);
	pos = 0;
	CHECK(sbx_mbox_next("garbage", 7, &pos, 1 << 20, &m, &date, &err) == -1);
	free(err);
	sbx_buf_free(&out);
	sbx_buf_free(&m);
}

int
main(void)
{
	char tmpl[] = "/tmp/sbx-store-XXXXXX", *cmd;

	if (sbx_keys_init() < 0 || mkdtemp(tmpl) == NULL)
		return 2;
	sbx_log_set_level(LOG_ERR);
	snprintf(state, sizeof(state), "%s", tmpl);
	keys = sbx_keys_generate();

	RUN(create_has_default_folders);
	RUN(append_fetch_byte_exact_and_exactly_once);
	RUN(wrong_key_and_newer_schema_refused);
	RUN(import_crash_before_commit);
	RUN(import_crash_after_commit_before_unlink);
	RUN(import_crash_before_segment_removed);
	RUN(import_crash_then_more_mail);
	RUN(import_damaged_record_kept);
	RUN(no_plaintext_under_state_dir);
	RUN(mbox_round_trip);

	sbx_keys_free(&keys);
	cmd = sbx_xasprintf("rm -rf '%s'", state);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", state);
	free(cmd);
	return tap_done();
}
