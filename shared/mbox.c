/* mbox.c - see mbox.h. */
#include <string.h>
#include <time.h>

#include "mbox.h"

static int
is_from_quoted(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && p[i] == '>')
		i++;
	return n - i >= 5 && memcmp(p + i, "From ", 5) == 0;
}

void
sbx_mbox_write(struct sbx_buf *out, const char *sender, time_t date, const char *msg, size_t len)
{
	char when[64];
	struct tm tm;
	size_t pos = 0;

	gmtime_r(&date, &tm);
	strftime(when, sizeof(when), "%a %b %e %H:%M:%S %Y", &tm);
	sbx_buf_appendf(out, "From %s %s\n", sender && *sender ? sender : "MAILER-DAEMON", when);
	while (pos < len) {
		const char *nl = memchr(msg + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (msg + pos)) + 1 : len - pos;

		if (is_from_quoted(msg + pos, n))
			sbx_buf_append(out, ">", 1);
		sbx_buf_append(out, msg + pos, n);
		pos += n;
	}
	if (len == 0 || msg[len - 1] != '\n')
		sbx_buf_append(out, "\n", 1);
	sbx_buf_append(out, "\n", 1);
}

static time_t
parse_from_date(const char *line, size_t n)
{
	char buf[128];
	const char *sp;
	struct tm tm;

	/* "From SENDER Www Mmm dd hh:mm:ss yyyy" */
	if (n >= sizeof(buf))
		return 0;
	memcpy(buf, line, n);
	buf[n] = '\0';
	sp = strchr(buf + 5, ' ');
	if (sp == NULL)
		return 0;
	memset(&tm, 0, sizeof(tm));
	if (strptime(sp + 1, "%a %b %e %H:%M:%S %Y", &tm) == NULL)
		return 0;
	return timegm(&tm);
}

int
sbx_mbox_next(const char *data, size_t len, size_t *pos, size_t max,
	      struct sbx_buf *msg_r, time_t *date_r, char **error_r)
{
	size_t p = *pos;
	const char *nl;
	size_t n;

	msg_r->len = 0;
	if (p >= len)
		return 0;
	if (len - p < 5 || memcmp(data + p, "From ", 5) != 0) {
		*error_r = sbx_xasprintf("not an mbox file: expected a \"From \" line at byte %zu", p);
		return -1;
	}
	nl = memchr(data + p, '\n', len - p);
	n = nl ? (size_t)(nl - (data + p)) : len - p;
	*date_r = parse_from_date(data + p, n);
	p += n + (nl ? 1 : 0);
	while (p < len) {
		nl = memchr(data + p, '\n', len - p);
		n = nl ? (size_t)(nl - (data + p)) + 1 : len - p;
		if (n >= 5 && memcmp(data + p, "From ", 5) == 0)
			break;
		if (data[p] == '>' && is_from_quoted(data + p, n))
			sbx_buf_append(msg_r, data + p + 1, n - 1);
		else
			sbx_buf_append(msg_r, data + p, n);
		if (msg_r->len > max) {
			*error_r = sbx_xasprintf("message at byte %zu is larger than %zu bytes", *pos, max);
			return -1;
		}
		p += n;
	}
	/* Drop the separating empty line the writer added. */
	if (msg_r->len > 0 && msg_r->data[msg_r->len - 1] == '\n')
		msg_r->len--;
	*pos = p;
	return 1;
}
