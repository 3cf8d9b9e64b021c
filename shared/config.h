/*
 * config.h - sealbox.conf: "key = value" lines, '#' comments, blank lines.
 * One file for every program (ARCHITECTURE.md "Common conventions"); an
 * unknown key, a line without '=', a duplicate key or an over-long line is an
 * error naming the file and line. Every key and its default is in the table
 * in config.c and in sealbox.conf(5).
 */
#ifndef SBX_CONFIG_H
#define SBX_CONFIG_H
#include <stdint.h>

struct sbx_config;

/* The path to use when -c was not given: $SEALBOX_CONF, else
 * /etc/sealbox/sealbox.conf. */
const char *sbx_config_default_path(void);

/* Load path (NULL = sbx_config_default_path()). On error returns -1 and a
 * malloc'd one-line message in *error_r. */
int sbx_config_load(const char *path, struct sbx_config **cfg_r, char **error_r);
/* A config holding only defaults (for tests and tools). */
struct sbx_config *sbx_config_new_defaults(void);
/* Set a key as if read from the file; -1 + *error_r for an unknown key. */
int sbx_config_set(struct sbx_config *cfg, const char *key, const char *value, char **error_r);
void sbx_config_free(struct sbx_config **cfg);

/* The value of a known key (its default when unset; NULL when the key has
 * no default). Asking for an unknown key aborts: that is a programming bug. */
const char *sbx_config_get(const struct sbx_config *cfg, const char *key);
/* Parse a size with optional K/M/G suffix (powers of 1024) or a plain
 * unsigned number. -1 + *error_r naming the key when malformed. */
int sbx_config_get_size(const struct sbx_config *cfg, const char *key, uint64_t *v_r, char **error_r);
int sbx_config_get_uint(const struct sbx_config *cfg, const char *key, uint64_t *v_r, char **error_r);
/* Parse a size string the same way ("10M"); 0 or -1. */
int sbx_parse_size(const char *s, uint64_t *v_r);
#endif
