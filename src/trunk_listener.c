/*
 * trunk_listener — see trunk_listener.h.
 *
 * One struct trunk_conn per accepted TCP connection: a tls_conn (server
 * side), an nghttp2 server session, and its streams. Bytes flow:
 *   socket -> tls_conn_read -> nghttp2_session_mem_recv -> callbacks
 *   callbacks/streams -> nghttp2_session_mem_send -> tls_conn_write -> socket
 * At most one chunk of serialized frames waits in `out` when the socket is
 * full; nghttp2 is asked for more only once it drained, so a trunk's output
 * buffer is bounded too.
 *
 * Windows: the session is told not to send WINDOW_UPDATE on its own
 * (no_auto_window_update); a stream's bytes are consumed — and the window
 * reopened — only once its backend socket took them. A backend that reads
 * slowly therefore holds back its own caller and nobody else.
 *
 * Objects are never freed inside their own callbacks: closed streams and
 * connections go to dead lists, reaped by an event made active for the
 * next loop turn.
 */
#include "trunk_listener.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "tls.h"
#include "trunk.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define TRUNK_DOWN_MAX (64 * 1024)	/* bytes from a backend waiting for its stream's window */
#define TRUNK_READ_CHUNK (16 * 1024)	/* one TLS read */
#define TRUNK_READS_PER_TURN 16		/* reads of one trunk before others get a turn */
#define TRUNK_HEADER_MAX 256		/* bytes of a pseudo-header we keep */
#define TRUNK_HANDSHAKE_MS 10000	/* TLS handshake deadline */
#define TRUNK_PING_MS 30000		/* keepalive PING on an idle trunk */

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
	bool reading;				/* the backend's read side is armed */
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

static void conn_pump(struct trunk_conn *tc);
static void conn_close(struct trunk_conn *tc, const char *reason);
static void stream_close(struct trunk_stream *st, const char *reason, bool reset_backend);
static void on_backend_event(evutil_socket_t fd, short what, void *arg);

/* --- lifecycles ---------------------------------------------------------- */

static bool conn_set_state(struct trunk_conn *tc, enum trunk_conn_state to)
{
	if (!trunk_conn_transition_allowed(tc->state, to)) {
		log_error("trunk peer=%s: illegal move %s -> %s", tc->peer,
			  trunk_conn_state_name(tc->state), trunk_conn_state_name(to));
		return false;
	}
	log_debug("trunk peer=%s: %s -> %s", tc->peer, trunk_conn_state_name(tc->state),
		  trunk_conn_state_name(to));
	tc->state = to;
	return true;
}

static bool stream_set_state(struct trunk_stream *st, enum trunk_stream_state to)
{
	if (!trunk_stream_transition_allowed(st->state, to)) {
		log_error("trunk peer=%s stream=%d: illegal move %s -> %s", st->tc->peer, st->id,
			  trunk_stream_state_name(st->state), trunk_stream_state_name(to));
		return false;
	}
	st->state = to;
	return true;
}

static void reap_soon(struct trunk_listener *tl)
{
	event_active(tl->reap_ev, EV_TIMEOUT, 0);
}

/* --- one stream's backend side ------------------------------------------- */

static void stream_arm(struct trunk_stream *st)
{
	if (st->fd < 0 || st->state == TRUNK_STREAM_CLOSED)
		return;
	short what = 0;
	if (st->reading && !st->backend_eof)
		what |= EV_READ;
	if (st->state == TRUNK_STREAM_CONNECTING || st->up_len > 0)
		what |= EV_WRITE;
	event_del(st->ev);
	event_assign(st->ev, st->tc->tl->base, st->fd, what | EV_PERSIST, on_backend_event, st);
	if (what)
		event_add(st->ev, NULL);
}

/* Write what waits in up to the backend; acknowledge it to the caller. */
static bool stream_flush_up(struct trunk_stream *st)
{
	while (st->up_len > 0) {
		ssize_t n = send(st->fd, st->up, st->up_len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			log_info("trunk peer=%s stream=%d: backend write: %s", st->tc->peer, st->id,
				 strerror(errno));
			return false;
		}
		memmove(st->up, st->up + n, st->up_len - (size_t)n);
		st->up_len -= (size_t)n;
		st->to_consume += (uint64_t)n;
		STAT_ADD(st->tc->tl, bytes_in, (uint64_t)n);
	}
	if (st->up_len == 0 && st->remote_eof && !st->shut_wr) {
		shutdown(st->fd, SHUT_WR);
		st->shut_wr = true;
		if (st->state == TRUNK_STREAM_OPEN)
			stream_set_state(st, TRUNK_STREAM_HALF_CLOSED_REMOTE);
	}
	return true;
}

