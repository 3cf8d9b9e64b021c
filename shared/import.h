/*
 * import.h - move sealed spool entries into the unlocked mailbox
 * (ARCHITECTURE.md "Exactly-once delivery").
 *
 * The caller holds the mailbox lock and has the store open with the keys.
 * Entries are imported into INBOX in delivery-id order, in batches of
 * SBX_IMPORT_BATCH per transaction; each message is stored together with its
 * delivery id in `delivered`, the batch commits with synchronous=FULL, and
 * only then are its spool files unlinked. An entry whose id is already in
 * `delivered` (a crash between commit and unlink) is unlinked without a
 * second copy. A damaged entry is left in place, counted and logged: nothing
 * is ever deleted that was not committed.
 */
#ifndef SBX_IMPORT_H
#define SBX_IMPORT_H
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "store.h"

struct sbx_import_stats {
	size_t imported;      /* new messages stored */
	size_t duplicates;    /* already delivered, spool file removed */
	size_t damaged;       /* left in the spool */
	uint64_t bytes;       /* bytes of the new messages */
};

/* 0 on success (damaged entries do not make it fail), -1 + *error_r when
 * the store or the spool directory cannot be used. */
int sbx_spool_import(const char *state_dir, const char *mailbox_id,
		     const struct sbx_mailbox_keys *keys, struct sbx_store *st,
		     uint64_t max_message_size, struct sbx_import_stats *stats_r, char **error_r);

/* Test hook: called at "appended" (entry n of a batch stored, not
 * committed), "committed" (batch committed, nothing unlinked) and
 * "unlinked" (entry n of the batch unlinked). NULL in production. */
extern void (*sbx_import_test_hook)(const char *point, size_t n);
#endif
