/*
 * log.h - one line per event, syslog style (STYLE.md section 4).
 * Daemons log to syslog(3) (facility mail) unless started with -f; tools and
 * -f daemons log to stderr as "ident[pid]: message". Never pass a password,
 * key or message body to these functions.
 */
#ifndef SBX_LOG_H
#define SBX_LOG_H
#include <syslog.h>

/* to_stderr: 1 = stderr only, 0 = syslog. Safe to call again. */
void sbx_log_open(const char *ident, int to_stderr);
/* Messages above this priority (LOG_DEBUG > LOG_INFO) are dropped. */
void sbx_log_set_level(int max_priority);
void sbx_log(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sbx_debug(...) sbx_log(LOG_DEBUG, __VA_ARGS__)
#define sbx_info(...)  sbx_log(LOG_INFO, __VA_ARGS__)
#define sbx_warn(...)  sbx_log(LOG_WARNING, __VA_ARGS__)
#define sbx_error(...) sbx_log(LOG_ERR, __VA_ARGS__)

/* Copy at most max bytes of untrusted s into out (outsz bytes), replacing
 * control and non-ASCII bytes with '?', so client input can be logged. */
const char *sbx_log_printable(char *out, size_t outsz, const char *s, size_t max);
#endif
