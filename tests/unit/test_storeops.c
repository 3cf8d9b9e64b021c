/*
 * test_storeops.c - the IMAP-ready store of schema 2: migration from the
 * foundation schema, byte-exact round trip and stored structure of every
 * corpus message, attachment de-duplication and its reference counts,
 * flags/keywords/MODSEQ (CONDSTORE), expunge and tombstones, copy and
 * move, folders, status, \Recent claims, sections, and the durability
 * setting each kind of commit runs with.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "keys.h"
#include "log.h"
#include "mime.h"
#include "store.h"
#include "tap.h"
#include "util.h"
#include "vfs.h"

#ifndef MIME_DIR
#define MIME_DIR "tests/data/mime"
#endif

static char dir[256];
static unsigned char vkey[32];
static int counter;

/* A fresh encrypted store at the current schema. */
static struct sbx_store *
new_store(void)
{
	struct sbx_store *st = NULL;
	char *path = sbx_xasprintf("%s/m%d.sqlite", dir, counter++), *err = NULL;

	if (sbx_store_create_path(path, vkey, 0, &err) < 0 ||
	    sbx_store_open_path(path, vkey, 0, &st, &err) < 0) {
		printf("# store: %s\n", err);
		free(err);
	}
	free(path);
	return st;
}

static int64_t
q_int(struct sbx_store *st, const char *sql)
{
	sqlite3_stmt *s;
	int64_t v = -1;

	if (sqlite3_prepare_v2(sbx_store_db(st), sql, -1, &s, NULL) != SQLITE_OK)
		return -2;
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static uint32_t
append(struct sbx_store *st, const char *folder, const char *msg, unsigned flags, const char *kw)
{
	uint32_t uid = 0;
	char *err = NULL;

	if (sbx_store_append(st, folder, msg, strlen(msg), 1764070309, flags, kw, NULL, &uid, &err) < 0) {
		printf("# append: %s\n", err);
		free(err);
	}
	return uid;
}

static const char simple[] =
	"From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: hello\r\n"
	"Date: Tue, 24 Nov 2026 10:00:00 +0100\r\nMessage-ID: <m1@example.org>\r\n\r\nbody text\r\n";

/* A message whose attachment is 64 KiB of base64 of pseudo-random bytes
 * seeded by `seed`; `tag` changes the headers and text only. */
static char *
with_attachment(int seed, const char *tag)
{
	struct sbx_buf b = { 0 };
	unsigned char raw[48];
	char line[80];
	int i, j;

	sbx_buf_appendf(&b, "From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\n"
			"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
			"--XX\r\nContent-Type: text/plain\r\n\r\nsee attached, %s\r\n"
			"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
			"Content-Disposition: attachment; filename=\"a.bin\"\r\n\r\n", tag, tag);
	for (i = 0; i < 1400; i++) {
		for (j = 0; j < 48; j++)
			raw[j] = (unsigned char)((i * 131 + j * 7 + seed * 17) ^ (i >> 3));
		sodium_bin2base64(line, sizeof(line), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
		sbx_buf_appendf(&b, "%s\r\n", line);
	}
	sbx_buf_appendf(&b, "--XX--\r\n");
	sbx_buf_append(&b, "", 1);
	return b.data;
}

static int
raw_equals(struct sbx_store *st, const char *folder, uint32_t uid, const char *want, size_t wlen)
{
	char *data = NULL, *err = NULL;
	size_t len = 0;
	int ok;

	if (sbx_store_fetch_raw(st, folder, uid, &data, &len, &err) < 0) {
		printf("# fetch %s %u: %s\n", folder, uid, err);
		free(err);
		return 0;
	}
	ok = len == wlen && memcmp(data, want, len) == 0;
	free(data);
	return ok;
}

TEST(migration_from_schema_1)
{
	char *path = sbx_xasprintf("%s/v1.sqlite", dir), *err = NULL, *att = with_attachment(1, "v1");
	struct sbx_store *st = NULL;
	struct sbx_store_msg *v = NULL;
	struct sbx_store_info info;
	sqlite3 *db = NULL;
	sqlite3_stmt *s;
	size_t n = 0;

	CHECK(sbx_store_create_path(path, vkey, 1, &err) == 0);
	/* Write two messages the way the foundation's store did. */
	CHECK(sbx_store_open_path(path, vkey, SBX_STORE_RDONLY, &st, &err) < 0);
	CHECKF(err && strstr(err, "needs a migration"), "%s", err ? err : "");
	free(err);
	err = NULL;
	CHECK(sbx_vfs_open_db(path, vkey, SQLITE_OPEN_READWRITE, &db, &err) == SQLITE_OK);
	CHECK(sqlite3_prepare_v2(db, "INSERT INTO messages(folder_id, uid, flags, internaldate, size, raw) "
				 "VALUES (1, ?, ?, '2026-01-02T03:04:05Z', ?, ?)", -1, &s, NULL) == SQLITE_OK);
	sqlite3_bind_int(s, 1, 1);
	sqlite3_bind_int(s, 2, SBX_FLAG_SEEN);
	sqlite3_bind_int(s, 3, (int)strlen(simple));
	sqlite3_bind_blob(s, 4, simple, (int)strlen(simple), SQLITE_STATIC);
	CHECK(sqlite3_step(s) == SQLITE_DONE);
	sqlite3_reset(s);
	sqlite3_bind_int(s, 1, 2);
	sqlite3_bind_int(s, 2, 0);
	sqlite3_bind_int(s, 3, (int)strlen(att));
	sqlite3_bind_blob(s, 4, att, (int)strlen(att), SQLITE_STATIC);
	CHECK(sqlite3_step(s) == SQLITE_DONE);
	sqlite3_finalize(s);
	CHECK(sqlite3_exec(db, "UPDATE folders SET uidnext = 3 WHERE id = 1", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);

	CHECK(sbx_store_open_path(path, vkey, 0, &st, &err) == 0);
	if (st == NULL) {
		printf("# %s\n", err);
		free(err);
		free(path);
		free(att);
		return;
	}
	CHECK(q_int(st, "PRAGMA user_version") == SBX_STORE_SCHEMA_VERSION);
	CHECK(q_int(st, "SELECT count(*) FROM sqlite_master WHERE name = 'messages_v1'") == 0);
	CHECK(sbx_store_list(st, "INBOX", 0, &v, &n, &err) == 0);
	CHECK(n == 2);
	if (n == 2) {
		CHECK(v[0].uid == 1 && v[0].flags == SBX_FLAG_SEEN && v[0].modseq == 1);
		CHECK(strcmp(v[0].internaldate, "2026-01-02T03:04:05Z") == 0);
		CHECK(v[1].uid == 2 && strcmp(v[1].keywords, "") == 0);
	}
	sbx_store_msgs_free(v, n);
	CHECK(raw_equals(st, "INBOX", 1, simple, strlen(simple)));
	CHECK(raw_equals(st, "INBOX", 2, att, strlen(att)));
	CHECK(q_int(st, "SELECT count(*) FROM parts") == 1);
	CHECK(sbx_store_fetch_info(st, "INBOX", 1, &info, &err) == 0);
	CHECK(info.envelope && strstr(info.envelope, "\"hello\""));
	CHECK(info.message_id && strcmp(info.message_id, "<m1@example.org>") == 0);
	sbx_store_info_free(&info);
	/* new appends continue the UIDs */
	CHECK(append(st, "INBOX", simple, 0, NULL) == 3);
	sbx_store_close(&st);
	free(path);
	free(att);
}

TEST(corpus_round_trip_and_structure)
{
	struct sbx_store *st = new_store();
	DIR *d = opendir(MIME_DIR);
	struct dirent *de;
	int count = 0, bad = 0;

	CHECK(st != NULL && d != NULL);
	if (st == NULL || d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		size_t nl = strlen(de->d_name);
		char *path, *data = NULL, *err = NULL;
		size_t len;
		uint32_t uid = 0;
		struct sbx_mime_info mi;
		struct sbx_store_info info;

		if (nl < 5 || strcmp(de->d_name + nl - 4, ".eml") != 0)
			continue;
		path = sbx_xasprintf("%s/%s", MIME_DIR, de->d_name);
		if (sbx_read_file(path, 1 << 24, &data, &len) < 0) {
			bad++;
			free(path);
			continue;
		}
		count++;
		if (sbx_store_append(st, "INBOX", data, len, 1764070309, 0, NULL, NULL, &uid, &err) < 0 ||
		    !raw_equals(st, "INBOX", uid, data, len)) {
			printf("# %s: round trip failed %s\n", de->d_name, err ? err : "");
			bad++;
		} else if (sbx_mime_parse(data, len, &mi, &err) == 0) {
			if (sbx_store_fetch_info(st, "INBOX", uid, &info, &err) < 0 ||
			    strcmp(info.envelope, mi.envelope) != 0 ||
			    strcmp(info.bodystructure, mi.bodystructure) != 0 ||
			    strcmp(info.body, mi.body) != 0 || info.size != mi.size) {
				printf("# %s: stored structure differs\n", de->d_name);
				bad++;
			}
			sbx_store_info_free(&info);
			sbx_mime_info_free(&mi);
		}
		free(err);
		free(data);
		free(path);
	}
	closedir(d);
	CHECKF(count >= 40, "only %d corpus messages", count);
	CHECKF(bad == 0, "%d of %d corpus messages failed", bad, count);
	sbx_store_close(&st);
}

TEST(dedup_one_copy_freed_after_both_expunged)
{
	struct sbx_store *st = new_store();
	char *a = with_attachment(7, "first"), *b = with_attachment(7, "second, different text");
	char *c = with_attachment(8, "third");
	struct sbx_store_result r;
	struct sbx_uid_range one = { 1, 1 }, two = { 2, 2 }, all = { 1, UINT32_MAX };
	char *err = NULL;
	int64_t size_one;

	if (st == NULL)
		return;
	CHECK(append(st, "INBOX", a, 0, NULL) == 1);
	size_one = q_int(st, "SELECT sum(length(data)) FROM parts");
	CHECK(size_one > 60000);
	CHECK(append(st, "INBOX", b, 0, NULL) == 2);
	CHECK(q_int(st, "SELECT count(*) FROM parts") == 1);
	CHECK(q_int(st, "SELECT refs FROM parts") == 2);
	CHECK(q_int(st, "SELECT sum(length(data)) FROM parts") == size_one);
	CHECK(q_int(st, "SELECT max(length(rest)) FROM contents") < 1024);
	CHECK(raw_equals(st, "INBOX", 1, a, strlen(a)));
	CHECK(raw_equals(st, "INBOX", 2, b, strlen(b)));
	/* a different attachment is a second part */
	CHECK(append(st, "Trash", c, 0, NULL) == 1);
	CHECK(q_int(st, "SELECT count(*) FROM parts") == 2);
	/* COPY shares the content: no new contents or parts row */
	CHECK(sbx_store_copy(st, "INBOX", &two, 1, "Archive", 0, &r, &err) == 0);
	sbx_store_result_free(&r);
	CHECK(q_int(st, "SELECT count(*) FROM contents") == 3);
	CHECK(q_int(st, "SELECT refs FROM contents WHERE id = 2") == 2);
	CHECK(raw_equals(st, "Archive", 1, b, strlen(b)));

	CHECK(sbx_store_expunge(st, "INBOX", &one, 1, 0, &r, &err) == 0);
	CHECK(r.n == 1 && r.uids[0] == 1);
	sbx_store_result_free(&r);
	CHECK(q_int(st, "SELECT refs FROM parts WHERE refs > 0 ORDER BY id LIMIT 1") == 1);
	CHECK(raw_equals(st, "INBOX", 2, b, strlen(b)));
	CHECK(sbx_store_expunge(st, "INBOX", &two, 1, 0, &r, &err) == 0);
	sbx_store_result_free(&r);
	/* still referenced by the copy in Archive */
	CHECK(q_int(st, "SELECT count(*) FROM parts") == 2);
	CHECK(sbx_store_expunge(st, "Archive", &all, 1, 0, &r, &err) == 0);
	sbx_store_result_free(&r);
	CHECK(q_int(st, "SELECT count(*) FROM parts") == 1);
	CHECK(q_int(st, "SELECT count(*) FROM contents") == 1);
	CHECK(q_int(st, "SELECT count(*) FROM content_parts") == 1);
	CHECK(q_int(st, "SELECT count(*) FROM fts") == 1);
	/* deleting a folder frees its messages the same way */
	CHECK(sbx_store_folder_create(st, "Gone", &err) == 0);
	CHECK(sbx_store_copy(st, "Trash", &all, 1, "Gone", 1, &r, &err) == 0);
	sbx_store_result_free(&r);
	CHECK(sbx_store_folder_delete(st, "Gone", &err) == 0);
	CHECK(q_int(st, "SELECT count(*) FROM parts") == 0);
	CHECK(q_int(st, "SELECT count(*) FROM contents") == 0);
	CHECK(q_int(st, "SELECT count(*) FROM fts") == 0);
	CHECK(q_int(st, "SELECT count(*) FROM messages") == 0);
	sbx_store_close(&st);
	free(a);
	free(b);
	free(c);
}

TEST(flags_keywords_modseq)
{
	struct sbx_store *st = new_store();
	struct sbx_store_result r;
	struct sbx_store_msg *v = NULL, *ch = NULL;
	struct sbx_uid_range all = { 1, UINT32_MAX }, first = { 1, 1 };
	uint32_t *ex = NULL;
	size_t n = 0, nch = 0, nex = 0;
	char *err = NULL, *kw = NULL;
	uint64_t m0;

	if (st == NULL)
		return;
	CHECK(append(st, "INBOX", simple, SBX_FLAG_SEEN, "$Forwarded Work work") == 1);
	CHECK(append(st, "INBOX", simple, 0, NULL) == 2);
	CHECK(sbx_store_list(st, "INBOX", 0, &v, &n, &err) == 0);
	CHECK(n == 2 && strcmp(v[0].keywords, "$Forwarded Work") == 0 && v[1].modseq > v[0].modseq);
	m0 = n == 2 ? v[1].modseq : 0;
	sbx_store_msgs_free(v, n);

	CHECK(sbx_store_store(st, "INBOX", &all, 1, SBX_STORE_ADD, SBX_FLAG_FLAGGED, "Todo", 0, &r, &err) == 0);
	CHECK(r.n == 2 && r.modseq == m0 + 1);
	sbx_store_result_free(&r);
	/* nothing changes: no new MODSEQ, nothing reported */
	CHECK(sbx_store_store(st, "INBOX", &all, 1, SBX_STORE_ADD, SBX_FLAG_FLAGGED, "todo", 0, &r, &err) == 0);
	CHECK(r.n == 0 && r.modseq == m0 + 1);
	sbx_store_result_free(&r);
	CHECK(sbx_store_store(st, "INBOX", &first, 1, SBX_STORE_REMOVE, SBX_FLAG_SEEN, "work", 0, &r, &err) == 0);
	CHECK(r.n == 1 && r.uids[0] == 1 && r.modseq == m0 + 2);
	sbx_store_result_free(&r);
	CHECK(sbx_store_list(st, "INBOX", 0, &v, &n, &err) == 0);
	if (n == 2) {
		CHECK(v[0].flags == SBX_FLAG_FLAGGED);
		CHECKF(strcmp(v[0].keywords, "$Forwarded Todo") == 0, "keywords '%s'", v[0].keywords);
		CHECK(v[1].flags == SBX_FLAG_FLAGGED && strcmp(v[1].keywords, "Todo") == 0);
		CHECK(v[0].modseq == m0 + 2 && v[1].modseq == m0 + 1);
	}
	sbx_store_msgs_free(v, n);
	/* CONDSTORE: UID 1 changed after m0 + 1, so it fails; UID 2 is set */
	CHECK(sbx_store_store(st, "INBOX", &all, 1, SBX_STORE_SET, SBX_FLAG_ANSWERED, NULL, m0 + 1, &r, &err) == 0);
	CHECK(r.nfailed == 1 && r.failed[0] == 1 && r.n == 1 && r.uids[0] == 2);
	sbx_store_result_free(&r);
	CHECK(sbx_store_changes(st, "INBOX", m0 + 2, &ch, &nch, &ex, &nex, &err) == 0);
	CHECK(nch == 1 && ch[0].uid == 2 && ch[0].flags == SBX_FLAG_ANSWERED && strcmp(ch[0].keywords, "") == 0);
	CHECK(nex == 0);
	sbx_store_msgs_free(ch, nch);
	free(ex);
	CHECK(sbx_store_folder_keywords(st, "INBOX", &kw, &err) == 0);
	CHECKF(kw && strcmp(kw, "$Forwarded Todo Work") == 0, "folder keywords '%s'", kw ? kw : "");
	free(kw);
	/* bad keywords and flags are refused and change nothing */
	CHECK(sbx_store_store(st, "INBOX", &all, 1, SBX_STORE_ADD, 0, "ok bad(kw", 0, &r, &err) < 0);
	CHECKF(err && strstr(err, "invalid keyword"), "%s", err ? err : "");
	free(err);
	err = NULL;
	CHECK(sbx_store_store(st, "INBOX", &all, 1, SBX_STORE_ADD, 0, "\\Seen", 0, &r, &err) < 0);
	free(err);
	err = NULL;
	CHECK(sbx_store_store(st, "INBOX", &all, 1, SBX_STORE_ADD, 0x100, NULL, 0, &r, &err) < 0);
	free(err);
	err = NULL;
	CHECK(sbx_store_append(st, "INBOX", "x", 1, 0, 0, "a\x01", NULL, NULL, &err) < 0);
	free(err);
	err = NULL;
	CHECK(q_int(st, "SELECT count(*) FROM messages") == 2);
	CHECK(q_int(st, "SELECT highestmodseq FROM folders WHERE name = 'INBOX'") == (int64_t)m0 + 3);
	/* flag commits run with NORMAL, and FULL is back afterwards */
	CHECK(q_int(st, "PRAGMA synchronous") == 2);
	sbx_store_close(&st);
}

TEST(keyword_limit)
{
	struct sbx_store *st = new_store();
	struct sbx_buf b = { 0 };
	char *err = NULL;
	int i;

	if (st == NULL)
		return;
	for (i = 0; i < SBX_STORE_MAX_KEYWORDS; i++)
		sbx_buf_appendf(&b, "k%d ", i);
	sbx_buf_append(&b, "", 1);
	CHECK(append(st, "INBOX", simple, 0, b.data) == 1);
	CHECK(sbx_store_append(st, "INBOX", simple, strlen(simple), 0, 0, "onemore", NULL, NULL, &err) < 0);
	CHECKF(err && strstr(err, "more than"), "%s", err ? err : "");
	free(err);
	CHECK(q_int(st, "SELECT count(*) FROM messages") == 1);
	sbx_buf_free(&b);
	sbx_store_close(&st);
}

TEST(expunge_tombstones_status)
{
	struct sbx_store *st = new_store();
	struct sbx_store_result r;
	struct sbx_store_status s;
	struct sbx_uid_range all = { 1, UINT32_MAX }, mid = { 2, 3 };
	struct sbx_store_msg *ch = NULL;
	uint32_t *ex = NULL;
	size_t nch = 0, nex = 0;
	char *err = NULL;
	uint64_t before;
	int i;

	if (st == NULL)
		return;
	for (i = 0; i < 5; i++)
		append(st, "INBOX", simple, i == 0 ? SBX_FLAG_SEEN : 0, NULL);
	CHECK(sbx_store_status(st, "INBOX", &s, &err) == 0);
	CHECK(s.messages == 5 && s.unseen == 4 && s.first_unseen_uid == 2 && s.uidnext == 6);
	CHECK(s.recent == 5 && s.size == 5 * strlen(simple));
	before = s.highestmodseq;
	CHECK(sbx_store_store(st, "INBOX", &mid, 1, SBX_STORE_ADD, SBX_FLAG_DELETED, NULL, 0, &r, &err) == 0);
	sbx_store_result_free(&r);
	/* EXPUNGE removes only \Deleted ones */
	CHECK(sbx_store_expunge(st, "INBOX", &all, 1, 1, &r, &err) == 0);
	CHECK(r.n == 2 && r.uids[0] == 2 && r.uids[1] == 3);
	sbx_store_result_free(&r);
	CHECK(sbx_store_changes(st, "INBOX", before, &ch, &nch, &ex, &nex, &err) == 0);
	CHECK(nex == 2 && ex[0] == 2 && ex[1] == 3);
	sbx_store_msgs_free(ch, nch);
	free(ex);
	CHECK(sbx_store_status(st, "INBOX", &s, &err) == 0);
	CHECK(s.messages == 3 && s.highestmodseq == before + 2 && s.uidnext == 6);
	/* expunging nothing changes nothing */
	CHECK(sbx_store_expunge(st, "INBOX", &mid, 1, 0, &r, &err) == 0);
	CHECK(r.n == 0);
	sbx_store_result_free(&r);
	CHECK(sbx_store_status(st, "INBOX", &s, &err) == 0);
	CHECK(s.highestmodseq == before + 2);
	CHECK(sbx_store_status(st, "NoSuch", &s, &err) < 0);
	free(err);
	sbx_store_close(&st);
}

TEST(recent_claimed_once)
{
	struct sbx_store *st = new_store();
	uint32_t lo = 9, hi = 9;
	char *err = NULL;

	if (st == NULL)
		return;
	append(st, "INBOX", simple, 0, NULL);
	append(st, "INBOX", simple, 0, NULL);
	CHECK(sbx_store_claim_recent(st, "INBOX", &lo, &hi, &err) == 0);
	CHECK(lo == 0 && hi == 2);
	CHECK(sbx_store_claim_recent(st, "INBOX", &lo, &hi, &err) == 0);
	CHECK(lo == hi);
	append(st, "INBOX", simple, 0, NULL);
	CHECK(sbx_store_claim_recent(st, "inbox", &lo, &hi, &err) == 0);
	CHECK(lo == 2 && hi == 3);
	sbx_store_close(&st);
}

TEST(copy_and_move)
{
	struct sbx_store *st = new_store();
	struct sbx_store_result r;
	struct sbx_uid_range set[2] = { { 1, 1 }, { 3, 4 } }, all = { 1, UINT32_MAX };
	struct sbx_store_msg *v = NULL;
	size_t n = 0;
	char *err = NULL;
	int i;

	if (st == NULL)
		return;
	for (i = 0; i < 4; i++)
		append(st, "INBOX", simple, SBX_FLAG_FLAGGED, "Kw");
	append(st, "Archive", simple, 0, NULL);
	CHECK(sbx_store_copy(st, "INBOX", set, 2, "Archive", 0, &r, &err) == 0);
	CHECK(r.n == 3 && r.uids[0] == 1 && r.uids[2] == 4 && r.new_uids[0] == 2 && r.new_uids[2] == 4);
	CHECK(r.uidvalidity != 0);
	sbx_store_result_free(&r);
	CHECK(sbx_store_list(st, "Archive", 2, &v, &n, &err) == 0);
	CHECK(n == 3 && v[0].flags == SBX_FLAG_FLAGGED && strcmp(v[0].keywords, "Kw") == 0);
	CHECK(n == 3 && strcmp(v[0].internaldate, "2025-11-25T11:31:49Z") == 0);
	sbx_store_msgs_free(v, n);
	CHECK(sbx_store_copy(st, "INBOX", set, 2, "Junk", 1, &r, &err) == 0);
	CHECK(r.n == 3 && r.new_uids[0] == 1);
	sbx_store_result_free(&r);
	CHECK(sbx_store_list(st, "INBOX", 0, &v, &n, &err) == 0);
	CHECK(n == 1 && v[0].uid == 2);
	sbx_store_msgs_free(v, n);
	CHECK(q_int(st, "SELECT count(*) FROM tombstones") == 3);
	/* errors leave everything in place */
	CHECK(sbx_store_copy(st, "INBOX", &all, 1, "NoSuch", 0, &r, &err) < 0);
	CHECK(err && strstr(err, "no such folder"));
	free(err);
	err = NULL;
	CHECK(sbx_store_copy(st, "INBOX", &all, 1, "INBOX", 1, &r, &err) < 0);
	free(err);
	err = NULL;
	CHECK(q_int(st, "SELECT count(*) FROM messages") == 8);
	/* COPY to the same folder is allowed */
	CHECK(sbx_store_copy(st, "INBOX", &all, 1, "INBOX", 0, &r, &err) == 0);
	CHECK(r.n == 1 && r.new_uids[0] == 5);
	sbx_store_result_free(&r);
	sbx_store_close(&st);
}

TEST(folders)
{
	struct sbx_store *st = new_store();
	struct sbx_store_folder *f = NULL;
	struct sbx_store_status s;
	size_t n = 0, i;
	char *err = NULL, deep[400];
	int found = 0;
	uint32_t uv_before = 0;

	if (st == NULL)
		return;
	CHECK(sbx_store_folder_create(st, "Work/2026/Q4", &err) == 0);
	CHECK(sbx_store_folder_create(st, "Work", &err) < 0);
	CHECK(err && strstr(err, "already exists"));
	free(err);
	err = NULL;
	static const char *const bad[] = { "", "/x", "x/", "a//b", "a\tb", "a*", "50%", "\xff\xfe" };
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECKF(sbx_store_folder_create(st, bad[i], &err) < 0, "name %zu accepted", i);
		free(err);
		err = NULL;
	}
	memset(deep, 0, sizeof(deep));
	for (i = 0; i < SBX_STORE_MAX_FOLDER_DEPTH + 1; i++)
		strcat(deep, i ? "/d" : "d");
	CHECK(sbx_store_folder_create(st, deep, &err) < 0);
	free(err);
	err = NULL;
	CHECK(q_int(st, "SELECT count(*) FROM folders") == 9);
	append(st, "Work/2026", simple, 0, NULL);
	CHECK(sbx_store_status(st, "Work/2026", &s, &err) == 0);
	uv_before = s.uidvalidity;
	/* rename moves children with it */
	CHECK(sbx_store_folder_rename(st, "Work", "Jobs/Old", &err) == 0);
	CHECK(sbx_store_status(st, "Jobs/Old/2026", &s, &err) == 0);
	CHECK(s.messages == 1 && s.uidvalidity == uv_before);
	CHECK(sbx_store_status(st, "Jobs/Old/2026/Q4", &s, &err) == 0);
	CHECK(sbx_store_status(st, "Work/2026", &s, &err) < 0);
	free(err);
	err = NULL;
	CHECK(sbx_store_folder_rename(st, "Jobs", "Jobs/Sub", &err) < 0);
	free(err);
	err = NULL;
	CHECK(sbx_store_folder_rename(st, "Sent", "Drafts", &err) < 0);
	free(err);
	err = NULL;
	/* delete: not with children, not INBOX */
	CHECK(sbx_store_folder_delete(st, "Jobs/Old", &err) < 0);
	CHECK(err && strstr(err, "children"));
	free(err);
	err = NULL;
	CHECK(sbx_store_folder_delete(st, "inbox", &err) < 0);
	free(err);
	err = NULL;
	CHECK(sbx_store_folder_delete(st, "Jobs/Old/2026/Q4", &err) == 0);
	/* RENAME INBOX: messages move, INBOX stays, empty */
	append(st, "INBOX", simple, 0, NULL);
	append(st, "INBOX", simple, 0, NULL);
	CHECK(sbx_store_folder_rename(st, "INBOX", "Old Inbox", &err) == 0);
	CHECK(sbx_store_status(st, "Old Inbox", &s, &err) == 0);
	CHECK(s.messages == 2 && s.uidnext == 3);
	CHECK(sbx_store_status(st, "INBOX", &s, &err) == 0);
	CHECK(s.messages == 0 && s.uidnext == 3);
	CHECK(raw_equals(st, "Old Inbox", 2, simple, strlen(simple)));
	CHECK(sbx_store_folder_subscribe(st, "Old Inbox", 0, &err) == 0);
	CHECK(sbx_store_folders(st, &f, &n, &err) == 0);
	for (i = 0; i < n; i++) {
		if (strcmp(f[i].name, "Old Inbox") == 0 && !f[i].subscribed)
			found++;
		if (strcmp(f[i].name, "Jobs/Old") == 0 && f[i].has_children)
			found++;
		if (strcmp(f[i].name, "Sent") == 0 && f[i].special_use && strcmp(f[i].special_use, "\\Sent") == 0)
			found++;
	}
	CHECK(found == 3);
	sbx_store_folders_free(f, n);
	/* UIDVALIDITY is never reused */
	CHECK(q_int(st, "SELECT count(DISTINCT uidvalidity) = count(*) FROM folders WHERE id > 6") == 1);
	free(err);
	sbx_store_close(&st);
}

TEST(sections_and_partial)
{
	struct sbx_store *st = new_store();
	char *att = with_attachment(3, "sections"), *data = NULL, *err = NULL;
	size_t len = 0;

	if (st == NULL)
		return;
	CHECK(append(st, "INBOX", att, 0, NULL) == 1);
	CHECK(sbx_store_fetch_section(st, "INBOX", 1, "", 0, 4, &data, &len, &err) == 0);
	CHECK(len == 4 && memcmp(data, "From", 4) == 0);
	free(data);
	CHECK(sbx_store_fetch_section(st, "INBOX", 1, "", strlen(att) - 4, 100, &data, &len, &err) == 0);
	CHECK(len == 4 && memcmp(data, "--\r\n", 4) == 0);
	free(data);
	CHECK(sbx_store_fetch_section(st, "INBOX", 1, "", strlen(att) + 10, 100, &data, &len, &err) == 0);
	CHECK(len == 0);
	free(data);
	CHECK(sbx_store_fetch_section(st, "INBOX", 1, "1", 0, UINT64_MAX, &data, &len, &err) == 0);
	CHECK(len == strlen("see attached, sections") && memcmp(data, "see attached, sections", len) == 0);
	free(data);
	/* the de-duplicated part comes back whole */
	CHECK(sbx_store_fetch_section(st, "INBOX", 1, "2", 0, UINT64_MAX, &data, &len, &err) == 0);
	CHECK(len > 60000 && strstr(att, data) != NULL);
	free(data);
	CHECK(sbx_store_fetch_section(st, "INBOX", 1, "2.MIME", 0, UINT64_MAX, &data, &len, &err) == 0);
	CHECK(len > 0 && strncmp(data, "Content-Type: application/octet-stream", 38) == 0);
	free(data);
	CHECK(sbx_store_fetch_section(st, "INBOX", 1, "HEADER", 0, UINT64_MAX, &data, &len, &err) == 0);
	CHECK(len > 4 && memcmp(data + len - 4, "\r\n\r\n", 4) == 0 && strstr(data, "Subject: sections"));
	free(data);
	CHECK(sbx_store_fetch_section(st, "INBOX", 1, "1.2.3.BOGUS", 0, UINT64_MAX, &data, &len, &err) < 0);
	CHECK(err && strstr(err, "section"));
	free(err);
	err = NULL;
	CHECK(sbx_store_fetch_section(st, "INBOX", 9, "", 0, UINT64_MAX, &data, &len, &err) < 0);
	free(err);
	sbx_store_close(&st);
	free(att);
}

TEST(read_only_refuses_writes)
{
	char *path = sbx_xasprintf("%s/ro.sqlite", dir), *err = NULL;
	struct sbx_store *st = NULL;
	struct sbx_store_result r;
	struct sbx_uid_range all = { 1, UINT32_MAX };

	CHECK(sbx_store_create_path(path, vkey, 0, &err) == 0);
	CHECK(sbx_store_open_path(path, vkey, SBX_STORE_RDONLY, &st, &err) == 0);
	if (st != NULL) {
		CHECK(sbx_store_append(st, "INBOX", "x", 1, 0, 0, NULL, NULL, NULL, &err) < 0);
		CHECK(err && strstr(err, "read-only"));
		free(err);
		err = NULL;
		CHECK(sbx_store_store(st, "INBOX", &all, 1, SBX_STORE_ADD, SBX_FLAG_SEEN, NULL, 0, &r, &err) < 0);
		free(err);
		err = NULL;
		CHECK(sbx_store_folder_create(st, "X", &err) < 0);
		free(err);
		sbx_store_close(&st);
	}
	free(path);
}

TEST(plain_peer_for_benchmarks)
{
	char *path = sbx_xasprintf("%s/plain.sqlite", dir), *err = NULL, *data = NULL;
	struct sbx_store *st = NULL;
	size_t len = 0;
	FILE *fp;
	char magic[16] = { 0 };

	CHECK(sbx_store_create_path(path, NULL, 0, &err) == 0);
	CHECK(sbx_store_open_path(path, NULL, 0, &st, &err) == 0);
	if (st != NULL) {
		CHECK(append(st, "INBOX", simple, 0, NULL) == 1);
		CHECK(sbx_store_fetch_raw(st, "INBOX", 1, &data, &len, &err) == 0);
		free(data);
		sbx_store_close(&st);
	}
	/* a plain file really is plain, and an encrypted one is not */
	fp = fopen(path, "rb");
	CHECK(fp != NULL && fread(magic, 1, 15, fp) == 15 && strcmp(magic, "SQLite format 3") == 0);
	if (fp)
		fclose(fp);
	free(path);
	path = sbx_xasprintf("%s/m0.sqlite", dir);
	fp = fopen(path, "rb");
	memset(magic, 0, sizeof(magic));
	CHECK(fp != NULL && fread(magic, 1, 15, fp) == 15 && strcmp(magic, "SQLite format 3") != 0);
	if (fp)
		fclose(fp);
	free(path);
}

int
main(void)
{
	char tmpl[] = "/tmp/sbx-storeops-XXXXXX", *cmd;

	if (sbx_keys_init() < 0 || mkdtemp(tmpl) == NULL)
		return 2;
	sbx_log_set_level(LOG_ERR);
	snprintf(dir, sizeof(dir), "%s", tmpl);
	randombytes_buf(vkey, sizeof(vkey));

	RUN(corpus_round_trip_and_structure);
	RUN(migration_from_schema_1);
	RUN(dedup_one_copy_freed_after_both_expunged);
	RUN(flags_keywords_modseq);
	RUN(keyword_limit);
	RUN(expunge_tombstones_status);
	RUN(recent_claimed_once);
	RUN(copy_and_move);
	RUN(folders);
	RUN(sections_and_partial);
	RUN(read_only_refuses_writes);
	RUN(plain_peer_for_benchmarks);

	cmd = sbx_xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", dir);
	free(cmd);
	return tap_done();
}
