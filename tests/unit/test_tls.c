/*
 * Unit tests for the tls module: CA creation and the checks on loading,
 * leaf issuing, real in-memory handshakes between the downstream server
 * context and the upstream client context, and leaf renewal.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>

#include "../../userspace/net/tls.c"

/* ---- helpers ---- */

struct tmpdir {
	char dir[64];
	char cert[192];
	char key[192];
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int tmpdir_setup(void **state)
{
	struct tmpdir *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	strcpy(t->dir, "/tmp/mg_tls_test.XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	/* Two missing levels: both must be created 0700. */
	snprintf(t->cert, sizeof(t->cert), "%s/pki/ca/ca.crt", t->dir);
	snprintf(t->key, sizeof(t->key), "%s/pki/ca/ca.key", t->dir);
	*state = t;
	return 0;
}

static int tmpdir_teardown(void **state)
{
	struct tmpdir *t = *state;

	nftw(t->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}

static void write_file(const char *path, const char *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, data, len), 0);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void write_key_file(const char *path, EVP_PKEY *key)
{
	char *pem;
	size_t len;

	assert_int_equal(key_to_pem(key, &pem, &len), 0);
	write_file(path, pem, len, 0600);
	free(pem);
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* -1 if <x> lacks extension <nid>, else whether it is critical. */
static int ext_critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);

	return i < 0 ? -1 : X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

static bool is_p256(EVP_PKEY *key)
{
	char name[64];

	return EVP_PKEY_get_base_id(key) == EVP_PKEY_EC &&
	       EVP_PKEY_get_group_name(key, name, sizeof(name), NULL) == 1 &&
	       !strcmp(name, "prime256v1");
}

/* Runs a TLS handshake between client <c> and server <s> over an in-memory
 * BIO pair, then sends one message each way. Returns 0 if both sides
 * completed, -1 if either failed. */
static int handshake(SSL *c, SSL *s)
{
	bool cdone = false, sdone = false;
	char buf[16];
	BIO *bc, *bs;
	int i, r;

	assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
	SSL_set_bio(c, bc, bc);
	SSL_set_bio(s, bs, bs);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	for (i = 0; i < 64 && !(cdone && sdone); i++) {
		if (!cdone) {
			r = SSL_do_handshake(c);
			if (r == 1)
				cdone = true;
			else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ &&
				 SSL_get_error(c, r) != SSL_ERROR_WANT_WRITE)
				goto fail;
		}
		if (!sdone) {
			r = SSL_do_handshake(s);
			if (r == 1)
				sdone = true;
			else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ &&
				 SSL_get_error(s, r) != SSL_ERROR_WANT_WRITE)
				goto fail;
		}
	}
	if (!cdone || !sdone)
		goto fail;
	assert_int_equal(SSL_write(c, "ping", 4), 4);
	assert_int_equal(SSL_read(s, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(SSL_write(s, "pong", 4), 4);
	assert_int_equal(SSL_read(c, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "pong", 4);
	return 0;
fail:
	ERR_clear_error();
	return -1;
}

static SSL *client_ssl(SSL_CTX *cctx, const char *host)
{
	SSL *c = SSL_new(cctx);

	assert_non_null(c);
	assert_int_equal(mg_tls_client_prepare(c, host), 0);
	return c;
}

static SSL *server_ssl(struct mg_tls_server *srv)
{
	SSL_CTX *ctx = mg_tls_server_ctx(srv);
	SSL *s;

	assert_non_null(ctx);
	s = SSL_new(ctx);
	assert_non_null(s);
	SSL_CTX_free(ctx); /* as the proxy does: the SSL keeps its own ref */
	return s;
}

static time_t peer_not_after(SSL *c)
{
	X509 *peer = SSL_get1_peer_certificate(c);
	time_t t;

	assert_non_null(peer);
	t = asn1_to_time(X509_get0_notAfter(peer));
	X509_free(peer);
	return t;
}

static const char *const k8s_dns[] = {"kubernetes", "kubernetes.default", "kubernetes.default.svc",
				      "kubernetes.default.svc.cluster.local"};
static const char *const k8s_ips[] = {"10.96.0.1", "fd00:10:96::1"};

/* ---- CA ---- */

static void test_ca_create(void **state)
{
	struct tmpdir *t = *state;
	struct mg_tls_err err;
	struct mg_tls_ca *ca;
	char sub[192];
	X509 *x;
	int days, secs;
	mode_t old_umask;

	old_umask = umask(0); /* modes must not depend on the caller's umask */
	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, "test CA", &err), 0);
	umask(old_umask);
	assert_int_equal(mode_of(t->key), 0600);
	assert_int_equal(mode_of(t->cert), 0644);
	snprintf(sub, sizeof(sub), "%s/pki", t->dir);
	assert_int_equal(mode_of(sub), 0700);
	snprintf(sub, sizeof(sub), "%s/pki/ca", t->dir);
	assert_int_equal(mode_of(sub), 0700);
	/* No temporary file left behind. */
	assert_int_equal(count_entries(sub), 2);

	x = mg_tls_ca_cert(ca);
	assert_true(is_p256(ca->key));
	assert_int_equal(X509_check_ca(x), 1);
	assert_int_equal(ext_critical(x, NID_basic_constraints), 1);
	assert_int_equal(ext_critical(x, NID_key_usage), 1);
	assert_int_equal(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	assert_non_null(X509_get0_subject_key_id(x));
	assert_true(X509_get_extension_flags(x) & EXFLAG_SS);
	assert_int_equal(X509_verify(x, ca->key), 1);
	assert_int_equal(X509_NAME_get_index_by_NID(X509_get_subject_name(x), NID_commonName, -1),
			 0);
	assert_int_equal(
		ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
	assert_in_range(days, 3652, 3653); /* 10 years, plus the 5 min skew */
	mg_tls_ca_free(ca);
}

static void test_ca_reload_same(void **state)
{
	struct tmpdir *t = *state;
	struct mg_tls_ca *a, *b;
	struct mg_tls_err err;

	assert_int_equal(mg_tls_ca_load_or_create(&a, t->cert, t->key, NULL, &err), 0);
	assert_int_equal(mg_tls_ca_load_or_create(&b, t->cert, t->key, NULL, &err), 0);
	assert_int_equal(X509_cmp(a->cert, b->cert), 0);
	assert_int_equal(EVP_PKEY_eq(a->key, b->key), 1);
	mg_tls_ca_free(a);
	mg_tls_ca_free(b);
}

static void test_ca_refuses_open_key(void **state)
{
	static const mode_t modes[] = {0644, 0640, 0604, 0610};
	struct tmpdir *t = *state;
	struct mg_tls_err err;
	struct mg_tls_ca *ca;

	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, NULL, &err), 0);
	mg_tls_ca_free(ca);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		char want[16];

		assert_int_equal(chmod(t->key, modes[i]), 0);
		ca = (struct mg_tls_ca *)1;
		assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, NULL, &err),
				 -EPERM);
		assert_null(ca);
		snprintf(want, sizeof(want), "mode %04o", (unsigned)modes[i]);
		assert_non_null(strstr(err.msg, want));
		/* Refused, not "fixed" behind the admin's back. */
		assert_int_equal(mode_of(t->key), modes[i]);
	}
	assert_int_equal(chmod(t->key, 0400), 0);
	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, NULL, &err), 0);
	mg_tls_ca_free(ca);
}

