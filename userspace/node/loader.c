/*
 * loader: the eBPF half's lifecycle. See include/mcpgate/loader.h.
 *
 * Pins (all under <pin_dir>): one file per map, named as in the program, and
 * one per link, "link_<hook>". A fresh attachment is pinned into
 * "<pin_dir>-new-<pid>" first and renamed into place, so a crash at any point
 * leaves either a complete pin dir or none, never half of one.
 *
 * Two objects: bpf/redirect.bpf.c (every attached program, UAPI only, loads
 * on 5.8+) and bpf/destroy.bpf.c (the socket-cut iterator, kernel types and
 * a kfunc, 6.5+), loaded only when a cut is asked for and optional: where it
 * does not load, the cut falls back to netlink or reports -EOPNOTSUPP.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <limits.h>
#include <unistd.h>
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/inet_diag.h>
#include <linux/magic.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "mcpgate/addr.h"
#include "mcpgate/loader.h"
#include "destroy.skel.h"
#include "redirect.skel.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

enum {
	MAP_INTERCEPT,
	MAP_ENDPOINTS,
	MAP_SOCKS,
	MAP_ORIGINS,
	MAP_SETTINGS,
	MAP_COUNTERS,
	MAP_EVENTS,
	MAP_NR
};
enum { LINK_CONNECT4, LINK_CONNECT6, LINK_SOCKOPS, LINK_PEER4, LINK_PEER6, LINK_EGRESS, LINK_NR };

static const char *const map_names[MAP_NR] = {
	[MAP_INTERCEPT] = MG_PIN_MAP_INTERCEPT, [MAP_ENDPOINTS] = MG_PIN_MAP_ENDPOINTS,
	[MAP_SOCKS] = MG_PIN_MAP_SOCKS,		[MAP_ORIGINS] = MG_PIN_MAP_ORIGINS,
	[MAP_SETTINGS] = MG_PIN_MAP_SETTINGS,	[MAP_COUNTERS] = MG_PIN_MAP_COUNTERS,
	[MAP_EVENTS] = MG_PIN_MAP_EVENTS,
};
static const char *const link_names[LINK_NR] = {
	[LINK_CONNECT4] = MG_PIN_LINK_CONNECT4,	 [LINK_CONNECT6] = MG_PIN_LINK_CONNECT6,
	[LINK_SOCKOPS] = MG_PIN_LINK_SOCKOPS,	 [LINK_PEER4] = MG_PIN_LINK_GETPEERNAME4,
	[LINK_PEER6] = MG_PIN_LINK_GETPEERNAME6, [LINK_EGRESS] = MG_PIN_LINK_EGRESS,
};

const char *const mg_loader_counter_names[MG_CNT_MAX] = {
	[MG_CNT_REDIRECTED] = "redirected",
	[MG_CNT_PASSED] = "passed",
	[MG_CNT_ORIGIN_MISSING] = "origin_missing",
	[MG_CNT_MAP_FULL] = "map_full",
	[MG_CNT_NO_PROXY] = "no_proxy",
	[MG_CNT_REFUSED_UNKNOWN] = "refused_unknown",
	[MG_CNT_EGRESS_DROPPED] = "egress_dropped",
};

struct mg_loader {
	int map_fd[MAP_NR];
	int link_fd[LINK_NR];
	bool reused;
	int ncpus;
	struct ring_buffer *events;
	struct mg_destroy *destroy; /* the socket-cut iterator, loaded on first use */
	struct bpf_link *destroy_iter;
	bool destroy_off;	   /* it does not load on this kernel */
	mg_loader_event_cb *ev_cb; /* set during mg_loader_read_events() */
	void *ev_data;
};

static int fail(struct mg_loader_err *err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Fills <err> and returns <rc> (a -errno), so error paths stay one line. */
static int fail(struct mg_loader_err *err, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return rc;
}

/* libbpf prints verifier logs and warnings; keep them only when asked, the
 * operator gets our one-line error instead. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG || !getenv("MG_LIBBPF_DEBUG"))
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* ---- environment checks ---- */

/* Checks, in order, what the daemon needs from the machine; the first that
 * is missing becomes the one line the operator sees. */
static int check_env(const struct mg_loader_opts *o, const char *pin_dir, struct mg_loader_err *err)
{
	const char *btf = o->btf_path ? o->btf_path : "/sys/kernel/btf/vmlinux";
	char parent[512];
	struct statfs fs;
	struct stat st;
	char *slash;
	int fd;

	if (access(btf, R_OK))
		return fail(err, -ENOENT,
			    "no kernel BTF (%s: %s): mcpgate needs Linux >= 5.8 built with "
			    "CONFIG_DEBUG_INFO_BTF",
			    btf, strerror(errno));
	if (!o->cgroup_path || !*o->cgroup_path)
		return fail(err, -EINVAL, "no cgroup path to attach at (--cgroup-path)");
	if (stat(o->cgroup_path, &st) || !S_ISDIR(st.st_mode))
		return fail(err, -ENOENT, "attach path %s: %s", o->cgroup_path,
			    errno ? strerror(errno) : "not a directory");
	if (statfs(o->cgroup_path, &fs))
		return fail(err, -errno, "statfs(%s): %s", o->cgroup_path, strerror(errno));
	if ((unsigned long)fs.f_type != CGROUP2_SUPER_MAGIC)
		return fail(err, -ENOTSUP,
			    "attach path %s is not on a cgroup v2 filesystem (mcpgate needs "
			    "cgroup v2)",
			    o->cgroup_path);

	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "mg_probe", 4, 4, 1, NULL);
	if (fd < 0)
		return fail(err, -EPERM,
			    "no BPF rights (bpf(BPF_MAP_CREATE): %s): run as root or with "
			    "CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN",
			    strerror(-fd));
	close(fd);

	snprintf(parent, sizeof(parent), "%s", pin_dir);
	slash = strrchr(parent, '/');
	if (slash && slash != parent)
		*slash = '\0';
	/* Like Cilium, mount bpffs at its usual place when the host has not:
	 * pinning is what keeps interception alive across restarts. */
	if (statfs(parent, &fs) == 0 && (unsigned long)fs.f_type != BPF_FS_MAGIC &&
	    !strcmp(parent, "/sys/fs/bpf"))
		mount("bpf", parent, "bpf", 0, "mode=0700");
	if (statfs(parent, &fs) || (unsigned long)fs.f_type != BPF_FS_MAGIC)
		return fail(err, -ENOTSUP, "%s is not a bpf filesystem (mount -t bpf bpf %s)",
			    parent, parent);

	return 0;
}

