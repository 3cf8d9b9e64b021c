/* test_config.c - sealbox.conf parsing: every malformed line is an error
 * naming the file and line; sizes and numbers parse strictly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"
#include "util.h"

static char dir[64];

static char *
write_conf(const char *name, const char *text, size_t len)
{
	char *p = sbx_xasprintf("%s/%s", dir, name);
	FILE *fp;

	if (text == NULL)
		return p;   /* a file that does not exist */
	fp = fopen(p, "w");
	if (fp != NULL) {
		fwrite(text, 1, len, fp);
		fclose(fp);
	}
	return p;
}

static void
expect_error(const char *name, const char *text, size_t len, const char *want)
{
	char *p = write_conf(name, text, len), *err = NULL;
	struct sbx_config *cfg = NULL;

	CHECKF(sbx_config_load(p, &cfg, &err) < 0, "%s: loaded", name);
	CHECKF(err != NULL && strstr(err, want) != NULL, "%s: error '%s', want '%s'", name,
	       err ? err : "(null)", want);
	CHECK(cfg == NULL);
	free(err);
	free(p);
}

TEST(good_file_and_defaults)
{
	static const char text[] = "# comment\n\n  state_dir =  /var/lib/x  \nkdf_memlimit=128M\n"
				   "message_size_limit = 10k\nmax_hops = 7";
	char *p = write_conf("good.conf", text, sizeof(text) - 1), *err = NULL;
	struct sbx_config *cfg = NULL;
	uint64_t v = 0;

	CHECK(sbx_config_load(p, &cfg, &err) == 0);
	if (cfg == NULL) {
		printf("# %s\n", err);
		free(err);
		free(p);
		return;
	}
	CHECK(strcmp(sbx_config_get(cfg, "state_dir"), "/var/lib/x") == 0);
	CHECK(sbx_config_get_size(cfg, "kdf_memlimit", &v, &err) == 0 && v == 128ULL << 20);
	CHECK(sbx_config_get_size(cfg, "message_size_limit", &v, &err) == 0 && v == 10240);
	CHECK(sbx_config_get_uint(cfg, "max_hops", &v, &err) == 0 && v == 7);
	/* Unset keys give their defaults. */
	CHECK(strcmp(sbx_config_get(cfg, "mailbox_domain"), "mailbox.sealbox.internal") == 0);
	CHECK(sbx_config_get(cfg, "tls_cert") == NULL);
	sbx_config_free(&cfg);
	CHECK(cfg == NULL);
	free(p);
}

TEST(bad_lines_name_file_and_line)
{
	char big[5000];
	static const char nul[] = "state_dir = /a\0b\n";

	expect_error("unknown.conf", "state_dir = /x\nbogus_key = 1\n", 29, "unknown.conf:2: unknown key 'bogus_key'");
	expect_error("dup.conf", "state_dir = /x\nstate_dir = /y\n", 30, "dup.conf:2: duplicate key 'state_dir'");
	expect_error("noeq.conf", "state_dir /x\n", 13, "noeq.conf:1: expected 'key = value'");
	expect_error("nul.conf", nul, sizeof(nul) - 1, "nul.conf:1: NUL byte in line");
	expect_error("nul_last.conf", "state_dir = /x\0junk", 19, "nul_last.conf:1: NUL byte in line");
	memset(big, 'a', sizeof(big));
	memcpy(big, "state_dir = ", 12);
	big[sizeof(big) - 1] = '\n';
	expect_error("long.conf", big, sizeof(big), "long.conf:1: line longer than 4096 bytes");
	expect_error("missing.conf", NULL, 0, "cannot read config");
}

TEST(sizes_and_numbers)
{
	struct sbx_config *cfg = sbx_config_new_defaults();
	uint64_t v = 0;
	char *err = NULL;

	CHECK(sbx_parse_size("0", &v) == 0 && v == 0);
	CHECK(sbx_parse_size("64M", &v) == 0 && v == 64ULL << 20);
	CHECK(sbx_parse_size("2G", &v) == 0 && v == 2ULL << 30);
	CHECK(sbx_parse_size("1KB", &v) == 0 && v == 1024);
	CHECK(sbx_parse_size("", &v) < 0);
	CHECK(sbx_parse_size("M", &v) < 0);
	CHECK(sbx_parse_size("-1", &v) < 0);
	CHECK(sbx_parse_size("10X", &v) < 0);
	CHECK(sbx_parse_size("99999999999999999999", &v) < 0);
	CHECK(sbx_parse_size("17179869184G", &v) < 0);   /* overflows 64 bits */
	CHECK(sbx_config_set(cfg, "max_hops", "12x", &err) == 0);
	CHECK(sbx_config_get_uint(cfg, "max_hops", &v, &err) < 0);
	CHECK(err && strstr(err, "max_hops"));
	free(err);
	err = NULL;
	CHECK(sbx_config_set(cfg, "nope", "1", &err) < 0);
	free(err);
	sbx_config_free(&cfg);
}

TEST(default_path_from_environment)
{
	setenv("SEALBOX_CONF", "/tmp/some.conf", 1);
	CHECK(strcmp(sbx_config_default_path(), "/tmp/some.conf") == 0);
	unsetenv("SEALBOX_CONF");
	CHECK(strcmp(sbx_config_default_path(), "/etc/sealbox/sealbox.conf") == 0);
}

int
main(void)
{
	char tmpl[] = "/tmp/sbx-config-XXXXXX", *cmd;

	if (mkdtemp(tmpl) == NULL)
		return 2;
	snprintf(dir, sizeof(dir), "%s", tmpl);
	RUN(good_file_and_defaults);
	RUN(bad_lines_name_file_and_line);
	RUN(sizes_and_numbers);
	RUN(default_path_from_environment);
	cmd = sbx_xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", dir);
	free(cmd);
	return tap_done();
}
