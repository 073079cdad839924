/*
 * exchange: one request and its response through the proxy, as ordered
 * lists of stages (HAProxy's analysers, AN_REQ_* and AN_RES_*, are the model).
 *
 *   request:  identify -> rewrite -> authn -> creds -> upstream
 *   response: upgrade -> mask
 *
 * A stage is one function of one signature. It returns CONTINUE (the next
 * stage runs), REPLY (it filled <x>->reply: the proxy answers with that
 * Kubernetes Status and the exchange ends; later stages never run) or WAIT
 * (it handed work elsewhere — the worker pool, a timer, a human — and will
 * call mg_exchange_resume() itself, on the loop thread, with its outcome).
 * Adding a concern (policy, approval, audit) is one module with its stage
 * function and one entry in a list below, nothing in the connection code.
 *
 * The exchange also owns the heads: parsing the request head, the head that
 * goes upstream, the response head that goes to the pod, and the framing
 * of both bodies (the connection module only moves bytes).
 */
#ifndef MCPGATE_EXCHANGE_H
#define MCPGATE_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpgate/http.h"
#include "mcpgate/str.h"

struct mg_conn;
struct mg_exchange;
struct mg_mask_body;

/** What a stage tells the runner. */
enum mg_stage_rc {
	MG_STAGE_CONTINUE = 0, /* done: the next stage runs */
	MG_STAGE_WAIT,	       /* the stage resumes the exchange itself later */
	MG_STAGE_REPLY,	       /* answer <x>->reply; the rest of the list is skipped */
};

/** How an exchange ended, for logs and metrics (mg_exchange_decision_str()). */
enum mg_exchange_decision {
	MG_EXCHANGE_ALLOW = 0, /* forwarded */
	MG_EXCHANGE_ERROR,     /* answered by the proxy with an error Status */
	MG_EXCHANGE_LIMITED,   /* 429: over a connection or worker limit */
	MG_EXCHANGE_ABORTED,   /* the connection went before the exchange ended */
	MG_EXCHANGE_DENY,      /* refused by policy */
	MG_EXCHANGE_HELD,      /* held for a human's approval */
	MG_EXCHANGE_DECISION_MAX,
};

/** "allow", "error", "limited", "aborted", "deny", "held". */
const char *mg_exchange_decision_str(enum mg_exchange_decision d);

typedef enum mg_stage_rc mg_stage_fn(struct mg_exchange *x);

/** One entry of a stage list. */
struct mg_stage {
	const char *name; /* for logs and tests */
	mg_stage_fn *run;
};

/** The Status a stage answers with (REPLY). */
#define MG_EXCHANGE_REPLY_MSG_MAX 600
struct mg_exchange_reply {
	int code;
	char msg[MG_EXCHANGE_REPLY_MSG_MAX];
	/* 429 only: the limit's name in the log, and its counter (or NULL) */
	const char *limit;
	uint64_t *counter;
};

/** Called when a stage that waited resumed the exchange and the list ran
 *  on to its end (CONTINUE) or to a REPLY. */
typedef void mg_exchange_settled_fn(struct mg_exchange *x, enum mg_stage_rc rc);

/** Where the runner is in a stage list. */
struct mg_exchange_run {
	const struct mg_stage *list;
	size_t n;
	size_t next;  /* the stage running or waiting */
	bool waiting; /* list[next] returned WAIT and has not resumed yet */
};

/**
 * What the request means (reqinfo), copied once per exchange into one
 * block sized by the data: no field is cut short. Each text is also
 * NUL-terminated. Empty when absent.
 */
struct mg_exchange_info {
	struct mg_str method, path;
	bool resource_req, watch;
	struct mg_str verb;
	struct mg_str resource; /* resource or resource/subresource */
	struct mg_str res_only; /* the resource alone: the masker's hint */
	struct mg_str api_group, api_version, ns, name;
	char *mem;
};

