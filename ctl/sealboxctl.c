/*
 * sealboxctl - the sealbox admin tool (ARCHITECTURE.md, man/sealboxctl.8).
 *
 *   sealboxctl [-v] [-c CONFIG] COMMAND ...
 *
 * Domains, mailboxes (password shown once), password change, aliases and
 * their targets, a test delivery into the sealed spool, and mboxrd export
 * and import. Everything here is a thin layer over libsealbox: the
 * directory, keys, spool, store and mbox modules do the work.
 *
 * Rules kept by every command:
 *   - on failure exactly one line "sealboxctl: MESSAGE" goes to stderr and
 *     the exit status is 1 (2 for wrong usage, with the usage text);
 *   - a bad input changes nothing: every check runs before the first write,
 *     and a failure after files were created removes them again;
 *   - passwords are read from stdin with read(2) (no stdio buffer keeps a
 *     copy) into sodium_malloc'd memory that is wiped after use, and are
 *     never printed or logged, except a generated one, printed once;
 *   - export, import, mailbox messages and mailbox del take the mailbox
 *     lock with LOCK_NB and fail with "mailbox in use by sealbox-imapd"
 *     while imapd holds it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sodium.h>
#include <sqlite3.h>

#include "config.h"
#include "directory.h"
#include "import.h"
#include "keys.h"
#include "sbx_limits.h"
#include "lock.h"
#include "log.h"
#include "mbox.h"
#include "spool.h"
#include "store.h"
#include "util.h"
#include "vfs.h"

#define EXIT_USAGE 2
#define ENVELOPE_PRIMARY "primary"     /* the envelope "mailbox add" creates */
#define MIN_WEBHOOK_SECRET 16
#define MAX_MBOX_FILE SBX_MAX_MESSAGE_SIZE  /* whole mbox file read by import */
#define MAX_ARGS 128                   /* positional arguments of one command */

struct ctl {
	struct sbx_config *cfg;
	const char *state_dir;
	uint64_t msg_limit;          /* message_size_limit, bytes */
	struct sbx_dir *dir;
	char *error;                 /* the one line printed on failure */
};

/* ------------------------------------------------------------ errors */

static int ctl_fail(struct ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Record the error line (the first one wins) and return exit status 1. */
static int
ctl_fail(struct ctl *c, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (c->error == NULL)
		c->error = s != NULL ? s : sbx_xstrdup("out of memory");
	else
		free(s);
	return 1;
}

/* Same, taking ownership of a library's malloc'd *err. */
static int
ctl_fail_err(struct ctl *c, char **err)
{
	int rc = ctl_fail(c, "%s", *err != NULL ? *err : "unknown error");

	free(*err);
	*err = NULL;
	return rc;
}

static const char usage_text[] =
	"usage: sealboxctl [-hv] [-c CONFIG] COMMAND ...\n"
	"commands:\n"
	"  init\n"
	"  domain add DOMAIN | domain del DOMAIN | domain list [--json]\n"
	"  mailbox add ADDRESS [--quota SIZE] [--password-stdin]\n"
	"  mailbox passwd ADDRESS --password-stdin\n"
	"  mailbox list [--json]\n"
	"  mailbox del ADDRESS\n"
	"  mailbox messages ADDRESS --password-stdin [--json]\n"
	"  mailbox spool ADDRESS [--json]\n"
	"  alias add ADDRESS TARGET... [--webhook-secret-stdin]\n"
	"        TARGET: mailbox:ADDRESS | forward:ADDRESS | webhook:URL\n"
	"  alias list [--json]\n"
	"  alias del ADDRESS\n"
	"  deliver ADDRESS [--from SENDER] < MESSAGE\n"
	"  export ADDRESS --password-stdin --mbox FILE\n"
	"  import ADDRESS --password-stdin --mbox FILE [--folder NAME]\n"
	"  help\n";

/* Wrong usage: a one-line reason, the usage text, exit status 2. */
static int
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("sealboxctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}

/* --------------------------------------------------------- arguments */

struct opt {
	const char *name;            /* "--quota" */
	int has_arg;
	const char **value;          /* has_arg: the argument */
	int *flag;                   /* !has_arg: set to 1 */
};

/* Split argv into options (anywhere; "--name VALUE" or "--name=VALUE",
 * "--" ends them) and exactly min..max positional arguments. Returns 0, or
 * EXIT_USAGE after printing the reason and the usage text. */
static int
parse_args(const char *cmd, int argc, char **argv, const struct opt *opts,
	   int min, int max, char **pos, int *npos_r)
{
	int i, npos = 0, only_pos = 0;

	for (i = 0; i < argc; i++) {
		const char *a = argv[i], *eq;
		const struct opt *o;
		size_t nlen;

		if (only_pos || a[0] != '-' || a[1] != '-') {
			if (npos >= max || npos >= MAX_ARGS)
				return usage_error("%s: too many arguments", cmd);
			pos[npos++] = argv[i];
			continue;
		}
		if (a[2] == '\0') {
			only_pos = 1;
			continue;
		}
		eq = strchr(a, '=');
		nlen = eq ? (size_t)(eq - a) : strlen(a);
		for (o = opts; o != NULL && o->name != NULL; o++)
			if (strlen(o->name) == nlen && strncmp(o->name, a, nlen) == 0)
				break;
		if (o == NULL || o->name == NULL)
			return usage_error("%s: unknown option %.*s", cmd, (int)nlen, a);
		if (!o->has_arg) {
			if (eq != NULL)
				return usage_error("%s: %s takes no value", cmd, o->name);
			*o->flag = 1;
		} else if (eq != NULL) {
			*o->value = eq + 1;
		} else {
			if (i + 1 >= argc)
				return usage_error("%s: %s needs a value", cmd, o->name);
			*o->value = argv[++i];
		}
	}
	if (npos < min)
		return usage_error("%s: missing argument", cmd);
	*npos_r = npos;
	return 0;
}

/* ------------------------------------------------------------ secrets */

struct secret {
	char *p;                     /* sodium_malloc'd, NUL-terminated */
	size_t len, cap;
};

static void
secret_free(struct secret *s)
{
	if (s->p != NULL) {
		sodium_memzero(s->p, s->cap);
		sodium_free(s->p);
	}
	memset(s, 0, sizeof(*s));
}

/* Read one line from stdin (fd 0) one byte at a time, so nothing after the
 * line is consumed and no stdio buffer keeps a copy. The trailing "\n" or
 * "\r\n" is stripped. what names the value in errors; its bytes never
 * appear in them. */
static int
read_secret_line(struct ctl *c, const char *what, size_t min, size_t max, struct secret *s_r)
{
	struct secret s = { 0 };
	int got_nl = 0;
	char ch;

	s.cap = max + 3;
	s.p = sodium_malloc(s.cap);
	if (s.p == NULL)
		return ctl_fail(c, "out of memory");
	for (;;) {
		ssize_t n = read(STDIN_FILENO, &ch, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			secret_free(&s);
			return ctl_fail(c, "reading %s from stdin: %s", what, strerror(errno));
		}
		if (n == 0)
			break;
		if (ch == '\n') {
			got_nl = 1;
			break;
		}
		if (s.len >= max + 1) {   /* room for a '\r' before the newline */
			secret_free(&s);
			return ctl_fail(c, "%s longer than %zu bytes", what, max);
		}
		s.p[s.len++] = ch;
	}
	if (s.len > 0 && s.p[s.len - 1] == '\r')
		s.len--;
	s.p[s.len] = '\0';
	if (s.len == 0 && !got_nl) {
		secret_free(&s);
		return ctl_fail(c, "no %s on stdin", what);
	}
	if (memchr(s.p, '\0', s.len) != NULL) {
		secret_free(&s);
		return ctl_fail(c, "%s contains a NUL byte", what);
	}
	if (s.len > max) {
		secret_free(&s);
		return ctl_fail(c, "%s longer than %zu bytes", what, max);
	}
	if (s.len < min) {
		secret_free(&s);
		return ctl_fail(c, "%s shorter than %zu bytes", what, min);
	}
	*s_r = s;
	return 0;
}

/* Write a line holding a secret straight to fd 1 (no stdio copy). */
static int
write_secret_line(struct ctl *c, const char *prefix, const char *secret, size_t len)
{
	fflush(stdout);
	if (sbx_write_all(STDOUT_FILENO, prefix, strlen(prefix)) < 0 ||
	    sbx_write_all(STDOUT_FILENO, secret, len) < 0 ||
	    sbx_write_all(STDOUT_FILENO, "\n", 1) < 0)
		return ctl_fail(c, "writing to stdout: %s", strerror(errno));
	return 0;
}

/* --------------------------------------------------------- helpers */

static int
open_dir(struct ctl *c, int flags)
{
	struct stat sb;
	char *err = NULL;

	if (!(flags & SBX_DIR_CREATE)) {
		if (stat(c->state_dir, &sb) < 0)
			return ctl_fail(c, "state_dir %s: %s%s", c->state_dir, strerror(errno),
					errno == ENOENT ? " (run sealboxctl init)" : "");
		if (!S_ISDIR(sb.st_mode))
			return ctl_fail(c, "state_dir %s is not a directory", c->state_dir);
	}
	if (sbx_dir_open(c->state_dir, flags, &c->dir, &err) < 0)
		return ctl_fail_err(c, &err);
	return 0;
}

static int
find_mailbox(struct ctl *c, const char *address, struct sbx_dir_mailbox *m_r)
{
	char *err = NULL;

	if (sbx_dir_mailbox_find(c->dir, address, m_r, &err) < 0)
		return ctl_fail_err(c, &err);
	return 0;
}

static int
print_json(struct ctl *c, struct json_object *o)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
						       JSON_C_TO_STRING_NOSLASHESCAPE);
	int rc = 0;

	if (s == NULL || printf("%s\n", s) < 0)
		rc = ctl_fail(c, "writing JSON to stdout failed");
	json_object_put(o);
	return rc;
}

