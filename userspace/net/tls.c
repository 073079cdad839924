/*
 * tls: the mcpgate CA, leaf issuing, and the downstream/upstream SSL_CTXs.
 * No sockets here: the proxy makes SSL objects from these contexts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mcpgate/tls.h"

/* Clients' clocks may run a little behind ours: a leaf that is "not yet
 * valid" for them would fail every handshake right after a renewal. */
#define CLOCK_SKEW_SECONDS 300
#define CA_VALIDITY_YEARS  10
/* PEM files we read are a cert or a key: anything larger is not ours. */
#define MAX_PEM_FILE (1 << 20)
/* TLS 1.2 suites: forward secrecy and AEAD only. Both the API server (Go)
 * and the pods' clients (Go, Python/OpenSSL, Node) support these. TLS 1.3
 * suites keep OpenSSL's defaults, which are all AEAD. */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"
/* The one protocol we speak, and its ALPN wire form (length-prefixed). */
#define HTTP11		"http/1.1"
#define ALPN_HTTP11	"\x08" HTTP11
#define ALPN_HTTP11_LEN 9

struct mg_tls_ca {
	X509 *cert;
	EVP_PKEY *key;
};

struct mg_tls_server {
	pthread_mutex_t lock;	    /* guards ctx, not_after, last_err */
	pthread_mutex_t renew_lock; /* one renewal at a time */
	X509 *ca_cert;		    /* own references: the CA may be freed */
	EVP_PKEY *ca_key;
	char **dns;
	size_t n_dns;
	char **ips;
	size_t n_ips;
	unsigned validity;
	unsigned renew_before;
	SSL_CTX *ctx; /* current; each SSL made from it holds its own ref */
	time_t not_after;
	struct mg_tls_err last_err;
};

/* ---- errors ---- */

static void err_append(struct mg_tls_err *err, const char *s)
{
	size_t n = strlen(err->msg);

	if (n < sizeof(err->msg) - 1)
		snprintf(err->msg + n, sizeof(err->msg) - n, "%s", s);
}

/* Fills <err> with the printf-style message, then ": " and each entry of
 * OpenSSL's per-thread error queue. The queue is drained even when <err> is
 * NULL, so a later failure never reports this one's causes. Reason strings
 * and the queue's text data name files, curves and verify results, never
 * key bytes. Returns <rc>, for `return tls_fail(...)`.
 */
static int tls_fail(struct mg_tls_err *err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int tls_fail(struct mg_tls_err *err, int rc, const char *fmt, ...)
{
	const char *data, *reason;
	bool first = true;
	unsigned long e;
	char buf[128];
	va_list ap;
	int flags;

	if (err) {
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		if (!err)
			continue;
		/* System errors carry errno as their reason. */
		reason = ERR_SYSTEM_ERROR(e) ? strerror(ERR_GET_REASON(e))
					     : ERR_reason_error_string(e);
		if (reason)
			snprintf(buf, sizeof(buf), "%s%s", first ? ": " : "; ", reason);
		else
			snprintf(buf, sizeof(buf), "%serror 0x%lx", first ? ": " : "; ", e);
		err_append(err, buf);
		if ((flags & ERR_TXT_STRING) && data && *data) {
			snprintf(buf, sizeof(buf), " (%s)", data);
			err_append(err, buf);
		}
		first = false;
	}
	if (err) {
		/* One line: the message goes into JSON logs and status texts. */
		for (char *p = err->msg; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
	}
	return rc;
}

/* ---- files ---- */

/* Returns 1 if <path> exists (following symlinks: Kubernetes mounts
 * Secrets as links into ..data/), 0 if it does not, or -errno. */
static int path_exists(const char *path)
{
	struct stat st;

	if (stat(path, &st) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

/* Creates every missing directory leading to the file <path>, mode 0700:
 * they will hold the CA key. Existing directories are left as they are. */
static int make_parents(const char *path, struct mg_tls_err *err)
{
	char *dir = strdup(path);
	int rc = 0;

	if (!dir)
		return tls_fail(err, -ENOMEM, "out of memory");
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) && errno != EEXIST) {
			rc = tls_fail(err, -errno, "mkdir(%s, 0700): %s", dir, strerror(errno));
			goto out;
		}
		*p = '/';
	}
out:
	free(dir);
	return rc;
}

/* fsyncs the directory holding <path>, so a rename into it survives a
 * crash. */
static int fsync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd, rc = 0;

	if (!slash)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return -ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd))
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes <data>[0..<len>) to a new file next to <final> (same directory, so
 * the later rename is atomic), created with O_EXCL and permissions never
 * wider than <mode> (umask may only narrow them; fchmod then sets exactly
 * <mode>), then fsyncs it. Returns 0 with the malloc'd temporary name in
 * <*tmp_out>, or -errno with nothing left on disk.
 */
