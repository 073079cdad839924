/*
 * The kernel-path smoke test that tests/kernel/run.sh runs inside a VM booted
 * on a distribution kernel (Debian's 6.1 cloud kernel, what EKS AL2023 nodes
 * run). It drives the eBPF half through the daemon's own loader module
 * (userspace/loader.c, linked in), never through bpftool, so what passes
 * here is what mcpgated does on that kernel.
 *
 *   smoke loader CGROOT PINDIR   attach; redirect IPv4, IPv6, v4-mapped;
 *                                getpeername; origins by 4-tuple, forgotten
 *                                on close; pass / pending / unknown pods
 *                                (refuse-unknown through a reopened loader),
 *                                the events ring and counters; the egress
 *                                drop of raw SYNs and UDP; cutting a newly
 *                                selected pod's open API connections; fail
 *                                closed with no proxy. Leaves the attachment
 *                                pinned and the pods in `intercept`, for the
 *                                daemon
 *   smoke daemon CGROOT LOG      with mcpgated running (reusing the pins):
 *                                a selected pod's connects reach its proxy,
 *                                which logs the pid and the original dst;
 *                                refusals and drops logged from the events
 *   smoke clean CGROOT PINDIR    after `mcpgatectl uninstall`: nothing
 *                                attached, nothing pinned, connects direct
 *
 * Each check prints one line, "ok - <what>" or "not ok - <what>: <why>";
 * run.sh counts them. The exit status is the number of failures (capped).
 *
 * Addresses, all on lo inside the VM: the fake API server's ClusterIP
 * 10.96.0.1:443 and [fd00:96::1]:443 (this program listens there), the proxy
 * 169.254.77.1 / [fd00:6d67::1] port 6443 (this program in `loader`, the
 * daemon in `daemon`). A "pod" is a kubelet-style cgroup v2 directory
 * (<CGROOT>/burstable/pod<uid>/<container>) and a process moved into it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "mcpgate/addr.h"
#include "mcpgate/config.h"
#include "mcpgate/loader.h"

#define API4	   "10.96.0.1"
#define API6	   "fd00:96::1"
#define API_MAPPED "::ffff:10.96.0.1"
#define API_PORT   443
#define PROXY4	   "169.254.77.1"
#define PROXY6	   "fd00:6d67::1"
#define PROXY_PORT 6443
#define WAIT_MS	   3000 /* an accept or a child's answer; generous for TCG */

/* The pods: name, kubelet QoS folder, pod UID, container id. */
struct pod {
	const char *name;
	const char *uid;
	char dir[640];	/* pod-level cgroup */
	char cdir[720]; /* its one container */
	uint64_t id;	/* pod-level cgroup id (directory inode) */
	uint64_t cid;	/* container cgroup id */
};

static struct pod pods[] = {
	{.name = "sel", .uid = "5e1ec7ed-0000-4000-8000-000000000001"},
	{.name = "unsel", .uid = "5e1ec7ed-0000-4000-8000-000000000002"},
	{.name = "pending", .uid = "5e1ec7ed-0000-4000-8000-000000000003"},
	{.name = "unknown", .uid = "5e1ec7ed-0000-4000-8000-000000000004"},
};
#define SEL	(&pods[0])
#define UNSEL	(&pods[1]) /* known, not selected: a PASS entry */
#define PENDING (&pods[2]) /* cgroup seen, metadata not yet: a PENDING entry */
#define UNKNOWN (&pods[3]) /* no entry at all */

static int n_failed;

static void check(bool ok, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prints one result line; <fmt> explains a failure. */
static void check(bool ok, const char *what, const char *fmt, ...)
{
	va_list ap;

	if (ok) {
		printf("ok - %s\n", what);
	} else {
		n_failed++;
		printf("not ok - %s: ", what);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		putchar('\n');
	}
	fflush(stdout);
}

/* ---- addresses ---- */

/* Fills <ss> with <ip>:<port>; AF_INET6 for anything with a colon. */
static socklen_t mk_sockaddr(struct sockaddr_storage *ss, const char *ip, unsigned port)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (void *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		inet_pton(AF_INET6, ip, &s6->sin6_addr);
		return sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (void *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		inet_pton(AF_INET, ip, &s4->sin_addr);
		return sizeof(*s4);
	}
}

/* Formats <sa> as "1.2.3.4:443" or "[::1]:443", the daemon's form. */
static const char *fmt_sockaddr(const struct sockaddr_storage *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	} else {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	}
	return buf;
}

/* Converts an accepted socket's address to the ABI form (IPv4 mapped). */
static void to_abi(const struct sockaddr_storage *sa, struct mg_abi_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		a->addr[10] = a->addr[11] = 0xff;
		memcpy(a->addr + 12, &s4->sin_addr, 4);
		a->port = s4->sin_port;
	} else {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		memcpy(a->addr, &s6->sin6_addr, 16);
		a->port = s6->sin6_port;
	}
}

static int listen_on(const char *ip, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len = mk_sockaddr(&ss, ip, port);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &(int){1}, sizeof(int));
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 16)) {
		int e = -errno;

		fprintf(stderr, "smoke: bind/listen %s:%u: %s\n", ip, port, strerror(errno));
		close(fd);
		return e;
	}
	return fd;
}

/* Accepts one connection on <lfd> within WAIT_MS; -ETIMEDOUT if none came. */
static int accept_within(int lfd)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	int r = poll(&p, 1, WAIT_MS);

	if (r <= 0)
		return r ? -errno : -ETIMEDOUT;
	r = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	return r < 0 ? -errno : r;
}

/* Accepts whatever is queued on <lfd> without waiting; returns how many. */
static int drain(int lfd)
{
	int n = 0, fd;

	fcntl(lfd, F_SETFL, O_NONBLOCK);
	while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		close(fd);
		n++;
	}
	fcntl(lfd, F_SETFL, 0);
	return n;
}

/* ---- pods ---- */

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t r;

	if (fd < 0)
		return -errno;
	r = write(fd, s, strlen(s));
	close(fd);
	return r == (ssize_t)strlen(s) ? 0 : -errno;
}

static uint64_t inode_of(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : (uint64_t)st.st_ino;
}

