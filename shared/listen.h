/*
 * listen.h - Postfix-style listen addresses ("unix:/run/sealbox/lmtp",
 * "inet:127.0.0.1:24", "inet:[::1]:24", comma-separated lists;
 * ARCHITECTURE.md "Common conventions") and listening on them with libuv.
 */
#ifndef SBX_LISTEN_H
#define SBX_LISTEN_H
#include <stddef.h>

#include <uv.h>

#define SBX_LISTEN_MAX 16      /* addresses in one list */

struct sbx_listen_addr {
	int is_unix;
	char *path;            /* unix */
	char *host;            /* inet: numeric address */
	int port;
};

/* Parse a comma-separated list; -1 + *error_r naming the bad entry. */
int sbx_listen_parse(const char *spec, struct sbx_listen_addr **v_r, size_t *n_r, char **error_r);
void sbx_listen_free(struct sbx_listen_addr *v, size_t n);
/* "unix:/path" or "inet:host:port" of a, into out. */
void sbx_listen_format(const struct sbx_listen_addr *a, char *out, size_t outsz);

/* Bind and listen: a unix socket replaces a stale socket file (never any
 * other kind of file) and gets mode 0660; TCP sets SO_REUSEADDR. The
 * handle is malloc'd with ->data = data. */
int sbx_listen_uv(uv_loop_t *loop, const struct sbx_listen_addr *a, uv_connection_cb cb,
		  void *data, uv_stream_t **server_r, char **error_r);
#endif
