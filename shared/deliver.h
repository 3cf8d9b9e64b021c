/*
 * deliver.h - one LMTP recipient's delivery into a mailbox's sealed spool
 * (ARCHITECTURE.md "Routing (milter) and delivery (lmtpd)", "Exactly-once
 * delivery"). Blocking: lmtpd runs it on libuv's thread pool.
 *
 * Order of events for one recipient:
 *   1. the mailbox is looked up by id (unknown -> SBX_DELIVER_UNKNOWN);
 *   2. with a Postfix queue id, a (queue id, recipient) already answered
 *      250 is SBX_DELIVER_DUPLICATE: nothing is stored again;
 *   3. quota: usage_bytes + the message > quota -> SBX_DELIVER_OVER_QUOTA;
 *   4. Delivered-To and Received are prepended (the message's own line
 *      ending), the rest is kept byte-exact, and the whole is sealed and
 *      appended to the mailbox's spool journal and fdatasync'd (spool.h);
 *   5. the caller records usage and the (queue id, recipient) with
 *      sbx_dir_deliveries_record (one transaction for a batch), and only
 *      then answers 250.
 * Any failure in 4 or 5 is SBX_DELIVER_TEMPFAIL with nothing half-written
 * left in the journal (the spool writer cuts a failed record off).
 */
#ifndef SBX_DELIVER_H
#define SBX_DELIVER_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "directory.h"
#include "util.h"

enum sbx_deliver_status {
	SBX_DELIVER_OK,
	SBX_DELIVER_DUPLICATE,   /* answered 250 before: nothing stored */
	SBX_DELIVER_UNKNOWN,     /* no such mailbox: 550 5.1.1 */
	SBX_DELIVER_OVER_QUOTA,  /* 452 4.2.2 */
	SBX_DELIVER_TEMPFAIL,    /* 451 4.3.0: disk full, I/O or database error */
};

struct sbx_deliver_req {
	const char *mailbox_id;
	const char *rcpt;          /* internal recipient as received (dedup key) */
	const char *orcpt;         /* original alias, or NULL: the mailbox address */
	const char *mail_from;     /* "" for <> */
	const char *queue_id;      /* XFORWARD IDENT, or NULL */
	const char *received;      /* Received: field value, without line end, or NULL */
	const char *msg;
	size_t len;
	time_t arrival;
	const char *delivery_id;   /* stage: the id to use (NULL: random) */
};

/* Room counted for the prepended fields when checking the quota. */
#define SBX_DELIVER_HEADER_ALLOWANCE 1024

/* Steps 1-3, under the caller's directory lock: *m_r is the mailbox
 * (clear it with sbx_dir_mailbox_clear) when OK is returned. */
enum sbx_deliver_status sbx_deliver_check(struct sbx_dir *dir, const struct sbx_deliver_req *r,
					  struct sbx_dir_mailbox *m_r, char delivery_id_r[SBX_ID_HEX],
					  char **error_r);
/* Step 4, without the directory: seal into the spool under
 * delivery_id_r (a fresh id the caller chose, or "" for a random one).
 * Deliveries to different mailboxes run in parallel; to one mailbox they
 * take turns on its journal lock. */
enum sbx_deliver_status sbx_deliver_write(const char *state_dir, const struct sbx_deliver_req *r,
					  const struct sbx_dir_mailbox *m, char delivery_id_r[SBX_ID_HEX],
					  uint64_t *bytes_r, char **error_r);
/* Steps 1-4 in one call. delivery_id_r gets the spool entry's id (OK) or the earlier
 * one (DUPLICATE); *bytes_r the message bytes stored; *error_r a one-line
 * reason for every status but OK and DUPLICATE. */
enum sbx_deliver_status sbx_deliver_spool(struct sbx_dir *dir, const char *state_dir,
					  const struct sbx_deliver_req *r,
					  char delivery_id_r[SBX_ID_HEX], uint64_t *bytes_r,
					  char **error_r);

/*
 * Loop protection: the Received: and Delivered-To: fields in msg's header
 * block, counted over the bytes as lmtpd got them, before its own fields
 * are prepended. lmtpd refuses every recipient of a message with more than
 * max_hops of them (554 5.4.6).
 *
 * The header block ends at the first empty line (CRLF CRLF or LF LF), or,
 * as in Postfix's cleanup, at the first line that is neither a header
 * field nor the continuation of one (a line starting with a space or tab
 * after a field). A field counts when its name is Received or Delivered-To
 * in any case, white space allowed before the colon (obsolete syntax,
 * which Postfix also takes); a folded field counts once, and nothing in a
 * continuation line or the body counts. One pass over at most len bytes,
 * no allocation; the count saturates at UINT_MAX.
 */
unsigned sbx_deliver_hops(const char *msg, size_t len);

/* The fields prepended to msg: "Delivered-To: <to>" and, when received is
 * given, "Received: <received>", each ending like msg's first line (CRLF
 * or LF). malloc'd. */
char *sbx_deliver_headers(const char *msg, size_t len, const char *delivered_to,
			  const char *received);
#endif