/* ---- pin dir ---- */

static void pin_path(char *buf, size_t n, const char *dir, const char *name)
{
	snprintf(buf, n, "%s/%s", dir, name);
}

/* Removes every pin file under <dir> and the dir; links are detached first
 * when <detach>, which is what takes interception away. */
static int remove_pins(const char *dir, bool detach)
{
	char path[600];
	int rc = 0;

	for (int i = 0; i < LINK_NR; i++) {
		pin_path(path, sizeof(path), dir, link_names[i]);
		if (detach) {
			int fd = bpf_obj_get(path);

			if (fd >= 0) {
				if (bpf_link_detach(fd) && errno != ENOLINK)
					rc = -errno;
				close(fd);
			}
		}
		if (unlink(path) && errno != ENOENT)
			rc = -errno;
	}
	for (int i = 0; i < MAP_NR; i++) {
		pin_path(path, sizeof(path), dir, map_names[i]);
		if (unlink(path) && errno != ENOENT)
			rc = -errno;
	}
	if (rmdir(dir) && errno != ENOENT)
		rc = -errno;
	return rc;
}

/* A pinned install made by another ABI cannot be driven by this build: its
 * maps hold other layouts. The settings map records the ABI version of the
 * loader that last wrote it; every map's layout is compared too (against
 * this build's object, opened but not loaded), so a layout change that
 * forgot the version bump is caught as well. */
static int abi_mismatch(struct mg_loader_err *err, unsigned pinned, const char *detail)
{
	return fail(err, -EPROTO,
		    "pinned mcpgate programs are ABI v%u, this is v%d%s: run "
		    "mcpgatectl uninstall",
		    pinned, MG_ABI_VERSION, detail);
}

static int check_pinned_abi(struct mg_loader *l, const char *dir, struct mg_loader_err *err)
{
	struct mg_abi_settings cur;
	struct mg_redirect *skel;
	struct bpf_map_info info;
	__u32 len = sizeof(info), zero = 0;
	char path[600], detail[200];
	int rc = 0;

	pin_path(path, sizeof(path), dir, map_names[MAP_SETTINGS]);
	l->map_fd[MAP_SETTINGS] = bpf_obj_get(path);
	if (l->map_fd[MAP_SETTINGS] < 0)
		return fail(err, -errno,
			    "pinned map %s: %s (incomplete install: run mcpgatectl uninstall)",
			    path, strerror(errno));
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(l->map_fd[MAP_SETTINGS], &info, &len))
		return fail(err, -errno, "bpf_obj_get_info_by_fd(%s): %s", path, strerror(errno));
	if (info.value_size != sizeof(cur))
		return abi_mismatch(err, 0, " (settings of another size)");
	if (bpf_map_lookup_elem(l->map_fd[MAP_SETTINGS], &zero, &cur))
		return fail(err, -errno, "reading %s: %s", path, strerror(errno));
	if (cur.abi_version != MG_ABI_VERSION)
		return abi_mismatch(err, cur.abi_version, "");

	skel = mg_redirect__open();
	if (!skel)
		return fail(err, -errno ? -errno : -EINVAL, "opening the eBPF object: %s",
			    strerror(errno));
	for (int i = 0; i < MAP_NR && !rc; i++) {
		const struct bpf_map *m = bpf_object__find_map_by_name(skel->obj, map_names[i]);

		pin_path(path, sizeof(path), dir, map_names[i]);
		if (l->map_fd[i] < 0)
			l->map_fd[i] = bpf_obj_get(path);
		if (l->map_fd[i] < 0) {
			snprintf(detail, sizeof(detail), " (no pinned map %s)", map_names[i]);
			rc = abi_mismatch(err, cur.abi_version, detail);
			break;
		}
		len = sizeof(info);
		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(l->map_fd[i], &info, &len)) {
			rc = fail(err, -errno, "bpf_obj_get_info_by_fd(%s): %s", path,
				  strerror(errno));
			break;
		}
		if (!m || info.type != bpf_map__type(m) || info.key_size != bpf_map__key_size(m) ||
		    info.value_size != bpf_map__value_size(m) ||
		    info.max_entries != bpf_map__max_entries(m)) {
			snprintf(detail, sizeof(detail),
				 " (map %s: type %u key %u value %u max %u, this build's differs)",
				 map_names[i], info.type, info.key_size, info.value_size,
				 info.max_entries);
			rc = abi_mismatch(err, cur.abi_version, detail);
		}
	}
	mg_redirect__destroy(skel);
	return rc;
}

/* Opens every pin under <dir> into <l>, after checking they are of this
 * build's ABI. */
static int open_pins(struct mg_loader *l, const char *dir, uint64_t cgroup_id,
		     struct mg_loader_err *err)
{
	char path[600];
	int rc;

