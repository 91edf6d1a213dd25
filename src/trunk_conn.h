/*
 * trunk_conn — the accepting side's connections and streams, shared by the
 * two files of the trunk listener (private to src/: no other module sees
 * these structs). One way: the listener drives the connections.
 *   trunk_listener.c  the thread, the listening socket, the allow list, drain
 *   trunk_conn.c      one trunk connection (TLS, the nghttp2 session, frames
 *                     in and out, PINGs, idle and handshake deadlines) and its
 *                     streams (request, backend socket, both directions with
 *                     their windows, half-close and resets): a connection and
 *                     its streams call each other, so they share a file
 *
 * Thread: the trunk thread, except the atomics of struct trunk_stats and
 * allow (under allow_lock).
 */
#ifndef ZKLB_TRUNK_CONN_H
#define ZKLB_TRUNK_CONN_H

#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "trunk.h"
#include "trunk_listener.h"
#include "util.h"

struct tls_conn;
struct tls_ctx;

#define TRUNK_DOWN_MAX (64 * 1024)	/* bytes from a backend waiting for its stream's window */
#define TRUNK_READ_CHUNK (16 * 1024)	/* one TLS read */
#define TRUNK_READS_PER_TURN 16		/* reads of one trunk before others get a turn */
#define TRUNK_HEADER_MAX 256		/* bytes of a pseudo-header we keep */
#define TRUNK_HANDSHAKE_MS 10000	/* TLS handshake deadline */
#define TRUNK_PING_MS 30000		/* keepalive PING on an idle trunk */
#define TRUNK_LINGER_MS 2000		/* a finished trunk waits this long for the peer's close */

struct trunk_stream;

struct trunk_conn {
	struct trunk_listener *tl;		/* ref: the owner */
	struct trunk_conn *next;		/* in tl->live or tl->dead */
	enum trunk_conn_state state;
	int fd;					/* owned */
	struct tls_conn *tls;			/* owned */
	nghttp2_session *h2;			/* owned; NULL during the handshake */
	struct event *rev;			/* owned; fd readable, persistent */
	struct event *wev;			/* owned; fd writable, added while `out` waits */
	struct event *timer;			/* owned; handshake deadline, then idle/ping */
	uint8_t *out;				/* owned; serialized frames the socket refused */
	size_t out_len;				/* bytes in out */
	size_t out_off;				/* bytes of out already written */
	struct trunk_stream *streams;		/* owned list: streams not yet retired */
	uint32_t n_streams;			/* entries in streams */
	uint64_t consume_conn;			/* bytes of unknown streams to acknowledge */
	uint64_t last_active_ms;		/* last frame in or out */
	bool ping_outstanding;			/* a PING sent, its ACK not seen yet */
	bool finishing;				/* session over: FIN sent, waiting for the peer's */
	char peer[64];				/* "ip:port" of the calling host */
};

struct trunk_stream {
	struct trunk_conn *tc;			/* ref: the connection */
	struct trunk_stream *next;		/* in tc->streams, then in tl->dead_streams */
	struct trunk_stream *prev;		/* in tc->streams */
	int32_t id;
	enum trunk_stream_state state;
	int fd;					/* owned; the backend socket, -1 before connect */
	struct event *ev;			/* owned; backend readable/writable */
	struct event *timer;			/* owned; the connect deadline */
	struct net_addr addr;			/* the backend */
	char method[16];			/* :method as received */
	char protocol[32];			/* :protocol as received ("" without) */
	bool has_protocol;
	char authority[TRUNK_HEADER_MAX];	/* :authority as received */
	size_t authority_len;
	bool header_too_long;			/* a pseudo-header did not fit: 400 */
	char *up;				/* owned; caller bytes the backend did not take yet */
	size_t up_len;				/* bytes in up */
	size_t up_cap;				/* bytes allocated; <= stream window */
	uint64_t to_consume;			/* written to the backend, not acknowledged yet */
	char *down;				/* owned; backend bytes for the caller, TRUNK_DOWN_MAX */
	size_t down_len;
	size_t down_off;
	bool reading;				/* the backend's read side is wanted */
	short armed;				/* EV_READ/EV_WRITE st->ev is added with */
	bool deferred;				/* nghttp2 waits for data (resume it) */
	bool remote_eof;			/* END_STREAM received */
	bool shut_wr;				/* backend SHUT_WR done */
	bool backend_eof;			/* the backend closed its side */
	bool h2_closed;				/* nghttp2 closed the stream: nothing refers to it */
};