/* Creates (or finds) each pod's cgroups under <root>, kubelet cgroupfs style. */
static int make_pods(const char *root)
{
	char qos[520];

	snprintf(qos, sizeof(qos), "%s/burstable", root);
	if (mkdir(root, 0755) && errno != EEXIST)
		return -errno;
	if (mkdir(qos, 0755) && errno != EEXIST)
		return -errno;
	for (size_t i = 0; i < sizeof(pods) / sizeof(pods[0]); i++) {
		struct pod *p = &pods[i];

		snprintf(p->dir, sizeof(p->dir), "%s/pod%s", qos, p->uid);
		snprintf(p->cdir, sizeof(p->cdir), "%s/c0ffee%02zu", p->dir, i);
		if ((mkdir(p->dir, 0755) && errno != EEXIST) ||
		    (mkdir(p->cdir, 0755) && errno != EEXIST))
			return -errno;
		p->id = inode_of(p->dir);
		p->cid = inode_of(p->cdir);
	}
	return 0;
}

/* What a child in a pod saw; sent to the parent over a pipe. */
struct seen {
	int err; /* errno of connect(), 0 if connected */
	pid_t pid;
	char peer[64]; /* getpeername() */
};

struct child {
	pid_t pid;
	int res; /* read end: struct seen */
	int go;	 /* write end: closing it lets the child exit */
};

/* What a child does from inside its pod. */
enum act {
	ACT_CONNECT, /* connect() a TCP socket: the cgroup connect hooks see it */
	ACT_RAW_SYN, /* a hand-made TCP SYN on a raw socket: no connect() at all */
	ACT_UDP,     /* a datagram from an ordinary UDP socket (sendto, no connect) */
	ACT_WATCH,   /* ACT_CONNECT, then report again when the connection breaks
		      * (or, after WATCH_MS, that it did not) */
};

#define WATCH_MS 1500 /* how long a watched connection must stay up */

/* A TCP SYN header from <sport> to <dport>. No checksum: the receiver in
 * this test is a raw socket, which gets packets before TCP checks them. */
static void make_syn(uint8_t h[20], unsigned sport, unsigned dport)
{
	memset(h, 0, 20);
	h[0] = sport >> 8;
	h[1] = sport & 0xff;
	h[2] = dport >> 8;
	h[3] = dport & 0xff;
	h[7] = 1;	/* sequence number */
	h[12] = 5 << 4; /* data offset: 5 words */
	h[13] = 0x02;	/* SYN */
	h[14] = 0xfa;	/* window */
}

/* The child's half of spawn_in(): does <act> and fills <s>. Returns the
 * socket. */
static int child_act(enum act act, int family, const char *ip, unsigned port, unsigned sport,
		     struct seen *s)
{
	struct sockaddr_storage ss, peer;
	socklen_t len = mk_sockaddr(&ss, ip, port), pl = sizeof(peer);
	uint8_t syn[20];
	int fd;

	switch (act) {
	case ACT_CONNECT:
	case ACT_WATCH:
		fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len))
			s->err = errno;
		else if (getpeername(fd, (struct sockaddr *)&peer, &pl) == 0)
			fmt_sockaddr(&peer, s->peer, sizeof(s->peer));
		return fd; /* the socket stays open until the child exits */
	case ACT_RAW_SYN:
		/* A raw socket's "port" must be 0 (IPv6 reads it as the protocol). */
		len = mk_sockaddr(&ss, ip, 0);
		make_syn(syn, sport, port);
		fd = socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_TCP);
		if (fd < 0 || sendto(fd, syn, sizeof(syn), 0, (struct sockaddr *)&ss, len) < 0)
			s->err = errno;
		return fd;
	case ACT_UDP: {
		struct sockaddr_storage src;
		socklen_t sl = mk_sockaddr(&src, family == AF_INET6 ? "::" : "0.0.0.0", sport);

		fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&src, sl) ||
		    sendto(fd, "mcpgate", 7, 0, (struct sockaddr *)&ss, len) < 0)
			s->err = errno;
		return fd;
	}
	}
	return -1;
}

/* ACT_WATCH's second report: the errno the connection <fd> broke with
 * (ECONNABORTED when the kernel destroyed it), or 0 if it was still up
 * after WATCH_MS. */
static void child_watch(int fd, struct seen *s)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	socklen_t el = sizeof(s->err);
	char b;

	s->err = 0;
	if (poll(&p, 1, WATCH_MS) != 1)
		return;
	if (recv(fd, &b, 1, MSG_DONTWAIT) < 0)
		s->err = errno;
	else
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &s->err, &el);
	if (!s->err)
		s->err = -1; /* closed by the peer: not what a cut looks like */
}

/*
 * Forks a child that moves itself into cgroup <cgdir>, does <act> towards
 * <ip>:<port> (from source port <sport> for raw and UDP), reports what it saw
 * and keeps its socket until the parent closes <c->go>. Returns 0 or -errno.
 */
static int spawn_in(struct child *c, const char *cgdir, enum act act, int family, const char *ip,
		    unsigned port, unsigned sport)
{
	int res[2], go[2];

	if (pipe2(res, O_CLOEXEC) || pipe2(go, O_CLOEXEC))
		return -errno;
	c->pid = fork();
	if (c->pid < 0)
		return -errno;
	if (c->pid == 0) {
		struct seen s = {.pid = getpid()};
		char procs[800], b;
		int fd;

		/* Only our own pipe ends: a sibling's inherited <go> write end
		 * would keep that sibling from ever seeing EOF. */
		for (int i = 3; i < 1024; i++)
			if (i != res[1] && i != go[0])
				close(i);
		snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgdir);
		if (write_file(procs, "0"))
			_exit(100);
		fd = child_act(act, family, ip, port, sport, &s);
		if (write(res[1], &s, sizeof(s)) != sizeof(s))
			_exit(102);
		if (act == ACT_WATCH && !s.err) {
			child_watch(fd, &s);
			if (write(res[1], &s, sizeof(s)) != sizeof(s))
				_exit(103);
		}
		while (read(go[0], &b, 1) > 0)
			;
		_exit(0);
	}
	close(res[1]);
	close(go[0]);
	c->res = res[0];
	c->go = go[1];
	return 0;
}

static int spawn_connect(struct child *c, const char *cgdir, int family, const char *ip,
			 unsigned port)
{
	return spawn_in(c, cgdir, ACT_CONNECT, family, ip, port, 0);
}

