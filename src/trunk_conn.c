/*
 * trunk_conn — one trunk connection of the listener (see trunk_conn.h).
 *
 * Bytes flow:
 *   socket -> tls_conn_read -> nghttp2_session_mem_recv -> the stream callbacks
 *   streams -> nghttp2_session_mem_send -> tls_conn_write -> socket
 * At most one chunk of serialized frames waits in `out` when the socket is
 * full; nghttp2 is asked for more only once it drained, so a trunk's output
 * buffer is bounded too. The session sends no WINDOW_UPDATE on its own
 * (no_auto_window_update): trunk_conn_pump acknowledges what the streams'
 * backends took.
 */
#include "trunk_conn.h"
#include "trunk_call.h"
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

static void on_conn_event(evutil_socket_t fd, short what, void *arg);
static void on_conn_timer(evutil_socket_t fd, short what, void *arg);
static void conn_finish(struct trunk_conn *tc);
static void conn_submit_waiting(struct trunk_conn *tc);

bool trunk_conn_set_state(struct trunk_conn *tc, enum trunk_conn_state to)
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

static void conn_arm_write(struct trunk_conn *tc, bool on)
{
	if (on)
		event_add(tc->wev, NULL);
	else
		event_del(tc->wev);
}

/* Acknowledge what backends took; then write frames while the socket takes them. */
void trunk_conn_pump(struct trunk_conn *tc)
{
	if (tc->state == TRUNK_CONN_CLOSED || !tc->h2)
		return;
	for (struct trunk_stream *st = tc->streams; st; st = st->next) {
		/* A stream nghttp2 forgot (still flushing) gives its bytes back to the connection. */
		if (st->to_consume && !st->h2_closed)
			nghttp2_session_consume(tc->h2, st->id, st->to_consume);
		else
			tc->consume_conn += st->to_consume;
		st->to_consume = 0;
	}
	if (tc->consume_conn) {
		nghttp2_session_consume_connection(tc->h2, tc->consume_conn);
		tc->consume_conn = 0;
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
				trunk_conn_close(tc, tls_conn_reason(tc->tls)[0] ? tls_conn_reason(tc->tls)
									: "write failed");
				return;
			}
			tc->out_off += n;
		}
		tc->out_off = tc->out_len = 0;
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(tc->h2, &data);
		if (n < 0) {
			trunk_conn_close(tc, nghttp2_strerror((int)n));
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
		conn_finish(tc);
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
			trunk_conn_close(tc, io == TLS_IO_EOF ? "closed by the caller"
					: tls_conn_reason(tc->tls));
			return;
		}
		ssize_t r = nghttp2_session_mem_recv(tc->h2, buf, n);
		if (r < 0) {
			log_warn("trunk peer=%s: bad HTTP/2: %s", tc->peer, nghttp2_strerror((int)r));
			trunk_conn_close(tc, "protocol error");
			return;
		}
		tc->last_active_ms = now_ms();
	}
	if (tc->state == TRUNK_CONN_CLOSED)
		return;
	if (tls_conn_pending(tc->tls))
		event_active(tc->rev, EV_READ, 0);
}

/* nghttp2 found the peer at fault (it answers with GOAWAY or RST_STREAM itself): say why. */
static int on_h2_error(nghttp2_session *h2, int code, const char *msg, size_t len, void *arg)
{
	struct trunk_conn *tc = arg;
	(void)h2;
	log_warn("trunk peer=%s: bad HTTP/2: %.*s (%s)", tc->peer, (int)MIN(len, 200), msg,
		 nghttp2_strerror(code));
	return 0;
}

/* A GOAWAY we send with an error code ends the session for the peer's fault: say which. */
static int on_h2_frame_send(nghttp2_session *h2, const nghttp2_frame *f, void *arg)
{
	struct trunk_conn *tc = arg;
	(void)h2;
	if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR) {
		STAT_ADD(tc->stats, protocol_errors, 1);
		log_warn("trunk peer=%s: bad HTTP/2 from the peer: GOAWAY %s (%u streams)",
			 tc->peer, nghttp2_http2_strerror(f->goaway.error_code), tc->n_streams);
	}
	return 0;
}

