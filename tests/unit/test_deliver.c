/*
 * test_deliver.c - one recipient's spool delivery (deliver.h): the sealed
 * entry holds Delivered-To, Received and the message byte-exact; a Postfix
 * retry of a recorded (queue id, recipient) stores nothing; quota; unknown
 * mailboxes; a write failure (RLIMIT_FSIZE) leaves the spool journal
 * exactly as long as before and changes no counter; the hop count of
 * the header block (loop protection).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deliver.h"
#include "directory.h"
#include "keys.h"
#include "log.h"
#include "spool.h"
#include "tap.h"
#include "util.h"

static char state[256];
static struct sbx_dir *dir;
static struct sbx_mailbox_keys *keys;
static char mbox[SBX_ID_HEX];

static const char msg[] = "From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n.leading dot kept\r\n";

static void
setup(void)
{
	unsigned char env[16] = { 0 };
	char *err = NULL;

	if (sbx_dir_open(state, SBX_DIR_CREATE, &dir, &err) < 0 ||
	    sbx_dir_domain_add(dir, "example.com", &err) < 0 ||
	    (mbox[0] = '\0', sbx_dir_mailbox_add(dir, "alice@example.com", 0, keys->spool_pk, "e0", env,
						 sizeof(env), mbox, &err) < 0)) {
		printf("# setup: %s\n", err);
		free(err);
	}
}

static char *
read_entry(const char *id, size_t *len_r, struct sbx_spool_meta *meta_r)
{
	struct sbx_spool_reader *r = NULL;
	char *data = NULL, *err = NULL;

	if (sbx_spool_reader_open(state, mbox, id, keys->spool_pk, keys->spool_sk, &r, &err) < 0 ||
	    sbx_spool_read_all(r, 1 << 20, &data, len_r, &err) < 0) {
		printf("# read entry: %s\n", err);
		free(err);
		sbx_spool_reader_close(&r);
		return NULL;
	}
	meta_r->arrival = sbx_spool_reader_meta(r)->arrival;
	meta_r->orcpt = sbx_xstrdup(sbx_spool_reader_meta(r)->orcpt);
	meta_r->mail_from = sbx_xstrdup(sbx_spool_reader_meta(r)->mail_from);
	sbx_spool_reader_close(&r);
	return data;
}

static size_t
spool_count(void)
{
	char **ids = NULL, *err = NULL;
	size_t n = 0;

	if (sbx_spool_list(state, mbox, &ids, &n, &err) < 0) {
		free(err);
		return (size_t)-1;
	}
	sbx_spool_list_free(ids, n);
	return n;
}

static struct sbx_deliver_req
req(const char *queue_id, const char *rcpt)
{
	struct sbx_deliver_req r = {
		.mailbox_id = mbox, .rcpt = rcpt, .orcpt = "sales+x@example.com",
		.mail_from = "bob@example.org", .queue_id = queue_id,
		.received = "by mx.example.com (sealbox-lmtpd) with LMTP; Wed, 25 Nov 2026 14:00:00 +0000",
		.msg = msg, .len = sizeof(msg) - 1, .arrival = 1764079200,
	};

	return r;
}

TEST(spooled_with_headers_byte_exact)
{
	struct sbx_deliver_req r = req(NULL, "x@mailbox.sealbox.internal");
	struct sbx_spool_meta meta = { 0 };
	char id[SBX_ID_HEX] = "", *err = NULL, *data;
	const char *want = "Delivered-To: sales+x@example.com\r\n"
			   "Received: by mx.example.com (sealbox-lmtpd) with LMTP; Wed, 25 Nov 2026 14:00:00 +0000\r\n";
	uint64_t bytes = 0;
	size_t len = 0;

	CHECK(sbx_deliver_spool(dir, state, &r, id, &bytes, &err) == SBX_DELIVER_OK);
	CHECK(sbx_is_id(id) && bytes == strlen(want) + sizeof(msg) - 1);
	data = read_entry(id, &len, &meta);
	CHECK(data != NULL && len == bytes);
	CHECK(data != NULL && memcmp(data, want, strlen(want)) == 0 &&
	      memcmp(data + strlen(want), msg, sizeof(msg) - 1) == 0);
	CHECK(meta.arrival == 1764079200 && meta.orcpt && strcmp(meta.orcpt, "sales+x@example.com") == 0);
	CHECK(meta.mail_from && strcmp(meta.mail_from, "bob@example.org") == 0);
	free(data);
	sbx_spool_meta_free(&meta);
	/* no ORCPT: the mailbox's own address; LF message: LF headers */
	r.orcpt = NULL;
	r.received = NULL;
	r.msg = "Subject: lf\n\nbody\n";
	r.len = strlen(r.msg);
	id[0] = '\0';
	CHECK(sbx_deliver_spool(dir, state, &r, id, &bytes, &err) == SBX_DELIVER_OK);
	data = read_entry(id, &len, &meta);
	CHECK(data != NULL && len == bytes && strncmp(data, "Delivered-To: alice@example.com\nSubject: lf\n", 44) == 0);
	free(data);
	sbx_spool_meta_free(&meta);
	/* a header value with a line break is refused */
	r.orcpt = "evil@example.com\r\nBcc: x@y";
	id[0] = '\0';
	CHECK(sbx_deliver_spool(dir, state, &r, id, &bytes, &err) == SBX_DELIVER_TEMPFAIL);
	free(err);
	CHECK(spool_count() == 2);
}

