/*
 * trunk_conn — the trunk's connections and streams, in both roles, shared
 * by the files of the trunk (private to src/: no other module sees these
 * structs). One way: the listener and the client drive the connections.
 *   trunk_listener.c  the accepting thread, the listening socket, the allow
 *                     list, drain
 *   trunk_client.c    the calling thread: the queue of streams the relays
 *                     ask for, the peers, which connection takes a stream
 *   trunk_loop.c      the thread both roles run on: base, wake-up, reaper
 *   trunk_conn.c      one trunk connection (TLS, the nghttp2 session, frames
 *                     in and out, PINGs, idle and handshake deadlines) and its
 *                     streams (request or response, the local socket, both
 *                     directions with their windows, half-close and resets):
 *                     a connection and its streams call each other, so they
 *                     share a file
 *
 * The two roles differ only in how a stream starts: the accepting side
 * judges a CONNECT and connects to its local backend; the calling side
 * submits the CONNECT for a socket a relay holds the other end of and
 * reports the answer on it (trunk_open_result, one byte). From then on a
 * stream is the same in both: DATA in is written to the local socket, the
 * local socket is read into DATA out, END_STREAM is a half-close.
 *
 * Thread: the trunk thread of the role, except the atomics of struct
 * trunk_stats and the listener's allow (under allow_lock).
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
struct trunk_call;

#define TRUNK_DOWN_MAX (64 * 1024)	/* bytes from a backend waiting for its stream's window */
#define TRUNK_READ_CHUNK (16 * 1024)	/* one TLS read */
#define TRUNK_READS_PER_TURN 16		/* reads of one trunk before others get a turn */
#define TRUNK_HEADER_MAX 256		/* bytes of a pseudo-header we keep */
#define TRUNK_HANDSHAKE_MS 10000	/* TLS handshake deadline */
#define TRUNK_PING_MS 30000		/* keepalive PING on an idle trunk */
#define TRUNK_LINGER_MS 2000		/* a finished trunk waits this long for the peer's close */

struct trunk_stream;
struct trunk_client;

/*
 * One trunk thread, in either role: its event base, its wake-up, and what it
 * shares with its connections. The role's on_wake runs on the thread for
 * each trunk_loop_wake() (not once stopping).
 */
struct trunk_loop {
	struct event_base *base;		/* owned */
	pthread_t thread;
	bool started;
	_Atomic bool stopping;
	int wake_fd;				/* owned; eventfd */
	struct event *wake_ev;			/* owned */
	struct event *reap_ev;			/* owned; frees the dead lists */
	void (*on_wake)(struct trunk_loop *loop);	/* the role's work on a wake-up */
	struct tls_ctx *tls;			/* ref: server context, or client context offering h2 */
	struct trunk_listener *listener;	/* ref: the accepting role; NULL when calling */
	struct trunk_client *client;		/* ref: the calling role; NULL when accepting */
	uint32_t stream_window;			/* bytes a stream may have in flight towards us */
	uint32_t connection_window;		/* bytes all streams of a connection may */
	uint32_t max_streams;			/* accepting: concurrent streams per connection */
	uint64_t connect_timeout_ms;		/* accepting: to the local backend */
	uint64_t idle_timeout_ms;		/* a connection without streams; 0 = never */
	uint64_t handshake_ms;			/* TCP connect and TLS handshake deadline */
	struct trunk_conn *live;		/* owned list */
	struct trunk_conn *dead;		/* closed, freed by reap_ev */
	struct trunk_conn *lingering;		/* closed; streams still write the peer's last bytes */
	struct trunk_stream *dead_streams;	/* closed, freed by reap_ev */
};

struct trunk_conn {
	struct trunk_loop *loop;		/* ref: the owner */
	struct trunk_stats *stats;		/* ref: the listener's, or the peer's when calling */
	const void *peer_key;			/* calling: the struct trunk_peer it serves */
	struct trunk_conn *next;		/* in loop->live or loop->dead */
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
	bool lingering;				/* closed, in loop->lingering until its streams retire */
	char peer[64];				/* "ip:port" of the other host */
};