static int write_tmp(const char *final, mode_t mode, const char *data, size_t len, char **tmp_out,
		     struct mg_tls_err *err)
{
	size_t n = strlen(final) + 32;
	char *tmp = malloc(n);
	int fd = -1, rc, i;

	if (!tmp)
		return tls_fail(err, -ENOMEM, "out of memory");
	for (i = 0; i < 8 && fd < 0; i++) {
		unsigned long long r;

		if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1) {
			rc = tls_fail(err, -EIO, "RAND_bytes");
			goto fail;
		}
		snprintf(tmp, n, "%s.tmp-%016llx", final, r);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
		if (fd < 0 && errno != EEXIST) {
			rc = tls_fail(err, -errno, "open(%s, O_CREAT|O_EXCL, %04o): %s", tmp,
				      (unsigned)mode, strerror(errno));
			goto fail;
		}
	}
	if (fd < 0) {
		rc = tls_fail(err, -EEXIST, "cannot create a temporary file next to %s", final);
		goto fail;
	}
	rc = fchmod(fd, mode) ? -errno : write_all(fd, data, len);
	if (!rc && fsync(fd))
		rc = -errno;
	if (rc) {
		rc = tls_fail(err, rc, "writing %s: %s", tmp, strerror(-rc));
		goto fail_unlink;
	}
	if (close(fd)) {
		fd = -1;
		rc = tls_fail(err, -errno, "close(%s): %s", tmp, strerror(errno));
		goto fail_unlink;
	}
	*tmp_out = tmp;
	return 0;

fail_unlink:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
fail:
	free(tmp);
	return rc;
}

/* Renames <tmp> to <final>. Without <replace>, an existing <final> is never
 * overwritten (two daemons racing to create the CA must not both win):
 * renameat2(RENAME_NOREPLACE), or link()+unlink() on filesystems without it.
 */
static int commit_tmp(const char *tmp, const char *final, bool replace, struct mg_tls_err *err)
{
	if (replace) {
		if (rename(tmp, final))
			return tls_fail(err, -errno, "rename(%s, %s): %s", tmp, final,
					strerror(errno));
		return 0;
	}
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno == EINVAL || errno == ENOSYS) {
		if (link(tmp, final) == 0) {
			unlink(tmp);
			return 0;
		}
	}
	return tls_fail(err, -errno, "rename(%s, %s, RENAME_NOREPLACE): %s", tmp, final,
			strerror(errno));
}

/* Opens <path> and reads it whole into a malloc'd buffer <*buf> of <*len>
 * bytes. With <is_key>, refuses (-EPERM) a file any group or other bit is
 * set on: the CA key signs certificates every selected pod trusts, so it
 * must be readable by its owner alone, as ssh does for private keys.
 */