static void test_ca_refuses_non_ca_cert(void **state)
{
	static const char *const names[] = {"leaf.example"};
	struct tmpdir *t = *state;
	struct mg_tls_ca *ca, *bad;
	struct mg_tls_err err;
	char cert[192], key[192];
	EVP_PKEY *lkey;
	X509 *leaf;

	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, NULL, &err), 0);
	assert_int_equal(mg_tls_leaf_issue(ca, names, 1, NULL, 0, 3600, &leaf, &lkey, &err), 0);
	snprintf(cert, sizeof(cert), "%s/leaf.crt", t->dir);
	snprintf(key, sizeof(key), "%s/leaf.key", t->dir);
	assert_int_equal(mg_tls_write_pem(cert, leaf), 0);
	write_key_file(key, lkey);
	assert_int_equal(mg_tls_ca_load_or_create(&bad, cert, key, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a CA"));
	X509_free(leaf);
	EVP_PKEY_free(lkey);
	mg_tls_ca_free(ca);
}

/* Writes a self-signed certificate with basicConstraints <bc> and keyUsage
 * <ku>, and its key, to <dir>/<name>.crt and .key; loads them as the CA and
 * returns what mg_tls_ca_load_or_create() returned. */
static int load_self_signed(const char *dir, const char *name, const char *bc, const char *ku,
			    struct mg_tls_err *err)
{
	char cert[192], key[192];
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	time_t now = time(NULL);
	struct mg_tls_ca *ca = NULL;
	int rc;

	assert_non_null(k);
	assert_non_null(x);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_int_equal(set_random_serial(x), 0);
	assert_int_equal(set_cn(X509_get_subject_name(x), name), 0);
	assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
	assert_int_equal(set_validity(x, now - 60, now + 3600), 0);
	assert_int_equal(X509_set_pubkey(x, k), 1);
	if (bc)
		assert_int_equal(add_ext(x, x, NID_basic_constraints, bc), 0);
	if (ku)
		assert_int_equal(add_ext(x, x, NID_key_usage, ku), 0);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	snprintf(cert, sizeof(cert), "%s/%s.crt", dir, name);
	snprintf(key, sizeof(key), "%s/%s.key", dir, name);
	assert_int_equal(mg_tls_write_pem(cert, x), 0);
	write_key_file(key, k);
	rc = mg_tls_ca_load_or_create(&ca, cert, key, NULL, err);
	mg_tls_ca_free(ca);
	X509_free(x);
	EVP_PKEY_free(k);
	return rc;
}

static void test_ca_constraints(void **state)
{
	struct tmpdir *t = *state;
	struct mg_tls_err err;

	/* CA:TRUE, but keyUsage forbids signing certificates. */
	assert_int_equal(load_self_signed(t->dir, "nosign", "critical,CA:TRUE",
					  "critical,digitalSignature", &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "not a CA"));
	/* keyCertSign, but CA:FALSE or no basicConstraints at all. */
	assert_int_equal(load_self_signed(t->dir, "notca", "critical,CA:FALSE",
					  "critical,keyCertSign", &err),
			 -EINVAL);
	assert_int_equal(load_self_signed(t->dir, "nobc", NULL, "critical,keyCertSign", &err),
			 -EINVAL);
	/* What `openssl req -x509` makes by default: CA:TRUE, no keyUsage. */
	assert_int_equal(load_self_signed(t->dir, "plain", "critical,CA:TRUE", NULL, &err), 0);
	assert_int_equal(load_self_signed(t->dir, "full", "critical,CA:TRUE",
					  "critical,keyCertSign,cRLSign", &err),
			 0);
}

static void test_ca_refuses_mismatched_key(void **state)
{
	struct tmpdir *t = *state;
	char cert2[192], key2[192];
	struct mg_tls_ca *a, *b, *c;
	struct mg_tls_err err;

	snprintf(cert2, sizeof(cert2), "%s/other/ca.crt", t->dir);
	snprintf(key2, sizeof(key2), "%s/other/ca.key", t->dir);
	assert_int_equal(mg_tls_ca_load_or_create(&a, t->cert, t->key, NULL, &err), 0);
	assert_int_equal(mg_tls_ca_load_or_create(&b, cert2, key2, NULL, &err), 0);
	assert_int_not_equal(X509_cmp(a->cert, b->cert), 0);
	/* CA a's certificate with CA b's key. */
	assert_int_equal(mg_tls_ca_load_or_create(&c, t->cert, key2, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "does not match"));
	mg_tls_ca_free(a);
	mg_tls_ca_free(b);
}

static void test_ca_refuses_half_present(void **state)
{
	struct tmpdir *t = *state;
	struct mg_tls_err err;
	struct mg_tls_ca *ca;
	char *before, *after;
	size_t lb, la;

	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, NULL, &err), 0);
	mg_tls_ca_free(ca);
	assert_int_equal(read_pem_file(t->key, true, &before, &lb, &err), 0);
	assert_int_equal(unlink(t->cert), 0);
	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, NULL, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "refusing"));
	/* The key was neither replaced nor paired with a new cert. */
	assert_int_equal(path_exists(t->cert), 0);
	assert_int_equal(read_pem_file(t->key, true, &after, &la, &err), 0);
	assert_int_equal(lb, la);
	assert_memory_equal(before, after, lb);
	free(before);
	free(after);
}

