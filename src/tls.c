/*
 * tls — see tls.h.
 *
 * Sessions: the context's cache keeps the latest sessions per peer key (the
 * client cache of OpenSSL is keyed by session id, which a client never knows
 * in advance, so zklb keeps its own). Sessions arrive through OpenSSL's
 * new-session callback — with TLS 1.3 as tickets after the handshake, read
 * by whichever SSL_read meets them — and are taken by the next
 * tls_conn_new() to that peer. A TLS 1.3 ticket is meant to be used once
 * (RFC 8446 C.4), and servers resume a ticket offered by several connections
 * at once less often: so while a peer has more than one, each connection
 * takes its own; the last one is shared rather than given up (and a TLS 1.2
 * session, which a resumption does not renew, is always shared). A failed
 * handshake drops the peer's sessions. The cache is bounded; past TLS_CACHE_MAX peers the oldest entry
 * gives way. A new context (a reload) starts with an empty cache, so a
 * session verified under an old CA never resumes under a new one.
 *
 * Buffers: SSL_MODE_RELEASE_BUFFERS gives the 16 KiB record buffers back
 * whenever a connection is idle, so an idle (or pooled) TLS connection holds
 * no record buffer; partial writes and moving write buffers let the relay
 * keep what the socket refused in its own bounded buffer and retry from
 * there.
 */
#include "tls.h"
#include "config.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define TLS_CACHE_MAX 1024		/* peers with a cached session per context */
#define TLS_SESSIONS_PER_PEER 8		/* TLS 1.3 tickets kept per peer */
#define TLS_REASON_LEN 160

struct tls_cache_entry {
	char *peer;			/* owned; the peer key */
	SSL_SESSION *sess[TLS_SESSIONS_PER_PEER];	/* owned references, oldest first */
	unsigned n;			/* sessions in sess */
};

struct tls_ctx {
	_Atomic uint32_t refs;
	SSL_CTX *ssl_ctx;		/* owned */
	char *server_name;		/* owned; NULL: verify each peer's own host */
	bool verify;			/* check the chain and the name */
	bool session_reuse;		/* keep and offer sessions */
	pthread_mutex_t cache_lock;	/* guards the cache */
	struct tls_cache_entry *cache;	/* owned, cache_n used of cache_cap; grows to TLS_CACHE_MAX */
	size_t cache_n;
	size_t cache_cap;
	size_t cache_next;		/* the entry that gives way when the cache is full */
	unsigned char alpn[256];	/* server contexts: the protocol selected (length-prefixed) */
};

struct tls_conn {
	struct tls_ctx *ctx;		/* ref */
	SSL *ssl;			/* owned */
	char *peer;			/* owned; cache key */
	enum tls_result outcome;	/* valid once the handshake ended */
	uint64_t wire_in_seen;		/* bytes: the socket BIO's read count at the last delta */
	uint64_t wire_out_seen;		/* bytes: its write count at the last delta */
	char reason[TLS_REASON_LEN];	/* why it failed; "" otherwise */
};

static int conn_index = -1;		/* SSL ex_data slot holding the struct tls_conn */
static pthread_once_t conn_index_once = PTHREAD_ONCE_INIT;

static const char *const result_names[TLS_RESULTS] = {
	[TLS_RESULT_FULL] = "full",
	[TLS_RESULT_RESUMED] = "resumed",
	[TLS_RESULT_VERIFY] = "verify",
	[TLS_RESULT_TIMEOUT] = "timeout",
	[TLS_RESULT_PROTOCOL] = "protocol",
};

const char *tls_result_name(enum tls_result r)
{
	return r < TLS_RESULTS ? result_names[r] : "?";
}

int tls_version_parse(const char *s)
{
	if (!s)
		return 0;
	if (strcmp(s, "1.2") == 0)
		return TLS1_2_VERSION;
	if (strcmp(s, "1.3") == 0)
		return TLS1_3_VERSION;
	return 0;
}

bool tls_name_is_host(const char *name)
{
	unsigned char buf[sizeof(struct in6_addr)];
	if (!name || !*name)
		return false;
	/* RFC 6066: "Literal IPv4 and IPv6 addresses are not permitted". */
	return inet_pton(AF_INET, name, buf) != 1 && inet_pton(AF_INET6, name, buf) != 1;
}

const char *tls_peer_name(const char *server_name, const char *host)
{
	return server_name && *server_name ? server_name : host;
}

