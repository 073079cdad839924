/*
 * http: strict HTTP/1.1 message parsing for the proxy (RFC 9110, RFC 9112).
 *
 * It never guesses: any framing ambiguity is an error, because the proxy and
 * the API server must agree on exactly where each message ends. Parsers work
 * in one pass over the receive buffer, allocate nothing and copy nothing:
 * what they find is described by slices into that buffer.
 *
 * Choices where the RFCs leave room (each is stricter than the minimum):
 *  - lines end in CRLF only; a bare LF or a bare CR anywhere is an error;
 *  - an empty line before the request-line is an error, not skipped;
 *  - Content-Length must appear at most once, even with equal values;
 *  - Transfer-Encoding must be exactly one `chunked` (one field line, one
 *    list element), the only transfer coding we implement;
 *  - request-targets are origin-form, or `*` for OPTIONS, with valid
 *    percent-escapes and no bytes outside VCHAR;
 *  - chunk lines allow no whitespace (no BWS around extensions).
 */
#ifndef MCPGATE_HTTP_H
#define MCPGATE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mcpgate/str.h"

/* Capacity of the header arrays in requests and responses. */
#define MG_HTTP_MAX_HEADERS 128

/* Largest Content-Length or chunk size accepted (2^62): sums and signed
 * conversions of lengths stay in range everywhere downstream. */
#define MG_HTTP_MAX_LENGTH (UINT64_C(1) << 62)

/* The default limits of one head (mg_http_limits_default()): the proxy
 * sizes its buffers by them. */
#define MG_HTTP_HEAD_MAX   (64 * 1024) /* start line + fields + final CRLF */
#define MG_HTTP_TARGET_MAX (8 * 1024)  /* request-target */
#define MG_HTTP_FIELDS_MAX 100	       /* field lines */

/** Size limits for one message head. A field left 0 takes its default. */
struct mg_http_limits {
	size_t max_head_bytes; /* start line + fields + final CRLF; default 64 KiB */
	size_t max_headers;    /* field lines; default 100, at most MG_HTTP_MAX_HEADERS */
	size_t max_target_len; /* request-target bytes; default 8 KiB */
};

/** The default limits: 64 KiB head, 100 fields, 8 KiB request-target. */
struct mg_http_limits mg_http_limits_default(void);

/** How the message body is delimited (RFC 9112 §6.3). */
enum mg_http_body {
	MG_HTTP_BODY_NONE = 0, /* no body (no CL/TE in a request; 1xx/204/304) */
	MG_HTTP_BODY_LENGTH,   /* Content-Length: <content_length> bytes */
	MG_HTTP_BODY_CHUNKED,  /* Transfer-Encoding: chunked */
	MG_HTTP_BODY_CLOSE,    /* responses only: until the server closes */
};

/** Where and why a message was rejected; logged and put in the audit record. */
struct mg_http_err {
	const char *reason; /* static string, set on every error return */
	size_t pos;	    /* offset of the offending byte (see each parser) */
	int status;	    /* HTTP status the proxy should answer with */
};

/** One field line: both slices point into the parsed buffer. */
struct mg_http_hdr {
	struct mg_str name;  /* as received (case preserved) */
	struct mg_str value; /* leading and trailing OWS removed; may be empty */
};

/** A parsed request head. Every slice points into the parsed buffer. */
struct mg_http_req {
	struct mg_str method; /* a token, case-sensitive */
	struct mg_str target; /* origin-form, or "*" for OPTIONS */
	int minor;	      /* HTTP/1.<minor>: 0 or 1 */
	size_t n_headers;
	struct mg_http_hdr headers[MG_HTTP_MAX_HEADERS];
	enum mg_http_body body;	     /* NONE, LENGTH or CHUNKED */
	uint64_t content_length;     /* when body == MG_HTTP_BODY_LENGTH, else 0 */
	struct mg_str host;	     /* the Host value; ptr NULL when absent */
	struct mg_str upgrade_proto; /* the Upgrade value when <upgrade> */
	bool keep_alive;	     /* connection persists after this exchange */
	bool upgrade;		     /* Connection: upgrade + Upgrade, HTTP/1.1 only */
	bool expect_continue;	     /* Expect: 100-continue */
	bool has_host;
};