static void test_ca_refuses_encrypted_key(void **state)
{
	struct tmpdir *t = *state;
	struct mg_tls_err err;
	struct mg_tls_ca *ca;
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem;
	size_t len;

	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, NULL, &err), 0);
	assert_int_equal(PEM_write_bio_PrivateKey(bio, ca->key, EVP_aes_128_cbc(),
						  (unsigned char *)"pw", 2, NULL, NULL),
			 1);
	assert_int_equal(bio_to_str(bio, &pem, &len), 0);
	BIO_free(bio);
	mg_tls_ca_free(ca);
	write_file(t->key, pem, len, 0600);
	free(pem);
	/* Must fail without prompting on the terminal (the test would hang). */
	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "unencrypted"));
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_ca_pem_export(void **state)
{
	struct tmpdir *t = *state;
	struct mg_tls_err err;
	struct mg_tls_ca *ca;
	char path[192], *pem, *file;
	size_t len, flen;
	X509 *back;
	BIO *bio;

	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, NULL, &err), 0);
	assert_int_equal(mg_tls_ca_cert_pem(ca, &pem, &len), 0);
	assert_int_equal(strlen(pem), len);
	assert_true(!strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28));
	bio = BIO_new_mem_buf(pem, (int)len);
	back = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	assert_non_null(back);
	assert_int_equal(X509_cmp(back, ca->cert), 0);
	X509_free(back);
	BIO_free(bio);

	/* write_pem replaces an existing file atomically, mode 0644. */
	snprintf(path, sizeof(path), "%s/bundle.crt", t->dir);
	write_file(path, "old", 3, 0600);
	assert_int_equal(mg_tls_write_pem(path, ca->cert), 0);
	assert_int_equal(mode_of(path), 0644);
	assert_int_equal(read_pem_file(path, false, &file, &flen, &err), 0);
	assert_int_equal(flen, len);
	assert_memory_equal(file, pem, len);
	assert_int_equal(count_entries(t->dir), 2); /* pki/ and bundle.crt */
	free(file);
	free(pem);
	mg_tls_ca_free(ca);
}

static void test_ca_bad_args(void **state)
{
	struct tmpdir *t = *state;
	struct mg_tls_err err;
	struct mg_tls_ca *ca;

	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->cert, NULL, &err), -EINVAL);
	assert_int_equal(mg_tls_ca_load_or_create(&ca, NULL, t->key, NULL, &err), -EINVAL);
	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, "", NULL, &err), -EINVAL);
	assert_int_equal(path_exists(t->cert), 0);
}

/* ---- leaf ---- */

