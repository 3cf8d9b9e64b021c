/*
 * lmtp.h - the LMTP (RFC 2033) protocol engine of sealbox-lmtpd, as pure
 * code: bytes in, events and reply bytes out. No sockets, no libuv, no
 * clock, no logging: the daemon reads the socket, feeds the bytes, acts on
 * the events (recipient lookups, deliveries, possibly on a thread pool),
 * tells the engine the outcome and writes the reply bytes it gets back.
 * The idle timeout is the daemon's.
 *
 * Driving loop (OpenSMTPD rfc5322_push/next style):
 *
 *	s = sbx_lmtp_session_new(&limits, hostname);
 *	write(sbx_lmtp_greeting(s));
 *	for (;;) {
 *		switch (sbx_lmtp_next(s, &ev)) {
 *		case SBX_LMTP_NONE:    read more, sbx_lmtp_feed(); break;
 *		case SBX_LMTP_WAIT:    stop reading until a *_reply() call; break;
 *		case SBX_LMTP_REPLY:   write(ev.reply, ev.reply_len); break;
 *		case SBX_LMTP_RCPT:    look up ev.rcpt, then sbx_lmtp_rcpt_reply(); break;
 *		case SBX_LMTP_MESSAGE: deliver to each ev.rcpts[i], then
 *		                       sbx_lmtp_data_reply(s, i, ...) for each i; break;
 *		case SBX_LMTP_CLOSE:   write(ev.reply, ev.reply_len); close; break;
 *		}
 *	}
 *
 * Pipelined commands are taken one at a time, in order: while the engine
 * waits for a RCPT verdict or for the per-recipient DATA replies it does not
 * look at later input (sbx_lmtp_next returns SBX_LMTP_WAIT).
 *
 * Bounds: the engine holds at most the unconsumed input plus the current
 * message (<= max_size bytes). Unconsumed input stays below max_line plus
 * the last chunk fed, provided the daemon calls sbx_lmtp_feed() only after
 * sbx_lmtp_next() returned SBX_LMTP_NONE (a libuv daemon stops reading on
 * SBX_LMTP_WAIT). As a safety net, feeding more than max_line * (max_rcpts
 * + 8) unconsumed bytes outside DATA (far more than any legitimate
 * pipelined group before the 354) drops the input and closes with
 * "421 4.7.0 <host> Error: too much pipelined input". Every reply line the
 * engine writes is at most 512 bytes including CRLF; texts from the daemon
 * are cut to fit.
 *
 * Line endings: Postfix sends CRLF everywhere. A command line may end in
 * CRLF or a bare LF (the CR is dropped; handy with nc). Inside DATA only
 * CRLF ends a line: the message ends at CRLF "." CRLF and dot-unstuffing
 * applies only after CRLF; a bare LF or bare CR is message content, kept
 * byte for byte (no SMTP-smuggling ambiguity: "\n.\n" never ends DATA).
 *
 * Replies carry enhanced status codes (RFC 2034) except the 220 greeting
 * and the LHLO capability list. Engine replies and their causes:
 *	220	greeting                       250	LHLO capabilities, NOOP, RSET,
 *	221 2.0.0	QUIT (then CLOSE)              MAIL (2.1.0), XFORWARD (2.0.0)
 *	252 2.5.2	VRFY                   214 2.0.0	HELP
 *	354	DATA accepted
 *	421 4.7.0	too many commands / too many errors / too much pipelined
 *			input (then CLOSE)
 *	421 4.5.1	BDAT (CHUNKING is not advertised; the chunk bytes that
 *			follow cannot be told from commands, so the engine closes)
 *	452 4.5.3	more than max_rcpts accepted recipients
 *	500 5.5.1	unknown command; HELO/EHLO (LMTP needs LHLO)
 *	500 5.5.2	line longer than max_line (rest of the line discarded)
 *	501 5.5.4	syntax error in arguments or parameters, malformed xtext
 *	501 5.1.7 / 5.1.3	bad sender / recipient address syntax
 *	503 5.5.1	bad sequence (no LHLO, no MAIL, nested MAIL, XFORWARD
 *			inside a transaction, DATA without any accepted recipient)
 *	552 5.3.4	SIZE= above max_size (at MAIL); message above max_size
 *			(once per accepted recipient after the final ".", the data
 *			having been read and discarded so the stream stays in sync)
 *	553 5.6.7	UTF-8 address without SMTPUTF8 on MAIL
 *	555 5.5.4	unknown MAIL/RCPT parameter, BODY=BINARYMIME (RFC 3030
 *			requires BDAT, which is not offered)
 * Protocol errors (5xx from the engine except 552 and the 503 for DATA
 * without recipients, which a pipelining client meets legitimately) count
 * toward max_errors.
 */
#ifndef SBX_LMTP_H
#define SBX_LMTP_H
#include <stddef.h>
#include <stdint.h>