/** A parsed response head. Every slice points into the parsed buffer. */
struct mg_http_resp {
	int minor;	      /* HTTP/1.<minor>: 0 or 1 */
	int status;	      /* 100..599 */
	struct mg_str reason; /* reason-phrase, possibly empty */
	size_t n_headers;
	struct mg_http_hdr headers[MG_HTTP_MAX_HEADERS];
	/* Framing from the status and the fields; a response to HEAD has no
	 * body whatever this says: see mg_http_resp_body_kind(). */
	enum mg_http_body body;
	uint64_t content_length; /* the Content-Length value, if one was sent */
	bool has_content_length;
	/* Persist after this response: HTTP/1.1 unless Connection: close,
	 * HTTP/1.0 only with keep-alive; never when the body runs until close
	 * or after a 101. */
	bool keep_alive;
	bool upgrade;		     /* 101 Switching Protocols: the connection becomes a tunnel */
	struct mg_str upgrade_proto; /* the Upgrade value, ptr NULL when absent */
	struct mg_str content_type;  /* ptr NULL when absent */
	struct mg_str content_encoding; /* ptr NULL when absent */
	bool has_content_type;
	bool has_content_encoding;
};

/**
 * Parses the request head at the start of <buf>[0..<len>) under <lim> (NULL:
 * defaults). Slices in <req> point into <buf>. Returns the head length (> 0,
 * including the final CRLFCRLF), 0 if more bytes are needed, or -1 with <err>
 * filled in (pos is an offset into <buf>; status 400, 414, 431, 501 or 505).
 * A buffer of max_head_bytes or more without a complete head is a 431.
 *
 * Stateless: each call parses from the start, so a caller receiving a head in
 * many small reads should call again only when the new bytes hold a '\n' or
 * the buffer reached max_head_bytes; since lines are bounded by max_headers,
 * the work per head then stays bounded too. It does not look at the body.
 */
ssize_t mg_http_parse_req(struct mg_http_req *req, const char *buf, size_t len,
			  const struct mg_http_limits *lim, struct mg_http_err *err);

/**
 * Parses the response head the upstream API server sent, like
 * mg_http_parse_req(). Errors have status 502: the proxy answers its client
 * Bad Gateway. Content-Length together with Transfer-Encoding is an error
 * here too: a proxy must not guess which one the server meant.
 */
ssize_t mg_http_parse_resp(struct mg_http_resp *resp, const char *buf, size_t len,
			   const struct mg_http_limits *lim, struct mg_http_err *err);

/**
 * The body of <resp> as the client must read it: MG_HTTP_BODY_NONE for a
 * response to HEAD (<req_was_head>), and for 1xx, 204 and 304 (RFC 9112
 * §6.3), else <resp>->body.
 */
enum mg_http_body mg_http_resp_body_kind(const struct mg_http_resp *resp, bool req_was_head);

/**
 * The value of the first field named <name> (ASCII case-insensitive) among
 * <hdrs>[0..<n>), or MG_STR_NULL (ptr NULL) when there is none.
 */
struct mg_str mg_http_header(const struct mg_http_hdr *hdrs, size_t n, struct mg_str name);

/**
 * Whether the comma-separated list <value> (as in Connection) holds the
 * element <token>, compared ASCII case-insensitively after trimming OWS.
 */
bool mg_http_header_has_token(struct mg_str value, struct mg_str token);

/**
 * Parses the Content-Length value <value> into <*len>: 1*DIGIT with optional
 * surrounding OWS, at most MG_HTTP_MAX_LENGTH. If <seen>, an earlier
 * Content-Length is in <*len> and this one must equal it (RFC 9112 §6.3).
 * The head parsers are stricter and reject any second Content-Length.
 * Returns 0, or -EINVAL with <*len> untouched.
 */
int mg_http_parse_content_length(struct mg_str value, bool seen, uint64_t *len);

/* ---- chunked transfer coding ---- */

/* Default limit on a trailer section, and the fixed limit on one chunk-size
 * line (size and extensions): a peer cannot make us scan forever without
 * making progress. */
#define MG_HTTP_DEFAULT_MAX_TRAILER 8192
#define MG_HTTP_MAX_CHUNK_LINE	    4096