/* Reads what the child saw, within WAIT_MS. */
static int child_seen(struct child *c, struct seen *s)
{
	struct pollfd p = {.fd = c->res, .events = POLLIN};

	memset(s, 0, sizeof(*s));
	if (poll(&p, 1, WAIT_MS) != 1)
		return -ETIMEDOUT;
	return read(c->res, s, sizeof(*s)) == sizeof(*s) ? 0 : -EIO;
}

static void child_end(struct child *c)
{
	close(c->go);
	close(c->res);
	waitpid(c->pid, NULL, 0);
}

/* ---- loader ---- */

struct env {
	struct mg_loader *l;
	const char *pin_dir;
	int proxy4, proxy6; /* our stand-in proxy listeners */
	int api4, api6;	    /* the fake API server's listeners */
};

/*
 * One redirect case: a child in the selected pod dials <ip>:<port> with a
 * <family> socket; the connection must arrive on <proxy_fd>, getpeername in
 * the child must show the dialled address <want_peer>, and the origin the
 * kernel recorded under the accepted 4-tuple must name the pod, the
 * container cgroup, the child's pid and the dialled address.
 */
static void redirect_case(struct env *e, const char *label, int family, const char *ip,
			  int proxy_fd, const char *want_peer)
{
	struct sockaddr_storage peer, local;
	socklen_t pl = sizeof(peer), ll = sizeof(local);
	struct mg_abi_addr want_dst;
	struct mg_abi_tuple t;
	struct mg_abi_origin o;
	struct child c;
	struct seen s;
	char what[160], got[64];
	int fd, rc;

	if (spawn_connect(&c, SEL->cdir, family, ip, API_PORT)) {
		snprintf(what, sizeof(what), "%s: fork a pod process", label);
		check(false, what, "%s", strerror(errno));
		return;
	}
	rc = child_seen(&c, &s);
	snprintf(what, sizeof(what), "%s: selected pod's connect to %s succeeds", label, want_peer);
	check(!rc && !s.err, what, "rc=%d connect errno=%d (%s)", rc, s.err, strerror(s.err));

	fd = accept_within(proxy_fd);
	snprintf(what, sizeof(what), "%s: connection arrives at the proxy, not the API", label);
	check(fd >= 0 && drain(e->api4) + drain(e->api6) == 0, what, "accept: %s",
	      fd < 0 ? strerror(-fd) : "the fake API got a connection too");

	snprintf(what, sizeof(what), "%s: getpeername in the pod shows %s", label, want_peer);
	check(!strcmp(s.peer, want_peer), what, "got \"%s\"", s.peer);

	if (fd >= 0) {
		getpeername(fd, (struct sockaddr *)&peer, &pl);
		getsockname(fd, (struct sockaddr *)&local, &ll);
		to_abi(&peer, &t.client);
		to_abi(&local, &t.proxy);
		rc = mg_loader_take_origin(e->l, &t, &o);
		snprintf(what, sizeof(what), "%s: origin recorded under the accepted 4-tuple %s",
			 label, fmt_sockaddr(&peer, got, sizeof(got)));
		check(rc == 0, what, "mg_loader_take_origin: %s", strerror(-rc));
		if (rc == 0) {
			mg_addr_parse_ip(strchr(ip, ':') && !strncmp(ip, "::ffff:", 7) ? ip + 7
										       : ip,
					 API_PORT, &want_dst);
			snprintf(what, sizeof(what),
				 "%s: origin names the pod, container cgroup, pid and dialled "
				 "address",
				 label);
			check(o.pod_cgroup_id == SEL->id && o.cgroup_id == SEL->cid &&
				      o.tgid == (uint32_t)s.pid &&
				      !memcmp(&o.orig_dst, &want_dst, sizeof(want_dst)) &&
				      o.family == (uint32_t)family,
			      what, "pod %llu/%llu cgroup %llu/%llu tgid %u/%d dst %s family %u",
			      (unsigned long long)o.pod_cgroup_id, (unsigned long long)SEL->id,
			      (unsigned long long)o.cgroup_id, (unsigned long long)SEL->cid, o.tgid,
			      (int)s.pid, mg_addr_fmt(&o.orig_dst, got, sizeof(got)), o.family);
		}
		close(fd);
	}
	child_end(&c);
}

/* An unselected pod's connect to <ip> reaches the fake API on <api_fd>. */
static void direct_case(struct pod *p, const char *what, int family, const char *ip, int api_fd,
			int other_fd)
{
	struct child c;
	struct seen s;
	int fd, rc;

	if (spawn_connect(&c, p->cdir, family, ip, API_PORT)) {
		check(false, what, "fork: %s", strerror(errno));
		return;
	}
	rc = child_seen(&c, &s);
	fd = accept_within(api_fd);
	check(!rc && !s.err && fd >= 0 && (other_fd < 0 || drain(other_fd) == 0), what,
	      "rc=%d connect errno=%d accept=%d", rc, s.err, fd);
	if (fd >= 0)
		close(fd);
	child_end(&c);
}

/* A connect from pod <p> to <ip> fails with <want_errno>, reaching neither
 * the fake API nor a proxy. Returns the child's pid (for event checks). */
static pid_t refused_case(struct env *e, struct pod *p, const char *what, int family,
			  const char *ip, int want_errno)
{
	struct child c;
	struct seen s;
	int rc;

	if (spawn_connect(&c, p->cdir, family, ip, API_PORT)) {
		check(false, what, "fork: %s", strerror(errno));
		return 0;
	}
	rc = child_seen(&c, &s);
	check(!rc && s.err == want_errno && drain(e->api4) + drain(e->api6) == 0, what,
	      "rc=%d connect errno=%d (%s), wanted %s", rc, s.err, strerror(s.err),
	      strerror(want_errno));
	child_end(&c);
	return s.pid;
}

/* ---- events ---- */

struct ev_seen {
	uint32_t type;
	uint32_t tgid;
	uint64_t pod_cgroup_id;
	struct mg_abi_addr dst;
	int n;
};

static void on_event(void *data, const struct mg_abi_event *ev)
{
	struct ev_seen *want = data;

	if (want->type && ev->type == want->type && ev->tgid == want->tgid &&
	    ev->pod_cgroup_id == want->pod_cgroup_id &&
	    !memcmp(&ev->dst, &want->dst, sizeof(ev->dst)))
		want->n++;
}

