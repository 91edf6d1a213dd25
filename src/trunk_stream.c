/*
 * trunk_stream — one stream of a trunk connection (see trunk_conn.h): the
 * CONNECT request judged against the allow list, the connect to the local
 * backend, and both directions.
 *
 * Caller -> backend: DATA lands in `up` and is written to the backend at
 * once; it is acknowledged to nghttp2 (nghttp2_session_consume, hence the
 * caller's WINDOW_UPDATE) only once the backend took it, so `up` never holds
 * more than the stream window. Backend -> caller: the backend is read into
 * `down` (TRUNK_DOWN_MAX) and nghttp2 pulls it through on_data_read as the
 * caller's window allows; while `down` is full the backend is not read.
 */
#include "trunk_conn.h"
#include "config.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_backend_event(evutil_socket_t fd, short what, void *arg);

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

static void stream_arm(struct trunk_stream *st)
{
	if (st->fd < 0 || st->state == TRUNK_STREAM_CLOSED)
		return;
	short what = 0;
	if (st->reading && !st->backend_eof)
		what |= EV_READ;
	if (st->state == TRUNK_STREAM_CONNECTING || st->up_len > 0)
		what |= EV_WRITE;
	if (what == st->armed)
		return;		/* one epoll_ctl per change of interest, not per DATA frame */
	st->armed = what;
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
	trunk_stream_close(st, reason, true);
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
			trunk_stream_close(st, "backend refused", false);
		} else {
			stream_established(st);
		}
		trunk_conn_pump(tc);
		return;
	}
	if ((what & EV_WRITE) && !stream_flush_up(st)) {
		stream_fail(st, "backend write failed");
		trunk_conn_pump(tc);
		return;
	}
	if ((what & EV_READ) && !stream_fill_down(st)) {
		stream_fail(st, "backend read failed");
		trunk_conn_pump(tc);
		return;
	}
	if (st->deferred && (st->down_len > st->down_off || st->backend_eof)) {
		st->deferred = false;
		nghttp2_session_resume_data(tc->h2, st->id);
	}
	stream_arm(st);
	trunk_conn_pump(tc);
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
	trunk_stream_close(st, "backend connect timeout", false);
	trunk_conn_pump(st->tc);
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
		trunk_stream_close(st, trunk_verdict_name(v), false);
		return;
	}
	st->fd = socket(st->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (st->fd < 0) {
		log_warn("trunk peer=%s stream=%d: socket: %s", tc->peer, st->id, strerror(errno));
		STAT_ADD(tl, connect_failures, 1);
		stream_refuse(st, "503");
		trunk_stream_close(st, "out of sockets", false);
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
		trunk_stream_close(st, "backend refused", false);
		return;
	}
	struct timeval tv = timeval_from_ms(tl->connect_timeout_ms);
	evtimer_add(st->timer, &tv);
	stream_arm(st);
}

/* Closed, and nghttp2 forgot it: off the connection, freed after the loop turn. */
void trunk_stream_retire(struct trunk_stream *st)
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
	trunk_listener_reap_soon(tc->tl);
}

/*
 * Release the backend side. reset_backend: a TCP RST (SO_LINGER 0), for a
 * stream the caller reset or that failed; otherwise a plain close.
 */
void trunk_stream_close(struct trunk_stream *st, const char *reason, bool reset_backend)
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
	/* Freed once nghttp2 let go of it (trunk_stream_on_close), after the loop turn. */
	if (st->h2_closed)
		trunk_stream_retire(st);
}

void trunk_stream_free(struct trunk_stream *st)
{
	if (st->ev)
		event_free(st->ev);
	if (st->timer)
		event_free(st->timer);
	free(st->up);
	free(st->down);
	free(st);
}

int trunk_stream_on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *arg)
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

int trunk_stream_on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
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

int trunk_stream_on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *arg)
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

int trunk_stream_on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id,
			       const uint8_t *data, size_t len, void *arg)
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

int trunk_stream_on_close(nghttp2_session *h2, int32_t id, uint32_t code, void *arg)
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
		trunk_stream_close(st, reset ? "reset by the caller" : "done", reset);
	} else {
		trunk_stream_retire(st);
	}
	return 0;
}
