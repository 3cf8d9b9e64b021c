/*
 * replay.c - run a fuzz target once over saved inputs, without libFuzzer
 * (SQLite's fuzzcheck idea): `make check` links it with each
 * tests/fuzz/fuzz_<target>.c and libsealbox.a as replay_<target>, and
 * tests/run.sh runs it on tests/fuzz/corpus/<target>/.
 *
 *   replay_<target> DIR|FILE...
 *
 * Prints "# <file>" before each input (so a crash names it) and finally
 * "ok - replay <target> (<N> inputs)", or "not ok - ..." when an input
 * cannot be read or there was none. A crash or a failed property aborts.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "sbx_limits.h"
#include "util.h"

#define REPLAY_MAX_INPUT (16u << 20)

static int
run_file(const char *path)
{
	char *data;
	size_t len;
	uint8_t *copy;

	if (sbx_read_file(path, REPLAY_MAX_INPUT, &data, &len) < 0) {
		printf("# cannot read %s: %s\n", path, strerror(errno));
		return -1;
	}
	printf("# %s\n", path);
	fflush(stdout);
	/* An exact-size copy, so ASan sees any read past the end. */
	copy = malloc(len ? len : 1);
	if (copy == NULL)
		abort();
	memcpy(copy, data, len);
	free(data);
	LLVMFuzzerTestOneInput(copy, len);
	free(copy);
	return 0;
}

static int
cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file of dir, in name order; count in *n_r. -1 on error. */
static int
run_dir(const char *dir, size_t *n_r)
{
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0, i;
	int ret = 0;
	DIR *d = opendir(dir);

	if (d == NULL) {
		printf("# cannot open %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			names = sbx_xrealloc(names, cap * sizeof(*names));
		}
		names[n++] = sbx_xasprintf("%s/%s", dir, de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_name);
	for (i = 0; i < n; i++) {
		struct stat st;

		if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(names[i]) < 0)
				ret = -1;
			else
				(*n_r)++;
		}
		free(names[i]);
	}
	free(names);
	return ret;
}

int
main(int argc, char **argv)
{
	const char *target = strrchr(argv[0], '/');
	size_t n = 0;
	int i, ret = 0;

	target = target ? target + 1 : argv[0];
	if (strncmp(target, "replay_", 7) == 0)
		target += 7;
	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
		return 2;
	}
	for (i = 1; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			if (run_dir(argv[i], &n) < 0)
				ret = -1;
		} else if (run_file(argv[i]) < 0) {
			ret = -1;
		} else {
			n++;
		}
	}
	if (ret < 0 || n == 0) {
		printf("not ok - replay %s (%zu inputs%s)\n", target, n, ret < 0 ? ", unreadable input" : "");
		return 1;
	}
	printf("ok - replay %s (%zu inputs)\n", target, n);
	return 0;
}