static void test_leaf_verifies_against_ca(void **state)
{
	struct tmpdir *t = *state;
	X509_STORE_CTX *vc = X509_STORE_CTX_new();
	X509_STORE *store = X509_STORE_new();
	struct mg_tls_err err;
	struct mg_tls_ca *ca;
	EVP_PKEY *key;
	X509 *leaf;

	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, NULL, &err), 0);
	assert_int_equal(mg_tls_leaf_issue(ca, k8s_dns, 4, k8s_ips, 2, 3600, &leaf, &key, &err), 0);
	assert_int_equal(X509_STORE_add_cert(store, ca->cert), 1);
	assert_int_equal(X509_STORE_CTX_init(vc, store, leaf, NULL), 1);
	assert_int_equal(X509_STORE_CTX_set_purpose(vc, X509_PURPOSE_SSL_SERVER), 1);
	assert_int_equal(X509_verify_cert(vc), 1);
	assert_int_equal(X509_STORE_CTX_get_error(vc), X509_V_OK);

	for (size_t i = 0; i < 4; i++)
		assert_int_equal(X509_check_host(leaf, k8s_dns[i], 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(leaf, "kubernetes.evil.example", 0, 0, NULL), 0);
	assert_int_equal(X509_check_host(leaf, "default.svc", 0, 0, NULL), 0);
	assert_int_equal(X509_check_ip_asc(leaf, "10.96.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(leaf, "fd00:10:96:0::1", 0), 1);
	assert_int_equal(X509_check_ip_asc(leaf, "10.96.0.2", 0), 0);
	assert_int_equal(X509_check_ip_asc(leaf, "fd00:10:96::2", 0), 0);
	/* A leaf's private key matches its cert and is a fresh P-256 key. */
	assert_int_equal(X509_check_private_key(leaf, key), 1);
	assert_true(is_p256(key));
	assert_int_equal(EVP_PKEY_eq(key, ca->key), 0);

	/* Another CA's leaf does not verify against this store. */
	{
		X509_STORE_CTX *vc2 = X509_STORE_CTX_new();
		struct mg_tls_ca *other;
		char c2[192], k2[192];
		EVP_PKEY *okey;
		X509 *oleaf;

		snprintf(c2, sizeof(c2), "%s/o/ca.crt", t->dir);
		snprintf(k2, sizeof(k2), "%s/o/ca.key", t->dir);
		assert_int_equal(mg_tls_ca_load_or_create(&other, c2, k2, NULL, &err), 0);
		assert_int_equal(
			mg_tls_leaf_issue(other, k8s_dns, 1, NULL, 0, 3600, &oleaf, &okey, &err),
			0);
		assert_int_equal(X509_STORE_CTX_init(vc2, store, oleaf, NULL), 1);
		assert_int_equal(X509_verify_cert(vc2), 0);
		assert_int_equal(X509_STORE_CTX_get_error(vc2),
				 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
		X509_STORE_CTX_free(vc2);
		X509_free(oleaf);
		EVP_PKEY_free(okey);
		mg_tls_ca_free(other);
		ERR_clear_error();
	}
	X509_STORE_CTX_free(vc);
	X509_STORE_free(store);
	X509_free(leaf);
	EVP_PKEY_free(key);
	mg_tls_ca_free(ca);
}

static void test_leaf_fields(void **state)
{
	struct tmpdir *t = *state;
	struct mg_tls_err err;
	struct mg_tls_ca *ca;
	const ASN1_INTEGER *sa, *sb;
	EVP_PKEY *ka, *kb;
	X509 *a, *b;
	char cn[64];
	time_t before, after;
	BIGNUM *bn;

	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, NULL, &err), 0);
	before = time(NULL);
	assert_int_equal(mg_tls_leaf_issue(ca, k8s_dns, 4, k8s_ips, 2, 7200, &a, &ka, &err), 0);
	after = time(NULL);
	assert_int_equal(mg_tls_leaf_issue(ca, k8s_dns, 4, k8s_ips, 2, 7200, &b, &kb, &err), 0);

	/* Serials: positive, non-zero, at most 128 bits, distinct. */
	sa = X509_get0_serialNumber(a);
	sb = X509_get0_serialNumber(b);
	bn = ASN1_INTEGER_to_BN(sa, NULL);
	assert_non_null(bn);
	assert_false(BN_is_negative(bn));
	assert_false(BN_is_zero(bn));
	assert_true(BN_num_bits(bn) <= 128);
	assert_true(BN_num_bits(bn) > 64); /* 2^-64 odds of a false failure */
	BN_free(bn);
	assert_int_not_equal(ASN1_INTEGER_cmp(sa, sb), 0);

	/* Validity window: 5 minutes of skew before, <validity> after. */
	assert_in_range(asn1_to_time(X509_get0_notBefore(a)), before - 300, after - 300);
	assert_in_range(asn1_to_time(X509_get0_notAfter(a)), before + 7200, after + 7200);

	/* CN = first DNS name; issuer = the CA's subject. */
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(a), NID_commonName, cn,
					      sizeof(cn)) > 0);
	assert_string_equal(cn, "kubernetes");
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(a), X509_get_subject_name(ca->cert)),
			 0);

	/* Extensions. */
	assert_int_equal(ext_critical(a, NID_key_usage), 1);
	assert_int_equal(X509_get_key_usage(a), KU_DIGITAL_SIGNATURE);
	assert_int_equal(ext_critical(a, NID_ext_key_usage), 0);
	assert_int_equal(X509_get_extended_key_usage(a), XKU_SSL_SERVER);
	assert_int_equal(ext_critical(a, NID_subject_alt_name), 0);
	assert_int_equal(ext_critical(a, NID_basic_constraints), 1);
	assert_int_equal(X509_check_ca(a), 0);
	assert_non_null(X509_get0_subject_key_id(a));
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(a),
					       X509_get0_subject_key_id(ca->cert)),
			 0);
	assert_int_equal(X509_check_purpose(a, X509_PURPOSE_SSL_SERVER, 0), 1);

	/* Signed by the CA key with ECDSA-SHA256. */
	assert_int_equal(X509_verify(a, ca->key), 1);
	assert_int_equal(X509_get_signature_nid(a), NID_ecdsa_with_SHA256);
	assert_int_equal(X509_get_version(a), X509_VERSION_3);

	X509_free(a);
	X509_free(b);
	EVP_PKEY_free(ka);
	EVP_PKEY_free(kb);
	mg_tls_ca_free(ca);
}

static void test_leaf_long_name_and_ip_only(void **state)
{
	static const char *const ip_only[] = {"192.0.2.7"};
	struct tmpdir *t = *state;
	char longname[128], cn[64];
	const char *names[1] = {longname};
	struct mg_tls_err err;
	struct mg_tls_ca *ca;
	EVP_PKEY *key;
	X509 *leaf;

	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, NULL, &err), 0);
	/* 70 bytes: over the 64-byte CN limit, so no CN and a critical SAN. */
	snprintf(longname, sizeof(longname), "%s.%s.example", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	assert_int_equal(mg_tls_leaf_issue(ca, names, 1, NULL, 0, 60, &leaf, &key, &err), 0);
	assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(leaf)), 0);
	assert_int_equal(ext_critical(leaf, NID_subject_alt_name), 1);
	assert_int_equal(X509_check_host(leaf, longname, 0, 0, NULL), 1);
	X509_free(leaf);
	EVP_PKEY_free(key);

	/* IP only: CN falls back to the address. */
	assert_int_equal(mg_tls_leaf_issue(ca, NULL, 0, ip_only, 1, 60, &leaf, &key, &err), 0);
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn,
					      sizeof(cn)) > 0);
	assert_string_equal(cn, "192.0.2.7");
	assert_int_equal(X509_check_ip_asc(leaf, "192.0.2.7", 0), 1);
	X509_free(leaf);
	EVP_PKEY_free(key);
	mg_tls_ca_free(ca);
}