TEST(retry_of_recorded_delivery_stores_nothing)
{
	struct sbx_deliver_req r = req("4ABCDEF123", "x@mailbox.sealbox.internal");
	struct sbx_dir_delivery d;
	char id[SBX_ID_HEX] = "", again[SBX_ID_HEX] = "", *err = NULL;
	size_t before = spool_count();
	uint64_t bytes = 0;
	struct sbx_dir_mailbox m;

	CHECK(sbx_deliver_spool(dir, state, &r, id, &bytes, &err) == SBX_DELIVER_OK);
	d.mailbox_id = mbox;
	d.queue_id = r.queue_id;
	d.rcpt = r.rcpt;
	d.delivery_id = id;
	d.bytes = bytes;
	CHECK(sbx_dir_deliveries_record(dir, &d, 1, time(NULL), &err) == 0);
	CHECK(sbx_deliver_spool(dir, state, &r, again, &bytes, &err) == SBX_DELIVER_DUPLICATE);
	CHECK(strcmp(again, id) == 0);
	CHECK(spool_count() == before + 1);
	/* another recipient of the same queue file is a new delivery */
	r.rcpt = "y@mailbox.sealbox.internal";
	again[0] = '\0';
	CHECK(sbx_deliver_spool(dir, state, &r, again, &bytes, &err) == SBX_DELIVER_OK);
	CHECK(spool_count() == before + 2);
	CHECK(sbx_dir_mailbox_find(dir, mbox, &m, &err) == 0);
	CHECK(m.usage_msgs == 1 && m.usage_bytes == d.bytes);
	sbx_dir_mailbox_clear(&m);
	/* records older than a week are dropped at the next batch */
	CHECK(sbx_dir_deliveries_record(dir, &d, 1, time(NULL) + SBX_DIR_DELIVERED_KEEP + 10, &err) == 0);
	r.rcpt = "x@mailbox.sealbox.internal";
	CHECK(sbx_dir_delivery_seen(dir, "4ABCDEF123", r.rcpt, again, &err) == 1);
}

TEST(quota_and_unknown)
{
	struct sbx_deliver_req r = req(NULL, "x@mailbox.sealbox.internal");
	char id[SBX_ID_HEX] = "", *err = NULL, other[SBX_ID_HEX];
	size_t before = spool_count();
	uint64_t bytes = 0;
	struct sbx_dir_mailbox m;

	CHECK(sbx_dir_mailbox_find(dir, mbox, &m, &err) == 0);
	CHECK(sbx_dir_mailbox_set_quota(dir, mbox, m.usage_bytes + 100, &err) == 0);
	sbx_dir_mailbox_clear(&m);
	CHECK(sbx_deliver_spool(dir, state, &r, id, &bytes, &err) == SBX_DELIVER_OVER_QUOTA);
	CHECKF(err && strstr(err, "mailbox full"), "%s", err ? err : "");
	free(err);
	err = NULL;
	CHECK(spool_count() == before);
	CHECK(sbx_dir_mailbox_set_quota(dir, mbox, 0, &err) == 0);
	sbx_random_id(other);
	r.mailbox_id = other;
	CHECK(sbx_deliver_spool(dir, state, &r, id, &bytes, &err) == SBX_DELIVER_UNKNOWN);
	free(err);
	err = NULL;
	r.mailbox_id = "../../etc";
	CHECK(sbx_deliver_spool(dir, state, &r, id, &bytes, &err) == SBX_DELIVER_UNKNOWN);
	free(err);
}

static long long
journal_size(void)
{
	char *p = sbx_xasprintf("%s/spool/%s/journal", state, mbox);
	struct stat st;
	long long n = stat(p, &st) == 0 ? (long long)st.st_size : -1;

	free(p);
	return n;
}

TEST(write_failure_leaves_nothing)
{
	size_t before = spool_count();
	long long size = journal_size();
	pid_t pid;
	int status;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct sbx_deliver_req r = req(NULL, "x@mailbox.sealbox.internal");
		struct rlimit rl;
		char id[SBX_ID_HEX] = "", *err = NULL;
		uint64_t bytes = 0;
		char *big = sbx_xmalloc(300000);

		memset(big, 'a', 300000);
		memcpy(big, "Subject: big\r\n\r\n", 16);
		r.msg = big;
		r.len = 300000;
		signal(SIGXFSZ, SIG_IGN);
		if (getrlimit(RLIMIT_FSIZE, &rl) < 0)
			_exit(64);
		rl.rlim_cur = 100000;
		if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
			_exit(64);
		_exit(sbx_deliver_spool(dir, state, &r, id, &bytes, &err) == SBX_DELIVER_TEMPFAIL &&
		      err != NULL ? 0 : 1);
	}
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(spool_count() == before);
	CHECKF(size > 0 && journal_size() == size, "journal %lld bytes, was %lld", journal_size(), size);
}