/* Every file of a mailbox, for removal: the store, its WAL and shm, and the
 * lock (last, so it is removed while still held). */
static const char *const mailbox_suffixes[] = { ".sqlite", ".sqlite-wal", ".sqlite-shm", ".lock" };

/* Remove a mailbox's files and its now empty "mailboxes/ab" directory.
 * 0, or -1 with *err for the first file that could not be removed. */
static int
remove_mailbox_files(const char *state_dir, const char *id, char **err)
{
	size_t i;
	char *p, *dir;
	int rc = 0;

	for (i = 0; i < sizeof(mailbox_suffixes) / sizeof(mailbox_suffixes[0]); i++) {
		p = sbx_mailbox_path(state_dir, id, mailbox_suffixes[i]);
		if (p == NULL) {
			*err = sbx_xstrdup("invalid mailbox id");
			return -1;
		}
		if (unlink(p) < 0 && errno != ENOENT && rc == 0) {
			*err = sbx_xasprintf("cannot remove %s: %s", p, strerror(errno));
			rc = -1;
		}
		free(p);
	}
	/* The "ab" directory goes when this was its last mailbox. */
	dir = sbx_xasprintf("%s/mailboxes/%.2s", state_dir, id);
	if (rmdir(dir) == 0) {
		free(dir);
		dir = sbx_xasprintf("%s/mailboxes", state_dir);
	}
	(void)sbx_fsync_dir(dir);      /* best effort: the unlinks are done */
	free(dir);
	return rc;
}

/* The KDF parameters mailbox add uses: kdf_opslimit, kdf_memlimit. */
static int
kdf_params(struct ctl *c, struct sbx_kdf_params *p_r)
{
	uint64_t ops, mem;
	char *err = NULL;

	if (sbx_config_get_uint(c->cfg, "kdf_opslimit", &ops, &err) < 0 ||
	    sbx_config_get_size(c->cfg, "kdf_memlimit", &mem, &err) < 0 ||
	    sbx_kdf_params_new(ops, mem, p_r, &err) < 0)
		return ctl_fail_err(c, &err);
	return 0;
}

/* A mailbox opened for export/import: lock held, keys unwrapped, store open. */
struct opened {
	int lock_fd;
	struct sbx_mailbox_keys *keys;
	struct sbx_store *st;
};

static void
opened_close(struct opened *o)
{
	sbx_store_close(&o->st);
	sbx_keys_free(&o->keys);
	sbx_mailbox_unlock(o->lock_fd);
	o->lock_fd = -1;
}

/* Unwrap the mailbox keys with password: one Argon2id run. "wrong password"
 * when no envelope opens. */
static int
unlock_keys(struct ctl *c, const char *mailbox_id, const struct secret *pw,
	    struct sbx_mailbox_keys **keys_r, struct sbx_dir_envelope **env_r,
	    size_t *nenv_r, size_t *which_r)
{
	struct sbx_dir_envelope *env = NULL;
	const unsigned char *blobs[SBX_MAX_ENVELOPES];
	size_t lens[SBX_MAX_ENVELOPES], n = 0, i, which = 0;
	char *err = NULL;

	*keys_r = NULL;
	if (sbx_dir_envelopes_get(c->dir, mailbox_id, &env, &n, &err) < 0)
		return ctl_fail_err(c, &err);
	if (n > SBX_MAX_ENVELOPES) {
		sbx_dir_envelopes_free(env, n);
		return ctl_fail(c, "mailbox has more than %d key envelopes", SBX_MAX_ENVELOPES);
	}
	for (i = 0; i < n; i++) {
		blobs[i] = env[i].blob;
		lens[i] = env[i].len;
	}
	if (sbx_envelope_unlock(blobs, lens, n, mailbox_id, pw->p, pw->len,
				keys_r, &which, &err) < 0) {
		sbx_dir_envelopes_free(env, n);
		return ctl_fail_err(c, &err);
	}
	if (env_r != NULL) {
		*env_r = env;
		*nenv_r = n;
		*which_r = which;
	} else {
		sbx_dir_envelopes_free(env, n);
	}
	return 0;
}

/* Read every page of the mailbox file once, so damage is found before
 * anything is imported into it (the VFS authenticates each page). */
static int
store_verify(struct ctl *c, struct sbx_store *st)
{
	sqlite3 *db = sbx_store_db(st);
	sqlite3_stmt *s = NULL;
	const char *vfs;
	int rc;

	rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &s, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			const char *r = (const char *)sqlite3_column_text(s, 0);

			if (r != NULL && strcmp(r, "ok") == 0) {
				sqlite3_finalize(s);
				return 0;
			}
			vfs = sbx_vfs_last_error();
			ctl_fail(c, "mailbox file damaged: %s", vfs[0] != '\0' ? vfs :
				 r != NULL ? r : "integrity check failed");
			sqlite3_finalize(s);
			return 1;
		}
	}
	vfs = sbx_vfs_last_error();
	if (vfs[0] != '\0')
		ctl_fail(c, "mailbox file damaged: %s", vfs);
	else
		ctl_fail(c, "mailbox file damaged: %s", sqlite3_errmsg(db));
	sqlite3_finalize(s);
	return 1;
}

/* Lock, unlock the keys, open and verify the store. */
static int
mailbox_open(struct ctl *c, const struct sbx_dir_mailbox *m, const struct secret *pw,
	     struct opened *o)
{
	char *err = NULL;

	o->lock_fd = sbx_mailbox_lock(c->state_dir, m->id, 0, &err);
	if (o->lock_fd < 0)
		return ctl_fail_err(c, &err);
	if (unlock_keys(c, m->id, pw, &o->keys, NULL, NULL, NULL) != 0)
		goto fail;
	if (sbx_store_open(c->state_dir, m->id, o->keys, 0, &o->st, &err) < 0) {
		ctl_fail_err(c, &err);
		goto fail;
	}
	if (store_verify(c, o->st) != 0)
		goto fail;
	return 0;
fail:
	opened_close(o);
	return 1;
}

/* usage = store contents + what still waits in the spool. */
/* Recompute the usage counters from the store and the spool. Called after
 * messages were committed, so a failure here is a warning, not an error:
 * failing the command would invite a retry that stores everything twice,
 * and the counters are recomputed at the next export or import. */
static void
usage_refresh(struct ctl *c, const char *mailbox_id, struct sbx_store *st)
{
	uint64_t bytes, msgs, sbytes, smsgs;
	char *err = NULL;

	if (sbx_store_usage(st, &bytes, &msgs, &err) < 0 ||
	    sbx_spool_usage(c->state_dir, mailbox_id, &sbytes, &smsgs) < 0 ||
	    sbx_dir_usage_set(c->dir, mailbox_id, bytes + sbytes, msgs + smsgs, &err) < 0) {
		fprintf(stderr, "sealboxctl: warning: usage counters of %s not updated: %s\n",
			mailbox_id, err ? err : strerror(errno));
		free(err);
	}
}

/* "2026-11-25T11:31:49Z" -> time_t; 0 when unparsable. */
static time_t
parse_iso8601(const char *s)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (end == NULL)
		return 0;
	return timegm(&tm);
}

/* ------------------------------------------------------------ init */

