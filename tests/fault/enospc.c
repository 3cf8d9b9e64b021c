/*
 * enospc.c - LD_PRELOAD fault injection for the tests: write(2) to a file
 * whose path contains $SBX_ENOSPC_PATH fails with ENOSPC ("disk full")
 * once more than $SBX_ENOSPC_AFTER bytes (default 0) went to such files.
 * Everything else is passed through. Only tests load it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ssize_t (*real_write)(int, const void *, size_t);
static size_t written;

static int
targeted(int fd)
{
	const char *want = getenv("SBX_ENOSPC_PATH");
	char link[64], path[4096];
	ssize_t n;

	if (want == NULL || *want == '\0')
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return 0;
	path[n] = '\0';
	return strstr(path, want) != NULL;
}

ssize_t
write(int fd, const void *buf, size_t len)
{
	if (real_write == NULL)
		real_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
	if (targeted(fd)) {
		const char *after = getenv("SBX_ENOSPC_AFTER");
		size_t limit = after != NULL ? (size_t)strtoull(after, NULL, 10) : 0;

		if (written + len > limit) {
			errno = ENOSPC;
			return -1;
		}
		written += len;
	}
	return real_write(fd, buf, len);
}
