/* test_route.c - sealbox-milter's routing decisions (shared/route.c) and the
 * ORCPT encoders (shared/xtext.c) over a real directory.db in a temp dir:
 * every route kind, precedence, internal and unknown addresses, quota,
 * forward expansion and loops, de-duplication, the EOM plan, non-SMTP
 * rewrites, the EOH/EOM verdict, limits, directory errors and changes seen
 * live. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "directory.h"
#include "lmtp.h"
#include "route.h"
#include "sbx_limits.h"
#include "tap.h"
#include "util.h"
#include "xtext.h"

#define CHECK_STR(a, b) do { \
	const char *a_ = (a), *b_ = (b); \
	CHECKF(a_ != NULL && b_ != NULL && strcmp(a_, b_) == 0, "'%s' != '%s' (%s)", \
	       a_ ? a_ : "(null)", b_ ? b_ : "(null)", #a); \
} while (0)

static const unsigned char test_pk[32] = { 1, 2, 3 };
static const unsigned char test_env[] = "envelope";

/* ------------------------------------------------------------- fixture */

struct fx {
	char *state;
	struct sbx_dir *w;            /* writer, like sealboxctl */
	struct sbx_route_db *db;      /* the milter's read-only connection */
	struct sbx_route_cfg cfg;
};

static int
ok(int rc, char **err)
{
	if (rc != 0)
		printf("# unexpected rc=%d error=%s\n", rc, *err ? *err : "(none)");
	free(*err);
	*err = NULL;
	return rc == 0;
}

static void
fx_open(struct fx *f)
{
	char tmpl[] = "/tmp/sbx-test-route-XXXXXX";
	char *err = NULL;

	memset(f, 0, sizeof(*f));
	if (mkdtemp(tmpl) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	f->state = sbx_xstrdup(tmpl);
	if (sbx_dir_open(f->state, SBX_DIR_CREATE, &f->w, &err) < 0 ||
	    sbx_route_db_open(f->state, &f->db, &err) < 0) {
		printf("# open %s: %s\n", f->state, err);
		exit(1);
	}
	sbx_route_cfg_default(&f->cfg);
}

static int
rm_cb(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	return remove(path);
}

static void
fx_close(struct fx *f)
{
	sbx_route_db_close(&f->db);
	sbx_dir_close(&f->w);
	nftw(f->state, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f->state);
}

static void
domain(struct fx *f, const char *d)
{
	char *err = NULL;

	CHECK(ok(sbx_dir_domain_add(f->w, d, &err), &err));
}

/* A mailbox; its id into id. */
static void
mailbox(struct fx *f, const char *addr, uint64_t quota, char id[SBX_ID_HEX])
{
	char *err = NULL;

	id[0] = '\0';
	CHECK(ok(sbx_dir_mailbox_add(f->w, addr, quota, test_pk, "e0", test_env, sizeof(test_env),
				     id, &err), &err));
}

/* An alias from "kind:value" specs (NULL-terminated); the id of its first
 * webhook target into hook_id when not NULL. */
static void
alias_h(struct fx *f, const char *alias, char hook_id[SBX_ID_HEX], const char *const *specs)
{
	struct sbx_target t[8];
	char *err = NULL;
	size_t n = 0, i;
	int rc = 0;

	memset(t, 0, sizeof(t));
	for (; specs[n] != NULL && rc == 0; n++)
		rc = sbx_dir_target_parse(f->w, specs[n], &t[n], &err);
	if (rc == 0)
		rc = sbx_dir_alias_add(f->w, alias, t, n, &err);
	CHECKF(ok(rc, &err), "alias %s", alias);
	for (i = 0; i < n; i++) {
		if (hook_id != NULL && t[i].kind == SBX_TARGET_WEBHOOK) {
			memcpy(hook_id, t[i].webhook_id, SBX_ID_HEX);
			hook_id = NULL;
		}
		sbx_target_free(&t[i]);
	}
}

#define ALIAS(f, a, ...) alias_h(f, a, NULL, (const char *const[]){ __VA_ARGS__, NULL })
#define ALIAS_HOOK(f, a, id, ...) alias_h(f, a, id, (const char *const[]){ __VA_ARGS__, NULL })

static void
usage(struct fx *f, const char *id, uint64_t bytes)
{
	char *err = NULL;

	CHECK(ok(sbx_dir_usage_set(f->w, id, bytes, 1, &err), &err));
}

/* One RCPT; returns the result, the reply as "CODE XCODE TEXT" (or "")
 * into reply_r when not NULL. */
static enum sbx_route_result
rcpt_p(struct fx *f, struct sbx_route_msg *m, const char *arg, char *const *params, char **reply_r)
{
	struct sbx_route_reply r;
	enum sbx_route_result res = sbx_route_rcpt(m, f->db, arg, params, &r);

	CHECKF(res == r.result, "result %d != r.result %d", (int)res, (int)r.result);
	CHECKF(r.code == NULL || (strchr(r.text, '\n') == NULL && strchr(r.text, '\r') == NULL),
	       "reply text with a line break");
	if (reply_r != NULL)
		*reply_r = r.code ? sbx_xasprintf("%s %s %s", r.code, r.xcode, r.text) : sbx_xstrdup("");
	sbx_route_reply_clear(&r);
	return res;
}

static enum sbx_route_result
rcpt(struct fx *f, struct sbx_route_msg *m, const char *arg)
{
	return rcpt_p(f, m, arg, NULL, NULL);
}

#define CHECK_REPLY(f, m, arg, want_res, want_reply) do { \
	char *rep_ = NULL; \
	enum sbx_route_result res_ = rcpt_p(f, m, arg, NULL, &rep_); \
	CHECKF(res_ == (want_res), "rcpt %s: result %d, want %d", arg, (int)res_, (int)(want_res)); \
	CHECKF(strcmp(rep_, want_reply) == 0, "rcpt %s: reply '%s', want '%s'", arg, rep_, want_reply); \
	free(rep_); \
} while (0)