static int
cmd_init(struct ctl *c, int argc, char **argv)
{
	static const char *const subdirs[] = { "mailboxes", "spool" };
	char *pos[MAX_ARGS], *p;
	struct stat sb;
	size_t i;
	int npos, rc;

	if ((rc = parse_args("init", argc, argv, NULL, 0, 0, pos, &npos)) != 0)
		return rc;
	if (sbx_mkdir_p(c->state_dir, 0700) < 0)
		return ctl_fail(c, "cannot create state_dir %s: %s", c->state_dir, strerror(errno));
	if (stat(c->state_dir, &sb) < 0)
		return ctl_fail(c, "state_dir %s: %s", c->state_dir, strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return ctl_fail(c, "state_dir %s is not a directory", c->state_dir);
	if (open_dir(c, SBX_DIR_CREATE) != 0)
		return 1;
	for (i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		p = sbx_xasprintf("%s/%s", c->state_dir, subdirs[i]);
		if (sbx_mkdir_p(p, 0700) < 0 || stat(p, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
			rc = ctl_fail(c, "cannot create %s: %s", p,
				      errno ? strerror(errno) : "not a directory");
			free(p);
			return rc;
		}
		free(p);
	}
	if (sbx_fsync_dir(c->state_dir) < 0)
		return ctl_fail(c, "fsync %s: %s", c->state_dir, strerror(errno));
	printf("state directory %s ready\n", c->state_dir);
	return 0;
}

/* ------------------------------------------------------------ domain */

static int
cmd_domain_add(struct ctl *c, int argc, char **argv)
{
	char *pos[MAX_ARGS], *err = NULL;
	int npos, rc;

	if ((rc = parse_args("domain add", argc, argv, NULL, 1, 1, pos, &npos)) != 0)
		return rc;
	if (open_dir(c, 0) != 0)
		return 1;
	if (sbx_dir_domain_add(c->dir, pos[0], &err) < 0)
		return ctl_fail_err(c, &err);
	return 0;
}

static int
cmd_domain_del(struct ctl *c, int argc, char **argv)
{
	char *pos[MAX_ARGS], *err = NULL;
	int npos, rc;

	if ((rc = parse_args("domain del", argc, argv, NULL, 1, 1, pos, &npos)) != 0)
		return rc;
	if (open_dir(c, 0) != 0)
		return 1;
	if (sbx_dir_domain_del(c->dir, pos[0], &err) < 0)
		return ctl_fail_err(c, &err);
	return 0;
}

static int
cmd_domain_list(struct ctl *c, int argc, char **argv)
{
	int json = 0;
	const struct opt opts[] = { { "--json", 0, NULL, &json }, { NULL, 0, NULL, NULL } };
	char *pos[MAX_ARGS], *err = NULL, **names = NULL;
	size_t n = 0, i;
	int npos, rc;

	if ((rc = parse_args("domain list", argc, argv, opts, 0, 0, pos, &npos)) != 0)
		return rc;
	if (open_dir(c, SBX_DIR_RDONLY) != 0)
		return 1;
	if (sbx_dir_domain_list(c->dir, &names, &n, &err) < 0)
		return ctl_fail_err(c, &err);
	if (json) {
		struct json_object *a = json_object_new_array();

		for (i = 0; i < n; i++)
			json_object_array_add(a, json_object_new_string(names[i]));
		rc = print_json(c, a);
	} else {
		for (i = 0; i < n; i++)
			printf("%s\n", names[i]);
	}
	sbx_strv_free(names, n);
	return rc;
}

/* ------------------------------------------------------------ mailbox */

static int
cmd_mailbox_add(struct ctl *c, int argc, char **argv)
{
	const char *quota_s = NULL;
	int pw_stdin = 0;
	const struct opt opts[] = {
		{ "--quota", 1, &quota_s, NULL },
		{ "--password-stdin", 0, NULL, &pw_stdin },
		{ NULL, 0, NULL, NULL },
	};
	char *pos[MAX_ARGS], *addr = NULL, *err = NULL, id[SBX_ID_HEX] = "";
	struct secret pw = { 0 };
	struct sbx_mailbox_keys *keys = NULL;
	struct sbx_kdf_params params;
	unsigned char *kek = NULL, *blob = NULL;
	size_t blob_len = 0;
	uint64_t quota;
	int npos, rc, lock_fd = -1, created = 0, hosted;

	if ((rc = parse_args("mailbox add", argc, argv, opts, 1, 1, pos, &npos)) != 0)
		return rc;
	if (quota_s != NULL) {
		if (sbx_parse_size(quota_s, &quota) < 0 || quota > INT64_MAX)
			return ctl_fail(c, "invalid --quota (a size like 500M, 0 = unlimited)");
	} else if (sbx_config_get_size(c->cfg, "default_quota", &quota, &err) < 0) {
		return ctl_fail_err(c, &err);
	}
	if (sbx_addr_normalize(pos[0], 0, &addr, &err) < 0)
		return ctl_fail_err(c, &err);
	rc = 1;
	if (open_dir(c, 0) != 0)
		goto out;
	hosted = sbx_dir_domain_exists(c->dir, strrchr(addr, '@') + 1, &err);
	if (hosted < 0) {
		ctl_fail_err(c, &err);
		goto out;
	}
	if (hosted == 0) {
		ctl_fail(c, "domain not hosted: %s (sealboxctl domain add)", strrchr(addr, '@') + 1);
		goto out;
	}
	if (pw_stdin) {
		if (read_secret_line(c, "password", SBX_MIN_PASSWORD_LEN, SBX_MAX_PASSWORD_LEN, &pw) != 0)
			goto out;
	} else {
		pw.cap = 32;
		pw.p = sodium_malloc(pw.cap);
		if (pw.p == NULL) {
			ctl_fail(c, "out of memory");
			goto out;
		}
		sbx_password_generate(pw.p, pw.cap);
		pw.len = strlen(pw.p);
	}
	if (kdf_params(c, &params) != 0)
		goto out;
	sbx_random_id(id);
	keys = sbx_keys_generate();
	if (sbx_kek_derive(pw.p, pw.len, &params, &kek, &err) < 0 ||
	    sbx_envelope_seal(keys, kek, &params, id, ENVELOPE_PRIMARY, &blob, &blob_len, &err) < 0) {
		ctl_fail_err(c, &err);
		goto out;
	}
	sbx_kek_free(&kek);
	lock_fd = sbx_mailbox_lock(c->state_dir, id, 0, &err);
	created = 1;                       /* from here on, files may exist */
	if (lock_fd < 0) {
		ctl_fail_err(c, &err);
		goto out;
	}
	if (sbx_store_create(c->state_dir, id, keys, &err) < 0 ||
	    sbx_dir_mailbox_add(c->dir, addr, quota, keys->spool_pk, ENVELOPE_PRIMARY,
				blob, blob_len, id, &err) < 0) {
		ctl_fail_err(c, &err);
		goto out;
	}
	created = 0;
	printf("mailbox %s id %s\n", addr, id);
	if (!pw_stdin && write_secret_line(c, "password: ", pw.p, pw.len) != 0) {
		/* Nobody saw the generated password, so nobody could ever open
		 * this mailbox: take it back out. */
		char *del_err = NULL;

		if (sbx_dir_mailbox_del(c->dir, id, &del_err) == 0) {
			created = 1;
		} else {
			sbx_warn("mailbox add: undo: %s", del_err ? del_err : "failed");
			free(del_err);
		}
		goto out;
	}
	rc = 0;
out:
	if (created) {
		char *rm_err = NULL;

		if (remove_mailbox_files(c->state_dir, id, &rm_err) < 0) {
			/* Keep the first error: it explains why we are cleaning up. */
			sbx_warn("mailbox add: cleanup: %s", rm_err ? rm_err : "failed");
			free(rm_err);
		}
	}
	sbx_mailbox_unlock(lock_fd);
	free(blob);
	sbx_kek_free(&kek);
	sbx_keys_free(&keys);
	secret_free(&pw);
	free(addr);
	return rc;
}

static int
cmd_mailbox_passwd(struct ctl *c, int argc, char **argv)
{
	int pw_stdin = 0;
	const struct opt opts[] = {
		{ "--password-stdin", 0, NULL, &pw_stdin },
		{ NULL, 0, NULL, NULL },
	};
	char *pos[MAX_ARGS], *err = NULL;
	struct sbx_dir_mailbox m;
	struct sbx_dir_envelope *env = NULL;
	struct secret oldpw = { 0 }, newpw = { 0 };
	struct sbx_mailbox_keys *keys = NULL;
	struct sbx_kdf_params params;
	unsigned char *kek = NULL, *blob = NULL;
	size_t nenv = 0, which = 0, blob_len = 0;
	int npos, rc;

	if ((rc = parse_args("mailbox passwd", argc, argv, opts, 1, 1, pos, &npos)) != 0)
		return rc;
	if (!pw_stdin)
		return usage_error("mailbox passwd: --password-stdin is required"
				   " (old password line, then new password line)");
	if (open_dir(c, 0) != 0 || find_mailbox(c, pos[0], &m) != 0)
		return 1;
	rc = 1;
	if (read_secret_line(c, "old password", 1, SBX_MAX_PASSWORD_LEN, &oldpw) != 0 ||
	    read_secret_line(c, "new password", SBX_MIN_PASSWORD_LEN, SBX_MAX_PASSWORD_LEN, &newpw) != 0)
		goto out;
	if (unlock_keys(c, m.id, &oldpw, &keys, &env, &nenv, &which) != 0)
		goto out;
	/* Same envelope id, same salt and parameters as the mailbox's other
	 * envelopes (one Argon2id per login, ARCHITECTURE.md "Keys"). */
	if (sbx_envelope_params(env[which].blob, env[which].len, &params, &err) < 0 ||
	    sbx_kek_derive(newpw.p, newpw.len, &params, &kek, &err) < 0 ||
	    sbx_envelope_seal(keys, kek, &params, m.id, env[which].envelope_id,
			      &blob, &blob_len, &err) < 0 ||
	    sbx_dir_envelope_replace(c->dir, m.id, env[which].envelope_id, env[which].blob, env[which].len,
				     blob, blob_len, &err) < 0) {
		ctl_fail_err(c, &err);
		goto out;
	}
	printf("password changed for %s\n", m.address);
	rc = 0;
out:
	free(blob);
	sbx_kek_free(&kek);
	sbx_keys_free(&keys);
	sbx_dir_envelopes_free(env, nenv);
	secret_free(&oldpw);
	secret_free(&newpw);
	sbx_dir_mailbox_clear(&m);
	return rc;
}

static int
cmd_mailbox_list(struct ctl *c, int argc, char **argv)
{
	int json = 0;
	const struct opt opts[] = { { "--json", 0, NULL, &json }, { NULL, 0, NULL, NULL } };
	char *pos[MAX_ARGS], *err = NULL;
	struct sbx_dir_mailbox *v = NULL;
	size_t n = 0, i;
	int npos, rc;

	if ((rc = parse_args("mailbox list", argc, argv, opts, 0, 0, pos, &npos)) != 0)
		return rc;
	if (open_dir(c, SBX_DIR_RDONLY) != 0)
		return 1;
	if (sbx_dir_mailbox_list(c->dir, &v, &n, &err) < 0)
		return ctl_fail_err(c, &err);
	if (json) {
		struct json_object *a = json_object_new_array();

		for (i = 0; i < n; i++) {
			struct json_object *o = json_object_new_object();

			json_object_object_add(o, "address", json_object_new_string(v[i].address));
			json_object_object_add(o, "id", json_object_new_string(v[i].id));
			json_object_object_add(o, "quota", json_object_new_uint64(v[i].quota_bytes));
			json_object_object_add(o, "usage_bytes", json_object_new_uint64(v[i].usage_bytes));
			json_object_object_add(o, "usage_msgs", json_object_new_uint64(v[i].usage_msgs));
			json_object_array_add(a, o);
		}
		rc = print_json(c, a);
	} else {
		for (i = 0; i < n; i++)
			printf("%s %s quota=%" PRIu64 " usage_bytes=%" PRIu64 " usage_msgs=%" PRIu64 "\n",
			       v[i].address, v[i].id, v[i].quota_bytes, v[i].usage_bytes, v[i].usage_msgs);
	}
	sbx_dir_mailbox_list_free(v, n);
	return rc;
}

/* "\Seen \Flagged": the IMAP names of flags, in this order. */
static void
flags_text(struct sbx_buf *b, unsigned flags)
{
	static const struct {
		unsigned flag;
		const char *name;
	} names[] = {
		{ SBX_FLAG_SEEN, "\\Seen" },
		{ SBX_FLAG_ANSWERED, "\\Answered" },
		{ SBX_FLAG_FLAGGED, "\\Flagged" },
		{ SBX_FLAG_DELETED, "\\Deleted" },
		{ SBX_FLAG_DRAFT, "\\Draft" },
	};
	size_t i, start = b->len;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(flags & names[i].flag))
			continue;
		if (b->len > start)
			sbx_buf_append(b, " ", 1);
		sbx_buf_append(b, names[i].name, strlen(names[i].name));
	}
}