#define SBX_LMTP_DEF_MAX_LINE      2048   /* bytes per command line incl. CRLF */
#define SBX_LMTP_DEF_MAX_RCPTS     1000   /* accepted recipients per transaction */
#define SBX_LMTP_DEF_MAX_COMMANDS 10000
#define SBX_LMTP_DEF_MAX_ERRORS      20
#define SBX_LMTP_MIN_MAX_LINE       512   /* RFC 5321 4.5.3.1.4 */
#define SBX_LMTP_MAX_REPLY_LINE     512   /* bytes per reply line incl. CRLF */
#define SBX_LMTP_MAX_HOSTNAME       255

struct sbx_lmtp_limits {
	size_t max_line;       /* command line bytes incl. CRLF (not DATA lines) */
	unsigned max_rcpts;    /* accepted recipients per transaction */
	uint64_t max_size;     /* message bytes after dot-unstuffing (message_size_limit);
	                        * advertised as SIZE; capped at SBX_MAX_MESSAGE_SIZE */
	unsigned max_commands; /* command lines since the connection opened or the
	                        * last message handed to the daemon (so a Postfix
	                        * cached connection delivering thousands of messages
	                        * never hits it; a client that never completes a
	                        * message does) */
	unsigned max_errors;   /* protocol errors per connection before 421 + close */
};

/* Fill in the defaults; a field left 0 in sbx_lmtp_session_new also means
 * its default (max_size: SBX_DEF_MESSAGE_SIZE). max_line is raised to at
 * least SBX_LMTP_MIN_MAX_LINE. */
void sbx_lmtp_limits_default(struct sbx_lmtp_limits *lim);

enum sbx_lmtp_event_type {
	SBX_LMTP_NONE = 0, /* all buffered input consumed: feed more */
	SBX_LMTP_WAIT,     /* waiting for sbx_lmtp_rcpt_reply / sbx_lmtp_data_reply */
	SBX_LMTP_REPLY,    /* write ev.reply */
	SBX_LMTP_RCPT,     /* judge ev.rcpt, answer with sbx_lmtp_rcpt_reply */
	SBX_LMTP_MESSAGE,  /* deliver ev.msg to ev.rcpts, answer each with sbx_lmtp_data_reply */
	SBX_LMTP_CLOSE     /* write ev.reply (221 or 421; empty when repeated), then close */
};

/* RCPT NOTIFY= bits (RFC 3461); 0 when the parameter was absent. */
#define SBX_LMTP_NOTIFY_NEVER   0x1
#define SBX_LMTP_NOTIFY_SUCCESS 0x2
#define SBX_LMTP_NOTIFY_FAILURE 0x4
#define SBX_LMTP_NOTIFY_DELAY   0x8

/*
 * One recipient. addr is the mailbox as sent, without <> and without a
 * source route (a quoted local part keeps its quotes: `"a b"@x`); local is
 * the local part with quoting removed, domain the part after the last '@'
 * ("" for RCPT TO:<postmaster>). orcpt_type is the ORCPT address type in
 * lower case ("rfc822", "utf-8", or another atom), NULL without ORCPT;
 * orcpt is the decoded address: xtext-decoded (RFC 3461), and for "utf-8"
 * also \x{HEX} decoded (RFC 6533); always valid UTF-8 without controls.
 */
struct sbx_lmtp_rcpt {
	char *addr;
	char *local;
	char *domain;
	char *orcpt_type;
	char *orcpt;
	unsigned notify;
};

enum sbx_lmtp_body { SBX_LMTP_BODY_NONE = 0, SBX_LMTP_BODY_7BIT, SBX_LMTP_BODY_8BITMIME };
enum sbx_lmtp_ret { SBX_LMTP_RET_NONE = 0, SBX_LMTP_RET_FULL, SBX_LMTP_RET_HDRS };

/* The MAIL command of the current transaction. from is "" for <>. */
struct sbx_lmtp_mail {
	char *from;
	char *from_local;
	char *from_domain;
	enum sbx_lmtp_body body;
	int smtputf8;          /* SMTPUTF8 given: UTF-8 addresses allowed */
	int has_size;
	uint64_t size;         /* SIZE= as declared (has_size) */
	enum sbx_lmtp_ret ret;
	char *envid;           /* ENVID= xtext-decoded, or NULL */
};

/* XFORWARD attributes (Postfix XFORWARD_README), xtext-decoded; NULL when
 * never sent or sent as [UNAVAILABLE] / [TEMPUNAVAIL]. ident is the Postfix
 * queue id; source is "LOCAL" or "REMOTE". Like Postfix smtpd, the engine
 * clears them at the end of each transaction (after the message or RSET). */
struct sbx_lmtp_xforward {
	char *name, *addr, *port, *proto, *helo, *ident, *source;
};