/* The EOM plan as "del ARG|add RCPT ARGS|..." or "reply: CODE XCODE TEXT". */
static char *
plan(struct sbx_route_msg *m)
{
	struct sbx_route_reply r;
	struct sbx_route_op *ops;
	struct sbx_buf b = { 0 };
	size_t n, i;

	if (sbx_route_eom(m, &ops, &n, &r) < 0) {
		char *s = sbx_xasprintf("reply: %s %s %s", r.code, r.xcode, r.text);

		sbx_route_reply_clear(&r);
		return s;
	}
	sbx_route_reply_clear(&r);
	for (i = 0; i < n; i++)
		sbx_buf_appendf(&b, "%s%s %s%s%s", i ? "|" : "", ops[i].add ? "add" : "del", ops[i].rcpt,
				ops[i].args ? " " : "", ops[i].args ? ops[i].args : "");
	sbx_buf_append(&b, "", 1);
	sbx_route_ops_free(ops, n);
	return b.data;
}

#define CHECK_PLAN(m, want) do { \
	char *p_ = plan(m), *w_ = (want); \
	CHECKF(strcmp(p_, w_) == 0, "plan:\n#  got  %s\n#  want %s", p_, w_); \
	free(p_); \
	free(w_); \
} while (0)

/* --------------------------------------------------------------- xtext */

/* enc decodes back to addr through lmtpd's decoder. */
static int
round_trips(const char *enc, const char *addr)
{
	const char *semi = strchr(enc, ';');
	char *type, *out = NULL;
	int good;

	if (semi == NULL)
		return 0;
	type = sbx_xstrndup(enc, (size_t)(semi - enc));
	good = sbx_lmtp_orcpt_decode(type, semi + 1, strlen(semi + 1), &out) == 0 &&
	    strcmp(out, addr) == 0;
	if (!good)
		printf("# %s decodes to '%s', not '%s'\n", enc, out ? out : "(error)", addr);
	free(type);
	free(out);
	return good;
}

#define CHECK_ORCPT(addr, want) do { \
	char *e_ = sbx_orcpt_encode(addr); \
	CHECK_STR(e_, want); \
	CHECK(e_ != NULL && round_trips(e_, addr)); \
	free(e_); \
} while (0)

TEST(xtext_rfc3461)
{
	char *s;

	/* RFC 3461 4: '+', '=' and bytes outside '!'..'~' as "+" 2HEXCHAR */
	s = sbx_xtext_encode("A+B=C d");
	CHECK_STR(s, "A+2BB+3DC+20d");
	free(s);
	s = sbx_xtext_encode("bob+tag@example.com");
	CHECK_STR(s, "bob+2Btag@example.com");
	free(s);
	s = sbx_xtext_encode("~!\x7f\x01\xc3\xa9");
	CHECK_STR(s, "~!+7F+01+C3+A9");
	free(s);
	s = sbx_xtext_encode("");
	CHECK_STR(s, "");
	free(s);
	s = sbx_xtext_encode("plain@example.com");
	CHECK_STR(s, "plain@example.com");
	free(s);
}

TEST(orcpt_encoding)
{
	CHECK_ORCPT("User+Tag@Example.COM", "rfc822;User+2BTag@Example.COM");
	CHECK_ORCPT("\"john doe\"@example.com", "rfc822;\"john+20doe\"@example.com");
	CHECK_ORCPT("a=b@example.com", "rfc822;a+3Db@example.com");
	/* RFC 6533 utf-8-addr-xtext: \x{HEX}, upper case, shortest form */
	CHECK_ORCPT("j\xc3\xb6rg@example.com", "utf-8;j\\x{F6}rg@example.com");
	CHECK_ORCPT("j\xc3\xb6rg+x=y\\z@example.com",
		    "utf-8;j\\x{F6}rg\\x{2B}x\\x{3D}y\\x{5C}z@example.com");
	/* RFC 6530's example address */
	CHECK_ORCPT("\xce\xb4\xce\xbf\xce\xba\xce\xb9\xce\xbc\xce\xae@example.com",
		    "utf-8;\\x{3B4}\\x{3BF}\\x{3BA}\\x{3B9}\\x{3BC}\\x{3AE}@example.com");
	CHECK_ORCPT("\xe7\x94\xa8\xe6\x88\xb7 a@example.com",
		    "utf-8;\\x{7528}\\x{6237}\\x{20}a@example.com");
	CHECK_ORCPT("\xf0\x9f\x98\x80@example.com", "utf-8;\\x{1F600}@example.com");
	/* nothing an LMTP server would refuse */
	CHECK(sbx_orcpt_encode("") == NULL);
	CHECK(sbx_orcpt_encode("a\tb@example.com") == NULL);
	CHECK(sbx_orcpt_encode("a\x7f@example.com") == NULL);
	CHECK(sbx_orcpt_encode("\xc3@example.com") == NULL);          /* truncated */
	CHECK(sbx_orcpt_encode("\xc0\xaf@example.com") == NULL);      /* overlong */
	CHECK(sbx_orcpt_encode("\xed\xa0\x80@example.com") == NULL);  /* surrogate */
	CHECK(sbx_orcpt_encode("\xf4\x90\x80\x80@example.com") == NULL); /* > U+10FFFF */
}

/* --------------------------------------------------------- route kinds */

