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

static void conn_start_h2(struct trunk_conn *tc)
{
	struct trunk_listener *tl = tc->tl;
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, trunk_stream_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, trunk_stream_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, trunk_stream_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, trunk_stream_on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, trunk_stream_on_close);
	nghttp2_option_new(&opt);
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_send_header_block_length(opt, 16384);
	int rc = nghttp2_session_server_new2(&tc->h2, cb, tc, opt);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	if (rc != 0) {
		trunk_conn_close(tc, "out of memory");
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
			STAT_ADD(tc->tl, handshake_failures, 1);
			trunk_conn_close(tc, "handshake failed");
			return;
		}
		conn_arm_write(tc, false);
		trunk_conn_set_state(tc, TRUNK_CONN_OPEN);
		STAT_ADD(tc->tl, conns_open, 1);
		log_info("trunk peer=%s: open (%s)", tc->peer,
			 tls_result_name(tls_conn_outcome(tc->tls)));
		conn_start_h2(tc);
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
		STAT_ADD(tc->tl, handshake_failures, 1);
		log_info("trunk peer=%s: TLS handshake timed out", tc->peer);
		trunk_conn_close(tc, "handshake timeout");
		return;
	}
	uint64_t idle = now_ms() - tc->last_active_ms;
	if (tc->n_streams == 0 && tc->tl->idle_timeout_ms && idle >= tc->tl->idle_timeout_ms) {
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
	struct trunk_listener *tl = tc->tl;
	if (tc->state == TRUNK_CONN_CLOSED)
		return;
	bool was_open = tc->state != TRUNK_CONN_HANDSHAKE;
	log_info("trunk peer=%s: closed: %s (%u streams)", tc->peer, reason, tc->n_streams);
	trunk_conn_set_state(tc, TRUNK_CONN_CLOSED);
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
	trunk_listener_reap_soon(tl);
}

/* Free a closed connection: its streams lose their trunk and reset their backends. */
void trunk_conn_free(struct trunk_conn *tc)
{
	/* The session goes without calling trunk_stream_on_close: fail what is open here. */
	while (tc->streams) {
		struct trunk_stream *st = tc->streams;
		st->h2_closed = true;
		if (st->state == TRUNK_STREAM_CLOSED)
			trunk_stream_retire(st);
		else
			trunk_stream_close(st, "trunk closed", true);
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

void trunk_conn_accept(struct trunk_listener *tl, int fd, const struct net_addr *peer)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct trunk_conn *tc = xcalloc(1, sizeof(*tc));
	tc->tl = tl;
	tc->fd = fd;
	tc->state = TRUNK_CONN_HANDSHAKE;
	net_addr_format(peer, tc->peer, sizeof(tc->peer));
	tc->tls = tls_conn_new_server(tl->tls, fd, tc->peer);
	tc->rev = event_new(tl->base, fd, EV_READ | EV_PERSIST, on_conn_event, tc);
	tc->wev = event_new(tl->base, fd, EV_WRITE, on_conn_event, tc);
	tc->timer = evtimer_new(tl->base, on_conn_timer, tc);
	tc->last_active_ms = now_ms();
	tc->next = tl->live;
	tl->live = tc;
	if (!tc->tls) {
		trunk_conn_close(tc, "out of memory for TLS");
		return;
	}
	event_add(tc->rev, NULL);
	struct timeval tv = timeval_from_ms(TRUNK_HANDSHAKE_MS);
	evtimer_add(tc->timer, &tv);
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
