/*
 * mbox.h - mboxrd export and import (sealboxctl export/import), with the
 * mailbox state of each message (folder, flags, keywords) in a block of
 * sealbox's own header fields.
 *
 * Writing: each message becomes "From SENDER DATE\n" + the message with
 * every line matching ^>*From  given one more '>' + a newline if the
 * message did not end with one + an empty line.
 * Reading undoes exactly that: every line starting with "From " starts a
 * new message, one '>' is removed from ^>+From  lines, and the empty line
 * before the next separator is dropped. A message that did not end with a
 * newline comes back with one (an mbox limitation); all other bytes,
 * CRLF line ends included, round-trip exactly.
 *
 * The state block (sbx_mbox_write_state) goes in front of the message, as
 * its first lines, each ending like the message's first line (CRLF or LF):
 *
 *   X-Sealbox-Folder: Work/2026       every byte outside 0x21..0x7e, and
 *                                     '%', as %XX (UTF-8 bytes, spaces)
 *   X-Sealbox-Flags: \Seen \Flagged   system flags, this order:
 *                                     \Seen \Answered \Flagged \Deleted \Draft
 *   X-Sealbox-Keywords: $Forwarded x  keywords, space-separated
 *
 * An empty list is written as "X-Sealbox-Flags:" with nothing after it.
 * The From_ line carries the INTERNALDATE (UTC, seconds). Each field is one
 * line, never folded, so the block ends exactly after the last of them and
 * the message bytes that follow are untouched, even if they start with
 * white space or with X-Sealbox fields of their own.
 *
 * Reading (sbx_mbox_state_parse): the block is recognised only at the very
 * start of a message: "X-Sealbox-Folder:" first, then optionally
 * "X-Sealbox-Flags:", then optionally "X-Sealbox-Keywords:", each at most
 * once, names matched exactly. It is removed and gives the state; nothing
 * else in the message counts then. A message without it is read like other
 * tools write mboxes, and its header is left as it is:
 *   Status:           R = \Seen (O = old, ignored)
 *   X-Status:         A = \Answered, F = \Flagged, T = \Draft, D = \Deleted
 *   X-Keywords:       keywords, space- or comma-separated (Dovecot, mutt)
 *   X-Mozilla-Status: hex; 0x1 \Seen, 0x2 \Answered, 0x4 \Flagged,
 *                     0x8 \Deleted, 0x1000 $Forwarded (Thunderbird)
 *   X-Mozilla-Keys:   keywords, space-separated (Thunderbird)
 * These are looked for in the header (up to the first empty line, folded
 * lines unfolded), field names matched case-insensitively.
 */
#ifndef SBX_MBOX_H
#define SBX_MBOX_H
#include <stddef.h>
#include <time.h>

#include "util.h"

/* Bytes of the X-Sealbox block (all its lines); more is an error. A folder
 * of SBX_STORE_MAX_FOLDER_NAME bytes, all escaped, and SBX_STORE_MAX_KEYWORDS
 * keywords of the longest kind fit. */
#define SBX_MBOX_MAX_BLOCK 32768
/* Keywords kept per message (SBX_STORE_MAX_KEYWORDS); more are skipped
 * with a warning. */
#define SBX_MBOX_MAX_KEYWORDS 256
/* Decoded folder name (SBX_STORE_MAX_FOLDER_NAME); longer is an error. */
#define SBX_MBOX_MAX_FOLDER 512
/* Warnings kept per message; later ones are only counted. */
#define SBX_MBOX_MAX_WARNINGS 8

/* Append one record. sender: envelope sender or NULL for MAILER-DAEMON. */
void sbx_mbox_write(struct sbx_buf *out, const char *sender, time_t date, const char *msg, size_t len);

/* Append one record carrying the message's mailbox state: From_ line with
 * internaldate, the X-Sealbox block, then the message. flags: SBX_FLAG_*
 * (store.h); keywords: NULL or space-separated atoms (tokens with bytes
 * outside 0x21..0x7e are left out, as the reader would skip them). */
void sbx_mbox_write_state(struct sbx_buf *out, time_t internaldate, const char *folder,
			  unsigned flags, const char *keywords, const char *msg, size_t len);

/* Iterate over the messages of an mboxrd buffer. Start with *pos = 0.
 * Returns 1 and the unquoted message in *msg_r (reset first; caller frees
 * with sbx_buf_free) plus its From_ line date in *date_r (or 0 when
 * unparsable); 0 at the end; -1 + *error_r when data does not start with a
 * "From " line or a message exceeds max bytes. */
int sbx_mbox_next(const char *data, size_t len, size_t *pos, size_t max,
		  struct sbx_buf *msg_r, time_t *date_r, char **error_r);

struct sbx_mbox_state {
	int has_block;           /* the message started with an X-Sealbox block */
	char *folder;            /* from the block (malloc'd UTF-8), else NULL */
	unsigned flags;          /* SBX_FLAG_* */
	char *keywords;          /* malloc'd, "" or "kw1 kw2": tokens as found,
				  * not yet validated as IMAP atoms */
	size_t nkeywords;
	size_t skip;             /* length of the block: the message proper
				  * is msg + skip (0 without a block) */
	char *warnings[SBX_MBOX_MAX_WARNINGS];  /* things skipped (malloc'd) */
	size_t nwarnings;        /* how many of warnings[] are set */
	size_t more_warnings;    /* further warnings, not kept */
};
/* Read the state of one message (as sbx_mbox_next returned it). 0 and
 * *s_r filled (free with sbx_mbox_state_free, also after -1); -1 and
 * *error_r when the block is malformed: a folder that is empty, longer than
 * SBX_MBOX_MAX_FOLDER, badly escaped, not UTF-8 or holds a control
 * character, a block longer than
 * SBX_MBOX_MAX_BLOCK, or a block with no message after it. Unknown flags,
 * keyword tokens with control characters or 8-bit bytes, and keywords past
 * SBX_MBOX_MAX_KEYWORDS are skipped and reported in s_r->warnings. */
int sbx_mbox_state_parse(const char *msg, size_t len, struct sbx_mbox_state *s_r, char **error_r);
void sbx_mbox_state_free(struct sbx_mbox_state *s);

/* The folder escape of the X-Sealbox-Folder field: every byte outside
 * 0x21..0x7e, and '%', as %XX (upper-case hex). */
void sbx_mbox_folder_encode(struct sbx_buf *out, const char *folder);
/* Undo it for n bytes of s: malloc'd NUL-terminated name, or NULL and
 * *error_r (bad escape, a byte outside 0x21..0x7e, a control character
 * once decoded, not UTF-8, empty, or longer than SBX_MBOX_MAX_FOLDER bytes
 * once decoded). */
char *sbx_mbox_folder_decode(const char *s, size_t n, char **error_r);
#endif