/* True if the `events` ring holds a record of <type> for <pid>, <pod_id> and
 * <ip>:443 (consumes every waiting record). */
static bool event_seen(struct mg_loader *l, uint32_t type, pid_t pid, uint64_t pod_id,
		       const char *ip)
{
	struct ev_seen w = {.type = type, .tgid = (uint32_t)pid, .pod_cgroup_id = pod_id};

	mg_addr_parse_ip(ip, API_PORT, &w.dst);
	mg_loader_read_events(l, on_event, &w);
	return w.n > 0;
}

/* Waits up to WAIT_MS for `origins` to have no entry for <t>: the client's
 * close reaches TCP_CLOSE (FIN_WAIT2 -> time-wait) only once our ACK of its
 * FIN is processed, shortly after read() here sees the EOF. Reads the pinned
 * map directly: mg_loader_take_origin() would delete what it finds. Returns
 * -ENOENT once gone, 0 if still there. */
static int origin_gone(struct env *e, const struct mg_abi_tuple *t)
{
	struct mg_abi_origin o;
	char path[600];
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/origins", e->pin_dir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return -errno;
	for (int i = 0; i < WAIT_MS / 50 && rc == 0; i++) {
		if (bpf_map_lookup_elem(fd, t, &o) && errno == ENOENT)
			rc = -ENOENT;
		else
			usleep(50 * 1000);
	}
	close(fd);
	return rc;
}

/* A connection the proxy never reads the origin of (the client gave up
 * first) must not leave its `origins` entry behind: a later socket with the
 * same 4-tuple would inherit this pod. */
static void origin_forgotten_case(struct env *e)
{
	struct sockaddr_storage peer, local;
	socklen_t pl = sizeof(peer), ll = sizeof(local);
	const char *what = "origins: a connection closed before the proxy read its origin "
			   "leaves no entry";
	struct mg_abi_tuple t;
	struct child c;
	struct seen s;
	int fd, rc = -1;

	if (spawn_connect(&c, SEL->cdir, AF_INET, API4, API_PORT)) {
		check(false, what, "fork: %s", strerror(errno));
		return;
	}
	child_seen(&c, &s);
	fd = accept_within(e->proxy4);
	if (fd >= 0) {
		char b;

		getpeername(fd, (struct sockaddr *)&peer, &pl);
		getsockname(fd, (struct sockaddr *)&local, &ll);
		to_abi(&peer, &t.client);
		to_abi(&local, &t.proxy);
		child_end(&c); /* the client closes */
		while (read(fd, &b, 1) > 0)
			;
		rc = origin_gone(e, &t);
		close(fd);
	} else {
		child_end(&c);
	}
	check(fd >= 0 && rc == -ENOENT, what, "accept %d, origins lookup %d s after close: %s", fd,
	      WAIT_MS / 1000, rc ? strerror(-rc) : "still there");
}

static void print_counters(struct mg_loader *l)
{
	uint64_t cnt[MG_CNT_MAX];

	if (mg_loader_counters(l, cnt))
		return;
	printf("# counters:");
	for (int i = 0; i < MG_CNT_MAX; i++)
		printf(" %s=%llu", mg_loader_counter_names[i], (unsigned long long)cnt[i]);
	printf("\n");
}

static void egress_cases(struct env *e);
static void cut_case(struct env *e);

