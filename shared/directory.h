/*
 * directory.h - directory.db: routing and public per-mailbox data
 * (ARCHITECTURE.md "State directory"). Plain SQLite, WAL, busy_timeout,
 * mode 0600, at STATE/directory.db. No message data and no secret that opens
 * a mailbox: only domains, aliases, targets, quotas, usage counters, each
 * mailbox's spool public key and its key envelopes (which need the password).
 *
 * Addresses are stored normalised: local part and domain lower-cased (ASCII),
 * surrounding <> and whitespace refused. Alias forms:
 *   "user@example.com"        exact
 *   "*@example.com"           catch-all of the domain
 *   "~REGEX@example.com"      POSIX ERE on the local part, anchored (^...$)
 * Lookup order (sbx_dir_resolve): exact -> plus-addressing (user+tag@ folds
 * to user@) -> regex aliases in id order -> catch-all.
 * Mailbox ids are 32 random hex digits, never derived from the address.
 *
 * Every function returns 0 on success and -1 with a malloc'd one-line
 * *error_r on failure, unless documented otherwise. Writers use
 * BEGIN IMMEDIATE; each mutating call is one transaction.
 */
#ifndef SBX_DIRECTORY_H
#define SBX_DIRECTORY_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "util.h"

struct sqlite3;
struct sbx_dir;

#define SBX_DIR_CREATE 0x1   /* create directory.db (and the schema) if missing */
#define SBX_DIR_RDONLY 0x2   /* read-only connection (milter, lmtpd lookups) */

int sbx_dir_open(const char *state_dir, int flags, struct sbx_dir **dir_r, char **error_r);
void sbx_dir_close(struct sbx_dir **dir);
struct sqlite3 *sbx_dir_db(struct sbx_dir *dir);

/* Validate and normalise an address ("Local@Example.COM" -> "local@example.com").
 * allow_forms: also accept "*@domain" and "~regex@domain" (alias forms). */
int sbx_addr_normalize(const char *in, int allow_forms, char **out_r, char **error_r);
/* Validate a webhook URL: https:// (or http:// to loopback), length bound,
 * a host, no whitespace or control characters. */
int sbx_url_validate(const char *url, char **error_r);

/* Domains. domain_del refuses while mailboxes or aliases use the domain. */
int sbx_dir_domain_add(struct sbx_dir *dir, const char *domain, char **error_r);
int sbx_dir_domain_del(struct sbx_dir *dir, const char *domain, char **error_r);
/* 1 if hosted, 0 if not, -1 on error. */
int sbx_dir_domain_exists(struct sbx_dir *dir, const char *domain, char **error_r);
int sbx_dir_domain_list(struct sbx_dir *dir, char ***names_r, size_t *n_r, char **error_r);
void sbx_strv_free(char **v, size_t n);

/* Mailboxes. */
struct sbx_dir_mailbox {
	char id[SBX_ID_HEX];
	char *address;
	uint64_t quota_bytes;     /* 0 = unlimited */
	uint64_t usage_bytes;
	uint64_t usage_msgs;
	unsigned char spool_pk[32];
};
void sbx_dir_mailbox_clear(struct sbx_dir_mailbox *m);

/* Add a mailbox and its first key envelope; also adds the exact alias
 * address -> mailbox. id_r is in/out: when id_r[0] != '\0' it must hold the
 * id to use (32 lower-case hex digits, not already a mailbox; the envelope's
 * AD was sealed with it), otherwise a fresh random id is written into it.
 * Callers without an id must pass id_r[0] == '\0'. The domain must be
 * hosted; the address must not already be a mailbox or alias. */
int sbx_dir_mailbox_add(struct sbx_dir *dir, const char *address, uint64_t quota_bytes,
			const unsigned char spool_pk[32], const char *envelope_id,
			const unsigned char *envelope, size_t envelope_len,
			char id_r[SBX_ID_HEX], char **error_r);
/* Find by address (the mailbox's own address, or an exact alias whose single
 * target is a mailbox) or by id. Returns 0 found, -1 + *error_r
 * ("no such mailbox: ADDRESS") otherwise. */
int sbx_dir_mailbox_find(struct sbx_dir *dir, const char *address_or_id,
			 struct sbx_dir_mailbox *m_r, char **error_r);
int sbx_dir_mailbox_list(struct sbx_dir *dir, struct sbx_dir_mailbox **v_r, size_t *n_r, char **error_r);
void sbx_dir_mailbox_list_free(struct sbx_dir_mailbox *v, size_t n);
/* Delete the row, its envelopes, every target pointing to it and aliases
 * left without targets. The caller removes files (under the mailbox lock). */
int sbx_dir_mailbox_del(struct sbx_dir *dir, const char *mailbox_id, char **error_r);
int sbx_dir_mailbox_set_quota(struct sbx_dir *dir, const char *mailbox_id, uint64_t quota_bytes, char **error_r);
/* Usage counters: add deltas (may be negative) or set absolute values. */
int sbx_dir_usage_add(struct sbx_dir *dir, const char *mailbox_id, int64_t dbytes, int64_t dmsgs, char **error_r);
int sbx_dir_usage_set(struct sbx_dir *dir, const char *mailbox_id, uint64_t bytes, uint64_t msgs, char **error_r);

