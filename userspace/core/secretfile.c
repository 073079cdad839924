/*
 * secretfile: one reader for token files. See secretfile.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcpgate/secretfile.h"

struct mg_secretfile {
	char *path;
	uint32_t recheck_ms;
	struct mg_secret cur;
	struct timespec mtime;
	uint64_t checked_ms;
	bool checked;
};

size_t mg_secretfile_trim(const char *buf, size_t len)
{
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
		       buf[len - 1] == '\t'))
		len--;
	return len;
}

void mg_secret_wipe(struct mg_secret *s)
{
	if (s->ptr) {
		explicit_bzero(s->ptr, MG_SECRETFILE_MAX + 1);
		free(s->ptr);
	}
	s->ptr = NULL;
	s->len = 0;
}

/* Reads all of <fd> into <buf> (room for MG_SECRETFILE_MAX + 1 bytes): one
 * byte more than allowed tells an over-long file from one that fits. */
static int read_all(int fd, char *buf, size_t *len)
{
	*len = 0;
	for (;;) {
		ssize_t r = read(fd, buf + *len, MG_SECRETFILE_MAX + 1 - *len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return 0;
		*len += (size_t)r;
		if (*len > MG_SECRETFILE_MAX)
			return -EFBIG;
	}
}

int mg_secretfile_read(const char *path, struct mg_secret *out)
{
	/* Always the full size, so mg_secret_wipe() knows how much to wipe. */
	char *buf = malloc(MG_SECRETFILE_MAX + 1);
	size_t len = 0;
	int fd, ret;

	mg_secret_wipe(out);
	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = read_all(fd, buf, &len);
	close(fd);
	if (ret < 0)
		goto fail;
	len = mg_secretfile_trim(buf, len);
	buf[len] = '\0';
	out->ptr = buf;
	out->len = len;
	return 0;
fail:
	explicit_bzero(buf, MG_SECRETFILE_MAX + 1);
	free(buf);
	return ret;
}

struct mg_secretfile *mg_secretfile_open(const char *path, uint32_t recheck_ms)
{
	struct mg_secretfile *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->path = strdup(path);
	if (!f->path) {
		free(f);
		return NULL;
	}
	f->recheck_ms = recheck_ms;
	return f;
}

void mg_secretfile_free(struct mg_secretfile *f)
{
	if (!f)
		return;
	mg_secret_wipe(&f->cur);
	free(f->path);
	free(f);
}

struct mg_str mg_secretfile_get(struct mg_secretfile *f, uint64_t now_ms)
{
	struct mg_secret next = {0};
	struct stat st;

	if (f->cur.len && f->checked && now_ms - f->checked_ms < f->recheck_ms)
		goto out;
	f->checked = true;
	f->checked_ms = now_ms;
	if (stat(f->path, &st))
		goto out;
	if (f->cur.len && st.st_mtim.tv_sec == f->mtime.tv_sec &&
	    st.st_mtim.tv_nsec == f->mtime.tv_nsec)
		goto out;
	if (mg_secretfile_read(f->path, &next))
		goto out;
	mg_secret_wipe(&f->cur);
	f->cur = next;
	f->mtime = st.st_mtim;
out:
	return f->cur.ptr ? (struct mg_str){f->cur.ptr, f->cur.len} : MG_STR_NULL;
}
