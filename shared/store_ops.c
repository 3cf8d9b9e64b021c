/* store_ops.c - see store.h: listing, flags and keywords, expunge, copy
 * and move, folders, status and changes. Each operation is one
 * transaction (or joins the caller's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib.h>
#include <sqlite3.h>

#include "store.h"
#include "store_private.h"
#include "util.h"

#define sql_err sbx_store_sql_err

/* A message row as the operations below need it. */
struct row {
	int64_t id, content_id;
	uint32_t uid;
	unsigned flags;
	char *keywords;
	uint64_t modseq, size;
	char internaldate[32];
};

static void
rows_free(struct row *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i].keywords);
	free(v);
}

/* The rows of folder_id in ranges, in UID order (ranges are walked in the
 * order given; overlapping ranges are the caller's business). */
static int
rows_get(struct sbx_store *st, int64_t folder_id, const struct sbx_uid_range *ranges, size_t nranges,
	 struct row **v_r, size_t *n_r, char **error_r)
{
	sqlite3_stmt *s;
	struct row *v = NULL;
	size_t n = 0, cap = 0, i;
	int rc = SQLITE_DONE;

	if (sqlite3_prepare_v2(st->db, "SELECT id, content_id, uid, flags, keywords, modseq, size, internaldate "
			       "FROM messages WHERE folder_id = ? AND uid BETWEEN ? AND ? ORDER BY uid",
			       -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "reading messages", error_r);
	for (i = 0; i < nranges && rc == SQLITE_DONE; i++) {
		if (ranges[i].lo > ranges[i].hi) {
			sqlite3_finalize(s);
			rows_free(v, n);
			*error_r = sbx_xasprintf("invalid UID range %u:%u", ranges[i].lo, ranges[i].hi);
			return -1;
		}
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, folder_id);
		sqlite3_bind_int64(s, 2, ranges[i].lo);
		sqlite3_bind_int64(s, 3, ranges[i].hi);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			const unsigned char *kw = sqlite3_column_text(s, 4);
			const unsigned char *d = sqlite3_column_text(s, 7);

			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				v = sbx_xrealloc(v, cap * sizeof(*v));
			}
			v[n].id = sqlite3_column_int64(s, 0);
			v[n].content_id = sqlite3_column_int64(s, 1);
			v[n].uid = (uint32_t)sqlite3_column_int64(s, 2);
			v[n].flags = (unsigned)sqlite3_column_int(s, 3);
			v[n].keywords = sbx_xstrdup(kw != NULL ? (const char *)kw : "");
			v[n].modseq = (uint64_t)sqlite3_column_int64(s, 5);
			v[n].size = (uint64_t)sqlite3_column_int64(s, 6);
			snprintf(v[n].internaldate, sizeof(v[n].internaldate), "%s", d ? (const char *)d : "");
			n++;
		}
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		rows_free(v, n);
		return sql_err(st->db, "reading messages", error_r);
	}
	*v_r = v;
	*n_r = n;
	return 0;
}

static const struct sbx_uid_range all_uids = { 1, UINT32_MAX };

int
sbx_store_list(struct sbx_store *st, const char *folder, uint32_t uid_min,
	       struct sbx_store_msg **v_r, size_t *n_r, char **error_r)
{
	struct sbx_folder_row f;
	struct sbx_uid_range r = { uid_min > 0 ? uid_min : 1, UINT32_MAX };
	struct sbx_store_msg *v;
	struct row *rows;
	size_t n, i;

	if (sbx_store_folder_get(st, folder, &f, error_r) < 0 ||
	    rows_get(st, f.id, &r, 1, &rows, &n, error_r) < 0)
		return -1;
	v = sbx_xcalloc(n + 1, sizeof(*v));
	for (i = 0; i < n; i++) {
		v[i].uid = rows[i].uid;
		v[i].flags = rows[i].flags;
		v[i].keywords = rows[i].keywords;
		rows[i].keywords = NULL;
		v[i].modseq = rows[i].modseq;
		memcpy(v[i].internaldate, rows[i].internaldate, sizeof(v[i].internaldate));
		v[i].size = rows[i].size;
	}
	rows_free(rows, n);
	*v_r = v;
	*n_r = n;
	return 0;
}

void
sbx_store_msgs_free(struct sbx_store_msg *v, size_t n)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++)
		free(v[i].keywords);
	free(v);
}

void
sbx_store_result_free(struct sbx_store_result *r)
{
	if (r == NULL)
		return;
	free(r->uids);
	free(r->new_uids);
	free(r->failed);
	memset(r, 0, sizeof(*r));
}

static void
uid_push(uint32_t **v, size_t *n, uint32_t uid)
{
	/* grow at powers of two */
	if ((*n & (*n - 1)) == 0 || *n == 0)
		*v = sbx_xrealloc(*v, (*n ? *n * 2 : 1) * sizeof(**v));
	(*v)[(*n)++] = uid;
}

/* ---- keywords as space-separated lists ---- */