TEST(route_kinds)
{
	struct fx f;
	struct sbx_route_msg *m;
	char mb[SBX_ID_HEX], hook[SBX_ID_HEX];

	fx_open(&f);
	domain(&f, "example.com");
	mailbox(&f, "alice@example.com", 0, mb);
	ALIAS_HOOK(&f, "hooks@example.com", hook, "webhook:https://app.example.net/in");
	ALIAS(&f, "fwd@example.com", "forward:bob@elsewhere.org");
	ALIAS(&f, "all@example.com", "mailbox:alice@example.com", "forward:carol@elsewhere.org",
	      "webhook:https://app.example.net/all");

	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<alice@example.com>") == SBX_ROUTE_ROUTED);
	CHECK_PLAN(m, sbx_xasprintf("del <alice@example.com>|"
				    "add <%s@mailbox.sealbox.internal> ORCPT=rfc822;alice@example.com", mb));
	sbx_route_msg_free(&m);

	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<hooks@example.com>") == SBX_ROUTE_ROUTED);
	CHECK_PLAN(m, sbx_xasprintf("del <hooks@example.com>|"
				    "add <%s@webhook.sealbox.internal> ORCPT=rfc822;hooks@example.com", hook));
	sbx_route_msg_free(&m);

	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<fwd@example.com>") == SBX_ROUTE_ROUTED);
	CHECK_PLAN(m, sbx_xstrdup("del <fwd@example.com>|"
				  "add <bob@elsewhere.org> ORCPT=rfc822;fwd@example.com"));
	sbx_route_msg_free(&m);

	/* all three, in target order, once each */
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<all@example.com>") == SBX_ROUTE_ROUTED);
	{
		char *p = plan(m);
		int nadd = 0;
		const char *s;

		for (s = p; (s = strstr(s, "add ")) != NULL; s++)
			nadd++;
		CHECKF(nadd == 3, "plan %s", p);
		CHECK(strncmp(p, "del <all@example.com>|add <", 27) == 0);
		CHECK(strstr(p, "mailbox.sealbox.internal") < strstr(p, "carol@elsewhere.org"));
		CHECK(strstr(p, "carol@elsewhere.org") < strstr(p, "webhook.sealbox.internal"));
		free(p);
	}
	sbx_route_msg_free(&m);

	/* a domain we do not host: untouched, nothing to do at EOM */
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK_REPLY(&f, m, "<someone@gmail.com>", SBX_ROUTE_PASS, "");
	CHECK(rcpt(&f, m, "<postmaster>") == SBX_ROUTE_PASS);
	CHECK(rcpt(&f, m, "<>") == SBX_ROUTE_PASS);
	CHECK(rcpt(&f, m, "<user@[192.0.2.1]>") == SBX_ROUTE_PASS);
	CHECK_PLAN(m, sbx_xstrdup(""));
	{
		struct sbx_route_reply r;

		CHECK(sbx_route_eoh(m, &r) == 1);
		sbx_route_reply_clear(&r);
	}
	sbx_route_msg_free(&m);
	fx_close(&f);
}

TEST(plus_regex_catchall_precedence)
{
	struct fx f;
	struct sbx_route_msg *m;
	char user[SBX_ID_HEX], tagged[SBX_ID_HEX], rx[SBX_ID_HEX], all[SBX_ID_HEX];

	fx_open(&f);
	domain(&f, "example.com");
	mailbox(&f, "user@example.com", 0, user);
	mailbox(&f, "user+vip@example.com", 0, tagged);
	mailbox(&f, "sales@example.com", 0, rx);
	mailbox(&f, "catch@example.com", 0, all);
	ALIAS(&f, "~(sales|user)-[0-9]+@example.com", "mailbox:sales@example.com");
	ALIAS(&f, "*@example.com", "mailbox:catch@example.com");

	/* plus-addressing folds for lookup; delrcpt and ORCPT keep the tag */
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<User+Tag@Example.COM>") == SBX_ROUTE_ROUTED);
	CHECK_PLAN(m, sbx_xasprintf("del <User+Tag@Example.COM>|"
				    "add <%s@mailbox.sealbox.internal> ORCPT=rfc822;User+2BTag@Example.COM",
				    user));
	sbx_route_msg_free(&m);

	/* exact beats plus, plus beats regex and catch-all */
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<user+vip@example.com>") == SBX_ROUTE_ROUTED);
	CHECK(rcpt(&f, m, "<sales-42@example.com>") == SBX_ROUTE_ROUTED);
	CHECK(rcpt(&f, m, "<user-7@example.com>") == SBX_ROUTE_ROUTED);      /* regex, same mailbox */
	CHECK(rcpt(&f, m, "<sales-x@example.com>") == SBX_ROUTE_ROUTED);     /* catch-all */
	CHECK(rcpt(&f, m, "<nobody@example.com>") == SBX_ROUTE_ROUTED);      /* catch-all, same mailbox */
	CHECK_PLAN(m, sbx_xasprintf(
		"del <user+vip@example.com>|del <sales-42@example.com>|del <user-7@example.com>|"
		"del <sales-x@example.com>|del <nobody@example.com>|"
		"add <%s@mailbox.sealbox.internal> ORCPT=rfc822;user+2Bvip@example.com|"
		"add <%s@mailbox.sealbox.internal> ORCPT=rfc822;sales-42@example.com|"
		"add <%s@mailbox.sealbox.internal> ORCPT=rfc822;sales-x@example.com",
		tagged, rx, all));
	sbx_route_msg_free(&m);
	fx_close(&f);
}