	rc = check_pinned_abi(l, dir, err);
	if (rc)
		return rc;
	for (int i = 0; i < LINK_NR; i++) {
		struct bpf_link_info info;
		__u32 len = sizeof(info);

		pin_path(path, sizeof(path), dir, link_names[i]);
		l->link_fd[i] = bpf_obj_get(path);
		if (l->link_fd[i] < 0)
			return fail(err, -errno,
				    "pinned link %s: %s (incomplete install: run mcpgatectl "
				    "uninstall)",
				    path, strerror(errno));
		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(l->link_fd[i], &info, &len))
			return fail(err, -errno, "bpf_obj_get_info_by_fd(%s): %s", path,
				    strerror(errno));
		if (info.type != BPF_LINK_TYPE_CGROUP || info.cgroup.cgroup_id != cgroup_id)
			return fail(err, -EEXIST,
				    "%s is attached to cgroup id %llu, not the configured one "
				    "(%llu): run mcpgatectl uninstall first",
				    path, (unsigned long long)info.cgroup.cgroup_id,
				    (unsigned long long)cgroup_id);
	}
	return 0;
}

/* Loads the programs, attaches all six and pins them via a temp dir.
 * On any error everything attached here is detached again. */
static int attach_fresh(struct mg_loader *l, const struct mg_loader_opts *o, const char *dir,
			struct mg_loader_err *err)
{
	struct bpf_link *links[LINK_NR] = {0};
	struct bpf_map *maps[MAP_NR];
	struct bpf_program *progs[LINK_NR];
	struct mg_redirect *skel;
	char tmp[512], path[600];
	int cgfd = -1, rc;

	skel = mg_redirect__open_and_load();
	if (!skel)
		return fail(err, -errno ? -errno : -EINVAL,
			    "loading the eBPF programs failed (%s); set MG_LIBBPF_DEBUG=1 for "
			    "the verifier log",
			    strerror(errno));
	maps[MAP_INTERCEPT] = skel->maps.intercept;
	maps[MAP_ENDPOINTS] = skel->maps.api_endpoints;
	maps[MAP_SOCKS] = skel->maps.socks;
	maps[MAP_ORIGINS] = skel->maps.origins;
	maps[MAP_SETTINGS] = skel->maps.settings;
	maps[MAP_COUNTERS] = skel->maps.counters;
	maps[MAP_EVENTS] = skel->maps.events;
	progs[LINK_CONNECT4] = skel->progs.mg_connect4;
	progs[LINK_CONNECT6] = skel->progs.mg_connect6;
	progs[LINK_SOCKOPS] = skel->progs.mg_sockops;
	progs[LINK_PEER4] = skel->progs.mg_getpeername4;
	progs[LINK_PEER6] = skel->progs.mg_getpeername6;
	progs[LINK_EGRESS] = skel->progs.mg_egress;

	cgfd = open(o->cgroup_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgfd < 0) {
		rc = fail(err, -errno, "open(%s): %s", o->cgroup_path, strerror(errno));
		goto out;
	}

	/* Settings first: a connect between attach and the end of this function
	 * must already find the proxy address, or it is refused (fail closed). */
	{
		__u32 zero = 0;

		if (bpf_map_update_elem(bpf_map__fd(maps[MAP_SETTINGS]), &zero, &o->settings,
					BPF_ANY)) {
			rc = fail(err, -errno, "settings map update: %s", strerror(errno));
			goto out;
		}
	}

	for (int i = 0; i < LINK_NR; i++) {
		links[i] = bpf_program__attach_cgroup(progs[i], cgfd);
		if (!links[i]) {
			rc = fail(err, -errno, "attach %s at %s: %s", bpf_program__name(progs[i]),
				  o->cgroup_path, strerror(errno));
			goto out;
		}
	}

	/* bpffs refuses names with dots (reserved), hence "-new-". */
	snprintf(tmp, sizeof(tmp), "%s-new-%d", dir, (int)getpid());
	if (mkdir(tmp, 0700) && errno != EEXIST) {
		rc = fail(err, -errno, "mkdir(%s): %s", tmp, strerror(errno));
		goto out;
	}
	for (int i = 0; i < MAP_NR; i++) {
		pin_path(path, sizeof(path), tmp, map_names[i]);
		rc = bpf_map__pin(maps[i], path);
		if (rc) {
			fail(err, rc, "pin %s: %s", path, strerror(-rc));
			goto out_unpin;
		}
	}
	for (int i = 0; i < LINK_NR; i++) {
		pin_path(path, sizeof(path), tmp, link_names[i]);
		rc = bpf_link__pin(links[i], path);
		if (rc) {
			fail(err, rc, "pin %s: %s", path, strerror(-rc));
			goto out_unpin;
		}
	}
	if (rename(tmp, dir)) {
		rc = fail(err, -errno, "rename(%s, %s): %s", tmp, dir, strerror(errno));
		goto out_unpin;
	}

	for (int i = 0; i < MAP_NR; i++)
		l->map_fd[i] = dup(bpf_map__fd(maps[i]));
	for (int i = 0; i < LINK_NR; i++)
		l->link_fd[i] = dup(bpf_link__fd(links[i]));
	rc = 0;
	for (int i = 0; i < MAP_NR; i++)
		if (l->map_fd[i] < 0)
			rc = fail(err, -EMFILE, "dup: %s", strerror(errno));
	for (int i = 0; i < LINK_NR; i++)
		if (l->link_fd[i] < 0)
			rc = fail(err, -EMFILE, "dup: %s", strerror(errno));
	if (rc) {
		tmp[0] = '\0';
		remove_pins(dir, true);
	}
	goto out;

out_unpin:
	remove_pins(tmp, false);
out:
	/* Pinned links survive bpf_link__destroy(); unpinned ones detach. */
	for (int i = 0; i < LINK_NR; i++)
		bpf_link__destroy(links[i]);
	if (cgfd >= 0)
		close(cgfd);
	mg_redirect__destroy(skel);
	return rc;
}

/* ---- the daemon's own cgroup ---- */

/* Finds this process's cgroup v2 directory (the "0::" line of
 * /proc/self/cgroup under the cgroup2 mount that holds <attach>) into
 * <out>. Returns 0, or -ENOENT when it cannot be placed. */
