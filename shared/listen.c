/* listen.c - see listen.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listen.h"
#include "util.h"

void
sbx_listen_free(struct sbx_listen_addr *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(v[i].path);
		free(v[i].host);
	}
	free(v);
}

static int
parse_one(const char *s, size_t len, struct sbx_listen_addr *a, char **error_r)
{
	char *e = sbx_xstrndup(s, len);
	int rc = -1;

	memset(a, 0, sizeof(*a));
	if (strncmp(e, "unix:", 5) == 0) {
		struct sockaddr_un sun;

		if (e[5] != '/' || strlen(e + 5) >= sizeof(sun.sun_path)) {
			*error_r = sbx_xasprintf("listen address %s: need an absolute path shorter than %zu bytes",
						 e, sizeof(sun.sun_path));
			goto out;
		}
		a->is_unix = 1;
		a->path = sbx_xstrdup(e + 5);
		rc = 0;
	} else if (strncmp(e, "inet:", 5) == 0) {
		char *host = e + 5, *colon, *end;
		long port;

		if (host[0] == '[') {
			char *rb = strchr(host, ']');

			if (rb == NULL || rb[1] != ':') {
				*error_r = sbx_xasprintf("listen address %s: expected inet:[v6addr]:port", e);
				goto out;
			}
			*rb = '\0';
			host++;
			colon = rb + 1;
		} else {
			colon = strrchr(host, ':');
			if (colon == NULL) {
				*error_r = sbx_xasprintf("listen address %s: expected inet:host:port", e);
				goto out;
			}
			*colon = '\0';
		}
		errno = 0;
		port = strtol(colon + 1, &end, 10);
		if (errno != 0 || *end != '\0' || colon[1] == '\0' || port < 1 || port > 65535 || host[0] == '\0') {
			*error_r = sbx_xasprintf("listen address %s: bad host or port", e);
			goto out;
		}
		a->host = sbx_xstrdup(host);
		a->port = (int)port;
		rc = 0;
	} else {
		*error_r = sbx_xasprintf("listen address %s: must start with unix: or inet:", e);
	}
out:
	free(e);
	return rc;
}

int
sbx_listen_parse(const char *spec, struct sbx_listen_addr **v_r, size_t *n_r, char **error_r)
{
	struct sbx_listen_addr *v = sbx_xcalloc(SBX_LISTEN_MAX, sizeof(*v));
	const char *p = spec;
	size_t n = 0;

	while (*p != '\0') {
		const char *e;

		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		e = p;
		while (*e != '\0' && *e != ',' && *e != ' ')
			e++;
		if (n == SBX_LISTEN_MAX) {
			*error_r = sbx_xasprintf("more than %d listen addresses", SBX_LISTEN_MAX);
			sbx_listen_free(v, n);
			return -1;
		}
		if (parse_one(p, (size_t)(e - p), &v[n], error_r) < 0) {
			sbx_listen_free(v, n);
			return -1;
		}
		n++;
		p = e;
	}
	if (n == 0) {
		*error_r = sbx_xstrdup("empty listen address list");
		free(v);
		return -1;
	}
	*v_r = v;
	*n_r = n;
	return 0;
}

void
sbx_listen_format(const struct sbx_listen_addr *a, char *out, size_t outsz)
{
	if (a->is_unix)
		snprintf(out, outsz, "unix:%s", a->path);
	else if (strchr(a->host, ':') != NULL)
		snprintf(out, outsz, "inet:[%s]:%d", a->host, a->port);
	else
		snprintf(out, outsz, "inet:%s:%d", a->host, a->port);
}

static void
free_handle(uv_handle_t *h)
{
	free(h);
}

int
sbx_listen_uv(uv_loop_t *loop, const struct sbx_listen_addr *a, uv_connection_cb cb,
	      void *data, uv_stream_t **server_r, char **error_r)
{
	char name[300];
	int rc;

	sbx_listen_format(a, name, sizeof(name));
	if (a->is_unix) {
		uv_pipe_t *p = sbx_xcalloc(1, sizeof(*p));
		struct stat sb;

		if (lstat(a->path, &sb) == 0) {
			if (!S_ISSOCK(sb.st_mode)) {
				*error_r = sbx_xasprintf("%s: exists and is not a socket", name);
				free(p);
				return -1;
			}
			(void)unlink(a->path);
		}
		uv_pipe_init(loop, p, 0);
		p->data = data;
		if ((rc = uv_pipe_bind(p, a->path)) < 0 || (rc = uv_listen((uv_stream_t *)p, 128, cb)) < 0) {
			*error_r = sbx_xasprintf("%s: %s", name, uv_strerror(rc));
			uv_close((uv_handle_t *)p, free_handle);
			return -1;
		}
		if (chmod(a->path, 0660) < 0) {
			*error_r = sbx_xasprintf("%s: chmod: %s", name, strerror(errno));
			uv_close((uv_handle_t *)p, free_handle);
			return -1;
		}
		*server_r = (uv_stream_t *)p;
	} else {
		uv_tcp_t *t = sbx_xcalloc(1, sizeof(*t));
		struct sockaddr_storage ss;

		if (uv_ip4_addr(a->host, a->port, (struct sockaddr_in *)&ss) != 0 &&
		    uv_ip6_addr(a->host, a->port, (struct sockaddr_in6 *)&ss) != 0) {
			*error_r = sbx_xasprintf("%s: not a numeric address", name);
			free(t);
			return -1;
		}
		uv_tcp_init(loop, t);
		t->data = data;
		if ((rc = uv_tcp_bind(t, (struct sockaddr *)&ss, 0)) < 0 ||
		    (rc = uv_listen((uv_stream_t *)t, 128, cb)) < 0) {
			*error_r = sbx_xasprintf("%s: %s", name, uv_strerror(rc));
			uv_close((uv_handle_t *)t, free_handle);
			return -1;
		}
		*server_r = (uv_stream_t *)t;
	}
	return 0;
}