static int cmd_loader(const char *root, const char *pin_dir)
{
	struct mg_loader_opts lo = {.cgroup_path = root, .pin_dir = pin_dir};
	struct mg_abi_addr eps[2];
	struct mg_abi_pod sel = {.state = MG_POD_SELECTED, .sel_gen = 1};
	struct mg_abi_pod pass = {.state = MG_POD_PASS};
	struct mg_abi_pod pending = {.state = MG_POD_PENDING};
	struct mg_loader_err err;
	pid_t pid;
	struct env e = {.pin_dir = pin_dir};
	uint64_t before[MG_CNT_MAX], after[MG_CNT_MAX];
	int rc;

	rc = make_pods(root);
	check(rc == 0, "pod cgroups created under the attach point", "%s", strerror(-rc));
	mg_addr_parse_ip(PROXY4, PROXY_PORT, &lo.settings.proxy4);
	mg_addr_parse_ip(PROXY6, PROXY_PORT, &lo.settings.proxy6);
	rc = mg_loader_open(&e.l, &lo, &err);
	check(rc == 0, "mg_loader_open: load, verify and attach every program", "%s", err.msg);
	if (rc)
		return 1;
	check(!mg_loader_reused(e.l) && mg_loader_attached(e.l),
	      "fresh attachment, every link attached", "reused=%d attached=%d",
	      mg_loader_reused(e.l), mg_loader_attached(e.l));

	mg_addr_parse_ip(API4, API_PORT, &eps[0]);
	mg_addr_parse_ip(API6, API_PORT, &eps[1]);
	rc = mg_loader_set_endpoints(e.l, eps, 2);
	check(rc == 0, "api_endpoints set", "%s", strerror(-rc));
	rc = mg_loader_set_pod(e.l, SEL->id, &sel);
	rc = rc ?: mg_loader_set_pod(e.l, UNSEL->id, &pass);
	rc = rc ?: mg_loader_set_pod(e.l, PENDING->id, &pending);
	check(rc == 0, "pods put in intercept: selected, pass, pending", "%s", strerror(-rc));

	e.proxy4 = listen_on(PROXY4, PROXY_PORT);
	e.proxy6 = listen_on(PROXY6, PROXY_PORT);
	e.api4 = listen_on(API4, API_PORT);
	e.api6 = listen_on(API6, API_PORT);
	check(e.proxy4 >= 0 && e.proxy6 >= 0 && e.api4 >= 0 && e.api6 >= 0,
	      "proxy and fake API listeners on lo", "%d %d %d %d", e.proxy4, e.proxy6, e.api4,
	      e.api6);
	if (e.proxy4 < 0 || e.proxy6 < 0 || e.api4 < 0 || e.api6 < 0)
		return 1;

	mg_loader_counters(e.l, before);
	redirect_case(&e, "IPv4", AF_INET, API4, e.proxy4, API4 ":443");
	redirect_case(&e, "IPv6", AF_INET6, API6, e.proxy6, "[" API6 "]:443");
	redirect_case(&e, "v4-mapped", AF_INET6, API_MAPPED, e.proxy4, "[" API_MAPPED "]:443");
	mg_loader_counters(e.l, after);
	check(after[MG_CNT_REDIRECTED] - before[MG_CNT_REDIRECTED] == 3,
	      "counter redirected counts the three connects", "delta %llu",
	      (unsigned long long)(after[MG_CNT_REDIRECTED] - before[MG_CNT_REDIRECTED]));

	direct_case(UNSEL, "pass pod: IPv4 API connect goes direct", AF_INET, API4, e.api4,
		    e.proxy4);
	direct_case(UNSEL, "pass pod: IPv6 API connect goes direct", AF_INET6, API6, e.api6,
		    e.proxy6);
	direct_case(UNKNOWN, "unknown pod, unknown-pods=pass: API connect goes direct", AF_INET,
		    API4, e.api4, e.proxy4);
	origin_forgotten_case(&e);
	egress_cases(&e);

	/* Pending: the cgroup is known, the pod's metadata not yet. */
	mg_loader_counters(e.l, before);
	event_seen(e.l, 0, 0, 0, API4); /* drop older records */
	pid = refused_case(&e, PENDING, "pending pod: IPv4 API connect refused", AF_INET, API4,
			   EPERM);
	check(event_seen(e.l, MG_EV_REFUSED_UNKNOWN, pid, PENDING->id, API4),
	      "pending pod: refusal queued on the events ring with pid, pod and dst",
	      "no record for pid %d", (int)pid);
	refused_case(&e, PENDING, "pending pod: IPv6 API connect refused", AF_INET6, API6, EPERM);
	refused_case(&e, PENDING, "pending pod: v4-mapped API connect refused", AF_INET6,
		     API_MAPPED, EPERM);
	mg_loader_counters(e.l, after);
	check(after[MG_CNT_REFUSED_UNKNOWN] - before[MG_CNT_REFUSED_UNKNOWN] == 3,
	      "counter refused_unknown counts the three refusals", "delta %llu",
	      (unsigned long long)(after[MG_CNT_REFUSED_UNKNOWN] - before[MG_CNT_REFUSED_UNKNOWN]));
	{
		struct child c;
		struct seen s;
		int fd = -1;

		/* Only API endpoints are refused: the proxy address itself is not one. */
		if (spawn_connect(&c, PENDING->cdir, AF_INET, PROXY4, PROXY_PORT) == 0) {
			child_seen(&c, &s);
			fd = accept_within(e.proxy4);
			child_end(&c);
		}
		check(fd >= 0, "pending pod: a connect to a non-API address is untouched",
		      "accept: %s", strerror(-fd));
		if (fd >= 0)
			close(fd);
	}

	/* unknown-pods=refuse: a restarted loader rewrites the settings. */
	mg_loader_close(e.l);
	e.l = NULL;
	lo.settings.flags |= MG_SET_REFUSE_UNKNOWN;
	rc = mg_loader_open(&e.l, &lo, &err);
	check(rc == 0 && mg_loader_reused(e.l), "loader reopened: reuses the pins, new settings",
	      "%s", err.msg);
	if (rc)
		return 1;
	pid = refused_case(&e, UNKNOWN,
			   "unknown pod, unknown-pods=refuse: IPv4 API connect refused", AF_INET,
			   API4, EPERM);
	check(event_seen(e.l, MG_EV_REFUSED_UNKNOWN, pid, 0, API4),
	      "unknown pod: refusal queued on the events ring (pod id 0)", "no record for pid %d",
	      (int)pid);
	refused_case(&e, UNKNOWN, "unknown pod, unknown-pods=refuse: IPv6 API connect refused",
		     AF_INET6, API6, EPERM);
	direct_case(UNSEL, "unknown-pods=refuse: a pass pod still goes direct", AF_INET, API4,
		    e.api4, e.proxy4);
	redirect_case(&e, "unknown-pods=refuse, IPv4", AF_INET, API4, e.proxy4, API4 ":443");
	/* Leave the daemon phase the default. */
	mg_loader_close(e.l);
	lo.settings.flags = 0;
	rc = mg_loader_open(&e.l, &lo, &err);
	if (rc) {
		check(false, "loader reopened with unknown-pods=pass", "%s", err.msg);
		return 1;
	}

	cut_case(&e);

	/* Fail closed: interception is pinned, the proxy is gone. */
	close(e.proxy4);
	close(e.proxy6);
	refused_case(&e, SEL,
		     "fail closed: no proxy listening, a selected pod's IPv4 connect is "
		     "refused, not direct",
		     AF_INET, API4, ECONNREFUSED);
	refused_case(&e, SEL, "fail closed: same for IPv6", AF_INET6, API6, ECONNREFUSED);

	print_counters(e.l);
	mg_loader_close(e.l);
	check(access(pin_dir, F_OK) == 0, "closing the loader leaves the pins in place", "%s",
	      strerror(errno));
	close(e.api4);
	close(e.api6);
	return n_failed;
}

/* ---- egress: paths around the proxy ---- */

/* Receivers on the fake API's addresses that see every TCP packet (raw)
 * and every datagram to port 443 arriving there. */
struct sniff {
	int raw4, raw6, udp4, udp6;
};

static int sniff_open(struct sniff *n)
{
	struct sockaddr_storage ss;
	socklen_t len;

	n->raw4 = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP);
	n->raw6 = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP);
	n->udp4 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	n->udp6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (n->raw4 < 0 || n->raw6 < 0 || n->udp4 < 0 || n->udp6 < 0)
		return -errno;
	len = mk_sockaddr(&ss, API4, API_PORT);
	if (bind(n->udp4, (struct sockaddr *)&ss, len))
		return -errno;
	len = mk_sockaddr(&ss, API6, API_PORT);
	setsockopt(n->udp6, IPPROTO_IPV6, IPV6_V6ONLY, &(int){1}, sizeof(int));
	if (bind(n->udp6, (struct sockaddr *)&ss, len))
		return -errno;
	return 0;
}

static void sniff_close(struct sniff *n)
{
	close(n->raw4);
	close(n->raw6);
	close(n->udp4);
	close(n->udp6);
}

/* True if a packet from source port <sport> arrives within <ms>: a TCP
 * segment to port 443 on the raw socket of <family> (<udp>: a datagram). */