static int self_cgroup_dir(const char *attach, char *out, size_t len)
{
	char line[1024], rel[512] = "", mp[512], root[512], best[512] = "", ra[PATH_MAX];
	size_t best_len = 0;
	FILE *f;

	if (!realpath(attach, ra))
		return -ENOENT;
	f = fopen("/proc/self/cgroup", "re");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3) && sscanf(line + 3, "%511s", rel) == 1)
			break;
	if (f)
		fclose(f);
	f = fopen("/proc/self/mountinfo", "re");
	while (f && fgets(line, sizeof(line), f)) {
		size_t n;

		if (!strstr(line, " - cgroup2 ") ||
		    sscanf(line, "%*s %*s %*s %511s %511s", root, mp) != 2 || strcmp(root, "/"))
			continue;
		n = strlen(mp);
		if (n > best_len && !strncmp(ra, mp, n) && (ra[n] == '/' || ra[n] == '\0')) {
			snprintf(best, sizeof(best), "%s", mp);
			best_len = n;
		}
	}
	if (f)
		fclose(f);
	if (!rel[0] || !best_len)
		return -ENOENT;
	if ((size_t)snprintf(out, len, "%s%s", best, strcmp(rel, "/") ? rel : "") >= len)
		return -ENOENT;
	return 0;
}

/*
 * In a cluster the daemon is a pod itself, under the attach point. With
 * refuse-unknown, its own API connects (the very pod list that lets it
 * classify every pod) would be refused before any pod is known, so its own
 * cgroup gets a PASS entry before any API call. Inserted only if absent:
 * a state the pods module set wins. Nothing to do when the daemon runs
 * outside the attached subtree.
 */
static void pass_self(struct mg_loader *l, const char *attach)
{
	const struct mg_abi_pod pass = {.state = MG_POD_PASS};
	char dir[1100], rd[PATH_MAX], ra[PATH_MAX];
	struct stat st;
	__u64 id;
	size_t n;

	if (self_cgroup_dir(attach, dir, sizeof(dir)) || !realpath(dir, rd) ||
	    !realpath(attach, ra) || stat(rd, &st))
		return;
	n = strlen(ra);
	if (strncmp(rd, ra, n) || rd[n] != '/')
		return;
	id = st.st_ino;
	bpf_map_update_elem(l->map_fd[MAP_INTERCEPT], &id, &pass, BPF_NOEXIST);
}

/* ---- events ---- */

/* libbpf's per-record callback: hands a complete record to the caller of
 * mg_loader_read_events(). A record of another size (a newer kernel half
 * would have been refused by the ABI check) is skipped. */
static int on_event_sample(void *ctx, void *data, size_t size)
{
	struct mg_loader *l = ctx;
	struct mg_abi_event ev;

	if (size < sizeof(ev) || !l->ev_cb)
		return 0;
	memcpy(&ev, data, sizeof(ev));
	l->ev_cb(l->ev_data, &ev);
	return 0;
}

int mg_loader_events_fd(struct mg_loader *l)
{
	return l && l->events ? ring_buffer__epoll_fd(l->events) : -1;
}

int mg_loader_read_events(struct mg_loader *l, mg_loader_event_cb *cb, void *data)
{
	int n;

	if (!l->events)
		return -EBADF;
	l->ev_cb = cb;
	l->ev_data = data;
	n = ring_buffer__consume(l->events);
	l->ev_cb = NULL;
	l->ev_data = NULL;
	return n;
}

/* ---- public ---- */

int mg_loader_open(struct mg_loader **out, const struct mg_loader_opts *o,
		   struct mg_loader_err *err)
{
	const char *dir = o->pin_dir ? o->pin_dir : MG_PIN_DIR;
	struct mg_loader *l;
	struct stat st;
	__u32 zero = 0;
	int rc;

	err->msg[0] = '\0';
	libbpf_set_print(libbpf_print);
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);

	rc = check_env(o, dir, err);
	if (rc)
		return rc;

	l = calloc(1, sizeof(*l));
	if (!l)
		return fail(err, -ENOMEM, "out of memory");
	for (int i = 0; i < MAP_NR; i++)
		l->map_fd[i] = -1;
	for (int i = 0; i < LINK_NR; i++)
		l->link_fd[i] = -1;
	l->ncpus = libbpf_num_possible_cpus();
	if (l->ncpus <= 0) {
		rc = fail(err, -EINVAL, "cannot count possible CPUs");
		goto err;
	}

	if (stat(o->cgroup_path, &st)) {
		rc = fail(err, -errno, "stat(%s): %s", o->cgroup_path, strerror(errno));
		goto err;
	}
	if (access(dir, F_OK) == 0) {
		rc = open_pins(l, dir, (uint64_t)st.st_ino, err);
		if (rc)
			goto err;
		l->reused = true;
	} else {
		rc = attach_fresh(l, o, dir, err);
		if (rc)
			goto err;
	}

	/* A restarted daemon may have new proxy addresses. */
	{
		struct mg_abi_settings s = o->settings;

		s.abi_version = MG_ABI_VERSION;
		if (bpf_map_update_elem(l->map_fd[MAP_SETTINGS], &zero, &s, BPF_ANY)) {
			rc = fail(err, -errno, "settings map update: %s", strerror(errno));
			goto err;
		}
	}
	pass_self(l, o->cgroup_path);
	l->events = ring_buffer__new(l->map_fd[MAP_EVENTS], on_event_sample, l, NULL);
	if (!l->events) {
		rc = fail(err, -errno ? -errno : -EINVAL, "ring buffer on the events map: %s",
			  strerror(errno));
		goto err;
	}
	*out = l;
	return 0;
err:
	mg_loader_close(l);
	return rc;
}

void mg_loader_close(struct mg_loader *l)
{
	if (!l)
		return;
	ring_buffer__free(l->events);
	bpf_link__destroy(l->destroy_iter);
	mg_destroy__destroy(l->destroy);
	for (int i = 0; i < MAP_NR; i++)
		if (l->map_fd[i] >= 0)
			close(l->map_fd[i]);
	for (int i = 0; i < LINK_NR; i++)
		if (l->link_fd[i] >= 0)
			close(l->link_fd[i]);
	free(l);
}