/* lmtpd's record of deliveries answered 250, by (Postfix queue id from
 * XFORWARD IDENT, recipient as received), kept SBX_DIR_DELIVERED_KEEP
 * seconds. seen: 1 + the delivery id when recorded, 0 when not, -1. */
#define SBX_DIR_DELIVERED_KEEP (7 * 24 * 3600)
int sbx_dir_delivery_seen(struct sbx_dir *dir, const char *queue_id, const char *rcpt,
			  char delivery_id_r[SBX_ID_HEX], char **error_r);
struct sbx_dir_delivery {
	const char *mailbox_id;
	const char *queue_id;     /* NULL or "": no dedup record */
	const char *rcpt;
	const char *delivery_id;
	uint64_t bytes;           /* spooled bytes, added to usage_bytes */
};
/* One transaction for a batch of spooled deliveries: usage counters
 * (+bytes, +1 message each) and the dedup records; old records expire. */
int sbx_dir_deliveries_record(struct sbx_dir *dir, const struct sbx_dir_delivery *v, size_t n,
			      time_t now, char **error_r);

/* Key envelopes of a mailbox (at most SBX_MAX_ENVELOPES). */
struct sbx_dir_envelope {
	char *envelope_id;
	unsigned char *blob;
	size_t len;
};
int sbx_dir_envelopes_get(struct sbx_dir *dir, const char *mailbox_id,
			  struct sbx_dir_envelope **v_r, size_t *n_r, char **error_r);
void sbx_dir_envelopes_free(struct sbx_dir_envelope *v, size_t n);
/* Insert or replace one envelope (password change rewrites one row). */
int sbx_dir_envelope_put(struct sbx_dir *dir, const char *mailbox_id, const char *envelope_id,
			 const unsigned char *blob, size_t len, char **error_r);
/* Replace one envelope only if it still holds old_blob (a password change
 * must not overwrite a concurrent one); -1 + *error_r when it changed. */
int sbx_dir_envelope_replace(struct sbx_dir *dir, const char *mailbox_id, const char *envelope_id,
			     const unsigned char *old_blob, size_t old_len,
			     const unsigned char *blob, size_t len, char **error_r);
int sbx_dir_envelope_del(struct sbx_dir *dir, const char *mailbox_id, const char *envelope_id, char **error_r);

/* Aliases and targets. */
enum sbx_target_kind { SBX_TARGET_MAILBOX = 1, SBX_TARGET_FORWARD = 2, SBX_TARGET_WEBHOOK = 3 };
struct sbx_target {
	enum sbx_target_kind kind;
	char *value;              /* mailbox id | forward address | webhook URL */
	char webhook_id[SBX_ID_HEX];  /* webhook targets: id used in <id>@webhook... */
	unsigned char *secret;    /* webhook signing secret (only from sbx_dir_webhook_get) */
	size_t secret_len;
};
void sbx_target_free(struct sbx_target *t);
void sbx_targets_free(struct sbx_target *v, size_t n);

/* Parse "mailbox:ADDRESS" | "forward:ADDRESS" | "webhook:URL" (the mailbox
 * is looked up, so "mailbox:" targets carry the mailbox id in value). */
int sbx_dir_target_parse(struct sbx_dir *dir, const char *spec, struct sbx_target *t_r, char **error_r);
/* Add an alias with 1..SBX_MAX_TARGETS_PER_ALIAS targets. A webhook target
 * gets a new webhook id (written back into targets[i].webhook_id) and uses
 * targets[i].secret as its signing secret. Duplicate alias -> error. */
int sbx_dir_alias_add(struct sbx_dir *dir, const char *alias, struct sbx_target *targets, size_t n, char **error_r);
int sbx_dir_alias_del(struct sbx_dir *dir, const char *alias, char **error_r);
struct sbx_dir_alias {
	char *alias;
	struct sbx_target *targets;
	size_t ntargets;
};
int sbx_dir_alias_list(struct sbx_dir *dir, struct sbx_dir_alias **v_r, size_t *n_r, char **error_r);
void sbx_dir_alias_list_free(struct sbx_dir_alias *v, size_t n);
/* Resolve a recipient address. 1 + targets when found (matched_alias_r gets
 * the alias that matched, malloc'd, may be NULL), 0 when unknown, -1 error. */
int sbx_dir_resolve(struct sbx_dir *dir, const char *address, struct sbx_target **targets_r,
		    size_t *n_r, char **matched_alias_r, char **error_r);
/* Webhook by id, with URL and secret. */
int sbx_dir_webhook_get(struct sbx_dir *dir, const char *webhook_id, struct sbx_target *t_r, char **error_r);
#endif
