/*
 * fuzz_config.c - sealbox.conf parsing.
 *
 * The input is written to a temporary file and loaded with
 * sbx_config_load. A loaded config is queried for every key (and the
 * numeric ones parsed), then freed; a failure must come with a message.
 * sbx_parse_size also gets the input as a string.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz_common.h"
#include "util.h"

static const char *const keys[] = {
	"state_dir", "lmtp_listen", "webhook_listen", "milter_listen", "imap_listen",
	"imaps_listen", "pop3_listen", "delivery_socket", "tls_cert", "tls_key",
	"kdf_opslimit", "kdf_memlimit", "kdf_concurrency", "default_quota",
	"message_size_limit", "mailbox_domain", "webhook_domain", "unlock_grace",
	"max_hops", "log_level",
};
static const char *const size_keys[] = { "kdf_memlimit", "default_quota", "message_size_limit" };
static const char *const uint_keys[] = {
	"kdf_opslimit", "kdf_concurrency", "unlock_grace", "max_hops",
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *path;
	struct sbx_config *cfg = NULL;
	char *error = NULL, *s;
	uint64_t v;
	size_t i;
	int fd;

	if (path == NULL)
		path = sbx_xasprintf("%s/sealbox.conf", sbxf_tempdir());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	SBXF_ASSERT(fd >= 0);
	SBXF_ASSERT(sbx_write_all(fd, data, size) == 0);
	SBXF_ASSERT(close(fd) == 0);

	if (sbx_config_load(path, &cfg, &error) < 0) {
		SBXF_ASSERT(cfg == NULL && error != NULL);
		free(error);
	} else {
		SBXF_ASSERT(cfg != NULL && error == NULL);
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			(void)sbx_config_get(cfg, keys[i]);
		for (i = 0; i < sizeof(size_keys) / sizeof(size_keys[0]); i++) {
			if (sbx_config_get_size(cfg, size_keys[i], &v, &error) < 0) {
				SBXF_ASSERT(error != NULL);
				free(error);
				error = NULL;
			}
		}
		for (i = 0; i < sizeof(uint_keys) / sizeof(uint_keys[0]); i++) {
			if (sbx_config_get_uint(cfg, uint_keys[i], &v, &error) < 0) {
				SBXF_ASSERT(error != NULL);
				free(error);
				error = NULL;
			}
		}
		sbx_config_free(&cfg);
		SBXF_ASSERT(cfg == NULL);
	}

	s = sbx_xstrndup((const char *)data, size);
	(void)sbx_parse_size(s, &v);
	free(s);
	return 0;
}
