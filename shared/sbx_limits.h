/*
 * sbx_limits.h - every bound on attacker- or admin-controlled sizes and counts,
 * in one place (STYLE.md section 5). Config keys override some of them at
 * run time; the names here are the compiled-in defaults and hard ceilings.
 */
#ifndef SBX_LIMITS_H
#define SBX_LIMITS_H

#define SBX_MAX_CONFIG_LINE       4096   /* bytes per sealbox.conf line */
#define SBX_MAX_CONFIG_KEYS        128
#define SBX_MAX_ADDRESS_LEN        320   /* RFC 5321: 64 local + @ + 255 domain */
#define SBX_MAX_LOCALPART_LEN       64
#define SBX_MAX_DOMAIN_LEN         253
#define SBX_MAX_URL_LEN           2048
#define SBX_MAX_REGEX_LEN          512
#define SBX_MAX_TARGETS_PER_ALIAS   64
#define SBX_MAX_PASSWORD_LEN      1024   /* bytes read from --password-stdin */
#define SBX_MIN_PASSWORD_LEN         8
#define SBX_MAX_ENVELOPES           32   /* key envelopes (app passwords) per mailbox */
#define SBX_MAX_ENVELOPE_ID_LEN     64
#define SBX_MAX_ENVELOPE_BLOB      512
#define SBX_DEF_MESSAGE_SIZE  (50L * 1024 * 1024)  /* message_size_limit default */
#define SBX_MAX_MESSAGE_SIZE (1024L * 1024 * 1024) /* hard ceiling for any config */
#define SBX_SPOOL_CHUNK         65536    /* plaintext bytes per secretstream chunk */
#define SBX_SPOOL_MAX_META        4096   /* sealed metadata record */
#define SBX_MAX_WEBHOOK_SECRET     256
#define SBX_IMPORT_BATCH            64   /* spool entries per import transaction */
/* sealbox-milter (route.c) */
#define SBX_MAX_RCPT_ARG          1024   /* bytes of a RCPT argument in a hosted domain */
#define SBX_MAX_FORWARD_DEPTH        8   /* forwards followed inside hosted domains */
#define SBX_MAX_FORWARD_EXPAND      64   /* addresses resolved for one RCPT */
#define SBX_DEF_MILTER_RECIPIENTS 1000   /* milter_max_recipients default */
#define SBX_MAX_MILTER_RECIPIENTS 100000 /* ceiling for milter_max_recipients */

#endif
