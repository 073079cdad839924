/*
 * addr: the forms of an address in userspace. struct mg_abi_addr (abi.h)
 * stores both families as 16 bytes, IPv4 as IPv4-mapped (::ffff:a.b.c.d),
 * so one key serves connect4, connect6 and accept(). This module converts it
 * to and from socket addresses, parses and prints it. The v4-mapped test
 * itself is bpf/lib/addr.bpf.h's, shared with the kernel programs.
 */
#ifndef MCPGATE_ADDR_H
#define MCPGATE_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "mcpgate/abi.h"

/** Room for the longest text form, "[ffff:...:255.255.255.255]:65535". */
#define MG_ADDR_STRLEN (INET6_ADDRSTRLEN + 8)

/** Whether <a> is IPv4 (stored IPv4-mapped). */
bool mg_addr_is_v4(const struct mg_abi_addr *a);

/**
 * Parses a bare IPv4 or IPv6 address <s> with <port> (host order, at most
 * 65535; 0 allowed) into <out>, IPv4 stored mapped. Returns 0 or -EINVAL.
 */
int mg_addr_parse_ip(const char *s, unsigned port, struct mg_abi_addr *out);

/**
 * Parses "a.b.c.d:port", "[v6]:port" (or "[a.b.c.d]:port") into <out>; the
 * port is 1..65535, decimal digits only; no host names. Returns 0 or -EINVAL.
 */
int mg_addr_parse_hostport(const char *s, struct mg_abi_addr *out);

/**
 * Fills <out> from the socket address <sa> (AF_INET or AF_INET6). Returns
 * 0, or -EAFNOSUPPORT for another family.
 */
int mg_addr_from_sockaddr(const struct sockaddr *sa, struct mg_abi_addr *out);

/**
 * Fills <out> from the raw network-order address bytes <ip> of <family>
 * (4 bytes for AF_INET, 16 for AF_INET6; netlink and inet_diag hand these
 * out) and the network-order <port>. Returns 0, or -EAFNOSUPPORT.
 */
int mg_addr_from_raw(int family, const void *ip, uint16_t port, struct mg_abi_addr *out);

/**
 * Fills <ss> from <a>: AF_INET for IPv4-mapped, AF_INET6 otherwise, so a
 * bind or connect uses the family the address really is. Returns the length
 * to pass with it.
 */
socklen_t mg_addr_to_sockaddr(const struct mg_abi_addr *a, struct sockaddr_storage *ss);

/** Formats <a> as "1.2.3.4:443" or "[::1]:443" into <buf>; returns <buf>. */
const char *mg_addr_fmt(const struct mg_abi_addr *a, char *buf, size_t len);

/** Formats the address alone, "1.2.3.4" or "::1", into <buf>; returns <buf>. */
const char *mg_addr_fmt_ip(const struct mg_abi_addr *a, char *buf, size_t len);

#endif /* MCPGATE_ADDR_H */
