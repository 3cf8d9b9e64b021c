/*
 * webhook.h - webhook delivery for sealbox-lmtpd: the JSON payload of a
 * message, the URL options, the signature, the LMTP reply for each HTTP
 * outcome, and the POST itself (libcurl multi driven by a libuv loop).
 *
 * Payload shape. Field names and shapes follow Forward Email's webhook
 * payload (the output of nodemailer's mailparser simpleParser), where it
 * defines them, so that existing receivers keep working:
 *
 *   from, to, cc   {"value": [{"address": "a@b", "name": "A"}, ...],
 *                   "text": "A <a@b>, ..."}; a group is
 *                   {"name": "team", "group": [{"address", "name"}, ...]}
 *                   in "value". Names are RFC 2047 decoded. Omitted when
 *                   the field is absent (every occurrence of the field is
 *                   merged, like mailparser).
 *   subject        RFC 2047 decoded, unfolded, trimmed; omitted if absent.
 *   date           the Date field as ISO 8601 UTC, "2022-03-02T10:12:13.000Z"
 *                  (JavaScript's Date.toISOString form); omitted when absent
 *                  or unparseable.
 *   messageId      "<id@host>" (angle brackets kept, as mailparser does).
 *   inReplyTo      the first message id of In-Reply-To, "<id@host>".
 *   references     array of "<id@host>", in field order.
 *   text           every inline text/plain body part, transfer encoding
 *                  undone and converted to UTF-8, joined with "\n";
 *                  omitted when there is none (no HTML-to-text synthesis).
 *   html           the same for text/html parts.
 *   headers        the raw top-level header block (every field line up to,
 *                  not including, the empty line), as a string. (Forward
 *                  Email's own payload serialises a Map here; the issue
 *                  asks for the raw block.)
 *   headerLines    [{"key": "content-type", "line": "Content-Type: ..."}]:
 *                  key is the lower-cased field name, line the raw field
 *                  exactly as received with its folding (CRLF + WSP) kept
 *                  and without the final line end, as mailparser gives it
 *                  (a DKIM verifier needs the raw bytes).
 *   attachments    [{"filename", "contentType" ("type/subtype", lower
 *                  case), "contentDisposition" ("attachment"/"inline",
 *                  when the field exists), "contentId" ("<cid>", when
 *                  present), "size" (decoded bytes), "checksum" (SHA-256
 *                  hex of the decoded bytes; mailparser uses MD5),
 *                  "content" (base64 of the decoded bytes; mailparser
 *                  serialises a Node Buffer as
 *                  {"type": "Buffer", "data": [...]})}].
 *                  Every leaf part that is not an inline text/plain or
 *                  text/html body is an attachment, including inline images
 *                  and message/rfc822 parts (content: the message bytes).
 *                  content is left out when with_attachments is 0 (URL
 *                  option attachments=false); the rest stays. Always present.
 *   raw            the whole message as a string when it is valid UTF-8
 *                  without NUL bytes; otherwise its base64 and a sibling
 *                  "rawEncoding": "base64". Omitted when with_raw is 0.
 *   recipients     meta->recipients: the original aliases, as received.
 *   session        {"remoteAddress", "remoteName", "helo", "arrivalTime"
 *                  (ISO 8601 UTC), "sender" (MAIL FROM, "" for <>),
 *                  "recipient" (the first alias), "queueId"}, each left
 *                  out when unknown.
 *
 * Every string is valid UTF-8: invalid bytes and NUL become U+FFFD
 * (only "raw" switches to base64 instead, so that it stays byte-exact).
 * Limits: at most SBX_WEBHOOK_MAX_ATTACHMENTS attachments,
 * SBX_WEBHOOK_MAX_HEADER_LINES header lines, SBX_WEBHOOK_MAX_ADDRESSES
 * entries per address field and SBX_WEBHOOK_MAX_REFERENCES references; the MIME walk stops at
 * SBX_MIME_MAX_DEPTH / SBX_MIME_MAX_PARTS (mime.h). Memory: the caller
 * bounds len (message_size_limit); building the JSON takes a few times len
 * (base64 of raw and attachments, json-c's copy, the output: about 8x len
 * peak RSS) and about 0.1 s of CPU per MB here (a 28 MB message with a
 * 20 MB attachment: 2.5 s), so a daemon should build large payloads off
 * its event loop (uv_queue_work): the function is thread-safe.
 *
 * HTTP request: POST, "Content-Type: application/json", "User-Agent:
 * sealbox/SBX_VERSION", "X-Webhook-Signature: <hex HMAC-SHA256(secret,
 * exact body)>" (Forward Email's convention), no "Expect: 100-continue".
 * TLS certificates and host names are always verified (ca_file replaces
 * the system CA bundle). Only http and https, also for redirects. 307 and
 * 308 are followed (at most SBX_WEBHOOK_MAX_REDIRECTS hops) repeating the
 * POST with the same body and headers; an https URL never redirects to
 * http. Other 3xx are final (curl's FOLLOWLOCATION would turn 301/302/303
 * into GETs or re-POST them; neither is what the receiver asked for).
 * Proxies: none unless the client is created with one; the http_proxy /
 * https_proxy / all_proxy environment of the daemon is ignored, so that
 * mail bodies never go through a proxy nobody configured for sealbox.
 */
