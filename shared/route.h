/*
 * route.h - sealbox-milter's routing decisions (ARCHITECTURE.md "Routing
 * (milter) and delivery (lmtpd)") as plain functions over directory.db,
 * so they can be tested without libmilter or Postfix.
 *
 * Per message: sbx_route_msg_new, then sbx_route_rcpt for every RCPT,
 * sbx_route_eoh (optional: only when the MTA sends end-of-headers),
 * sbx_route_eom (the envelope rewrite plan), sbx_route_msg_free. No
 * header is looked at: loop protection is sealbox-lmtpd's, over the
 * delivered message (deliver.h sbx_deliver_hops), and Postfix's own
 * hopcount_limit.
 *
 * RCPT decisions (the argument exactly as received, "<User+Tag@Example.COM>"
 * from smtpd, a bare address from cleanup's non-SMTP emulation):
 *   domain not hosted                       untouched (Postfix decides)
 *   internal domain (mailbox_domain,        550 5.1.1 <addr>: Recipient address
 *     webhook_domain, unknown_domain,           rejected: internal address
 *     anything under sealbox.internal)
 *   hosted, no alias matches                550 5.1.1 <addr>: Recipient address
 *                                               rejected: no such user
 *   only forwarding loops                   550 5.4.6 ... mail forwarding loop
 *   forwards nested deeper than             550 5.4.6 ... too many forwards
 *     SBX_MAX_FORWARD_DEPTH, or more than
 *     SBX_MAX_FORWARD_EXPAND addresses
 *   every target a full mailbox             452 4.2.2 ... mailbox full
 *   more than max_recipients hosted RCPTs   452 4.5.3 Error: too many recipients
 *     or distinct targets in the message
 *   directory.db error                      451 4.3.0 ... Temporary lookup failure
 *   otherwise                               accepted; rewritten at EOM
 * Lookup: exact -> plus-addressing -> regex -> catch-all (sbx_dir_resolve).
 * A forward into a hosted domain is resolved again (Postfix never shows a
 * milter the recipients it adds), each alias at most once per RCPT, so a
 * cycle ends where it closes; a forward to an address no alias matches
 * becomes an unknown-domain target (bounced by Postfix with 5.1.1).
 *
 * Non-SMTP mail (non_smtpd_milters: sendmail, pickup) cannot be refused
 * per recipient: cleanup then defers the whole message. There internal
 * addresses are left alone (local submission is trusted, and "postsuper
 * -r" re-queues mail already rewritten), every other 5xx RCPT decision
 * above becomes a rewrite to <x>@unknown_domain at EOM,
 * a full mailbox is left to lmtpd (452 per target, Postfix retries), and a
 * directory error or too many recipients is answered at EOH/EOM for the
 * whole message.
 *
 * Nothing here blocks except the SQLite reads; nothing here is
 * thread-safe: one thread uses an sbx_route_db at a time, one sbx_route_msg
 * per message.
 */
#ifndef SBX_ROUTE_H
#define SBX_ROUTE_H
#include <stddef.h>
#include <stdint.h>

struct sbx_dir;

struct sbx_route_cfg {
	const char *mailbox_domain;   /* borrowed; compared case-insensitively */
	const char *webhook_domain;
	const char *unknown_domain;
	unsigned max_recipients;      /* hosted RCPTs, and distinct targets, per message */
};
/* The compiled-in defaults (the config defaults of sealbox.conf(5)). */
void sbx_route_cfg_default(struct sbx_route_cfg *cfg);

/*
 * A read-only directory.db connection plus a cache of the hosted domains,
 * reloaded whenever PRAGMA data_version says another connection committed
 * (sealboxctl domain add works without a restart). Aliases are never
 * cached: every lookup runs in a fresh read transaction and sees the last
 * commit.
 */
struct sbx_route_db;
int sbx_route_db_open(const char *state_dir, struct sbx_route_db **db_r, char **error_r);
void sbx_route_db_close(struct sbx_route_db **db);
struct sbx_dir *sbx_route_db_dir(struct sbx_route_db *db);
/* domain in any case, no trailing dot: 1 hosted, 0 not, -1 + *error_r. */
int sbx_route_domain_hosted(struct sbx_route_db *db, const char *domain, char **error_r);

