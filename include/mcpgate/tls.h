/*
 * tls: the OpenSSL side of the proxy, without any sockets. It owns the
 * mcpgate CA (loaded from disk, or created once), issues the short-lived
 * leaf certificate the proxy presents to pods under the API server's names,
 * keeps a downstream SSL_CTX serving a fresh leaf (renewed before expiry by
 * swapping in a new context, so open connections are never dropped), and
 * builds the upstream SSL_CTX that always verifies the real API server.
 *
 * Everything returns 0 / -errno (or NULL) and fills a struct mg_tls_err with
 * a one-line message that includes the drained OpenSSL error queue; no
 * message ever contains key material.
 */
#ifndef MCPGATE_TLS_H
#define MCPGATE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/** Why a call failed: one line, OpenSSL's queue appended, no secrets. */
struct mg_tls_err {
	char msg[256];
};

/** The mcpgate CA: its certificate and private key. Opaque. */
struct mg_tls_ca;

/** The downstream (pod-facing) TLS server state. Opaque. */
struct mg_tls_server;

/* Default lifetime of the downstream leaf: short, because it is reissued
 * automatically and pods never pin it. */
#define MG_TLS_LEAF_VALIDITY_DEFAULT (24u * 3600u)

/* ---- CA ---- */

/**
 * Loads the CA from <cert_path> and <key_path> if both exist, or creates it
 * if neither does (EC P-256, self-signed, CN <common_name> or "mcpgate CA"
 * if NULL, 10 years, basicConstraints CA:TRUE and keyUsage keyCertSign+cRLSign,
 * both critical). Missing parent directories are created 0700; each file is
 * written to a temporary name, fsynced and renamed (never over an existing
 * file), the key created 0600 with O_EXCL so it is never readable by others.
 *
 * Loading refuses, with <err> saying why: only one of the two files present
 * (-EEXIST: nothing is overwritten), a key file with any group/other
 * permission bit (-EPERM), an encrypted or unparsable key or cert (-EINVAL),
 * a key that does not match the cert, a cert that is not a CA
 * (basicConstraints CA:TRUE required; a keyUsage, if present, must allow
 * keyCertSign), or an expired CA (-EINVAL).
 * On success <*out> owns the CA; release it with mg_tls_ca_free().
 */
int mg_tls_ca_load_or_create(struct mg_tls_ca **out, const char *cert_path, const char *key_path,
			     const char *common_name, struct mg_tls_err *err);

/** Frees <ca>. Accepts NULL. */
void mg_tls_ca_free(struct mg_tls_ca *ca);

/** The CA certificate, borrowed: valid as long as <ca>. */
X509 *mg_tls_ca_cert(const struct mg_tls_ca *ca);

/**
 * Encodes the CA certificate as PEM into a malloc'd, NUL-terminated <*pem>
 * of <*len> bytes (without the NUL), for the pods' ca.crt bundle. The caller
 * frees it with free(). Returns 0 or -ENOMEM.
 */
int mg_tls_ca_cert_pem(const struct mg_tls_ca *ca, char **pem, size_t *len);

/**
 * Writes <cert> as PEM to <path> (mode 0644), atomically: temporary file,
 * fsync, rename over any existing file, fsync of the directory. Readers see
 * the old or the new file, never a half-written one. Returns 0 or -errno.
 */
int mg_tls_write_pem(const char *path, X509 *cert);

/* ---- leaf certificates ---- */

/**
 * Issues a server certificate signed by <ca> for <n_dns> DNS names
 * <dns_names> and <n_ips> textual IPv4/IPv6 addresses <ips> (at least one
 * name in total): a fresh EC P-256 key, a random positive 128-bit serial,
 * CN = the first DNS name (first IP if none), EKU serverAuth, keyUsage
 * digitalSignature (critical), SKI/AKI, valid from now - 5 min (clients'
 * clock skew) to now + <validity_seconds>, signed with SHA-256.
 * Returns 0 with <*cert_out> and <*key_out> owned by the caller, -EINVAL for
 * a malformed name or address or zero validity, or -ENOMEM / -EIO.
 */
int mg_tls_leaf_issue(struct mg_tls_ca *ca, const char *const *dns_names, size_t n_dns,
		      const char *const *ips, size_t n_ips, unsigned validity_seconds,
		      X509 **cert_out, EVP_PKEY **key_out, struct mg_tls_err *err);

/** True if <s> is a textual IPv4 or IPv6 address (IPv6 may be in brackets). */
bool mg_tls_is_ip_literal(const char *s);

/* ---- downstream server ---- */