bool tls_key_mode_open(mode_t mode)
{
	return (mode & 077) != 0;
}

static void conn_index_init(void)
{
	conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* The last OpenSSL error of this thread, as text, with a prefix. */
static void ssl_reason(char *buf, size_t len, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char s[120];
	if (e) {
		ERR_error_string_n(e, s, sizeof(s));
		snprintf(buf, len, "%s: %s", what, s);
	} else {
		snprintf(buf, len, "%s", what);
	}
	ERR_clear_error();
}

/* --- The session cache ----------------------------------------------------- */

static long cache_find(struct tls_ctx *c, const char *peer)
{
	for (size_t i = 0; i < c->cache_n; i++)
		if (strcmp(c->cache[i].peer, peer) == 0)
			return (long)i;
	return -1;
}

static void entry_clear(struct tls_cache_entry *e)
{
	for (unsigned k = 0; k < e->n; k++)
		SSL_SESSION_free(e->sess[k]);
	e->n = 0;
}

/* Keep sess (a reference the cache takes over) for peer. */
static void cache_store(struct tls_ctx *c, const char *peer, SSL_SESSION *sess)
{
	SSL_SESSION *old = NULL;
	pthread_mutex_lock(&c->cache_lock);
	long i = cache_find(c, peer);
	if (i < 0 && c->cache_n < TLS_CACHE_MAX) {
		if (c->cache_n == c->cache_cap) {
			c->cache_cap = c->cache_cap ? MIN(c->cache_cap * 2, TLS_CACHE_MAX) : 8;
			c->cache = xrealloc(c->cache, c->cache_cap * sizeof(*c->cache));
		}
		i = (long)c->cache_n++;
		c->cache[i] = (struct tls_cache_entry){ .peer = xstrdup(peer) };
	} else if (i < 0) {
		i = (long)c->cache_next;
		c->cache_next = (c->cache_next + 1) % TLS_CACHE_MAX;
		free(c->cache[i].peer);
		c->cache[i].peer = xstrdup(peer);
		entry_clear(&c->cache[i]);	/* frees under the lock: rare (a full cache) */
	}
	struct tls_cache_entry *e = &c->cache[i];
	if (e->n == TLS_SESSIONS_PER_PEER) {
		old = e->sess[0];
		memmove(e->sess, e->sess + 1, (e->n - 1) * sizeof(e->sess[0]));
		e->n--;
	}
	e->sess[e->n++] = sess;
	pthread_mutex_unlock(&c->cache_lock);
	SSL_SESSION_free(old);
}

/* A reference to a session of peer (the newest), or NULL. */
static SSL_SESSION *cache_take(struct tls_ctx *c, const char *peer)
{
	SSL_SESSION *s = NULL;
	pthread_mutex_lock(&c->cache_lock);
	long i = cache_find(c, peer);
	struct tls_cache_entry *e = i >= 0 ? &c->cache[i] : NULL;
	if (e && e->n) {
		s = e->sess[e->n - 1];
		if (e->n > 1 && SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION)
			e->n--;			/* ours alone: the reference moves to the caller */
		else if (!SSL_SESSION_up_ref(s))
			s = NULL;
	}
	pthread_mutex_unlock(&c->cache_lock);
	return s;
}

static void cache_drop(struct tls_ctx *c, const char *peer)
{
	struct tls_cache_entry gone = { 0 };
	pthread_mutex_lock(&c->cache_lock);
	long i = cache_find(c, peer);
	if (i >= 0) {
		memcpy(gone.sess, c->cache[i].sess, sizeof(gone.sess));
		gone.n = c->cache[i].n;
		c->cache[i].n = 0;
	}
	pthread_mutex_unlock(&c->cache_lock);
	entry_clear(&gone);
}

/* OpenSSL hands us a new session (a ticket): keep it for the peer. 1 = we took the reference. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_conn *t = SSL_get_ex_data(ssl, conn_index);
	if (!t || !t->ctx->session_reuse || !SSL_SESSION_is_resumable(sess))
		return 0;
	cache_store(t->ctx, t->peer, sess);
	return 1;
}

/* --- Contexts -------------------------------------------------------------- */

/*
 * ALPN on the accepting side: the one protocol the server offers (its
 * context's `alpn`, wire format) must be among the client's, else the
 * handshake fails — a trunk speaks nothing but h2.
 */
static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			  const unsigned char *in, unsigned int inlen, void *arg)
{
	const unsigned char *want = arg;
	unsigned char *sel = NULL;
	(void)ssl;
	if (SSL_select_next_proto(&sel, outlen, want, (unsigned)want[0] + 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static struct tls_ctx *ctx_new(const struct tls_conf *conf, const char *alpn,
			       const char **bad_key, char *err, size_t err_len);

struct tls_ctx *tls_ctx_new(const struct tls_conf *conf, const char **bad_key, char *err,
			    size_t err_len)
{
	return ctx_new(conf, NULL, bad_key, err, err_len);
}

struct tls_ctx *tls_ctx_new_server(const struct tls_conf *conf, const char *alpn,
				   const char **bad_key, char *err, size_t err_len)
{
	if (!conf->cert || !conf->key || !alpn || !*alpn || strlen(alpn) > 255) {
		*bad_key = conf->cert ? "key" : "cert";
		snprintf(err, err_len, "the accepting side needs a certificate and its key");
		return NULL;
	}
	return ctx_new(conf, alpn, bad_key, err, err_len);
}

struct tls_ctx *tls_ctx_new_client(const struct tls_conf *conf, const char *alpn,
				   const char **bad_key, char *err, size_t err_len)
{
	unsigned char wire[256];
	size_t n = alpn ? strlen(alpn) : 0;
	if (n == 0 || n > 255) {
		*bad_key = "";
		snprintf(err, err_len, "no ALPN protocol to offer");
		return NULL;
	}
	struct tls_ctx *c = ctx_new(conf, NULL, bad_key, err, err_len);
	if (!c)
		return NULL;
	wire[0] = (unsigned char)n;
	memcpy(wire + 1, alpn, n);
	/* OpenSSL's one API that returns 0 on success. */
	if (SSL_CTX_set_alpn_protos(c->ssl_ctx, wire, (unsigned)n + 1) != 0) {
		*bad_key = "";
		ssl_reason(err, err_len, "cannot offer ALPN");
		tls_ctx_put(c);
		return NULL;
	}
	return c;
}

/* alpn: NULL for a client context, else the protocol a server context selects. */
static struct tls_ctx *ctx_new(const struct tls_conf *conf, const char *alpn,
			       const char **bad_key, char *err, size_t err_len)
{
	*bad_key = NULL;
	pthread_once(&conn_index_once, conn_index_init);
	ERR_clear_error();
	SSL_CTX *sc = SSL_CTX_new(alpn ? TLS_server_method() : TLS_client_method());
	if (!sc) {
		ssl_reason(err, err_len, "cannot create a TLS context");
		*bad_key = "";
		return NULL;
	}
	int min = tls_version_parse(conf->min_version);
	*bad_key = "min_version";
	if (!min || !SSL_CTX_set_min_proto_version(sc, min)) {
		snprintf(err, err_len, "\"%s\" is not 1.2 or 1.3",
			 conf->min_version ? conf->min_version : "");
		goto fail;
	}
	*bad_key = "ciphers";
	if (conf->ciphers && !SSL_CTX_set_cipher_list(sc, conf->ciphers)) {
		ssl_reason(err, err_len, "no cipher of this list is known");
		goto fail;
	}
	*bad_key = "ca";
	if (conf->ca) {
		if (!SSL_CTX_load_verify_locations(sc, conf->ca, NULL)) {
			char what[300];
			snprintf(what, sizeof(what), "cannot load %s as PEM certificates", conf->ca);
			ssl_reason(err, err_len, what);
			goto fail;
		}
	} else if (conf->verify && !SSL_CTX_set_default_verify_paths(sc)) {
		ssl_reason(err, err_len, "cannot load the system's CA store");
		goto fail;
	}
	if (conf->cert) {
		char what[300];
		*bad_key = "cert";
		if (!SSL_CTX_use_certificate_chain_file(sc, conf->cert)) {
			snprintf(what, sizeof(what), "cannot load %s as a PEM certificate chain", conf->cert);
			ssl_reason(err, err_len, what);
			goto fail;
		}
		*bad_key = "key";
		if (!SSL_CTX_use_PrivateKey_file(sc, conf->key, SSL_FILETYPE_PEM)) {
			/* OpenSSL checks the pair while loading: say which problem it was. */
			if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
				snprintf(what, sizeof(what), "%s does not match the certificate %s",
					 conf->key, conf->cert);
			else
				snprintf(what, sizeof(what), "cannot load %s as a PEM private key",
					 conf->key);
			ssl_reason(err, err_len, what);
			goto fail;
		}
		if (!SSL_CTX_check_private_key(sc)) {
			snprintf(what, sizeof(what), "%s does not match the certificate %s",
				 conf->key, conf->cert);
			ssl_reason(err, err_len, what);
			goto fail;
		}
	}
	*bad_key = NULL;
	/* A server that verifies insists on a client certificate: that is mTLS. */
	SSL_CTX_set_verify(sc, !conf->verify ? SSL_VERIFY_NONE
			   : alpn ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
			   : SSL_VERIFY_PEER, NULL);
	/* Renegotiation is a relay's nightmare; an unexpected EOF is the peer's FIN. */
	SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			     SSL_MODE_RELEASE_BUFFERS);
	struct tls_ctx *c = xcalloc(1, sizeof(*c));
	if (alpn) {
		/* Wire format: a length byte, then the name. */
		size_t n = strlen(alpn);
		c->alpn[0] = (unsigned char)n;
		memcpy(c->alpn + 1, alpn, n);
		SSL_CTX_set_alpn_select_cb(sc, on_alpn_select, c->alpn);
		SSL_CTX_set_session_id_context(sc, c->alpn, (unsigned)n + 1);
	} else {
		SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_CLIENT |
						   SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(sc, on_new_session);
	}

	atomic_init(&c->refs, 1);
	c->ssl_ctx = sc;
	c->server_name = conf->server_name ? xstrdup(conf->server_name) : NULL;
	c->verify = conf->verify;
	c->session_reuse = conf->session_reuse;
	pthread_mutex_init(&c->cache_lock, NULL);
	return c;
fail:
	SSL_CTX_free(sc);
	return NULL;
}

struct tls_ctx *tls_ctx_get(struct tls_ctx *ctx)
{
	if (ctx)
		atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
	return ctx;
}

void tls_ctx_put(struct tls_ctx *ctx)
{
	if (!ctx || atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < ctx->cache_n; i++) {
		free(ctx->cache[i].peer);
		entry_clear(&ctx->cache[i]);
	}
	free(ctx->cache);
	pthread_mutex_destroy(&ctx->cache_lock);
	SSL_CTX_free(ctx->ssl_ctx);
	free(ctx->server_name);
	free(ctx);
}

/* --- Connections ----------------------------------------------------------- */

SSL *tls_ssl_new(struct tls_ctx *ctx, const char *host)
{
	ERR_clear_error();
	SSL *ssl = SSL_new(ctx->ssl_ctx);
	if (!ssl)
		return NULL;
	const char *name = tls_peer_name(ctx->server_name, host);
	bool ok = true;
	if (tls_name_is_host(name))
		ok = SSL_set_tlsext_host_name(ssl, name) == 1;
	if (ok && ctx->verify) {
		/* An IP literal is matched against the certificate's IP SANs. */
		if (tls_name_is_host(name))
			ok = SSL_set1_host(ssl, name) == 1;
		else
			ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
	}
	if (!ok) {
		SSL_free(ssl);
		ERR_clear_error();
		return NULL;
	}
	return ssl;
}

/* A connection around ssl (owned from here; freed on failure) on fd. NULL: out of memory. */
static struct tls_conn *conn_wrap(struct tls_ctx *ctx, SSL *ssl, int fd, const char *peer_key)
{
	if (!ssl || !SSL_set_fd(ssl, fd)) {
		SSL_free(ssl);
		ERR_clear_error();
		return NULL;
	}
	struct tls_conn *t = xcalloc(1, sizeof(*t));
	t->ctx = tls_ctx_get(ctx);
	t->ssl = ssl;
	t->peer = xstrdup(peer_key);
	SSL_set_ex_data(ssl, conn_index, t);
	return t;
}

struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, const char *host, const char *peer_key)
{
	struct tls_conn *t = conn_wrap(ctx, tls_ssl_new(ctx, host), fd, peer_key);
	if (!t)
		return NULL;
	SSL_set_connect_state(t->ssl);
	if (ctx->session_reuse) {
		SSL_SESSION *s = cache_take(ctx, peer_key);
		if (s) {
			SSL_set_session(t->ssl, s);	/* takes its own reference */
			SSL_SESSION_free(s);
		}
	}
	return t;
}

struct tls_conn *tls_conn_new_server(struct tls_ctx *ctx, int fd, const char *peer_key)
{
	ERR_clear_error();
	struct tls_conn *t = conn_wrap(ctx, SSL_new(ctx->ssl_ctx), fd, peer_key);
	if (t)
		SSL_set_accept_state(t->ssl);
	return t;
}

void tls_conn_free(struct tls_conn *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	tls_ctx_put(t->ctx);
	free(t->peer);
	free(t);
}

/* Map SSL_get_error() after a call that moved nothing. */
static enum tls_io io_of(struct tls_conn *t, int ret)
{
	int e = SSL_get_error(t->ssl, ret);
	switch (e) {
	case SSL_ERROR_WANT_READ:
		return TLS_IO_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_IO_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return TLS_IO_EOF;
	case SSL_ERROR_SYSCALL:
		if (errno == 0 && ERR_peek_error() == 0) {
			ERR_clear_error();
			return TLS_IO_EOF;
		}
		snprintf(t->reason, sizeof(t->reason), "%s",
			 errno ? strerror(errno) : "connection closed");
		ERR_clear_error();
		return TLS_IO_ERROR;
	default:
		ssl_reason(t->reason, sizeof(t->reason), "TLS error");
		return TLS_IO_ERROR;
	}
}

enum tls_io tls_conn_handshake(struct tls_conn *t)
{
	ERR_clear_error();
	errno = 0;
	int ret = SSL_do_handshake(t->ssl);
	if (ret == 1) {
		t->outcome = SSL_session_reused(t->ssl) ? TLS_RESULT_RESUMED : TLS_RESULT_FULL;
		return TLS_IO_DONE;
	}
	enum tls_io io = io_of(t, ret);
	if (io == TLS_IO_WANT_READ || io == TLS_IO_WANT_WRITE)
		return io;
	long v = SSL_get_verify_result(t->ssl);
	if (t->ctx->verify && v != X509_V_OK) {
		t->outcome = TLS_RESULT_VERIFY;
		snprintf(t->reason, sizeof(t->reason), "certificate verify failed: %s",
			 X509_verify_cert_error_string(v));
	} else {
		t->outcome = TLS_RESULT_PROTOCOL;
		if (io == TLS_IO_EOF)
			snprintf(t->reason, sizeof(t->reason), "connection closed during the handshake");
	}
	cache_drop(t->ctx, t->peer);
	return TLS_IO_ERROR;
}

enum tls_result tls_conn_outcome(const struct tls_conn *t)
{
	return t->outcome;
}

const char *tls_conn_reason(const struct tls_conn *t)
{
	return t->reason;
}

size_t tls_conn_read(struct tls_conn *t, void *buf, size_t len, enum tls_io *io)
{
	size_t n = 0;
	ERR_clear_error();
	errno = 0;
	int ret = SSL_read_ex(t->ssl, buf, len, &n);
	if (ret == 1) {
		*io = TLS_IO_DONE;
		return n;
	}
	*io = io_of(t, ret);
	return 0;
}

size_t tls_conn_write(struct tls_conn *t, const void *buf, size_t len, enum tls_io *io)
{
	size_t n = 0;
	ERR_clear_error();
	errno = 0;
	int ret = SSL_write_ex(t->ssl, buf, len, &n);
	if (ret == 1) {
		*io = TLS_IO_DONE;
		return n;
	}
	*io = io_of(t, ret);
	return 0;
}

bool tls_conn_pending(const struct tls_conn *t)
{
	/* A close_notify already read is something to read too: the EOF. */
	return SSL_pending(t->ssl) > 0 || (SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN);
}

void tls_conn_wire_delta(struct tls_conn *t, uint64_t *in, uint64_t *out)
{
	uint64_t r = BIO_number_read(SSL_get_rbio(t->ssl));
	uint64_t w = BIO_number_written(SSL_get_wbio(t->ssl));
	*in = r - t->wire_in_seen;
	*out = w - t->wire_out_seen;
	t->wire_in_seen = r;
	t->wire_out_seen = w;
}

enum tls_io tls_conn_close_notify(struct tls_conn *t)
{
	ERR_clear_error();
	errno = 0;
	/* 0 = sent, the peer's not seen yet: that is the other direction's business. */
	int ret = SSL_shutdown(t->ssl);
	if (ret >= 0)
		return TLS_IO_DONE;
	enum tls_io io = io_of(t, ret);
	return io == TLS_IO_WANT_WRITE || io == TLS_IO_WANT_READ ? TLS_IO_WANT_WRITE : io;
}
