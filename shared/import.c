/* import.c - see import.h. */
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "sbx_limits.h"
#include "log.h"
#include "spool.h"
#include "util.h"

void (*sbx_import_test_hook)(const char *point, size_t n);

static void
hook(const char *point, size_t n)
{
	if (sbx_import_test_hook != NULL)
		sbx_import_test_hook(point, n);
}

/* Import one segment; *damaged_r is set when any record of it was damaged. */
static int
import_segment(const char *path, const char *mailbox_id, const struct sbx_mailbox_keys *keys,
	       struct sbx_store *st, uint64_t max_message_size, struct sbx_import_stats *stats,
	       int *damaged_r, char **error_r)
{
	struct sbx_spool_scan *s = NULL;
	struct sbx_spool_rec rec;
	uint64_t skipped = 0;
	size_t nbatch = 0;
	int more, in_tx = 0;

	*damaged_r = 0;
	if (sbx_spool_scan_open(path, &s, error_r) < 0)
		return -1;
	while ((more = sbx_spool_scan_next(s, &rec, error_r)) == 1) {
		struct sbx_spool_reader *r = NULL;
		const struct sbx_spool_meta *meta;
		char *msg = NULL, *err = NULL;
		size_t len;
		int d;

		if (sbx_spool_scan_damaged(s) != skipped) {   /* damage before this record */
			skipped = sbx_spool_scan_damaged(s);
			stats->damaged++;
			*damaged_r = 1;
		}
		if (!in_tx) {
			if (sbx_store_begin(st, error_r) < 0)
				goto fail;
			in_tx = 1;
		}
		if (sbx_spool_reader_open_rec(s, &rec, keys->spool_pk, keys->spool_sk, &r, &err) < 0 ||
		    sbx_spool_read_all(r, (size_t)max_message_size, &msg, &len, &err) < 0) {
			sbx_warn("mailbox=%s delivery=%s: spool record kept in a damaged segment: %s",
				 mailbox_id, rec.delivery_id, err);
			free(err);
			sbx_spool_reader_close(&r);
			stats->damaged++;
			*damaged_r = 1;
			continue;
		}
		meta = sbx_spool_reader_meta(r);
		d = sbx_store_append(st, "INBOX", msg, len, meta->arrival, 0, NULL, rec.delivery_id, NULL,
				     error_r);
		sbx_wipe_free(msg, len);   /* a decrypted message */
		sbx_spool_reader_close(&r);
		if (d < 0)
			goto fail;
		if (d == 1) {
			stats->duplicates++;
		} else {
			stats->imported++;
			stats->bytes += len;
		}
		hook("appended", nbatch++);
		if (nbatch == SBX_IMPORT_BATCH) {
			if (sbx_store_commit(st, error_r) < 0) {
				in_tx = 0;
				goto fail;
			}
			in_tx = 0;
			hook("committed", nbatch);
			nbatch = 0;
		}
	}
	if (more < 0)
		goto fail;
	if (in_tx) {
		if (sbx_store_commit(st, error_r) < 0) {
			in_tx = 0;
			goto fail;
		}
		in_tx = 0;
		if (nbatch > 0)
			hook("committed", nbatch);
	}
	if (sbx_spool_scan_damaged(s) != skipped) {   /* damage after the last record */
		stats->damaged++;
		*damaged_r = 1;
	}
	if (sbx_spool_scan_damaged(s) > 0)
		sbx_warn("mailbox=%s: %llu damaged bytes in spool segment %s", mailbox_id,
			 (unsigned long long)sbx_spool_scan_damaged(s), path);
	if (sbx_spool_scan_torn(s) > 0)
		sbx_info("mailbox=%s: dropped an incomplete last record (%llu bytes) of %s: an append "
			 "a crash interrupted, never acknowledged", mailbox_id,
			 (unsigned long long)sbx_spool_scan_torn(s), path);
	sbx_spool_scan_close(&s);
	return 0;
fail:
	if (in_tx)
		sbx_store_rollback(st);
	sbx_spool_scan_close(&s);
	return -1;
}

int
sbx_spool_import(const char *state_dir, const char *mailbox_id,
		 const struct sbx_mailbox_keys *keys, struct sbx_store *st,
		 uint64_t max_message_size, struct sbx_import_stats *stats_r, char **error_r)
{
	char **paths = NULL;
	size_t n = 0, i;
	int rc = -1;

	memset(stats_r, 0, sizeof(*stats_r));
	if (sbx_spool_claim(state_dir, mailbox_id, &paths, &n, error_r) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		int damaged;

		if (import_segment(paths[i], mailbox_id, keys, st, max_message_size, stats_r, &damaged,
				   error_r) < 0)
			goto out;
		hook("segment", i);
		if (sbx_spool_segment_done(paths[i], damaged, error_r) < 0)
			goto out;
	}
	rc = 0;
out:
	sbx_spool_list_free(paths, n);
	return rc;
}
