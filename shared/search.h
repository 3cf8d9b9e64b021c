/*
 * search.h - IMAP SEARCH over a folder of the mailbox store (store.h).
 *
 * A query is a tree of criteria (RFC 3501 6.4.4 and RFC 7162 MODSEQ); the
 * IMAP layer parses the command and maps session-level keys (sequence
 * sets, RECENT, NEW, OLD) to UID ranges. Text criteria are IMAP
 * semantics: case-insensitive substring match on the decoded text (RFC
 * 2047 headers, quoted-printable/base64 undone, charsets converted to
 * UTF-8, HTML reduced to text; mimetext.h). A needle of 3 or more
 * characters (not bytes: the trigram tokenizer finds nothing for fewer,
 * so one CJK character must scan) takes candidates from the FTS5 trigram
 * index, each verified by an exact substring match; shorter needles scan
 * the folder's decoded text. ASCII needles match ASCII case-insensitively;
 * others compare g_utf8_casefold() of both sides. The text searched is the
 * text indexed at append: SBX_STORE_FTS_MAX_BODY of body text and
 * SBX_MIME_TEXT_MAX_HEADERS of decoded header fields.
 *
 * Dates are days: BEFORE/ON/SINCE the UTC day of INTERNALDATE, SENT* the
 * Date: header's own calendar day (timezone ignored, RFC 3501). A message
 * with no usable Date: counts as sent on 1970-01-01, as Dovecot does.
 *
 * The search runs in one read transaction (a savepoint, so it also works
 * inside sbx_store_begin()) and reads message text only for text criteria;
 * flags, keywords, UIDs, MODSEQ, sizes and dates come from the messages
 * rows.
 */
#ifndef SBX_SEARCH_H
#define SBX_SEARCH_H
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define SBX_SEARCH_MAX_NODES 1000    /* criteria per query */
#define SBX_SEARCH_MAX_DEPTH 64      /* NOT/OR/AND nesting */
#define SBX_SEARCH_MAX_STRING 1024   /* bytes of one search string */

enum sbx_search_type {
	SBX_SEARCH_ALL,
	SBX_SEARCH_AND,        /* every child (children, nchildren) */
	SBX_SEARCH_OR,         /* any child */
	SBX_SEARCH_NOT,        /* children[0] does not match */
	SBX_SEARCH_FLAGS,      /* every flag of `flags` is set (UNSEEN = NOT) */
	SBX_SEARCH_KEYWORD,    /* keyword str is set (case-insensitive) */
	SBX_SEARCH_UID,        /* UID in ranges */
	SBX_SEARCH_TEXT,       /* header or body contains str ("" = all) */
	SBX_SEARCH_BODY,       /* body text contains str */
	SBX_SEARCH_FROM,
	SBX_SEARCH_TO,
	SBX_SEARCH_CC,
	SBX_SEARCH_BCC,
	SBX_SEARCH_SUBJECT,
	SBX_SEARCH_HEADER,     /* field `header` contains str ("" = present) */
	SBX_SEARCH_BEFORE,     /* INTERNALDATE's day (UTC) before `day` */
	SBX_SEARCH_ON,
	SBX_SEARCH_SINCE,      /* on or after */
	SBX_SEARCH_SENTBEFORE, /* Date: header's own calendar day */
	SBX_SEARCH_SENTON,
	SBX_SEARCH_SENTSINCE,
	SBX_SEARCH_LARGER,     /* RFC822.SIZE > num */
	SBX_SEARCH_SMALLER,    /* RFC822.SIZE < num */
	SBX_SEARCH_MODSEQ,     /* MODSEQ >= num */
};

struct sbx_search {
	enum sbx_search_type type;
	const char *str;       /* UTF-8 */
	const char *header;    /* SBX_SEARCH_HEADER field name */
	uint64_t num;
	unsigned flags;        /* SBX_FLAG_* */
	char day[11];          /* "YYYY-MM-DD" */
	const struct sbx_uid_range *ranges;
	size_t nranges;
	const struct sbx_search *children;
	size_t nchildren;
};

/* UIDs of folder's messages matching q, ascending: *uids_r is malloc'd
 * (even when *n_r is 0) and the caller frees it. AND of no children
 * matches everything, OR of none nothing; NOT takes exactly one child.
 * A malformed query is -1 with *error_r (malloc'd) naming the problem:
 * more than SBX_SEARCH_MAX_NODES criteria, nesting deeper than
 * SBX_SEARCH_MAX_DEPTH, a string longer than SBX_SEARCH_MAX_STRING or not
 * UTF-8, a NULL str for a text criterion or KEYWORD, a HEADER field name
 * that is not printable ASCII without ':', a day that is not a real
 * YYYY-MM-DD, NULL children or ranges with a non-zero count. An unknown
 * folder or a database error is -1 too. */
int sbx_store_search(struct sbx_store *st, const char *folder, const struct sbx_search *q,
		     uint32_t **uids_r, size_t *n_r, char **error_r);
#endif