bool mg_loader_reused(const struct mg_loader *l)
{
	return l->reused;
}

bool mg_loader_attached(struct mg_loader *l)
{
	for (int i = 0; i < LINK_NR; i++) {
		struct bpf_link_info info;
		__u32 len = sizeof(info);

		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(l->link_fd[i], &info, &len) ||
		    info.cgroup.cgroup_id == 0)
			return false;
	}
	return true;
}

int mg_loader_set_pod(struct mg_loader *l, uint64_t pod_cgroup_id, const struct mg_abi_pod *v)
{
	__u64 key = pod_cgroup_id;

	return bpf_map_update_elem(l->map_fd[MAP_INTERCEPT], &key, v, BPF_ANY) ? -errno : 0;
}

int mg_loader_del_pod(struct mg_loader *l, uint64_t pod_cgroup_id)
{
	__u64 key = pod_cgroup_id;

	if (bpf_map_delete_elem(l->map_fd[MAP_INTERCEPT], &key) && errno != ENOENT)
		return -errno;
	return 0;
}

ssize_t mg_loader_list_pods(struct mg_loader *l, uint64_t *ids, struct mg_abi_pod *vals, size_t max)
{
	int fd = l->map_fd[MAP_INTERCEPT];
	__u64 key, next;
	void *prev = NULL;
	size_t n = 0;

	while (n < max && bpf_map_get_next_key(fd, prev, &next) == 0) {
		struct mg_abi_pod v;

		/* An entry deleted between the two calls is skipped, not an error. */
		if (bpf_map_lookup_elem(fd, &next, &v) == 0) {
			if (ids)
				ids[n] = next;
			if (vals)
				vals[n] = v;
			n++;
		}
		key = next;
		prev = &key;
	}
	return n;
}

static bool addr_in(const struct mg_abi_addr *a, const struct mg_abi_addr *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!memcmp(a, &set[i], sizeof(*a)))
			return true;
	return false;
}

int mg_loader_set_endpoints(struct mg_loader *l, const struct mg_abi_addr *addrs, size_t n)
{
	struct mg_abi_addr key, next, stale[MG_ENDPOINTS_MAX];
	int fd = l->map_fd[MAP_ENDPOINTS];
	size_t nstale = 0;
	__u32 one = 1;
	void *prev = NULL;

	if (n > MG_ENDPOINTS_MAX)
		return -E2BIG;
	/* Add first, then remove: an address that stays is never absent. */
	for (size_t i = 0; i < n; i++)
		if (bpf_map_update_elem(fd, &addrs[i], &one, BPF_ANY))
			return -errno;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (!addr_in(&next, addrs, n) && nstale < MG_ENDPOINTS_MAX)
			stale[nstale++] = next;
		key = next;
		prev = &key;
	}
	for (size_t i = 0; i < nstale; i++)
		if (bpf_map_delete_elem(fd, &stale[i]) && errno != ENOENT)
			return -errno;
	return 0;
}

ssize_t mg_loader_list_endpoints(struct mg_loader *l, struct mg_abi_addr *addrs, size_t max)
{
	int fd = l->map_fd[MAP_ENDPOINTS];
	struct mg_abi_addr key, next;
	void *prev = NULL;
	size_t n = 0;

	while (n < max && bpf_map_get_next_key(fd, prev, &next) == 0) {
		addrs[n++] = next;
		key = next;
		prev = &key;
	}
	return n;
}

int mg_loader_take_origin(struct mg_loader *l, const struct mg_abi_tuple *t,
			  struct mg_abi_origin *o)
{
	int fd = l->map_fd[MAP_ORIGINS];

	if (bpf_map_lookup_and_delete_elem(fd, t, o) == 0)
		return 0;
	/* Older kernels have no lookup_and_delete for hash maps. */
	if (errno == ENOENT)
		return -ENOENT;
	if (bpf_map_lookup_elem(fd, t, o))
		return -errno;
	bpf_map_delete_elem(fd, t);
	return 0;
}

int mg_loader_counters(struct mg_loader *l, uint64_t out[MG_CNT_MAX])
{
	__u64 vals[l->ncpus];

	for (__u32 i = 0; i < MG_CNT_MAX; i++) {
		out[i] = 0;
		if (bpf_map_lookup_elem(l->map_fd[MAP_COUNTERS], &i, vals))
			return -errno;
		for (int c = 0; c < l->ncpus; c++)
			out[i] += vals[c];
	}
	return 0;
}

int mg_loader_uninstall(const char *pin_dir, struct mg_loader_err *err)
{
	const char *dir = pin_dir ? pin_dir : MG_PIN_DIR;
	char base[512], path[800];
	const char *name;
	struct dirent *de;
	DIR *d;
	int rc;

	err->msg[0] = '\0';
	rc = remove_pins(dir, true);
	if (rc)
		return fail(err, rc, "removing %s: %s", dir, strerror(-rc));

	/* Leftovers of an attach that crashed between pinning and rename. */
	snprintf(base, sizeof(base), "%s", dir);
	name = strrchr(dir, '/');
	name = name ? name + 1 : dir;
	if (!strrchr(base, '/'))
		return 0;
	*strrchr(base, '/') = '\0';
	d = opendir(base);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		size_t nl = strlen(name);

		if (!strncmp(de->d_name, name, nl) && !strncmp(de->d_name + nl, "-new-", 5)) {
			snprintf(path, sizeof(path), "%s/%s", base, de->d_name);
			remove_pins(path, true);
		}
	}
	closedir(d);
	return 0;
}

/* ---- cutting a pod's open API connections ---- */

/*
 * Sockets live in network namespaces and both ways to destroy them act on
 * the namespace of the caller (a TCP iterator sees the one it was created
 * in, sock_diag the one of its netlink socket). A pod has its own, or the
 * node's (hostNetwork), and could have more: the cut runs once per distinct
 * namespace of the pod's tasks, in a short-lived thread that setns()es
 * there, so the daemon's own namespace never changes. The pod is matched by
 * cgroup (the pod cgroup or any below it), so in a shared namespace only its
 * own sockets go.
 */