TEST(delrcpt_exactly_as_received)
{
	struct fx f;
	struct sbx_route_msg *m;
	char mb[SBX_ID_HEX];

	fx_open(&f);
	domain(&f, "example.com");
	mailbox(&f, "john.doe@example.com", 0, mb);
	m = sbx_route_msg_new(&f.cfg, 0);
	/* quoted local part, source route, trailing dot: all normalised for
	 * lookup only */
	CHECK(rcpt(&f, m, "<\"John.Doe\"@EXAMPLE.com>") == SBX_ROUTE_ROUTED);
	CHECK(rcpt(&f, m, "<@relay.example.net:john.doe@example.com.>") == SBX_ROUTE_ROUTED);
	CHECK(rcpt(&f, m, "John.Doe@example.com") == SBX_ROUTE_ROUTED);     /* no <> */
	CHECK(rcpt(&f, m, "<\"John.Doe\"@EXAMPLE.com>") == SBX_ROUTE_ROUTED); /* again: once */
	CHECK_PLAN(m, sbx_xasprintf(
		"del <\"John.Doe\"@EXAMPLE.com>|del <@relay.example.net:john.doe@example.com.>|"
		"del John.Doe@example.com|"
		"add <%s@mailbox.sealbox.internal> ORCPT=rfc822;\"John.Doe\"@EXAMPLE.com", mb));
	sbx_route_msg_free(&m);
	fx_close(&f);
}

TEST(internal_and_unknown)
{
	struct fx f;
	struct sbx_route_msg *m;
	char mb[SBX_ID_HEX];
	char *arg, *want;

	fx_open(&f);
	domain(&f, "example.com");
	mailbox(&f, "alice@example.com", 0, mb);
	f.cfg.mailbox_domain = "mbox.example.net";
	m = sbx_route_msg_new(&f.cfg, 0);
	arg = sbx_xasprintf("<%s@mailbox.sealbox.internal>", mb);
	want = sbx_xasprintf("550 5.1.1 %s: Recipient address rejected: internal address", arg);
	CHECK_REPLY(&f, m, arg, SBX_ROUTE_REJECT, want);
	free(arg);
	free(want);
	sbx_route_msg_free(&m);

	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK_REPLY(&f, m, "<x@Webhook.Sealbox.Internal>", SBX_ROUTE_REJECT,
		    "550 5.1.1 <x@Webhook.Sealbox.Internal>: Recipient address rejected: internal address");
	CHECK_REPLY(&f, m, "<x@anything.sealbox.internal>", SBX_ROUTE_REJECT,
		    "550 5.1.1 <x@anything.sealbox.internal>: Recipient address rejected: internal address");
	CHECK_REPLY(&f, m, "<x@unknown.sealbox.internal>", SBX_ROUTE_REJECT,
		    "550 5.1.1 <x@unknown.sealbox.internal>: Recipient address rejected: internal address");
	/* the configured mailbox_domain, even outside sealbox.internal */
	CHECK_REPLY(&f, m, "<x@MBOX.example.net>", SBX_ROUTE_REJECT,
		    "550 5.1.1 <x@MBOX.example.net>: Recipient address rejected: internal address");
	CHECK_REPLY(&f, m, "<x@notsealbox.internal>", SBX_ROUTE_PASS, "");
	CHECK_REPLY(&f, m, "<nobody@example.com>", SBX_ROUTE_REJECT,
		    "550 5.1.1 <nobody@example.com>: Recipient address rejected: no such user");
	CHECK_REPLY(&f, m, "<bad address@example.com>", SBX_ROUTE_REJECT,
		    "550 5.1.1 <bad address@example.com>: Recipient address rejected: no such user");
	/* client bytes in a reply: printable, one line */
	CHECK_REPLY(&f, m, "<a\r\nb\x01\xc3\xa9@example.com>", SBX_ROUTE_REJECT,
		    "550 5.1.1 <a??b???@example.com>: Recipient address rejected: no such user");
	CHECK_PLAN(m, sbx_xstrdup(""));
	sbx_route_msg_free(&m);
	fx_close(&f);
}

TEST(quota)
{
	struct fx f;
	struct sbx_route_msg *m;
	char a[SBX_ID_HEX], b[SBX_ID_HEX], c[SBX_ID_HEX];

	fx_open(&f);
	domain(&f, "example.com");
	mailbox(&f, "a@example.com", 1000, a);
	mailbox(&f, "b@example.com", 1000, b);
	mailbox(&f, "c@example.com", 0, c);       /* unlimited */
	ALIAS(&f, "both@example.com", "mailbox:a@example.com", "mailbox:b@example.com");
	ALIAS(&f, "hooked@example.com", "mailbox:a@example.com", "webhook:https://h.example.net/x");

	usage(&f, a, 1000);
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK_REPLY(&f, m, "<a@example.com>", SBX_ROUTE_DEFER,
		    "452 4.2.2 <a@example.com>: Recipient address rejected: mailbox full");
	/* one of two full: accepted, lmtpd answers 452 for that one */
	CHECK_REPLY(&f, m, "<both@example.com>", SBX_ROUTE_ROUTED, "");
	/* a full mailbox next to a webhook: accepted */
	CHECK_REPLY(&f, m, "<hooked@example.com>", SBX_ROUTE_ROUTED, "");
	CHECK_REPLY(&f, m, "<c@example.com>", SBX_ROUTE_ROUTED, "");
	sbx_route_msg_free(&m);

	usage(&f, b, 5000);                      /* over: usage above quota */
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK_REPLY(&f, m, "<both@example.com>", SBX_ROUTE_DEFER,
		    "452 4.2.2 <both@example.com>: Recipient address rejected: mailbox full");
	sbx_route_msg_free(&m);

	/* SIZE= from MAIL FROM counts */
	usage(&f, a, 500);
	m = sbx_route_msg_new(&f.cfg, 0);
	sbx_route_msg_set_size(m, 500);
	CHECK_REPLY(&f, m, "<a@example.com>", SBX_ROUTE_ROUTED, "");
	sbx_route_msg_free(&m);
	m = sbx_route_msg_new(&f.cfg, 0);
	sbx_route_msg_set_size(m, 501);
	CHECK_REPLY(&f, m, "<a@example.com>", SBX_ROUTE_DEFER,
		    "452 4.2.2 <a@example.com>: Recipient address rejected: mailbox full");
	sbx_route_msg_free(&m);

	/* non-SMTP mail is not deferred per recipient: lmtpd answers 452 */
	usage(&f, a, 1000);
	m = sbx_route_msg_new(&f.cfg, 1);
	CHECK_REPLY(&f, m, "a@example.com", SBX_ROUTE_ROUTED, "");
	sbx_route_msg_free(&m);
	fx_close(&f);
}

