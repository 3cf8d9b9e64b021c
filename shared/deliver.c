/* deliver.c - see deliver.h. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "deliver.h"
#include "spool.h"
#include "util.h"

char *
sbx_deliver_headers(const char *msg, size_t len, const char *delivered_to, const char *received)
{
	const char *nl = memchr(msg, '\n', len);
	const char *eol = nl != NULL && nl > msg && nl[-1] == '\r' ? "\r\n" :
			  nl != NULL ? "\n" : "\r\n";
	struct sbx_buf b = { 0 };

	sbx_buf_appendf(&b, "Delivered-To: %s%s", delivered_to, eol);
	if (received != NULL)
		sbx_buf_appendf(&b, "Received: %s%s", received, eol);
	sbx_buf_append(&b, "", 1);
	return b.data;
}

/* Does the field name of this header line (len bytes, no line end) match
 * name? The name, optional white space, then ':'. */
static int
field_is(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name), i;

	if (len <= n || strncasecmp(line, name, n) != 0)
		return 0;
	for (i = n; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	return i < len && line[i] == ':';
}

/* A header field line: a name, optional white space, ':'. The name is
 * RFC 5322 ftext plus 8-bit bytes, which Postfix's is_header() also
 * takes: anything but controls, space, DEL and ':'. */
static int
is_field(const char *line, size_t len)
{
	size_t i = 0;

	while (i < len && (unsigned char)line[i] > ' ' && line[i] != 0x7f && line[i] != ':')
		i++;
	if (i == 0)
		return 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	return i < len && line[i] == ':';
}

unsigned
sbx_deliver_hops(const char *msg, size_t len)
{
	const char *p = msg, *end;
	unsigned hops = 0;
	int in_field = 0;

	if (msg == NULL)
		return 0;
	end = msg + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *next = nl != NULL ? nl + 1 : end;
		size_t n = (size_t)((nl != NULL ? nl : end) - p);

		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == 0)
			break;                          /* the empty line */
		if (p[0] == ' ' || p[0] == '\t') {
			if (!in_field)
				break;                  /* not a header block */
		} else if (is_field(p, n)) {
			in_field = 1;
			if ((field_is(p, n, "Received") || field_is(p, n, "Delivered-To")) &&
			    hops < UINT_MAX)
				hops++;
		} else {
			break;                          /* the body starts here */
		}
		p = next;
	}
	return hops;
}

/* A header value must stay one line: no CR, LF or NUL from the envelope. */
static int
header_safe(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s == '\r' || *s == '\n')
			return 0;
	return 1;
}

enum sbx_deliver_status
sbx_deliver_check(struct sbx_dir *dir, const struct sbx_deliver_req *r, struct sbx_dir_mailbox *m_r,
		  char delivery_id_r[SBX_ID_HEX], char **error_r)
{
	char *err = NULL, seen[SBX_ID_HEX] = "";
	uint64_t need;
	int rc;

	memset(m_r, 0, sizeof(*m_r));
	if (!sbx_is_id(r->mailbox_id)) {
		*error_r = sbx_xstrdup("malformed mailbox id");
		return SBX_DELIVER_UNKNOWN;
	}
	if (sbx_dir_mailbox_find(dir, r->mailbox_id, m_r, &err) < 0) {
		/* "no such mailbox" is permanent; anything else (a locked or
		 * damaged directory.db) is not */
		int unknown = err != NULL && strncmp(err, "no such mailbox", 15) == 0;

		*error_r = err;
		return unknown ? SBX_DELIVER_UNKNOWN : SBX_DELIVER_TEMPFAIL;
	}
	if (r->queue_id != NULL && r->queue_id[0] != '\0') {
		rc = sbx_dir_delivery_seen(dir, r->queue_id, r->rcpt, seen, error_r);
		if (rc != 0) {
			sbx_dir_mailbox_clear(m_r);
			if (rc > 0)
				memcpy(delivery_id_r, seen, SBX_ID_HEX);
			return rc > 0 ? SBX_DELIVER_DUPLICATE : SBX_DELIVER_TEMPFAIL;
		}
	}
	/* the prepended fields are small next to any quota: count the body */
	need = (uint64_t)r->len + SBX_DELIVER_HEADER_ALLOWANCE;
	if (m_r->quota_bytes > 0 &&
	    (m_r->usage_bytes > m_r->quota_bytes || need > m_r->quota_bytes - m_r->usage_bytes)) {
		*error_r = sbx_xasprintf("mailbox full (%llu of %llu bytes used, message %zu bytes)",
					 (unsigned long long)m_r->usage_bytes,
					 (unsigned long long)m_r->quota_bytes, r->len);
		sbx_dir_mailbox_clear(m_r);
		return SBX_DELIVER_OVER_QUOTA;
	}
	return SBX_DELIVER_OK;
}

enum sbx_deliver_status
sbx_deliver_write(const char *state_dir, const struct sbx_deliver_req *r,
		  const struct sbx_dir_mailbox *m, char delivery_id_r[SBX_ID_HEX], uint64_t *bytes_r,
		  char **error_r)
{
	struct sbx_spool_meta meta;
	struct sbx_spool_writer *w = NULL;
	const char *to;
	char *hdr;
	size_t hlen;

	*bytes_r = 0;
	to = r->orcpt != NULL && r->orcpt[0] != '\0' ? r->orcpt : m->address;
	if (!header_safe(to) || (r->received != NULL && !header_safe(r->received))) {
		*error_r = sbx_xstrdup("line break in a header value");
		return SBX_DELIVER_TEMPFAIL;
	}
	hdr = sbx_deliver_headers(r->msg, r->len, to, r->received);
	hlen = strlen(hdr);
	memset(&meta, 0, sizeof(meta));
	meta.arrival = r->arrival;
	meta.mail_from = (char *)(r->mail_from != NULL ? r->mail_from : "");
	meta.orcpt = (char *)to;
	meta.size = hlen + r->len;
	if (delivery_id_r[0] != '\0' && sbx_is_id(delivery_id_r))
		memcpy(meta.delivery_id, delivery_id_r, SBX_ID_HEX);
	else if (r->delivery_id != NULL && sbx_is_id(r->delivery_id))
		memcpy(meta.delivery_id, r->delivery_id, SBX_ID_HEX);
	if (sbx_spool_writer_begin(state_dir, r->mailbox_id, m->spool_pk, &meta, &w, error_r) < 0 ||
	    sbx_spool_writer_write(w, hdr, hlen, error_r) < 0 ||
	    sbx_spool_writer_write(w, r->msg, r->len, error_r) < 0) {
		sbx_spool_writer_abort(&w);
		free(hdr);
		return SBX_DELIVER_TEMPFAIL;
	}
	free(hdr);
	if (sbx_spool_writer_commit(&w, delivery_id_r, error_r) < 0)
		return SBX_DELIVER_TEMPFAIL;
	*bytes_r = meta.size;
	return SBX_DELIVER_OK;
}

enum sbx_deliver_status
sbx_deliver_spool(struct sbx_dir *dir, const char *state_dir, const struct sbx_deliver_req *r,
		  char delivery_id_r[SBX_ID_HEX], uint64_t *bytes_r, char **error_r)
{
	struct sbx_dir_mailbox m;
	enum sbx_deliver_status st;

	*bytes_r = 0;
	st = sbx_deliver_check(dir, r, &m, delivery_id_r, error_r);
	if (st != SBX_DELIVER_OK)
		return st;
	st = sbx_deliver_write(state_dir, r, &m, delivery_id_r, bytes_r, error_r);
	sbx_dir_mailbox_clear(&m);
	return st;
}