static void test_leaf_rejects_bad_input(void **state)
{
	static const char *const bad_dns[] = {
		"a,DNS:evil.example", "",  "a..b",     ".a", "a.", "a b", "a\nb",
		"x*.example",	      "*", "é.example"};
	static const char *const bad_ips[] = {"10.0.0.256", "10.0.0.1x",    "10.0.0", "1::2::3",
					      "[10.0.0.1]", "fe80::1%eth0", "",	      "0x0a000001"};
	static const char *const good[] = {"*.svc.example"};
	struct tmpdir *t = *state;
	EVP_PKEY *key = NULL;
	struct mg_tls_err err;
	struct mg_tls_ca *ca;
	X509 *leaf = NULL;
	size_t i;

	assert_int_equal(mg_tls_ca_load_or_create(&ca, t->cert, t->key, NULL, &err), 0);
	for (i = 0; i < sizeof(bad_dns) / sizeof(bad_dns[0]); i++) {
		assert_int_equal(
			mg_tls_leaf_issue(ca, &bad_dns[i], 1, NULL, 0, 60, &leaf, &key, &err),
			-EINVAL);
		assert_non_null(strstr(err.msg, "invalid DNS name"));
	}
	for (i = 0; i < sizeof(bad_ips) / sizeof(bad_ips[0]); i++) {
		assert_int_equal(
			mg_tls_leaf_issue(ca, good, 1, &bad_ips[i], 1, 60, &leaf, &key, &err),
			-EINVAL);
		assert_non_null(strstr(err.msg, "invalid IP"));
	}
	assert_int_equal(mg_tls_leaf_issue(ca, NULL, 0, NULL, 0, 60, &leaf, &key, &err), -EINVAL);
	assert_int_equal(mg_tls_leaf_issue(ca, good, 1, NULL, 0, 0, &leaf, &key, &err), -EINVAL);
	assert_null(leaf);
	assert_null(key);
	/* A leading wildcard label is fine. */
	assert_int_equal(mg_tls_leaf_issue(ca, good, 1, NULL, 0, 60, &leaf, &key, &err), 0);
	assert_int_equal(X509_check_host(leaf, "api.svc.example", 0, 0, NULL), 1);
	X509_free(leaf);
	EVP_PKEY_free(key);
	mg_tls_ca_free(ca);
}

static void test_is_ip_literal(void **state)
{
	(void)state;
	assert_true(mg_tls_is_ip_literal("10.96.0.1"));
	assert_true(mg_tls_is_ip_literal("::1"));
	assert_true(mg_tls_is_ip_literal("[fd00::1]"));
	assert_false(mg_tls_is_ip_literal("[10.96.0.1]"));
	assert_false(mg_tls_is_ip_literal("kubernetes.default.svc"));
	assert_false(mg_tls_is_ip_literal("10.96.0.1.nip.io"));
	assert_false(mg_tls_is_ip_literal(""));
	assert_false(mg_tls_is_ip_literal(NULL));
}

/* ---- ALPN ---- */

static int alpn(const char *wire, size_t len, const char **sel, unsigned char *sel_len)
{
	const unsigned char *out = NULL;
	int rc;

	*sel_len = 0;
	rc = select_alpn(NULL, &out, sel_len, (const unsigned char *)wire, (unsigned)len, NULL);
	*sel = (const char *)out;
	return rc;
}

static void test_select_alpn(void **state)
{
	unsigned char n;
	const char *sel;

	(void)state;
	assert_int_equal(alpn("\x02h2\x08http/1.1", 12, &sel, &n), SSL_TLSEXT_ERR_OK);
	assert_int_equal(n, 8);
	assert_memory_equal(sel, "http/1.1", 8);
	assert_int_equal(alpn("\x08http/1.1\x02h2", 12, &sel, &n), SSL_TLSEXT_ERR_OK);
	assert_memory_equal(sel, "http/1.1", 8);
	assert_int_equal(alpn("\x02h2", 3, &sel, &n), SSL_TLSEXT_ERR_NOACK);
	assert_int_equal(alpn("\x08http/1.0", 9, &sel, &n), SSL_TLSEXT_ERR_NOACK);
	assert_int_equal(alpn("\x09http/1.1x", 10, &sel, &n), SSL_TLSEXT_ERR_NOACK);
	/* A length running past the list is never read beyond it. */
	assert_int_equal(alpn("\x02h2\x09http/1.1", 12, &sel, &n), SSL_TLSEXT_ERR_NOACK);
	assert_int_equal(alpn("\x00\x08http/1.1", 10, &sel, &n), SSL_TLSEXT_ERR_NOACK);
	assert_int_equal(alpn("", 0, &sel, &n), SSL_TLSEXT_ERR_NOACK);
}

/* ---- handshakes ---- */

struct hs_fixture {
	struct tmpdir td;
	struct mg_tls_ca *ca;
	struct mg_tls_server *srv;
	SSL_CTX *cctx;
	char bundle[192];
};

static int hs_setup(void **state)
{
	struct mg_tls_server_opts o = {
		.dns_names = k8s_dns, .n_dns = 4, .ips = k8s_ips, .n_ips = 2};
	struct hs_fixture *f = calloc(1, sizeof(*f));
	struct tmpdir *t;
	struct mg_tls_err err;

	assert_non_null(f);
	tmpdir_setup(state);
	t = *state;
	f->td = *t;
	free(t);
	assert_int_equal(mg_tls_ca_load_or_create(&f->ca, f->td.cert, f->td.key, NULL, &err), 0);
	f->srv = mg_tls_server_new(f->ca, &o, &err);
	assert_non_null(f->srv);
	/* The pods trust an exported copy, as the manifests mount it. */
	snprintf(f->bundle, sizeof(f->bundle), "%s/ca-bundle.crt", f->td.dir);
	assert_int_equal(mg_tls_write_pem(f->bundle, mg_tls_ca_cert(f->ca)), 0);
	f->cctx = mg_tls_client_ctx_new(f->bundle, &err);
	assert_non_null(f->cctx);
	*state = f;
	return 0;
}