#define CUT_NETNS_MAX	64   /* distinct network namespaces per pod */
#define CUT_CGROUPS_MAX 256  /* cgroups under one pod cgroup (netlink filter) */
#define CUT_SOCKS_MAX	4096 /* sockets cut per namespace per call (netlink) */

struct cut_job {
	enum mg_loader_cut_method method; /* KFUNC or NETLINK, never AUTO */
	uint64_t pod_id;
	struct mg_destroy *skel; /* KFUNC: the loaded iterator */
	struct bpf_link *iter;
	const struct mg_abi_addr *eps; /* NETLINK: the API endpoints */
	size_t neps;
	const uint64_t *cgs; /* NETLINK: cgroup ids of the pod */
	size_t ncg;
	int netns_fd;
	int rc; /* per namespace: count or -errno */
};

struct cut_scan {
	struct mg_abi_addr eps[MG_ENDPOINTS_MAX];
	uint64_t cgs[CUT_CGROUPS_MAX];
	size_t ncg;
	int netns_fd[CUT_NETNS_MAX];
	dev_t ns_dev[CUT_NETNS_MAX];
	ino_t ns_ino[CUT_NETNS_MAX];
	size_t nns;
};

/* Records the network namespace of every task of cgroup <dir> (one fd per
 * distinct namespace), and the cgroup's id; then its children. */
static void scan_cgroup(struct cut_scan *sc, const char *dir, int depth)
{
	char path[1024];
	struct dirent *de;
	struct stat st;
	FILE *f;
	DIR *d;
	int pid;

	if (depth > MG_MAX_CGROUP_DEPTH || stat(dir, &st))
		return;
	if (sc->ncg < CUT_CGROUPS_MAX)
		sc->cgs[sc->ncg++] = st.st_ino;
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "re");
	while (f && fscanf(f, "%d", &pid) == 1) {
		bool seen = false;
		int fd;

		snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
		if (stat(path, &st))
			continue; /* the task is gone */
		for (size_t i = 0; i < sc->nns && !seen; i++)
			seen = sc->ns_dev[i] == st.st_dev && sc->ns_ino[i] == st.st_ino;
		if (seen || sc->nns == CUT_NETNS_MAX)
			continue;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		sc->ns_dev[sc->nns] = st.st_dev;
		sc->ns_ino[sc->nns] = st.st_ino;
		sc->netns_fd[sc->nns++] = fd;
	}
	if (f)
		fclose(f);
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		scan_cgroup(sc, path, depth + 1);
	}
	if (d)
		closedir(d);
}

/* Runs the iterator once in the calling thread's namespace. */
static int cut_kfunc(struct cut_job *j)
{
	char buf[64];
	ssize_t n;
	int fd;

	j->skel->bss->pod_cgroup_id = j->pod_id;
	j->skel->bss->cut = 0;
	fd = bpf_iter_create(bpf_link__fd(j->iter));
	if (fd < 0)
		return -errno;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		;
	close(fd);
	if (n < 0)
		return -errno;
	return (int)j->skel->bss->cut;
}

static bool u64_in(uint64_t v, const uint64_t *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (set[i] == v)
			return true;
	return false;
}

/* Sends one sock_diag request <type> for <req> on <fd>. */
static int diag_send(int fd, uint16_t type, uint16_t flags, const struct inet_diag_req_v2 *req)
{
	struct {
		struct nlmsghdr nh;
		struct inet_diag_req_v2 r;
	} msg = {0};
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};

	msg.nh.nlmsg_len = sizeof(msg);
	msg.nh.nlmsg_type = type;
	msg.nh.nlmsg_flags = NLM_F_REQUEST | flags;
	msg.r = *req;
	if (sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return 0;
}

/* True when the dumped socket <m> (attributes up to <len>) is a connection
 * of the pod to an API endpoint. Sets <*no_cg> when the kernel gives no
 * cgroup id (Linux < 5.10): such a socket is never matched. */
static bool diag_match(const struct cut_job *j, const struct inet_diag_msg *m, size_t len,
		       bool *no_cg)
{
	struct mg_abi_addr dst = {0};
	struct rtattr *a = (struct rtattr *)((char *)m + NLMSG_ALIGN(sizeof(*m)));
	int rem = (int)len - (int)NLMSG_ALIGN(sizeof(*m));
	bool found = false;
	uint64_t cg = 0;

	if (rem < 0)
		return false; /* shorter than its fixed part */
	if (mg_addr_from_raw(m->idiag_family, m->id.idiag_dst, m->id.idiag_dport, &dst))
		return false;
	if (!addr_in(&dst, j->eps, j->neps))
		return false;
	for (; RTA_OK(a, rem); a = RTA_NEXT(a, rem))
		if (a->rta_type == INET_DIAG_CGROUP_ID && RTA_PAYLOAD(a) >= sizeof(cg)) {
			memcpy(&cg, RTA_DATA(a), sizeof(cg));
			found = true;
		}
	if (!found)
		*no_cg = true;
	return found && u64_in(cg, j->cgs, j->ncg);
}

/* Dumps the TCP sockets of <family> in this namespace, then destroys the
 * pod's API connections among them one by one (by their full id, cookie
 * included, so a socket that changed in between is left alone). */