static int
kw_has(const char *list, const char *k, size_t kn)
{
	const char *p = list;

	while (*p != '\0') {
		const char *e = strchr(p, ' ');
		size_t n = e != NULL ? (size_t)(e - p) : strlen(p);

		if (n == kn && strncasecmp(p, k, n) == 0)
			return 1;
		p += n;
		while (*p == ' ')
			p++;
	}
	return 0;
}

/* The keyword list after op with kws (both normalised); malloc'd. */
static char *
kw_apply(const char *cur, enum sbx_store_op op, const char *kws)
{
	struct sbx_buf b = { 0 };
	const char *src = op == SBX_STORE_SET ? kws : cur;
	const char *p;

	sbx_buf_append(&b, "", 0);
	for (p = src; *p != '\0';) {
		const char *e = strchr(p, ' ');
		size_t n = e != NULL ? (size_t)(e - p) : strlen(p);

		if (op != SBX_STORE_REMOVE || !kw_has(kws, p, n)) {
			if (b.len > 0)
				sbx_buf_append(&b, " ", 1);
			sbx_buf_append(&b, p, n);
		}
		p += n;
		while (*p == ' ')
			p++;
	}
	if (op == SBX_STORE_ADD) {
		for (p = kws; *p != '\0';) {
			const char *e = strchr(p, ' ');
			size_t n = e != NULL ? (size_t)(e - p) : strlen(p);

			if (!kw_has(cur, p, n)) {
				if (b.len > 0)
					sbx_buf_append(&b, " ", 1);
				sbx_buf_append(&b, p, n);
			}
			p += n;
			while (*p == ' ')
				p++;
		}
	}
	sbx_buf_append(&b, "", 1);
	return b.data;
}