#ifndef SBX_WEBHOOK_H
#define SBX_WEBHOOK_H
#include <stddef.h>
#include <stdint.h>

#ifndef SBX_VERSION
#define SBX_VERSION "0.1.0"		/* User-Agent: sealbox/<version> */
#endif

#define SBX_WEBHOOK_MAX_ATTACHMENTS   1000
#define SBX_WEBHOOK_MAX_HEADER_LINES  1000
/* entries per address field, group members included */
#define SBX_WEBHOOK_MAX_ADDRESSES     1000
#define SBX_WEBHOOK_MAX_REFERENCES    1000
#define SBX_WEBHOOK_MAX_REDIRECTS        5  /* 307/308 hops */
#define SBX_WEBHOOK_DEF_TIMEOUT_MS   30000  /* whole request with redirects */
#define SBX_WEBHOOK_REPLY_MAX          128  /* reply_out that never truncates */

/* What the daemon knows about the delivery; NULL/0 members are left out. */
struct sbx_webhook_meta {
	const char *const *recipients;	/* original aliases (ORCPT), as received */
	size_t nrecipients;
	const char *remote_address;	/* XFORWARD ADDR */
	const char *remote_name;	/* XFORWARD NAME */
	const char *helo;		/* XFORWARD HELO */
	const char *sender;		/* MAIL FROM ("" for the null sender) */
	const char *queue_id;		/* Postfix queue id (XFORWARD IDENT) */
	int64_t arrival_ms;		/* ms since the epoch; <= 0: unknown */
};

/*
 * The JSON payload of msg[0..len) (never modified; any bytes, malformed MIME
 * is never an error). with_attachments / with_raw: 0 leaves out the
 * attachment contents / the raw message. 0 with *json_r malloc'd
 * (NUL-terminated, *json_len_r bytes, valid UTF-8 JSON), or -1 with
 * *error_r malloc'd (GMime initialisation failure, or a payload too large
 * for json-c: strings and the output are limited to 2 GiB). Thread-safe.
 */
int sbx_webhook_payload(const char *msg, size_t len,
    const struct sbx_webhook_meta *meta, int with_attachments, int with_raw,
    char **json_r, size_t *json_len_r, char **error_r);

/*
 * Check a configured webhook URL and take sealbox's options out of its query
 * string: "attachments=false|true" and "raw=false|true" (names exact, values
 * case-insensitive; the last occurrence wins; both default to true). The
 * other parameters and the rest of the URL stay byte-exact; an empty query
 * loses its "?". The URL must be http:// or https:// (scheme in any case)
 * with a host, at most SBX_MAX_URL_LEN bytes, no bytes <= 0x20 or >= 0x7f.
 * 0 with *clean_url_r malloc'd, or -1 with *error_r malloc'd (another
 * scheme, no host, a bad byte, an options value other than true/false).
 */
int sbx_webhook_url_options(const char *url, char **clean_url_r,
    int *attachments_r, int *raw_r, char **error_r);

/* hex_out = lower-case hex of HMAC-SHA256(secret, body[0..len)), NUL-ended.
 * Any secret length (RFC 2104: keys longer than 64 bytes are hashed). */
void sbx_webhook_sign(const unsigned char *secret, size_t secret_len,
    const char *body, size_t len, char hex_out[65]);

/* How a POST ended (libcurl result classes, without libcurl types). */
enum sbx_webhook_outcome {
	SBX_WEBHOOK_OK = 0,	/* an HTTP response was received: see the status */
	SBX_WEBHOOK_TIMEOUT,	/* no complete response within the timeout */
	SBX_WEBHOOK_DNS,	/* the host name did not resolve */
	SBX_WEBHOOK_CONNECT,	/* the TCP connection failed (refused, unreachable) */
	SBX_WEBHOOK_LOST,	/* connection lost: reset, empty reply, send/recv error */
	SBX_WEBHOOK_TLS,	/* TLS handshake or certificate verification failed */
	SBX_WEBHOOK_OTHER,	/* anything else (bad URL, out of memory, client closed) */
};

