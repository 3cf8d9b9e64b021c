/* lock.c - see lock.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "lock.h"
#include "util.h"

/* An invalid id would let "../" into the path: returns NULL for it, so a
 * caller that skipped validation fails instead of touching another file. */
char *
sbx_mailbox_path(const char *state_dir, const char *mailbox_id, const char *suffix)
{
	if (!sbx_is_id(mailbox_id))
		return NULL;
	return sbx_xasprintf("%s/mailboxes/%.2s/%s%s", state_dir, mailbox_id, mailbox_id, suffix);
}

int
sbx_mailbox_lock(const char *state_dir, const char *mailbox_id, int wait, char **error_r)
{
	char *dir, *path;
	int fd, rc;

	if (!sbx_is_id(mailbox_id)) {
		*error_r = sbx_xstrdup("invalid mailbox id");
		return -1;
	}
	dir = sbx_xasprintf("%s/mailboxes/%.2s", state_dir, mailbox_id);
	if (sbx_mkdir_p(dir, 0700) < 0) {
		*error_r = sbx_xasprintf("mailbox directory %s: %s", dir, strerror(errno));
		free(dir);
		return -1;
	}
	free(dir);
	path = sbx_mailbox_path(state_dir, mailbox_id, ".lock");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		*error_r = sbx_xasprintf("mailbox lock %s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	do
		rc = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB));
	while (rc < 0 && errno == EINTR);
	if (rc < 0) {
		if (errno == EWOULDBLOCK)
			*error_r = sbx_xstrdup("mailbox in use by sealbox-imapd");
		else
			*error_r = sbx_xasprintf("mailbox lock %s: %s", path, strerror(errno));
		close(fd);
		free(path);
		return -1;
	}
	free(path);
	return fd;
}

void
sbx_mailbox_unlock(int fd)
{
	if (fd < 0)
		return;
	(void)flock(fd, LOCK_UN);
	close(fd);
}