int
sbx_store_store(struct sbx_store *st, const char *folder,
		const struct sbx_uid_range *ranges, size_t nranges,
		enum sbx_store_op op, unsigned flags, const char *keywords,
		uint64_t unchangedsince, struct sbx_store_result *r, char **error_r)
{
	struct sbx_folder_row f;
	struct row *rows = NULL;
	sqlite3_stmt *u = NULL;
	size_t n = 0, i;
	char *kws;
	int own, allocated = 0;

	memset(r, 0, sizeof(*r));
	if ((flags & ~(unsigned)SBX_FLAGS_ALL) != 0 || op > SBX_STORE_REMOVE) {
		*error_r = sbx_xasprintf("invalid flags 0x%x or operation", flags);
		return -1;
	}
	if ((kws = sbx_store_keywords_normalize(keywords, error_r)) == NULL)
		return -1;
	if (sbx_store_tx_begin(st, 0, &own, error_r) < 0) {
		free(kws);
		return -1;
	}
	if (sbx_store_folder_get(st, folder, &f, error_r) < 0 ||
	    (op != SBX_STORE_REMOVE && sbx_store_keywords_register(st, f.id, kws, error_r) < 0) ||
	    rows_get(st, f.id, ranges, nranges, &rows, &n, error_r) < 0)
		goto fail;
	if (sqlite3_prepare_v2(st->db, "UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE id = ?",
			       -1, &u, NULL) != SQLITE_OK) {
		sql_err(st->db, "storing flags", error_r);
		goto fail;
	}
	for (i = 0; i < n; i++) {
		unsigned nf = op == SBX_STORE_SET ? flags :
			      op == SBX_STORE_ADD ? rows[i].flags | flags : rows[i].flags & ~flags;
		char *nk;

		if (unchangedsince != 0 && rows[i].modseq > unchangedsince) {
			uid_push(&r->failed, &r->nfailed, rows[i].uid);
			continue;
		}
		nk = kw_apply(rows[i].keywords, op, kws);
		if (nf == rows[i].flags && strcmp(nk, rows[i].keywords) == 0) {
			free(nk);
			continue;
		}
		if (!allocated) {
			/* one new MODSEQ for every message this command changes */
			if (sbx_store_modseq_next(st, &f, error_r) < 0) {
				free(nk);
				goto fail;
			}
			allocated = 1;
		}
		sqlite3_reset(u);
		sqlite3_bind_int(u, 1, (int)nf);
		sqlite3_bind_text(u, 2, nk, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(u, 3, (sqlite3_int64)f.highestmodseq);
		sqlite3_bind_int64(u, 4, rows[i].id);
		free(nk);
		if (sqlite3_step(u) != SQLITE_DONE) {
			sql_err(st->db, "storing flags", error_r);
			goto fail;
		}
		uid_push(&r->uids, &r->n, rows[i].uid);
	}
	sqlite3_finalize(u);
	u = NULL;
	r->modseq = f.highestmodseq;
	rows_free(rows, n);
	free(kws);
	if (sbx_store_tx_end(st, own, 1, error_r) < 0) {
		sbx_store_result_free(r);
		return -1;
	}
	return 0;
fail:
	sqlite3_finalize(u);
	rows_free(rows, n);
	free(kws);
	sbx_store_result_free(r);
	sbx_store_tx_end(st, own, 0, error_r);
	return -1;
}

/* Tombstone and delete rows (the triggers free what they alone used). */
static int
remove_rows(struct sbx_store *st, struct sbx_folder_row *f, const struct row *rows, size_t n,
	    char **error_r)
{
	sqlite3_stmt *t = NULL, *d = NULL;
	size_t i;
	int rc = -1;

	if (n == 0)
		return 0;
	if (sbx_store_modseq_next(st, f, error_r) < 0)
		return -1;
	if (sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO tombstones(folder_id, uid, modseq) VALUES (?,?,?)",
			       -1, &t, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(st->db, "DELETE FROM messages WHERE id = ?", -1, &d, NULL) != SQLITE_OK) {
		sql_err(st->db, "expunging", error_r);
		goto out;
	}
	for (i = 0; i < n; i++) {
		sqlite3_reset(t);
		sqlite3_bind_int64(t, 1, f->id);
		sqlite3_bind_int64(t, 2, rows[i].uid);
		sqlite3_bind_int64(t, 3, (sqlite3_int64)f->highestmodseq);
		sqlite3_reset(d);
		sqlite3_bind_int64(d, 1, rows[i].id);
		if (sqlite3_step(t) != SQLITE_DONE || sqlite3_step(d) != SQLITE_DONE) {
			sql_err(st->db, "expunging", error_r);
			goto out;
		}
	}
	rc = 0;
out:
	sqlite3_finalize(t);
	sqlite3_finalize(d);
	return rc;
}

int
sbx_store_expunge(struct sbx_store *st, const char *folder,
		  const struct sbx_uid_range *ranges, size_t nranges, int deleted_only,
		  struct sbx_store_result *r, char **error_r)
{
	struct sbx_folder_row f;
	struct row *rows = NULL;
	size_t n = 0, i, k = 0;
	int own;

	memset(r, 0, sizeof(*r));
	if (sbx_store_tx_begin(st, 1, &own, error_r) < 0)
		return -1;
	if (sbx_store_folder_get(st, folder, &f, error_r) < 0 ||
	    rows_get(st, f.id, ranges, nranges, &rows, &n, error_r) < 0)
		goto fail;
	for (i = 0; i < n; i++) {
		if (deleted_only && !(rows[i].flags & SBX_FLAG_DELETED)) {
			free(rows[i].keywords);
			continue;
		}
		rows[k++] = rows[i];
	}
	n = k;
	if (remove_rows(st, &f, rows, n, error_r) < 0)
		goto fail;
	for (i = 0; i < n; i++)
		uid_push(&r->uids, &r->n, rows[i].uid);
	r->modseq = f.highestmodseq;
	rows_free(rows, n);
	if (sbx_store_tx_end(st, own, 1, error_r) < 0) {
		sbx_store_result_free(r);
		return -1;
	}
	return 0;
fail:
	rows_free(rows, n);
	sbx_store_result_free(r);
	sbx_store_tx_end(st, own, 0, error_r);
	return -1;
}

int
sbx_store_copy(struct sbx_store *st, const char *folder,
	       const struct sbx_uid_range *ranges, size_t nranges, const char *dst,
	       int move, struct sbx_store_result *r, char **error_r)
{
	struct sbx_folder_row f, d;
	struct row *rows = NULL;
	sqlite3_stmt *ins = NULL, *ref = NULL, *up = NULL;
	size_t n = 0, nnew = 0, i;
	int own;

	memset(r, 0, sizeof(*r));
	if (sbx_store_tx_begin(st, 1, &own, error_r) < 0)
		return -1;
	if (sbx_store_folder_get(st, folder, &f, error_r) < 0 ||
	    sbx_store_folder_get(st, dst, &d, error_r) < 0)
		goto fail;
	if (move && f.id == d.id) {
		*error_r = sbx_xstrdup("cannot move messages into the folder they are in");
		goto fail;
	}
	if (rows_get(st, f.id, ranges, nranges, &rows, &n, error_r) < 0)
		goto fail;
	if (n == 0) {
		r->uidvalidity = d.uidvalidity;
		r->modseq = d.highestmodseq;
		rows_free(rows, n);
		return sbx_store_tx_end(st, own, 1, error_r);
	}
	if ((uint64_t)d.uidnext + n >= UINT32_MAX) {
		*error_r = sbx_xasprintf("folder %s would run out of UIDs", dst);
		goto fail;
	}
	if (sbx_store_modseq_next(st, &d, error_r) < 0)
		goto fail;
	if (sqlite3_prepare_v2(st->db, "INSERT INTO messages(folder_id, uid, content_id, flags, keywords, "
			       "modseq, internaldate, size) VALUES (?,?,?,?,?,?,?,?)", -1, &ins, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(st->db, "UPDATE contents SET refs = refs + 1 WHERE id = ?", -1, &ref, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(st->db, "UPDATE folders SET uidnext = ? WHERE id = ?", -1, &up, NULL) != SQLITE_OK) {
		sql_err(st->db, "copying", error_r);
		goto fail;
	}
	for (i = 0; i < n; i++) {
		if (sbx_store_keywords_register(st, d.id, rows[i].keywords, error_r) < 0)
			goto fail;
		sqlite3_reset(ins);
		sqlite3_bind_int64(ins, 1, d.id);
		sqlite3_bind_int64(ins, 2, d.uidnext);
		sqlite3_bind_int64(ins, 3, rows[i].content_id);
		sqlite3_bind_int(ins, 4, (int)rows[i].flags);
		sqlite3_bind_text(ins, 5, rows[i].keywords, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins, 6, (sqlite3_int64)d.highestmodseq);
		sqlite3_bind_text(ins, 7, rows[i].internaldate, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins, 8, (sqlite3_int64)rows[i].size);
		sqlite3_reset(ref);
		sqlite3_bind_int64(ref, 1, rows[i].content_id);
		if (sqlite3_step(ins) != SQLITE_DONE || sqlite3_step(ref) != SQLITE_DONE) {
			sql_err(st->db, "copying", error_r);
			goto fail;
		}
		uid_push(&r->new_uids, &nnew, d.uidnext);
		uid_push(&r->uids, &r->n, rows[i].uid);
		d.uidnext++;
	}
	sqlite3_bind_int64(up, 1, d.uidnext);
	sqlite3_bind_int64(up, 2, d.id);
	if (sqlite3_step(up) != SQLITE_DONE) {
		sql_err(st->db, "copying", error_r);
		goto fail;
	}
	if (move && remove_rows(st, &f, rows, n, error_r) < 0)
		goto fail;
	r->uidvalidity = d.uidvalidity;
	r->modseq = d.highestmodseq;
	sqlite3_finalize(ins);
	sqlite3_finalize(ref);
	sqlite3_finalize(up);
	rows_free(rows, n);
	if (sbx_store_tx_end(st, own, 1, error_r) < 0) {
		sbx_store_result_free(r);
		return -1;
	}
	return 0;
fail:
	sqlite3_finalize(ins);
	sqlite3_finalize(ref);
	sqlite3_finalize(up);
	rows_free(rows, n);
	sbx_store_result_free(r);
	sbx_store_tx_end(st, own, 0, error_r);
	return -1;
}

/* ---- folders ---- */

/* UPDATE folders SET <column> = v WHERE id = folder_id (sql has the two
 * parameters in that order). */
static int
folder_set(struct sbx_store *st, const char *sql, int64_t v, int64_t folder_id, const char *what,
	   char **error_r)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, what, error_r);
	sqlite3_bind_int64(s, 1, v);
	sqlite3_bind_int64(s, 2, folder_id);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return sql_err(st->db, what, error_r);
	return 0;
}

/* Validate and normalise a folder name ("inbox/x" -> "INBOX/x"); malloc'd
 * or NULL with *error_r. */
static char *
folder_name(const char *name, char **error_r)
{
	size_t len = strlen(name), depth = 1, i;
	char *out;

	if (len == 0 || len > SBX_STORE_MAX_FOLDER_NAME) {
		*error_r = sbx_xasprintf("folder name must be 1 to %d bytes", SBX_STORE_MAX_FOLDER_NAME);
		return NULL;
	}
	if (!g_utf8_validate(name, (gssize)len, NULL)) {
		*error_r = sbx_xstrdup("folder name is not valid UTF-8");
		return NULL;
	}
	if (name[0] == '/' || name[len - 1] == '/' || strstr(name, "//") != NULL) {
		*error_r = sbx_xasprintf("folder name has an empty level: %s", name);
		return NULL;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c == 0x7f || c == '*' || c == '%') {
			*error_r = sbx_xstrdup("folder name contains a control character, '*' or '%'");
			return NULL;
		}
		if (c == '/' && ++depth > SBX_STORE_MAX_FOLDER_DEPTH) {
			*error_r = sbx_xasprintf("folder name deeper than %d levels", SBX_STORE_MAX_FOLDER_DEPTH);
			return NULL;
		}
	}
	out = sbx_xstrdup(name);
	if (strncasecmp(out, "INBOX", 5) == 0 && (out[5] == '\0' || out[5] == '/'))
		memcpy(out, "INBOX", 5);
	return out;
}