static void conn_start_h2(struct trunk_conn *tc)
{
	struct trunk_loop *loop = tc->loop;
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, trunk_stream_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, trunk_stream_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, trunk_stream_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, trunk_stream_on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, trunk_stream_on_close);
	nghttp2_session_callbacks_set_error_callback2(cb, on_h2_error);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_h2_frame_send);
	nghttp2_option_new(&opt);
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_send_header_block_length(opt, 16384);
	int rc = loop->client ? nghttp2_session_client_new2(&tc->h2, cb, tc, opt)
			      : nghttp2_session_server_new2(&tc->h2, cb, tc, opt);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	if (rc != 0) {
		tc->h2 = NULL;
		trunk_conn_close(tc, "out of memory");
		return;
	}
	/* The windows we advertise are the BDP-sized ones of the trunk: section, in both roles. */
	nghttp2_settings_entry accepting[] = {
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, loop->stream_window },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 4096 },
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, loop->max_streams },
		{ NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 },
	};
	/* The calling side accepts no stream, pushed ones included. */
	nghttp2_settings_entry calling[] = {
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, loop->stream_window },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 4096 },
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
	};
	if (loop->client)
		nghttp2_submit_settings(tc->h2, NGHTTP2_FLAG_NONE, calling, ARRAY_SIZE(calling));
	else
		nghttp2_submit_settings(tc->h2, NGHTTP2_FLAG_NONE, accepting, ARRAY_SIZE(accepting));
	nghttp2_session_set_local_window_size(tc->h2, NGHTTP2_FLAG_NONE, 0,
					      (int32_t)loop->connection_window);
}

/*
 * The session is over (GOAWAY, no stream left): close_notify and FIN, then
 * wait for the peer's close (at most TRUNK_LINGER_MS) before closing the
 * socket. Closing at once with the peer's last frames unread would send a
 * TCP RST, and an RST makes the peer drop what it has not read yet — the
 * end of our last streams.
 */
static void conn_finish(struct trunk_conn *tc)
{
	if (tc->finishing)
		return;
	tc->finishing = true;
	if (tls_conn_close_notify(tc->tls) == TLS_IO_DONE)
		shutdown(tc->fd, SHUT_WR);
	conn_arm_write(tc, false);
	evtimer_del(tc->timer);
	struct timeval tv = timeval_from_ms(TRUNK_LINGER_MS);
	evtimer_add(tc->timer, &tv);
}

/* While finishing: read and drop until the peer closes. */
static void conn_drain_input(struct trunk_conn *tc)
{
	uint8_t buf[TRUNK_READ_CHUNK];
	for (int i = 0; i < TRUNK_READS_PER_TURN; i++) {
		enum tls_io io;
		if (tls_conn_read(tc->tls, buf, sizeof(buf), &io) > 0)
			continue;
		if (io != TLS_IO_WANT_READ && io != TLS_IO_WANT_WRITE)
			trunk_conn_close(tc, "session over");
		return;
	}
}

static void on_conn_event(evutil_socket_t fd, short what, void *arg)
{
	struct trunk_conn *tc = arg;
	(void)fd;
	(void)what;
	if (tc->state == TRUNK_CONN_CLOSED)
		return;
	if (tc->finishing) {
		conn_drain_input(tc);
		return;
	}
	if (tc->state == TRUNK_CONN_HANDSHAKE) {
		enum tls_io io = tls_conn_handshake(tc->tls);
		if (io == TLS_IO_WANT_READ || io == TLS_IO_WANT_WRITE) {
			conn_arm_write(tc, io == TLS_IO_WANT_WRITE);
			return;
		}
		if (io != TLS_IO_DONE) {
			log_info("trunk peer=%s: TLS handshake failed: %s", tc->peer,
				 tls_conn_reason(tc->tls));
			STAT_ADD(tc->stats, handshake_failures, 1);
			trunk_conn_close(tc, "handshake failed");
			return;
		}
		conn_arm_write(tc, false);
		trunk_conn_set_state(tc, TRUNK_CONN_OPEN);
		STAT_ADD(tc->stats, conns_open, 1);
		log_info("trunk peer=%s: open (%s)", tc->peer,
			 tls_result_name(tls_conn_outcome(tc->tls)));
		conn_start_h2(tc);
		if (tc->loop->client && tc->h2)
			conn_submit_waiting(tc);
		struct timeval tv = timeval_from_ms(TRUNK_PING_MS);
		evtimer_add(tc->timer, &tv);
	}
	if (tc->state != TRUNK_CONN_CLOSED)
		conn_read(tc);
	trunk_conn_pump(tc);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct trunk_conn *tc = arg;
	(void)fd;
	(void)what;
	if (tc->finishing) {
		trunk_conn_close(tc, "session over (the peer did not close)");
		return;
	}
	if (tc->state == TRUNK_CONN_HANDSHAKE) {
		STAT_ADD(tc->stats, handshake_failures, 1);
		log_info("trunk peer=%s: TLS handshake timed out", tc->peer);
		trunk_conn_close(tc, "handshake timeout");
		return;
	}
	uint64_t idle = now_ms() - tc->last_active_ms;
	if (tc->n_streams == 0 && tc->loop->idle_timeout_ms && idle >= tc->loop->idle_timeout_ms) {
		log_info("trunk peer=%s: idle for %llu ms: GOAWAY", tc->peer,
			 (unsigned long long)idle);
		trunk_conn_goaway(tc);		/* no stream: the session is over at once */
		return;
	}
	/* A peer that left without a FIN (power, partition) answers no PING. */
	if (tc->ping_outstanding) {
		log_info("trunk peer=%s: no answer to a PING in %d ms", tc->peer, TRUNK_PING_MS);
		trunk_conn_close(tc, "peer not answering");
		return;
	}
	nghttp2_submit_ping(tc->h2, NGHTTP2_FLAG_NONE, NULL);
	tc->ping_outstanding = true;
	trunk_conn_pump(tc);
	struct timeval tv = timeval_from_ms(TRUNK_PING_MS);
	evtimer_add(tc->timer, &tv);
}