/* A JSON array of the space-separated words of s. */
static struct json_object *
json_words(const char *s)
{
	struct json_object *a = json_object_new_array();
	const char *tok;

	while (*s != '\0') {
		while (*s == ' ')
			s++;
		tok = s;
		while (*s != '\0' && *s != ' ')
			s++;
		if (s > tok)
			json_object_array_add(a, json_object_new_string_len(tok, (int)(s - tok)));
	}
	return a;
}

/* One line per message of every folder:
 *   FOLDER UID (FLAGS) (KEYWORDS) INTERNALDATE SIZE
 * FOLDER escaped as in X-Sealbox-Folder (mbox.h). */
static int
list_messages(struct ctl *c, struct sbx_store *st, int json)
{
	struct sbx_store_folder *folders = NULL;
	struct sbx_store_msg *msgs = NULL;
	struct json_object *a = json ? json_object_new_array() : NULL;
	struct sbx_buf b = { 0 };
	size_t nf = 0, nm = 0, i, j;
	char *err = NULL;
	int rc = 1;

	if (sbx_store_folders(st, &folders, &nf, &err) < 0) {
		ctl_fail_err(c, &err);
		goto out;
	}
	for (i = 0; i < nf; i++) {
		if (sbx_store_list(st, folders[i].name, 0, &msgs, &nm, &err) < 0) {
			ctl_fail_err(c, &err);
			goto out;
		}
		for (j = 0; j < nm; j++) {
			b.len = 0;
			if (json) {
				struct json_object *o = json_object_new_object();

				flags_text(&b, msgs[j].flags);
				sbx_buf_append(&b, "", 1);
				json_object_object_add(o, "folder", json_object_new_string(folders[i].name));
				json_object_object_add(o, "uid", json_object_new_int64(msgs[j].uid));
				json_object_object_add(o, "flags", json_words(b.data));
				json_object_object_add(o, "keywords", json_words(msgs[j].keywords));
				json_object_object_add(o, "internaldate",
						       json_object_new_string(msgs[j].internaldate));
				json_object_object_add(o, "size", json_object_new_uint64(msgs[j].size));
				json_object_object_add(o, "modseq", json_object_new_uint64(msgs[j].modseq));
				json_object_array_add(a, o);
				continue;
			}
			sbx_mbox_folder_encode(&b, folders[i].name);
			sbx_buf_appendf(&b, " %" PRIu32 " (", msgs[j].uid);
			flags_text(&b, msgs[j].flags);
			sbx_buf_appendf(&b, ") (%s) %s %" PRIu64 "\n", msgs[j].keywords,
					msgs[j].internaldate, msgs[j].size);
			if (fwrite(b.data, 1, b.len, stdout) != b.len) {
				ctl_fail(c, "writing to stdout: %s", strerror(errno));
				goto out;
			}
		}
		sbx_store_msgs_free(msgs, nm);
		msgs = NULL;
		nm = 0;
	}
	if (json) {
		rc = print_json(c, a);
		a = NULL;
	} else {
		rc = 0;
	}
out:
	if (msgs != NULL)
		sbx_store_msgs_free(msgs, nm);
	if (a != NULL)
		json_object_put(a);
	sbx_buf_free(&b);
	sbx_store_folders_free(folders, nf);
	return rc;
}

static int
cmd_mailbox_messages(struct ctl *c, int argc, char **argv)
{
	int pw_stdin = 0, json = 0;
	const struct opt opts[] = {
		{ "--password-stdin", 0, NULL, &pw_stdin },
		{ "--json", 0, NULL, &json },
		{ NULL, 0, NULL, NULL },
	};
	char *pos[MAX_ARGS];
	struct sbx_dir_mailbox m;
	struct secret pw = { 0 };
	struct opened o = { -1, NULL, NULL };
	int npos, rc;

	if ((rc = parse_args("mailbox messages", argc, argv, opts, 1, 1, pos, &npos)) != 0)
		return rc;
	if (!pw_stdin)
		return usage_error("mailbox messages: --password-stdin is required");
	if (open_dir(c, SBX_DIR_RDONLY) != 0 || find_mailbox(c, pos[0], &m) != 0)
		return 1;
	rc = 1;
	if (read_secret_line(c, "password", 1, SBX_MAX_PASSWORD_LEN, &pw) != 0 ||
	    mailbox_open(c, &m, &pw, &o) != 0)
		goto done;
	secret_free(&pw);
	rc = list_messages(c, o.st, json);
done:
	opened_close(&o);
	secret_free(&pw);
	sbx_dir_mailbox_clear(&m);
	return rc;
}

/* What waits in the sealed spool: delivery ids and sizes come from the
 * clear record headers, so no password is needed (and nothing is read). */
static int
cmd_mailbox_spool(struct ctl *c, int argc, char **argv)
{
	int json = 0;
	const struct opt opts[] = {
		{ "--json", 0, NULL, &json },
		{ NULL, 0, NULL, NULL },
	};
	char *pos[MAX_ARGS], **ids = NULL, *err = NULL;
	struct sbx_dir_mailbox m;
	uint64_t bytes = 0, count = 0;
	size_t n = 0, i;
	int npos, rc;

	if ((rc = parse_args("mailbox spool", argc, argv, opts, 1, 1, pos, &npos)) != 0)
		return rc;
	if (open_dir(c, SBX_DIR_RDONLY) != 0 || find_mailbox(c, pos[0], &m) != 0)
		return 1;
	if (sbx_spool_list(c->state_dir, m.id, &ids, &n, &err) < 0) {
		ctl_fail_err(c, &err);
		sbx_dir_mailbox_clear(&m);
		return 1;
	}
	if (sbx_spool_usage(c->state_dir, m.id, &bytes, &count) < 0)
		bytes = 0;
	if (json) {
		printf("{\"mailbox\":\"%s\",\"waiting\":%zu,\"bytes\":%llu,\"deliveries\":[", m.id, n,
		       (unsigned long long)bytes);
		for (i = 0; i < n; i++)
			printf("%s\"%s\"", i ? "," : "", ids[i]);
		printf("]}\n");
	} else {
		for (i = 0; i < n; i++)
			printf("%s\n", ids[i]);
		printf("%zu waiting, %llu bytes\n", n, (unsigned long long)bytes);
	}
	sbx_spool_list_free(ids, n);
	sbx_dir_mailbox_clear(&m);
	return 0;
}