static bool sniff_seen(struct sniff *n, int family, bool udp, unsigned sport, int ms)
{
	int fd = udp ? (family == AF_INET ? n->udp4 : n->udp6)
		     : (family == AF_INET ? n->raw4 : n->raw6);
	struct pollfd p = {.fd = fd, .events = POLLIN};

	for (;;) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		uint8_t buf[2048], *tcp = buf;
		ssize_t r;

		r = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (r < 0) {
			if (errno != EAGAIN || poll(&p, 1, ms) != 1)
				return false;
			continue;
		}
		if (udp) {
			const struct sockaddr_in6 *f6 = (const void *)&from;
			const struct sockaddr_in *f4 = (const void *)&from;
			in_port_t fp = family == AF_INET ? f4->sin_port : f6->sin6_port;

			if (ntohs(fp) == sport)
				return true;
			continue;
		}
		/* IPv4 raw sockets get the IP header, IPv6 ones do not. */
		if (family == AF_INET) {
			if (r < 20 || r < (buf[0] & 0xf) * 4 + 4)
				continue;
			tcp = buf + (buf[0] & 0xf) * 4;
			r -= tcp - buf;
		}
		if (r >= 4 && (unsigned)((tcp[0] << 8) | tcp[1]) == sport &&
		    (unsigned)((tcp[2] << 8) | tcp[3]) == API_PORT)
			return true;
	}
}

/*
 * One egress case: a child in <p> sends a raw SYN (or a UDP datagram when
 * <udp>) from <sport> to <ip>:443. <dropped> says what must happen: it never
 * arrives, is counted in egress_dropped and queued on the events ring with
 * the pod's id — or it arrives (an unselected pod's packets are untouched).
 */
static void egress_case(struct env *e, struct sniff *n, const char *label, struct pod *p,
			int family, const char *ip, bool udp, unsigned sport, bool dropped)
{
	uint64_t before[MG_CNT_MAX], after[MG_CNT_MAX];
	char what[200];
	struct child c;
	struct seen s;
	bool arrived;

	mg_loader_counters(e->l, before);
	event_seen(e->l, 0, 0, 0, API4); /* drop older records */
	if (spawn_in(&c, p->cdir, udp ? ACT_UDP : ACT_RAW_SYN, family, ip, API_PORT, sport)) {
		check(false, label, "fork: %s", strerror(errno));
		return;
	}
	child_seen(&c, &s);
	/* Absence has no end to wait for: 500 ms is ample on loopback, and the
	 * counter below is the positive proof of the drop. */
	arrived = sniff_seen(n, family, udp, sport, dropped ? 500 : WAIT_MS);
	child_end(&c);
	mg_loader_counters(e->l, after);

	if (!dropped) {
		snprintf(what, sizeof(what), "egress, %s: arrives", label);
		uint64_t delta = after[MG_CNT_EGRESS_DROPPED] - before[MG_CNT_EGRESS_DROPPED];

		check(arrived && !delta, what, "arrived=%d send errno=%d dropped delta %llu",
		      arrived, s.err, (unsigned long long)delta);
		return;
	}
	snprintf(what, sizeof(what), "egress, %s: never arrives (send errno %d)", label, s.err);
	check(!arrived, what, "the packet reached %s", ip);
	snprintf(what, sizeof(what), "egress, %s: counted in egress_dropped", label);
	check(after[MG_CNT_EGRESS_DROPPED] - before[MG_CNT_EGRESS_DROPPED] == 1, what, "delta %llu",
	      (unsigned long long)(after[MG_CNT_EGRESS_DROPPED] - before[MG_CNT_EGRESS_DROPPED]));
	snprintf(what, sizeof(what), "egress, %s: queued on the events ring with the pod", label);
	check(event_seen(e->l, MG_EV_EGRESS_DROPPED, 0, p->id, ip), what, "no record");
}

static void egress_cases(struct env *e)
{
	static const struct {
		const char *label;
		struct pod *pod;
		int family;
		const char *ip;
		bool udp, dropped;
	} cases[] = {
		{"selected pod, raw SYN to " API4, SEL, AF_INET, API4, false, true},
		{"selected pod, raw SYN to " API6, SEL, AF_INET6, API6, false, true},
		{"selected pod, UDP to " API4, SEL, AF_INET, API4, true, true},
		{"selected pod, UDP to " API6, SEL, AF_INET6, API6, true, true},
		{"pending pod, raw SYN to " API4, PENDING, AF_INET, API4, false, true},
		{"pass pod, raw SYN to " API4, UNSEL, AF_INET, API4, false, false},
		{"pass pod, raw SYN to " API6, UNSEL, AF_INET6, API6, false, false},
		{"pass pod, UDP to " API4, UNSEL, AF_INET, API4, true, false},
	};
	struct sniff n;
	int rc = sniff_open(&n);

	check(rc == 0, "egress: raw and UDP receivers on the API addresses", "%s", strerror(-rc));
	if (rc)
		return;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		egress_case(e, &n, cases[i].label, cases[i].pod, cases[i].family, cases[i].ip,
			    cases[i].udp, 40001 + i, cases[i].dropped);
	sniff_close(&n);
}

/* ---- cutting a pod's open API connections ---- */

/* True when the running kernel is older than <maj>.<min>. */
static bool kernel_older_than(int maj, int min)
{
	struct utsname u;
	int a = 0, b = 0;

	if (uname(&u) || sscanf(u.release, "%d.%d", &a, &b) != 2)
		return false;
	return a < maj || (a == maj && b < min);
}

/*
 * A pass pod holds connections straight to the API (v4 and v6) and one to
 * another address; then it becomes selected and the loader cuts its API
 * connections: on 6.1 (no bpf_sock_destroy kfunc, which came in 6.5) by
 * netlink SOCK_DESTROY. The pod sees ECONNABORTED on both, the other
 * connection stays up.
 */
