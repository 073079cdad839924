/*
 * loader: the eBPF half's lifecycle. See include/mcpgate/loader.h.
 *
 * Pins (all under <pin_dir>): one file per map, named as in the program, and
 * one per link, "link_<hook>". A fresh attachment is pinned into
 * "<pin_dir>-new-<pid>" first and renamed into place, so a crash at any point
 * leaves either a complete pin dir or none, never half of one.
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
#include <unistd.h>
#include <dirent.h>
#include <linux/magic.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "mcpgate/loader.h"
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
enum { LINK_CONNECT4, LINK_CONNECT6, LINK_SOCKOPS, LINK_PEER4, LINK_PEER6, LINK_NR };

static const char *const map_names[MAP_NR] = {
	"intercept", "api_endpoints", "socks", "origins", "settings", "counters", "events",
};
static const char *const link_names[LINK_NR] = {
	"link_connect4", "link_connect6", "link_sockops", "link_getpeername4", "link_getpeername6",
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
	mg_loader_event_cb *ev_cb;	/* set during mg_loader_read_events() */
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
static int check_env(const struct mg_loader_opts *o, const char *pin_dir,
		     struct mg_loader_err *err)
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
	return fail(err, -EPROTO, "pinned mcpgate programs are ABI v%u, this is v%d%s: run "
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
			    "pinned map %s: %s (incomplete install: run mcpgatectl uninstall)", path,
			    strerror(errno));
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

/* Loads the programs, attaches all five and pins them via a temp dir.
 * On any error everything attached here is detached again. */
static int attach_fresh(struct mg_loader *l, const struct mg_loader_opts *o, const char *dir,
			struct mg_loader_err *err)
{
	struct bpf_link *links[LINK_NR] = { 0 };
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

ssize_t mg_loader_list_pods(struct mg_loader *l, uint64_t *ids, struct mg_abi_pod *vals,
			    size_t max)
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

int mg_loader_destroy_pod_sockets(struct mg_loader *l, uint64_t pod_cgroup_id,
				  const char *pod_cgroup_dir)
{
	(void)l;
	(void)pod_cgroup_id;
	(void)pod_cgroup_dir;
	return -EOPNOTSUPP;
}