/* Room mg_http_chunk_header() needs: 16 hex digits and CRLF. */
#define MG_HTTP_CHUNK_HEADER_MAX 18
/* What follows each chunk's data, and the whole end of a chunked body. */
#define MG_HTTP_CHUNK_CRLF "\r\n"
#define MG_HTTP_CHUNK_LAST "0\r\n\r\n"

/**
 * Incremental decoder of a chunked body (RFC 9112 §7.1). It holds no bytes:
 * chunk data is handed back as slices of the caller's buffer as it arrives,
 * so no chunk is ever held in memory whole. Fields are private.
 */
struct mg_http_chunked {
	uint64_t remaining; /* data bytes left in the current chunk */
	uint64_t offset;    /* bytes consumed so far: err->pos */
	size_t line;	    /* bytes of the current chunk line / trailer section */
	size_t max_trailer;
	unsigned char state;
	unsigned char digits; /* hex digits of the current chunk size */
};

/** Starts decoding a body; <max_trailer> 0 means MG_HTTP_DEFAULT_MAX_TRAILER. */
void mg_http_chunked_init(struct mg_http_chunked *c, size_t max_trailer);

/**
 * Feeds <buf>[0..<len>) to <c>. Returns how many bytes it consumed (they
 * need not be kept: partial framing is remembered in <c>), or -1 with <err>
 * filled in (pos counts from the start of the body, status 400). <*data_out>
 * is set to the chunk data among the consumed bytes, at most one slice per
 * call (empty when the call consumed only framing). Call again with the rest
 * until it returns 0 (nothing left, or the body ended); after
 * mg_http_chunked_done(), the bytes not consumed belong to the next message.
 *
 * A proxy re-chunks: each non-empty slice goes out as
 * mg_http_chunk_header(slice.len), the slice, MG_HTTP_CHUNK_CRLF, and the body
 * ends with MG_HTTP_CHUNK_LAST. Chunk extensions are validated and dropped;
 * the trailer section is validated with the header rules and dropped.
 */
ssize_t mg_http_chunked_feed(struct mg_http_chunked *c, const char *buf, size_t len,
			     struct mg_str *data_out, struct mg_http_err *err);

/** Whether the last chunk, the trailers and the final CRLF were consumed. */
bool mg_http_chunked_done(const struct mg_http_chunked *c);

/**
 * Writes "<n in lowercase hex>\r\n" to <out>, which has room for
 * MG_HTTP_CHUNK_HEADER_MAX bytes; no NUL. Returns the length written. <n>
 * must not be 0: a zero-size chunk ends the body (MG_HTTP_CHUNK_LAST).
 */
size_t mg_http_chunk_header(char *out, size_t n);

/* ---- error responses ---- */

/**
 * The Kubernetes Status reason for HTTP status <code>: 400 BadRequest,
 * 401 Unauthorized, 403 Forbidden, 404 NotFound, 405 MethodNotAllowed,
 * 406 NotAcceptable, 408 Timeout, 409 Conflict, 410 Gone,
 * 413 RequestEntityTooLarge, 415 UnsupportedMediaType, 422 Invalid,
 * 429 TooManyRequests, 504 Timeout, 503 ServiceUnavailable; other 4xx
 * (414, 431, ...) and 501 (a request we cannot process as sent: the client's
 * side) BadRequest; other 5xx (500, 502, ...) InternalError, as the API
 * server does; "" below 400.
 */
const char *mg_http_k8s_reason(int code);

/**
 * Writes a complete HTTP/1.1 response to <out> (room for <cap> bytes; NUL
 * terminated when there is room) whose body is a Kubernetes v1 Status:
 * {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
 * "message":<message>,"reason":<reason>,"code":<code>} ("Success" below
 * 400), with Content-Type
 * application/json, Content-Length, and Connection: close unless
 * <keep_alive>. <reason> NULL means mg_http_k8s_reason(<code>); an empty
 * reason is left out. <message> (NULL: empty) is JSON-escaped; bytes that are
 * not UTF-8 become U+FFFD. <code> outside 200..599, or 204 or 304 (no body
 * allowed), is sent as 500.
 * Returns the length of the whole response, like snprintf: it was written
 * completely only if that is < <cap>.
 */
size_t mg_http_status_json(char *out, size_t cap, int code, const char *reason, const char *message,
			   bool keep_alive);

#endif /* MCPGATE_HTTP_H */