static unsigned
hops(const char *m)
{
	return sbx_deliver_hops(m, strlen(m));
}

TEST(hops_counted_in_the_header_block)
{
	static const char crlf[] =
		"Received: from a by b; Mon, 1 Jan 2026 00:00:00 +0000\r\n"
		"Subject: x\r\n"
		"RECEIVED: from c\r\n"
		"\tby d with ESMTP; Mon, 1 Jan 2026 00:00:00 +0000\r\n"
		"delivered-to: x@example.com\r\n"
		"X-Received: not a hop\r\n"
		"Received-SPF: pass\r\n"
		"X-Folded: one\r\n"
		" Received: in a continuation line\r\n"
		"Received : obsolete white space before the colon\r\n"
		"\r\n"
		"Received: in the body\r\n"
		"Delivered-To: in the body\r\n";
	char *lf = sbx_xstrdup(crlf), *big;
	size_t i, o = 0;
	struct sbx_buf b = { 0 };

	CHECK(hops(crlf) == 4);
	for (i = 0; lf[i] != '\0'; i++)
		if (lf[i] != '\r')
			lf[o++] = lf[i];
	lf[o] = '\0';
	CHECK(hops(lf) == 4);                         /* LF LF ends it too */
	free(lf);
	/* the header/body boundary, both line ends, and a message cut short */
	CHECK(hops("Received: a\r\n\r\nReceived: b\r\n") == 1);
	CHECK(hops("Received: a\n\nReceived: b\n") == 1);
	CHECK(hops("Received: a\r\nReceived: b") == 2);  /* no line end at all */
	CHECK(hops("Received: a\r\nReceived") == 1);     /* a name without ':' */
	CHECK(hops("") == 0);
	CHECK(sbx_deliver_hops(NULL, 0) == 0);
	CHECK(hops("\r\nReceived: a\r\n") == 0);       /* no header block */
	CHECK(hops("\nReceived: a\n") == 0);
	/* the length is the bound, not a NUL */
	CHECK(sbx_deliver_hops("Received: a\r\nReceived: b\r\n", 13) == 1);
	{
		static const char nul[] = "Received: a\0\r\nReceived: b\r\n";

		CHECK(sbx_deliver_hops(nul, sizeof(nul) - 1) == 2);
	}
	/* the first line that is no field ends the block (Postfix's cleanup
	 * takes it as the first body line) */
	CHECK(hops("Subject: x\r\nnot a header\r\nReceived: a\r\n") == 0);
	CHECK(hops("From sender Mon Jan  1 00:00:00 2026\nReceived: a\n") == 0);
	CHECK(hops(": no name\r\nReceived: a\r\n") == 0);
	CHECK(hops(" Received: a leading continuation\r\nReceived: b\r\n") == 0);
	CHECK(hops("X-\xc3\xa9t\xc3\xa9: 8-bit name\r\nReceived: a\r\n") == 1);
	/* a line of only CR is empty; a lone CR elsewhere is content */
	CHECK(hops("Received: a\r\n\r\r\nReceived: b\r\n") == 1);
	CHECK(hops("Received: a\r\r\nReceived: b\r\n") == 2);
	/* many */
	for (i = 0; i < 10000; i++)
		sbx_buf_appendf(&b, "%s: hop %zu\r\n", i % 2 ? "Received" : "Delivered-To", i);
	sbx_buf_appendf(&b, "\r\nbody\r\n");
	big = b.data;
	CHECK(sbx_deliver_hops(big, b.len) == 10000);
	free(big);
}

int
main(void)
{
	char tmpl[] = "/tmp/sbx-deliver-XXXXXX", *cmd;

	if (sbx_keys_init() < 0 || mkdtemp(tmpl) == NULL)
		return 2;
	sbx_log_set_level(LOG_ERR);
	snprintf(state, sizeof(state), "%s", tmpl);
	keys = sbx_keys_generate();
	setup();

	RUN(spooled_with_headers_byte_exact);
	RUN(retry_of_recorded_delivery_stores_nothing);
	RUN(quota_and_unknown);
	RUN(write_failure_leaves_nothing);
	RUN(hops_counted_in_the_header_block);

	sbx_dir_close(&dir);
	sbx_keys_free(&keys);
	cmd = sbx_xasprintf("rm -rf '%s'", state);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", state);
	free(cmd);
	return tap_done();
}