TEST(forward_expansion)
{
	struct fx f;
	struct sbx_route_msg *m;
	char mb[SBX_ID_HEX], other[SBX_ID_HEX], hook[SBX_ID_HEX];

	fx_open(&f);
	domain(&f, "example.com");
	domain(&f, "example.org");
	mailbox(&f, "alice@example.com", 0, mb);
	mailbox(&f, "team@example.org", 0, other);
	ALIAS_HOOK(&f, "hook@example.org", hook, "webhook:https://h.example.net/x");
	/* into another hosted domain, two levels, plus a forward out */
	ALIAS(&f, "info@example.com", "forward:Team+Sales@Example.ORG", "forward:ext@elsewhere.org");
	ALIAS(&f, "team+sales@example.org", "mailbox:team@example.org", "forward:hook@example.org",
	      "forward:alice@example.com");

	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<Info@example.com>") == SBX_ROUTE_ROUTED);
	CHECK_PLAN(m, sbx_xasprintf(
		"del <Info@example.com>|"
		"add <%s@mailbox.sealbox.internal> ORCPT=rfc822;Info@example.com|"
		"add <%s@webhook.sealbox.internal> ORCPT=rfc822;Info@example.com|"
		"add <%s@mailbox.sealbox.internal> ORCPT=rfc822;Info@example.com|"
		"add <ext@elsewhere.org> ORCPT=rfc822;Info@example.com", other, hook, mb));
	sbx_route_msg_free(&m);

	/* a forward to a hosted address no alias matches: that branch
	 * bounces through the unknown domain, the rest is delivered */
	ALIAS(&f, "half@example.com", "mailbox:alice@example.com", "forward:ghost@example.com");
	ALIAS(&f, "ghostly@example.com", "forward:ghost@example.com");
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<half@example.com>") == SBX_ROUTE_ROUTED);
	CHECK_REPLY(&f, m, "<ghostly@example.com>", SBX_ROUTE_REJECT,
		    "550 5.1.1 <ghostly@example.com>: Recipient address rejected: no such user");
	CHECK_PLAN(m, sbx_xasprintf(
		"del <half@example.com>|"
		"add <%s@mailbox.sealbox.internal> ORCPT=rfc822;half@example.com|"
		"add <ghost=example.com@unknown.sealbox.internal> ORCPT=rfc822;half@example.com", mb));
	sbx_route_msg_free(&m);
	fx_close(&f);
}

TEST(forward_loops_and_depth)
{
	struct fx f;
	struct sbx_route_msg *m;
	char mb[SBX_ID_HEX];
	int i;

	fx_open(&f);
	domain(&f, "example.com");
	mailbox(&f, "alice@example.com", 0, mb);
	/* a -> b -> a, b also to a mailbox: the cycle closes, the mailbox
	 * gets it once */
	ALIAS(&f, "a@example.com", "forward:b@example.com");
	ALIAS(&f, "b@example.com", "forward:a@example.com", "mailbox:alice@example.com");
	/* c -> d -> c and nothing else */
	ALIAS(&f, "c@example.com", "forward:d@example.com");
	ALIAS(&f, "d@example.com", "forward:c@example.com");
	/* through the catch-all back to itself */
	ALIAS(&f, "*@example.com", "forward:e@example.com");

	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<a@example.com>") == SBX_ROUTE_ROUTED);
	CHECK(rcpt(&f, m, "<b@example.com>") == SBX_ROUTE_ROUTED);
	CHECK_REPLY(&f, m, "<c@example.com>", SBX_ROUTE_REJECT,
		    "550 5.4.6 <c@example.com>: Recipient address rejected: mail forwarding loop");
	CHECK_REPLY(&f, m, "<zzz@example.com>", SBX_ROUTE_REJECT,
		    "550 5.4.6 <zzz@example.com>: Recipient address rejected: mail forwarding loop");
	CHECK_PLAN(m, sbx_xasprintf("del <a@example.com>|del <b@example.com>|"
				    "add <%s@mailbox.sealbox.internal> ORCPT=rfc822;a@example.com", mb));
	sbx_route_msg_free(&m);

	/* a chain longer than SBX_MAX_FORWARD_DEPTH */
	for (i = 0; i <= SBX_MAX_FORWARD_DEPTH; i++) {
		char *a = sbx_xasprintf("l%d@example.com", i);
		char *t = sbx_xasprintf("forward:l%d@example.com", i + 1);

		ALIAS(&f, a, t);
		free(a);
		free(t);
	}
	{
		char *a = sbx_xasprintf("l%d@example.com", SBX_MAX_FORWARD_DEPTH + 1);

		ALIAS(&f, a, "mailbox:alice@example.com");
		free(a);
	}
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<l1@example.com>") == SBX_ROUTE_ROUTED);        /* exactly the limit */
	CHECK_REPLY(&f, m, "<l0@example.com>", SBX_ROUTE_REJECT,
		    "550 5.4.6 <l0@example.com>: Recipient address rejected: too many forwards");
	sbx_route_msg_free(&m);

	/* fan-out: at most SBX_MAX_FORWARD_EXPAND addresses resolved per RCPT */
	{
		struct sbx_target t[SBX_MAX_TARGETS_PER_ALIAS];
		char *err = NULL;
		size_t k;

		for (k = 0; k < SBX_MAX_TARGETS_PER_ALIAS; k++) {
			char *a = sbx_xasprintf("w%zu@example.com", k);
			char *fw = sbx_xasprintf("forward:x%zu@elsewhere.org", k);

			ALIAS(&f, a, fw);
			memset(&t[k], 0, sizeof(t[k]));
			t[k].kind = SBX_TARGET_FORWARD;
			t[k].value = a;
			free(fw);
		}
		CHECK(ok(sbx_dir_alias_add(f.w, "wide@example.com", t, SBX_MAX_FORWARD_EXPAND - 1, &err), &err));
		CHECK(ok(sbx_dir_alias_add(f.w, "wider@example.com", t, SBX_MAX_FORWARD_EXPAND, &err), &err));
		for (k = 0; k < SBX_MAX_TARGETS_PER_ALIAS; k++)
			free(t[k].value);
	}
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<wide@example.com>") == SBX_ROUTE_ROUTED);       /* 1 + 63 resolved */
	CHECK_REPLY(&f, m, "<wider@example.com>", SBX_ROUTE_REJECT,
		    "550 5.4.6 <wider@example.com>: Recipient address rejected: too many forwards");
	sbx_route_msg_free(&m);
	fx_close(&f);
}

