/*
 * mimetext.h - the decoded text of a message, for full-text search
 * (IMAP SEARCH is a case-insensitive substring match on decoded text).
 *
 * Header fields are RFC 2047 decoded; address fields are rendered as
 * "Name <addr>, ..." with decoded display names; `headers` holds every
 * top-level field, decoded, for TEXT and HEADER search. The body is the
 * text of every text part (attachments included; text/html reduced to text) and
 * of every message/rfc822 sub-message (its From and Subject first), with
 * Content-Transfer-Encoding undone and the charset converted to UTF-8,
 * parts separated by "\n". Non-text parts are never included.
 *
 * Every string is UTF-8 (invalid sequences replaced by U+FFFD, NUL bytes
 * by a space), NUL-terminated and never NULL ("" when absent). The body is
 * cut at max_body bytes on a character boundary. The walk stops at
 * SBX_MIME_MAX_DEPTH levels and SBX_MIME_MAX_PARTS parts (mime.h).
 */
#ifndef SBX_MIMETEXT_H
#define SBX_MIMETEXT_H
#include <stddef.h>

#include <glib.h>

#define SBX_MIME_TEXT_MAX_HEADERS 65536   /* bytes of `headers` */

struct sbx_mime_text {
	char *from;
	char *to;
	char *cc;
	char *bcc;
	char *subject;
	/* Every top-level header field in message order, one per line as
	 * "Name: value\n", the value unfolded, RFC 2047 decoded and trimmed;
	 * at most SBX_MIME_TEXT_MAX_HEADERS bytes (cut on a character
	 * boundary). The FTS column `hdrs` (store.h). */
	char *headers;
	char *body;
};

/* Extract the text of msg[0..len) (never modified). Calls sbx_mime_init().
 * 0, or -1 with *error_r set (malloc'd) on an internal failure; malformed
 * or garbage input is never an error (empty fields). */
int sbx_mime_text_extract(const char *msg, size_t len, size_t max_body,
    struct sbx_mime_text *t_r, char **error_r);
/* One raw header value raw[0..len) (the bytes after "Name:", folding
 * included) decoded exactly as for `headers`: made valid UTF-8, unfolded,
 * RFC 2047 decoded, trimmed. malloc'd, never NULL; calls sbx_mime_init().
 * search.c uses it for HEADER so that its matches agree with the FTS
 * column. */
char *sbx_mime_text_decode_header(const char *raw, size_t len);
/* Append s[0..n) to out as valid UTF-8: invalid bytes become U+FFFD,
 * NUL bytes nul_as (" " for search text, U+FFFD for JSON). */
void sbx_utf8_append_clean(GString *out, const char *s, size_t n, const char *nul_as);
/* Convert in[0..n) from charset (GMime's names; NULL or unknown = UTF-8)
 * to clean UTF-8 appended to out; bytes the converter rejects become
 * U+FFFD. */
void sbx_to_utf8(GString *out, const char *in, size_t n, const char *charset, const char *nul_as);

/* Free the strings of t and zero it; NULL-safe. */
void sbx_mime_text_free(struct sbx_mime_text *t);
#endif