enum sbx_route_result {
	SBX_ROUTE_PASS = 0,   /* not ours: untouched, continue */
	SBX_ROUTE_ROUTED,     /* hosted, targets recorded: continue */
	SBX_ROUTE_REWRITE,    /* non-SMTP unknown: to unknown_domain at EOM; continue */
	SBX_ROUTE_LATER,      /* non-SMTP failure, answered at EOH or EOM; continue */
	SBX_ROUTE_REJECT,     /* answer code/xcode/text now (5xx) */
	SBX_ROUTE_DEFER,      /* answer code/xcode/text now (4xx) */
};

#define SBX_ROUTE_TEXT_MAX 400

struct sbx_route_reply {
	enum sbx_route_result result;
	const char *code;             /* "550", or NULL: continue */
	const char *xcode;            /* "5.1.1" */
	/* Reply text: printable ASCII (controls and non-ASCII bytes of the
	 * client's address as '?'); '%' is not escaped. */
	char text[SBX_ROUTE_TEXT_MAX];
	/* For the log, malloc'd or NULL: the targets ("mailbox:ID
	 * forward:ADDR ...") or the reason; never the client's raw bytes. */
	char *detail;
};
void sbx_route_reply_clear(struct sbx_route_reply *r);

struct sbx_route_msg;
/* cfg must outlive the message. non_smtp: see above. */
struct sbx_route_msg *sbx_route_msg_new(const struct sbx_route_cfg *cfg, int non_smtp);
void sbx_route_msg_free(struct sbx_route_msg **m);
/* SIZE= from MAIL FROM (0 = not given): a mailbox that cannot take that
 * many more bytes counts as full. */
void sbx_route_msg_set_size(struct sbx_route_msg *m, uint64_t size);

/*
 * One RCPT: arg exactly as received, params its ESMTP parameters
 * (NULL-terminated, may be NULL). NOTIFY= is kept and passed on with the
 * rewritten recipients; the client's ORCPT= is not (ORCPT becomes the
 * address the client gave, which lmtpd reports as the alias). db NULL
 * means directory.db could not be opened: a directory error. Returns
 * r->result; r must be cleared with sbx_route_reply_clear.
 */
enum sbx_route_result sbx_route_rcpt(struct sbx_route_msg *m, struct sbx_route_db *db,
				     const char *arg, char *const *params,
				     struct sbx_route_reply *r);

/* The verdict once the recipients are known, at end of headers (when the
 * MTA sends it) and again inside sbx_route_eom: -1 with the reply in r (a
 * non-SMTP failure kept for the whole message), 0 when EOM has a rewrite
 * to do, 1 when the message has no hosted recipient (the milter may
 * accept it now). */
int sbx_route_eoh(struct sbx_route_msg *m, struct sbx_route_reply *r);

/*
 * The envelope rewrite, in the order to apply it: first one delete per
 * distinct hosted RCPT argument, exactly as received (Postfix compares it
 * with strcmp against the unmodified RCPT TO), then one add per distinct
 * target, in RCPT order; a target reached from several RCPTs is added
 * once, with the first one's ORCPT:
 *   mailbox   <ID@mailbox_domain>
 *   webhook   <WEBHOOK-ID@webhook_domain>
 *   forward   <address>  (local part quoted when it is not a dot-atom)
 *   unknown   <LOCAL@unknown_domain>, LOCAL = "user=example.com" when that
 *             is a dot-atom of at most 64 bytes, else "u" and 32 hex
 *             digits of a hash of the address
 * each with args "ORCPT=" sbx_orcpt_encode(RCPT address without <>)
 * [" NOTIFY=" the client's value].
 * Returns 0 and the plan (possibly empty), or -1 with the reply in r (see
 * sbx_route_eoh). Free the plan with sbx_route_ops_free.
 */
struct sbx_route_op {
	int add;                      /* 0: delete rcpt; 1: add rcpt with args */
	char *rcpt;
	char *args;                   /* add only; NULL when there is none */
};
int sbx_route_eom(struct sbx_route_msg *m, struct sbx_route_op **ops_r, size_t *n_r,
		  struct sbx_route_reply *r);
void sbx_route_ops_free(struct sbx_route_op *ops, size_t n);
#endif
