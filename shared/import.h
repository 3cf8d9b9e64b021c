/*
 * import.h - move sealed spool records into the unlocked mailbox
 * (ARCHITECTURE.md "Exactly-once delivery").
 *
 * The caller holds the mailbox lock and has the store open with the keys.
 * The live journal is claimed (renamed to an import segment, spool.h), then
 * every import segment is imported into INBOX in file order, in batches of
 * SBX_IMPORT_BATCH per transaction; each message is stored together with
 * its delivery id in `delivered`, the batches commit with
 * synchronous=FULL, and only when all of a segment is committed is the
 * segment removed. A record whose id is already in `delivered` (a crash
 * between the last commit and the removal) is skipped without a second
 * copy. A damaged record is counted and logged, the rest of its segment is
 * imported, and the segment is kept as damaged.<claim> for the admin:
 * nothing is ever deleted that was not committed. A torn last record (an
 * append a crash interrupted, never acknowledged) is dropped with a log line.
 */
#ifndef SBX_IMPORT_H
#define SBX_IMPORT_H
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "store.h"

struct sbx_import_stats {
	size_t imported;      /* new messages stored */
	size_t duplicates;    /* already delivered: skipped */
	size_t damaged;       /* damaged records (kept in a damaged.* segment) */
	uint64_t bytes;       /* bytes of the new messages */
};

/* 0 on success (damaged entries do not make it fail), -1 + *error_r when
 * the store or the spool directory cannot be used. */
int sbx_spool_import(const char *state_dir, const char *mailbox_id,
		     const struct sbx_mailbox_keys *keys, struct sbx_store *st,
		     uint64_t max_message_size, struct sbx_import_stats *stats_r, char **error_r);

/* Test hook: called at "appended" (record n of a batch stored, not
 * committed), "committed" (a batch of n committed) and "segment" (segment
 * n all committed, not yet removed). NULL in production. */
extern void (*sbx_import_test_hook)(const char *point, size_t n);
#endif
