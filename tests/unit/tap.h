/*
 * tap.h - the smallest test harness that can fail.
 *
 * TEST(name) { CHECK(expr); ... }   then in main():  RUN(name); ... return tap_done();
 * Each TEST prints "ok - name" or "not ok - name"; a failed CHECK prints the
 * file, line and expression as a "#" diagnostic and the test goes on, so one
 * run shows every broken assertion. tests/run.sh counts the lines.
 */
#ifndef SBX_TAP_H
#define SBX_TAP_H
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_cur_failed;
static int tap_total_failed;

static void tap_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), unused));
static void
tap_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	tap_cur_failed++;
	printf("# %s:%d: ", file, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

#define CHECK(c) do { if (!(c)) tap_fail(__FILE__, __LINE__, "CHECK(%s)", #c); } while (0)
#define CHECKF(c, ...) do { if (!(c)) tap_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define TEST(name) static void test_##name(void)
#define RUN(name) tap_run(#name, test_##name)

static void __attribute__((unused))
tap_run(const char *name, void (*fn)(void))
{
	tap_cur_failed = 0;
	fn();
	printf("%s - %s\n", tap_cur_failed ? "not ok" : "ok", name);
	fflush(stdout);
	if (tap_cur_failed)
		tap_total_failed++;
}

static int __attribute__((unused))
tap_done(void)
{
	return tap_total_failed ? 1 : 0;
}
#endif
