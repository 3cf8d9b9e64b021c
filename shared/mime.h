/*
 * mime.h - IMAP4rev1 (RFC 3501 7.4.2) ENVELOPE, BODYSTRUCTURE and BODY of a
 * raw message, computed on the raw bytes (never modified).
 *
 * Semantics follow Dovecot 2.3 where RFC 3501 leaves room (see
 * tests/data/mime/README): sizes count a bare LF as CRLF, lines are the
 * number of LFs of a part body, a bare CR is not a line end, header values
 * are unfolded but never RFC 2047/2231 decoded.
 *
 * Limits (attacker-controlled input): multipart / message/rfc822 nesting
 * deeper than SBX_MIME_MAX_DEPTH, and every multipart or message part met
 * after SBX_MIME_MAX_PARTS parts, are not descended into: such a part is
 * reported as an opaque ("application" "octet-stream" NIL ...) basic body
 * covering its raw bytes, so the output stays grammatical and bounded;
 * parts of a multipart past SBX_MIME_MAX_PARTS are left out of the list.
 */
#ifndef SBX_MIME_H
#define SBX_MIME_H
#include <stddef.h>
#include <stdint.h>

#define SBX_MIME_MAX_DEPTH    32     /* nested multipart / message levels */
#define SBX_MIME_MAX_PARTS 10000     /* body parts per message */

struct sbx_mime_info {
	char *envelope;       /* ENVELOPE value, "(...)" */
	char *bodystructure;  /* BODYSTRUCTURE value with extension data */
	char *body;           /* BODY value (non-extensible) */
	uint64_t size;        /* RFC822.SIZE: octets, a bare LF counted as CRLF */
};

/* One-time library initialisation (GMime/glib); thread-safe, idempotent. */
int sbx_mime_init(void);
/* Compute the three strings of msg[0..len). 0, or -1 with *error_r set
 * (malloc'd) on an internal failure; malformed MIME is never an error. */
int sbx_mime_parse(const char *msg, size_t len, struct sbx_mime_info *info_r,
    char **error_r);
/* Free the strings of info and zero it; NULL-safe. */
void sbx_mime_info_free(struct sbx_mime_info *info);
#endif