void trunk_conn_close(struct trunk_conn *tc, const char *reason)
{
	struct trunk_loop *loop = tc->loop;
	if (tc->state == TRUNK_CONN_CLOSED)
		return;
	bool was_open = tc->state != TRUNK_CONN_HANDSHAKE;
	log_info("trunk peer=%s: closed: %s (%u streams)", tc->peer, reason, tc->n_streams);
	trunk_conn_set_state(tc, TRUNK_CONN_CLOSED);
	if (was_open)
		STAT_SUB(tc->stats, conns_open, 1);
	event_del(tc->rev);
	event_del(tc->wev);
	evtimer_del(tc->timer);
	for (struct trunk_conn **pp = &loop->live; *pp; pp = &(*pp)->next) {
		if (*pp == tc) {
			*pp = tc->next;
			break;
		}
	}
	tc->next = loop->dead;
	loop->dead = tc;
	trunk_reap_soon(loop);
}

/*
 * Both END_STREAMs are through (nghttp2 forgot the stream) and the local
 * socket has yet to take the peer's last bytes or our FIN: it needs its
 * socket, not the connection.
 */
static bool stream_flushing(const struct trunk_stream *st)
{
	return st->h2_closed && st->state != TRUNK_STREAM_CLOSED && st->fd >= 0;
}

/* Fail the streams of closed tc (all, or all but the flushing ones). */
static void conn_fail_streams(struct trunk_conn *tc, bool keep_flushing, const char *reason)
{
	for (struct trunk_stream *st = tc->streams, *next; st; st = next) {
		next = st->next;	/* retiring st unlinks it only */
		if (keep_flushing && stream_flushing(st))
			continue;
		st->h2_closed = true;
		if (st->state == TRUNK_STREAM_CLOSED) {
			trunk_stream_retire(st);
			continue;
		}
		if (st->call)
			trunk_call_mark_remote(st->call, TRUNK_CALL_LOST);
		trunk_stream_close(st, reason, true);
	}
}

