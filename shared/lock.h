/*
 * lock.h - the mailbox lock, STATE/mailboxes/ab/<id>.lock (flock LOCK_EX).
 * sealbox-imapd holds it while a mailbox is unlocked; sealboxctl
 * export/import/del and the spool import take it non-blocking and fail with
 * "mailbox in use by sealbox-imapd" when it is held.
 */
#ifndef SBX_LOCK_H
#define SBX_LOCK_H

/* STATE/mailboxes/<first two hex digits>/<id><suffix>, malloc'd; NULL when
 * mailbox_id is not 32 hex digits (never a path outside the state dir).
 * suffix: ".sqlite", ".lock". */
char *sbx_mailbox_path(const char *state_dir, const char *mailbox_id, const char *suffix);

/* Take the lock: blocking when wait is 1, LOCK_NB otherwise. Creates the
 * lock file (0600) and its directory. Returns an fd (>= 0) to pass to
 * sbx_mailbox_unlock, or -1 + *error_r ("mailbox in use by sealbox-imapd"
 * when held elsewhere). */
int sbx_mailbox_lock(const char *state_dir, const char *mailbox_id, int wait, char **error_r);
void sbx_mailbox_unlock(int fd);
#endif