/** What the downstream leaf covers and how long it lives. */
struct mg_tls_server_opts {
	const char *const *dns_names; /* e.g. kubernetes, kubernetes.default.svc, ... */
	size_t n_dns;
	const char *const *ips; /* textual, e.g. the ClusterIP */
	size_t n_ips;
	unsigned validity_seconds;     /* 0: MG_TLS_LEAF_VALIDITY_DEFAULT (24 h) */
	unsigned renew_before_seconds; /* 0: a third of the validity; must be < validity */
};

/**
 * Creates the downstream server state: copies <o>, takes its own references
 * to <ca>'s certificate and key (<ca> may be freed afterwards), issues a leaf
 * and builds the first SSL_CTX. That context accepts TLS 1.2 and 1.3 only,
 * with forward-secret AEAD suites, serves the leaf alone (plus the CA cert
 * if the CA is not self-signed), keeps session tickets, and selects ALPN
 * "http/1.1" only: a client offering h2 and http/1.1 (kubectl) gets
 * http/1.1; a client offering no http/1.1 gets no ALPN at all
 * (SSL_TLSEXT_ERR_NOACK) rather than a fatal alert, so it proceeds and
 * speaks HTTP/1.1, the protocol's default, or fails in the HTTP parser with
 * a clear error. Returns NULL with <err> filled on failure.
 */
struct mg_tls_server *mg_tls_server_new(struct mg_tls_ca *ca, const struct mg_tls_server_opts *o,
					struct mg_tls_err *err);

/**
 * Frees <s> and drops its reference to the current SSL_CTX; connections
 * still holding an SSL keep their context alive. Accepts NULL.
 */
void mg_tls_server_free(struct mg_tls_server *s);

/**
 * Returns the current SSL_CTX with a new reference (SSL_CTX_up_ref) that the
 * caller drops with SSL_CTX_free() once it has made its SSL (the SSL keeps
 * its own reference). Call it for each accepted connection.
 */
SSL_CTX *mg_tls_server_ctx(struct mg_tls_server *s);

/**
 * If the current leaf expires within renew_before of <now>, issues a new
 * leaf valid from <now> and swaps in a new SSL_CTX serving it; SSL objects
 * made from the old context keep it (and its leaf) until they are freed, so
 * no connection is dropped. Call it from a periodic timer with
 * <now> = time(NULL), with a period well below renew_before.
 * Returns 1 if it renewed, 0 if not needed, or -errno (the old context stays
 * in place; the reason is kept for mg_tls_server_last_err()).
 *
 * Thread-safety: the daemon calls this on its loop thread, between accepts.
 * It is also safe to call from another thread: the swap and
 * mg_tls_server_ctx() take a mutex (held only for a pointer swap, never
 * during key generation), and concurrent renewals are serialised.
 */
int mg_tls_server_maybe_renew(struct mg_tls_server *s, time_t now);

/**
 * Issues a leaf for the same DNS names and the IP addresses <ips>[0..<n>)
 * (textual; they replace the previous IPs, also for later renewals) and
 * swaps in a context serving it, like a renewal: connections keep theirs.
 * Returns 0 once every new connection gets the new leaf, or -errno with
 * <err> filled and the old leaf and IPs still in place. Safe from any
 * thread (serialised with renewals); the caller that makes pods dial a new
 * address calls this first, so no pod meets a leaf without it.
 */
int mg_tls_server_set_ips(struct mg_tls_server *s, const char *const *ips, size_t n,
			  struct mg_tls_err *err);

/** The notAfter of the leaf the current SSL_CTX serves. */
time_t mg_tls_server_leaf_not_after(struct mg_tls_server *s);

/** Copies the reason of the last failed renewal (empty if none) into <err>. */
void mg_tls_server_last_err(struct mg_tls_server *s, struct mg_tls_err *err);

/* ---- upstream client ---- */

/**
 * Creates the upstream (API-server-facing) SSL_CTX: TLS 1.2+, ALPN
 * "http/1.1", SSL_VERIFY_PEER always, trusting only the certificates in
 * <ca_file> (never the system store). There is deliberately no way to skip
 * verification. Each SSL made from it must go through mg_tls_client_prepare().
 * Returns NULL with <err> filled if <ca_file> cannot be loaded.
 */
SSL_CTX *mg_tls_client_ctx_new(const char *ca_file, struct mg_tls_err *err);

/**
 * Sets on <ssl> what the server's certificate must match: for a DNS name
 * <host>, SNI and hostname verification (no partial wildcards); for an IP
 * literal (IPv6 with or without brackets), IP SAN verification and no SNI
 * (RFC 6066 §3 forbids IP literals in SNI). Returns 0, or -EINVAL for a NULL,
 * empty or malformed <host> (verification is never silently skipped).
 */
int mg_tls_client_prepare(SSL *ssl, const char *host);

#endif /* MCPGATE_TLS_H */
