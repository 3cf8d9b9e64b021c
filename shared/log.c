/* log.c - see log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static const char *log_ident = "sealbox";
static int log_stderr = 1;
static int log_level = LOG_INFO;

void
sbx_log_open(const char *ident, int to_stderr)
{
	log_ident = ident;
	log_stderr = to_stderr;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
sbx_log_set_level(int max_priority)
{
	log_level = max_priority;
}

void
sbx_log(int priority, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	if (priority > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (log_stderr)
		fprintf(stderr, "%s[%ld]: %s\n", log_ident, (long)getpid(), line);
	else
		syslog(priority, "%s", line);
}

const char *
sbx_log_printable(char *out, size_t outsz, const char *s, size_t max)
{
	size_t i;

	if (outsz == 0)
		return out;
	for (i = 0; i < max && s[i] && i + 1 < outsz; i++) {
		unsigned char c = (unsigned char)s[i];

		out[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	out[i] = '\0';
	return out;
}
