/*
 * spool.h - the sealed delivery spool (ARCHITECTURE.md "State directory",
 * "Exactly-once delivery"; the README's design section says why it is a
 * journal and not one file per message).
 *
 * Layout: STATE/spool/<mailbox-id>/journal, an append-only file of records,
 * plus import.<claim> segments: a journal an importer renamed away and has
 * not finished with (sbx_spool_claim), and damaged.<claim>: a segment whose
 * import met damaged records, kept for the admin and never read again.
 *
 * Record (version 1), all integers big-endian:
 *   "SBXJ" | version u8 (1) | 3 zero bytes | entry length u64 | delivery id[16]
 *   | entry (entry length bytes)
 *   | BLAKE2b-128 over the 32 header bytes and the entry (16 bytes)
 * The header is clear: it says which delivery a record is and how long it
 * is, nothing about the message. The check value finds torn and damaged
 * records; the entry's AEAD is what authenticates.
 *
 * Entry (version 1):
 *   "SBXS" | version u8 (1) | sealed entry key: crypto_box_seal(key[32], mailbox pk)
 *   (32 + 48 bytes) | secretstream header (24 bytes) | chunks
 * Each chunk is: length u32 (ciphertext bytes) | ciphertext (plaintext of
 * at most SBX_SPOOL_CHUNK bytes + crypto_secretstream ABYTES). The first
 * chunk is the metadata record, the rest the message; the last chunk
 * carries TAG_FINAL, so a truncated entry is an error, never a short
 * message. Metadata record:
 *   version u8 (1) | arrival time i64 (unix seconds) | delivery id[16]
 *   | mail_from_len u16 | mail_from | orcpt_len u16 | orcpt | message size u64
 *
 * Writing: open journal (O_APPEND, created 0600 when missing), flock
 * LOCK_EX, make sure it is still the file named journal (an importer may
 * have claimed it), append the record, fdatasync (and fsync spool/<id>/
 * when the journal was new), unlock. Every record is durable before the
 * lock is released, so only the last record of a journal can be torn by
 * a crash, and it was never acknowledged: the next writer in a process
 * checks the tail once and cuts a torn record off; an importer drops it.
 * A failed append is cut off again (ftruncate) before the lock is released.
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
/* Start a new record for mailbox_id sealed to pk. meta->delivery_id is
 * filled in with a fresh random id when empty. mail_from/orcpt are copied,
 * meta->size must be the exact message size. The spool directories are
 * created (0700) when missing. The journal stays locked until commit or
 * abort: other writers to this mailbox wait.
 * -1 + *error_r on any error (nothing is left behind). */
int sbx_spool_writer_begin(const char *state_dir, const char *mailbox_id,
			   const unsigned char pk[32], const struct sbx_spool_meta *meta,
			   struct sbx_spool_writer **w_r, char **error_r);
/* Append message bytes; the total must equal meta->size by commit. */
int sbx_spool_writer_write(struct sbx_spool_writer *w, const void *data, size_t len, char **error_r);
/* Finish: final chunk, check value, fdatasync (and the directory for a new
 * journal), unlock. Only after this returns 0 is the record durable (lmtpd
 * may say 250). Frees w either way; on failure the record is cut off the
 * journal again. delivery_id_r may be NULL. */
int sbx_spool_writer_commit(struct sbx_spool_writer **w, char delivery_id_r[SBX_ID_HEX], char **error_r);
/* Abandon: cut the record off, unlock, free w. */
void sbx_spool_writer_abort(struct sbx_spool_writer **w);

/* Convenience: seal a whole buffer in one call (sealboxctl deliver, tests). */
int sbx_spool_deliver(const char *state_dir, const char *mailbox_id, const unsigned char pk[32],
		      const struct sbx_spool_meta *meta, const void *msg, size_t len,
		      char delivery_id_r[SBX_ID_HEX], char **error_r);

/* ---- reading: importers and tools ---- */

/* One record of a segment file. */
struct sbx_spool_rec {
	uint64_t offset;                 /* of the record header in the file */
	uint64_t entry_len;              /* entry bytes (header and check value excluded) */
	char delivery_id[SBX_ID_HEX];
};

/* Walk the records of one file (the live journal or a segment), checking
 * every record's check value. Damage is skipped: the scan resumes at the
 * next valid record and counts the skipped bytes; damage that runs to the
 * end of the file is a torn last record (a crash during an append that
 * was never acknowledged) and counted apart. */
struct sbx_spool_scan;
int sbx_spool_scan_open(const char *path, struct sbx_spool_scan **s_r, char **error_r);
/* 1: *rec_r is the next valid record; 0: the end; -1 + *error_r: I/O error. */
int sbx_spool_scan_next(struct sbx_spool_scan *s, struct sbx_spool_rec *rec_r, char **error_r);
uint64_t sbx_spool_scan_damaged(const struct sbx_spool_scan *s);  /* bytes skipped mid-file */
uint64_t sbx_spool_scan_torn(const struct sbx_spool_scan *s);     /* bytes of a torn tail */
void sbx_spool_scan_close(struct sbx_spool_scan **s);

struct sbx_spool_reader;
/* Open a record found by a scan (the scan must stay open while reading)
 * with the mailbox key pair; reads and authenticates the metadata record,
 * whose delivery id must match the record header's. -1 + *error_r when
 * damaged, truncated or sealed to another key. */
int sbx_spool_reader_open_rec(struct sbx_spool_scan *s, const struct sbx_spool_rec *rec,
			      const unsigned char pk[32], const unsigned char sk[32],
			      struct sbx_spool_reader **r_r, char **error_r);
/* Open a bare entry stored alone in a file (tools, tests, fuzzing);
 * delivery_id NULL accepts any id. */
int sbx_spool_reader_open_file(const char *path, const char *delivery_id,
			       const unsigned char pk[32], const unsigned char sk[32],
			       struct sbx_spool_reader **r_r, char **error_r);
/* Find delivery_id among the mailbox's journal and import segments and
 * open it (a linear scan: tools and tests). */
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

/* Delivery ids of every valid record waiting for mailbox_id (import
 * segments first, then the journal, each in file order); *n_r entries,
 * free with sbx_spool_list_free. A missing spool is an empty list. */
int sbx_spool_list(const char *state_dir, const char *mailbox_id, char ***ids_r, size_t *n_r, char **error_r);
void sbx_spool_list_free(char **ids, size_t n);
/* Bytes (file sizes of the journal and import segments) and records
 * waiting, for quota accounting. */
int sbx_spool_usage(const char *state_dir, const char *mailbox_id, uint64_t *bytes_r, uint64_t *count_r);

/* Importer (under the mailbox lock): rename the live journal to a new
 * import.<claim> segment (under its flock, so no append is cut in two;
 * the directory is fsync'd) and return the paths of every import segment,
 * oldest first, including those a crashed import left. */
int sbx_spool_claim(const char *state_dir, const char *mailbox_id, char ***paths_r, size_t *n_r,
		    char **error_r);
/* A segment whose records are all committed to the mailbox: unlink it, or
 * with damaged rename it to damaged.<claim>; then fsync the directory. */
int sbx_spool_segment_done(const char *path, int damaged, char **error_r);
/* Remove a mailbox's whole spool directory (mailbox del). */
int sbx_spool_destroy(const char *state_dir, const char *mailbox_id, char **error_r);
#endif
