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

/* Remove the spool files of a committed batch. */
static int
unlink_batch(const char *state_dir, const char *mailbox_id, char **ids, size_t n, char **error_r)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (sbx_spool_remove(state_dir, mailbox_id, ids[i], error_r) < 0)
			return -1;
		hook("unlinked", i);
	}
	return 0;
}

int
sbx_spool_import(const char *state_dir, const char *mailbox_id,
		 const struct sbx_mailbox_keys *keys, struct sbx_store *st,
		 uint64_t max_message_size, struct sbx_import_stats *stats_r, char **error_r)
{
	char **ids = NULL, **batch = NULL;
	size_t n = 0, i, nbatch = 0;
	int rc = -1;

	memset(stats_r, 0, sizeof(*stats_r));
	if (sbx_spool_list(state_dir, mailbox_id, &ids, &n, error_r) < 0)
		return -1;
	batch = sbx_xcalloc(SBX_IMPORT_BATCH, sizeof(*batch));
	for (i = 0; i < n; i++) {
		struct sbx_spool_reader *r = NULL;
		const struct sbx_spool_meta *meta;
		char *msg = NULL, *err = NULL;
		size_t len;
		int d;

		if (nbatch == 0 && sbx_store_begin(st, error_r) < 0)
			goto out;
		if (sbx_spool_reader_open(state_dir, mailbox_id, ids[i], keys->spool_pk, keys->spool_sk,
					  &r, &err) < 0 ||
		    sbx_spool_read_all(r, (size_t)max_message_size, &msg, &len, &err) < 0) {
			sbx_warn("mailbox=%s delivery=%s: spool entry left in place: %s",
				 mailbox_id, ids[i], err);
			free(err);
			sbx_spool_reader_close(&r);
			stats_r->damaged++;
			if (nbatch == 0)
				sbx_store_rollback(st);
			continue;
		}
		meta = sbx_spool_reader_meta(r);
		d = sbx_store_append(st, "INBOX", msg, len, meta->arrival, 0, NULL, ids[i], NULL, error_r);
		sbx_wipe_free(msg, len);   /* a decrypted message */
		sbx_spool_reader_close(&r);
		if (d < 0) {
			sbx_store_rollback(st);
			goto out;
		}
		if (d == 1) {
			stats_r->duplicates++;
		} else {
			stats_r->imported++;
			stats_r->bytes += len;
		}
		batch[nbatch++] = ids[i];
		hook("appended", nbatch - 1);
		if (nbatch == SBX_IMPORT_BATCH || i == n - 1) {
			if (sbx_store_commit(st, error_r) < 0)
				goto out;
			hook("committed", nbatch);
			if (unlink_batch(state_dir, mailbox_id, batch, nbatch, error_r) < 0)
				goto out;
			nbatch = 0;
		}
	}
	if (nbatch > 0) {   /* the last entries were damaged: commit what came before */
		if (sbx_store_commit(st, error_r) < 0)
			goto out;
		if (unlink_batch(state_dir, mailbox_id, batch, nbatch, error_r) < 0)
			goto out;
	} else {
		sbx_store_rollback(st);
	}
	rc = 0;
out:
	free(batch);
	sbx_spool_list_free(ids, n);
	return rc;
}