static int
cmd_mailbox_del(struct ctl *c, int argc, char **argv)
{
	char *pos[MAX_ARGS], *err = NULL;
	struct sbx_dir_mailbox m;
	int npos, rc, lock_fd;

	if ((rc = parse_args("mailbox del", argc, argv, NULL, 1, 1, pos, &npos)) != 0)
		return rc;
	if (open_dir(c, 0) != 0 || find_mailbox(c, pos[0], &m) != 0)
		return 1;
	rc = 1;
	lock_fd = sbx_mailbox_lock(c->state_dir, m.id, 0, &err);
	if (lock_fd < 0) {
		ctl_fail_err(c, &err);
		goto out;
	}
	if (sbx_dir_mailbox_del(c->dir, m.id, &err) < 0 ||
	    remove_mailbox_files(c->state_dir, m.id, &err) < 0 ||
	    sbx_spool_destroy(c->state_dir, m.id, &err) < 0) {
		ctl_fail_err(c, &err);
		sbx_mailbox_unlock(lock_fd);
		goto out;
	}
	sbx_mailbox_unlock(lock_fd);
	printf("mailbox %s deleted\n", m.address);
	rc = 0;
out:
	sbx_dir_mailbox_clear(&m);
	return rc;
}

/* ------------------------------------------------------------ alias */

static int
cmd_alias_add(struct ctl *c, int argc, char **argv)
{
	int secret_stdin = 0;
	const struct opt opts[] = {
		{ "--webhook-secret-stdin", 0, NULL, &secret_stdin },
		{ NULL, 0, NULL, NULL },
	};
	char *pos[MAX_ARGS], *err = NULL, hex[2 * SBX_MAX_WEBHOOK_SECRET + 1];
	struct sbx_target *t = NULL;
	struct secret secret = { 0 };
	size_t n = 0, i, nhooks = 0;
	int npos, rc;

	if ((rc = parse_args("alias add", argc, argv, opts, 2, MAX_ARGS, pos, &npos)) != 0)
		return rc;
	if (npos - 1 > SBX_MAX_TARGETS_PER_ALIAS)
		return ctl_fail(c, "an alias has at most %d targets", SBX_MAX_TARGETS_PER_ALIAS);
	if (open_dir(c, 0) != 0)
		return 1;
	rc = 1;
	t = sbx_xcalloc((size_t)npos - 1, sizeof(*t));
	for (n = 0; n < (size_t)npos - 1; n++) {
		if (sbx_dir_target_parse(c->dir, pos[n + 1], &t[n], &err) < 0) {
			ctl_fail_err(c, &err);
			goto out;
		}
		if (t[n].kind == SBX_TARGET_WEBHOOK)
			nhooks++;
	}
	if (secret_stdin) {
		if (nhooks == 0) {
			ctl_fail(c, "--webhook-secret-stdin given but no webhook: target");
			goto out;
		}
		if (read_secret_line(c, "webhook secret", MIN_WEBHOOK_SECRET,
				     SBX_MAX_WEBHOOK_SECRET, &secret) != 0)
			goto out;
		for (i = 0; i < n; i++) {
			if (t[i].kind != SBX_TARGET_WEBHOOK)
				continue;
			t[i].secret = sbx_xmalloc(secret.len);
			memcpy(t[i].secret, secret.p, secret.len);
			t[i].secret_len = secret.len;
		}
	}
	if (sbx_dir_alias_add(c->dir, pos[0], t, n, &err) < 0) {
		ctl_fail_err(c, &err);
		goto out;
	}
	/* Committed: each secret is shown now, once, or never again. */
	for (i = 0; i < n; i++) {
		char *prefix;
		int w;

		if (t[i].kind != SBX_TARGET_WEBHOOK)
			continue;
		if (secret_stdin) {
			printf("webhook %s\n", t[i].webhook_id);
			continue;
		}
		if (t[i].secret == NULL || t[i].secret_len > SBX_MAX_WEBHOOK_SECRET) {
			ctl_fail(c, "webhook %s: no secret returned", t[i].webhook_id);
			goto out;
		}
		sbx_hex(hex, t[i].secret, t[i].secret_len);
		prefix = sbx_xasprintf("webhook %s secret ", t[i].webhook_id);
		w = write_secret_line(c, prefix, hex, 2 * t[i].secret_len);
		free(prefix);
		sodium_memzero(hex, sizeof(hex));
		if (w != 0)
			goto out;
	}
	rc = 0;
out:
	sodium_memzero(hex, sizeof(hex));
	sbx_targets_free(t, n);
	secret_free(&secret);
	return rc;
}

/* The address of mailbox id, for listings; "" when unknown. */
static const char *
mailbox_address(const struct sbx_dir_mailbox *v, size_t n, const char *id)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(v[i].id, id) == 0)
			return v[i].address;
	return "";
}

static int
cmd_alias_list(struct ctl *c, int argc, char **argv)
{
	int json = 0;
	const struct opt opts[] = { { "--json", 0, NULL, &json }, { NULL, 0, NULL, NULL } };
	char *pos[MAX_ARGS], *err = NULL;
	struct sbx_dir_alias *v = NULL;
	struct sbx_dir_mailbox *mb = NULL;
	struct json_object *a = NULL;
	size_t n = 0, nmb = 0, i, j;
	int npos, rc;

	if ((rc = parse_args("alias list", argc, argv, opts, 0, 0, pos, &npos)) != 0)
		return rc;
	if (open_dir(c, SBX_DIR_RDONLY) != 0)
		return 1;
	if (sbx_dir_alias_list(c->dir, &v, &n, &err) < 0 ||
	    sbx_dir_mailbox_list(c->dir, &mb, &nmb, &err) < 0) {
		sbx_dir_alias_list_free(v, n);
		return ctl_fail_err(c, &err);
	}
	if (json)
		a = json_object_new_array();
	for (i = 0; i < n; i++) {
		struct json_object *o = NULL, *ta = NULL;

		if (json) {
			o = json_object_new_object();
			ta = json_object_new_array();
			json_object_object_add(o, "alias", json_object_new_string(v[i].alias));
		} else {
			printf("%s ->", v[i].alias);
		}
		for (j = 0; j < v[i].ntargets; j++) {
			const struct sbx_target *t = &v[i].targets[j];
			struct json_object *to = NULL;

			if (json) {
				to = json_object_new_object();
				json_object_array_add(ta, to);
			}
			switch (t->kind) {
			case SBX_TARGET_MAILBOX:
				if (json) {
					json_object_object_add(to, "kind", json_object_new_string("mailbox"));
					json_object_object_add(to, "mailbox_id", json_object_new_string(t->value));
					json_object_object_add(to, "address", json_object_new_string(
						mailbox_address(mb, nmb, t->value)));
				} else {
					printf("%s mailbox:%s", j ? "," : "", mailbox_address(mb, nmb, t->value));
				}
				break;
			case SBX_TARGET_FORWARD:
				if (json) {
					json_object_object_add(to, "kind", json_object_new_string("forward"));
					json_object_object_add(to, "address", json_object_new_string(t->value));
				} else {
					printf("%s forward:%s", j ? "," : "", t->value);
				}
				break;
			case SBX_TARGET_WEBHOOK:
				if (json) {
					json_object_object_add(to, "kind", json_object_new_string("webhook"));
					json_object_object_add(to, "url", json_object_new_string(t->value));
					json_object_object_add(to, "webhook_id", json_object_new_string(t->webhook_id));
				} else {
					printf("%s webhook:%s (id %s)", j ? "," : "", t->value, t->webhook_id);
				}
				break;
			}
		}
		if (json) {
			json_object_object_add(o, "targets", ta);
			json_object_array_add(a, o);
		} else {
			printf("\n");
		}
	}
	if (json)
		rc = print_json(c, a);
	sbx_dir_alias_list_free(v, n);
	sbx_dir_mailbox_list_free(mb, nmb);
	return rc;
}

static int
cmd_alias_del(struct ctl *c, int argc, char **argv)
{
	char *pos[MAX_ARGS], *err = NULL;
	int npos, rc;

	if ((rc = parse_args("alias del", argc, argv, NULL, 1, 1, pos, &npos)) != 0)
		return rc;
	if (open_dir(c, 0) != 0)
		return 1;
	if (sbx_dir_alias_del(c->dir, pos[0], &err) < 0)
		return ctl_fail_err(c, &err);
	return 0;
}

/* ------------------------------------------------------------ deliver */

/* Read all of stdin, at most max bytes: 0, 1 on a read error (reported),
 * or 2 when there is more than max (not reported: the caller knows what the
 * bytes were meant to be). */
static int
read_stdin(struct ctl *c, uint64_t max, struct sbx_buf *b)
{
	char tmp[65536];

	for (;;) {
		ssize_t n = read(STDIN_FILENO, tmp, sizeof(tmp));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return ctl_fail(c, "reading stdin: %s", strerror(errno));
		if (n == 0)
			return 0;
		if ((uint64_t)n > max - b->len)
			return 2;
		sbx_buf_append(b, tmp, (size_t)n);
	}
}

