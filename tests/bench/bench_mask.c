/*
 * Masking throughput and memory. Build and run:
 *   gcc -O2 -Iinclude tests/bench/bench_mask.c -ljansson -lz -lssl -lcrypto -o bench_mask
 *   ./bench_mask [small_MB large_MB]        (default 50 400)
 *
 * Each case runs in its own child process at two body sizes; the body is
 * streamed in 16 KiB chunks from a fixed 4 MiB segment of varied items
 * (repeated), so the input itself costs the same memory at both sizes and
 * a peak RSS (from wait4) that does not grow with the body shows the masker
 * is bounded. MB/s counts input bytes (MB = 10^6). Output goes to a sink
 * that only counts, after a check that the masker did mask.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../userspace/mask/rules.c"
#include "../../userspace/mask/scan.c"
#include "../../userspace/mask/json.c"
#include "../../userspace/mask/body.c"

#define CHUNK	16384
#define SEGMENT (4u << 20)

struct body {
	char *head, *seg, *tail;
	size_t head_len, seg_len, tail_len;
	size_t items_per_seg;
};

static uint64_t rng = 88172645463325252ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void rand_str(char *out, size_t n, const char *alphabet)
{
	size_t a = strlen(alphabet);

	for (size_t i = 0; i < n; i++)
		out[i] = alphabet[next() % a];
	out[n] = 0;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char NAME[] = "abcdefghijklmnopqrstuvwxyz0123456789";

static int secret_item(char *o, size_t room, bool kind)
{
	char name[16], v[4][65], uid[37];

	rand_str(name, 10, NAME);
	for (int i = 0; i < 4; i++)
		rand_str(v[i], 64, B64);
	rand_str(uid, 36, NAME);
	return snprintf(
		o, room,
		"{%s\"metadata\":{\"name\":\"app-%s\",\"namespace\":\"prod\",\"uid\":\"%s\","
		"\"resourceVersion\":\"%llu\",\"creationTimestamp\":\"2024-05-01T10:00:00Z\","
		"\"labels\":{\"app\":\"%s\",\"tier\":\"backend\"},\"managedFields\":[{"
		"\"manager\":\"kubectl-client-side-apply\",\"operation\":\"Update\","
		"\"apiVersion\":\"v1\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:data\":{"
		"\".\":{},\"f:password\":{},\"f:username\":{}},\"f:type\":{}}}]},\"data\":{"
		"\"password\":\"%s\",\"username\":\"%s\",\"tls.crt\":\"%s\",\"tls.key\":\"%s\"},"
		"\"type\":\"Opaque\"}",
		kind ? "\"kind\":\"Secret\",\"apiVersion\":\"v1\"," : "", name, uid,
		(unsigned long long)(next() % 1000000), name, v[0], v[1], v[2], v[3]);
}

static int configmap_item(char *o, size_t room)
{
	char name[16], host[24], text[2048];
	size_t t = 0;

	rand_str(name, 10, NAME);
	rand_str(host, 16, NAME);
	/* a config file: prose-like lines, paths, some key: value and key=value pairs */
	for (int line = 0; line < 24 && t < sizeof(text) - 128; line++) {
		char w[3][12];

		for (int i = 0; i < 3; i++)
			rand_str(w[i], 3 + next() % 8, "abcdefghijklmnopqrstuvwxyz");
		switch (line % 4) {
		case 0:
			t += (size_t)snprintf(text + t, sizeof(text) - t,
					      "server_name %s.example.com;\\n", host);
			break;
		case 1:
			t += (size_t)snprintf(text + t, sizeof(text) - t,
					      "  location /%s/%s { proxy_pass http://%s:8080; }\\n",
					      w[0], w[1], w[2]);
			break;
		case 2:
			t += (size_t)snprintf(text + t, sizeof(text) - t,
					      "%s_timeout=%llus # the %s of %s\\n", w[0],
					      (unsigned long long)(next() % 600), w[1], w[2]);
			break;
		default:
			t += (size_t)snprintf(text + t, sizeof(text) - t,
					      "log_level: info\\tworkers: %llu\\n",
					      (unsigned long long)(next() % 64));
			break;
		}
	}
	return snprintf(
		o, room,
		"{\"metadata\":{\"name\":\"cfg-%s\",\"namespace\":\"prod\",\"resourceVersion\":"
		"\"%llu\",\"creationTimestamp\":\"2024-05-01T10:00:00Z\",\"labels\":{\"app\":"
		"\"%s\"}},\"data\":{\"nginx.conf\":\"%s\",\"replicas\":\"3\",\"mode\":"
		"\"production\"}}",
		name, (unsigned long long)(next() % 1000000), name, text);
}