TEST(dedup_keeps_first_orcpt)
{
	struct fx f;
	struct sbx_route_msg *m;
	char mb[SBX_ID_HEX], hook[SBX_ID_HEX];

	fx_open(&f);
	domain(&f, "example.com");
	mailbox(&f, "alice@example.com", 0, mb);
	ALIAS_HOOK(&f, "one@example.com", hook, "mailbox:alice@example.com",
		   "webhook:https://h.example.net/x", "forward:out@elsewhere.org");
	ALIAS(&f, "two@example.com", "mailbox:alice@example.com", "forward:out@elsewhere.org",
	      "forward:other@elsewhere.org");

	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<Two@example.com>") == SBX_ROUTE_ROUTED);
	CHECK(rcpt(&f, m, "<one@example.com>") == SBX_ROUTE_ROUTED);
	CHECK(rcpt(&f, m, "<alice@example.com>") == SBX_ROUTE_ROUTED);
	CHECK_PLAN(m, sbx_xasprintf(
		"del <Two@example.com>|del <one@example.com>|del <alice@example.com>|"
		"add <%s@mailbox.sealbox.internal> ORCPT=rfc822;Two@example.com|"
		"add <out@elsewhere.org> ORCPT=rfc822;Two@example.com|"
		"add <other@elsewhere.org> ORCPT=rfc822;Two@example.com|"
		"add <%s@webhook.sealbox.internal> ORCPT=rfc822;one@example.com", mb, hook));
	sbx_route_msg_free(&m);
	fx_close(&f);
}

TEST(orcpt_notify_and_quoting_in_plan)
{
	struct fx f;
	struct sbx_route_msg *m;
	char mb[SBX_ID_HEX];
	char *notify[] = { "NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;ignored@example.net", NULL };
	char *bad[] = { "NOTIFY=FAILURE;x", NULL };

	fx_open(&f);
	domain(&f, "example.com");
	mailbox(&f, "j\xc3\xb6rg@example.com", 0, mb);
	ALIAS(&f, "odd@example.com", "forward:a(b)c@elsewhere.org");

	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt_p(&f, m, "<J\xc3\xb6rg@example.com>", notify, NULL) == SBX_ROUTE_ROUTED);
	CHECK(rcpt_p(&f, m, "<odd@example.com>", bad, NULL) == SBX_ROUTE_ROUTED);
	CHECK_PLAN(m, sbx_xasprintf(
		"del <J\xc3\xb6rg@example.com>|del <odd@example.com>|"
		"add <%s@mailbox.sealbox.internal> ORCPT=utf-8;J\\x{F6}rg@example.com NOTIFY=FAILURE,DELAY|"
		"add <\"a(b)c\"@elsewhere.org> ORCPT=rfc822;odd@example.com", mb));
	sbx_route_msg_free(&m);
	fx_close(&f);
}

TEST(non_smtp_rewrite)
{
	struct fx f;
	struct sbx_route_msg *m;
	struct sbx_route_reply r;
	char mb[SBX_ID_HEX], *p;

	fx_open(&f);
	domain(&f, "example.com");
	mailbox(&f, "alice@example.com", 0, mb);
	ALIAS(&f, "c@example.com", "forward:d@example.com");
	ALIAS(&f, "d@example.com", "forward:c@example.com");

	/* cleanup's emulated RCPT: no <>, nothing refused, unknowns
	 * rewritten at EOM, internal addresses left alone */
	m = sbx_route_msg_new(&f.cfg, 1);
	CHECK_REPLY(&f, m, "Nobody@Example.com", SBX_ROUTE_REWRITE, "");
	CHECK_REPLY(&f, m, "alice@example.com", SBX_ROUTE_ROUTED, "");
	CHECK_REPLY(&f, m, "c@example.com", SBX_ROUTE_REWRITE, "");
	CHECK_REPLY(&f, m, "x@gmail.com", SBX_ROUTE_PASS, "");
	p = sbx_xasprintf("%s@mailbox.sealbox.internal", mb);
	CHECK_REPLY(&f, m, p, SBX_ROUTE_PASS, "");
	free(p);
	CHECK_REPLY(&f, m, "a-very-long-local-part-that-does-not-fit-into-sixty-four@example.com",
		    SBX_ROUTE_REWRITE, "");
	CHECK(sbx_route_eoh(m, &r) == 0);
	sbx_route_reply_clear(&r);
	p = plan(m);
	{
		const char *want = "del Nobody@Example.com|del alice@example.com|del c@example.com|"
		    "del a-very-long-local-part-that-does-not-fit-into-sixty-four@example.com|"
		    "add <nobody=example.com@unknown.sealbox.internal> ORCPT=rfc822;Nobody@Example.com|";

		CHECKF(strncmp(p, want, strlen(want)) == 0, "plan %s", p);
	}
	CHECK(strstr(p, "mailbox.sealbox.internal> ORCPT=rfc822;alice@example.com|") != NULL);
	CHECK(strstr(p, "|add <c=example.com@unknown.sealbox.internal> ORCPT=rfc822;c@example.com|") != NULL);
	/* too long for "local=domain": a hash */
	{
		const char *u = strstr(p, "|add <u");

		CHECKF(u != NULL && strspn(u + 7, "0123456789abcdef") == 32 &&
		       strncmp(u + 39, "@unknown.sealbox.internal> ORCPT=rfc822;a-very-long", 50) == 0,
		       "plan %s", p);
	}
	free(p);
	sbx_route_msg_free(&m);
	fx_close(&f);
}