static int
folder_exists(struct sbx_store *st, const char *name, char **error_r)
{
	struct sbx_folder_row f;
	char *err = NULL;

	if (sbx_store_folder_get(st, name, &f, &err) == 0)
		return 1;
	if (strncmp(err, "no such folder", 14) == 0) {
		free(err);
		return 0;
	}
	*error_r = err;
	return -1;
}

static int
count_folders(struct sbx_store *st, int64_t *n_r, char **error_r)
{
	sqlite3_stmt *s;

	if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM folders", -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW) {
		sqlite3_finalize(s);
		return sql_err(st->db, "counting folders", error_r);
	}
	*n_r = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return 0;
}

/* A UIDVALIDITY never given before in this mailbox. */
static int
next_uidvalidity(struct sbx_store *st, uint32_t *v_r, char **error_r)
{
	sqlite3_stmt *s;
	int64_t v = 0, now = (int64_t)time(NULL);

	if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key = 'next_uidvalidity'",
			       -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "allocating UIDVALIDITY", error_r);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	if (v < now)
		v = now;
	if (v <= 0 || v >= (int64_t)UINT32_MAX)
		v = 1;
	if (sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO meta(key, value) VALUES ('next_uidvalidity', ?)",
			       -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "allocating UIDVALIDITY", error_r);
	sqlite3_bind_int64(s, 1, v + 1);
	if (sqlite3_step(s) != SQLITE_DONE) {
		sqlite3_finalize(s);
		return sql_err(st->db, "allocating UIDVALIDITY", error_r);
	}
	sqlite3_finalize(s);
	*v_r = (uint32_t)v;
	return 0;
}

