/*
 * tls — zklb as a TLS client: a context made from a tls: section, and the
 * non-blocking handshake, read, write and close_notify of one connection on
 * a socket the caller owns.
 *
 * A struct tls_ctx is what one tls: section loads: the SSL_CTX (CA store,
 * client certificate, minimum version, ciphers) and a cache of sessions per
 * peer, so a new connection to a peer resumes (one round trip less, no
 * certificate chain). The configuration builds it when it validates a
 * service (so `zklb check` proves the files load and every reload re-reads
 * them); it is reference-counted because connections outlive configurations.
 *
 * A struct tls_conn is one connection's TLS state. It never owns the
 * socket and never touches the event loop: each call says what it waits for
 * (TLS_IO_WANT_READ / WANT_WRITE) and the caller arms its own events. The
 * relay, the pool and the active checks use it; nothing in it is
 * upstream-specific beyond the name it verifies, so a ZooKeeper tunnel or a
 * trunk between zklb hosts can use it as is.
 *
 * The pure decisions (version names, whether a name gets SNI, which name is
 * verified, whether a key file's mode is too open) are exported for the
 * unit tests.
 *
 * Threads: a tls_ctx is shared by every worker (OpenSSL's SSL_CTX is
 * thread-safe once built; the session cache takes a lock); a tls_conn
 * belongs to the thread that drives its socket.
 */
#ifndef ZKLB_TLS_H
#define ZKLB_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/types.h>	/* SSL, without the whole of ssl.h */

struct tls_conf;
struct tls_ctx;
struct tls_conn;

/* How a handshake ended: one counter each. */
enum tls_result {
	TLS_RESULT_FULL = 0,		/* a full handshake */
	TLS_RESULT_RESUMED,		/* a cached session was resumed */
	TLS_RESULT_VERIFY,		/* failed: the certificate or its name did not verify */
	TLS_RESULT_TIMEOUT,		/* failed: not done within connect_timeout */
	TLS_RESULT_PROTOCOL,		/* failed: anything else (alert, reset, bad record) */
	TLS_RESULTS
};

/* What a non-blocking call needs before it can go on. */
enum tls_io {
	TLS_IO_DONE = 0,		/* done (read/write: bytes moved) */
	TLS_IO_WANT_READ,		/* call again once the socket is readable */
	TLS_IO_WANT_WRITE,		/* call again once the socket is writable */
	TLS_IO_EOF,			/* the peer closed (close_notify or FIN) */
	TLS_IO_ERROR,			/* fatal: the connection is unusable */
};

const char *tls_result_name(enum tls_result r);

/* --- Pure decisions -------------------------------------------------------- */

/* "1.2" / "1.3" -> TLS1_2_VERSION / TLS1_3_VERSION; 0 for anything else. */
int tls_version_parse(const char *s);

/* Does `name` get SNI? Only host names do: never an IP literal, never "". */
bool tls_name_is_host(const char *name);

/* The name a peer's certificate must carry: server_name when set, else host. */
const char *tls_peer_name(const char *server_name, const char *host);

/* A private key file with these mode bits is readable by group or other. */
bool tls_key_mode_open(mode_t mode);

/* --- Contexts (any thread; built on the control thread) -------------------- */

/*
 * Load what conf names (CA file or the system store, cert and key, minimum
 * version, ciphers). Returns a context with one reference, or NULL with the
 * reason in err (naming the file and what OpenSSL said) and in *bad_key the
 * tls: key the failure is about ("ca", "cert", ...).
 */
struct tls_ctx *tls_ctx_new(const struct tls_conf *conf, const char **bad_key, char *err,
			    size_t err_len);
/*
 * The accepting side of the same section (the zklb-to-zklb trunk): cert and
 * key are its own certificate; with verify, a client must present a
 * certificate that ca verifies (mTLS; no name is checked: the CA is the
 * trust). The handshake selects ALPN protocol `alpn` ("h2") or fails.
 * Sessions resume from OpenSSL's server cache. NULL with err as tls_ctx_new.
 */
struct tls_ctx *tls_ctx_new_server(const struct tls_conf *conf, const char *alpn,
				   const char **bad_key, char *err, size_t err_len);
/*
 * The calling side of the same section (the trunk's client role): a client
 * context as tls_ctx_new, offering ALPN protocol `alpn` ("h2") and
 * presenting conf's certificate. NULL with err as tls_ctx_new.
 */
struct tls_ctx *tls_ctx_new_client(const struct tls_conf *conf, const char *alpn,
				   const char **bad_key, char *err, size_t err_len);
struct tls_ctx *tls_ctx_get(struct tls_ctx *ctx);
void tls_ctx_put(struct tls_ctx *ctx);

/* --- One connection (the thread driving its socket) ------------------------ */

/*
 * A client connection on connected socket fd (still the caller's) to a peer
 * known as `host` (an address or a host name) and cached under `peer_key`
 * (e.g. "10.0.0.5:9443"). The name verified and sent as SNI is
 * tls_peer_name(conf server_name, host). NULL when OpenSSL is out of memory.
 */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, const char *host, const char *peer_key);

/*
 * A server connection (a context from tls_ctx_new_server) on accepted socket
 * fd (still the caller's); peer_key names the peer in reasons. NULL when
 * OpenSSL is out of memory.
 */
struct tls_conn *tls_conn_new_server(struct tls_ctx *ctx, int fd, const char *peer_key);

/* Frees the TLS state only: no close_notify, and the socket stays open. NULL is a no-op. */
void tls_conn_free(struct tls_conn *t);

/*
 * Drive the handshake. TLS_IO_DONE: tls_conn_outcome() says FULL or RESUMED;
 * TLS_IO_ERROR: it says VERIFY or PROTOCOL and tls_conn_reason() why.
 */
enum tls_io tls_conn_handshake(struct tls_conn *t);

/* Was the handshake a full or a resumed one, or why did it fail. */
enum tls_result tls_conn_outcome(const struct tls_conn *t);

/* Why the handshake or the connection failed, for a log line ("" if it did not). */
const char *tls_conn_reason(const struct tls_conn *t);

/*
 * Read up to len plaintext bytes. Returns the bytes read (> 0) with
 * *io = TLS_IO_DONE, or 0 with *io saying what to wait for, EOF or ERROR.
 * Records that carry no application data (session tickets, key updates) are
 * consumed and reported as WANT_READ.
 */
size_t tls_conn_read(struct tls_conn *t, void *buf, size_t len, enum tls_io *io);

/*
 * Write up to len bytes; returns the bytes taken (partial writes allowed).
 * When 0 with WANT_*, call again with the same bytes (they may have moved).
 */
size_t tls_conn_write(struct tls_conn *t, const void *buf, size_t len, enum tls_io *io);

/*
 * Decrypted bytes (or a close_notify already read) wait inside the
 * connection: the socket may stay quiet, so read without waiting for it.
 */
bool tls_conn_pending(const struct tls_conn *t);

/*
 * Ciphertext bytes the connection read from and wrote to its socket since
 * the last call (handshakes and records included), for byte counters.
 */
void tls_conn_wire_delta(struct tls_conn *t, uint64_t *in, uint64_t *out);

/* Send close_notify (our half-close). DONE, WANT_WRITE (call again) or ERROR. */
enum tls_io tls_conn_close_notify(struct tls_conn *t);

/*
 * The SSL of a new client connection with tls_conn_new()'s verification and
 * SNI but without a struct tls_conn, for code that drives OpenSSL through
 * another layer (the active checks' bufferevents). The caller frees it.
 */
SSL *tls_ssl_new(struct tls_ctx *ctx, const char *host);

#endif
