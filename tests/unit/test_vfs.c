/*
 * test_vfs.c - the encrypted VFS: round trip, no plaintext on disk, wrong
 * key, crash recovery, tamper detection, WAL damage, truncation, VACUUM INTO.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "tap.h"
#include "util.h"
#include "log.h"
#include "vfs.h"

#define MARKER "SEALBOX-MARKER-7f3a9c"

static char tmpdir[256];
static unsigned char key1[32], key2[32];

static char *
path_in(const char *name)
{
	return sbx_xasprintf("%s/%s", tmpdir, name);
}

static sqlite3 *
open_db(const char *path, const unsigned char *key, int *rc_r, char **err_r)
{
	sqlite3 *db = NULL;
	char *err = NULL;
	int rc = sbx_vfs_open_db(path, key, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &db, &err);

	if (rc_r)
		*rc_r = rc;
	if (err_r)
		*err_r = err;
	else
		free(err);
	return db;
}

static int
exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		printf("# sql error %d (%s): %s [vfs: %s]\n", rc, sql, err ? err : "", sbx_vfs_last_error());
		sqlite3_free(err);
	}
	return rc;
}

static sqlite3_int64
query_int(sqlite3 *db, const char *sql, int *rc_r)
{
	sqlite3_stmt *st;
	sqlite3_int64 v = -1;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			v = sqlite3_column_int64(st, 0);
			rc = SQLITE_OK;
		}
		sqlite3_finalize(st);
	}
	if (rc_r)
		*rc_r = rc;
	return v;
}

static char *
query_text(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	char *v = NULL;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
			v = sbx_xstrdup((const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
	}
	return v;
}

static int
file_contains(const char *path, const char *needle)
{
	char *data;
	size_t len;
	int found;

	if (sbx_read_file(path, (size_t)1 << 31, &data, &len) < 0)
		return 0;
	found = memmem(data, len, needle, strlen(needle)) != NULL;
	free(data);
	return found;
}

/* Returns the number of files under dir containing needle. */
static int
tree_contains(const char *dir, const char *needle, int *files_r)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int hits = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		char *p;
		struct stat st;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		p = sbx_xasprintf("%s/%s", dir, e->d_name);
		if (lstat(p, &st) == 0) {
			if (S_ISDIR(st.st_mode)) {
				hits += tree_contains(p, needle, files_r);
			} else if (S_ISREG(st.st_mode)) {
				(*files_r)++;
				hits += file_contains(p, needle);
			}
		}
		free(p);
	}
	closedir(d);
	return hits;
}

static int
copy_file(const char *from, const char *to)
{
	char *data;
	size_t len;
	int fd, rc;

	if (sbx_read_file(from, (size_t)1 << 31, &data, &len) < 0)
		return -1;
	fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		free(data);
		return -1;
	}
	rc = sbx_write_all(fd, data, len);
	close(fd);
	free(data);
	return rc;
}

static int
files_equal(const char *a, const char *b)
{
	char *da, *db;
	size_t la, lb;
	int eq;

	if (sbx_read_file(a, (size_t)1 << 31, &da, &la) < 0)
		return 0;
	if (sbx_read_file(b, (size_t)1 << 31, &db, &lb) < 0) {
		free(da);
		return 0;
	}
	eq = la == lb && memcmp(da, db, la) == 0;
	free(da);
	free(db);
	return eq;
}

static off_t
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

static void
rm_db(const char *path)
{
	char *w = sbx_xasprintf("%s-wal", path), *s = sbx_xasprintf("%s-shm", path),
	     *j = sbx_xasprintf("%s-journal", path);

	unlink(path);
	unlink(w);
	unlink(s);
	unlink(j);
	free(w);
	free(s);
	free(j);
}

