/*
 * milter.h - sealbox-milter: the libmilter callbacks (filter.c) and what
 * main.c sets up for them.
 *
 * libmilter serves each Postfix connection on its own thread or on a
 * worker of its pool, and a connection may move between workers from one
 * command to the next. So per-connection state lives only in
 * smfi_setpriv(), and a RCPT borrows a read-only directory.db connection
 * from a pool (filter.c) for the length of its lookup.
 */
#ifndef SBX_MILTER_H
#define SBX_MILTER_H
#include <libmilter/mfapi.h>

#include "config.h"
#include "route.h"

struct milter_global {
	struct sbx_config *cfg;       /* kept to the end: route points into it */
	const char *state_dir;
	struct sbx_route_cfg route;
};
extern struct milter_global milter_g;

/* The filter description handed to smfi_register(). */
extern struct smfiDesc milter_desc;

/* Once, before smfi_main(). 0 or -1. */
int milter_filter_init(void);
void milter_filter_done(void);
/* Messages between MAIL and EOM/abort right now (for a clean stop). */
unsigned milter_active_messages(void);
#endif