static int read_pem_file(const char *path, bool is_key, char **buf, size_t *len,
			 struct mg_tls_err *err)
{
	struct stat st;
	size_t got = 0;
	char *b = NULL;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return tls_fail(err, -errno, "open(%s): %s", path, strerror(errno));
	if (fstat(fd, &st)) {
		rc = tls_fail(err, -errno, "fstat(%s): %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > MAX_PEM_FILE) {
		rc = tls_fail(err, -EINVAL, "%s: not a regular file of at most %d bytes", path,
			      MAX_PEM_FILE);
		goto out;
	}
	if (is_key && (st.st_mode & (S_IRWXG | S_IRWXO))) {
		rc = tls_fail(err, -EPERM,
			      "%s: mode %04o gives group/other access to the CA key; "
			      "refusing it (chmod 600)",
			      path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	b = malloc((size_t)st.st_size + 1);
	if (!b) {
		rc = tls_fail(err, -ENOMEM, "out of memory");
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = tls_fail(err, -errno, "read(%s): %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*buf = b;
	*len = got;
	b = NULL;
out:
	if (b) {
		OPENSSL_cleanse(b, (size_t)st.st_size);
		free(b);
	}
	close(fd);
	return rc;
}

/* The CA key is stored unencrypted (the file mode protects it); refuse an
 * encrypted one instead of letting OpenSSL prompt on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static int load_key(const char *path, EVP_PKEY **out, struct mg_tls_err *err)
{
	char *buf = NULL;
	size_t len = 0;
	BIO *bio;
	int rc;

	rc = read_pem_file(path, true, &buf, &len, err);
	if (rc)
		return rc;
	bio = BIO_new_mem_buf(buf, (int)len);
	*out = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
	if (!*out)
		rc = tls_fail(err, -EINVAL, "%s: no unencrypted PEM private key", path);
	BIO_free(bio);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rc;
}

static int load_cert(const char *path, X509 **out, struct mg_tls_err *err)
{
	char *buf = NULL;
	size_t len = 0;
	BIO *bio;
	int rc;

	rc = read_pem_file(path, false, &buf, &len, err);
	if (rc)
		return rc;
	bio = BIO_new_mem_buf(buf, (int)len);
	*out = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	if (!*out)
		rc = tls_fail(err, -EINVAL, "%s: no PEM certificate", path);
	BIO_free(bio);
	free(buf);
	return rc;
}

/* Copies what <bio> (a memory BIO) holds into a malloc'd NUL-terminated
 * string. */
static int bio_to_str(BIO *bio, char **out, size_t *len)
{
	char *p;
	long n = BIO_get_mem_data(bio, &p);

	if (n < 0)
		return -EIO;
	*out = malloc((size_t)n + 1);
	if (!*out)
		return -ENOMEM;
	memcpy(*out, p, (size_t)n);
	(*out)[n] = '\0';
	*len = (size_t)n;
	return 0;
}

static int cert_to_pem(const X509 *cert, char **pem, size_t *len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int rc = -ENOMEM;

	if (bio && PEM_write_bio_X509(bio, cert) == 1)
		rc = bio_to_str(bio, pem, len);
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

/* PKCS#8, unencrypted. The secure-memory BIO wipes its buffer when freed;
 * the caller wipes <*pem>. */
static int key_to_pem(EVP_PKEY *key, char **pem, size_t *len)
{
	BIO *bio = BIO_new(BIO_s_secmem());
	int rc = -ENOMEM;

	if (bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1)
		rc = bio_to_str(bio, pem, len);
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

/* ---- certificate building ---- */

static time_t asn1_to_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (ASN1_TIME_to_tm(t, &tm) != 1)
		return (time_t)-1;
	return timegm(&tm);
}

/* A random positive serial of up to 128 bits (RFC 5280 §4.1.2.2 allows 20
 * octets); never zero. Unpredictable serials are what CAs adopted after
 * chosen-prefix collisions; they also make two leaves never share one. */
static int set_random_serial(X509 *x)
{
	BIGNUM *bn = BN_new();
	int rc = -EIO;

	if (!bn)
		return -ENOMEM;
	do {
		if (BN_rand(bn, 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1)
			goto out;
	} while (BN_is_zero(bn));
	if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		rc = 0;
out:
	BN_free(bn);
	return rc;
}

static int set_validity(X509 *x, time_t from, time_t to)
{
	if (!ASN1_TIME_set(X509_getm_notBefore(x), from) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), to))
		return -EIO;
	return 0;
}

static int set_cn(X509_NAME *name, const char *cn)
{
	if (X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
				       (const unsigned char *)cn, -1, -1, 0) != 1)
		return -EIO;
	return 0;
}

/* Adds the extension <nid> from a constant OpenSSL config string <value>
 * (never from user input: names go through add_san()). */
static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509_EXTENSION *ext;
	X509V3_CTX ctx;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -EIO;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -EIO;
}

/* Key identifier as in RFC 5280 §4.2.1.2 method (1): SHA-1 of the
 * subjectPublicKey bits. */
static ASN1_OCTET_STRING *key_id_of(const X509 *x)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	ASN1_OCTET_STRING *id;
	unsigned int n;

	if (X509_pubkey_digest(x, EVP_sha1(), md, &n) != 1)
		return NULL;
	id = ASN1_OCTET_STRING_new();
	if (id && ASN1_OCTET_STRING_set(id, md, (int)n) != 1) {
		ASN1_OCTET_STRING_free(id);
		return NULL;
	}
	return id;
}

static int add_ski(X509 *x)
{
	ASN1_OCTET_STRING *id = key_id_of(x);
	int ok;

	if (!id)
		return -EIO;
	ok = X509_add1_ext_i2d(x, NID_subject_key_identifier, id, 0, X509V3_ADD_DEFAULT);
	ASN1_OCTET_STRING_free(id);
	return ok == 1 ? 0 : -EIO;
}

/* AKI = the issuer's SKI, or its computed key id if an imported CA has no
 * SKI, so clients can pick the right CA when several share a name. */
static int add_aki(X509 *x, X509 *issuer)
{
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(issuer);
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	int rc = -EIO;

	if (!akid)
		return -ENOMEM;
	akid->keyid = ski ? ASN1_OCTET_STRING_dup(ski) : key_id_of(issuer);
	if (akid->keyid &&
	    X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) == 1)
		rc = 0;
	AUTHORITY_KEYID_free(akid);
	return rc;
}

/* A dNSName we are willing to put in a certificate or verify against
 * (RFC 5280 §4.2.1.6, RFC 1123 §2.1 preferred syntax): letters, digits,
 * hyphens, non-empty labels, no trailing dot, at most 253 bytes; with
 * <wildcard>, a whole leftmost "*" label is allowed. Anything else (commas,
 * spaces, NULs) is rejected rather than escaped.
 */
static bool valid_dns_name(const char *s, bool wildcard)
{
	size_t label = 0, n = strlen(s);

	if (n == 0 || n > 253)
		return false;
	if (wildcard && s[0] == '*' && s[1] == '.')
		s += 2;
	for (; *s; s++) {
		char c = *s;

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

/* Parses the textual IP <s> (IPv6 optionally in brackets) into <bin>.
 * Returns the address length (4 or 16), or 0 if <s> is not an IP literal.
 * inet_pton, unlike OpenSSL's a2i_IPADDRESS, accepts no trailing bytes. */
static int parse_ip(const char *s, unsigned char bin[16])
{
	char tmp[INET6_ADDRSTRLEN + 1];
	size_t n = strlen(s);

	if (inet_pton(AF_INET, s, bin) == 1)
		return 4;
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		if (n - 2 >= sizeof(tmp))
			return 0;
		memcpy(tmp, s + 1, n - 2);
		tmp[n - 2] = '\0';
		s = tmp;
	}
	if (inet_pton(AF_INET6, s, bin) == 1)
		return 16;
	return 0;
}

bool mg_tls_is_ip_literal(const char *s)
{
	unsigned char bin[16];

	return s && parse_ip(s, bin) != 0;
}

/* subjectAltName with every DNS name and IP, marked critical when the
 * subject is empty (RFC 5280 §4.2.1.6). */
static int add_san(X509 *x, const char *const *dns, size_t n_dns, const char *const *ips,
		   size_t n_ips, bool critical)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	int rc = -ENOMEM;
	size_t i;

	if (!gens)
		return -ENOMEM;
	for (i = 0; i < n_dns + n_ips; i++) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_STRING *v = NULL;
		unsigned char bin[16];
		int type, len;

		if (!g)
			goto out;
		if (i < n_dns) {
			type = GEN_DNS;
			v = ASN1_IA5STRING_new();
			if (v && ASN1_STRING_set(v, dns[i], -1) != 1) {
				ASN1_STRING_free(v);
				v = NULL;
			}
		} else {
			type = GEN_IPADD;
			len = parse_ip(ips[i - n_dns], bin);
			v = ASN1_OCTET_STRING_new();
			if (v && ASN1_OCTET_STRING_set(v, bin, len) != 1) {
				ASN1_STRING_free(v);
				v = NULL;
			}
		}
		if (!v) {
			GENERAL_NAME_free(g);
			goto out;
		}
		GENERAL_NAME_set0_value(g, type, v);
		if (!sk_GENERAL_NAME_push(gens, g)) {
			GENERAL_NAME_free(g);
			goto out;
		}
	}
	rc = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, critical, X509V3_ADD_DEFAULT) == 1
		     ? 0
		     : -EIO;