/* Free a closed connection: its streams lose their trunk and reset their backends. */
void trunk_conn_free(struct trunk_conn *tc)
{
	/* The session goes without calling trunk_stream_on_close: fail what is open here. */
	conn_fail_streams(tc, true, "trunk closed");
	if (tc->streams) {
		/* The peer's last bytes are all here: let them reach the local sockets. */
		log_info("trunk peer=%s: %u streams still writing their last bytes locally",
			 tc->peer, tc->n_streams);
		tc->lingering = true;
		tc->next = tc->loop->lingering;
		tc->loop->lingering = tc;
		return;
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

/* A connection on fd (TLS not made yet), in loop->live. */
static struct trunk_conn *conn_new(struct trunk_loop *loop, int fd, const struct net_addr *peer,
				   struct trunk_stats *stats)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct trunk_conn *tc = xcalloc(1, sizeof(*tc));
	tc->loop = loop;
	tc->stats = stats;
	tc->fd = fd;
	tc->state = TRUNK_CONN_HANDSHAKE;
	net_addr_format(peer, tc->peer, sizeof(tc->peer));
	tc->rev = event_new(loop->base, fd, EV_READ | EV_PERSIST, on_conn_event, tc);
	tc->wev = event_new(loop->base, fd, EV_WRITE, on_conn_event, tc);
	tc->timer = evtimer_new(loop->base, on_conn_timer, tc);
	tc->last_active_ms = now_ms();
	tc->next = loop->live;
	loop->live = tc;
	return tc;
}

/* The handshake starts: read (and, calling, write: the TCP connect is in flight too). */
static void conn_start(struct trunk_conn *tc)
{
	if (!tc->tls) {
		trunk_conn_close(tc, "out of memory for TLS");
		return;
	}
	event_add(tc->rev, NULL);
	if (tc->loop->client)
		conn_arm_write(tc, true);
	struct timeval tv = timeval_from_ms(tc->loop->handshake_ms);
	evtimer_add(tc->timer, &tv);
}

void trunk_conn_accept(struct trunk_loop *loop, int fd, const struct net_addr *peer)
{
	struct trunk_conn *tc = conn_new(loop, fd, peer, &loop->listener->stats);
	tc->tls = tls_conn_new_server(loop->tls, fd, tc->peer);
	conn_start(tc);
}

struct trunk_conn *trunk_conn_dial(struct trunk_loop *loop, const struct net_addr *to,
				   const struct net_addr *from, const char *host,
				   struct trunk_stats *stats, const void *peer_key, char *err,
				   size_t errlen)
{
	int fd = socket(to->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return NULL;
	}
	if (from && from->ss.ss_family == to->ss.ss_family &&
	    bind(fd, (const struct sockaddr *)&from->ss, from->len) < 0) {
		snprintf(err, errlen, "bind: %s", strerror(errno));
		close(fd);
		return NULL;
	}
	if (connect(fd, (const struct sockaddr *)&to->ss, to->len) < 0 && errno != EINPROGRESS) {
		snprintf(err, errlen, "connect: %s", strerror(errno));
		close(fd);
		return NULL;
	}
	STAT_ADD(stats, conns_accepted, 1);
	struct trunk_conn *tc = conn_new(loop, fd, to, stats);
	tc->peer_key = peer_key;
	tc->tls = tls_conn_new(loop->tls, fd, host, tc->peer);
	conn_start(tc);
	return tc->state == TRUNK_CONN_CLOSED ? NULL : tc;
}

bool trunk_conn_usable(const struct trunk_conn *tc)
{
	return (tc->state == TRUNK_CONN_HANDSHAKE || tc->state == TRUNK_CONN_OPEN) && !tc->finishing;
}

void trunk_conn_goaway(struct trunk_conn *tc)
{
	if (tc->state == TRUNK_CONN_HANDSHAKE) {
		trunk_conn_close(tc, "draining");
		return;
	}
	if (tc->state != TRUNK_CONN_OPEN)
		return;
	nghttp2_submit_goaway(tc->h2, NGHTTP2_FLAG_NONE,
			      nghttp2_session_get_last_proc_stream_id(tc->h2), NGHTTP2_NO_ERROR, NULL, 0);
	trunk_conn_set_state(tc, TRUNK_CONN_GOAWAY);
	trunk_conn_pump(tc);
}

/* ---- streams ---------------------------------------------------------------------
 * one stream of a trunk connection (see trunk_conn.h): the
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


static void on_backend_event(evutil_socket_t fd, short what, void *arg);
static void stream_relay_gave_up(struct trunk_stream *st);
static void stream_answered(struct trunk_stream *st);

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
	bool calling = st->tc->loop->client;
	/* Calling and CONNECTING: readable means the relay gave up (its connect timeout). */
	if ((st->reading && !st->backend_eof) || (calling && st->state == TRUNK_STREAM_CONNECTING))
		what |= EV_READ;
	if ((!calling && st->state == TRUNK_STREAM_CONNECTING) || st->up_len > 0)
		what |= EV_WRITE;
	if (what == st->armed)
		return;		/* one epoll_ctl per change of interest, not per DATA frame */
	st->armed = what;
	event_del(st->ev);
	event_assign(st->ev, st->tc->loop->base, st->fd, what | EV_PERSIST, on_backend_event, st);
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
		STAT_ADD(st->tc->stats, bytes_in, (uint64_t)n);
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
		if (n == 0 && st->call && trunk_call_local_reset(st->call)) {
			/* The relay marked it before closing its end (trunk_call.h): RST_STREAM, not END_STREAM. */
			log_info("trunk peer=%s stream=%d: the client reset", st->tc->peer, st->id);
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
		STAT_ADD(st->tc->stats, window_stalls, 1);
	}
	return true;
}