/* End of headers (when the MTA sends it) and EOM give one verdict; headers
 * play no part (loop protection is lmtpd's: test_deliver.c). */
TEST(eoh_verdict)
{
	struct fx f;
	struct sbx_route_msg *m;
	struct sbx_route_reply r;
	char mb[SBX_ID_HEX];

	fx_open(&f);
	domain(&f, "example.com");
	mailbox(&f, "alice@example.com", 0, mb);

	/* a hosted recipient: continue to EOM, which rewrites */
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<alice@example.com>") == SBX_ROUTE_ROUTED);
	CHECK(sbx_route_eoh(m, &r) == 0 && r.code == NULL);
	sbx_route_reply_clear(&r);
	{
		char *p = plan(m);

		CHECKF(strncmp(p, "del <alice@example.com>|add <", 29) == 0, "plan %s", p);
		free(p);
	}
	sbx_route_msg_free(&m);

	/* without a hosted recipient the milter has nothing to say: accept at
	 * EOH, or an empty plan at EOM when the MTA skips EOH */
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<x@gmail.com>") == SBX_ROUTE_PASS);
	CHECK(sbx_route_eoh(m, &r) == 1 && r.code == NULL);
	sbx_route_reply_clear(&r);
	CHECK_PLAN(m, sbx_xstrdup(""));
	sbx_route_msg_free(&m);

	/* no recipient at all (only rejected ones) */
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<nobody@example.com>") == SBX_ROUTE_REJECT);
	CHECK(sbx_route_eoh(m, &r) == 1);
	sbx_route_reply_clear(&r);
	CHECK_PLAN(m, sbx_xstrdup(""));
	sbx_route_msg_free(&m);
	fx_close(&f);
}

TEST(limits)
{
	struct fx f;
	struct sbx_route_msg *m;
	struct sbx_route_reply r;
	char a[SBX_ID_HEX], b[SBX_ID_HEX], *p;

	fx_open(&f);
	domain(&f, "example.com");
	mailbox(&f, "a@example.com", 0, a);
	mailbox(&f, "b@example.com", 0, b);
	ALIAS(&f, "ab@example.com", "mailbox:a@example.com", "mailbox:b@example.com",
	      "forward:x@elsewhere.org");
	ALIAS(&f, "big@example.com", "mailbox:a@example.com", "mailbox:b@example.com",
	      "forward:x@elsewhere.org", "forward:y@elsewhere.org");
	ALIAS(&f, "y@example.com", "forward:y@elsewhere.org");
	ALIAS(&f, "*@example.com", "mailbox:a@example.com");
	f.cfg.max_recipients = 3;

	/* hosted RCPTs count */
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<a@example.com>") == SBX_ROUTE_ROUTED);
	CHECK(rcpt(&f, m, "<ab@example.com>") == SBX_ROUTE_ROUTED);         /* 3 targets */
	CHECK(rcpt(&f, m, "<c@example.com>") == SBX_ROUTE_ROUTED);          /* catch-all to a: no new target */
	CHECK_REPLY(&f, m, "<d@example.com>", SBX_ROUTE_DEFER, "452 4.5.3 Error: too many recipients");
	CHECK(rcpt(&f, m, "<a@example.com>") == SBX_ROUTE_ROUTED);          /* same RCPT again */
	CHECK(rcpt(&f, m, "<x@gmail.com>") == SBX_ROUTE_PASS);              /* not counted */
	p = plan(m);
	CHECKF(strncmp(p, "del <a@example.com>|del <ab@example.com>|del <c@example.com>|add ", 63) == 0,
	       "plan %s", p);
	free(p);
	sbx_route_msg_free(&m);

	/* distinct targets count */
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<b@example.com>") == SBX_ROUTE_ROUTED);
	CHECK_REPLY(&f, m, "<big@example.com>", SBX_ROUTE_DEFER, "452 4.5.3 Error: too many recipients");
	CHECK(rcpt(&f, m, "<ab@example.com>") == SBX_ROUTE_ROUTED);         /* b, a, x: 3 */
	CHECK_REPLY(&f, m, "<y@example.com>", SBX_ROUTE_DEFER, "452 4.5.3 Error: too many recipients");
	sbx_route_msg_free(&m);

	/* non-SMTP: the whole message, at EOH */
	m = sbx_route_msg_new(&f.cfg, 1);
	CHECK(rcpt(&f, m, "a@example.com") == SBX_ROUTE_ROUTED);
	CHECK(rcpt(&f, m, "big@example.com") == SBX_ROUTE_LATER);
	CHECK(sbx_route_eoh(m, &r) == -1);
	CHECK_STR(r.code, "554");
	CHECK_STR(r.xcode, "5.5.3");
	sbx_route_reply_clear(&r);
	sbx_route_msg_free(&m);

	/* an over-long RCPT argument in a hosted domain is nobody */
	f.cfg.max_recipients = 1000;
	m = sbx_route_msg_new(&f.cfg, 0);
	{
		char *longarg = sbx_xmalloc(SBX_MAX_RCPT_ARG + 32);

		memset(longarg, 'a', SBX_MAX_RCPT_ARG + 31);
		longarg[0] = '<';
		strcpy(longarg + SBX_MAX_RCPT_ARG + 31 - 14, "@example.com>");
		CHECK(rcpt(&f, m, longarg) == SBX_ROUTE_REJECT);
		free(longarg);
	}
	sbx_route_msg_free(&m);
	fx_close(&f);
}