/*
 * The LMTP reply line (no CRLF) for a POST's outcome, into reply_out
 * (n bytes; SBX_WEBHOOK_REPLY_MAX never truncates). Returns the reply code:
 *
 *   outcome  HTTP status            reply
 *   OK       200-299                250 2.0.0
 *   OK       408                    451 4.4.2  (server timed out the request)
 *   OK       429, 503               451 4.4.5  (congestion)
 *   OK       other 500-599          451 4.4.0
 *   OK       401, 403               550 5.7.1  (not authorized)
 *   OK       404, 410               550 5.1.1  (endpoint does not exist)
 *   OK       413                    550 5.3.4  (too big)
 *   OK       400, 415, 422          550 5.6.0  (payload refused)
 *   OK       other 400-499          550 5.0.0
 *   OK       300-399                550 5.1.6  (moved; not followed: not
 *                                   307/308, no Location, loop or limit)
 *   OK       anything else          451 4.3.0  (no valid HTTP status)
 *   TIMEOUT                         451 4.4.2  (Postfix: conversation timeout)
 *   DNS                             451 4.4.3  (routing server failure)
 *   CONNECT                         451 4.4.1  (no answer from host)
 *   LOST                            451 4.4.2  (bad connection)
 *   TLS                             451 4.7.5  (cryptographic failure)
 *   OTHER                           451 4.3.0
 *
 * The text names the HTTP status ("(HTTP 404)") when there is one. Every
 * temporary failure is 451 so that Postfix retries from its own queue.
 */
int sbx_webhook_reply(long http_status, int outcome, char *reply_out,
    size_t n);

/* ---- the POST (libuv + libcurl multi) ---- */

typedef struct uv_loop_s uv_loop_t;
struct sbx_webhook_client;

/*
 * Completion of one POST: http_status is the final HTTP status (0 when
 * none), error a short description for the log when outcome is not OK or a
 * redirect was not followed, else NULL; it never contains the body or the
 * URL's query. Runs on the loop; the callback may start new POSTs and may
 * close the client.
 */
typedef void sbx_webhook_cb(long http_status, enum sbx_webhook_outcome outcome,
    const char *error, void *arg);

/*
 * A client on loop: one CURLM whose sockets and timer are uv_poll / uv_timer
 * handles of loop (curl's multi-uv.c pattern); connections are reused
 * between POSTs. proxy: NULL (or "") for direct connections, else a curl
 * proxy URL. Calls curl_global_init once per process (not thread-safe in
 * libcurl 7.88: create the first client before starting threads). The
 * process must ignore SIGPIPE (CURLOPT_NOSIGNAL is set, so libcurl leaves
 * signals alone and OpenSSL writes to sockets with write(2)). NULL with
 * *error_r malloc'd on failure.
 */
struct sbx_webhook_client *sbx_webhook_client_new(uv_loop_t *loop,
    const char *proxy, char **error_r);

/*
 * Close the client: every POST still running is aborted and its callback
 * called (outcome OTHER, status 0, "webhook client closed"), then the uv
 * handles are closed; the memory is released by their close callbacks, so
 * run the loop afterwards. Sets *client to NULL; NULL-safe. May be called
 * from a completion callback.
 */
void sbx_webhook_client_close(struct sbx_webhook_client **client);

/*
 * Start a POST of body[0..len) to url (http/https, from
 * sbx_webhook_url_options). body must stay valid and unchanged until the
 * callback runs (it is not copied; redirects resend it). signature: the
 * X-Webhook-Signature value (sbx_webhook_sign), NULL for none. timeout_ms:
 * for the whole request including redirects, 0 for
 * SBX_WEBHOOK_DEF_TIMEOUT_MS. ca_file: PEM CA bundle to verify https
 * servers against instead of the system's, NULL for the system's.
 * 0: cb will be called exactly once, later, from the loop. -1 with
 * *error_r malloc'd: cb will never be called.
 */
int sbx_webhook_post(struct sbx_webhook_client *client, const char *url,
    const char *body, size_t len, const char *signature,
    unsigned int timeout_ms, const char *ca_file, sbx_webhook_cb *cb,
    void *arg, char **error_r);
#endif