static void cut_case(struct env *e)
{
	struct mg_abi_pod pass = {.state = MG_POD_PASS};
	struct mg_abi_pod sel = {.state = MG_POD_SELECTED, .sel_gen = 1};
	struct child c[3];
	struct seen s[3];
	struct mg_loader_err err;
	int other, srv[3] = {-1, -1, -1}, n;
	bool up = true;

	other = listen_on("127.0.0.1", 8080);
	spawn_in(&c[0], UNSEL->cdir, ACT_WATCH, AF_INET, API4, API_PORT, 0);
	spawn_in(&c[1], UNSEL->cdir, ACT_WATCH, AF_INET6, API6, API_PORT, 0);
	spawn_in(&c[2], UNSEL->cdir, ACT_WATCH, AF_INET, "127.0.0.1", 8080, 0);
	srv[0] = accept_within(e->api4);
	srv[1] = accept_within(e->api6);
	srv[2] = accept_within(other);
	for (int i = 0; i < 3; i++)
		up = up && child_seen(&c[i], &s[i]) == 0 && !s[i].err && srv[i] >= 0;
	check(up, "socket cut: a pass pod holds two direct API connections and another one",
	      "errno %d %d %d accept %d %d %d", s[0].err, s[1].err, s[2].err, srv[0], srv[1],
	      srv[2]);

	if (kernel_older_than(6, 5)) {
		n = mg_loader_cut_pod_sockets(e->pin_dir, UNSEL->dir, MG_LOADER_CUT_KFUNC, &err);
		check(n == -EOPNOTSUPP && strstr(err.msg, "kfunc"),
		      "socket cut: before 6.5 the kfunc way reports -EOPNOTSUPP with a reason",
		      "returned %d: %s", n, err.msg);
	}
	mg_loader_set_pod(e->l, UNSEL->id, &sel);
	n = mg_loader_destroy_pod_sockets(e->l, UNSEL->id, UNSEL->dir);
	check(n == 2, "socket cut: the newly selected pod's two API connections are cut",
	      "mg_loader_destroy_pod_sockets returned %d (%s)", n, n < 0 ? strerror(-n) : "count");
	for (int i = 0; i < 3; i++) {
		static const char *const what[] = {
			"socket cut: the pod's IPv4 API connection sees ECONNABORTED",
			"socket cut: the pod's IPv6 API connection sees ECONNABORTED",
			"socket cut: its connection to a non-API address stays up",
		};
		struct seen t;
		int rc = up ? child_seen(&c[i], &t) : -1;

		check(rc == 0 && t.err == (i < 2 ? ECONNABORTED : 0), what[i],
		      "rc %d errno %d (%s)", rc, t.err,
		      t.err > 0 ? strerror(t.err) : "closed or up");
		child_end(&c[i]);
		if (srv[i] >= 0)
			close(srv[i]);
	}
	close(other);
	mg_loader_set_pod(e->l, UNSEL->id, &pass);
}

/* ---- with the daemon ---- */

/* Reads the whole of <path> (the daemon's log) into a NUL-terminated buffer. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0;

	if (!f)
		return NULL;
	buf = malloc(1 << 20);
	if (buf) {
		len = fread(buf, 1, (1 << 20) - 1, f);
		buf[len] = '\0';
	}
	fclose(f);
	return buf;
}

/* True once the daemon's log at <log> holds an <event> record for <pid>
 * naming <dst> (under <dst_key>); waits up to WAIT_MS. A <pid> of 0 (a
 * packet dropped in softirq context has none) matches the pod cgroup id
 * of the selected pod instead. */
static bool daemon_logged(const char *log, const char *event, pid_t pid, const char *dst_key,
			  const char *dst)
{
	char want_ev[64], want_pid[2][64], want_dst[96];

	snprintf(want_ev, sizeof(want_ev), "\"event\":\"%s\"", event);
	if (pid) {
		snprintf(want_pid[0], sizeof(want_pid[0]), "\"pid\":%d,", (int)pid);
		snprintf(want_pid[1], sizeof(want_pid[1]), "\"pid\":%d}", (int)pid);
	} else {
		snprintf(want_pid[0], sizeof(want_pid[0]), "\"pod_cgroup_id\":%llu,",
			 (unsigned long long)SEL->id);
		snprintf(want_pid[1], sizeof(want_pid[1]), "%s", want_pid[0]);
	}
	snprintf(want_dst, sizeof(want_dst), "\"%s\":\"%s\"", dst_key, dst);
	for (int t = 0; t < WAIT_MS / 100; t++) {
		char *buf = slurp(log), *line, *save = NULL;
		bool found = false;

		for (line = buf ? strtok_r(buf, "\n", &save) : NULL; line && !found;
		     line = strtok_r(NULL, "\n", &save))
			found = strstr(line, want_ev) &&
				(strstr(line, want_pid[0]) || strstr(line, want_pid[1])) &&
				strstr(line, want_dst);
		free(buf);
		if (found)
			return true;
		usleep(100 * 1000);
	}
	return false;
}

/* The value of mcpgate_connections_total{result="<result>"} on the daemon's
 * admin listener (127.0.0.1:9940), or -1 when it cannot be read. */
static long long admin_metric(const char *result)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9940)};
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	char want[128], *buf, *at;
	long long v = -1;
	size_t len = 0;
	ssize_t n;
	int fd;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	buf = malloc(1 << 20);
	if (fd < 0 || !buf || connect(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1)
		goto out;
	while (len < (1 << 20) - 1 && (n = read(fd, buf + len, (1 << 20) - 1 - len)) > 0)
		len += n;
	buf[len] = '\0';
	snprintf(want, sizeof(want), "mcpgate_connections_total{result=\"%s\"} ", result);
	at = strstr(buf, want);
	if (at)
		v = strtoll(at + strlen(want), NULL, 10);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return v;
}

/* Waits up to WAIT_MS for admin_metric(<result>) to reach <want>. */
static bool wait_metric(long long want, const char *result)
{
	for (int t = 0; t < WAIT_MS / 100; t++) {
		if (admin_metric(result) >= want)
			return true;
		usleep(100 * 1000);
	}
	return false;
}