static int
folder_insert(struct sbx_store *st, const char *name, char **error_r)
{
	sqlite3_stmt *s;
	uint32_t uv = 0;
	int64_t count = 0;

	if (count_folders(st, &count, error_r) < 0)
		return -1;
	if (count >= SBX_STORE_MAX_FOLDERS) {
		*error_r = sbx_xasprintf("mailbox already has %d folders", SBX_STORE_MAX_FOLDERS);
		return -1;
	}
	if (next_uidvalidity(st, &uv, error_r) < 0)
		return -1;
	if (sqlite3_prepare_v2(st->db, "INSERT INTO folders(name, uidvalidity) VALUES (?, ?)",
			       -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "creating folder", error_r);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, uv);
	if (sqlite3_step(s) != SQLITE_DONE) {
		sqlite3_finalize(s);
		return sql_err(st->db, "creating folder", error_r);
	}
	sqlite3_finalize(s);
	return 0;
}

int
sbx_store_folder_create(struct sbx_store *st, const char *name, char **error_r)
{
	char *n = folder_name(name, error_r), *p;
	int own, ex, created = 0;

	if (n == NULL)
		return -1;
	if (sbx_store_tx_begin(st, 1, &own, error_r) < 0) {
		free(n);
		return -1;
	}
	/* the parents first, then the folder itself */
	for (p = strchr(n, '/');; p = strchr(p + 1, '/')) {
		if (p != NULL)
			*p = '\0';
		ex = folder_exists(st, n, error_r);
		if (ex < 0)
			goto fail;
		if (ex == 0) {
			if (folder_insert(st, n, error_r) < 0)
				goto fail;
			if (p == NULL)
				created = 1;
		}
		if (p == NULL)
			break;
		*p = '/';
	}
	if (!created) {
		*error_r = sbx_xasprintf("folder already exists: %s", n);
		goto fail;
	}
	free(n);
	return sbx_store_tx_end(st, own, 1, error_r);
fail:
	free(n);
	sbx_store_tx_end(st, own, 0, error_r);
	return -1;
}

/* Escape LIKE's wildcards of a folder name (escape character '\'). */
static char *
like_prefix(const char *name)
{
	struct sbx_buf b = { 0 };
	const char *p;

	for (p = name; *p != '\0'; p++) {
		if (*p == '%' || *p == '_' || *p == '\\')
			sbx_buf_append(&b, "\\", 1);
		sbx_buf_append(&b, p, 1);
	}
	sbx_buf_append(&b, "/%", 3);
	return b.data;
}

static int
has_children(struct sbx_store *st, const char *name, int *yes_r, char **error_r)
{
	char *pat = like_prefix(name);
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM folders WHERE name LIKE ? ESCAPE '\\' "
			       "AND substr(name, 1, ?) = ? LIMIT 1", -1, &s, NULL) != SQLITE_OK) {
		free(pat);
		return sql_err(st->db, "reading folders", error_r);
	}
	sqlite3_bind_text(s, 1, pat, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, (int)strlen(name) + 1);
	{
		char *pfx = sbx_xasprintf("%s/", name);

		sqlite3_bind_text(s, 3, pfx, -1, SQLITE_TRANSIENT);
		free(pfx);
	}
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	free(pat);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sql_err(st->db, "reading folders", error_r);
	*yes_r = rc == SQLITE_ROW;
	return 0;
}