static int pod_item(char *o, size_t room)
{
	char name[16], uid[37], node[12];

	rand_str(name, 10, NAME);
	rand_str(uid, 36, NAME);
	rand_str(node, 8, NAME);
	return snprintf(
		o, room,
		"{\"metadata\":{\"name\":\"web-%s\",\"namespace\":\"prod\",\"uid\":\"%s\","
		"\"labels\":"
		"{\"app\":\"web\",\"pod-template-hash\":\"%s\"},\"ownerReferences\":[{"
		"\"apiVersion\":"
		"\"apps/v1\",\"kind\":\"ReplicaSet\",\"name\":\"web-%s\",\"controller\":true}]},"
		"\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":\"registry.example.com/"
		"web:1.4."
		"2\",\"args\":[\"--port=8080\",\"--log-format=json\"],\"ports\":[{"
		"\"containerPort\":"
		"8080,\"protocol\":\"TCP\"}],\"env\":[{\"name\":\"LOG_LEVEL\",\"value\":\"info\"},{"
		"\"name\":\"DB_HOST\",\"value\":\"db.prod.svc.cluster.local\"},{\"name\":"
		"\"DB_PASSWORD\",\"valueFrom\":{\"secretKeyRef\":{\"name\":\"db\",\"key\":"
		"\"password\"}}}],\"resources\":{\"limits\":{\"cpu\":\"500m\",\"memory\":\"256Mi\"}"
		"},"
		"\"volumeMounts\":[{\"name\":\"kube-api-access\",\"mountPath\":\"/var/run/secrets/"
		"kubernetes.io/serviceaccount\",\"readOnly\":true}]}],\"nodeName\":\"node-%s\","
		"\"serviceAccountName\":\"web\"},\"status\":{\"phase\":\"Running\",\"podIP\":"
		"\"10.1.%llu.%llu\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\","
		"\"lastTransitionTime\":\"2024-05-01T10:00:00Z\"}]}}",
		name, uid, node, node, node, (unsigned long long)(next() % 255),
		(unsigned long long)(next() % 255));
}

static int log_line(char *o, size_t room)
{
	char w[4][12];

	for (int i = 0; i < 4; i++)
		rand_str(w[i], 3 + next() % 8, "abcdefghijklmnopqrstuvwxyz");
	if (next() % 50 == 0)
		return snprintf(o, room,
				"2024-05-01T10:00:%02llu.123Z INFO auth token=%s%s issued\n",
				(unsigned long long)(next() % 60), w[0], w[1]);
	return snprintf(o, room,
			"2024-05-01T10:00:%02llu.123Z INFO handler=%s path=/api/%s/%s status=200 "
			"latency_ms=%llu user=%s\n",
			(unsigned long long)(next() % 60), w[0], w[1], w[2],
			(unsigned long long)(next() % 900), w[3]);
}

enum bcase { B_SECRETS, B_CONFIGMAPS, B_PODS, B_WATCH, B_LOGS, B_GZIP };

static const char *const case_names[] = {
	"SecretList",	   "ConfigMapList", "PodList",
	"watch (Secrets)", "pods/log text", "SecretList gzip",
};