static void daemon_case(const char *log, const char *label, int family, const char *ip,
			const char *want_peer, bool first)
{
	long long unknown0 = admin_metric("rejected_unknown_pod");
	long long no_origin0 = admin_metric("rejected_no_origin");
	char what[160], dst[64];
	struct child c;
	struct seen s;
	int rc;

	if (spawn_connect(&c, SEL->cdir, family, ip, API_PORT)) {
		check(false, label, "fork: %s", strerror(errno));
		return;
	}
	rc = child_seen(&c, &s);
	snprintf(what, sizeof(what), "daemon, %s: connect succeeds, getpeername shows %s", label,
		 want_peer);
	check(!rc && !s.err && !strcmp(s.peer, want_peer), what, "rc=%d errno=%d peer=\"%s\"", rc,
	      s.err, s.peer);
	/* The daemon logs v4-mapped destinations in their IPv4 form. */
	snprintf(dst, sizeof(dst), "%s", strncmp(want_peer, "[::ffff:", 8) ? want_peer : "");
	if (!dst[0]) {
		snprintf(dst, sizeof(dst), "%s", want_peer + 8);
		*strchr(dst, ']') = '\0';
		strcat(dst, ":443");
	}
	/* No API server in the VM, so the pod has no identity: the proxy finds
	 * the kernel's origin and turns the unknown pod away (reset, counted
	 * every time, logged once per pod cgroup with the pid and original
	 * destination). A missing origin would count rejected_no_origin. */
	snprintf(what, sizeof(what),
		 "daemon, %s: mcpgated found the kernel's origin and refused the unknown pod",
		 label);
	check(!rc && wait_metric(unknown0 + 1, "rejected_unknown_pod") &&
		      admin_metric("rejected_no_origin") == no_origin0,
	      what, "rejected_unknown_pod %lld (want %lld), rejected_no_origin %lld (was %lld)",
	      admin_metric("rejected_unknown_pod"), unknown0 + 1,
	      admin_metric("rejected_no_origin"), no_origin0);
	if (first) {
		snprintf(what, sizeof(what),
			 "daemon, %s: the refusal is logged with the pod's pid and %s", label, dst);
		check(!rc && daemon_logged(log, "reject", s.pid, "orig_dst", dst), what,
		      "no reject record for pid %d in %s", (int)s.pid, log);
	}
	child_end(&c);
}

static int cmd_daemon(const char *root, const char *log)
{
	int rc = make_pods(root);

	check(rc == 0, "pod cgroups still there", "%s", strerror(-rc));
	daemon_case(log, "IPv4", AF_INET, API4, API4 ":443", true);
	daemon_case(log, "IPv6", AF_INET6, API6, "[" API6 "]:443", false);
	daemon_case(log, "v4-mapped", AF_INET6, API_MAPPED, "[" API_MAPPED "]:443", false);
	{
		struct child c;
		struct seen s = {0};

		if (spawn_connect(&c, PENDING->cdir, AF_INET, API4, API_PORT) == 0) {
			child_seen(&c, &s);
			child_end(&c);
		}
		check(s.err == EPERM, "daemon: a pending pod's API connect is refused", "errno %d",
		      s.err);
		check(s.pid && daemon_logged(log, "refused_unknown", s.pid, "dst", API4 ":443"),
		      "daemon: mcpgated logs the refusal from the events ring with the pid",
		      "no refused_unknown record for pid %d", (int)s.pid);
		memset(&s, 0, sizeof(s));
		if (spawn_connect(&c, UNKNOWN->cdir, AF_INET6, API6, API_PORT) == 0) {
			child_seen(&c, &s);
			child_end(&c);
		}
		check(s.err == EPERM &&
			      daemon_logged(log, "refused_unknown", s.pid, "dst", "[" API6 "]:443"),
		      "daemon, --unknown-pods refuse: a pod cgroup with no entry is refused, "
		      "logged",
		      "errno %d", s.err);
		if (spawn_in(&c, SEL->cdir, ACT_RAW_SYN, AF_INET, API4, API_PORT, 40101) == 0) {
			child_seen(&c, &s);
			child_end(&c);
		}
		check(daemon_logged(log, "egress_dropped", 0, "dst", API4 ":443"),
		      "daemon: mcpgated logs a selected pod's dropped raw SYN with the pod",
		      "no egress_dropped record for pod cgroup %llu", (unsigned long long)SEL->id);
	}
	return n_failed;
}

/* ---- after uninstall ---- */

static int cmd_clean(const char *root, const char *pin_dir)
{
	static const struct {
		enum bpf_attach_type type;
		const char *name;
	} hooks[] = {
		{BPF_CGROUP_INET4_CONNECT, "connect4"},
		{BPF_CGROUP_INET6_CONNECT, "connect6"},
		{BPF_CGROUP_SOCK_OPS, "sock_ops"},
		{BPF_CGROUP_INET4_GETPEERNAME, "getpeername4"},
		{BPF_CGROUP_INET6_GETPEERNAME, "getpeername6"},
		{BPF_CGROUP_INET_EGRESS, "egress"},
	};
	char attached[256] = "";
	int cg, api4, api6, rc;

	rc = make_pods(root);
	check(rc == 0, "pod cgroups still there", "%s", strerror(-rc));
	cg = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (size_t i = 0; i < sizeof(hooks) / sizeof(hooks[0]) && cg >= 0; i++) {
		__u32 cnt = 0;

		if (bpf_prog_query(cg, hooks[i].type, 0, NULL, NULL, &cnt) == 0 && cnt)
			snprintf(attached + strlen(attached), sizeof(attached) - strlen(attached),
				 " %s", hooks[i].name);
	}
	check(cg >= 0 && !attached[0], "uninstall: nothing attached at the attach point",
	      "still attached:%s", attached);
	if (cg >= 0)
		close(cg);
	check(access(pin_dir, F_OK) && errno == ENOENT, "uninstall: nothing pinned",
	      "%s still exists", pin_dir);

	api4 = listen_on(API4, API_PORT);
	api6 = listen_on(API6, API_PORT);
	direct_case(SEL, "uninstall: the formerly selected pod's IPv4 connect goes direct", AF_INET,
		    API4, api4, -1);
	direct_case(SEL, "uninstall: same for IPv6", AF_INET6, API6, api6, -1);
	close(api4);
	close(api6);
	return n_failed;
}

int main(int argc, char **argv)
{
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc != 4) {
		fprintf(stderr,
			"usage: smoke loader|clean CGROOT PINDIR | smoke daemon CGROOT LOG\n");
		return 2;
	}
	if (!strcmp(argv[1], "loader"))
		rc = cmd_loader(argv[2], argv[3]);
	else if (!strcmp(argv[1], "daemon"))
		rc = cmd_daemon(argv[2], argv[3]);
	else if (!strcmp(argv[1], "clean"))
		rc = cmd_clean(argv[2], argv[3]);
	else
		return 2;
	return rc > 100 ? 100 : rc;
}