static int cut_netlink_family(const struct cut_job *j, int fd, uint8_t family, bool *no_cg)
{
	struct inet_diag_req_v2 req = {0};
	struct inet_diag_sockid *ids;
	char buf[16384] __attribute__((aligned(8)));
	size_t nids = 0;
	bool done = false;
	int rc, cut = 0;

	req.sdiag_family = family;
	req.sdiag_protocol = IPPROTO_TCP;
	/* every state with a live full socket: not LISTEN, TIME_WAIT,
	 * NEW_SYN_RECV or CLOSE */
	req.idiag_states =
		((1u << 12) - 1) & ~((1u << 0) | (1u << 6) | (1u << 7) | (1u << 10) | (1u << 3));
	rc = diag_send(fd, SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, &req);
	if (rc)
		return rc;
	ids = calloc(CUT_SOCKS_MAX, sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	while (!done) {
		int n = (int)recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (n < 0) {
			rc = -errno;
			goto out;
		}
		for (; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				done = true;
				break;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(h);

				rc = e->error ? e->error : -EIO;
				goto out;
			}
			if (nids < CUT_SOCKS_MAX &&
			    diag_match(j, NLMSG_DATA(h), h->nlmsg_len - NLMSG_HDRLEN, no_cg))
				ids[nids++] = ((struct inet_diag_msg *)NLMSG_DATA(h))->id;
		}
	}
	for (size_t i = 0; i < nids; i++) {
		struct nlmsghdr *h = (struct nlmsghdr *)buf;
		struct nlmsgerr *e;
		ssize_t n;

		req.id = ids[i];
		req.idiag_states = ~0u;
		rc = diag_send(fd, SOCK_DESTROY, NLM_F_ACK, &req);
		if (rc)
			goto out;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (!NLMSG_OK(h, (int)n) || h->nlmsg_type != NLMSG_ERROR) {
			rc = -EIO;
			goto out;
		}
		e = NLMSG_DATA(h);
		if (e->error == -EOPNOTSUPP || e->error == -EPERM) {
			rc = e->error; /* no CONFIG_INET_DIAG_DESTROY / no right */
			goto out;
		}
		if (e->error == 0)
			cut++;
		/* -ENOENT: it closed meanwhile; nothing to cut */
	}
	rc = cut;
out:
	free(ids);
	return rc;
}

static int cut_netlink(const struct cut_job *j)
{
	bool no_cg = false;
	int fd, a, b;

	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return errno == EPROTONOSUPPORT ? -EOPNOTSUPP : -errno;
	a = cut_netlink_family(j, fd, AF_INET, &no_cg);
	b = a < 0 ? 0 : cut_netlink_family(j, fd, AF_INET6, &no_cg);
	close(fd);
	if (a < 0 || b < 0)
		return a < 0 ? a : b;
	/* Sockets we could not attribute to a cgroup were left alone; if that
	 * is all there was, this kernel cannot do it this way. */
	if (a + b == 0 && no_cg)
		return -EOPNOTSUPP;
	return a + b;
}

static void *cut_thread(void *arg)
{
	struct cut_job *j = arg;

	if (setns(j->netns_fd, CLONE_NEWNET)) {
		j->rc = -errno;
		return NULL;
	}
	j->rc = j->method == MG_LOADER_CUT_KFUNC ? cut_kfunc(j) : cut_netlink(j);
	return NULL;
}

/* Loads the iterator object on the redirect object's <endpoints_fd> and
 * attaches the iterator. -EOPNOTSUPP when this kernel lacks the kfunc (or
 * iterators): the object is optional. */
static int load_destroy(int endpoints_fd, struct mg_destroy **skel_out, struct bpf_link **iter_out)
{
	struct mg_destroy *skel = mg_destroy__open();
	struct bpf_link *iter = NULL;
	int rc;

	if (!skel)
		return -EOPNOTSUPP;
	rc = bpf_map__reuse_fd(skel->maps.api_endpoints, endpoints_fd);
	if (!rc && mg_destroy__load(skel))
		rc = -EOPNOTSUPP;
	if (!rc) {
		iter = bpf_program__attach_iter(skel->progs.mg_destroy_tcp, NULL);
		if (!iter)
			rc = -EOPNOTSUPP;
	}
	if (rc) {
		mg_destroy__destroy(skel);
		return rc;
	}
	*skel_out = skel;
	*iter_out = iter;
	return 0;
}

/* Reads `api_endpoints` into <eps>; returns the count. */
static size_t read_endpoints(int fd, struct mg_abi_addr *eps)
{
	struct mg_abi_addr key, next;
	void *prev = NULL;
	size_t n = 0;

	while (n < MG_ENDPOINTS_MAX && bpf_map_get_next_key(fd, prev, &next) == 0) {
		eps[n++] = next;
		key = next;
		prev = &key;
	}
	return n;
}

/* The cut itself, for both entry points. <*skel>/<*iter> cache the loaded
 * iterator across calls (NULL: load it when needed); <*kfunc_off> remembers
 * that it does not load here. */
static int cut_sockets(int endpoints_fd, uint64_t pod_id, const char *pod_dir,
		       enum mg_loader_cut_method method, struct mg_destroy **skel,
		       struct bpf_link **iter, bool *kfunc_off)
{
	struct cut_job j = {.pod_id = pod_id};
	struct cut_scan *sc;
	int rc = 0, total = 0;

	if (method != MG_LOADER_CUT_NETLINK && !*skel && !*kfunc_off) {
		rc = load_destroy(endpoints_fd, skel, iter);
		if (rc)
			*kfunc_off = true;
		/* Optional: a failed load only picks the way. Left in <rc>, it was
		 * the result when the pod had no task (no namespace to visit). */
		rc = 0;
	}
	if (*skel && method != MG_LOADER_CUT_NETLINK) {
		j.method = MG_LOADER_CUT_KFUNC;
		j.skel = *skel;
		j.iter = *iter;
	} else if (method == MG_LOADER_CUT_KFUNC) {
		return -EOPNOTSUPP;
	} else {
		j.method = MG_LOADER_CUT_NETLINK;
	}