struct trunk_listener {
	struct event_base *base;		/* owned */
	pthread_t thread;
	bool started;
	int listen_fd;				/* owned */
	int wake_fd;				/* owned; eventfd: stop */
	struct event *accept_ev;		/* owned */
	struct event *wake_ev;			/* owned */
	struct event *reap_ev;			/* owned; frees the dead lists */
	_Atomic bool stopping;
	_Atomic bool draining;			/* GOAWAY every trunk; accept no more */
	bool drained;				/* the trunk thread did it */
	struct tls_ctx *tls;			/* ref */
	char *listen;				/* owned */
	uint32_t stream_window;			/* bytes */
	uint32_t connection_window;		/* bytes */
	uint32_t max_streams;
	uint64_t connect_timeout_ms;
	uint64_t idle_timeout_ms;		/* 0 = never */
	pthread_mutex_t allow_lock;		/* guards allow */
	struct trunk_allow allow;		/* owned */
	struct trunk_conn *live;		/* owned list */
	struct trunk_conn *dead;		/* closed, freed by reap_ev */
	struct trunk_stream *dead_streams;	/* closed, freed by reap_ev */
	struct trunk_stats stats;
	char local_err[128];
};

#define STAT_ADD(tl, f, n) atomic_fetch_add_explicit(&(tl)->stats.f, (n), memory_order_relaxed)
#define STAT_SUB(tl, f, n) atomic_fetch_sub_explicit(&(tl)->stats.f, (n), memory_order_relaxed)

/* Free the closed connections and streams after this loop turn (the listener's reap event). */
static inline void trunk_reap_soon(struct trunk_listener *tl)
{
	event_active(tl->reap_ev, EV_TIMEOUT, 0);
}

/* --- trunk_conn.c ---------------------------------------------------------- */

/* Take over accepted socket fd from peer: the TLS handshake starts. */
void trunk_conn_accept(struct trunk_listener *tl, int fd, const struct net_addr *peer);
/* The one place a connection's state changes; refuses illegal moves. */
bool trunk_conn_set_state(struct trunk_conn *tc, enum trunk_conn_state to);
/* Acknowledge what backends took, then write frames while the socket takes them. */
void trunk_conn_pump(struct trunk_conn *tc);
/* No new stream on tc (GOAWAY); open ones finish. A handshake in progress closes. */
void trunk_conn_goaway(struct trunk_conn *tc);
/* Close now (reason to the log); freed after the loop turn. */
void trunk_conn_close(struct trunk_conn *tc, const char *reason);
/* Free a closed connection; its open streams reset their backends. */
void trunk_conn_free(struct trunk_conn *tc);

/* --- trunk_conn.c: streams ------------------------------------------------- */

/* The nghttp2 callbacks of a connection's streams (user data: the trunk_conn). */
int trunk_stream_on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *arg);
int trunk_stream_on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
			   size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			   void *arg);
int trunk_stream_on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *arg);
int trunk_stream_on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id,
			       const uint8_t *data, size_t len, void *arg);
int trunk_stream_on_close(nghttp2_session *h2, int32_t id, uint32_t code, void *arg);
/* Release the backend side (reset_backend: a TCP RST); retired once nghttp2 let go. */
void trunk_stream_close(struct trunk_stream *st, const char *reason, bool reset_backend);
/* Closed, and nghttp2 forgot it: off its connection, freed after the loop turn. */
void trunk_stream_retire(struct trunk_stream *st);
void trunk_stream_free(struct trunk_stream *st);

#endif