out:
	GENERAL_NAMES_free(gens);
	return rc;
}

/* EdDSA keys sign without a separate digest; everything else with SHA-256. */
static const EVP_MD *sign_md(EVP_PKEY *key)
{
	int id = EVP_PKEY_get_id(key);

	return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256();
}

/* ---- CA ---- */

/* Builds the self-signed CA certificate for <key> valid from <now>. */
static X509 *build_ca_cert(EVP_PKEY *key, const char *cn, time_t now)
{
	X509 *x = X509_new();
	struct tm tm;
	time_t until;

	if (!x)
		return NULL;
	gmtime_r(&now, &tm);
	tm.tm_year += CA_VALIDITY_YEARS;
	until = timegm(&tm);
	if (X509_set_version(x, X509_VERSION_3) != 1 || set_random_serial(x) ||
	    set_cn(X509_get_subject_name(x), cn) ||
	    X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 ||
	    set_validity(x, now - CLOCK_SKEW_SECONDS, until) || X509_set_pubkey(x, key) != 1 ||
	    add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") ||
	    add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") || add_ski(x) ||
	    X509_sign(x, key, sign_md(key)) <= 0) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* Creates a new CA and writes it: both files go to temporary names first,
 * and are renamed (never over an existing file) only once both are on disk,
 * key first. A crash can at worst leave the key without the cert, which the
 * next start refuses loudly rather than replacing.
 */
static int create_ca(struct mg_tls_ca *ca, const char *cert_path, const char *key_path,
		     const char *cn, struct mg_tls_err *err)
{
	char *key_pem = NULL, *cert_pem = NULL, *tmp_key = NULL, *tmp_cert = NULL;
	size_t key_len = 0, cert_len = 0;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int rc;

	rc = make_parents(cert_path, err);
	if (!rc)
		rc = make_parents(key_path, err);
	if (rc)
		return rc;

	key = EVP_EC_gen("P-256");
	if (!key) {
		rc = tls_fail(err, -EIO, "generating the CA key");
		goto out;
	}
	cert = build_ca_cert(key, cn, time(NULL));
	if (!cert) {
		rc = tls_fail(err, -EIO, "building the CA certificate");
		goto out;
	}
	rc = key_to_pem(key, &key_pem, &key_len);
	if (!rc)
		rc = cert_to_pem(cert, &cert_pem, &cert_len);
	if (rc) {
		rc = tls_fail(err, rc, "encoding the CA as PEM");
		goto out;
	}
	rc = write_tmp(key_path, 0600, key_pem, key_len, &tmp_key, err);
	if (!rc)
		rc = write_tmp(cert_path, 0644, cert_pem, cert_len, &tmp_cert, err);
	if (rc)
		goto out;
	rc = commit_tmp(tmp_key, key_path, false, err);
	if (rc)
		goto out;
	free(tmp_key);
	tmp_key = NULL;
	rc = commit_tmp(tmp_cert, cert_path, false, err);
	if (rc) {
		/* Ours: renamed there a moment ago with NOREPLACE. */
		unlink(key_path);
		goto out;
	}
	free(tmp_cert);
	tmp_cert = NULL;
	if (fsync_parent(key_path) || fsync_parent(cert_path)) {
		rc = tls_fail(err, -errno, "fsync of the CA directory: %s", strerror(errno));
		goto out;
	}
	ca->key = key;
	ca->cert = cert;
	key = NULL;
	cert = NULL;
out:
	if (tmp_key)
		unlink(tmp_key);
	if (tmp_cert)
		unlink(tmp_cert);
	free(tmp_key);
	free(tmp_cert);
	if (key_pem) {
		OPENSSL_cleanse(key_pem, key_len);
		free(key_pem);
	}
	free(cert_pem);
	EVP_PKEY_free(key);
	X509_free(cert);
	return rc;
}

/* Loads an existing CA and checks that it can do its job: the key is the
 * cert's, the cert may sign certificates, and it has not expired. */
static int load_ca(struct mg_tls_ca *ca, const char *cert_path, const char *key_path,
		   struct mg_tls_err *err)
{
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	uint32_t flags;
	time_t now = time(NULL);
	int rc;

	rc = load_key(key_path, &key, err);
	if (!rc)
		rc = load_cert(cert_path, &cert, err);
	if (rc)
		goto out;
	if (X509_check_private_key(cert, key) != 1) {
		rc = tls_fail(err, -EINVAL, "CA key %s does not match certificate %s", key_path,
			      cert_path);
		goto out;
	}
	flags = X509_get_extension_flags(cert);
	/* A keyUsage without keyCertSign forbids signing; an absent one does
	 * not restrict (RFC 5280 §4.2.1.3), as `openssl req -x509` makes. */
	if ((flags & EXFLAG_INVALID) || !(flags & EXFLAG_CA) ||
	    ((flags & EXFLAG_KUSAGE) && !(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN))) {
		rc = tls_fail(err, -EINVAL,
			      "%s is not a CA certificate (needs basicConstraints CA:TRUE and, "
			      "if keyUsage is present, keyCertSign)",
			      cert_path);
		goto out;
	}
	if (X509_cmp_time(X509_get0_notAfter(cert), &now) <= 0) {
		rc = tls_fail(err, -EINVAL, "CA certificate %s has expired", cert_path);
		goto out;
	}
	ca->cert = cert;
	ca->key = key;
	cert = NULL;
	key = NULL;
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc;
}

int mg_tls_ca_load_or_create(struct mg_tls_ca **out, const char *cert_path, const char *key_path,
			     const char *common_name, struct mg_tls_err *err)
{
	struct mg_tls_ca *ca;
	int have_cert, have_key, rc;

	if (err)
		err->msg[0] = '\0';
	if (!out || !cert_path || !key_path || !*cert_path || !*key_path ||
	    !strcmp(cert_path, key_path))
		return tls_fail(err, -EINVAL, "CA: need two distinct file paths");
	*out = NULL;
	ERR_clear_error();
	have_cert = path_exists(cert_path);
	have_key = path_exists(key_path);
	if (have_cert < 0 || have_key < 0) {
		rc = have_cert < 0 ? have_cert : have_key;
		return tls_fail(err, rc, "stat(%s): %s", have_cert < 0 ? cert_path : key_path,
				strerror(-rc));
	}
	if (have_cert != have_key)
		return tls_fail(err, -EEXIST,
				"found %s but not %s: refusing to create a new CA over half of "
				"an existing one",
				have_cert ? cert_path : key_path, have_cert ? key_path : cert_path);
	ca = calloc(1, sizeof(*ca));
	if (!ca)
		return tls_fail(err, -ENOMEM, "out of memory");
	if (have_cert)
		rc = load_ca(ca, cert_path, key_path, err);
	else
		rc = create_ca(ca, cert_path, key_path, common_name ? common_name : "mcpgate CA",
			       err);
	if (rc) {
		free(ca);
		return rc;
	}
	*out = ca;
	return 0;
}

void mg_tls_ca_free(struct mg_tls_ca *ca)
{
	if (!ca)
		return;
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	free(ca);
}

X509 *mg_tls_ca_cert(const struct mg_tls_ca *ca)
{
	return ca->cert;
}

int mg_tls_ca_cert_pem(const struct mg_tls_ca *ca, char **pem, size_t *len)
{
	return cert_to_pem(ca->cert, pem, len);
}

int mg_tls_write_pem(const char *path, X509 *cert)
{
	char *pem = NULL, *tmp = NULL;
	size_t len = 0;
	int rc;

	if (!path || !*path || !cert)
		return -EINVAL;
	rc = cert_to_pem(cert, &pem, &len);
	if (!rc)
		rc = write_tmp(path, 0644, pem, len, &tmp, NULL);
	if (!rc) {
		rc = commit_tmp(tmp, path, true, NULL);
		if (rc)
			unlink(tmp);
		else
			rc = fsync_parent(path);
	}
	free(tmp);
	free(pem);
	return rc;
}

/* ---- leaf certificates ---- */

/* mg_tls_leaf_issue() with an explicit clock <now>: renewal passes its own,
 * so the new leaf's window follows the time the decision was made with. */
static int issue_leaf_at(X509 *ca_cert, EVP_PKEY *ca_key, const char *const *dns, size_t n_dns,
			 const char *const *ips, size_t n_ips, unsigned validity, time_t now,
			 X509 **cert_out, EVP_PKEY **key_out, struct mg_tls_err *err)
{
	unsigned char bin[16];
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	const char *cn;
	size_t i;
	int rc;

	if (n_dns + n_ips == 0 || (n_dns && !dns) || (n_ips && !ips))
		return tls_fail(err, -EINVAL, "leaf: no names to certify");
	if (validity == 0)
		return tls_fail(err, -EINVAL, "leaf: zero validity");
	for (i = 0; i < n_dns; i++)
		if (!dns[i] || !valid_dns_name(dns[i], true))
			return tls_fail(err, -EINVAL, "leaf: invalid DNS name \"%.64s\"",
					dns[i] ? dns[i] : "(null)");
	for (i = 0; i < n_ips; i++)
		if (!ips[i] || !parse_ip(ips[i], bin))
			return tls_fail(err, -EINVAL, "leaf: invalid IP address \"%.64s\"",
					ips[i] ? ips[i] : "(null)");
	ERR_clear_error();
	if (X509_cmp_time(X509_get0_notAfter(ca_cert), &now) <= 0)
		return tls_fail(err, -EINVAL, "leaf: the mcpgate CA has expired");

	key = EVP_EC_gen("P-256");
	x = X509_new();
	if (!key || !x) {
		rc = tls_fail(err, -EIO, "leaf: generating the key");
		goto fail;
	}
	/* CN is a legacy fallback for clients that ignore SANs; its 64-byte
	 * limit (RFC 5280 ub-common-name) may leave the subject empty. */
	cn = n_dns ? dns[0] : ips[0];
	if (X509_set_version(x, X509_VERSION_3) != 1 || set_random_serial(x) ||
	    (strlen(cn) <= 64 && set_cn(X509_get_subject_name(x), cn)) ||
	    X509_set_issuer_name(x, X509_get_subject_name(ca_cert)) != 1 ||
	    set_validity(x, now - CLOCK_SKEW_SECONDS, now + (time_t)validity) ||
	    X509_set_pubkey(x, key) != 1 || add_san(x, dns, n_dns, ips, n_ips, strlen(cn) > 64) ||
	    add_ext(x, ca_cert, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_ext(x, ca_cert, NID_key_usage, "critical,digitalSignature") ||
	    add_ext(x, ca_cert, NID_ext_key_usage, "serverAuth") || add_ski(x) ||
	    add_aki(x, ca_cert) || X509_sign(x, ca_key, sign_md(ca_key)) <= 0) {
		rc = tls_fail(err, -EIO, "leaf: building the certificate");
		goto fail;
	}
	*cert_out = x;
	*key_out = key;
	return 0;
fail:
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

int mg_tls_leaf_issue(struct mg_tls_ca *ca, const char *const *dns_names, size_t n_dns,
		      const char *const *ips, size_t n_ips, unsigned validity_seconds,
		      X509 **cert_out, EVP_PKEY **key_out, struct mg_tls_err *err)
{
	if (err)
		err->msg[0] = '\0';
	if (!ca || !cert_out || !key_out)
		return tls_fail(err, -EINVAL, "leaf: missing argument");
	return issue_leaf_at(ca->cert, ca->key, dns_names, n_dns, ips, n_ips, validity_seconds,
			     time(NULL), cert_out, key_out, err);
}

/* ---- downstream server ---- */

/* ALPN selection: "http/1.1" or nothing. The proxy speaks HTTP/1.1 only;
 * a client offering h2 first (kubectl: h2,http/1.1) still gets http/1.1.
 * With no http/1.1 on offer, NOACK lets the handshake finish without ALPN
 * (RFC 7301 §3.2 permits it) instead of failing it with an alert. The list
 * is walked by hand: SSL_select_next_proto() would fall back to the
 * client's first protocol, i.e. h2.
 */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned int i = 0;

	(void)ssl;
	(void)arg;
	while (i < inlen) {
		unsigned int n = in[i];

		if (n == 0 || n > inlen - i - 1)
			return SSL_TLSEXT_ERR_NOACK;
		if (n == sizeof(HTTP11) - 1 && !memcmp(in + i + 1, HTTP11, n)) {
			*out = in + i + 1;
			*outlen = (unsigned char)n;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_NOACK;
}

/* Settings both directions share: TLS 1.2+, AEAD suites, no
 * renegotiation (nothing needs it; it only adds DoS and state-confusion
 * surface), and per-connection buffers released while idle, since the proxy
 * keeps many idle keep-alive and pooled connections.
 */
static int common_ctx_setup(SSL_CTX *ctx)
{
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1)
		return -EIO;
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	return 0;
}

static SSL_CTX *new_server_ctx(X509 *leaf, EVP_PKEY *key, X509 *ca_cert, struct mg_tls_err *err)
{
	static const unsigned char sid_ctx[] = "mcpgate";
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx || common_ctx_setup(ctx) || SSL_CTX_use_certificate(ctx, leaf) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1 ||
	    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1) != 1)
		goto fail;
	/* A self-signed CA is the pods' trust anchor, so sending it is waste;
	 * an intermediate must be sent for them to build the chain. */
	if (!(X509_get_extension_flags(ca_cert) & EXFLAG_SS) &&
	    SSL_CTX_add1_chain_cert(ctx, ca_cert) != 1)
		goto fail;
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
	return ctx;
fail:
	tls_fail(err, -EIO, "building the server SSL_CTX");
	SSL_CTX_free(ctx);
	return NULL;
}

/* Issues a leaf valid from <now> and builds a context serving it. */
static int build_server_ctx(struct mg_tls_server *s, time_t now, SSL_CTX **ctx_out,
			    time_t *not_after, struct mg_tls_err *err)
{
	EVP_PKEY *key = NULL;
	X509 *leaf = NULL;
	int rc;

	rc = issue_leaf_at(s->ca_cert, s->ca_key, (const char *const *)s->dns, s->n_dns,
			   (const char *const *)s->ips, s->n_ips, s->validity, now, &leaf, &key,
			   err);
	if (rc)
		return rc;
	*ctx_out = new_server_ctx(leaf, key, s->ca_cert, err);
	*not_after = asn1_to_time(X509_get0_notAfter(leaf));
	/* The context holds its own references to both. */
	X509_free(leaf);
	EVP_PKEY_free(key);
	return *ctx_out ? 0 : -EIO;
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static char **dup_strv(const char *const *v, size_t n)
{
	char **d = calloc(n ? n : 1, sizeof(*d));

	for (size_t i = 0; d && i < n; i++) {
		d[i] = v[i] ? strdup(v[i]) : NULL;
		if (v[i] && !d[i]) {
			free_strv(d, i);
			return NULL;
		}
	}
	return d;
}

struct mg_tls_server *mg_tls_server_new(struct mg_tls_ca *ca, const struct mg_tls_server_opts *o,
					struct mg_tls_err *err)
{
	struct mg_tls_server *s;

	if (err)
		err->msg[0] = '\0';
	if (!ca || !o) {
		tls_fail(err, -EINVAL, "server: missing argument");
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		tls_fail(err, -ENOMEM, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->renew_lock, NULL);
	X509_up_ref(ca->cert);
	EVP_PKEY_up_ref(ca->key);
	s->ca_cert = ca->cert;
	s->ca_key = ca->key;
	s->validity = o->validity_seconds ? o->validity_seconds : MG_TLS_LEAF_VALIDITY_DEFAULT;
	s->renew_before = o->renew_before_seconds ? o->renew_before_seconds : s->validity / 3;
	if (s->renew_before >= s->validity) {
		tls_fail(err, -EINVAL,
			 "server: renew_before (%us) must be below the validity (%us)",
			 s->renew_before, s->validity);
		goto fail;
	}
	s->dns = dup_strv(o->dns_names, o->n_dns);
	s->ips = dup_strv(o->ips, o->n_ips);
	if (!s->dns || !s->ips) {
		tls_fail(err, -ENOMEM, "out of memory");
		goto fail;
	}
	s->n_dns = o->n_dns;
	s->n_ips = o->n_ips;
	ERR_clear_error();
	if (build_server_ctx(s, time(NULL), &s->ctx, &s->not_after, err))
		goto fail;
	return s;
fail:
	mg_tls_server_free(s);
	return NULL;
}

void mg_tls_server_free(struct mg_tls_server *s)
{
	if (!s)
		return;
	SSL_CTX_free(s->ctx);
	X509_free(s->ca_cert);
	EVP_PKEY_free(s->ca_key);
	free_strv(s->dns, s->n_dns);
	free_strv(s->ips, s->n_ips);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->renew_lock);
	free(s);
}

SSL_CTX *mg_tls_server_ctx(struct mg_tls_server *s)
{
	SSL_CTX *ctx;

	pthread_mutex_lock(&s->lock);
	ctx = s->ctx;
	if (ctx && SSL_CTX_up_ref(ctx) != 1)
		ctx = NULL;
	pthread_mutex_unlock(&s->lock);
	return ctx;
}

int mg_tls_server_maybe_renew(struct mg_tls_server *s, time_t now)
{
	struct mg_tls_err e = {{0}};
	SSL_CTX *ctx = NULL, *old = NULL;
	time_t not_after, na = 0;
	int rc;

	pthread_mutex_lock(&s->renew_lock);
	pthread_mutex_lock(&s->lock);
	not_after = s->not_after;
	pthread_mutex_unlock(&s->lock);
	if (now < not_after - (time_t)s->renew_before) {
		rc = 0;
		goto out;
	}
	/* Key generation and signing happen outside s->lock: accepts on other
	 * threads keep getting the old context meanwhile. */
	ERR_clear_error();
	rc = build_server_ctx(s, now, &ctx, &na, &e);
	pthread_mutex_lock(&s->lock);
	if (rc) {
		s->last_err = e;
	} else {
		old = s->ctx;
		s->ctx = ctx;
		s->not_after = na;
		s->last_err.msg[0] = '\0';
		rc = 1;
	}
	pthread_mutex_unlock(&s->lock);
	/* Connections made from the old context keep it alive until their
	 * SSL is freed; this only drops the server's own reference. */
	if (rc == 1)
		SSL_CTX_free(old);
out:
	pthread_mutex_unlock(&s->renew_lock);
	return rc;
}

int mg_tls_server_set_ips(struct mg_tls_server *s, const char *const *ips, size_t n,
			  struct mg_tls_err *err)
{
	struct mg_tls_err e = {{0}};
	char **new_ips = dup_strv(ips, n), **old_ips;
	SSL_CTX *ctx = NULL, *old;
	size_t old_n;
	time_t na = 0;
	int rc;

	if (!new_ips) {
		tls_fail(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	/* renew_lock serialises with renewals, which read s->ips too. */
	pthread_mutex_lock(&s->renew_lock);
	old_ips = s->ips;
	old_n = s->n_ips;
	s->ips = new_ips;
	s->n_ips = n;
	ERR_clear_error();
	rc = build_server_ctx(s, time(NULL), &ctx, &na, &e);
	if (rc) {
		s->ips = old_ips;
		s->n_ips = old_n;
		old_ips = new_ips;
		old_n = n;
		if (err)
			*err = e;
	} else {
		pthread_mutex_lock(&s->lock);
		old = s->ctx;
		s->ctx = ctx;
		s->not_after = na;
		pthread_mutex_unlock(&s->lock);
		SSL_CTX_free(old);
	}
	pthread_mutex_unlock(&s->renew_lock);
	free_strv(old_ips, old_n);
	return rc;
}

time_t mg_tls_server_leaf_not_after(struct mg_tls_server *s)
{
	time_t t;

	pthread_mutex_lock(&s->lock);
	t = s->not_after;
	pthread_mutex_unlock(&s->lock);
	return t;
}

void mg_tls_server_last_err(struct mg_tls_server *s, struct mg_tls_err *err)
{
	pthread_mutex_lock(&s->lock);
	*err = s->last_err;
	pthread_mutex_unlock(&s->lock);
}

/* ---- upstream client ---- */

SSL_CTX *mg_tls_client_ctx_new(const char *ca_file, struct mg_tls_err *err)
{
	SSL_CTX *ctx;

	if (err)
		err->msg[0] = '\0';
	if (!ca_file || !*ca_file) {
		tls_fail(err, -EINVAL, "upstream TLS needs a CA file");
		return NULL;
	}
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || common_ctx_setup(ctx) ||
	    SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)ALPN_HTTP11, ALPN_HTTP11_LEN)) {
		tls_fail(err, -EIO, "building the client SSL_CTX");
		goto fail;
	}
	/* Only the given CA file: the API server is trusted through the
	 * cluster CA, never through whatever the host's store holds. */
	if (SSL_CTX_load_verify_file(ctx, ca_file) != 1) {
		tls_fail(err, -EINVAL, "cannot load CA certificates from %s", ca_file);
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int mg_tls_client_prepare(SSL *ssl, const char *host)
{
	char ip[INET6_ADDRSTRLEN + 1];
	unsigned char bin[16];
	int len;

	if (!ssl || !host || !*host)
		return -EINVAL;
	len = parse_ip(host, bin);
	if (len) {
		/* Canonical text: brackets dropped, what set1_ip_asc parses. */
		if (!inet_ntop(len == 4 ? AF_INET : AF_INET6, bin, ip, sizeof(ip)) ||
		    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip) != 1)
			goto fail;
		return 0;
	}
	if (!valid_dns_name(host, false))
		return -EINVAL;
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1)
		goto fail;
	return 0;
fail:
	ERR_clear_error();
	return -EINVAL;
}
