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

/* A leaf body (a part that is neither multipart nor message/rfc822):
 * raw[off .. off + len), the bytes as transmitted (still encoded). */
struct sbx_mime_leaf {
	size_t off, len;
};

struct sbx_mime_info {
	char *envelope;       /* ENVELOPE value, "(...)" */
	char *bodystructure;  /* BODYSTRUCTURE value with extension data */
	char *body;           /* BODY value (non-extensible) */
	uint64_t size;        /* RFC822.SIZE: octets, a bare LF counted as CRLF */
	/* The part table: every part's kind and raw offsets as a tree (section
	 * numbers are resolved on it), in a printable, versioned form the
	 * store keeps beside the message, so that
	 * sbx_mime_fetch_section() serves BODY[1.2.MIME] or BODY[2.TEXT]
	 * without re-parsing the MIME structure. */
	char *sections;
	size_t hdr_len;       /* top-level header, blank line included */
	struct sbx_mime_leaf *leaves;  /* leaf bodies in offset order */
	size_t nleaves;
	/* Top-level header values, unfolded, not decoded; NULL when absent. */
	char *date, *message_id, *in_reply_to, *references;
};

/* One-time library initialisation (GMime/glib); thread-safe, idempotent. */
int sbx_mime_init(void);
/* Compute the three strings of msg[0..len). 0, or -1 with *error_r set
 * (malloc'd) on an internal failure; malformed MIME is never an error. */
int sbx_mime_parse(const char *msg, size_t len, struct sbx_mime_info *info_r,
    char **error_r);
/*
 * sections is versioned ("v1\n" + one line per part, see mime.c) and may be
 * stored: sbx_mime_fetch_section() checks it against len and refuses a
 * damaged one. leaves never overlap and lie inside msg; a multipart without
 * parts has none. hdr_len is the offset of the top-level body.
 */
/*
 * The bytes of IMAP section spec (the text between "BODY[" and "]":
 * "", "HEADER", "TEXT", "1", "1.2.MIME", "2.HEADER", "2.TEXT",
 * "HEADER.FIELDS (From To)", "1.HEADER.FIELDS.NOT (X-A)", case-insensitive)
 * of msg[0..len), whose part table is sections (from sbx_mime_parse of the
 * same bytes). 0 with *out_r malloc'd (NUL-terminated, *outlen_r bytes;
 * empty when the part does not exist), -1 with *error_r on a malformed
 * spec ("invalid section spec: ...") or a damaged table ("damaged section
 * table: ..."). Answers are Dovecot 2.3.19's (never NIL: a missing part
 * is empty) once the caller converts a LF without CR to CRLF and NUL to
 * 0x80, as Dovecot does on output; the bytes are otherwise raw. Limits:
 * spec <= 1024 bytes, <= 100 header field names, part numbers of <= 10
 * digits and <= SBX_MIME_MAX_DEPTH + 1 components.
 */
int sbx_mime_fetch_section(const char *msg, size_t len, const char *sections,
    const char *spec, char **out_r, size_t *outlen_r, char **error_r);
/* 1 if spec is a well-formed section spec, 0 if not. */
int sbx_mime_section_valid(const char *spec);
/* Free the strings of info and zero it; NULL-safe. */
void sbx_mime_info_free(struct sbx_mime_info *info);
#endif