struct trunk_stream {
	struct trunk_conn *tc;			/* ref: the connection */
	struct trunk_stream *next;		/* in tc->streams, then in loop->dead_streams */
	struct trunk_stream *prev;		/* in tc->streams */
	int32_t id;				/* 0: calling, not submitted yet */
	enum trunk_stream_state state;
	int fd;					/* owned; the backend socket (calling: the relay's
						 * socketpair end), -1 before connect */
	enum trunk_open_result result;		/* calling: what the relay is told on CONNECTING -> */
	struct trunk_call *call;		/* owned ref, calling only: resets across the pair */
	int status;				/* calling: :status of the answer, 0 before */
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
	struct trunk_loop loop;			/* its thread, settings, connections */
	int listen_fd;				/* owned */
	struct event *accept_ev;		/* owned */
	_Atomic bool draining;			/* GOAWAY every trunk; accept no more */
	bool drained;				/* the trunk thread did it */
	struct tls_ctx *tls;			/* ref */
	char *listen;				/* owned */
	pthread_mutex_t allow_lock;		/* guards allow */
	struct trunk_allow allow;		/* owned */
	struct trunk_stats stats;
	char local_err[128];
};

/* s: a struct trunk_stats * */
#define STAT_ADD(s, f, n) atomic_fetch_add_explicit(&(s)->f, (n), memory_order_relaxed)
#define STAT_SUB(s, f, n) atomic_fetch_sub_explicit(&(s)->f, (n), memory_order_relaxed)

/* Free the closed connections and streams after this loop turn (the loop's reap event). */
static inline void trunk_reap_soon(struct trunk_loop *loop)
{
	event_active(loop->reap_ev, EV_TIMEOUT, 0);
}

/* --- trunk_loop.c ---------------------------------------------------------- */

/* Free what closed during the last loop turn (the reap event's work). */
void trunk_loop_reap(struct trunk_loop *loop);
/* Make the base, the wake-up and the reaper (the settings are the caller's). false: err says. */
bool trunk_loop_open(struct trunk_loop *loop, void (*on_wake)(struct trunk_loop *loop),
		     char *err, size_t errlen);
/* Run the thread: the loop, then every connection closed ("shutdown"). false: err says. */
bool trunk_loop_start(struct trunk_loop *loop, char *err, size_t errlen);
/* Have on_wake run on the thread soon. Any thread. */
void trunk_loop_wake(struct trunk_loop *loop);
/* Stop and join the thread, if started (its connections are closed then). */
void trunk_loop_stop(struct trunk_loop *loop);
/* trunk_loop_stop, then free what trunk_loop_open made. */
void trunk_loop_close(struct trunk_loop *loop);

/* --- trunk_conn.c ---------------------------------------------------------- */

/* Take over accepted socket fd from peer: the TLS handshake starts. */
void trunk_conn_accept(struct trunk_loop *loop, int fd, const struct net_addr *peer);
/*
 * Calling: a connection to `to` (a trunk port) from `from` (an address of
 * this host, port 0; NULL or another family: the kernel's choice), counted
 * in stats and known by peer_key; its TLS verifies `host`. NULL when no
 * socket could be made (the reason in err). The TCP connect and the
 * handshake go on in the loop; streams may be added at once
 * (trunk_stream_open).
 */
struct trunk_conn *trunk_conn_dial(struct trunk_loop *loop, const struct net_addr *to,
				   const struct net_addr *from, const char *host,
				   struct trunk_stats *stats, const void *peer_key, char *err,
				   size_t errlen);
/* Calling: can tc take one more stream (not closing, not told to go away)? */
bool trunk_conn_usable(const struct trunk_conn *tc);
/* The one place a connection's state changes; refuses illegal moves. */
bool trunk_conn_set_state(struct trunk_conn *tc, enum trunk_conn_state to);
/* Acknowledge what backends took, then write frames while the socket takes them. */
void trunk_conn_pump(struct trunk_conn *tc);
/* No new stream on tc (GOAWAY); open ones finish. A handshake in progress closes. */
void trunk_conn_goaway(struct trunk_conn *tc);
/* Close now (reason to the log); freed after the loop turn. */
void trunk_conn_close(struct trunk_conn *tc, const char *reason);
/*
 * Free a closed connection; its open streams reset their backends, except
 * those the session is done with that still write the peer's last bytes to
 * their local socket: the connection lingers (loop->lingering) until they
 * retire, then it is freed.
 */
void trunk_conn_free(struct trunk_conn *tc);
/* Thread exit: reset what still lingers, so that everything is freed. */
void trunk_conn_free_lingering(struct trunk_loop *loop);

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
/*
 * Calling: a stream on tc for the relay socket fd (owned from now on), a
 * CONNECT to `target`; call (a reference, owned from now on) is where the
 * stream and the relay tell each other of a reset (trunk_call.h). Submitted
 * once tc is open; its result is written to fd as one byte
 * (trunk_open_result) before any stream byte.
 */
void trunk_stream_open(struct trunk_conn *tc, int fd, const struct net_addr *target,
		       struct trunk_call *call);

#endif