/* An envelope sender as given: printable ASCII, no spaces, bounded. */
static int
sender_ok(const char *s)
{
	size_t i, n = strlen(s);

	if (n > SBX_MAX_ADDRESS_LEN)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	return 1;
}

static int
cmd_deliver(struct ctl *c, int argc, char **argv)
{
	const char *from = "";
	const struct opt opts[] = { { "--from", 1, &from, NULL }, { NULL, 0, NULL, NULL } };
	char *pos[MAX_ARGS], *err = NULL, did[SBX_ID_HEX];
	struct sbx_dir_mailbox m;
	struct sbx_spool_meta meta;
	struct sbx_buf msg = { 0 };
	int npos, rc;

	if ((rc = parse_args("deliver", argc, argv, opts, 1, 1, pos, &npos)) != 0)
		return rc;
	if (!sender_ok(from))
		return ctl_fail(c, "invalid --from sender");
	if (open_dir(c, 0) != 0 || find_mailbox(c, pos[0], &m) != 0)
		return 1;
	rc = read_stdin(c, c->msg_limit, &msg);
	if (rc == 2)
		ctl_fail(c, "message larger than message_size_limit (%" PRIu64 " bytes)", c->msg_limit);
	rc = 1;
	if (c->error != NULL)
		goto out;
	if (msg.len == 0) {
		ctl_fail(c, "empty message on stdin");
		goto out;
	}
	if (m.quota_bytes > 0 && (m.usage_bytes > m.quota_bytes ||
				  msg.len > m.quota_bytes - m.usage_bytes)) {
		ctl_fail(c, "mailbox full: %s uses %" PRIu64 " of %" PRIu64 " bytes",
			 m.address, m.usage_bytes, m.quota_bytes);
		goto out;
	}
	memset(&meta, 0, sizeof(meta));
	meta.arrival = time(NULL);
	meta.mail_from = (char *)from;
	meta.orcpt = pos[0];
	meta.size = msg.len;
	if (sbx_spool_deliver(c->state_dir, m.id, m.spool_pk, &meta, msg.data, msg.len, did, &err) < 0) {
		ctl_fail_err(c, &err);
		goto out;
	}
	if (sbx_dir_usage_add(c->dir, m.id, (int64_t)msg.len, 1, &err) < 0) {
		ctl_fail(c, "delivered %s, but updating usage failed: %s", did, err);
		free(err);
		goto out;
	}
	printf("delivered %s\n", did);
	rc = 0;
out:
	sbx_buf_free(&msg);
	sbx_dir_mailbox_clear(&m);
	return rc;
}

/* ------------------------------------------------------------ export */

/* The mbox output: FILE.tmp renamed over FILE at the end, or stdout. */
struct outfile {
	const char *path;            /* NULL = stdout */
	char *tmp;
	int fd;
};

static int
outfile_open(struct ctl *c, const char *path, struct outfile *o)
{
	memset(o, 0, sizeof(*o));
	o->fd = -1;
	if (strcmp(path, "-") == 0) {
		o->fd = STDOUT_FILENO;
		return 0;
	}
	o->path = path;
	/* A new file with a random name (O_EXCL): never write the decrypted
	 * mailbox into a file that someone else created or linked there. */
	o->tmp = sbx_xasprintf("%s.XXXXXX", path);
	o->fd = mkostemp(o->tmp, O_CLOEXEC);
	if (o->fd < 0) {
		int rc = ctl_fail(c, "cannot create %s: %s", o->tmp, strerror(errno));

		free(o->tmp);
		o->tmp = NULL;
		return rc;
	}
	return 0;
}

static void
outfile_abort(struct outfile *o)
{
	if (o->path != NULL && o->fd >= 0) {
		close(o->fd);
		unlink(o->tmp);
	}
	free(o->tmp);
	o->tmp = NULL;
	o->fd = -1;
}

static int
outfile_commit(struct ctl *c, struct outfile *o)
{
	char *dir, *slash;
	int rc = 0;

	if (o->path == NULL)
		return 0;
	if (fsync(o->fd) < 0) {
		rc = ctl_fail(c, "fsync %s: %s", o->tmp, strerror(errno));
		outfile_abort(o);
		return rc;
	}
	if (close(o->fd) < 0) {
		o->fd = -1;
		rc = ctl_fail(c, "close %s: %s", o->tmp, strerror(errno));
		unlink(o->tmp);
		free(o->tmp);
		o->tmp = NULL;
		return rc;
	}
	o->fd = -1;
	if (rename(o->tmp, o->path) < 0) {
		rc = ctl_fail(c, "rename %s: %s", o->tmp, strerror(errno));
		unlink(o->tmp);
	} else {
		dir = sbx_xstrdup(o->path);
		slash = strrchr(dir, '/');
		if (slash == NULL)
			strcpy(dir, ".");
		else if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (sbx_fsync_dir(dir) < 0)
			rc = ctl_fail(c, "fsync %s: %s", dir, strerror(errno));
		free(dir);
	}
	free(o->tmp);
	o->tmp = NULL;
	return rc;
}

/* Every message of every folder as mboxrd into fd, each with its
 * X-Sealbox block (mbox.h): folder, flags, keywords; the From_ line
 * carries the INTERNALDATE. */
static int
export_messages(struct ctl *c, struct sbx_store *st, int fd, size_t *count_r)
{
	struct sbx_store_folder *folders = NULL;
	struct sbx_store_msg *msgs = NULL;
	struct sbx_buf b = { 0 };
	size_t nf = 0, nm = 0, i, j;
	char *err = NULL, *data;
	size_t len;
	int rc = 1;

	*count_r = 0;
	if (sbx_store_folders(st, &folders, &nf, &err) < 0)
		return ctl_fail_err(c, &err);
	for (i = 0; i < nf; i++) {
		if (sbx_store_list(st, folders[i].name, 0, &msgs, &nm, &err) < 0) {
			ctl_fail_err(c, &err);
			goto out;
		}
		for (j = 0; j < nm; j++) {
			if (sbx_store_fetch_raw(st, folders[i].name, msgs[j].uid, &data, &len, &err) < 0) {
				ctl_fail_err(c, &err);
				goto out;
			}
			b.len = 0;
			sbx_mbox_write_state(&b, parse_iso8601(msgs[j].internaldate), folders[i].name,
					     msgs[j].flags, msgs[j].keywords, data, len);
			sbx_wipe_free(data, len);
			if (sbx_write_all(fd, b.data, b.len) < 0) {
				ctl_fail(c, "writing mbox: %s", strerror(errno));
				goto out;
			}
			(*count_r)++;
		}
		sbx_store_msgs_free(msgs, nm);
		msgs = NULL;
		nm = 0;
	}
	rc = 0;
out:
	if (msgs != NULL)
		sbx_store_msgs_free(msgs, nm);
	sbx_wipe_free(b.data, b.cap);   /* decrypted messages */
	sbx_store_folders_free(folders, nf);
	return rc;
}

static int
cmd_export(struct ctl *c, int argc, char **argv)
{
	const char *mbox = NULL;
	int pw_stdin = 0;
	const struct opt opts[] = {
		{ "--password-stdin", 0, NULL, &pw_stdin },
		{ "--mbox", 1, &mbox, NULL },
		{ NULL, 0, NULL, NULL },
	};
	char *pos[MAX_ARGS], *err = NULL;
	struct sbx_dir_mailbox m;
	struct secret pw = { 0 };
	struct opened o = { -1, NULL, NULL };
	struct outfile out = { NULL, NULL, -1 };
	struct sbx_import_stats stats;
	size_t count = 0;
	int npos, rc;

	if ((rc = parse_args("export", argc, argv, opts, 1, 1, pos, &npos)) != 0)
		return rc;
	if (!pw_stdin || mbox == NULL || *mbox == '\0')
		return usage_error("export: --password-stdin and --mbox FILE are required");
	if (open_dir(c, 0) != 0 || find_mailbox(c, pos[0], &m) != 0)
		return 1;
	rc = 1;
	if (read_secret_line(c, "password", 1, SBX_MAX_PASSWORD_LEN, &pw) != 0 ||
	    mailbox_open(c, &m, &pw, &o) != 0)
		goto done;
	secret_free(&pw);
	/* Create the output before importing the spool, so a bad path changes
	 * nothing. */
	if (outfile_open(c, mbox, &out) != 0)
		goto done;
	if (sbx_spool_import(c->state_dir, m.id, o.keys, o.st, c->msg_limit, &stats, &err) < 0) {
		ctl_fail_err(c, &err);
		goto done;
	}
	if (export_messages(c, o.st, out.fd, &count) != 0 || outfile_commit(c, &out) != 0)
		goto done;
	usage_refresh(c, m.id, o.st);
	if (out.path != NULL) {
		printf("exported %zu messages", count);
		if (stats.damaged > 0)
			printf(" (%zu damaged spool entries left in place)", stats.damaged);
		printf("\n");
	}
	rc = 0;
done:
	outfile_abort(&out);
	opened_close(&o);
	secret_free(&pw);
	sbx_dir_mailbox_clear(&m);
	return rc;
}