/* Fills one segment of complete items, each followed by <sep>. */
static void build(struct body *b, enum bcase c)
{
	static char item[8192];
	const char *sep = c == B_WATCH ? "\n" : c == B_LOGS ? "" : ",";
	size_t len = 0;

	b->seg = malloc(SEGMENT);
	b->items_per_seg = 0;
	for (;;) {
		int n;

		switch (c) {
		case B_CONFIGMAPS:
			n = configmap_item(item, sizeof(item));
			break;
		case B_PODS:
			n = pod_item(item, sizeof(item));
			break;
		case B_WATCH: {
			char obj[4096];

			secret_item(obj, sizeof(obj), true);
			n = snprintf(item, sizeof(item), "{\"type\":\"MODIFIED\",\"object\":%s}",
				     obj);
			break;
		}
		case B_LOGS:
			n = log_line(item, sizeof(item));
			break;
		default:
			n = secret_item(item, sizeof(item), false);
			break;
		}
		if (len + (size_t)n + 1 > SEGMENT)
			break;
		memcpy(b->seg + len, item, (size_t)n);
		len += (size_t)n;
		memcpy(b->seg + len, sep, strlen(sep));
		len += strlen(sep);
		b->items_per_seg++;
	}
	b->seg_len = len;
	switch (c) {
	case B_WATCH:
	case B_LOGS:
		b->head = strdup("");
		b->tail = strdup("");
		break;
	default:
		b->head = strdup(c == B_CONFIGMAPS
					 ? "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\","
					   "\"metadata\":{},\"items\":["
				 : c == B_PODS ? "{\"kind\":\"PodList\",\"apiVersion\":\"v1\","
						 "\"metadata\":{},\"items\":["
					       : "{\"kind\":\"SecretList\",\"apiVersion\":\"v1\","
						 "\"metadata\":{},\"items\":[");
		/* the segment ends in ',': close with one more (empty-data) item */
		b->tail = strdup("{\"metadata\":{\"name\":\"last\"}}]}");
		break;
	}
	b->head_len = strlen(b->head);
	b->tail_len = strlen(b->tail);
}

/* gzip members for the head, segment and tail (RFC 1952 allows several). */
static void gzip_members(struct body *b)
{
	char **parts[3] = {&b->head, &b->seg, &b->tail};
	size_t *lens[3] = {&b->head_len, &b->seg_len, &b->tail_len};

	for (int i = 0; i < 3; i++) {
		z_stream z;
		size_t cap = *lens[i] + 1024;
		char *out = malloc(cap);

		memset(&z, 0, sizeof(z));
		deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
		z.next_in = (Bytef *)*parts[i];
		z.avail_in = (uInt)*lens[i];
		z.next_out = (Bytef *)out;
		z.avail_out = (uInt)cap;
		if (deflate(&z, Z_FINISH) != Z_STREAM_END)
			abort();
		free(*parts[i]);
		*parts[i] = out;
		*lens[i] = z.total_out;
		deflateEnd(&z);
	}
}

struct counter {
	uint64_t bytes;
	uint32_t sum;
};

static int count_write(void *ctx, const char *p, size_t n)
{
	struct counter *c = ctx;

	c->bytes += n;
	c->sum += (uint8_t)p[0] + (uint8_t)p[n - 1];
	return 0;
}