/* Fill t(id, body) with n rows of ~300..2000 bytes containing MARKER. */
static int
fill(sqlite3 *db, int n, int per_tx)
{
	sqlite3_stmt *st;
	char body[2100];
	int i, rc = SQLITE_OK;

	if (exec(db, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, body TEXT)") != SQLITE_OK)
		return -1;
	if (sqlite3_prepare_v2(db, "INSERT INTO t(body) VALUES (?)", -1, &st, NULL) != SQLITE_OK)
		return -1;
	for (i = 0; i < n && rc == SQLITE_OK; i++) {
		int len = 300 + (int)(((unsigned)i * 2654435761u) % 1700), k;

		if (i % per_tx == 0)
			exec(db, "BEGIN");
		for (k = 0; k < len; k++)
			body[k] = (char)('a' + (i + k) % 26);
		memcpy(body + (len / 2), MARKER, strlen(MARKER));
		body[len] = '\0';
		sqlite3_bind_text(st, 1, body, len, SQLITE_STATIC);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
		sqlite3_reset(st);
		if (i % per_tx == per_tx - 1 || i == n - 1)
			exec(db, "COMMIT");
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? 0 : -1;
}

TEST(version_gate)
{
	char *err = NULL;

	CHECK(sbx_vfs_version_tested(3040001));
	CHECK(!sbx_vfs_version_tested(3040002));
	CHECK(!sbx_vfs_version_tested(3045000));
	CHECK(!sbx_vfs_version_tested(0));
	CHECK(sbx_vfs_register(&err) == 0);
	free(err);
}

TEST(round_trip_100k_and_no_plaintext)
{
	char *p = path_in("big.sqlite"), *w = sbx_xasprintf("%s-wal", p), *s = sbx_xasprintf("%s-shm", p);
	sqlite3 *db = open_db(p, key1, NULL, NULL);
	char *ic;
	int rc, files = 0;

	CHECK(db != NULL);
	if (db == NULL)
		return;
	CHECK(exec(db, "PRAGMA journal_mode=WAL") == SQLITE_OK);
	CHECK(fill(db, 100000, 100) == 0);
	CHECK(query_int(db, "SELECT count(*) FROM t", &rc) == 100000);
	/* While open: db, WAL and shm hold no marker. */
	CHECK(file_size(w) > 0);
	CHECK(!file_contains(p, MARKER));
	CHECK(!file_contains(w, MARKER));
	CHECK(!file_contains(s, MARKER));
	/* An index build over 100k rows sorts in memory, never in a temp file
	 * (the VFS refuses temp files, so this would fail otherwise). */
	CHECK(exec(db, "CREATE INDEX t_body ON t(body)") == SQLITE_OK);
	sqlite3_close(db);

	db = open_db(p, key1, NULL, NULL);
	CHECK(db != NULL);
	if (db != NULL) {
		ic = query_text(db, "PRAGMA integrity_check");
		CHECKF(ic && strcmp(ic, "ok") == 0, "integrity_check: %s", ic ? ic : "(null)");
		free(ic);
		CHECK(query_int(db, "SELECT count(*) FROM t WHERE instr(body, '" MARKER "') > 0", &rc) == 100000);
		CHECK(query_int(db, "SELECT sum(length(body)) FROM t", &rc) > 100000 * 300);
		CHECK(query_int(db, "PRAGMA page_size", &rc) == 4096);
		sqlite3_close(db);
	}
	CHECK(file_size(p) > 4096 * 1000);
	CHECKF(tree_contains(tmpdir, MARKER, &files) == 0, "marker found under %s", tmpdir);
	CHECK(files >= 1);
	/* A marker must be findable when it is there: the check can fail. */
	{
		char *plain = path_in("plain.txt");
		int fd = open(plain, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		CHECK(fd >= 0 && sbx_write_all(fd, MARKER, strlen(MARKER)) == 0);
		close(fd);
		files = 0;
		CHECK(tree_contains(tmpdir, MARKER, &files) == 1);
		unlink(plain);
		free(plain);
	}
	free(w);
	free(s);
	free(p);
}

TEST(wrong_key_leaves_wal_identical_and_crash_image_recovers)
{
	char *p = path_in("crash.sqlite"), *w = sbx_xasprintf("%s-wal", p),
	     *wcopy = path_in("crash.wal.copy"), *err = NULL;
	pid_t pid;
	int status, rc;
	sqlite3 *db;

	rm_db(p);
	pid = fork();
	if (pid == 0) {
		db = open_db(p, key1, NULL, NULL);
		if (db == NULL)
			_exit(2);
		exec(db, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; PRAGMA synchronous=FULL");
		if (fill(db, 5000, 50) != 0)
			_exit(3);
		_exit(0);   /* no clean close: db + WAL is a crash image */
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(file_size(w) > 100000);
	CHECK(copy_file(w, wcopy) == 0);

	db = open_db(p, key2, &rc, &err);
	CHECK(db == NULL);
	CHECK(rc == SQLITE_NOTADB);
	CHECKF(err && strstr(err, "wrong key"), "error was: %s", err ? err : "(null)");
	free(err);
	err = NULL;
	CHECK(files_equal(w, wcopy));
	/* Opening read-only with the wrong key must not touch it either. */
	{
		sqlite3 *ro = NULL;

		rc = sbx_vfs_open_db(p, key2, SQLITE_OPEN_READONLY, &ro, &err);
		CHECK(rc != SQLITE_OK && ro == NULL);
		free(err);
		err = NULL;
	}
	CHECK(files_equal(w, wcopy));

	db = open_db(p, key1, &rc, NULL);
	CHECK(db != NULL);
	if (db != NULL) {
		char *ic = query_text(db, "PRAGMA integrity_check");

		CHECK(query_int(db, "SELECT count(*) FROM t", &rc) == 5000);
		CHECKF(ic && strcmp(ic, "ok") == 0, "integrity_check: %s", ic ? ic : "(null)");
		free(ic);
		sqlite3_close(db);
	}
	free(p);
	free(w);
	free(wcopy);
}

TEST(damaged_wal_frame_drops_it_and_later_frames)
{
	char *p = path_in("walflip.sqlite"), *w = sbx_xasprintf("%s-wal", p);
	pid_t pid;
	int status, rc, fd, i;
	sqlite3 *db;
	off_t wsize;

	rm_db(p);
	pid = fork();
	if (pid == 0) {
		db = open_db(p, key1, NULL, NULL);
		if (db == NULL)
			_exit(2);
		exec(db, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
			 "CREATE TABLE k(v INTEGER); PRAGMA wal_checkpoint(TRUNCATE)");
		/* 10 transactions of one row each: frames 1..10 hold page 2. */
		for (i = 1; i <= 10; i++) {
			char *sql = sbx_xasprintf("INSERT INTO k VALUES (%d)", i);

			exec(db, sql);
			free(sql);
		}
		_exit(0);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	wsize = file_size(w);
	CHECKF(wsize == 32 + 10 * (4096 + 24), "wal size %lld", (long long)wsize);
	/* Flip one byte inside the page of frame 6. */
	fd = open(w, O_RDWR);
	CHECK(fd >= 0);
	if (fd >= 0) {
		unsigned char b;
		off_t off = 32 + 5 * (4096 + 24) + 24 + 1000;

		CHECK(pread(fd, &b, 1, off) == 1);
		b ^= 0x01;
		CHECK(pwrite(fd, &b, 1, off) == 1);
		close(fd);
	}
	db = open_db(p, key1, &rc, NULL);
	CHECK(db != NULL);
	if (db != NULL) {
		CHECK(query_int(db, "SELECT count(*) FROM k", &rc) == 5);
		CHECK(query_int(db, "SELECT max(v) FROM k", &rc) == 5);
		sqlite3_close(db);
	}
	free(p);
	free(w);
}

/* SQLite's WAL checksum is additions mod 2^32, so whoever edits a frame
 * header can fix the checksums without knowing the plaintext. The frame
 * header fields SQLite trusts (commit size, salts, frame position) must
 * therefore be authenticated, or a copy of the disk could be turned into a
 * database state that never existed. */
static uint32_t
be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

TEST(forged_commit_frame_rejected)
{
	char *p = path_in("forge.sqlite"), *w = sbx_xasprintf("%s-wal", p), *ic;
	unsigned char hdr[24], last[24];
	pid_t pid;
	int status, rc, fd, k = -1, first2 = -1, i, nframes;
	sqlite3 *db;
	off_t wsize;
	uint32_t s1 = 0, s2 = 0, old_nt, new_nt, delta;

	rm_db(p);
	pid = fork();
	if (pid == 0) {
		db = open_db(p, key1, NULL, NULL);
		if (db == NULL)
			_exit(2);
		exec(db, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0");
		if (fill(db, 100, 100) != 0)            /* transaction 1: 100 rows */
			_exit(3);
		exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
		if (fill(db, 100, 100) != 0 || fill(db, 300, 300) != 0)   /* 2 more */
			_exit(4);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	wsize = file_size(w);
	nframes = (int)((wsize - 32) / (4096 + 24));
	fd = open(w, O_RDWR);
	CHECK(fd >= 0 && nframes > 20);
	if (fd < 0)
		return;
	/* Find the commit frame of the first WAL transaction; the big one
	 * follows it. Forge "commit" onto a middle frame of the big one. */
	for (i = 0; i < nframes; i++) {
		if (pread(fd, hdr, 24, 32 + (off_t)i * 4120) != 24)
			break;
		if (be32(hdr + 4) != 0 && first2 < 0)
			first2 = i + 1;
	}
	CHECK(pread(fd, last, 24, 32 + (off_t)(nframes - 1) * 4120) == 24);
	k = first2 + 5;
	CHECK(first2 > 0 && k < nframes - 2);
	CHECK(pread(fd, hdr, 24, 32 + (off_t)k * 4120) == 24);
	old_nt = be32(hdr + 4);
	new_nt = be32(last + 4);                 /* the final database size */
	CHECK(old_nt == 0 && new_nt > 0);
	/* Checksum words are read in native (little-endian) order here. */
	delta = __builtin_bswap32(new_nt) - __builtin_bswap32(old_nt);
	s2 = delta;                              /* first pair: (pgno, nTruncate) */
	for (i = 0; i < 4096 / 8; i++) {         /* zero delta over the page */
		s1 += s2;
		s2 += s1;
	}
	put_be32(hdr + 4, new_nt);
	put_be32(hdr + 16, be32(hdr + 16) + s1);
	put_be32(hdr + 20, be32(hdr + 20) + s2);
	CHECK(pwrite(fd, hdr, 24, 32 + (off_t)k * 4120) == 24);
	close(fd);
	CHECK(truncate(w, 32 + (off_t)(k + 1) * 4120) == 0);

	db = open_db(p, key1, &rc, NULL);
	CHECK(db != NULL);
	if (db != NULL) {
		/* The half transaction must not appear: 100 + 100 rows, intact. */
		CHECKF(query_int(db, "SELECT count(*) FROM t", &rc) == 200, "count %lld",
		       (long long)query_int(db, "SELECT count(*) FROM t", &rc));
		ic = query_text(db, "PRAGMA integrity_check");
		CHECKF(ic && strcmp(ic, "ok") == 0, "integrity_check: %s", ic ? ic : "(null)");
		free(ic);
		sqlite3_close(db);
	}
	free(p);
	free(w);
}

/* Read every page of the main file through the shim. Returns 1 if any
 * read failed (detected), 0 if every page came back fine. */
static int
read_all_pages(sqlite3 *db)
{
	sqlite3_file *fp = NULL;
	sqlite3_int64 size = 0, off;
	unsigned char buf[4096];

	if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &fp) != SQLITE_OK || fp == NULL)
		return 1;
	if (fp->pMethods->xFileSize(fp, &size) != SQLITE_OK)
		return 1;
	for (off = 0; off < size; off += 4096)
		if (fp->pMethods->xRead(fp, buf, 4096, off) != SQLITE_OK)
			return 1;
	return 0;
}

TEST(flip_1000_bytes_each_detected)
{
	char *p = path_in("flip.sqlite");
	sqlite3 *db = NULL;
	int rc, i, fd, undetected = 0, positions = 1000;
	off_t size;
	char *err = NULL;

	rm_db(p);
	db = open_db(p, key1, NULL, NULL);
	CHECK(db != NULL);
	if (db == NULL)
		return;
	exec(db, "PRAGMA journal_mode=WAL");
	CHECK(fill(db, 600, 100) == 0);
	CHECK(exec(db, "VACUUM") == SQLITE_OK);
	CHECK(exec(db, "PRAGMA wal_checkpoint(TRUNCATE)") == SQLITE_OK);
	sqlite3_close(db);
	size = file_size(p);
	CHECK(size >= 4096 * 50 && size % 4096 == 0);
	/* The untouched file reads back clean: the detector itself works. */
	db = open_db(p, key1, &rc, NULL);
	CHECK(db != NULL && read_all_pages(db) == 0);
	sqlite3_close(db);

	fd = open(p, O_RDWR);
	CHECK(fd >= 0);
	for (i = 0; i < positions && fd >= 0; i++) {
		/* Always hit page 1's clear header, nonces and tags too. */
		off_t pos = i < 8 ? 16 + i :
			    i < 16 ? (off_t)(size - 40 + (i - 8) * 5) :
			    (off_t)randombytes_uniform((uint32_t)size);
		unsigned char b, orig;

		if (pread(fd, &orig, 1, pos) != 1)
			break;
		b = orig ^ (unsigned char)(1u << randombytes_uniform(8));
		if (pwrite(fd, &b, 1, pos) != 1)
			break;
		db = NULL;
		rc = sbx_vfs_open_db(p, key1, SQLITE_OPEN_READONLY, &db, &err);
		free(err);
		err = NULL;
		if (rc == SQLITE_OK) {
			if (read_all_pages(db) == 0) {
				undetected++;
				printf("# flip at %lld not detected\n", (long long)pos);
			}
			sqlite3_close(db);
		}
		if (pwrite(fd, &orig, 1, pos) != 1)
			break;
	}
	CHECKF(i == positions, "only %d positions tried", i);
	CHECKF(undetected == 0, "%d of %d flips not detected", undetected, positions);
	if (fd >= 0)
		close(fd);
	/* The restored file is intact again. */
	db = open_db(p, key1, &rc, NULL);
	CHECK(db != NULL && read_all_pages(db) == 0);
	sqlite3_close(db);
	free(p);
}

static sqlite3 *
make_small(const char *p, const unsigned char *key, int rows)
{
	sqlite3 *db;

	rm_db(p);
	db = open_db(p, key, NULL, NULL);
	if (db == NULL)
		return NULL;
	exec(db, "PRAGMA journal_mode=WAL");
	fill(db, rows, 100);
	exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
	return db;
}

static int
swap_pages(const char *p, int a, int b, int psz)
{
	unsigned char *x = sbx_xmalloc((size_t)psz), *y = sbx_xmalloc((size_t)psz);
	int fd = open(p, O_RDWR), ok;

	ok = fd >= 0 && pread(fd, x, (size_t)psz, (off_t)(a - 1) * psz) == psz &&
	     pread(fd, y, (size_t)psz, (off_t)(b - 1) * psz) == psz &&
	     pwrite(fd, y, (size_t)psz, (off_t)(a - 1) * psz) == psz &&
	     pwrite(fd, x, (size_t)psz, (off_t)(b - 1) * psz) == psz;
	if (fd >= 0)
		close(fd);
	free(x);
	free(y);
	return ok ? 0 : -1;
}

TEST(swapped_and_foreign_pages_detected)
{
	char *p = path_in("swap.sqlite"), *q = path_in("other.sqlite");
	sqlite3 *db;
	int rc;
	unsigned char page[4096];

	db = make_small(p, key1, 300);
	CHECK(db != NULL);
	sqlite3_close(db);
	db = make_small(q, key1, 300);   /* same key, another file id */
	CHECK(db != NULL);
	sqlite3_close(db);

	CHECK(swap_pages(p, 3, 7, 4096) == 0);
	db = open_db(p, key1, &rc, NULL);
	CHECK(db != NULL);
	if (db != NULL) {
		query_int(db, "SELECT sum(length(body)) FROM t", &rc);
		CHECKF(rc == SQLITE_IOERR_DATA || rc == SQLITE_CORRUPT, "rc %d", rc);
		CHECK(read_all_pages(db) == 1);
		sqlite3_close(db);
	}
	CHECK(swap_pages(p, 3, 7, 4096) == 0);   /* back */
	db = open_db(p, key1, &rc, NULL);
	CHECK(db != NULL && read_all_pages(db) == 0);
	sqlite3_close(db);

	/* Page 5 of the other mailbox file, same key, copied over page 5. */
	{
		int fq = open(q, O_RDONLY), fp = open(p, O_RDWR);

		CHECK(fq >= 0 && fp >= 0);
		CHECK(pread(fq, page, sizeof(page), 4 * 4096) == 4096);
		CHECK(pwrite(fp, page, sizeof(page), 4 * 4096) == 4096);
		close(fq);
		close(fp);
	}
	db = open_db(p, key1, &rc, NULL);
	CHECK(db != NULL);
	if (db != NULL) {
		query_int(db, "SELECT sum(length(body)) FROM t", &rc);
		CHECKF(rc == SQLITE_IOERR_DATA || rc == SQLITE_CORRUPT, "rc %d", rc);
		CHECK(strstr(sbx_vfs_last_error(), "page 5 failed authentication") != NULL);
		sqlite3_close(db);
	}
	free(p);
	free(q);
}

TEST(truncation_and_short_read_detected)
{
	char *p = path_in("trunc.sqlite");
	sqlite3 *db;
	int rc;
	off_t size;

	db = make_small(p, key1, 400);
	CHECK(db != NULL);
	sqlite3_close(db);
	size = file_size(p);
	CHECK(size > 4096 * 20);

	/* Cut inside the last page: a short read inside the page count. */
	CHECK(truncate(p, size - 100) == 0);
	db = open_db(p, key1, &rc, NULL);
	CHECK(db != NULL);
	if (db != NULL) {
		query_int(db, "SELECT sum(length(body)) FROM t", &rc);
		CHECKF(rc == SQLITE_IOERR_DATA, "rc %d", rc);
		CHECK(strstr(sbx_vfs_last_error(), "short read") != NULL);
		sqlite3_close(db);
	}
	/* Cut at a page boundary: the header's page count no longer matches. */
	CHECK(truncate(p, size - 4096 * 3) == 0);
	db = open_db(p, key1, &rc, NULL);
	CHECK(db != NULL);
	if (db != NULL) {
		query_int(db, "SELECT sum(length(body)) FROM t", &rc);
		CHECKF(rc == SQLITE_CORRUPT || rc == SQLITE_IOERR_DATA || (rc & 0xff) == SQLITE_CORRUPT,
		       "rc %d", rc);
		sqlite3_close(db);
	}
	/* Cut inside page 1: refused at open. */
	CHECK(truncate(p, 1000) == 0);
	db = open_db(p, key1, &rc, NULL);
	CHECK(db == NULL && rc == SQLITE_NOTADB);
	free(p);
}

TEST(plaintext_and_missing_key_refused)
{
	char *p = path_in("plain.sqlite"), *err = NULL;
	sqlite3 *db = NULL;
	int rc;

	rm_db(p);
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	exec(db, "CREATE TABLE x(a); INSERT INTO x VALUES (1)");
	sqlite3_close(db);
	db = open_db(p, key1, &rc, &err);
	CHECK(db == NULL && rc == SQLITE_NOTADB);
	CHECKF(err && strstr(err, "NOT encrypted"), "error: %s", err ? err : "(null)");
	free(err);

	/* psow=0 would split frames and journal headers: refused. */
	{
		int slot = sbx_vfs_key_add(key1);
		char *uri = sbx_xasprintf("file:%s/psow.sqlite?sbxkey=%d&psow=0", tmpdir, slot);

		db = NULL;
		rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI,
				     SBX_VFS_NAME);
		CHECK(rc != SQLITE_OK);
		CHECK(strstr(sbx_vfs_last_error(), "psow=0") != NULL);
		sqlite3_close(db);
		sbx_vfs_key_remove(slot);
		free(uri);
	}
	/* A URI naming an empty key slot is refused. */
	{
		char *uri = sbx_vfs_uri(p, 63);

		db = NULL;
		rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, SBX_VFS_NAME);
		CHECK(rc != SQLITE_OK);
		sqlite3_close(db);
		free(uri);
	}
	free(p);
}

TEST(vacuum_into_opens_with_same_key)
{
	char *p = path_in("src.sqlite"), *q = path_in("copy.sqlite"), *sql, *uri, *ic;
	sqlite3 *db;
	int rc, slot;

	rm_db(q);
	db = make_small(p, key1, 2000);
	CHECK(db != NULL);
	if (db == NULL)
		return;
	slot = sbx_vfs_key_add(key1);
	CHECK(slot > 0);
	uri = sbx_vfs_uri(q, slot);
	sql = sqlite3_mprintf("VACUUM INTO %Q", uri);
	CHECK(exec(db, sql) == SQLITE_OK);
	sqlite3_free(sql);
	free(uri);
	sbx_vfs_key_remove(slot);
	sqlite3_close(db);

	CHECK(file_size(q) > 4096 * 100);
	CHECK(!file_contains(q, MARKER));
	db = open_db(q, key2, &rc, NULL);
	CHECK(db == NULL && rc == SQLITE_NOTADB);
	db = open_db(q, key1, &rc, NULL);
	CHECK(db != NULL);
	if (db != NULL) {
		CHECK(query_int(db, "SELECT count(*) FROM t", &rc) == 2000);
		ic = query_text(db, "PRAGMA integrity_check");
		CHECKF(ic && strcmp(ic, "ok") == 0, "integrity_check: %s", ic ? ic : "(null)");
		free(ic);
		sqlite3_close(db);
	}
	free(p);
	free(q);
}

TEST(rollback_journal_hot_recovery)
{
	char *p = path_in("journal.sqlite"), *j = sbx_xasprintf("%s-journal", p), *ic;
	sqlite3 *db;
	pid_t pid;
	int status, rc;

	rm_db(p);
	db = open_db(p, key1, NULL, NULL);
	CHECK(db != NULL);
	if (db == NULL)
		return;
	CHECK(exec(db, "PRAGMA journal_mode=DELETE") == SQLITE_OK);
	CHECK(fill(db, 1000, 1000) == 0);
	sqlite3_close(db);

	pid = fork();
	if (pid == 0) {
		db = open_db(p, key1, NULL, NULL);
		if (db == NULL)
			_exit(2);
		/* A tiny cache forces the pager to spill changed pages into the
		 * database file mid-transaction, leaving a hot journal. */
		exec(db, "PRAGMA cache_size=10; BEGIN; UPDATE t SET body = 'ZZZ' || body; DELETE FROM t WHERE id % 3 = 0;");
		_exit(0);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECKF(file_size(j) > 4096, "journal size %lld", (long long)file_size(j));
	CHECK(!file_contains(j, MARKER));

	db = open_db(p, key1, &rc, NULL);
	CHECK(db != NULL);
	if (db != NULL) {
		CHECK(query_int(db, "SELECT count(*) FROM t", &rc) == 1000);
		CHECK(query_int(db, "SELECT count(*) FROM t WHERE body GLOB 'ZZZ*'", &rc) == 0);
		ic = query_text(db, "PRAGMA integrity_check");
		CHECKF(ic && strcmp(ic, "ok") == 0, "integrity_check: %s", ic ? ic : "(null)");
		free(ic);
		sqlite3_close(db);
	}
	free(p);
	free(j);
}

TEST(page_size_fixed_and_reserve_enforced)
{
	char *p = path_in("fixed.sqlite");
	sqlite3 *db = make_small(p, key1, 10);
	int rc;

	CHECK(db != NULL);
	if (db == NULL)
		return;
	CHECK(exec(db, "PRAGMA page_size=8192") != SQLITE_OK);
	CHECK(query_int(db, "PRAGMA page_size", &rc) == 4096);
	sqlite3_close(db);

	/* A connection that skips sbx_vfs_open_db and never asks for the 40
	 * reserved bytes cannot write page 1: the shim refuses rather than
	 * overwrite row data with a nonce and tag. */
	{
		char *q = path_in("noreserve.sqlite"), *uri;
		int slot = sbx_vfs_key_add(key1);

		rm_db(q);
		uri = sbx_vfs_uri(q, slot);
		db = NULL;
		CHECK(sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI,
				      SBX_VFS_NAME) == SQLITE_OK);
		sbx_vfs_key_remove(slot);
		sqlite3_exec(db, "PRAGMA temp_store=MEMORY", NULL, NULL, NULL);
		rc = sqlite3_exec(db, "CREATE TABLE x(a)", NULL, NULL, NULL);
		CHECKF(rc != SQLITE_OK, "page 1 without reserve was written");
		CHECK(strstr(sbx_vfs_last_error(), "reserved bytes") != NULL);
		sqlite3_close(db);
		free(uri);
		free(q);
	}
	free(p);
}

/*
 * A transaction larger than the page cache spills pages into the WAL and
 * may change them again, overwriting their frames in place; SQLite then
 * writes the following frames with zero salts and rewrites their headers
 * at commit. Every frame must still open after the commit, after crash
 * recovery of the committed WAL, and a transaction killed before its
 * commit must leave the previous state.
 */
static void
spill_tx(sqlite3 *db, int rows)
{
	char sql[200];
	int i;

	exec(db, "PRAGMA cache_size=20; BEGIN");
	for (i = 0; i < rows; i++) {
		snprintf(sql, sizeof(sql), "INSERT INTO s(v, n) VALUES (randomblob(3000), %d);"
			 "UPDATE s SET n = n + 1 WHERE id = 1;", i * 7919 % 1000);
		if (exec(db, sql) != SQLITE_OK)
			break;
	}
}

TEST(spilled_transaction_with_overwritten_frames)
{
	char *p = path_in("spill.db"), *ic;
	sqlite3 *db;
	pid_t pid;
	int status, rc;

	rm_db(p);
	db = open_db(p, key1, NULL, NULL);
	CHECK(db != NULL);
	if (db == NULL)
		return;
	CHECK(exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE s(id INTEGER PRIMARY KEY, v BLOB, n INT);"
		   "CREATE INDEX sn ON s(n)") == SQLITE_OK);
	spill_tx(db, 1500);
	CHECK(exec(db, "COMMIT") == SQLITE_OK);
	CHECK(query_int(db, "SELECT count(*) FROM s", &rc) == 1500);
	ic = query_text(db, "PRAGMA integrity_check");
	CHECKF(ic && strcmp(ic, "ok") == 0, "integrity_check: %s", ic ? ic : "(null)");
	free(ic);
	sqlite3_close(db);

	/* committed, then killed before any checkpoint: recovery replays it */
	pid = fork();
	if (pid == 0) {
		db = open_db(p, key1, NULL, NULL);
		if (db == NULL)
			_exit(2);
		exec(db, "PRAGMA wal_autocheckpoint=0");
		spill_tx(db, 1500);
		_exit(exec(db, "COMMIT") == SQLITE_OK ? 0 : 3);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* killed in the middle of the next one: it never happened */
	pid = fork();
	if (pid == 0) {
		db = open_db(p, key1, NULL, NULL);
		if (db == NULL)
			_exit(2);
		exec(db, "PRAGMA wal_autocheckpoint=0");
		spill_tx(db, 1000);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	db = open_db(p, key1, &rc, NULL);
	CHECK(db != NULL);
	if (db != NULL) {
		CHECK(query_int(db, "SELECT count(*) FROM s", &rc) == 3000);
		ic = query_text(db, "PRAGMA integrity_check");
		CHECKF(ic && strcmp(ic, "ok") == 0, "integrity_check: %s", ic ? ic : "(null)");
		free(ic);
		/* and the WAL keeps working after recovery */
		spill_tx(db, 300);
		CHECK(exec(db, "COMMIT") == SQLITE_OK);
		CHECK(query_int(db, "SELECT count(*) FROM s", &rc) == 3300);
		sqlite3_close(db);
	}
	rm_db(p);
	free(p);
}

TEST(concurrent_processes)
{
	char *p = path_in("multi.sqlite"), *ic;
	sqlite3 *db;
	pid_t pids[4];
	int i, status, ok = 1, rc;

	db = make_small(p, key1, 10);
	CHECK(db != NULL);
	sqlite3_close(db);
	for (i = 0; i < 4; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			int c;

			for (c = 0; c < 40; c++) {
				sqlite3 *d = open_db(p, key1, NULL, NULL);

				if (d == NULL)
					_exit(2);
				sqlite3_busy_timeout(d, 10000);
				if (exec(d, "INSERT INTO t(body) VALUES ('" MARKER "')") != SQLITE_OK)
					_exit(3);
				if (c % 10 == 9)
					exec(d, "PRAGMA wal_checkpoint(PASSIVE)");
				sqlite3_close(d);
			}
			_exit(0);
		}
	}
	for (i = 0; i < 4; i++) {
		waitpid(pids[i], &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			ok = 0;
	}
	CHECK(ok);
	db = open_db(p, key1, &rc, NULL);
	CHECK(db != NULL);
	if (db != NULL) {
		CHECK(query_int(db, "SELECT count(*) FROM t", &rc) == 10 + 160);
		ic = query_text(db, "PRAGMA integrity_check");
		CHECKF(ic && strcmp(ic, "ok") == 0, "integrity_check: %s", ic ? ic : "(null)");
		free(ic);
		sqlite3_close(db);
	}
	free(p);
}

/* imapd's pattern: one writer and several readers on one mailbox file in
 * one process; readers see each commit, and a reader's checkpoint copies
 * the writer's frames into the database file. */
TEST(writer_and_readers_in_one_process)
{
	char *p = path_in("shared.sqlite"), *ic;
	sqlite3 *w, *r1, *r2;
	int rc, i, ok = 1;

	w = make_small(p, key1, 10);
	r1 = open_db(p, key1, NULL, NULL);
	r2 = open_db(p, key1, NULL, NULL);
	CHECK(w != NULL && r1 != NULL && r2 != NULL);
	if (w == NULL || r1 == NULL || r2 == NULL)
		goto out;
	exec(w, "PRAGMA wal_autocheckpoint=0");
	for (i = 1; i <= 50 && ok; i++) {
		if (exec(w, "INSERT INTO t(body) VALUES ('" MARKER "')") != SQLITE_OK ||
		    query_int(r1, "SELECT count(*) FROM t", &rc) != 10 + i ||
		    query_int(r2, "SELECT count(*) FROM t", &rc) != 10 + i)
			ok = 0;
		if (i % 10 == 0 && exec(r1, "PRAGMA wal_checkpoint(PASSIVE)") != SQLITE_OK)
			ok = 0;
	}
	CHECK(ok);
	CHECK(exec(r2, "PRAGMA wal_checkpoint(TRUNCATE)") == SQLITE_OK);
	ic = query_text(r2, "PRAGMA integrity_check");
	CHECKF(ic && strcmp(ic, "ok") == 0, "integrity_check: %s", ic ? ic : "(null)");
	free(ic);
	CHECK(!file_contains(p, MARKER));
out:
	sqlite3_close(w);
	sqlite3_close(r1);
	sqlite3_close(r2);
	free(p);
}

int
main(void)
{
	char tmpl[] = "/tmp/sbx-vfs-XXXXXX";
	char *cmd;

	if (sodium_init() < 0 || mkdtemp(tmpl) == NULL)
		return 2;
	sbx_log_set_level(LOG_ERR);   /* the tamper tests log a warning per page */
	snprintf(tmpdir, sizeof(tmpdir), "%s", tmpl);
	randombytes_buf(key1, sizeof(key1));
	randombytes_buf(key2, sizeof(key2));

	RUN(version_gate);
	RUN(round_trip_100k_and_no_plaintext);
	RUN(wrong_key_leaves_wal_identical_and_crash_image_recovers);
	RUN(damaged_wal_frame_drops_it_and_later_frames);
	RUN(forged_commit_frame_rejected);
	RUN(flip_1000_bytes_each_detected);
	RUN(swapped_and_foreign_pages_detected);
	RUN(truncation_and_short_read_detected);
	RUN(plaintext_and_missing_key_refused);
	RUN(vacuum_into_opens_with_same_key);
	RUN(rollback_journal_hot_recovery);
	RUN(page_size_fixed_and_reserve_enforced);
	RUN(spilled_transaction_with_overwritten_frames);
	RUN(concurrent_processes);
	RUN(writer_and_readers_in_one_process);

	cmd = sbx_xasprintf("rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
	free(cmd);
	return tap_done();
}