/* ------------------------------------------------------------ import */

/* Warnings printed after a successful import (at most this many lines). */
#define MAX_IMPORT_WARNINGS 50

struct parsed_msg {
	char *data;                  /* the message without its X-Sealbox block */
	size_t len;
	time_t date;
	char *folder;                /* X-Sealbox-Folder, or NULL: --folder/INBOX */
	unsigned flags;
	char *keywords;              /* valid atoms, space-separated, "" none */
};

/* Warnings of one import: kept until it has succeeded, then printed (a
 * failed command prints only its error line). */
struct warnings {
	char *v[MAX_IMPORT_WARNINGS];
	size_t n, more;
};

static void warning_add(struct warnings *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
warning_add(struct warnings *w, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (w->n >= MAX_IMPORT_WARNINGS) {
		w->more++;
		return;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	w->v[w->n++] = s != NULL ? s : sbx_xstrdup("out of memory");
}

static void
warnings_print(const struct warnings *w)
{
	size_t i;
	char *p;

	for (i = 0; i < w->n; i++) {
		for (p = w->v[i]; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		fprintf(stderr, "sealboxctl: warning: %s\n", w->v[i]);
	}
	if (w->more > 0)
		fprintf(stderr, "sealboxctl: warning: %zu more warnings not shown\n", w->more);
}

static void
warnings_free(struct warnings *w)
{
	size_t i;

	for (i = 0; i < w->n; i++)
		free(w->v[i]);
	memset(w, 0, sizeof(*w));
}

static void
parsed_free(struct parsed_msg *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		sbx_wipe_free(v[i].data, v[i].len);
		free(v[i].folder);
		free(v[i].keywords);
	}
	free(v);
}

/* The keywords of one message that the store accepts as IMAP atoms; the
 * others become warnings. malloc'd, "" when none. */
static char *
valid_keywords(const char *tokens, size_t msgno, struct warnings *w)
{
	struct sbx_buf b = { 0 };
	const char *p = tokens, *tok;
	char *one, *norm, *err = NULL;

	while (*p != '\0') {
		while (*p == ' ')
			p++;
		tok = p;
		while (*p != '\0' && *p != ' ')
			p++;
		if (p == tok)
			continue;
		one = sbx_xstrndup(tok, (size_t)(p - tok));
		norm = sbx_store_keywords_normalize(one, &err);
		if (norm == NULL) {
			warning_add(w, "message %zu: keyword \"%s\" skipped: not an IMAP keyword",
				    msgno, one);
			free(err);
			err = NULL;
		} else if (*norm != '\0') {
			if (b.len > 0)
				sbx_buf_append(&b, " ", 1);
			sbx_buf_append(&b, norm, strlen(norm));
		}
		free(norm);
		free(one);
	}
	sbx_buf_append(&b, "", 1);
	return b.data;
}

/* Take one message's X-Sealbox block or foreign state headers (mbox.h)
 * into v; 0, or 1 with the error recorded. */
static int
parsed_set(struct ctl *c, const char *path, size_t msgno, const struct sbx_buf *msg,
	   time_t date, struct parsed_msg *v, struct warnings *w)
{
	struct sbx_mbox_state st;
	char *err = NULL;
	size_t i;

	if (sbx_mbox_state_parse(msg->data, msg->len, &st, &err) < 0) {
		sbx_mbox_state_free(&st);
		ctl_fail(c, "%s: message %zu: %s", path, msgno, err);
		free(err);
		return 1;
	}
	for (i = 0; i < st.nwarnings; i++)
		warning_add(w, "message %zu: %s", msgno, st.warnings[i]);
	if (st.more_warnings > 0)
		warning_add(w, "message %zu: %zu more warnings", msgno, st.more_warnings);
	if (msg->len - st.skip == 0) {
		sbx_mbox_state_free(&st);
		return ctl_fail(c, "%s: message %zu is empty", path, msgno);
	}
	v->len = msg->len - st.skip;
	v->data = sbx_xmalloc(v->len);
	memcpy(v->data, msg->data + st.skip, v->len);
	v->date = date;
	v->folder = st.folder;
	st.folder = NULL;
	v->flags = st.flags;
	v->keywords = valid_keywords(st.keywords, msgno, w);
	sbx_mbox_state_free(&st);
	return 0;
}

/* Read and parse the whole mbox before anything is written. */
static int
parse_mbox(struct ctl *c, const char *path, struct parsed_msg **v_r, size_t *n_r,
	   struct warnings *w)
{
	struct parsed_msg *v = NULL;
	struct sbx_buf b = { 0 }, msg = { 0 };
	char *data = NULL, *err = NULL;
	size_t len = 0, pos = 0, n = 0, cap = 0;
	time_t date;
	int r, rc = 1;

	*v_r = NULL;
	*n_r = 0;
	if (strcmp(path, "-") == 0) {
		if ((r = read_stdin(c, MAX_MBOX_FILE, &b)) != 0) {
			sbx_buf_free(&b);
			if (r == 2)
				ctl_fail(c, "mbox on stdin larger than %ld bytes", (long)MAX_MBOX_FILE);
			return 1;
		}
		data = b.data;
		len = b.len;
	} else if (sbx_read_file(path, MAX_MBOX_FILE, &data, &len) < 0) {
		return ctl_fail(c, "cannot read %s: %s", path,
				errno == EFBIG ? "larger than 1 GiB" : strerror(errno));
	}
	while ((r = sbx_mbox_next(data ? data : "", len, &pos, (size_t)c->msg_limit,
				  &msg, &date, &err)) > 0) {
		if (msg.len == 0) {
			ctl_fail(c, "%s: message %zu is empty", path, n + 1);
			goto out;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = sbx_xrealloc(v, cap * sizeof(*v));
		}
		if (parsed_set(c, path, n + 1, &msg, date, &v[n], w) != 0)
			goto out;
		n++;
	}
	if (r < 0) {
		ctl_fail(c, "%s: %s", path, err);
		free(err);
		goto out;
	}
	*v_r = v;
	*n_r = n;
	v = NULL;
	n = 0;
	rc = 0;
out:
	parsed_free(v, n);
	sbx_wipe_free(msg.data, msg.cap);
	sbx_wipe_free(data, len);
	return rc;
}

/* A folder messages are imported into, and the keywords it has ever
 * used: a folder holds at most SBX_STORE_MAX_KEYWORDS distinct ones, so
 * further new ones are skipped (with a warning) rather than failing the
 * whole import. */
struct import_folder {
	char *name;
	char **kw;
	size_t nkw;
};

struct import_folders {
	struct import_folder *v;
	size_t n;
};

static void
import_folders_free(struct import_folders *f)
{
	size_t i, j;

	for (i = 0; i < f->n; i++) {
		for (j = 0; j < f->v[i].nkw; j++)
			free(f->v[i].kw[j]);
		free(f->v[i].kw);
		free(f->v[i].name);
	}
	free(f->v);
	memset(f, 0, sizeof(*f));
}

static void
import_folder_kw_add(struct import_folder *f, const char *kw, size_t n)
{
	f->kw = sbx_xrealloc(f->kw, (f->nkw + 1) * sizeof(*f->kw));
	f->kw[f->nkw++] = sbx_xstrndup(kw, n);
}

/* The folder name, created (with its parents) when missing. NULL and
 * *err_r on error. */
static struct import_folder *
import_folder_get(struct sbx_store *st, struct import_folders *f, const char *name, char **err_r)
{
	struct import_folder *e;
	const char *p, *tok;
	char *kws = NULL, *err = NULL;
	int64_t id;
	size_t i;

	if (strcasecmp(name, "INBOX") == 0)
		name = "INBOX";
	for (i = f->n; i > 0; i--)           /* the latest one first */
		if (strcmp(f->v[i - 1].name, name) == 0)
			return &f->v[i - 1];
	if (sbx_store_folder_id(st, name, &id, &err) < 0) {
		free(err);
		if (sbx_store_folder_create(st, name, &err) < 0) {
			*err_r = sbx_xasprintf("cannot create folder %s: %s", name, err);
			free(err);
			return NULL;
		}
	}
	if (sbx_store_folder_keywords(st, name, &kws, &err) < 0) {
		*err_r = err;
		return NULL;
	}
	f->v = sbx_xrealloc(f->v, (f->n + 1) * sizeof(*f->v));
	e = &f->v[f->n++];
	memset(e, 0, sizeof(*e));
	e->name = sbx_xstrdup(name);
	for (p = kws; p != NULL && *p != '\0';) {
		while (*p == ' ')
			p++;
		tok = p;
		while (*p != '\0' && *p != ' ')
			p++;
		if (p > tok)
			import_folder_kw_add(e, tok, (size_t)(p - tok));
	}
	free(kws);
	return e;
}

/* keywords limited to what the folder can still take: malloc'd. */
static char *
import_folder_keywords(struct import_folder *f, const char *keywords, size_t msgno,
		       struct warnings *w)
{
	struct sbx_buf b = { 0 };
	const char *p = keywords, *tok;
	size_t i, n;

	while (*p != '\0') {
		while (*p == ' ')
			p++;
		tok = p;
		while (*p != '\0' && *p != ' ')
			p++;
		n = (size_t)(p - tok);
		if (n == 0)
			continue;
		for (i = 0; i < f->nkw; i++)
			if (strlen(f->kw[i]) == n && strncasecmp(f->kw[i], tok, n) == 0)
				break;
		if (i == f->nkw) {
			if (f->nkw >= SBX_STORE_MAX_KEYWORDS) {
				warning_add(w, "message %zu: keyword \"%.*s\" skipped: folder %s "
					    "already has %d keywords", msgno, (int)n, tok, f->name,
					    SBX_STORE_MAX_KEYWORDS);
				continue;
			}
			import_folder_kw_add(f, tok, n);
		}
		if (b.len > 0)
			sbx_buf_append(&b, " ", 1);
		sbx_buf_append(&b, tok, n);
	}
	sbx_buf_append(&b, "", 1);
	return b.data;
}

/* Append every parsed message in one transaction: all or nothing. */
static int
import_messages(struct ctl *c, struct sbx_store *st, const char *default_folder,
		const struct parsed_msg *msgs, size_t n, struct warnings *w)
{
	struct import_folders folders = { NULL, 0 };
	struct import_folder *f;
	time_t now = time(NULL);
	char *err = NULL, *kw;
	uint32_t uid;
	size_t i;
	int r;

	if (sbx_store_begin(st, &err) < 0)
		return ctl_fail_err(c, &err);
	for (i = 0; i < n; i++) {
		f = import_folder_get(st, &folders, msgs[i].folder != NULL ? msgs[i].folder :
				      default_folder, &err);
		if (f == NULL)
			goto fail;
		kw = import_folder_keywords(f, msgs[i].keywords, i + 1, w);
		r = sbx_store_append(st, f->name, msgs[i].data, msgs[i].len,
				     msgs[i].date > 0 ? msgs[i].date : now, msgs[i].flags,
				     kw, NULL, &uid, &err);
		free(kw);
		if (r < 0)
			goto fail;
	}
	import_folders_free(&folders);
	if (sbx_store_commit(st, &err) < 0)
		return ctl_fail_err(c, &err);
	return 0;
fail:
	sbx_store_rollback(st);
	import_folders_free(&folders);
	ctl_fail(c, "message %zu: %s", i + 1, err != NULL ? err : "failed");
	free(err);
	return 1;
}

static int
cmd_import(struct ctl *c, int argc, char **argv)
{
	const char *mbox = NULL, *folder = "INBOX";
	int pw_stdin = 0;
	const struct opt opts[] = {
		{ "--password-stdin", 0, NULL, &pw_stdin },
		{ "--mbox", 1, &mbox, NULL },
		{ "--folder", 1, &folder, NULL },
		{ NULL, 0, NULL, NULL },
	};
	char *pos[MAX_ARGS];
	struct sbx_dir_mailbox m;
	struct secret pw = { 0 };
	struct opened o = { -1, NULL, NULL };
	struct parsed_msg *msgs = NULL;
	struct warnings w;
	size_t n = 0;
	int npos, rc;

	if ((rc = parse_args("import", argc, argv, opts, 1, 1, pos, &npos)) != 0)
		return rc;
	if (!pw_stdin || mbox == NULL || *mbox == '\0')
		return usage_error("import: --password-stdin and --mbox FILE are required");
	if (*folder == '\0' || strlen(folder) > SBX_STORE_MAX_FOLDER_NAME)
		return ctl_fail(c, "--folder: name empty or longer than %d bytes",
				SBX_STORE_MAX_FOLDER_NAME);
	if (open_dir(c, 0) != 0 || find_mailbox(c, pos[0], &m) != 0)
		return 1;
	memset(&w, 0, sizeof(w));
	rc = 1;
	/* The password line comes first on stdin (an mbox on stdin follows it). */
	if (read_secret_line(c, "password", 1, SBX_MAX_PASSWORD_LEN, &pw) != 0 ||
	    parse_mbox(c, mbox, &msgs, &n, &w) != 0 ||
	    mailbox_open(c, &m, &pw, &o) != 0)
		goto done;
	secret_free(&pw);
	if (import_messages(c, o.st, folder, msgs, n, &w) != 0)
		goto done;
	usage_refresh(c, m.id, o.st);
	warnings_print(&w);
	printf("imported %zu messages\n", n);
	rc = 0;
done:
	opened_close(&o);
	parsed_free(msgs, n);
	warnings_free(&w);
	secret_free(&pw);
	sbx_dir_mailbox_clear(&m);
	return rc;
}

/* ------------------------------------------------------------ main */

struct command {
	const char *name;
	const char *sub;             /* NULL: no subcommand */
	int (*run)(struct ctl *c, int argc, char **argv);
};

static const struct command commands[] = {
	{ "init", NULL, cmd_init },
	{ "domain", "add", cmd_domain_add },
	{ "domain", "del", cmd_domain_del },
	{ "domain", "list", cmd_domain_list },
	{ "mailbox", "add", cmd_mailbox_add },
	{ "mailbox", "passwd", cmd_mailbox_passwd },
	{ "mailbox", "list", cmd_mailbox_list },
	{ "mailbox", "del", cmd_mailbox_del },
	{ "mailbox", "messages", cmd_mailbox_messages },
	{ "mailbox", "spool", cmd_mailbox_spool },
	{ "alias", "add", cmd_alias_add },
	{ "alias", "list", cmd_alias_list },
	{ "alias", "del", cmd_alias_del },
	{ "deliver", NULL, cmd_deliver },
	{ "export", NULL, cmd_export },
	{ "import", NULL, cmd_import },
};

static const struct command *
command_find(int argc, char **argv, int *used_r)
{
	size_t i;
	int known = 0;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, argv[0]) != 0)
			continue;
		known = 1;
		if (commands[i].sub == NULL) {
			*used_r = 1;
			return &commands[i];
		}
		if (argc > 1 && strcmp(commands[i].sub, argv[1]) == 0) {
			*used_r = 2;
			return &commands[i];
		}
	}
	*used_r = known;
	return NULL;
}