	sc = calloc(1, sizeof(*sc));
	if (!sc)
		return -ENOMEM;
	scan_cgroup(sc, pod_dir, 0);
	j.eps = sc->eps;
	j.neps = read_endpoints(endpoints_fd, sc->eps);
	j.cgs = sc->cgs;
	j.ncg = sc->ncg;
	for (size_t i = 0; i < sc->nns; i++) {
		pthread_t t;

		j.netns_fd = sc->netns_fd[i];
		j.rc = 0;
		rc = pthread_create(&t, NULL, cut_thread, &j);
		if (rc) {
			rc = -rc;
			break;
		}
		pthread_join(t, NULL);
		if (j.rc < 0) {
			rc = j.rc;
			break;
		}
		total += j.rc;
	}
	for (size_t i = 0; i < sc->nns; i++)
		close(sc->netns_fd[i]);
	free(sc);
	/* AUTO: a kernel whose kfunc object loaded but whose iterator fails
	 * at run time still gets the netlink way. */
	if (rc == -EOPNOTSUPP && method == MG_LOADER_CUT_AUTO && j.method == MG_LOADER_CUT_KFUNC)
		return cut_sockets(endpoints_fd, pod_id, pod_dir, MG_LOADER_CUT_NETLINK, skel, iter,
				   kfunc_off);
	return rc < 0 ? rc : total;
}

int mg_loader_destroy_pod_sockets(struct mg_loader *l, uint64_t pod_cgroup_id,
				  const char *pod_cgroup_dir)
{
	return cut_sockets(l->map_fd[MAP_ENDPOINTS], pod_cgroup_id, pod_cgroup_dir,
			   MG_LOADER_CUT_AUTO, &l->destroy, &l->destroy_iter, &l->destroy_off);
}

int mg_loader_cut_pod_sockets(const char *pin_dir, const char *pod_cgroup_dir,
			      enum mg_loader_cut_method method, struct mg_loader_err *err)
{
	struct mg_destroy *skel = NULL;
	struct bpf_link *iter = NULL;
	bool off = false;
	char path[600];
	struct stat st;
	int fd, rc;

	err->msg[0] = '\0';
	libbpf_set_print(libbpf_print);
	if (stat(pod_cgroup_dir, &st) || !S_ISDIR(st.st_mode))
		return fail(err, -ENOENT, "pod cgroup %s: %s", pod_cgroup_dir,
			    errno ? strerror(errno) : "not a directory");
	pin_path(path, sizeof(path), pin_dir ? pin_dir : MG_PIN_DIR, map_names[MAP_ENDPOINTS]);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return fail(err, -errno, "pinned map %s: %s (is mcpgate installed?)", path,
			    strerror(errno));
	rc = cut_sockets(fd, st.st_ino, pod_cgroup_dir, method, &skel, &iter, &off);
	bpf_link__destroy(iter);
	mg_destroy__destroy(skel);
	close(fd);
	if (rc == -EOPNOTSUPP)
		return fail(err, rc, "%s",
			    method == MG_LOADER_CUT_KFUNC
				    ? "no bpf_sock_destroy kfunc here (Linux >= 6.5 with BTF)"
			    : method == MG_LOADER_CUT_NETLINK
				    ? "no sock_diag SOCK_DESTROY here (CONFIG_INET_DIAG_DESTROY)"
				    : "this kernel can neither run bpf_sock_destroy nor netlink "
				      "SOCK_DESTROY");
	if (rc < 0)
		return fail(err, rc, "cutting the sockets of %s: %s", pod_cgroup_dir,
			    strerror(-rc));
	return rc;
}

/* ---- status, from the pins alone (mcpgatectl) ---- */

/* Sums the per-CPU counters of the pinned map <fd> into <st>. */
static void read_pinned_counters(int fd, struct mg_loader_status *st)
{
	int ncpu = libbpf_num_possible_cpus();
	__u64 *vals;

	if (ncpu <= 0)
		return;
	vals = calloc((size_t)ncpu, sizeof(*vals));
	if (!vals)
		return;
	for (__u32 i = 0; i < MG_CNT_MAX; i++) {
		if (bpf_map_lookup_elem(fd, &i, vals))
			break;
		for (int c = 0; c < ncpu; c++)
			st->counters[i] += vals[c];
		st->n_counters = i + 1;
	}
	free(vals);
}

/* Reads the pinned settings map <fd> into <st>. Another ABI's value may be
 * of another size: it is read whole into a buffer of its own size and only
 * the common prefix is kept, so its abi_version still shows. */
static void read_pinned_settings(int fd, struct mg_loader_status *st)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info), zero = 0;
	void *buf;

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) || !info.value_size)
		return;
	buf = calloc(1, info.value_size > sizeof(st->settings) ? info.value_size
							       : sizeof(st->settings));
	if (!buf)
		return;
	if (bpf_map_lookup_elem(fd, &zero, buf) == 0) {
		memcpy(&st->settings, buf, sizeof(st->settings));
		st->has_settings = true;
	}
	free(buf);
}

/* Counts the entries of the pinned intercept map <fd> by state. */
static void count_pinned_pods(int fd, struct mg_loader_status *st)
{
	__u64 key, next;
	void *prev = NULL;

	st->has_intercept = true;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		struct mg_abi_pod v;

		if (bpf_map_lookup_elem(fd, &next, &v) == 0) {
			if (v.state < 3)
				st->pods[v.state]++;
			else
				st->pods_other++;
		}
		key = next;
		prev = &key;
	}
}

int mg_loader_read_status(const char *pin_dir, struct mg_loader_status *st,
			  struct mg_loader_err *err)
{
	const char *dir = pin_dir ? pin_dir : MG_PIN_DIR;
	char path[600];
	int fd;

	memset(st, 0, sizeof(*st));
	err->msg[0] = '\0';
	pin_path(path, sizeof(path), dir, map_names[MAP_COUNTERS]);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return fail(err, -errno, "%s: %s", dir, strerror(errno));
	read_pinned_counters(fd, st);
	close(fd);

	pin_path(path, sizeof(path), dir, map_names[MAP_SETTINGS]);
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		read_pinned_settings(fd, st);
		close(fd);
	}

	pin_path(path, sizeof(path), dir, map_names[MAP_INTERCEPT]);
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		count_pinned_pods(fd, st);
		close(fd);
	}
	return 0;
}
