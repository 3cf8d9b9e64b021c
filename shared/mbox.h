/*
 * mbox.h - mboxrd export and import (sealboxctl export/import).
 *
 * Writing: each message becomes "From SENDER DATE\n" + the message with
 * every line matching ^>*From  given one more '>' + a newline if the
 * message did not end with one + an empty line.
 * Reading undoes exactly that: every line starting with "From " starts a
 * new message, one '>' is removed from ^>+From  lines, and the empty line
 * before the next separator is dropped. A message that did not end with a
 * newline comes back with one (an mbox limitation); all other bytes,
 * CRLF line ends included, round-trip exactly.
 */
#ifndef SBX_MBOX_H
#define SBX_MBOX_H
#include <stddef.h>
#include <time.h>

#include "util.h"

/* Append one record. sender: envelope sender or NULL for MAILER-DAEMON. */
void sbx_mbox_write(struct sbx_buf *out, const char *sender, time_t date, const char *msg, size_t len);

/* Iterate over the messages of an mboxrd buffer. Start with *pos = 0.
 * Returns 1 and the unquoted message in *msg_r (reset first; caller frees
 * with sbx_buf_free) plus its From_ line date in *date_r (or 0 when
 * unparsable); 0 at the end; -1 + *error_r when data does not start with a
 * "From " line or a message exceeds max bytes. */
int sbx_mbox_next(const char *data, size_t len, size_t *pos, size_t max,
		  struct sbx_buf *msg_r, time_t *date_r, char **error_r);
#endif