/* Load the config and the values every command needs. */
static int
ctl_setup(struct ctl *c, const char *config_path)
{
	char *err = NULL;

	if (sbx_config_load(config_path, &c->cfg, &err) < 0)
		return ctl_fail_err(c, &err);
	c->state_dir = sbx_config_get(c->cfg, "state_dir");
	if (c->state_dir == NULL || *c->state_dir == '\0')
		return ctl_fail(c, "config: state_dir is not set");
	if (sbx_config_get_size(c->cfg, "message_size_limit", &c->msg_limit, &err) < 0)
		return ctl_fail_err(c, &err);
	if (c->msg_limit == 0 || c->msg_limit > (uint64_t)SBX_MAX_MESSAGE_SIZE)
		return ctl_fail(c, "config: message_size_limit must be 1..%ld bytes",
				(long)SBX_MAX_MESSAGE_SIZE);
	return 0;
}

int
main(int argc, char **argv)
{
	struct ctl c;
	const struct command *cmd;
	const char *config_path = NULL;
	int ch, rc, used, verbose = 0;
	char *p;

	umask(077);
	/* Mailbox keys and passwords pass through this process: no core dumps. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	memset(&c, 0, sizeof(c));
	sbx_log_open("sealboxctl", 1);
	while ((ch = getopt(argc, argv, "+c:hv")) != -1) {
		switch (ch) {
		case 'c':
			config_path = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'v':
			verbose = 1;
			break;
		default:
			fputs(usage_text, stderr);
			return EXIT_USAGE;
		}
	}
	/* Library warnings (a damaged VFS page, a spool entry left in place)
	 * would add lines to stderr; the command reports them itself. */
	sbx_log_set_level(verbose ? LOG_DEBUG : LOG_ERR);
	argc -= optind;
	argv += optind;
	if (argc == 0)
		return usage_error("missing command");
	if (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	cmd = command_find(argc, argv, &used);
	if (cmd == NULL)
		return used ? usage_error("%s: unknown or missing subcommand", argv[0])
			    : usage_error("unknown command %s", argv[0]);
	if (sbx_keys_init() < 0) {
		fprintf(stderr, "sealboxctl: cannot initialise libsodium\n");
		return 1;
	}
	if (ctl_setup(&c, config_path) == 0)
		rc = cmd->run(&c, argc - used, argv + used);
	else
		rc = 1;
	if (fflush(stdout) != 0 && rc == 0)
		rc = ctl_fail(&c, "writing to stdout: %s", strerror(errno));
	if (rc == 1) {
		if (c.error == NULL)
			c.error = sbx_xstrdup("failed");
		for (p = c.error; *p; p++)         /* exactly one line */
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		fprintf(stderr, "sealboxctl: %s\n", c.error);
	}
	free(c.error);
	sbx_dir_close(&c.dir);
	sbx_config_free(&c.cfg);
	return rc;
}