static int feed(struct mg_mask_body *m, const char *p, size_t n, const struct mg_mask_sink *s)
{
	for (size_t off = 0; off < n; off += CHUNK) {
		int rc = mg_mask_body_feed(m, p + off, n - off < CHUNK ? n - off : CHUNK, s);

		if (rc)
			return rc;
	}
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Child: masks about <mb> MB of case <c>, prints one line, exits. */
static int run_case(enum bcase c, size_t mb, int out_fd)
{
	struct body b;
	struct mg_mask_body_opts o = {
		.kind = c == B_WATCH  ? MG_MASK_KIND_JSON_STREAM
			: c == B_LOGS ? MG_MASK_KIND_TEXT
				      : MG_MASK_KIND_JSON,
		.gzip = c == B_GZIP,
		.resource = c == B_CONFIGMAPS ? MG_STR("configmaps")
			    : c == B_PODS     ? MG_STR("pods")
			    : c == B_LOGS     ? MG_STR("pods")
					      : MG_STR("secrets"),
	};
	struct counter cnt = {0};
	struct mg_mask_sink s = {count_write, &cnt};
	struct mg_mask_body *m;
	const struct mg_mask_stats *st;
	size_t reps, plain_seg;
	uint64_t in_bytes;
	double t0, t;
	int rc = 0;
	char line[256];

	build(&b, c == B_GZIP ? B_SECRETS : c);
	plain_seg = b.seg_len;
	reps = (mb * 1000000 + plain_seg - 1) / plain_seg;
	if (c == B_GZIP)
		gzip_members(&b);
	m = mg_mask_body_new(NULL, &o);
	t0 = now();
	rc = feed(m, b.head, b.head_len, &s);
	for (size_t i = 0; i < reps && !rc; i++)
		rc = feed(m, b.seg, b.seg_len, &s);
	if (!rc)
		rc = feed(m, b.tail, b.tail_len, &s);
	if (!rc)
		rc = mg_mask_body_finish(m, &s);
	t = now() - t0;
	if (rc) {
		fprintf(stderr, "%s: masking failed: %s\n", case_names[c],
			mg_mask_body_error(m)->reason);
		return 1;
	}
	st = mg_mask_body_stats(m);
	/* what goes into the masker, decompressed for gzip */
	in_bytes = (uint64_t)plain_seg * reps;
	if ((c == B_SECRETS || c == B_WATCH || c == B_GZIP) &&
	    st->secret_fields != (uint64_t)4 * b.items_per_seg * reps) {
		fprintf(stderr, "%s: expected %zu masked fields, got %llu\n", case_names[c],
			4 * b.items_per_seg * reps, (unsigned long long)st->secret_fields);
		return 1;
	}
	snprintf(line, sizeof(line), "%-16s %6.0f MB  %8.1f MB/s  masked fields %llu, hits %llu\n",
		 case_names[c], (double)in_bytes / 1e6, (double)in_bytes / 1e6 / t,
		 (unsigned long long)st->secret_fields,
		 (unsigned long long)st->hits[MG_MASK_DET_GENERIC_PASSWORD]);
	if (write(out_fd, line, strlen(line)) < 0)
		return 1;
	mg_mask_body_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	size_t sizes[2] = {50, 400};

	if (argc == 3) {
		sizes[0] = strtoul(argv[1], NULL, 10);
		sizes[1] = strtoul(argv[2], NULL, 10);
	}
	printf("mask bench: %u KiB chunks, input segment %u MiB (same at both sizes)\n",
	       CHUNK / 1024, SEGMENT >> 20);
	for (int c = B_SECRETS; c <= B_GZIP; c++) {
		for (int s = 0; s < 2; s++) {
			int pfd[2], status;
			struct rusage ru;
			char buf[256];
			ssize_t n;
			pid_t pid;

			if (pipe(pfd))
				return 1;
			fflush(stdout);
			pid = fork();
			if (!pid) {
				close(pfd[0]);
				_exit(run_case((enum bcase)c, sizes[s], pfd[1]));
			}
			close(pfd[1]);
			n = read(pfd[0], buf, sizeof(buf) - 1);
			close(pfd[0]);
			if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) ||
			    WEXITSTATUS(status) || n <= 0)
				return 1;
			buf[n] = 0;
			buf[strcspn(buf, "\n")] = 0;
			printf("%s  peak RSS %ld KiB\n", buf, ru.ru_maxrss);
		}
	}
	return 0;
}
