/* config.c - see config.h. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "sbx_limits.h"
#include "util.h"

/* Every key any sealbox program reads, with its default (NULL = none).
 * Keep in step with man/sealbox.conf.5. */
static const struct config_key {
	const char *name;
	const char *def;
} config_keys[] = {
	{ "state_dir", "/var/lib/sealbox" },
	{ "lmtp_listen", "unix:/run/sealbox/lmtp" },
	{ "webhook_listen", "unix:/run/sealbox/webhook" },
	{ "milter_listen", "unix:/run/sealbox/milter" },
	{ "imap_listen", "inet:127.0.0.1:143" },
	{ "imaps_listen", NULL },
	{ "pop3_listen", NULL },
	{ "delivery_socket", "unix:/run/sealbox/delivery" },
	{ "tls_cert", NULL },
	{ "tls_key", NULL },
	{ "kdf_opslimit", "2" },        /* crypto_pwhash_OPSLIMIT_INTERACTIVE */
	{ "kdf_memlimit", "64M" },      /* crypto_pwhash_MEMLIMIT_INTERACTIVE */
	{ "kdf_concurrency", "1" },
	{ "default_quota", "1G" },
	{ "message_size_limit", "50M" },
	{ "mailbox_domain", "mailbox.sealbox.internal" },
	{ "webhook_domain", "webhook.sealbox.internal" },
	{ "unknown_domain", "unknown.sealbox.internal" },
	{ "unlock_grace", "30" },
	{ "max_hops", "25" },
	{ "log_level", "info" },
	{ "hostname", NULL },           /* greeting and Received: (gethostname) */
	{ "lmtp_max_recipients", "1000" },
	{ "lmtp_max_connections", "100" },
	{ "lmtp_idle_timeout", "300" },
	{ "webhook_timeout", "30" },
	{ "webhook_ca_file", NULL },
	{ "milter_max_recipients", "1000" },
};

struct sbx_config {
	char *values[sizeof(config_keys) / sizeof(config_keys[0])];
};

#define NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

const char *
sbx_config_default_path(void)
{
	const char *env = getenv("SEALBOX_CONF");

	return env && *env ? env : "/etc/sealbox/sealbox.conf";
}

static int
key_index(const char *key)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(config_keys[i].name, key) == 0)
			return (int)i;
	return -1;
}

struct sbx_config *
sbx_config_new_defaults(void)
{
	return sbx_xcalloc(1, sizeof(struct sbx_config));
}

int
sbx_config_set(struct sbx_config *cfg, const char *key, const char *value, char **error_r)
{
	int i = key_index(key);

	if (i < 0) {
		*error_r = sbx_xasprintf("unknown key '%s'", key);
		return -1;
	}
	free(cfg->values[i]);
	cfg->values[i] = sbx_xstrdup(value);
	return 0;
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int
sbx_config_load(const char *path, struct sbx_config **cfg_r, char **error_r)
{
	struct sbx_config *cfg;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned char seen[NKEYS] = { 0 };
	unsigned lineno = 0;
	FILE *fp;

	if (path == NULL)
		path = sbx_config_default_path();
	fp = fopen(path, "re");
	if (fp == NULL) {
		*error_r = sbx_xasprintf("cannot read config %s: %s", path, strerror(errno));
		return -1;
	}
	cfg = sbx_config_new_defaults();
	while ((len = getline(&line, &cap, fp)) >= 0) {
		char *s, *eq, *key, *value;
		int i;

		lineno++;
		if (len > SBX_MAX_CONFIG_LINE + 1 ||
		    (len == SBX_MAX_CONFIG_LINE + 1 && line[len - 1] != '\n')) {
			*error_r = sbx_xasprintf("%s:%u: line longer than %d bytes", path, lineno, SBX_MAX_CONFIG_LINE);
			goto fail;
		}
		if (memchr(line, '\0', (size_t)len) != NULL) {
			*error_r = sbx_xasprintf("%s:%u: NUL byte in line", path, lineno);
			goto fail;
		}
		s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (eq == NULL) {
			*error_r = sbx_xasprintf("%s:%u: expected 'key = value'", path, lineno);
			goto fail;
		}
		*eq = '\0';
		key = trim(s);
		value = trim(eq + 1);
		i = key_index(key);
		if (i < 0) {
			*error_r = sbx_xasprintf("%s:%u: unknown key '%s'", path, lineno, key);
			goto fail;
		}
		if (seen[i]) {
			*error_r = sbx_xasprintf("%s:%u: duplicate key '%s'", path, lineno, key);
			goto fail;
		}
		seen[i] = 1;
		cfg->values[i] = sbx_xstrdup(value);
	}
	if (ferror(fp)) {
		*error_r = sbx_xasprintf("cannot read config %s: %s", path, strerror(errno));
		goto fail;
	}
	free(line);
	fclose(fp);
	*cfg_r = cfg;
	return 0;
fail:
	free(line);
	fclose(fp);
	sbx_config_free(&cfg);
	return -1;
}

void
sbx_config_free(struct sbx_config **cfgp)
{
	size_t i;

	if (*cfgp == NULL)
		return;
	for (i = 0; i < NKEYS; i++)
		free((*cfgp)->values[i]);
	free(*cfgp);
	*cfgp = NULL;
}

const char *
sbx_config_get(const struct sbx_config *cfg, const char *key)
{
	int i = key_index(key);

	if (i < 0) {
		fprintf(stderr, "sealbox: internal error: unknown config key %s\n", key);
		abort();
	}
	if (cfg != NULL && cfg->values[i] != NULL)
		return cfg->values[i];
	return config_keys[i].def;
}

int
sbx_parse_size(const char *s, uint64_t *v_r)
{
	uint64_t v = 0, mul = 1;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	switch (*p) {
	case '\0':
		break;
	case 'k': case 'K': mul = 1024ULL; p++; break;
	case 'm': case 'M': mul = 1024ULL * 1024; p++; break;
	case 'g': case 'G': mul = 1024ULL * 1024 * 1024; p++; break;
	case 't': case 'T': mul = 1024ULL * 1024 * 1024 * 1024; p++; break;
	default:
		return -1;
	}
	if (*p == 'B' || *p == 'b')
		p++;
	if (*p != '\0' || (v != 0 && mul > UINT64_MAX / v))
		return -1;
	*v_r = v * mul;
	return 0;
}

int
sbx_config_get_size(const struct sbx_config *cfg, const char *key, uint64_t *v_r, char **error_r)
{
	const char *v = sbx_config_get(cfg, key);

	if (v == NULL || sbx_parse_size(v, v_r) < 0) {
		*error_r = sbx_xasprintf("config key %s: expected a size like 64M, got '%s'", key, v ? v : "");
		return -1;
	}
	return 0;
}

int
sbx_config_get_uint(const struct sbx_config *cfg, const char *key, uint64_t *v_r, char **error_r)
{
	const char *v = sbx_config_get(cfg, key);
	char *end;

	errno = 0;
	if (v == NULL || !isdigit((unsigned char)*v) ||
	    (*v_r = strtoull(v, &end, 10), errno != 0 || *end != '\0')) {
		*error_r = sbx_xasprintf("config key %s: expected a number, got '%s'", key, v ? v : "");
		return -1;
	}
	return 0;
}