/* RFC 3501 RENAME of INBOX: its messages move to a new folder `to`. */
static int
rename_inbox(struct sbx_store *st, const char *to, char **error_r)
{
	struct sbx_folder_row in, nf;
	struct row *rows = NULL;
	sqlite3_stmt *s = NULL;
	size_t n = 0;
	int rc = -1;

	if (sbx_store_folder_get(st, "INBOX", &in, error_r) < 0 ||
	    folder_insert(st, to, error_r) < 0 ||
	    sbx_store_folder_get(st, to, &nf, error_r) < 0 ||
	    rows_get(st, in.id, &all_uids, 1, &rows, &n, error_r) < 0)
		return -1;
	if (sqlite3_prepare_v2(st->db, "UPDATE folders SET uidnext = ?, highestmodseq = ? WHERE id = ?",
			       -1, &s, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_int64(s, 1, in.uidnext);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)in.highestmodseq + 1);
	sqlite3_bind_int64(s, 3, nf.id);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto sqlfail;
	sqlite3_finalize(s);
	if (sqlite3_prepare_v2(st->db, "INSERT INTO folder_keywords(folder_id, name) "
			       "SELECT ?, name FROM folder_keywords WHERE folder_id = ?", -1, &s, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_int64(s, 1, nf.id);
	sqlite3_bind_int64(s, 2, in.id);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto sqlfail;
	sqlite3_finalize(s);
	/* The rows move as they are (UIDs kept: a new UIDVALIDITY); INBOX
	 * sees them expunged. */
	if (n > 0 && sbx_store_modseq_next(st, &in, error_r) < 0)
		goto out;
	if (sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO tombstones(folder_id, uid, modseq) "
			       "SELECT folder_id, uid, ? FROM messages WHERE folder_id = ?", -1, &s, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)in.highestmodseq);
	sqlite3_bind_int64(s, 2, in.id);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto sqlfail;
	sqlite3_finalize(s);
	if (sqlite3_prepare_v2(st->db, "UPDATE messages SET folder_id = ? WHERE folder_id = ?",
			       -1, &s, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_int64(s, 1, nf.id);
	sqlite3_bind_int64(s, 2, in.id);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto sqlfail;
	rc = 0;
	goto out;
sqlfail:
	sql_err(st->db, "renaming INBOX", error_r);
out:
	sqlite3_finalize(s);
	rows_free(rows, n);
	return rc;
}

int
sbx_store_folder_rename(struct sbx_store *st, const char *from, const char *to, char **error_r)
{
	char *f = folder_name(from, error_r), *t = NULL;
	sqlite3_stmt *s = NULL;
	size_t flen;
	int own, ex;

	if (f == NULL)
		return -1;
	if ((t = folder_name(to, error_r)) == NULL) {
		free(f);
		return -1;
	}
	flen = strlen(f);
	if (strcmp(f, t) == 0 || (strncmp(t, f, flen) == 0 && t[flen] == '/')) {
		*error_r = sbx_xasprintf("cannot rename %s to itself or below itself", f);
		free(f);
		free(t);
		return -1;
	}
	if (strcmp(t, "INBOX") == 0) {
		*error_r = sbx_xstrdup("cannot rename a folder to INBOX");
		free(f);
		free(t);
		return -1;
	}
	if (sbx_store_tx_begin(st, 1, &own, error_r) < 0) {
		free(f);
		free(t);
		return -1;
	}
	if ((ex = folder_exists(st, f, error_r)) <= 0) {
		if (ex == 0)
			*error_r = sbx_xasprintf("no such folder: %s", f);
		goto fail;
	}
	if ((ex = folder_exists(st, t, error_r)) != 0) {
		if (ex > 0)
			*error_r = sbx_xasprintf("folder already exists: %s", t);
		goto fail;
	}
	/* missing parents of the new name */
	{
		char *p;

		for (p = strchr(t, '/'); p != NULL; p = strchr(p + 1, '/')) {
			*p = '\0';
			ex = folder_exists(st, t, error_r);
			if (ex < 0 || (ex == 0 && folder_insert(st, t, error_r) < 0)) {
				*p = '/';
				goto fail;
			}
			*p = '/';
		}
	}
	if (strcmp(f, "INBOX") == 0) {
		if (rename_inbox(st, t, error_r) < 0)
			goto fail;
	} else {
		char *pat = like_prefix(f);

		/* the folder and every child: replace the prefix */
		if (sqlite3_prepare_v2(st->db, "UPDATE folders SET name = ?1 || substr(name, ?2 + 1) "
				       "WHERE name = ?3 OR (name LIKE ?4 ESCAPE '\\' AND substr(name, 1, ?2 + 1) = ?3 || '/')",
				       -1, &s, NULL) != SQLITE_OK) {
			free(pat);
			sql_err(st->db, "renaming folder", error_r);
			goto fail;
		}
		sqlite3_bind_text(s, 1, t, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 2, (int)flen);
		sqlite3_bind_text(s, 3, f, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, pat, -1, SQLITE_TRANSIENT);
		free(pat);
		if (sqlite3_step(s) != SQLITE_DONE) {
			sql_err(st->db, "renaming folder", error_r);
			goto fail;
		}
		sqlite3_finalize(s);
		s = NULL;
	}
	free(f);
	free(t);
	return sbx_store_tx_end(st, own, 1, error_r);
fail:
	sqlite3_finalize(s);
	free(f);
	free(t);
	sbx_store_tx_end(st, own, 0, error_r);
	return -1;
}

int
sbx_store_folder_delete(struct sbx_store *st, const char *name, char **error_r)
{
	struct sbx_folder_row f;
	char *n = folder_name(name, error_r);
	sqlite3_stmt *s = NULL;
	int own, kids = 0;

	if (n == NULL)
		return -1;
	if (strcmp(n, "INBOX") == 0) {
		*error_r = sbx_xstrdup("INBOX cannot be deleted");
		free(n);
		return -1;
	}
	if (sbx_store_tx_begin(st, 1, &own, error_r) < 0) {
		free(n);
		return -1;
	}
	if (sbx_store_folder_get(st, n, &f, error_r) < 0 || has_children(st, n, &kids, error_r) < 0)
		goto fail;
	if (kids) {
		*error_r = sbx_xasprintf("folder %s has children; delete them first", n);
		goto fail;
	}
	if (sqlite3_prepare_v2(st->db, "DELETE FROM folders WHERE id = ?", -1, &s, NULL) != SQLITE_OK) {
		sql_err(st->db, "deleting folder", error_r);
		goto fail;
	}
	sqlite3_bind_int64(s, 1, f.id);
	if (sqlite3_step(s) != SQLITE_DONE) {
		sql_err(st->db, "deleting folder", error_r);
		goto fail;
	}
	sqlite3_finalize(s);
	free(n);
	return sbx_store_tx_end(st, own, 1, error_r);
fail:
	sqlite3_finalize(s);
	free(n);
	sbx_store_tx_end(st, own, 0, error_r);
	return -1;
}

int
sbx_store_folder_subscribe(struct sbx_store *st, const char *name, int subscribe, char **error_r)
{
	struct sbx_folder_row f;
	int own;

	if (sbx_store_tx_begin(st, 0, &own, error_r) < 0)
		return -1;
	if (sbx_store_folder_get(st, name, &f, error_r) < 0)
		goto fail;
	if (folder_set(st, "UPDATE folders SET subscribed = ? WHERE id = ?", subscribe != 0, f.id,
		       "subscribing", error_r) < 0)
		goto fail;
	return sbx_store_tx_end(st, own, 1, error_r);
fail:
	sbx_store_tx_end(st, own, 0, error_r);
	return -1;
}

int
sbx_store_folder_keywords(struct sbx_store *st, const char *name, char **keywords_r, char **error_r)
{
	struct sbx_folder_row f;
	struct sbx_buf b = { 0 };
	sqlite3_stmt *s;
	int rc;

	if (sbx_store_folder_get(st, name, &f, error_r) < 0)
		return -1;
	if (sqlite3_prepare_v2(st->db, "SELECT name FROM folder_keywords WHERE folder_id = ? ORDER BY name",
			       -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "reading keywords", error_r);
	sqlite3_bind_int64(s, 1, f.id);
	sbx_buf_append(&b, "", 0);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (b.len > 0)
			sbx_buf_append(&b, " ", 1);
		sbx_buf_append(&b, sqlite3_column_text(s, 0), (size_t)sqlite3_column_bytes(s, 0));
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		sbx_buf_free(&b);
		return sql_err(st->db, "reading keywords", error_r);
	}
	sbx_buf_append(&b, "", 1);
	*keywords_r = b.data;
	return 0;
}

int
sbx_store_folders(struct sbx_store *st, struct sbx_store_folder **v_r, size_t *n_r, char **error_r)
{
	sqlite3_stmt *s;
	struct sbx_store_folder *v = NULL;
	size_t n = 0, cap = 0, i, j;
	int rc;

	if (sqlite3_prepare_v2(st->db, "SELECT f.name, f.uidvalidity, f.uidnext, f.subscribed, f.special_use, "
			       "(SELECT count(*) FROM messages m WHERE m.folder_id = f.id), f.highestmodseq "
			       "FROM folders f ORDER BY f.id", -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "listing folders", error_r);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = sbx_xrealloc(v, cap * sizeof(*v));
		}
		v[n].name = sbx_xstrdup((const char *)sqlite3_column_text(s, 0));
		v[n].uidvalidity = (uint32_t)sqlite3_column_int64(s, 1);
		v[n].uidnext = (uint32_t)sqlite3_column_int64(s, 2);
		v[n].subscribed = sqlite3_column_int(s, 3);
		v[n].special_use = sqlite3_column_type(s, 4) == SQLITE_NULL ? NULL :
				   sbx_xstrdup((const char *)sqlite3_column_text(s, 4));
		v[n].messages = (uint64_t)sqlite3_column_int64(s, 5);
		v[n].highestmodseq = (uint64_t)sqlite3_column_int64(s, 6);
		v[n].has_children = 0;
		n++;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		sbx_store_folders_free(v, n);
		return sql_err(st->db, "listing folders", error_r);
	}
	/* at most SBX_STORE_MAX_FOLDERS: quadratic is fine */
	for (i = 0; i < n; i++) {
		size_t len = strlen(v[i].name);

		for (j = 0; j < n && !v[i].has_children; j++)
			if (strncmp(v[j].name, v[i].name, len) == 0 && v[j].name[len] == '/')
				v[i].has_children = 1;
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
sbx_store_status(struct sbx_store *st, const char *folder, struct sbx_store_status *s_r,
		 char **error_r)
{
	struct sbx_folder_row f;
	sqlite3_stmt *s;

	memset(s_r, 0, sizeof(*s_r));
	if (sbx_store_folder_get(st, folder, &f, error_r) < 0)
		return -1;
	if (sqlite3_prepare_v2(st->db, "SELECT count(*), coalesce(sum(size), 0), "
			       "coalesce(sum(flags & 1 = 0), 0), coalesce(sum(uid > ?2), 0), "
			       "min(CASE WHEN flags & 1 = 0 THEN uid END) FROM messages WHERE folder_id = ?1",
			       -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "reading status", error_r);
	sqlite3_bind_int64(s, 1, f.id);
	sqlite3_bind_int64(s, 2, f.recent_uid);
	if (sqlite3_step(s) != SQLITE_ROW) {
		sqlite3_finalize(s);
		return sql_err(st->db, "reading status", error_r);
	}
	s_r->messages = (uint64_t)sqlite3_column_int64(s, 0);
	s_r->size = (uint64_t)sqlite3_column_int64(s, 1);
	s_r->unseen = (uint64_t)sqlite3_column_int64(s, 2);
	s_r->recent = (uint64_t)sqlite3_column_int64(s, 3);
	s_r->first_unseen_uid = (uint32_t)sqlite3_column_int64(s, 4);
	sqlite3_finalize(s);
	s_r->uidnext = f.uidnext;
	s_r->uidvalidity = f.uidvalidity;
	s_r->highestmodseq = f.highestmodseq;
	return 0;
}

int
sbx_store_claim_recent(struct sbx_store *st, const char *folder, uint32_t *lo_r,
		       uint32_t *hi_r, char **error_r)
{
	struct sbx_folder_row f;
	int own;

	/* A lost claim only makes messages \Recent again: NORMAL is enough. */
	if (sbx_store_tx_begin(st, 0, &own, error_r) < 0)
		return -1;
	if (sbx_store_folder_get(st, folder, &f, error_r) < 0)
		goto fail;
	*lo_r = f.recent_uid;
	*hi_r = f.uidnext > 0 ? f.uidnext - 1 : 0;
	if (*hi_r < *lo_r)
		*hi_r = *lo_r;
	if (*hi_r > *lo_r &&
	    folder_set(st, "UPDATE folders SET recent_uid = ? WHERE id = ?", *hi_r, f.id,
		       "claiming recent messages", error_r) < 0)
		goto fail;
	return sbx_store_tx_end(st, own, 1, error_r);
fail:
	sbx_store_tx_end(st, own, 0, error_r);
	return -1;
}

int
sbx_store_changes(struct sbx_store *st, const char *folder, uint64_t since,
		  struct sbx_store_msg **changed_r, size_t *nchanged_r,
		  uint32_t **expunged_r, size_t *nexpunged_r, char **error_r)
{
	struct sbx_folder_row f;
	struct sbx_store_msg *v = NULL;
	uint32_t *x = NULL;
	size_t n = 0, cap = 0, nx = 0;
	sqlite3_stmt *s;
	int rc;

	if (since > (uint64_t)INT64_MAX) {
		*error_r = sbx_xstrdup("MODSEQ out of range");
		return -1;
	}
	if (sbx_store_folder_get(st, folder, &f, error_r) < 0)
		return -1;
	if (sqlite3_prepare_v2(st->db, "SELECT uid, flags, keywords, modseq, internaldate, size FROM messages "
			       "WHERE folder_id = ? AND modseq > ? ORDER BY uid", -1, &s, NULL) != SQLITE_OK)
		return sql_err(st->db, "reading changes", error_r);
	sqlite3_bind_int64(s, 1, f.id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)since);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const unsigned char *kw = sqlite3_column_text(s, 2);
		const unsigned char *d = sqlite3_column_text(s, 4);

		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = sbx_xrealloc(v, cap * sizeof(*v));
		}
		v[n].uid = (uint32_t)sqlite3_column_int64(s, 0);
		v[n].flags = (unsigned)sqlite3_column_int(s, 1);
		v[n].keywords = sbx_xstrdup(kw != NULL ? (const char *)kw : "");
		v[n].modseq = (uint64_t)sqlite3_column_int64(s, 3);
		snprintf(v[n].internaldate, sizeof(v[n].internaldate), "%s", d ? (const char *)d : "");
		v[n].size = (uint64_t)sqlite3_column_int64(s, 5);
		n++;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		goto fail;
	if (sqlite3_prepare_v2(st->db, "SELECT uid FROM tombstones WHERE folder_id = ? AND modseq > ? ORDER BY uid",
			       -1, &s, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_bind_int64(s, 1, f.id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)since);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		uid_push(&x, &nx, (uint32_t)sqlite3_column_int64(s, 0));
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		goto fail;
	*changed_r = v;
	*nchanged_r = n;
	*expunged_r = x;
	*nexpunged_r = nx;
	return 0;
fail:
	sbx_store_msgs_free(v, n);
	free(x);
	return sql_err(st->db, "reading changes", error_r);
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