TEST(directory_error_is_tempfail)
{
	struct fx f;
	struct sbx_route_msg *m;
	struct sbx_route_reply r;
	char mb[SBX_ID_HEX];

	fx_open(&f);
	domain(&f, "example.com");
	mailbox(&f, "alice@example.com", 0, mb);
	CHECK(sqlite3_exec(sbx_dir_db(f.w), "ALTER TABLE aliases RENAME TO aliases_gone",
			   NULL, NULL, NULL) == SQLITE_OK);
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK_REPLY(&f, m, "<alice@example.com>", SBX_ROUTE_DEFER,
		    "451 4.3.0 <alice@example.com>: Temporary lookup failure");
	CHECK_REPLY(&f, m, "<x@gmail.com>", SBX_ROUTE_PASS, "");          /* no alias lookup */
	sbx_route_msg_free(&m);

	/* non-SMTP: deferred as a whole at EOH, never accepted */
	m = sbx_route_msg_new(&f.cfg, 1);
	CHECK(rcpt(&f, m, "alice@example.com") == SBX_ROUTE_LATER);
	CHECK(rcpt(&f, m, "nobody@example.com") == SBX_ROUTE_LATER);
	CHECK(sbx_route_eoh(m, &r) == -1);
	CHECK_STR(r.code, "451");
	CHECK_STR(r.xcode, "4.3.0");
	sbx_route_reply_clear(&r);
	sbx_route_msg_free(&m);

	/* no connection at all */
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(sbx_route_rcpt(m, NULL, "<x@gmail.com>", NULL, &r) == SBX_ROUTE_DEFER);
	CHECK_STR(r.code, "451");
	sbx_route_reply_clear(&r);
	CHECK(sbx_route_rcpt(m, NULL, "<x@mailbox.sealbox.internal>", NULL, &r) == SBX_ROUTE_REJECT);
	sbx_route_reply_clear(&r);
	sbx_route_msg_free(&m);

	/* a broken domains table fails the hosted check too */
	CHECK(sqlite3_exec(sbx_dir_db(f.w), "ALTER TABLE domains RENAME TO domains_gone",
			   NULL, NULL, NULL) == SQLITE_OK);
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK_REPLY(&f, m, "<x@gmail.com>", SBX_ROUTE_DEFER, "451 4.3.0 <x@gmail.com>: Temporary lookup failure");
	sbx_route_msg_free(&m);
	fx_close(&f);
}

/* A long-lived read connection (the milter's) sees what sealboxctl
 * commits, without a restart: new domains, aliases, quota changes. */
TEST(live_changes)
{
	struct fx f;
	struct sbx_route_msg *m;
	char mb[SBX_ID_HEX], *err = NULL;
	int i;

	fx_open(&f);
	domain(&f, "example.com");
	m = sbx_route_msg_new(&f.cfg, 0);
	CHECK(rcpt(&f, m, "<alice@example.com>") == SBX_ROUTE_REJECT);
	CHECK(rcpt(&f, m, "<alice@example.org>") == SBX_ROUTE_PASS);
	mailbox(&f, "alice@example.com", 0, mb);
	CHECK(rcpt(&f, m, "<alice@example.com>") == SBX_ROUTE_ROUTED);
	domain(&f, "example.org");
	CHECK(rcpt(&f, m, "<alice@example.org>") == SBX_ROUTE_REJECT);
	ALIAS(&f, "alice@example.org", "mailbox:alice@example.com");
	CHECK(rcpt(&f, m, "<alice@example.org>") == SBX_ROUTE_ROUTED);
	CHECK(ok(sbx_dir_mailbox_set_quota(f.w, mb, 10, &err), &err));
	usage(&f, mb, 10);
	CHECK(rcpt(&f, m, "<Alice@example.com>") == SBX_ROUTE_DEFER);
	CHECK(ok(sbx_dir_alias_del(f.w, "alice@example.org", &err), &err));
	CHECK(rcpt(&f, m, "<bob@example.org>") == SBX_ROUTE_REJECT);
	CHECK(ok(sbx_dir_domain_del(f.w, "example.org", &err), &err));
	CHECK(rcpt(&f, m, "<bob@example.org>") == SBX_ROUTE_PASS);
	sbx_route_msg_free(&m);
	/* and the connection holds no read transaction between calls */
	for (i = 0; i < 3; i++) {
		m = sbx_route_msg_new(&f.cfg, 0);
		CHECK(rcpt(&f, m, "<alice@example.com>") == SBX_ROUTE_DEFER);
		CHECK(sqlite3_get_autocommit(sbx_dir_db(sbx_route_db_dir(f.db))) != 0);
		sbx_route_msg_free(&m);
	}
	CHECK(sqlite3_exec(sbx_dir_db(f.w), "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) == SQLITE_OK);
	fx_close(&f);
}

int
main(void)
{
	if (sodium_init() < 0)
		return 1;
	RUN(xtext_rfc3461);
	RUN(orcpt_encoding);
	RUN(route_kinds);
	RUN(plus_regex_catchall_precedence);
	RUN(delrcpt_exactly_as_received);
	RUN(internal_and_unknown);
	RUN(quota);
	RUN(forward_expansion);
	RUN(forward_loops_and_depth);
	RUN(dedup_keeps_first_orcpt);
	RUN(orcpt_notify_and_quoting_in_plan);
	RUN(non_smtp_rewrite);
	RUN(eoh_verdict);
	RUN(limits);
	RUN(directory_error_is_tempfail);
	RUN(live_changes);
	return tap_done();
}