/* The backend failed: reset the stream (CONNECT_ERROR) and the backend socket. */
static void stream_fail(struct trunk_stream *st, const char *reason)
{
	struct trunk_conn *tc = st->tc;
	if (!st->h2_closed && tc->h2) {
		nghttp2_submit_rst_stream(tc->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CONNECT_ERROR);
		STAT_ADD(tc->stats, resets_out, 1);
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
	STAT_ADD(st->tc->stats, bytes_out, n);
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
	if (st->state == TRUNK_STREAM_CONNECTING && tc->loop->client) {
		stream_relay_gave_up(st);
		trunk_conn_pump(tc);
		return;
	}
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
			STAT_ADD(tc->stats, connect_failures, 1);
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
	if (st->h2_closed) {
		/* The session is done with it: only the peer's last bytes and the FIN were left. */
		if (st->up_len == 0 && st->shut_wr)
			trunk_stream_close(st, "done", false);
		else
			stream_arm(st);
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
	STAT_ADD(st->tc->stats, connect_failures, 1);
	stream_refuse(st, "504");
	trunk_stream_close(st, "backend connect timeout", false);
	trunk_conn_pump(st->tc);
}

/* The request is in: judge it, then connect to the backend. */
static void stream_request(struct trunk_stream *st)
{
	struct trunk_conn *tc = st->tc;
	struct trunk_listener *tl = tc->loop->listener;
	struct trunk_stats *stats = tc->stats;
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
		STAT_ADD(stats, refused_not_announced, v == TRUNK_NOT_ANNOUNCED);
		STAT_ADD(stats, refused_bad_request, v == TRUNK_BAD_REQUEST);
		stream_refuse(st, v == TRUNK_NOT_ANNOUNCED ? "403" : "400");
		trunk_stream_close(st, trunk_verdict_name(v), false);
		return;
	}
	st->fd = socket(st->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (st->fd < 0) {
		log_warn("trunk peer=%s stream=%d: socket: %s", tc->peer, st->id, strerror(errno));
		STAT_ADD(stats, connect_failures, 1);
		stream_refuse(st, "503");
		trunk_stream_close(st, "out of sockets", false);
		return;
	}
	int one = 1;
	setsockopt(st->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	st->ev = event_new(tc->loop->base, st->fd, EV_WRITE | EV_PERSIST, on_backend_event, st);
	st->timer = evtimer_new(tc->loop->base, on_connect_timeout, st);
	if (connect(st->fd, (const struct sockaddr *)&st->addr.ss, st->addr.len) < 0 &&
	    errno != EINPROGRESS) {
		char a[80];
		net_addr_format(&st->addr, a, sizeof(a));
		log_info("trunk peer=%s stream=%d: backend %s: %s", tc->peer, st->id, a,
			 strerror(errno));
		STAT_ADD(stats, connect_failures, 1);
		stream_refuse(st, "502");
		trunk_stream_close(st, "backend refused", false);
		return;
	}
	struct timeval tv = timeval_from_ms(tc->loop->connect_timeout_ms);
	evtimer_add(st->timer, &tv);
	stream_arm(st);
}

/* Closed, and nghttp2 forgot it: off the connection, freed after the loop turn. */
/* A lingering connection whose last stream retired goes to be freed. */
static void conn_unlinger(struct trunk_conn *tc)
{
	struct trunk_loop *loop = tc->loop;
	for (struct trunk_conn **pp = &loop->lingering; *pp; pp = &(*pp)->next) {
		if (*pp == tc) {
			*pp = tc->next;
			break;
		}
	}
	tc->lingering = false;
	tc->next = loop->dead;
	loop->dead = tc;
}

void trunk_conn_free_lingering(struct trunk_loop *loop)
{
	while (loop->lingering)
		conn_fail_streams(loop->lingering, false, "shutdown");	/* the last one unlingers it */
}

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
	if (tc->lingering && tc->n_streams == 0)
		conn_unlinger(tc);
	STAT_SUB(tc->stats, streams_open, 1);
	st->prev = NULL;
	st->next = tc->loop->dead_streams;
	tc->loop->dead_streams = st;
	trunk_reap_soon(tc->loop);
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
	if (tc->loop->client && st->state == TRUNK_STREAM_CONNECTING && st->fd >= 0) {
		/* The relay waits for the answer: this one fails its connect (retried elsewhere). */
		uint8_t b = st->result == TRUNK_OPEN_OK ? TRUNK_OPEN_TRUNK_FAILED : st->result;
		(void)!send(st->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		STAT_ADD(tc->stats, connect_failures, 1);
		log_info("trunk peer=%s stream=%d: %s: %s", tc->peer, st->id, st->authority,
			 trunk_open_result_name(b));
	}
	stream_set_state(st, TRUNK_STREAM_CLOSED);
	if (st->ev)
		event_del(st->ev);
	if (st->timer)
		evtimer_del(st->timer);
	if (st->fd >= 0) {
		if (reset_backend) {
			struct linger lg = { 1, 0 };
			setsockopt(st->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			/*
			 * A unix socket has no RST: the relay learns it from the mark,
			 * which must be stored before the close it reads it after.
			 */
			if (st->call)
				trunk_call_mark_remote(st->call, TRUNK_CALL_RESET);
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
	trunk_call_put(st->call);
	free(st->up);
	free(st->down);
	free(st);
}

/* A CONNECTING stream (id 0: calling, not submitted yet) on tc's list, counted. */
static struct trunk_stream *stream_new(struct trunk_conn *tc, int32_t id, int fd)
{
	struct trunk_stream *st = xcalloc(1, sizeof(*st));
	st->tc = tc;
	st->id = id;
	st->fd = fd;
	st->state = TRUNK_STREAM_CONNECTING;
	st->next = tc->streams;
	if (tc->streams)
		tc->streams->prev = st;
	tc->streams = st;
	tc->n_streams++;
	STAT_ADD(tc->stats, streams, 1);
	STAT_ADD(tc->stats, streams_open, 1);
	return st;
}

int trunk_stream_on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *arg)
{
	struct trunk_conn *tc = arg;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (tc->n_streams >= tc->loop->max_streams || tc->state != TRUNK_CONN_OPEN) {
		STAT_ADD(tc->stats, refused_limit, 1);
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, f->hd.stream_id,
					  NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	struct trunk_stream *st = stream_new(tc, f->hd.stream_id, -1);
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
	struct trunk_conn *tc = arg;
	(void)flags;
	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct trunk_stream *st = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
	if (!st)
		return 0;
	if (tc->loop->client) {
		/* Only the answer's :status matters; a bad one is no 2xx, so a failed connect. */
		if (f->headers.cat == NGHTTP2_HCAT_RESPONSE && namelen == 7 &&
		    memcmp(name, ":status", 7) == 0 && valuelen == 3 && value[0] >= '1' &&
		    value[0] <= '5' && value[1] >= '0' && value[1] <= '9' && value[2] >= '0' &&
		    value[2] <= '9')
			st->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
		return 0;
	}
	if (f->headers.cat != NGHTTP2_HCAT_REQUEST)
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
	if (f->hd.type == NGHTTP2_GOAWAY && tc->state == TRUNK_CONN_OPEN) {
		/* The other side drains: new streams go to another connection. */
		log_info("trunk peer=%s: GOAWAY received (%u streams)", tc->peer, tc->n_streams);
		trunk_conn_set_state(tc, TRUNK_CONN_GOAWAY);
	}
	struct trunk_stream *st = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
	if (!st || st->state == TRUNK_STREAM_CLOSED)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST &&
	    !tc->loop->client)
		stream_request(st);
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_RESPONSE &&
	    tc->loop->client && st->state == TRUNK_STREAM_CONNECTING)
		stream_answered(st);
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
		st->up_cap = MIN(MAX(cap, (size_t)16384), (size_t)tc->loop->stream_window);
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
	if (st->state == TRUNK_STREAM_CONNECTING && tc->loop->client)
		st->result = TRUNK_OPEN_RESET;	/* no answer: REFUSED_STREAM (GOAWAY, a limit) */
	if (code == NGHTTP2_NO_ERROR && st->state != TRUNK_STREAM_CLOSED && st->fd >= 0 &&
	    st->remote_eof && (st->up_len > 0 || !st->shut_wr)) {
		/*
		 * Both END_STREAMs are through, but the local socket has not taken
		 * all of the peer's bytes yet (a slow reader): finish writing them
		 * and the FIN first (on_backend_event closes it then).
		 */
		stream_arm(st);
		return 0;
	}
	if (st->state != TRUNK_STREAM_CLOSED) {
		bool reset = code != NGHTTP2_NO_ERROR;
		STAT_ADD(tc->stats, resets_in, reset);
		trunk_stream_close(st, reset ? "reset by the caller" : "done", reset);
	} else {
		trunk_stream_retire(st);
	}
	return 0;
}

/* ---- streams of the calling side ----------------------------------------------------
 * A relay holds the other end of st->fd and waits for one byte: the
 * stream's trunk_open_result. Nothing is read from it before a 2xx (the
 * relay sends nothing before it either), except to notice that the relay
 * gave up.
 */

/* Send the CONNECT (the connection is open). */
static void stream_submit(struct trunk_stream *st)
{
	struct trunk_conn *tc = st->tc;
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"CONNECT", 7, 7, NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)":authority", (uint8_t *)st->authority, 10, st->authority_len,
		  NGHTTP2_NV_FLAG_NONE },
	};
	nghttp2_data_provider dp = { .source.ptr = st, .read_callback = on_data_read };
	int32_t id = nghttp2_submit_request(tc->h2, NULL, nv, ARRAY_SIZE(nv), &dp, st);
	if (id < 0) {
		st->result = TRUNK_OPEN_TRUNK_FAILED;
		st->h2_closed = true;		/* nghttp2 never knew it */
		trunk_stream_close(st, nghttp2_strerror(id), false);
		return;
	}
	st->id = id;
}

static void conn_submit_waiting(struct trunk_conn *tc)
{
	for (struct trunk_stream *st = tc->streams, *next; st; st = next) {
		next = st->next;	/* a failed submit retires st */
		if (st->id == 0 && st->state == TRUNK_STREAM_CONNECTING)
			stream_submit(st);
	}
	trunk_conn_pump(tc);
}

void trunk_stream_open(struct trunk_conn *tc, int fd, const struct net_addr *target,
		       struct trunk_call *call)
{
	struct trunk_stream *st = stream_new(tc, 0, fd);
	st->call = call;
	st->addr = *target;
	net_addr_format(target, st->authority, sizeof(st->authority));
	st->authority_len = strlen(st->authority);
	st->ev = event_new(tc->loop->base, fd, EV_READ | EV_PERSIST, on_backend_event, st);
	stream_arm(st);
	if (tc->state == TRUNK_CONN_OPEN && tc->h2) {
		stream_submit(st);
		trunk_conn_pump(tc);
	}
}

/* The relay closed its end before the answer (its connect timeout): cancel. */
static void stream_relay_gave_up(struct trunk_stream *st)
{
	struct trunk_conn *tc = st->tc;
	if (st->id > 0 && !st->h2_closed && tc->h2)
		nghttp2_submit_rst_stream(tc->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
	else
		st->h2_closed = true;		/* not submitted: nghttp2 never knew it */
	st->result = TRUNK_OPEN_TRUNK_FAILED;
	trunk_stream_close(st, "the relay gave up", false);
}

/* The answer to the CONNECT: tell the relay, then relay both ways (2xx) or give up. */
static void stream_answered(struct trunk_stream *st)
{
	struct trunk_conn *tc = st->tc;
	enum trunk_open_result r = trunk_open_result_from_status(st->status);
	if (r != TRUNK_OPEN_OK) {
		/* Our side of the stream is still open: end it too. */
		nghttp2_submit_rst_stream(tc->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
		st->result = r;
		trunk_stream_close(st, trunk_open_result_name(r), false);
		return;
	}
	uint8_t ok = TRUNK_OPEN_OK;
	/* A fresh socketpair's buffer takes the byte; anything else means the relay left. */
	if (send(st->fd, &ok, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) {
		st->result = TRUNK_OPEN_OK;
		stream_fail(st, "the relay left");
		return;
	}
	if (!stream_set_state(st, TRUNK_STREAM_OPEN))
		return;
	st->down = xmalloc(TRUNK_DOWN_MAX);
	st->reading = true;
	stream_arm(st);
}