/* Read the backend into down, up to its cap. */
static bool stream_fill_down(struct trunk_stream *st)
{
	struct trunk_listener *tl = st->tc->tl;
	if (st->down_off == st->down_len)
		st->down_off = st->down_len = 0;
	while (st->reading && st->down_len < TRUNK_DOWN_MAX) {
		if (st->down_off > 0) {
			memmove(st->down, st->down + st->down_off, st->down_len - st->down_off);
			st->down_len -= st->down_off;
			st->down_off = 0;
		}
		ssize_t n = recv(st->fd, st->down + st->down_len, TRUNK_DOWN_MAX - st->down_len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n < 0) {
			log_info("trunk peer=%s stream=%d: backend read: %s", st->tc->peer, st->id,
				 strerror(errno));
			return false;
		}
		if (n == 0) {
			st->backend_eof = true;
			st->reading = false;
			return true;
		}
		st->down_len += (size_t)n;
	}
	if (st->reading && st->down_len >= TRUNK_DOWN_MAX) {
		st->reading = false;		/* the caller is slower than the backend */
		STAT_ADD(tl, window_stalls, 1);
	}
	return true;
}

/* The backend failed: reset the stream (CONNECT_ERROR) and the backend socket. */
static void stream_fail(struct trunk_stream *st, const char *reason)
{
	struct trunk_conn *tc = st->tc;
	if (!st->h2_closed && tc->h2) {
		nghttp2_submit_rst_stream(tc->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CONNECT_ERROR);
		STAT_ADD(tc->tl, resets_out, 1);
	}
	stream_close(st, reason, true);
}

static ssize_t on_data_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t length,
			    uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct trunk_stream *st = src->ptr;
	(void)h2;
	(void)id;
	(void)arg;
	size_t have = st->down_len - st->down_off;
	if (have == 0) {
		if (st->backend_eof) {
			*flags |= NGHTTP2_DATA_FLAG_EOF;
			if (st->state == TRUNK_STREAM_OPEN)
				stream_set_state(st, TRUNK_STREAM_HALF_CLOSED_LOCAL);
			return 0;
		}
		st->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	size_t n = MIN(have, length);
	memcpy(buf, st->down + st->down_off, n);
	st->down_off += n;
	STAT_ADD(st->tc->tl, bytes_out, n);
	if (st->down_off == st->down_len && st->backend_eof)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	if (!st->reading && !st->backend_eof &&
	    trunk_stream_wants_read(st->down_len - st->down_off, TRUNK_DOWN_MAX, false)) {
		st->reading = true;
		stream_arm(st);
	}
	return (ssize_t)n;
}

/* The backend is connected: answer 200 and start both directions. */
static void stream_established(struct trunk_stream *st)
{
	struct trunk_conn *tc = st->tc;
	evtimer_del(st->timer);
	if (!stream_set_state(st, TRUNK_STREAM_OPEN))
		return;
	st->down = xmalloc(TRUNK_DOWN_MAX);
	st->reading = true;
	static const nghttp2_nv ok[] = {
		{ (uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE },
	};
	nghttp2_data_provider dp = { .source.ptr = st, .read_callback = on_data_read };
	if (nghttp2_submit_response(tc->h2, st->id, ok, 1, &dp) != 0) {
		stream_fail(st, "cannot submit the response");
		return;
	}
	if (!stream_flush_up(st)) {
		stream_fail(st, "backend write failed");
		return;
	}
	stream_arm(st);
}

/* Answer a refusal (status) and end the stream. */
static void stream_refuse(struct trunk_stream *st, const char *status)
{
	nghttp2_nv nv = { (uint8_t *)":status", (uint8_t *)status, 7, strlen(status),
			  NGHTTP2_NV_FLAG_NONE };
	nghttp2_submit_response(st->tc->h2, st->id, &nv, 1, NULL);
}

static void on_backend_event(evutil_socket_t fd, short what, void *arg)
{
	struct trunk_stream *st = arg;
	struct trunk_conn *tc = st->tc;
	if (st->state == TRUNK_STREAM_CLOSED)
		return;
	if (st->state == TRUNK_STREAM_CONNECTING) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr) {
			char a[80];
			net_addr_format(&st->addr, a, sizeof(a));
			log_info("trunk peer=%s stream=%d: backend %s: %s", tc->peer, st->id, a,
				 strerror(soerr));
			STAT_ADD(tc->tl, connect_failures, 1);
			stream_refuse(st, "502");
			stream_close(st, "backend refused", false);
		} else {
			stream_established(st);
		}
		conn_pump(tc);
		return;
	}
	if ((what & EV_WRITE) && !stream_flush_up(st)) {
		stream_fail(st, "backend write failed");
		conn_pump(tc);
		return;
	}
	if ((what & EV_READ) && !stream_fill_down(st)) {
		stream_fail(st, "backend read failed");
		conn_pump(tc);
		return;
	}
	if (st->deferred && (st->down_len > st->down_off || st->backend_eof)) {
		st->deferred = false;
		nghttp2_session_resume_data(tc->h2, st->id);
	}
	stream_arm(st);
	conn_pump(tc);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct trunk_stream *st = arg;
	(void)fd;
	(void)what;
	if (st->state != TRUNK_STREAM_CONNECTING)
		return;
	log_info("trunk peer=%s stream=%d: backend connect timed out", st->tc->peer, st->id);
	STAT_ADD(st->tc->tl, connect_failures, 1);
	stream_refuse(st, "504");
	stream_close(st, "backend connect timeout", false);
	conn_pump(st->tc);
}

