/*
 * admin: the daemon's own small HTTP listener (/healthz, /readyz, /metrics),
 * on its own address, never reachable through the redirect. GET only; one
 * request per connection. The owner answers through a handler. It runs on
 * the proxy's event loop and never blocks it: answers are written as the
 * client reads them, slow or idle clients are cut after a few seconds, and
 * the number of admin connections is capped (admin.c names the limits).
 */
#ifndef MCPGATE_ADMIN_H
#define MCPGATE_ADMIN_H

#include "mcpgate/abi.h"

struct mg_loop;
struct mg_admin;

struct mg_admin_resp {
	int status;
	const char *content_type;
	char *body; /* malloc()ed by the handler, freed by admin */
};

/** Fills <r> for a GET of <path> (query included). */
typedef void mg_admin_handler(void *data, const char *path, struct mg_admin_resp *r);

int mg_admin_new(struct mg_admin **out, struct mg_loop *loop, const struct mg_abi_addr *addr,
		 mg_admin_handler *h, void *data);
void mg_admin_free(struct mg_admin *a);

#endif /* MCPGATE_ADMIN_H */
