/*
 * spool.h - the sealed delivery spool (ARCHITECTURE.md "State directory",
 * "Exactly-once delivery").
 *
 * Layout: STATE/spool/<mailbox-id>/tmp/ and STATE/spool/<mailbox-id>/new/<delivery-id>.
 * A writer creates tmp/<delivery-id>, streams into it, fsyncs, renames into
 * new/ and fsyncs new/ before reporting success; a crash before the rename
 * leaves only a tmp file (swept by sbx_spool_sweep_tmp), never a half entry
 * in new/.
 *
 * Entry format (version 1):
 *   "SBXS" | version u8 (1) | sealed entry key: crypto_box_seal(key[32], mailbox pk)
 *   (32 + 48 bytes) | secretstream header (24 bytes) | chunks
 * Each chunk is: length u32 big-endian (ciphertext bytes) | ciphertext
 * (plaintext of at most SBX_SPOOL_CHUNK bytes + crypto_secretstream ABYTES).
 * The first chunk is the metadata record, the rest the message; the last
 * chunk carries TAG_FINAL, so a truncated entry is an error, never a short
 * message. Metadata record (big-endian):
 *   version u8 (1) | arrival time i64 (unix seconds) | delivery id[16]
 *   | mail_from_len u16 | mail_from | orcpt_len u16 | orcpt | message size u64
 * Nothing is ever held as one whole-message buffer: writer and reader stream.
 */
#ifndef SBX_SPOOL_H
#define SBX_SPOOL_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "util.h"

struct sbx_spool_meta {
	time_t arrival;                  /* becomes the INTERNALDATE */
	char delivery_id[SBX_ID_HEX];    /* 32 hex digits, also the file name */
	char *mail_from;                 /* envelope sender ("" for <>) */
	char *orcpt;                     /* original recipient (alias as received), may be "" */
	uint64_t size;                   /* message bytes */
};
void sbx_spool_meta_free(struct sbx_spool_meta *m);

struct sbx_spool_writer;
/* Start a new entry for mailbox_id sealed to pk. meta->delivery_id is filled
 * in with a fresh random id when empty. mail_from/orcpt are copied. The
 * spool directories are created (0700) when missing.
 * -1 + *error_r on any error (nothing is left behind). */
int sbx_spool_writer_begin(const char *state_dir, const char *mailbox_id,
			   const unsigned char pk[32], const struct sbx_spool_meta *meta,
			   struct sbx_spool_writer **w_r, char **error_r);
/* Append message bytes; the total must equal meta->size by commit. */
int sbx_spool_writer_write(struct sbx_spool_writer *w, const void *data, size_t len, char **error_r);
/* Finish: final chunk, fsync, rename tmp -> new, fsync new/. Only after this
 * returns 0 is the entry durable (lmtpd may say 250). Frees w either way;
 * on failure the tmp file is removed. delivery_id_r may be NULL. */
int sbx_spool_writer_commit(struct sbx_spool_writer **w, char delivery_id_r[SBX_ID_HEX], char **error_r);
/* The same in two steps, so that one caller can make many entries durable
 * together (lmtpd's group commit): finish writes the final chunk and, with
 * sync_data, fsyncs the file (without it the caller must make the data
 * durable, e.g. syncfs(2) on sbx_spool_writer_fd(), BEFORE publishing);
 * publish renames tmp -> new and, with sync_dir, fsyncs new/ (without it
 * the caller calls sbx_spool_sync_new before reporting success). On a
 * finish failure the tmp file is gone; free w with sbx_spool_writer_abort.
 * publish frees w either way. */
int sbx_spool_writer_finish(struct sbx_spool_writer *w, int sync_data, char **error_r);
int sbx_spool_writer_fd(const struct sbx_spool_writer *w);
int sbx_spool_writer_publish(struct sbx_spool_writer **w, int sync_dir, char delivery_id_r[SBX_ID_HEX],
			     char **error_r);
/* fsync spool/<mailbox_id>/new/. */
int sbx_spool_sync_new(const char *state_dir, const char *mailbox_id, char **error_r);
/* Abandon: remove the tmp file, free w. */
void sbx_spool_writer_abort(struct sbx_spool_writer **w);

/* Convenience: seal a whole buffer in one call (sealboxctl deliver, tests). */
int sbx_spool_deliver(const char *state_dir, const char *mailbox_id, const unsigned char pk[32],
		      const struct sbx_spool_meta *meta, const void *msg, size_t len,
		      char delivery_id_r[SBX_ID_HEX], char **error_r);

/* Names (delivery ids) in new/, sorted, valid ids only; *n_r entries,
 * free with sbx_spool_list_free. A missing spool directory is an empty list. */
int sbx_spool_list(const char *state_dir, const char *mailbox_id, char ***ids_r, size_t *n_r, char **error_r);
void sbx_spool_list_free(char **ids, size_t n);
/* Bytes used by all entries in new/ (file sizes), for quota accounting. */
int sbx_spool_usage(const char *state_dir, const char *mailbox_id, uint64_t *bytes_r, uint64_t *count_r);

struct sbx_spool_reader;
/* Open new/<delivery_id> with the mailbox key pair; reads and authenticates
 * the metadata record. -1 + *error_r when missing, damaged, truncated or
 * sealed to another key. */
int sbx_spool_reader_open(const char *state_dir, const char *mailbox_id, const char *delivery_id,
			  const unsigned char pk[32], const unsigned char sk[32],
			  struct sbx_spool_reader **r_r, char **error_r);
const struct sbx_spool_meta *sbx_spool_reader_meta(const struct sbx_spool_reader *r);
/* Read up to len message bytes; returns bytes read, 0 at the authenticated
 * end, -1 + *error_r on damage/truncation (a truncated entry never reads as
 * a clean 0). */
long sbx_spool_reader_read(struct sbx_spool_reader *r, void *buf, size_t len, char **error_r);
void sbx_spool_reader_close(struct sbx_spool_reader **r);
/* Read the whole message (at most max bytes) into a malloc'd buffer. */
int sbx_spool_read_all(struct sbx_spool_reader *r, size_t max, char **msg_r, size_t *len_r, char **error_r);

/* Unlink new/<delivery_id> and fsync new/. Only after the import commit. */
int sbx_spool_remove(const char *state_dir, const char *mailbox_id, const char *delivery_id, char **error_r);
/* Remove tmp/ files older than max_age seconds (crash leftovers). */
int sbx_spool_sweep_tmp(const char *state_dir, const char *mailbox_id, time_t max_age);
/* Remove a mailbox's whole spool directory (mailbox del). */
int sbx_spool_destroy(const char *state_dir, const char *mailbox_id, char **error_r);
#endif