struct mg_exchange {
	struct mg_conn *c; /* the connection it runs on */
	bool active;
	uint64_t seq; /* which exchange of its connection (a late worker result
		       * must not reach the next one) */
	char audit_id[37];
	uint64_t t0_ns;
	struct mg_exchange_info info;
	/* valid while the request stages run from the head, before any WAIT */
	const struct mg_http_req *req;
	/* valid while the response stages run */
	const struct mg_http_resp *resp;
	struct mg_exchange_run run;
	struct mg_exchange_reply reply;
	mg_exchange_settled_fn *settled;
	/* request framing */
	bool head_req; /* HEAD: no response body */
	bool upgrade;  /* request asked for an upgrade */
	bool client_keep_alive;
	bool client_http11;
	enum mg_http_body req_body;
	uint64_t req_left;
	struct mg_http_chunked req_ch;
	bool req_done;
	/* response framing */
	bool resp_head;
	int status;
	enum mg_http_body resp_body;
	uint64_t resp_left;
	struct mg_http_chunked resp_ch;
	bool resp_chunk_out; /* we chunk the body to the client */
	bool resp_done;
	bool up_keep_alive;
	bool close_client; /* the client connection ends with this response */
	bool pooled;	   /* sent on a reused upstream connection */
	char *replay;	   /* the whole request, kept while it may be resent */
	size_t replay_len;
	struct mg_mask_body *mask; /* this response's masker, NULL when unmasked */
	char *held_head;	   /* masked response: head waits for the first safe bytes */
	size_t held_len;
	uint64_t bytes_in, bytes_out;
};

/* ---- the stage runner ---- */

/**
 * Runs <list>[0..<n>) on <x> until a stage returns WAIT or REPLY, or the
 * list ends (CONTINUE). The runner keeps its place in <x>->run.
 */
enum mg_stage_rc mg_exchange_run(struct mg_exchange *x, const struct mg_stage *list, size_t n);

/**
 * Called by a stage that returned WAIT, with its outcome: CONTINUE runs
 * the rest of the list, REPLY (with <x>->reply filled) ends it. Then, unless
 * another stage waits, <x>->settled is called with how the list ended.
 */
void mg_exchange_resume(struct mg_exchange *x, enum mg_stage_rc rc);

/** Whether a stage of <x> waits (request bytes then stay where they are). */
static inline bool mg_exchange_waiting(const struct mg_exchange *x)
{
	return x->run.waiting;
}

/** Fills <x>->reply and returns MG_STAGE_REPLY: `return mg_exchange_reply(x, 401, ...)`. */
enum mg_stage_rc mg_exchange_reply(struct mg_exchange *x, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/** The stage lists the proxy runs. */
extern const struct mg_stage mg_exchange_request_stages[];
extern const size_t mg_exchange_n_request_stages;
extern const struct mg_stage mg_exchange_response_stages[];
extern const size_t mg_exchange_n_response_stages;

/* ---- driven by the connection (conn.c) ---- */

/** Parses a request head from the connection's input and starts its
 *  exchange. Returns whether anything progressed. */
bool mg_exchange_take_request(struct mg_conn *c);
/** Moves request body bytes to the upstream buffer. */
bool mg_exchange_forward_request_body(struct mg_conn *c);
/** Parses the response head and writes (or holds) its rewritten form. */
bool mg_exchange_take_response_head(struct mg_conn *c);
/** Moves response body bytes to the client, masked where it applies. */
bool mg_exchange_forward_response_body(struct mg_conn *c);
/** Both sides are over: log, count, recycle the upstream connection. */
void mg_exchange_complete(struct mg_conn *c);
/** Logs and counts the exchange with <d>, and frees its per-request state. */
void mg_exchange_finish(struct mg_conn *c, enum mg_exchange_decision d);
/** Frees what an exchange holds (the connection is going). */
void mg_exchange_clear(struct mg_exchange *x);

#endif /* MCPGATE_EXCHANGE_H */