static int hs_teardown(void **state)
{
	struct hs_fixture *f = *state;

	SSL_CTX_free(f->cctx);
	mg_tls_server_free(f->srv);
	mg_tls_ca_free(f->ca);
	nftw(f->td.dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void test_handshake_h2_offer_gets_http11(void **state)
{
	struct hs_fixture *f = *state;
	SSL *c = client_ssl(f->cctx, "kubernetes.default.svc");
	SSL *s = server_ssl(f->srv);
	const unsigned char *sel;
	unsigned int n;
	const char *sni;

	/* What kubectl offers. */
	assert_int_equal(SSL_set_alpn_protos(c, (const unsigned char *)"\x02h2\x08http/1.1", 12),
			 0);
	assert_int_equal(handshake(c, s), 0);
	assert_int_equal(SSL_get_verify_result(c), X509_V_OK);
	SSL_get0_alpn_selected(c, &sel, &n);
	assert_int_equal(n, 8);
	assert_memory_equal(sel, "http/1.1", 8);
	SSL_get0_alpn_selected(s, &sel, &n);
	assert_int_equal(n, 8);
	sni = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
	assert_non_null(sni);
	assert_string_equal(sni, "kubernetes.default.svc");
	assert_true(SSL_version(c) >= TLS1_2_VERSION);
	/* Leaf only: the CA is the pods' trust anchor, not sent. */
	assert_int_equal(sk_X509_num(SSL_get_peer_cert_chain(c)), 1);
	SSL_free(c);
	SSL_free(s);
}

static void test_handshake_default_client_alpn(void **state)
{
	struct hs_fixture *f = *state;
	SSL *c = client_ssl(f->cctx, "kubernetes");
	SSL *s = server_ssl(f->srv);
	const unsigned char *sel;
	unsigned int n;

	assert_int_equal(handshake(c, s), 0);
	SSL_get0_alpn_selected(c, &sel, &n);
	assert_int_equal(n, 8);
	assert_memory_equal(sel, "http/1.1", 8);
	SSL_free(c);
	SSL_free(s);
}

static void test_handshake_h2_only_no_alpn(void **state)
{
	struct hs_fixture *f = *state;
	SSL *c = client_ssl(f->cctx, "kubernetes.default");
	SSL *s = server_ssl(f->srv);
	const unsigned char *sel;
	unsigned int n;

	assert_int_equal(SSL_set_alpn_protos(c, (const unsigned char *)"\x02h2", 3), 0);
	/* NOACK: the handshake completes, with no protocol selected. */
	assert_int_equal(handshake(c, s), 0);
	SSL_get0_alpn_selected(c, &sel, &n);
	assert_int_equal(n, 0);
	SSL_free(c);
	SSL_free(s);
}

static void test_handshake_wrong_host_fails(void **state)
{
	struct hs_fixture *f = *state;
	SSL *c = client_ssl(f->cctx, "kubernetes.evil.example");
	SSL *s = server_ssl(f->srv);

	assert_int_equal(handshake(c, s), -1);
	assert_int_equal(SSL_get_verify_result(c), X509_V_ERR_HOSTNAME_MISMATCH);
	SSL_free(c);
	SSL_free(s);
}

static void test_handshake_ip(void **state)
{
	struct hs_fixture *f = *state;
	SSL *c = client_ssl(f->cctx, "10.96.0.1");
	SSL *s = server_ssl(f->srv);

	assert_int_equal(handshake(c, s), 0);
	assert_int_equal(SSL_get_verify_result(c), X509_V_OK);
	/* No SNI for an IP literal (RFC 6066 §3). */
	assert_null(SSL_get_servername(s, TLSEXT_NAMETYPE_host_name));
	SSL_free(c);
	SSL_free(s);

	c = client_ssl(f->cctx, "[fd00:10:96::1]");
	s = server_ssl(f->srv);
	assert_int_equal(handshake(c, s), 0);
	SSL_free(c);
	SSL_free(s);

	c = client_ssl(f->cctx, "10.96.0.2");
	s = server_ssl(f->srv);
	assert_int_equal(handshake(c, s), -1);
	assert_int_equal(SSL_get_verify_result(c), X509_V_ERR_IP_ADDRESS_MISMATCH);
	SSL_free(c);
	SSL_free(s);
}

static void test_handshake_other_ca_fails(void **state)
{
	struct hs_fixture *f = *state;
	char c2[192], k2[192];
	struct mg_tls_ca *other;
	struct mg_tls_err err;
	SSL_CTX *octx;
	SSL *c, *s;

	snprintf(c2, sizeof(c2), "%s/other/ca.crt", f->td.dir);
	snprintf(k2, sizeof(k2), "%s/other/ca.key", f->td.dir);
	assert_int_equal(mg_tls_ca_load_or_create(&other, c2, k2, NULL, &err), 0);
	octx = mg_tls_client_ctx_new(c2, &err);
	assert_non_null(octx);
	c = client_ssl(octx, "kubernetes.default.svc");
	s = server_ssl(f->srv);
	assert_int_equal(handshake(c, s), -1);
	assert_int_equal(SSL_get_verify_result(c), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(octx);
	mg_tls_ca_free(other);
}

static void test_client_ctx_errors(void **state)
{
	struct hs_fixture *f = *state;
	struct mg_tls_err err;
	char empty[192];

	assert_null(mg_tls_client_ctx_new("/nonexistent/mcpgate/ca.crt", &err));
	assert_non_null(strstr(err.msg, "/nonexistent/mcpgate/ca.crt"));
	assert_null(strchr(err.msg, '\n'));
	assert_int_equal(ERR_peek_error(), 0); /* drained into the message */

	snprintf(empty, sizeof(empty), "%s/empty.crt", f->td.dir);
	write_file(empty, "", 0, 0644);
	assert_null(mg_tls_client_ctx_new(empty, &err));
	assert_null(mg_tls_client_ctx_new(NULL, &err));
	assert_null(mg_tls_client_ctx_new("", &err));
}

static void test_ctx_settings(void **state)
{
	struct hs_fixture *f = *state;
	SSL_CTX *sctx = mg_tls_server_ctx(f->srv);

	assert_int_equal(SSL_CTX_get_min_proto_version(sctx), TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_get_min_proto_version(f->cctx), TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_get_verify_mode(f->cctx), SSL_VERIFY_PEER);
	assert_true(SSL_CTX_get_options(sctx) & SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_free(sctx);
}

/* A TLS 1.1-only client is refused by the server (not just by its own
 * security level). */
static void test_tls11_client_refused(void **state)
{
	struct hs_fixture *f = *state;
	SSL_CTX *old = SSL_CTX_new(TLS_client_method());
	SSL *c, *s;
	unsigned long e;
	bool unsupported = false;
	BIO *bc, *bs;
	int i;

	assert_non_null(old);
	SSL_CTX_set_security_level(old, 0);
	assert_int_equal(SSL_CTX_set_min_proto_version(old, TLS1_VERSION), 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION), 1);
	assert_int_equal(SSL_CTX_set_cipher_list(old, "ALL:@SECLEVEL=0"), 1);
	c = SSL_new(old);
	s = server_ssl(f->srv);
	assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
	SSL_set_bio(c, bc, bc);
	SSL_set_bio(s, bs, bs);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	ERR_clear_error();
	for (i = 0; i < 8; i++) {
		SSL_do_handshake(c);
		if (SSL_do_handshake(s) <= 0 && SSL_get_error(s, -1) == SSL_ERROR_SSL)
			break;
	}
	while ((e = ERR_get_error()))
		if (ERR_GET_REASON(e) == SSL_R_UNSUPPORTED_PROTOCOL)
			unsupported = true;
	assert_true(unsupported);
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(old);
}

static void test_client_prepare_rejects(void **state)
{
	struct hs_fixture *f = *state;
	SSL *c = SSL_new(f->cctx);

	assert_int_equal(mg_tls_client_prepare(c, NULL), -EINVAL);
	assert_int_equal(mg_tls_client_prepare(c, ""), -EINVAL);
	assert_int_equal(mg_tls_client_prepare(c, "a,b"), -EINVAL);
	assert_int_equal(mg_tls_client_prepare(c, "fe80::1%eth0"), -EINVAL);
	assert_int_equal(mg_tls_client_prepare(c, "*.example"), -EINVAL);
	assert_int_equal(mg_tls_client_prepare(NULL, "kubernetes"), -EINVAL);
	SSL_free(c);
}

/* ---- renewal ---- */

static void test_renew_swaps_ctx(void **state)
{
	struct mg_tls_server_opts o = {.dns_names = k8s_dns,
				       .n_dns = 3,
				       .ips = k8s_ips,
				       .n_ips = 1,
				       .validity_seconds = 120};
	struct hs_fixture *f = *state;
	SSL_CTX *old_ctx, *new_ctx, *again;
	struct mg_tls_server *srv;
	time_t t0, na0, na1;
	struct mg_tls_err err;
	SSL *old_s, *c, *s;

	t0 = time(NULL);
	srv = mg_tls_server_new(f->ca, &o, &err);
	assert_non_null(srv);
	na0 = mg_tls_server_leaf_not_after(srv);
	assert_in_range(na0, t0 + 120, time(NULL) + 120);

	/* A connection accepted before the renewal. */
	old_ctx = mg_tls_server_ctx(srv);
	old_s = SSL_new(old_ctx);
	assert_non_null(old_s);
	SSL_CTX_free(old_ctx);

	/* renew_before defaults to validity / 3 = 40 s. */
	assert_int_equal(mg_tls_server_maybe_renew(srv, t0), 0);
	assert_int_equal(mg_tls_server_maybe_renew(srv, na0 - 41), 0);
	again = mg_tls_server_ctx(srv);
	assert_ptr_equal(again, old_ctx);
	SSL_CTX_free(again);

	assert_int_equal(mg_tls_server_maybe_renew(srv, na0 - 40), 1);
	na1 = mg_tls_server_leaf_not_after(srv);
	assert_int_equal(na1, na0 - 40 + 120);
	assert_true(na1 > na0);
	new_ctx = mg_tls_server_ctx(srv);
	assert_ptr_not_equal(new_ctx, old_ctx);
	/* The fresh leaf is not due again. */
	assert_int_equal(mg_tls_server_maybe_renew(srv, na0 - 40), 0);

	/* The old connection still completes, with the old leaf. */
	assert_ptr_equal(SSL_get_SSL_CTX(old_s), old_ctx);
	c = client_ssl(f->cctx, "kubernetes.default.svc");
	assert_int_equal(handshake(c, old_s), 0);
	assert_int_equal(peer_not_after(c), na0);
	SSL_free(c);
	SSL_free(old_s); /* drops the last reference to the old context */

	/* A new connection gets the new leaf. */
	c = client_ssl(f->cctx, "kubernetes.default.svc");
	s = SSL_new(new_ctx);
	SSL_CTX_free(new_ctx);
	assert_int_equal(handshake(c, s), 0);
	assert_int_equal(peer_not_after(c), na1);
	SSL_free(c);
	SSL_free(s);

	mg_tls_server_last_err(srv, &err);
	assert_string_equal(err.msg, "");
	mg_tls_server_free(srv);
}

static void test_server_opts_validation(void **state)
{
	struct mg_tls_server_opts o = {.dns_names = k8s_dns,
				       .n_dns = 1,
				       .validity_seconds = 60,
				       .renew_before_seconds = 60};
	static const char *const bad[] = {"bad name"};
	struct hs_fixture *f = *state;
	struct mg_tls_server *srv;
	struct mg_tls_err err;

	assert_null(mg_tls_server_new(f->ca, &o, &err));
	assert_non_null(strstr(err.msg, "renew_before"));
	o.renew_before_seconds = 0;
	o.validity_seconds = 0;
	srv = mg_tls_server_new(f->ca, &o, &err);
	assert_non_null(srv);
	/* Default validity 24 h, renewed 8 h before expiry. */
	assert_int_equal(srv->validity, 24 * 3600);
	assert_int_equal(srv->renew_before, 8 * 3600);
	mg_tls_server_free(srv);
	o.dns_names = bad;
	assert_null(mg_tls_server_new(f->ca, &o, &err));
	assert_non_null(strstr(err.msg, "invalid DNS name"));
	o.n_dns = 0;
	assert_null(mg_tls_server_new(f->ca, &o, &err));
	assert_null(mg_tls_server_new(NULL, &o, &err));
}

/* An IP the leaf does not name yet fails verification until set_ips says
 * it; a bad address is refused and leaves the old leaf and IPs in place
 * (renewals keep the new IPs). */
static void test_set_ips_reissues(void **state)
{
	static const char *const none[] = {"10.96.0.1"};
	static const char *const both[] = {"10.96.0.1", "10.97.0.10"};
	static const char *const bad[] = {"10.97.0.999"};
	struct mg_tls_server_opts o = {
		.dns_names = k8s_dns, .n_dns = 4, .ips = none, .n_ips = 1, .validity_seconds = 120};
	struct hs_fixture *f = *state;
	struct mg_tls_server *srv;
	struct mg_tls_err err;
	SSL *c, *s;

	srv = mg_tls_server_new(f->ca, &o, &err);
	assert_non_null(srv);
	c = client_ssl(f->cctx, "10.97.0.10");
	s = server_ssl(srv);
	assert_int_equal(handshake(c, s), -1);
	assert_int_equal(SSL_get_verify_result(c), X509_V_ERR_IP_ADDRESS_MISMATCH);
	SSL_free(c);
	SSL_free(s);

	assert_int_equal(mg_tls_server_set_ips(srv, both, 2, &err), 0);
	c = client_ssl(f->cctx, "10.97.0.10");
	s = server_ssl(srv);
	assert_int_equal(handshake(c, s), 0);
	SSL_free(c);
	SSL_free(s);

	assert_true(mg_tls_server_set_ips(srv, bad, 1, &err) < 0);
	assert_true(err.msg[0] != '\0');
	assert_int_equal(mg_tls_server_maybe_renew(srv, time(NULL) + 100), 1);
	c = client_ssl(f->cctx, "10.97.0.10");
	s = server_ssl(srv);
	assert_int_equal(handshake(c, s), 0);
	SSL_free(c);
	SSL_free(s);
	mg_tls_server_free(srv);
}

/* The server state must outlive the CA handle it was made from. */
static void test_server_outlives_ca(void **state)
{
	struct mg_tls_server_opts o = {.dns_names = k8s_dns, .n_dns = 1, .validity_seconds = 60};
	struct hs_fixture *f = *state;
	struct mg_tls_server *srv;
	struct mg_tls_err err;
	struct mg_tls_ca *ca;
	SSL *c, *s;

	assert_int_equal(mg_tls_ca_load_or_create(&ca, f->td.cert, f->td.key, NULL, &err), 0);
	srv = mg_tls_server_new(ca, &o, &err);
	assert_non_null(srv);
	mg_tls_ca_free(ca);
	assert_int_equal(mg_tls_server_maybe_renew(srv, time(NULL) + 50), 1);
	c = client_ssl(f->cctx, "kubernetes");
	s = server_ssl(srv);
	assert_int_equal(handshake(c, s), 0);
	SSL_free(c);
	SSL_free(s);
	mg_tls_server_free(srv);
}

struct churn {
	struct mg_tls_server *srv;
	int n;
};

static void *accept_churn(void *arg)
{
	struct churn *ch = arg;

	for (int i = 0; i < 2000; i++) {
		SSL_CTX *ctx = mg_tls_server_ctx(ch->srv);
		SSL *s = SSL_new(ctx);

		SSL_CTX_free(ctx);
		if (s && SSL_CTX_get0_certificate(SSL_get_SSL_CTX(s)))
			ch->n++;
		SSL_free(s);
	}
	return NULL;
}

/* Renewals on one thread while another takes contexts for new connections:
 * ASan catches a context freed under a reader. */
static void test_renew_concurrent_with_accepts(void **state)
{
	struct mg_tls_server_opts o = {.dns_names = k8s_dns, .n_dns = 1, .validity_seconds = 60};
	struct hs_fixture *f = *state;
	struct mg_tls_err err;
	struct churn ch = {0};
	time_t now = time(NULL);
	pthread_t th;
	int renewed = 0;

	ch.srv = mg_tls_server_new(f->ca, &o, &err);
	assert_non_null(ch.srv);
	assert_int_equal(pthread_create(&th, NULL, accept_churn, &ch), 0);
	for (int i = 1; i <= 20; i++)
		renewed += mg_tls_server_maybe_renew(ch.srv, now + 60 * i);
	pthread_join(th, NULL);
	assert_int_equal(renewed, 20);
	assert_int_equal(ch.n, 2000);
	mg_tls_server_free(ch.srv);
}

int main(void)
{
	const struct CMUnitTest ca_tests[] = {
		cmocka_unit_test_setup_teardown(test_ca_create, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_ca_reload_same, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_ca_refuses_open_key, tmpdir_setup,
						tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_ca_refuses_non_ca_cert, tmpdir_setup,
						tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_ca_constraints, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_ca_refuses_mismatched_key, tmpdir_setup,
						tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_ca_refuses_half_present, tmpdir_setup,
						tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_ca_refuses_encrypted_key, tmpdir_setup,
						tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_ca_pem_export, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_ca_bad_args, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_leaf_verifies_against_ca, tmpdir_setup,
						tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_leaf_fields, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_leaf_long_name_and_ip_only, tmpdir_setup,
						tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_leaf_rejects_bad_input, tmpdir_setup,
						tmpdir_teardown),
		cmocka_unit_test(test_is_ip_literal),
		cmocka_unit_test(test_select_alpn),
	};
	const struct CMUnitTest hs_tests[] = {
		cmocka_unit_test(test_handshake_h2_offer_gets_http11),
		cmocka_unit_test(test_handshake_default_client_alpn),
		cmocka_unit_test(test_handshake_h2_only_no_alpn),
		cmocka_unit_test(test_handshake_wrong_host_fails),
		cmocka_unit_test(test_handshake_ip),
		cmocka_unit_test(test_handshake_other_ca_fails),
		cmocka_unit_test(test_client_ctx_errors),
		cmocka_unit_test(test_ctx_settings),
		cmocka_unit_test(test_tls11_client_refused),
		cmocka_unit_test(test_client_prepare_rejects),
		cmocka_unit_test(test_renew_swaps_ctx),
		cmocka_unit_test(test_server_opts_validation),
		cmocka_unit_test(test_set_ips_reissues),
		cmocka_unit_test(test_server_outlives_ca),
		cmocka_unit_test(test_renew_concurrent_with_accepts),
	};
	int fails = 0;

	fails += cmocka_run_group_tests_name("tls_ca_leaf", ca_tests, NULL, NULL);
	fails += cmocka_run_group_tests_name("tls_handshake", hs_tests, hs_setup, hs_teardown);
	return fails ? 1 : 0;
}