struct sbx_lmtp_event {
	enum sbx_lmtp_event_type type;
	/* REPLY, CLOSE: CRLF-terminated reply lines to write; valid until the
	 * next sbx_lmtp_next() call. */
	const char *reply;
	size_t reply_len;
	/* RCPT: valid until sbx_lmtp_rcpt_reply() (if accepted, it stays
	 * valid as ev.rcpts[i] of the MESSAGE). */
	const struct sbx_lmtp_rcpt *rcpt;
	/* MESSAGE: the dot-unstuffed message, CRLF as sent, not NUL-terminated,
	 * and the accepted recipients in RCPT order; valid until the next
	 * sbx_lmtp_next() after the last sbx_lmtp_data_reply() for it. */
	const char *msg;
	size_t msg_len;
	const struct sbx_lmtp_rcpt *const *rcpts;
	size_t nrcpts;
};

struct sbx_lmtp_session;

/* limits may be NULL (defaults); hostname (cut to 255 bytes, non-printable
 * bytes replaced by '?') names the server in the greeting, LHLO and 421s.
 * Never NULL (allocation failure aborts). */
struct sbx_lmtp_session *sbx_lmtp_session_new(const struct sbx_lmtp_limits *limits,
					      const char *hostname);
/* Frees the session and sets *sp to NULL; NULL or *sp NULL is fine. */
void sbx_lmtp_session_free(struct sbx_lmtp_session **sp);

/* "220 <host> LMTP sealbox ready\r\n", owned by the session. */
const char *sbx_lmtp_greeting(struct sbx_lmtp_session *s);

/* Append input. Call after sbx_lmtp_next() returned SBX_LMTP_NONE (see the
 * bounds above); input after CLOSE is ignored. The bytes are copied. */
void sbx_lmtp_feed(struct sbx_lmtp_session *s, const void *data, size_t len);

/* The next event from the buffered input; fills *ev and returns its type.
 * Pointers in *ev belong to the session (lifetimes at each field). */
enum sbx_lmtp_event_type sbx_lmtp_next(struct sbx_lmtp_session *s, struct sbx_lmtp_event *ev);

/*
 * Verdict for the RCPT event just returned. reply is one line without CRLF,
 * e.g. "550 5.1.1 No such mailbox"; it must start with a 2xx code when
 * accepted and a 4xx/5xx one otherwise. NULL means "250 2.1.5 Ok" /
 * "550 5.1.1 Recipient address rejected"; a malformed or mismatched reply
 * becomes "250 2.1.5 Ok" / "451 4.3.0 Internal error". Controls in the
 * text become '?', and it is cut to fit 512 bytes. The reply is returned
 * by the next sbx_lmtp_next(). 0, or -1 when no RCPT is waiting.
 */
int sbx_lmtp_rcpt_reply(struct sbx_lmtp_session *s, int accepted, const char *reply);

/*
 * Outcome for accepted recipient i (0-based, RCPT order) of the MESSAGE
 * just returned, in any order, once each. reply is one line without CRLF
 * ("250 2.0.0 <id> Saved", "452 4.2.2 Mailbox full", ...); NULL or anything
 * that does not start with a 2xx/4xx/5xx code becomes "451 4.3.0 Internal
 * error" (never a 250 by accident). sbx_lmtp_next() returns the replies in
 * RCPT order as soon as a prefix of them is known, then resets the
 * transaction and goes on with the input. 0, or -1 when no MESSAGE is
 * waiting, i is out of range or already answered.
 */
int sbx_lmtp_data_reply(struct sbx_lmtp_session *s, size_t i, const char *reply);

/* The current transaction (NULL outside one) and XFORWARD attributes;
 * valid until the transaction ends (see MESSAGE) or the next MAIL/RSET. */
const struct sbx_lmtp_mail *sbx_lmtp_mail(const struct sbx_lmtp_session *s);
const struct sbx_lmtp_xforward *sbx_lmtp_xforward(const struct sbx_lmtp_session *s);
/* The LHLO argument (NULL before LHLO). */
const char *sbx_lmtp_lhlo_name(const struct sbx_lmtp_session *s);
/* Bytes held: unconsumed input plus the message being received. */
size_t sbx_lmtp_buffered(const struct sbx_lmtp_session *s);

/*
 * Helpers, exported for the tests and for the milter's encoder side.
 * Each returns a new NUL-terminated string in *out_r, or -1 (nothing
 * allocated) on malformed input.
 * sbx_lmtp_xtext_decode: RFC 3461 xtext ("+" 2HEX, else '!'..'~' minus
 * '+' '='); hex digits of either case; a decoded NUL is an error.
 * sbx_lmtp_orcpt_decode: the address part of ORCPT=type;value for type
 * (case-insensitive): xtext, then for "utf-8" the RFC 6533 forms (\x{HEX}
 * and raw UTF-8 as utf-8-addr-unitext); the result must be valid UTF-8
 * without control characters (and ASCII for types other than utf-8 and
 * rfc822).
 */
int sbx_lmtp_xtext_decode(const char *in, size_t len, char **out_r);
int sbx_lmtp_orcpt_decode(const char *type, const char *in, size_t len, char **out_r);
#endif