/* The request is in: judge it, then connect to the backend. */
static void stream_request(struct trunk_stream *st)
{
	struct trunk_conn *tc = st->tc;
	struct trunk_listener *tl = tc->tl;
	enum trunk_verdict v = TRUNK_BAD_REQUEST;
	if (!st->header_too_long) {
		pthread_mutex_lock(&tl->allow_lock);
		v = trunk_request_check(&tl->allow, st->method, st->has_protocol ? st->protocol : NULL,
					st->authority, st->authority_len, &st->addr);
		pthread_mutex_unlock(&tl->allow_lock);
	}
	if (v != TRUNK_ALLOW) {
		log_info("trunk peer=%s stream=%d: %.*s refused: %s", tc->peer, st->id,
			 (int)MIN(st->authority_len, 80), st->authority, trunk_verdict_name(v));
		STAT_ADD(tl, refused_not_announced, v == TRUNK_NOT_ANNOUNCED);
		STAT_ADD(tl, refused_bad_request, v == TRUNK_BAD_REQUEST);
		stream_refuse(st, v == TRUNK_NOT_ANNOUNCED ? "403" : "400");
		stream_close(st, trunk_verdict_name(v), false);
		return;
	}
	st->fd = socket(st->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (st->fd < 0) {
		log_warn("trunk peer=%s stream=%d: socket: %s", tc->peer, st->id, strerror(errno));
		STAT_ADD(tl, connect_failures, 1);
		stream_refuse(st, "503");
		stream_close(st, "out of sockets", false);
		return;
	}
	int one = 1;
	setsockopt(st->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	st->ev = event_new(tl->base, st->fd, EV_WRITE | EV_PERSIST, on_backend_event, st);
	st->timer = evtimer_new(tl->base, on_connect_timeout, st);
	if (connect(st->fd, (const struct sockaddr *)&st->addr.ss, st->addr.len) < 0 &&
	    errno != EINPROGRESS) {
		char a[80];
		net_addr_format(&st->addr, a, sizeof(a));
		log_info("trunk peer=%s stream=%d: backend %s: %s", tc->peer, st->id, a,
			 strerror(errno));
		STAT_ADD(tl, connect_failures, 1);
		stream_refuse(st, "502");
		stream_close(st, "backend refused", false);
		return;
	}
	struct timeval tv = timeval_from_ms(tl->connect_timeout_ms);
	evtimer_add(st->timer, &tv);
	stream_arm(st);
}

/* Closed, and nghttp2 forgot it: off the connection, freed after the loop turn. */
static void stream_retire(struct trunk_stream *st)
{
	struct trunk_conn *tc = st->tc;
	if (st->prev)
		st->prev->next = st->next;
	else
		tc->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	tc->n_streams--;
	STAT_SUB(tc->tl, streams_open, 1);
	st->prev = NULL;
	st->next = tc->tl->dead_streams;
	tc->tl->dead_streams = st;
	reap_soon(tc->tl);
}

/*
 * Release the backend side. reset_backend: a TCP RST (SO_LINGER 0), for a
 * stream the caller reset or that failed; otherwise a plain close.
 */
static void stream_close(struct trunk_stream *st, const char *reason, bool reset_backend)
{
	struct trunk_conn *tc = st->tc;
	if (st->state == TRUNK_STREAM_CLOSED)
		return;
	log_debug("trunk peer=%s stream=%d: closed: %s", tc->peer, st->id, reason);
	stream_set_state(st, TRUNK_STREAM_CLOSED);
	if (st->ev)
		event_del(st->ev);
	if (st->timer)
		evtimer_del(st->timer);
	if (st->fd >= 0) {
		if (reset_backend) {
			struct linger lg = { 1, 0 };
			setsockopt(st->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(st->fd);
		st->fd = -1;
	}
	/* Bytes the caller sent that nobody will write still count against the windows. */
	if (st->up_len && tc->h2 && !st->h2_closed)
		nghttp2_session_consume(tc->h2, st->id, st->up_len);
	else if (st->up_len)
		tc->consume_conn += st->up_len;
	st->up_len = 0;
	/* Freed once nghttp2 let go of it (on_stream_close), after the loop turn. */
	if (st->h2_closed)
		stream_retire(st);
}

static void stream_free(struct trunk_stream *st)
{
	if (st->ev)
		event_free(st->ev);
	if (st->timer)
		event_free(st->timer);
	free(st->up);
	free(st->down);
	free(st);
}

/* --- nghttp2 callbacks ---------------------------------------------------- */

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *arg)
{
	struct trunk_conn *tc = arg;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (tc->n_streams >= tc->tl->max_streams || tc->state != TRUNK_CONN_OPEN) {
		STAT_ADD(tc->tl, refused_limit, 1);
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, f->hd.stream_id,
					  NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	struct trunk_stream *st = xcalloc(1, sizeof(*st));
	st->tc = tc;
	st->id = f->hd.stream_id;
	st->fd = -1;
	st->state = TRUNK_STREAM_CONNECTING;
	st->next = tc->streams;
	if (tc->streams)
		tc->streams->prev = st;
	tc->streams = st;
	tc->n_streams++;
	STAT_ADD(tc->tl, streams, 1);
	STAT_ADD(tc->tl, streams_open, 1);
	nghttp2_session_set_stream_user_data(h2, st->id, st);
	return 0;
}

static bool header_copy(char *dst, size_t cap, const uint8_t *v, size_t len, size_t *out_len)
{
	if (len >= cap)
		return false;
	memcpy(dst, v, len);
	dst[len] = '\0';
	if (out_len)
		*out_len = len;
	return true;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *arg)
{
	(void)flags;
	(void)arg;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct trunk_stream *st = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
	if (!st)
		return 0;
	bool ok = true;
	if (namelen == 7 && memcmp(name, ":method", 7) == 0)
		ok = header_copy(st->method, sizeof(st->method), value, valuelen, NULL);
	else if (namelen == 10 && memcmp(name, ":authority", 10) == 0)
		ok = header_copy(st->authority, sizeof(st->authority), value, valuelen,
				 &st->authority_len);
	else if (namelen == 9 && memcmp(name, ":protocol", 9) == 0)
		ok = st->has_protocol = header_copy(st->protocol, sizeof(st->protocol), value,
						    valuelen, NULL);
	st->header_too_long |= !ok;
	return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *arg)
{
	struct trunk_conn *tc = arg;
	if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK))
		tc->ping_outstanding = false;
	struct trunk_stream *st = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
	if (!st || st->state == TRUNK_STREAM_CLOSED)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
		stream_request(st);
	if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
	    (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && st->state != TRUNK_STREAM_CLOSED) {
		st->remote_eof = true;
		if (st->state != TRUNK_STREAM_CONNECTING && !stream_flush_up(st))
			stream_fail(st, "backend write failed");
		else if (st->state != TRUNK_STREAM_CONNECTING)
			stream_arm(st);
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
			 size_t len, void *arg)
{
	struct trunk_conn *tc = arg;
	struct trunk_stream *st = nghttp2_session_get_stream_user_data(h2, id);
	(void)flags;
	if (!st || st->state == TRUNK_STREAM_CLOSED || st->remote_eof) {
		tc->consume_conn += len;	/* nobody takes them: reopen the connection window */
		return 0;
	}
	/* The stream window bounds this; a peer that ignores it is reset by nghttp2. */
	if (st->up_len + len > st->up_cap) {
		size_t cap = MAX(st->up_cap * 2, st->up_len + len);
		st->up_cap = MIN(MAX(cap, (size_t)16384), (size_t)tc->tl->stream_window);
		if (st->up_len + len > st->up_cap) {
			stream_fail(st, "caller overran its window");
			return 0;
		}
		st->up = xrealloc(st->up, st->up_cap);
	}
	memcpy(st->up + st->up_len, data, len);
	st->up_len += len;
	if (st->state != TRUNK_STREAM_CONNECTING) {
		if (!stream_flush_up(st))
			stream_fail(st, "backend write failed");
		else
			stream_arm(st);
	}
	return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t code, void *arg)
{
	struct trunk_conn *tc = arg;
	struct trunk_stream *st = nghttp2_session_get_stream_user_data(h2, id);
	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(h2, id, NULL);
	st->h2_closed = true;
	if (st->state != TRUNK_STREAM_CLOSED) {
		bool reset = code != NGHTTP2_NO_ERROR;
		STAT_ADD(tc->tl, resets_in, reset);
		stream_close(st, reset ? "reset by the caller" : "done", reset);
	} else {
		stream_retire(st);
	}
	(void)tc;
	return 0;
}

/* --- the trunk connection ------------------------------------------------- */

static void conn_arm_write(struct trunk_conn *tc, bool on)
{
	if (on)
		event_add(tc->wev, NULL);
	else
		event_del(tc->wev);
}

/* Acknowledge what backends took; then write frames while the socket takes them. */
static void conn_pump(struct trunk_conn *tc)
{
	if (tc->state == TRUNK_CONN_CLOSED || !tc->h2)
		return;
	if (tc->consume_conn) {
		nghttp2_session_consume_connection(tc->h2, tc->consume_conn);
		tc->consume_conn = 0;
	}
	for (struct trunk_stream *st = tc->streams; st; st = st->next) {
		if (st->to_consume && !st->h2_closed)
			nghttp2_session_consume(tc->h2, st->id, st->to_consume);
		st->to_consume = 0;
	}
	for (;;) {
		while (tc->out_off < tc->out_len) {
			enum tls_io io;
			size_t n = tls_conn_write(tc->tls, tc->out + tc->out_off,
						  tc->out_len - tc->out_off, &io);
			if (n == 0) {
				if (io == TLS_IO_WANT_WRITE || io == TLS_IO_WANT_READ) {
					conn_arm_write(tc, true);
					return;
				}
				conn_close(tc, tls_conn_reason(tc->tls)[0] ? tls_conn_reason(tc->tls)
									: "write failed");
				return;
			}
			tc->out_off += n;
		}
		tc->out_off = tc->out_len = 0;
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(tc->h2, &data);
		if (n < 0) {
			conn_close(tc, nghttp2_strerror((int)n));
			return;
		}
		if (n == 0)
			break;
		/* The chunk is nghttp2's until the next call: keep a copy while it waits. */
		tc->out = xrealloc(tc->out, (size_t)n);
		memcpy(tc->out, data, (size_t)n);
		tc->out_len = (size_t)n;
		tc->last_active_ms = now_ms();
	}
	conn_arm_write(tc, false);
	if (!nghttp2_session_want_read(tc->h2) && !nghttp2_session_want_write(tc->h2))
		conn_close(tc, "session over");
}

static void conn_read(struct trunk_conn *tc)
{
	uint8_t buf[TRUNK_READ_CHUNK];
	for (int i = 0; i < TRUNK_READS_PER_TURN && tc->state != TRUNK_CONN_CLOSED; i++) {
		enum tls_io io;
		size_t n = tls_conn_read(tc->tls, buf, sizeof(buf), &io);
		if (n == 0) {
			if (io == TLS_IO_WANT_READ || io == TLS_IO_WANT_WRITE)
				break;
			conn_close(tc, io == TLS_IO_EOF ? "closed by the caller"
					: tls_conn_reason(tc->tls));
			return;
		}
		ssize_t r = nghttp2_session_mem_recv(tc->h2, buf, n);
		if (r < 0) {
			log_warn("trunk peer=%s: bad HTTP/2: %s", tc->peer, nghttp2_strerror((int)r));
			conn_close(tc, "protocol error");
			return;
		}
		tc->last_active_ms = now_ms();
	}
	if (tc->state == TRUNK_CONN_CLOSED)
		return;
	if (tls_conn_pending(tc->tls))
		event_active(tc->rev, EV_READ, 0);
}

static void conn_start_h2(struct trunk_conn *tc)
{
	struct trunk_listener *tl = tc->tl;
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	nghttp2_option_new(&opt);
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_send_header_block_length(opt, 16384);
	int rc = nghttp2_session_server_new2(&tc->h2, cb, tc, opt);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	if (rc != 0) {
		conn_close(tc, "out of memory");
		return;
	}
	nghttp2_settings_entry s[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, tl->max_streams },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, tl->stream_window },
		{ NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 4096 },
	};
	nghttp2_submit_settings(tc->h2, NGHTTP2_FLAG_NONE, s, ARRAY_SIZE(s));
	nghttp2_session_set_local_window_size(tc->h2, NGHTTP2_FLAG_NONE, 0,
					      (int32_t)tl->connection_window);
}

static void on_conn_event(evutil_socket_t fd, short what, void *arg)
{
	struct trunk_conn *tc = arg;
	(void)fd;
	(void)what;
	if (tc->state == TRUNK_CONN_CLOSED)
		return;
	if (tc->state == TRUNK_CONN_HANDSHAKE) {
		enum tls_io io = tls_conn_handshake(tc->tls);
		if (io == TLS_IO_WANT_READ || io == TLS_IO_WANT_WRITE) {
			conn_arm_write(tc, io == TLS_IO_WANT_WRITE);
			return;
		}
		if (io != TLS_IO_DONE) {
			log_info("trunk peer=%s: TLS handshake failed: %s", tc->peer,
				 tls_conn_reason(tc->tls));
			STAT_ADD(tc->tl, handshake_failures, 1);
			conn_close(tc, "handshake failed");
			return;
		}
		conn_arm_write(tc, false);
		conn_set_state(tc, TRUNK_CONN_OPEN);
		STAT_ADD(tc->tl, conns_open, 1);
		log_info("trunk peer=%s: open (%s)", tc->peer,
			 tls_result_name(tls_conn_outcome(tc->tls)));
		conn_start_h2(tc);
		struct timeval tv = timeval_from_ms(TRUNK_PING_MS);
		evtimer_add(tc->timer, &tv);
	}
	if (tc->state != TRUNK_CONN_CLOSED)
		conn_read(tc);
	conn_pump(tc);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct trunk_conn *tc = arg;
	(void)fd;
	(void)what;
	if (tc->state == TRUNK_CONN_HANDSHAKE) {
		STAT_ADD(tc->tl, handshake_failures, 1);
		log_info("trunk peer=%s: TLS handshake timed out", tc->peer);
		conn_close(tc, "handshake timeout");
		return;
	}
	uint64_t idle = now_ms() - tc->last_active_ms;
	if (tc->n_streams == 0 && tc->tl->idle_timeout_ms && idle >= tc->tl->idle_timeout_ms) {
		nghttp2_submit_goaway(tc->h2, NGHTTP2_FLAG_NONE,
				      nghttp2_session_get_last_proc_stream_id(tc->h2),
				      NGHTTP2_NO_ERROR, NULL, 0);
		conn_set_state(tc, TRUNK_CONN_GOAWAY);
		conn_pump(tc);
		conn_close(tc, "idle");
		return;
	}
	/* A peer that left without a FIN (power, partition) answers no PING. */
	if (tc->ping_outstanding) {
		log_info("trunk peer=%s: no answer to a PING in %d ms", tc->peer, TRUNK_PING_MS);
		conn_close(tc, "peer not answering");
		return;
	}
	nghttp2_submit_ping(tc->h2, NGHTTP2_FLAG_NONE, NULL);
	tc->ping_outstanding = true;
	conn_pump(tc);
	struct timeval tv = timeval_from_ms(TRUNK_PING_MS);
	evtimer_add(tc->timer, &tv);
}

static void conn_close(struct trunk_conn *tc, const char *reason)
{
	struct trunk_listener *tl = tc->tl;
	if (tc->state == TRUNK_CONN_CLOSED)
		return;
	bool was_open = tc->state != TRUNK_CONN_HANDSHAKE;
	log_info("trunk peer=%s: closed: %s (%u streams)", tc->peer, reason, tc->n_streams);
	conn_set_state(tc, TRUNK_CONN_CLOSED);
	if (was_open)
		STAT_SUB(tl, conns_open, 1);
	event_del(tc->rev);
	event_del(tc->wev);
	evtimer_del(tc->timer);
	for (struct trunk_conn **pp = &tl->live; *pp; pp = &(*pp)->next) {
		if (*pp == tc) {
			*pp = tc->next;
			break;
		}
	}
	tc->next = tl->dead;
	tl->dead = tc;
	reap_soon(tl);
}

/* Free a closed connection: its streams lose their trunk and reset their backends. */
static void conn_free(struct trunk_conn *tc)
{
	/* The session goes without calling on_stream_close: fail what is open here. */
	while (tc->streams) {
		struct trunk_stream *st = tc->streams;
		st->h2_closed = true;
		if (st->state == TRUNK_STREAM_CLOSED)
			stream_retire(st);
		else
			stream_close(st, "trunk closed", true);
	}
	nghttp2_session_del(tc->h2);
	tls_conn_free(tc->tls);
	if (tc->fd >= 0)
		close(tc->fd);
	event_free(tc->rev);
	event_free(tc->wev);
	event_free(tc->timer);
	free(tc->out);
	free(tc);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	struct trunk_listener *tl = arg;
	(void)fd;
	(void)what;
	while (tl->dead) {
		struct trunk_conn *tc = tl->dead;
		tl->dead = tc->next;
		conn_free(tc);
	}
	while (tl->dead_streams) {
		struct trunk_stream *st = tl->dead_streams;
		tl->dead_streams = st->next;
		stream_free(st);
	}
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct trunk_listener *tl = arg;
	(void)what;
	for (int i = 0; i < 64; i++) {
		struct net_addr peer = { .len = sizeof(peer.ss) };
		int fd = accept4(lfd, (struct sockaddr *)&peer.ss, &peer.len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn("trunk %s: accept: %s", tl->listen, strerror(errno));
			return;
		}
		STAT_ADD(tl, conns_accepted, 1);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct trunk_conn *tc = xcalloc(1, sizeof(*tc));
		tc->tl = tl;
		tc->fd = fd;
		tc->state = TRUNK_CONN_HANDSHAKE;
		net_addr_format(&peer, tc->peer, sizeof(tc->peer));
		tc->tls = tls_conn_new_server(tl->tls, fd, tc->peer);
		tc->rev = event_new(tl->base, fd, EV_READ | EV_PERSIST, on_conn_event, tc);
		tc->wev = event_new(tl->base, fd, EV_WRITE, on_conn_event, tc);
		tc->timer = evtimer_new(tl->base, on_conn_timer, tc);
		tc->last_active_ms = now_ms();
		tc->next = tl->live;
		tl->live = tc;
		if (!tc->tls) {
			conn_close(tc, "out of memory for TLS");
			continue;
		}
		event_add(tc->rev, NULL);
		struct timeval tv = timeval_from_ms(TRUNK_HANDSHAKE_MS);
		evtimer_add(tc->timer, &tv);
	}
}

/* Drain: no new trunk, no new stream; the open streams finish. */
static void listener_drain(struct trunk_listener *tl)
{
	tl->drained = true;
	event_del(tl->accept_ev);
	for (struct trunk_conn *tc = tl->live, *next; tc; tc = next) {
		next = tc->next;		/* conn_pump may close tc */
		if (tc->state != TRUNK_CONN_OPEN) {
			if (tc->state == TRUNK_CONN_HANDSHAKE)
				conn_close(tc, "draining");
			continue;
		}
		nghttp2_submit_goaway(tc->h2, NGHTTP2_FLAG_NONE,
				      nghttp2_session_get_last_proc_stream_id(tc->h2),
				      NGHTTP2_NO_ERROR, NULL, 0);
		conn_set_state(tc, TRUNK_CONN_GOAWAY);
		conn_pump(tc);
	}
	log_info("trunk %s: draining: GOAWAY sent, %u streams may finish", tl->listen,
		 atomic_load(&tl->stats.streams_open));
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct trunk_listener *tl = arg;
	uint64_t v;
	(void)what;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("trunk: wake read: %s", strerror(errno));
	if (atomic_load(&tl->stopping))
		event_base_loopbreak(tl->base);
	else if (atomic_load(&tl->draining) && !tl->drained)
		listener_drain(tl);
}

void trunk_listener_drain(struct trunk_listener *tl)
{
	uint64_t one = 1;
	atomic_store(&tl->draining, true);
	if (write(tl->wake_fd, &one, sizeof(one)) < 0)
		log_warn("trunk: wake write: %s", strerror(errno));
}

static void *trunk_thread(void *arg)
{
	struct trunk_listener *tl = arg;
	event_base_dispatch(tl->base);
	while (tl->live)
		conn_close(tl->live, "shutdown");
	on_reap(-1, 0, tl);
	return NULL;
}

/* The host's own numeric addresses, for `address: auto` entries. */
static size_t local_addresses(char (*out)[64], size_t max)
{
	struct ifaddrs *ifa = NULL;
	size_t n = 0;
	if (getifaddrs(&ifa) != 0)
		return 0;
	for (struct ifaddrs *i = ifa; i && n < max; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		if (i->ifa_addr->sa_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, out[n++], 64);
		else if (i->ifa_addr->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, out[n++], 64);
	}
	freeifaddrs(ifa);
	return n;
}

void trunk_listener_set_allow(struct trunk_listener *tl, const struct announce_conf *ann,
			      size_t n)
{
	char addrs[64][64];
	const char *local[64];
	size_t n_local = local_addresses(addrs, ARRAY_SIZE(addrs));
	for (size_t i = 0; i < n_local; i++)
		local[i] = addrs[i];
	struct trunk_allow a, old;
	trunk_allow_build(&a, ann, n, local, n_local);
	pthread_mutex_lock(&tl->allow_lock);
	old = tl->allow;
	tl->allow = a;
	pthread_mutex_unlock(&tl->allow_lock);
	trunk_allow_free(&old);
	log_info("trunk %s: %zu addresses reachable", tl->listen, a.n);
}

const struct trunk_stats *trunk_listener_stats(const struct trunk_listener *tl)
{
	return &tl->stats;
}

struct trunk_listener *trunk_listener_new(const struct trunk_conf *conf, char *err, size_t errlen)
{
	struct trunk_listener *tl = xcalloc(1, sizeof(*tl));
	tl->listen_fd = -1;
	tl->wake_fd = -1;
	tl->listen = xstrdup(conf->listen);
	tl->tls = tls_ctx_get(conf->tls.ctx);
	tl->stream_window = (uint32_t)conf->stream_window;
	tl->connection_window = (uint32_t)conf->connection_window;
	tl->max_streams = conf->max_streams;
	tl->connect_timeout_ms = conf->connect_timeout_ms;
	tl->idle_timeout_ms = conf->idle_timeout_ms;
	pthread_mutex_init(&tl->allow_lock, NULL);
	if (!tl->tls) {
		snprintf(err, errlen, "trunk: no TLS context");
		goto fail;
	}
	if (!listener_open(conf->listen, 1, &tl->listen_fd, err, errlen))
		goto fail;
	tl->base = event_base_new();
	tl->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!tl->base || tl->wake_fd < 0) {
		snprintf(err, errlen, "trunk: cannot create its event loop");
		goto fail;
	}
	tl->accept_ev = event_new(tl->base, tl->listen_fd, EV_READ | EV_PERSIST, on_accept, tl);
	tl->wake_ev = event_new(tl->base, tl->wake_fd, EV_READ | EV_PERSIST, on_wake, tl);
	tl->reap_ev = event_new(tl->base, -1, 0, on_reap, tl);
	event_add(tl->accept_ev, NULL);
	event_add(tl->wake_ev, NULL);
	if (pthread_create(&tl->thread, NULL, trunk_thread, tl) != 0) {
		snprintf(err, errlen, "trunk: cannot start its thread");
		goto fail;
	}
	tl->started = true;
	log_info("trunk: listening on %s (stream window %u, connection window %u)", tl->listen,
		 tl->stream_window, tl->connection_window);
	return tl;
fail:
	trunk_listener_free(tl);
	return NULL;
}

void trunk_listener_free(struct trunk_listener *tl)
{
	if (!tl)
		return;
	if (tl->started) {
		uint64_t one = 1;
		atomic_store(&tl->stopping, true);
		if (write(tl->wake_fd, &one, sizeof(one)) < 0)
			log_warn("trunk: wake write: %s", strerror(errno));
		pthread_join(tl->thread, NULL);
	}
	if (tl->accept_ev)
		event_free(tl->accept_ev);
	if (tl->wake_ev)
		event_free(tl->wake_ev);
	if (tl->reap_ev)
		event_free(tl->reap_ev);
	if (tl->base)
		event_base_free(tl->base);
	if (tl->listen_fd >= 0)
		close(tl->listen_fd);
	if (tl->wake_fd >= 0)
		close(tl->wake_fd);
	tls_ctx_put(tl->tls);
	trunk_allow_free(&tl->allow);
	pthread_mutex_destroy(&tl->allow_lock);
	free(tl->listen);
	free(tl);
}
