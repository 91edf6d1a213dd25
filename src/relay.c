/*
 * relay — see relay.h.
 *
 * Copying: a readable side is read into the relay worker's scratch buffer
 * and written straight to the other side; only what the other side does not
 * take at once is kept, in a buffer of max_buffer bytes borrowed from the
 * relay worker's spares.
 * While that buffer is full the reading side is not read (the kernel's
 * window then pushes back on the sender); it is read again once the buffer
 * has drained to half (libevent's le-proxy watermark scheme). An idle
 * connection holds no buffer at all.
 *
 * Bulk transfers: once SPLICE_AFTER reads in a row of a direction fill the
 * whole read buffer (a stream, not request/response traffic, for which
 * splicing small messages costs more than copying them) and no framing
 * tracker needs to see the bytes, the direction switches to splice(2)
 * through a pipe borrowed from the spares, so the bytes never enter user
 * space. One pipe load is in flight at a time; reading resumes when it has
 * drained.
 *
 * TLS (tls: on the service): after the TCP connect the relay stays
 * CONNECTING through the handshake, so connect_timeout covers both and a
 * failed handshake is a failed connect (retried elsewhere, counted against
 * the backend). Not a byte of the client's is read before the handshake
 * has verified the backend. Upstream reads and writes then go through the
 * struct tls_conn (half_recv/half_send), splice is off (the kernel would
 * move ciphertext), the client's FIN becomes close_notify and a FIN, and
 * the backend's close_notify our FIN to the client. Decrypted bytes can
 * wait inside OpenSSL while the socket is quiet: whenever reading the
 * upstream is (re)enabled with such bytes waiting, the read event is made
 * active by hand (relay_tls_kick).
 *
 * Trunk (via: trunk|auto, trunk_client.h): the upstream socket is the
 * relay's end of a socketpair whose other end the trunk thread relays as
 * an HTTP/2 stream. The relay stays CONNECTING until the one byte the
 * trunk thread writes first says whether the remote host connected to the
 * instance (on_trunk_answer), so a refusal is a failed connect like any
 * other; after it the socket is copied as a TCP one. A socketpair has no
 * RST, so resets cross it through the stream's trunk_call (trunk_call.h):
 * an EOF on a stream the trunk thread marked reset (or lost) is taken as
 * ECONNRESET, and a relay that closes with a reset marks it before closing
 * its end, for the trunk thread to send RST_STREAM instead of END_STREAM.
 *
 * Resets: a reset (or a read or write error) on either side closes the
 * other with a reset too (SO_LINGER 0), so neither end mistakes a broken
 * connection for a complete one; a backend's reset before its first byte
 * is a failure of that instance (passive ejection).
 *
 * Kernel relay (relay: kernel|auto, relay_kernel.c, krelay.h): once established, a plain
 * TCP pair without framing goes into the BPF sockmap and the kernel moves
 * its bytes. The worker then watches each socket only for FIN, reset and
 * error (EV_CLOSED, edge-triggered: the data_ready wake-ups of every
 * message carry EPOLLIN, which is not asked for), and the worker's sweep
 * (rw->ksweep) reads the counters, passes a FIN on once the bytes before it
 * are out, and moves a connection whose reader fell behind (it spilled) to
 * the copying relay for good: both directions spill, and reading starts
 * once what the kernel redirected has reached its target.
 *
 * Timeouts: one timer per relay, owned by the current state: the connect
 * timeout while WAITING or CONNECTING, the idle timeout once ESTABLISHED
 * (re-armed lazily from `last_active_ms`, so traffic costs no timer update).
 */
#include "relay_int.h"
#include "accesslog.h"
#include "backend.h"
#include "backend_set.h"
#include "framing.h"
#include "log.h"
#include "proxy_header.h"
#include "pool.h"
#include "service.h"
#include "tls.h"
#include "trunk.h"
#include "trunk_call.h"
#include "trunk_client.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SPLICE_AFTER 4			/* full reads in a row that make a direction splice */
#define SPLICE_CHUNK (256 * 1024)	/* at most this much in a pipe at once (its size) */
#define RELAY_SCRATCH_LEN (64 * 1024)	/* rw->scratch, the read buffer of the fast path */

static const char *const close_reason_names[RELAY_CLOSE_REASONS] = {
	[RELAY_CLOSE_DONE] = "done",
	[RELAY_CLOSE_CLIENT_ERROR] = "client_error",
	[RELAY_CLOSE_BACKEND_ERROR] = "backend_error",
	[RELAY_CLOSE_IDLE_TIMEOUT] = "idle_timeout",
	[RELAY_CLOSE_CONNECT_FAILED] = "connect_failed",
	[RELAY_CLOSE_NO_BACKEND] = "no_backend",
	[RELAY_CLOSE_WAIT_TIMEOUT] = "wait_timeout",
	[RELAY_CLOSE_LOCAL_ERROR] = "local_error",
	[RELAY_CLOSE_BACKEND_DEMOTED] = "backend_demoted",
	[RELAY_CLOSE_SHUTDOWN] = "shutdown",
	[RELAY_CLOSE_INSTANCE_LIMIT] = "instance_limit",
	[RELAY_CLOSE_BUFFER_BUDGET] = "buffer_budget",
	[RELAY_CLOSE_QUEUE_TIMEOUT] = "queue_timeout",
};

const char *relay_close_reason_name(enum relay_close_reason r)
{
	return r < RELAY_CLOSE_REASONS ? close_reason_names[r] : "?";
}

static void relay_close(struct relay *r, enum relay_close_reason why);
static void relay_client_fin(struct relay *r);
static void relay_upstream_write_failed(struct relay *r);
static void relay_connect_next(struct relay *r);
static void on_client_read(evutil_socket_t fd, short what, void *arg);
static void on_client_write(evutil_socket_t fd, short what, void *arg);
static void on_upstream_read(evutil_socket_t fd, short what, void *arg);
static void on_upstream_write(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void on_upstream_handshake(evutil_socket_t fd, short what, void *arg);

static void arm_timer(struct relay *r, uint64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	event_add(&r->timer, &tv);
}

static const char *const state_names[RELAY_STATES] = {
	[RELAY_NEW] = "new",
	[RELAY_WAITING] = "waiting",
	[RELAY_CONNECTING] = "connecting",
	[RELAY_ESTABLISHED] = "established",
	[RELAY_CLOSED] = "closed",
};

const char *relay_state_name(enum relay_state s)
{
	return s < RELAY_STATES ? state_names[s] : "?";
}

bool relay_transition_allowed(enum relay_state from, enum relay_state to)
{
	switch (from) {
	case RELAY_NEW:
		/* Routed at once: waits, connects, or takes a pooled/at-once connection. */
		return to == RELAY_WAITING || to == RELAY_CONNECTING || to == RELAY_ESTABLISHED ||
		       to == RELAY_CLOSED;
	case RELAY_WAITING:
		return to == RELAY_CONNECTING || to == RELAY_ESTABLISHED || to == RELAY_CLOSED;
	case RELAY_CONNECTING:
		/* CONNECTING again: the retry on another backend, with a fresh timeout. */
		return to == RELAY_CONNECTING || to == RELAY_ESTABLISHED || to == RELAY_CLOSED;
	case RELAY_ESTABLISHED:
		return to == RELAY_CLOSED;
	case RELAY_CLOSED:
	case RELAY_STATES:
		return false;
	}
	return false;
}

/*
 * The one place states change; also owns which timeout is armed. Refuses a
 * move the lifecycle does not have: that is a bug, logged, not asserted.
 */
static bool relay_set_state(struct relay *r, enum relay_state s)
{
	const struct service_conf *conf = r->set->conf;
	if (!relay_transition_allowed(r->state, s)) {
		log_error("svc=%s refused relay transition %s -> %s", r->set->svc->name,
			  relay_state_name(r->state), relay_state_name(s));
		return false;
	}
	r->state = s;
	switch (s) {
	case RELAY_NEW:
	case RELAY_STATES:
		break;
	case RELAY_WAITING:
	case RELAY_CONNECTING:
		arm_timer(r, conf->connect_timeout_ms);
		break;
	case RELAY_ESTABLISHED:
		if (conf->idle_timeout_ms)
			arm_timer(r, conf->idle_timeout_ms);
		else
			event_del(&r->timer);
		break;
	case RELAY_CLOSED:
		event_del(&r->timer);
		break;
	}
	return true;
}

/* The client's address, for the access log; len 0 when unknown. */
static void relay_peer(int cfd, struct net_addr *peer)
{
	peer->len = sizeof(peer->ss);
	if (getpeername(cfd, (struct sockaddr *)&peer->ss, &peer->len) < 0)
		peer->len = 0;
}

static void set_nodelay(int fd)
{
	int one = 1;
	/* Fails harmlessly on unix sockets. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void relay_accept(struct relay_worker *rw, struct backend_set *set, struct relay_queue *q,
		  int cfd, uint64_t accepted_ms)
{
	struct relay *r = calloc(1, sizeof(*r));
	if (!r) {
		/* Out of memory: this client goes, zklb stays. */
		close(cfd);
		service_conn_release(set->svc);
		atomic_fetch_add_explicit(&rw->closes[RELAY_CLOSE_LOCAL_ERROR], 1, memory_order_relaxed);
		if (rw->budget)
			atomic_fetch_add_explicit(&rw->budget->refusals, 1, memory_order_relaxed);
		return;
	}
	r->rw = rw;
	r->state = RELAY_NEW;
	r->cfd = cfd;
	r->ufd = -1;
	r->set = backend_set_get(set);
	r->cap = (uint32_t)r->set->conf->max_buffer;
	r->last_active_ms = now_ms();
	r->accepted_ms = accepted_ms ? accepted_ms : r->last_active_ms;
	if (rw->alog)
		relay_peer(cfd, &r->peer);
	r->c2u.pipe[0] = r->c2u.pipe[1] = -1;
	r->u2c.pipe[0] = r->u2c.pipe[1] = -1;
	/* TCP_NODELAY: inherited from the listener (worker.c), no syscall here. */

	event_assign(&r->cr, rw->base, cfd, EV_READ | EV_PERSIST, on_client_read, r);
	event_assign(&r->cw, rw->base, cfd, EV_WRITE | EV_PERSIST, on_client_write, r);
	evtimer_assign(&r->timer, rw->base, on_timer, r);

	r->next = rw->live;
	if (rw->live)
		rw->live->prev = r;
	rw->live = r;
	atomic_fetch_add_explicit(&rw->n_relays, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->set->svc->conn_total, 1, memory_order_relaxed);

	if (!r->set->ready) {
		/* No view yet (discovery has not answered): wait, do not refuse. */
		r->q = q;
		r->wnext = q->head;
		q->head = r;
		relay_set_state(r, RELAY_WAITING);
		return;
	}
	relay_connect_next(r);
}

static void unlink_waiting(struct relay *r)
{
	if (!r->q)
		return;
	for (struct relay **pp = &r->q->head; *pp; pp = &(*pp)->wnext) {
		if (*pp == r) {
			*pp = r->wnext;
			break;
		}
	}
	r->q = NULL;
	r->wnext = NULL;
}

void relay_wake_waiting(struct relay_queue *q, struct backend_set *set)
{
	struct relay *list = q->head;
	q->head = NULL;
	while (list) {
		struct relay *r = list;
		list = r->wnext;
		r->wnext = NULL;
		r->q = NULL;
		/* Route with the new view. */
		backend_set_put(r->set);
		r->set = backend_set_get(set);
		r->cap = (uint32_t)r->set->conf->max_buffer;
		relay_connect_next(r);
	}
}

void relay_detach_waiting(struct relay_queue *q)
{
	for (struct relay *r = q->head; r; r = r->wnext)
		r->q = NULL;
	q->head = NULL;
}

/*
 * Close fd with a TCP RST (SO_LINGER 0). A trunk stream's socketpair has no
 * RST: mark its call first, so that the trunk thread, once it sees the close,
 * finds the mark and resets the stream (trunk_call.h on the ordering).
 */
static void close_with_reset(int fd, struct trunk_call *call)
{
	if (call)
		trunk_call_mark_local_reset(call);
	struct linger lg = { 1, 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* Drop the current upstream attempt (failed connect or reset). */
static void upstream_release(struct relay *r)
{
	if (r->ufd >= 0) {
		/* Not yet assigned when the first connect failed at once. */
		if (event_initialized(&r->ur))
			event_del(&r->ur);
		if (event_initialized(&r->uw))
			event_del(&r->uw);
		if (r->tls)
			backend_count_tls_bytes(r->be, r->tls);	/* a close_notify, maybe */
		tls_conn_free(r->tls);
		r->tls = NULL;
		if (r->reset)
			close_with_reset(r->ufd, r->call);
		else
			close(r->ufd);
		r->ufd = -1;
	}
	trunk_call_put(r->call);
	r->call = NULL;
	if (r->be) {
		atomic_fetch_sub_explicit(&r->be->active, 1, memory_order_relaxed);
		backend_put(r->be);
		r->be = NULL;
	}
}

static void relay_established(struct relay *r)
{
	enum reuse_kind reuse = r->set->conf->pool.reuse;
	if (reuse != REUSE_NONE && !r->fr)
		r->fr = framing_new(reuse);
	if (r->tls) {
		/* splice would move ciphertext */
		r->c2u.no_splice = true;
		r->u2c.no_splice = true;
	}
	event_assign(&r->uw, r->rw->base, r->ufd, EV_WRITE | EV_PERSIST, on_upstream_write, r);
	event_assign(&r->ur, r->rw->base, r->ufd, EV_READ | EV_PERSIST, on_upstream_read, r);
	relay_set_state(r, RELAY_ESTABLISHED);
	r->last_active_ms = now_ms();
	r->established_ms = r->last_active_ms;
	/* kernel: pair now; auto: once the connection shows it stays (relay_kernel_due) */
	if (relay_kernel_wanted(r)) {
		if (r->set->conf->relay == RELAY_MODE_AUTO)
			r->kwant = true;
		else if (relay_kernel_start(r))
			return;
	}
	event_add(&r->cr, NULL);
	event_add(&r->ur, NULL);
}

/* A connect attempt failed: count it against the backend and try another. */
static void relay_connect_failed(struct relay *r, const char *why)
{
	service_report_failure(r->set->svc, r->be, why);
	upstream_release(r);
	relay_connect_next(r);
}

/* Stop whatever upstream event the connect or the handshake left armed. */
static void upstream_events_del(struct relay *r)
{
	if (event_initialized(&r->ur))
		event_del(&r->ur);
	if (event_initialized(&r->uw))
		event_del(&r->uw);
}

/* One step of the upstream handshake; arms the event it waits for. */
static void relay_tls_step(struct relay *r)
{
	enum tls_io io = tls_conn_handshake(r->tls);
	backend_count_tls_bytes(r->be, r->tls);
	upstream_events_del(r);
	switch (io) {
	case TLS_IO_DONE:
		backend_count_tls(r->be, tls_conn_outcome(r->tls), NULL, now_ms());
		relay_established(r);
		return;
	case TLS_IO_WANT_READ:
		event_assign(&r->ur, r->rw->base, r->ufd, EV_READ, on_upstream_handshake, r);
		event_add(&r->ur, NULL);
		return;
	case TLS_IO_WANT_WRITE:
		event_assign(&r->uw, r->rw->base, r->ufd, EV_WRITE, on_upstream_handshake, r);
		event_add(&r->uw, NULL);
		return;
	case TLS_IO_EOF:
	case TLS_IO_ERROR:
		break;
	}
	char why[200];
	snprintf(why, sizeof(why), "TLS handshake: %s", tls_conn_reason(r->tls));
	backend_count_tls(r->be, tls_conn_outcome(r->tls), tls_conn_reason(r->tls), now_ms());
	relay_connect_failed(r, why);
}

static void on_upstream_handshake(evutil_socket_t fd, short what, void *arg)
{
	relay_tls_step(arg);
}

/* TCP is connected: relay, or first shake hands (still CONNECTING, same timer). */
static void relay_upstream_connected(struct relay *r)
{
	if (!r->set->conf->tls.enabled) {
		relay_established(r);
		return;
	}
	struct tls_ctx *ctx = r->set->conf->tls.ctx;
	r->tls = ctx ? tls_conn_new(ctx, r->ufd, r->be->host, r->be->name) : NULL;
	if (!r->tls) {
		/* Never plaintext to a TLS backend: give up on this client. */
		log_error("svc=%s be=%s cannot set up TLS for the connection", r->set->svc->name,
			  r->be->name);
		upstream_release(r);
		relay_close(r, RELAY_CLOSE_LOCAL_ERROR);
		return;
	}
	relay_tls_step(r);
}

/*
 * proxy_protocol v2: the header goes first on a fresh upstream connection
 * (never a pooled one: the configuration excludes pooling). The socket has
 * just connected, so its empty send buffer takes the <= 52 bytes at once; a
 * short write is treated as a failed connect.
 */
static bool relay_send_proxy_header(struct relay *r)
{
	struct sockaddr_storage src, dst;
	socklen_t slen = sizeof(src), dlen = sizeof(dst);
	uint8_t hdr[PROXY_HEADER_V2_MAX];
	bool known = getpeername(r->cfd, (struct sockaddr *)&src, &slen) == 0 &&
		     getsockname(r->cfd, (struct sockaddr *)&dst, &dlen) == 0;
	size_t n = proxy_header_v2(known ? &src : NULL, known ? &dst : NULL, hdr);
	return send(r->ufd, hdr, n, MSG_NOSIGNAL) == (ssize_t)n;
}

/* A fresh upstream connection is up: the PROXY header first, when asked for. */
static void relay_connected(struct relay *r)
{
	if (r->set->conf->proxy_protocol == PROXY_PROTOCOL_V2 && !relay_send_proxy_header(r)) {
		relay_connect_failed(r, "cannot write the PROXY header");
		return;
	}
	relay_upstream_connected(r);
}

/*
 * Why a client closes when no backend is left to try: a connect failed
 * before, or nothing was tried because every instance was full
 * (max_connections_per_instance: `full` of them), or nothing is routable.
 */
static enum relay_close_reason relay_nothing_left(const struct relay *r, size_t full)
{
	if (r->attempts)
		return RELAY_CLOSE_CONNECT_FAILED;
	return full ? RELAY_CLOSE_INSTANCE_LIMIT : RELAY_CLOSE_NO_BACKEND;
}

/*
 * A connect to a loopback address completes inside connect() itself (the
 * kernel runs the whole handshake in the caller's softirq), yet a
 * non-blocking socket still answers EINPROGRESS. Asking the socket's state
 * then spares the wait for writability: an epoll_ctl, a getsockopt and a
 * loop turn per connection fewer. Other destinations are not asked: their
 * handshake takes a round trip, and the question would only add a syscall.
 */
static bool connected_at_once(int fd, const struct net_addr *a)
{
	if (!sockaddr_is_loopback((const struct sockaddr *)&a->ss))
		return false;
	struct tcp_info ti;
	socklen_t len = sizeof(ti.tcpi_state);	/* the first byte is all we read */
	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && len >= sizeof(ti.tcpi_state) &&
	       ti.tcpi_state == TCP_ESTABLISHED;
}

/* The trunk thread's one byte: the remote host connected to the instance, or why not. */
static void on_trunk_answer(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	uint8_t b;
	(void)what;
	ssize_t n = recv(fd, &b, 1, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		event_add(&r->ur, NULL);
		return;
	}
	if (n == 1 && b == TRUNK_OPEN_OK) {
		event_del(&r->ur);
		relay_connected(r);
		return;
	}
	char why[64];
	snprintf(why, sizeof(why), "trunk: %s",
		 n == 1 ? trunk_open_result_name((enum trunk_open_result)b) : "closed");
	relay_connect_failed(r, why);
}

/* Open the upstream as a stream of the trunk of be's host (its port tport); CONNECTING. */
static void relay_connect_trunk(struct relay *r, uint16_t tport)
{
	struct backend *be = r->be;
	struct net_addr trunk = be->addr;
	if (trunk.ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&trunk.ss)->sin6_port = htons(tport);
	else
		((struct sockaddr_in *)&trunk.ss)->sin_port = htons(tport);
	int fd = trunk_client_open(r->rw->trunk, &trunk, be->host, &be->addr, &r->call);
	if (fd < 0) {
		log_warn("svc=%s be=%s cannot open a trunk stream: %s", r->set->svc->name, be->name,
			 strerror(errno));
		upstream_release(r);
		relay_close(r, RELAY_CLOSE_LOCAL_ERROR);
		return;
	}
	r->ufd = fd;
	event_assign(&r->ur, r->rw->base, fd, EV_READ, on_trunk_answer, r);
	event_add(&r->ur, NULL);
	relay_set_state(r, RELAY_CONNECTING);
}

static void relay_connect_next(struct relay *r)
{
	const struct service_conf *conf = r->set->conf;
	uint64_t now = now_ms();
	size_t races = 0;	/* slots lost to another worker since the last attempt */

	for (;;) {
		/* retries <= CONFIG_MAX_RETRIES (the schema): tried[] holds every attempt */
		if (r->attempts > conf->retries || r->attempts >= RELAY_MAX_TRIED) {
			relay_close(r, RELAY_CLOSE_CONNECT_FAILED);
			return;
		}
		size_t full = 0;
		struct backend *be = relay_choose(r, now, &full);
		if (!be) {
			if (full)
				atomic_fetch_add_explicit(&r->set->svc->at_capacity, 1, memory_order_relaxed);
			relay_close(r, relay_nothing_left(r, full));
			return;
		}
		if (!backend_take_slot(be, conf->max_connections_per_instance)) {
			/* another worker took the last slot: choose again; it now looks full */
			if (++races <= r->set->n)
				continue;
			atomic_fetch_add_explicit(&r->set->svc->at_capacity, 1, memory_order_relaxed);
			relay_close(r, relay_nothing_left(r, 1));
			return;
		}
		races = 0;
		if (r->attempts)
			atomic_fetch_add_explicit(&r->set->svc->retries, 1, memory_order_relaxed);
		r->tried[r->attempts] = be;
		r->attempts++;
		r->be = backend_get(be);	/* its slot in be->active is taken above */
		atomic_fetch_add_explicit(&be->conn_total, 1, memory_order_relaxed);

		if (conf->pool.reuse != REUSE_NONE || conf->pool.prewarm) {
			struct framing *fr = NULL;
			struct tls_conn *tls = NULL;
			int pfd = pool_take(r->rw->pool, be, &fr, &tls);
			if (pfd >= 0) {
				r->ufd = pfd;
				r->fr = fr;
				r->tls = tls;
				r->reused = true;
				relay_established(r);
				return;
			}
		}

		atomic_fetch_add_explicit(&be->upstream_opened, 1, memory_order_relaxed);
		uint16_t tport = relay_trunk_port(r, be);
		if (tport) {
			relay_connect_trunk(r, tport);
			return;
		}
		int fd = socket(be->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			log_warn("svc=%s cannot create upstream socket: %s", r->set->svc->name,
				 strerror(errno));
			upstream_release(r);
			relay_close(r, RELAY_CLOSE_LOCAL_ERROR);
			return;
		}
		set_nodelay(fd);
		r->ufd = fd;
		int err = connect(fd, (struct sockaddr *)&be->addr.ss, be->addr.len) == 0 ? 0 : errno;
		if (err == 0 || (err == EINPROGRESS && connected_at_once(fd, &be->addr))) {
			relay_set_state(r, RELAY_CONNECTING);	/* the handshake's timeout */
			relay_connected(r);
			return;
		}
		if (err == EINPROGRESS) {
			event_assign(&r->uw, r->rw->base, fd, EV_WRITE, on_upstream_write, r);
			event_add(&r->uw, NULL);
			relay_set_state(r, RELAY_CONNECTING);
			return;
		}
		if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM ||
		    err == EADDRNOTAVAIL) {
			/* Our problem, not the backend's: do not eject it for this. */
			log_warn("svc=%s be=%s connect: %s", r->set->svc->name, be->name, strerror(err));
			upstream_release(r);
			relay_close(r, RELAY_CLOSE_LOCAL_ERROR);
			return;
		}
		service_report_failure(r->set->svc, be, strerror(err));
		upstream_release(r);
	}
}

/* Charge `bytes` held for a slow reader to max_buffer_memory; false when it is spent. */
static bool budget_take(struct relay *r, uint64_t bytes)
{
	struct relay_budget *b = r->rw->budget;
	if (!b)
		return true;
	uint64_t limit = atomic_load_explicit(&b->limit, memory_order_relaxed);
	uint64_t used = atomic_fetch_add_explicit(&b->used, bytes, memory_order_relaxed);
	if (limit && used + bytes > limit) {
		atomic_fetch_sub_explicit(&b->used, bytes, memory_order_relaxed);
		return false;
	}
	return true;
}

static void budget_give(struct relay *r, uint64_t bytes)
{
	if (r->rw->budget)
		atomic_fetch_sub_explicit(&r->rw->budget->used, bytes, memory_order_relaxed);
}

/*
 * A buffer for bytes the other side did not take, within the budget; NULL
 * when the budget is spent or memory is short (the relay is then closed).
 */
static void *half_buf_get(struct relay *r)
{
	if (!budget_take(r, r->cap)) {
		r->over_budget = true;
		return NULL;
	}
	void *buf = spare_buf_get(&r->rw->spares, r->cap);
	if (!buf)
		budget_give(r, r->cap);
	return buf;
}

static void half_release(struct relay *r, struct relay_half *h)
{
	if (h->buf) {
		spare_buf_put(&r->rw->spares, h->buf, r->cap);
		h->buf = NULL;
		budget_give(r, r->cap);
	}
	h->start = h->end = 0;
}

/* Give the pipe back (relay closing). A pipe with bytes in it is closed. */
static void relay_half_unsplice(struct relay *r, struct relay_half *h)
{
	if (h->pipe[0] < 0)
		return;
	spare_pipe_put(&r->rw->spares, h->pipe, h->piped == 0);
	h->pipe[0] = h->pipe[1] = -1;
	h->piped = 0;
	budget_give(r, SPARE_PIPE_SIZE);
}

/* Move what sits in the pipe to fd. false on a fatal write error. */
static bool half_flush_pipe(struct relay_half *h, int fd)
{
	while (h->piped) {
		ssize_t n = splice(h->pipe[0], NULL, fd, NULL, h->piped,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n == 0)
			return true;	/* nothing moved: wait for writability */
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK;
		}
		h->piped -= (uint32_t)n;
	}
	return true;
}

/* Read from from_fd into the pipe and on to to_fd. Like half_pump(). */
static ssize_t half_pump_splice(struct relay_half *h, int from_fd, int to_fd, bool *write_failed)
{
	if (h->piped) {
		errno = EAGAIN;	/* one pipe load at a time */
		return -1;
	}
	ssize_t n;
	do
		n = splice(from_fd, NULL, h->pipe[1], NULL, SPLICE_CHUNK,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n;
	h->piped = (uint32_t)n;
	if (!half_flush_pipe(h, to_fd))
		*write_failed = true;
	return n;
}

/*
 * Write to the side h writes (c2u: the upstream, through TLS when on).
 * Like send(): bytes taken, or -1 with errno (EAGAIN: wait for writability).
 */
static ssize_t half_send(struct relay *r, const struct relay_half *h, int fd, const char *buf,
			 size_t len)
{
	if (h == &r->c2u && r->tls) {
		enum tls_io io;
		size_t n = tls_conn_write(r->tls, buf, len, &io);
		backend_count_tls_bytes(r->be, r->tls);
		if (n)
			return (ssize_t)n;
		errno = io == TLS_IO_WANT_WRITE || io == TLS_IO_WANT_READ ? EAGAIN : EPIPE;
		return -1;
	}
	return send(fd, buf, len, MSG_NOSIGNAL);
}

/* Read from the side h reads (u2c: the upstream, through TLS when on). Like recv(). */
static ssize_t half_recv(struct relay *r, const struct relay_half *h, int fd, char *buf,
			 size_t len)
{
	if (h == &r->u2c && r->tls) {
		/*
		 * One record (16 KiB at most) per SSL_read: read several so one
		 * send() to the client carries them. An EOF or error met after
		 * some bytes is met again by the next call (relay_tls_kick).
		 */
		enum tls_io io = TLS_IO_DONE;
		size_t n = 0, k;
		while (n < len && (k = tls_conn_read(r->tls, buf + n, len - n, &io)) > 0)
			n += k;
		backend_count_tls_bytes(r->be, r->tls);
		if (n)
			return (ssize_t)n;
		if (io == TLS_IO_EOF)
			return 0;
		errno = io == TLS_IO_WANT_READ || io == TLS_IO_WANT_WRITE ? EAGAIN : EPROTO;
		return -1;
	}
	ssize_t n;
	do
		n = recv(fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	return n;
}

/*
 * Half-close towards the backend: close_notify first over TLS. false when
 * OpenSSL could not send it yet (call again once the socket is writable).
 */
static bool upstream_shut_wr(struct relay *r)
{
	/* A failed close_notify leaves the FIN to say it. */
	if (r->tls && tls_conn_close_notify(r->tls) == TLS_IO_WANT_WRITE)
		return false;
	shutdown(r->ufd, SHUT_WR);
	return true;
}

/* Decrypted bytes wait in OpenSSL while reading the upstream is on: go and read them. */
static void relay_tls_kick(struct relay *r)
{
	if (r->tls && r->ufd >= 0 && tls_conn_pending(r->tls) && event_pending(&r->ur, EV_READ, NULL))
		event_active(&r->ur, EV_READ, 0);
}

/*
 * Write what is pending in h to fd. Returns false on a fatal write error.
 * Releases the buffer once empty.
 */
static bool half_flush(struct relay *r, struct relay_half *h, int fd)
{
	while (h->start < h->end) {
		ssize_t n = half_send(r, h, fd, h->buf + h->start, h->end - h->start);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			return false;
		}
		h->start += (uint32_t)n;
	}
	half_release(r, h);
	return true;
}

/*
 * Hand the upstream connection to the pool if it is exactly at a boundary.
 * This is where the pool's invariant is enforced: the tracker must say every
 * request was fully answered, nothing may be pending towards the backend, and
 * the backend must not have closed its side; then no byte of this client's
 * exchange can arrive on the connection any more.
 */
static bool relay_try_pool(struct relay *r)
{
	struct relay_worker *rw = r->rw;
	if (r->state != RELAY_ESTABLISHED || r->ufd < 0 || !r->fr)
		return false;
	enum framing_verdict v = framing_verdict(r->fr);
	/* Bytes decrypted but not read yet are a reply in flight, like bytes in the socket. */
	if (v != FRAMING_OK || r->c2u.end != r->c2u.start || r->u2c.eof || r->c2u.shut ||
	    (r->tls && tls_conn_pending(r->tls))) {
		pool_count_not_reusable(rw->pool, v);
		return false;
	}
	event_del(&r->ur);
	event_del(&r->uw);
	pool_put(rw->pool, r->be, r->ufd, r->tls, r->fr, &r->set->conf->pool);
	r->ufd = -1;
	r->fr = NULL;
	r->tls = NULL;
	return true;
}

/*
 * The client sent FIN and every byte of it reached the backend. Without
 * reuse the FIN is passed on. With reuse, an upstream connection at a
 * boundary goes to the pool (once replies already read from it have reached
 * the client) and the client gets our FIN instead. Anything else — a reply
 * still owed, half a request, a poisoned tracker — is decided at once: the
 * FIN goes to the backend. Waiting for an owed reply could wait forever
 * when the request itself was incomplete, and the tracker cannot tell.
 */
static void relay_client_fin(struct relay *r)
{
	enum framing_verdict v = framing_verdict(r->fr);
	if (v == FRAMING_OK && r->u2c.end != r->u2c.start && !r->u2c.eof) {
		r->fin_deferred = true;	/* decided again once the client has it all */
		return;
	}
	r->fin_deferred = false;
	if (relay_try_pool(r)) {
		/* The upstream lives on in the pool; the client gets our FIN. */
		r->c2u.shut = true;
		r->u2c.eof = true;
		event_del(&r->cw);
		shutdown(r->cfd, SHUT_WR);
		r->u2c.shut = true;
		return;
	}
	/* Not reusable: decided once, so stop tracking and pass the FIN on. */
	framing_free(r->fr);
	r->fr = NULL;
	if (!upstream_shut_wr(r)) {
		event_add(&r->uw, NULL);	/* half_settle sends it once writable */
		return;
	}
	r->c2u.shut = true;
}

/* After a half made progress, update interest and half-close. */
static void half_settle_one(struct relay *r, struct relay_half *h, int to_fd, struct event *src_read,
		       struct event *dst_write)
{
	if (h->piped) {
		/* Splicing: wait for the pipe to drain before reading more. */
		event_add(dst_write, NULL);
		event_del(src_read);
		return;
	}
	uint32_t pending = h->end - h->start;
	if (pending) {
		event_add(dst_write, NULL);
		if (h->start && pending <= r->cap / 2) {
			/* Drained to half: compact so reading can go on. */
			memmove(h->buf, h->buf + h->start, pending);
			h->start = 0;
			h->end = pending;
		}
		if (h->end == r->cap)
			event_del(src_read);	/* full: let the kernel push back */
		else if (!h->eof)
			event_add(src_read, NULL);
		return;
	}
	event_del(dst_write);
	if (!h->eof) {
		event_add(src_read, NULL);
	} else if (!h->shut) {
		if (h == &r->c2u && r->fr) {
			/* The client is done: the upstream connection may outlive it. */
			relay_client_fin(r);
			return;
		}
		/*
		 * The reading side sent FIN and everything is through: pass it on.
		 * When the other direction is already done, the close that follows
		 * at once sends the FIN: spare the syscall.
		 */
		const struct relay_half *other = h == &r->c2u ? &r->u2c : &r->c2u;
		if (h == &r->c2u && r->tls) {
			if (!upstream_shut_wr(r)) {
				event_add(dst_write, NULL);
				return;
			}
		} else if (!other->shut) {
			shutdown(to_fd, SHUT_WR);
		}
		h->shut = true;
	}
}

static void half_settle(struct relay *r, struct relay_half *h, int to_fd, struct event *src_read,
			struct event *dst_write)
{
	half_settle_one(r, h, to_fd, src_read, dst_write);
	if (h == &r->u2c)
		relay_tls_kick(r);
}

/*
 * Let the framing tracker see the bytes (pool.reuse). Once it says the
 * connection can never be reused (upgrade, pinned, unframed, error...), it
 * is dropped: the rest of the connection is relayed (and may splice)
 * without it.
 */
static inline void relay_track(struct relay *r, const struct relay_half *h, const char *p, size_t n)
{
	if (!r->fr)
		return;
	if (h == &r->c2u)
		framing_feed_request(r->fr, p, n);
	else
		framing_feed_response(r->fr, p, n);
	enum framing_verdict v = framing_verdict(r->fr);
	if (v != FRAMING_OK && v != FRAMING_PARTIAL) {
		pool_count_not_reusable(r->rw->pool, v);
		framing_free(r->fr);
		r->fr = NULL;
	}
}

/*
 * Read from `from_fd` into h and forward to `to_fd`. Returns the bytes read,
 * 0 on EOF, -1 with errno on error (EAGAIN included).
 */
static ssize_t half_pump(struct relay *r, struct relay_half *h, int from_fd, int to_fd,
			bool *write_failed)
{
	struct relay_worker *rw = r->rw;
	ssize_t n;
	*write_failed = false;
	if (h->pipe[0] < 0 && !h->buf && !r->fr && !h->no_splice && h->full_reads >= SPLICE_AFTER) {
		/* A pipe holds a slow reader's bytes too: it counts against the budget. */
		if (!budget_take(r, SPARE_PIPE_SIZE)) {
			h->no_splice = true;	/* copy, within max_buffer */
		} else if (!spare_pipe_get(&rw->spares, h->pipe)) {
			budget_give(r, SPARE_PIPE_SIZE);
			h->no_splice = true;	/* out of pipes: copy */
		}
	}
	if (h->pipe[0] >= 0) {
		n = half_pump_splice(h, from_fd, to_fd, write_failed);
		if (n < 0 && errno == EINVAL) {
			/* This socket pair cannot splice: back to copying. */
			relay_half_unsplice(r, h);
			h->no_splice = true;
			errno = EAGAIN;
		}
		return n;
	}
	if (h->buf) {
		/* Something is still pending: append behind it. */
		if (h->end == r->cap) {
			errno = EAGAIN;
			return -1;
		}
		n = half_recv(r, h, from_fd, h->buf + h->end, r->cap - h->end);
		if (n <= 0)
			return n;
		relay_track(r, h, h->buf + h->end, (size_t)n);
		h->full_reads = h->end + (uint32_t)n == r->cap ? h->full_reads + 1 : 0;
		h->end += (uint32_t)n;
		if (!half_flush(r, h, to_fd))
			*write_failed = true;
		return n;
	}
	size_t room = MIN(rw->scratch_len, r->cap);
	n = half_recv(r, h, from_fd, rw->scratch, room);
	if (n <= 0)
		return n;
	relay_track(r, h, rw->scratch, (size_t)n);
	h->full_reads = (size_t)n == room ? h->full_reads + 1 : 0;
	ssize_t sent = 0;
	while (sent < n) {
		ssize_t k = half_send(r, h, to_fd, rw->scratch + sent, (size_t)(n - sent));
		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				*write_failed = true;
			break;
		}
		sent += k;
	}
	if (sent < n && !*write_failed) {
		h->buf = half_buf_get(r);
		if (!h->buf) {
			if (rw->budget)
				atomic_fetch_add_explicit(&rw->budget->refusals, 1, memory_order_relaxed);
			errno = ENOMEM;
			return -1;	/* bytes read and not kept: the relay must close */
		}
		memcpy(h->buf, rw->scratch + sent, (size_t)(n - sent));
		h->start = 0;
		h->end = (uint32_t)(n - sent);
	}
	return n;
}

static void relay_maybe_done(struct relay *r)
{
	if (r->fin_deferred || (r->c2u.eof && !r->c2u.shut && r->fr && r->c2u.end == r->c2u.start))
		relay_client_fin(r);
	if (r->c2u.shut && r->u2c.shut)
		relay_close(r, RELAY_CLOSE_DONE);
}

static void on_client_read(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	bool wfail;
	ssize_t n = half_pump(r, &r->c2u, r->cfd, r->ufd, &wfail);
	if (n > 0) {
		r->last_active_ms = now_ms();
		r->bytes_out += (uint64_t)n;
		atomic_fetch_add_explicit(&r->be->bytes_out, (uint64_t)n, memory_order_relaxed);
		if (wfail) {
			relay_upstream_write_failed(r);
			return;
		}
	} else if (n == 0) {
		r->c2u.eof = true;
		event_del(&r->cr);
	} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
		if (r->c2u.end == r->cap)
			event_del(&r->cr);
		return;
	} else if (errno == ENOMEM) {
		relay_close(r, r->over_budget ? RELAY_CLOSE_BUFFER_BUDGET : RELAY_CLOSE_LOCAL_ERROR);
		return;
	} else {
		relay_close(r, RELAY_CLOSE_CLIENT_ERROR);
		return;
	}
	half_settle(r, &r->c2u, r->ufd, &r->cr, &r->uw);
	relay_maybe_done(r);
}

/*
 * A trunk stream's end arrives on the socketpair as EOF or EPIPE whatever
 * happened remotely; the trunk thread marked it before closing its end
 * when the peer reset the stream or the trunk died (trunk_call.h).
 */
static bool relay_trunk_reset(const struct relay *r)
{
	return r->call && trunk_call_remote(r->call) != TRUNK_CALL_CLEAN;
}

/* relay: auto — r is due: its bytes go to the kernel from now on (or on in user space). */
static void relay_pair_now(struct relay *r)
{
	relay_half_unsplice(r, &r->c2u);
	relay_half_unsplice(r, &r->u2c);
	event_del(&r->cr);
	event_del(&r->cw);
	event_del(&r->ur);
	event_del(&r->uw);
	if (relay_kernel_start(r))
		return;
	event_add(&r->cr, NULL);
	event_add(&r->ur, NULL);
}

static void on_upstream_read(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	bool wfail;
	ssize_t n = half_pump(r, &r->u2c, r->ufd, r->cfd, &wfail);
	if (n == 0 && relay_trunk_reset(r)) {
		n = -1;
		errno = ECONNRESET;	/* what the remote end did: not a FIN */
	}
	if (n > 0) {
		r->last_active_ms = now_ms();
		r->bytes_in += (uint64_t)n;
		atomic_fetch_add_explicit(&r->be->bytes_in, (uint64_t)n, memory_order_relaxed);
		if (!r->first_byte) {
			r->first_byte = true;
			service_report_success(r->set->svc, r->be);
		}
		if (wfail) {
			relay_close(r, RELAY_CLOSE_CLIENT_ERROR);
			return;
		}
	} else if (n == 0) {
		if (!r->first_byte) {
			/* A clean FIN may be the protocol's own end: not a failure. */
			r->first_byte = true;
			service_report_success(r->set->svc, r->be);
		}
		r->backend_fin_first = !r->c2u.eof;
		r->u2c.eof = true;
		event_del(&r->ur);
	} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
		if (r->u2c.end == r->cap)
			event_del(&r->ur);
		return;
	} else if (errno == ENOMEM) {
		relay_close(r, r->over_budget ? RELAY_CLOSE_BUFFER_BUDGET : RELAY_CLOSE_LOCAL_ERROR);
		return;
	} else {
		/* A pooled connection may die of old age: not the backend's failure. */
		if (!r->first_byte && errno == ECONNRESET && !r->reused)
			service_report_failure(r->set->svc, r->be, "reset before the first byte");
		relay_close(r, RELAY_CLOSE_BACKEND_ERROR);
		return;
	}
	half_settle(r, &r->u2c, r->cfd, &r->ur, &r->cw);
	relay_maybe_done(r);
	if (r->kwant && relay_kernel_due(r))	/* counts the upstream's reads */
		relay_pair_now(r);
}

static void on_client_write(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	if (!half_flush_pipe(&r->u2c, r->cfd) || !half_flush(r, &r->u2c, r->cfd)) {
		relay_close(r, RELAY_CLOSE_CLIENT_ERROR);
		return;
	}
	r->last_active_ms = now_ms();
	half_settle(r, &r->u2c, r->cfd, &r->ur, &r->cw);
	relay_maybe_done(r);
}

/*
 * Writing to the backend failed. Before its first byte that is a reset of a
 * fresh connection, which counts against it like a reset seen on read.
 */
static void relay_upstream_write_failed(struct relay *r)
{
	if (relay_trunk_reset(r))
		errno = ECONNRESET;	/* the socketpair says EPIPE */
	if (!r->first_byte && !r->reused && (errno == ECONNRESET || errno == EPIPE))
		service_report_failure(r->set->svc, r->be, "reset before the first byte");
	relay_close(r, RELAY_CLOSE_BACKEND_ERROR);
}

static void on_upstream_write(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	if (r->state == RELAY_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(r->ufd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			relay_connect_failed(r, strerror(err));
			return;
		}
		relay_connected(r);
		return;
	}
	if (!half_flush_pipe(&r->c2u, r->ufd) || !half_flush(r, &r->c2u, r->ufd)) {
		relay_upstream_write_failed(r);
		return;
	}
	r->last_active_ms = now_ms();
	half_settle(r, &r->c2u, r->ufd, &r->cr, &r->uw);
	relay_maybe_done(r);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	switch (r->state) {
	case RELAY_NEW:
	case RELAY_CLOSED:
	case RELAY_STATES:
		break;	/* no timer runs in these */
	case RELAY_WAITING:
		unlink_waiting(r);
		atomic_fetch_add_explicit(&r->set->svc->wait_timeouts, 1, memory_order_relaxed);
		log_warn("svc=%s no view of the service after %llums: closing the client",
			 r->set->svc->name, (unsigned long long)r->set->conf->connect_timeout_ms);
		relay_close(r, RELAY_CLOSE_WAIT_TIMEOUT);
		break;
	case RELAY_CONNECTING:
		if (r->tls) {
			backend_count_tls(r->be, TLS_RESULT_TIMEOUT, "no handshake within connect_timeout",
					  now_ms());
			relay_connect_failed(r, "TLS handshake timeout");
		} else {
			relay_connect_failed(r, "connect timeout");
		}
		break;
	case RELAY_ESTABLISHED: {
		relay_kernel_count(r);	/* kernel-relayed bytes are activity too */
		uint64_t idle = r->set->conf->idle_timeout_ms;
		uint64_t quiet = now_ms() - r->last_active_ms;
		if (quiet >= idle)
			relay_close(r, RELAY_CLOSE_IDLE_TIMEOUT);
		else
			arm_timer(r, idle - quiet);
		break;
	}
	}
}

/* The fields of an access log record every client has, served or not. */
static void relay_record_client(struct accesslog_record *rec, const char *service,
			       const struct net_addr *peer, uint64_t accepted_ms)
{
	rec->end_wall_ms = wall_ms();
	rec->total_ms = now_ms() - accepted_ms;
	snprintf(rec->service, sizeof(rec->service), "%s", service);
	if (peer->len && peer->ss.ss_family != AF_UNIX)
		net_addr_format(peer, rec->client, sizeof(rec->client));
	else
		snprintf(rec->client, sizeof(rec->client), "unix");
}

/* Queue the access log's record of r, which closes for `why` (log.access). */
static void relay_log_access(const struct relay *r, enum relay_close_reason why)
{
	struct accesslog_record rec = { 0 };
	relay_record_client(&rec, r->set->svc->name, &r->peer, r->accepted_ms);
	rec.connect_ms = r->established_ms ? r->established_ms - r->accepted_ms : 0;
	rec.established = r->established_ms != 0;
	rec.bytes_in = r->bytes_in;
	rec.bytes_out = r->bytes_out;
	rec.attempts = r->attempts;
	rec.reused = r->reused;
	if (why == RELAY_CLOSE_DONE)
		rec.end = r->backend_fin_first ? "backend_closed" : "client_closed";
	else
		rec.end = relay_close_reason_name(why);
	/* The target, or the last one tried: r->set holds every member of tried[]. */
	const struct backend *be = r->be ? r->be : r->attempts ? r->tried[r->attempts - 1] : NULL;
	if (be) {
		snprintf(rec.backend, sizeof(rec.backend), "%s", be->name);
		snprintf(rec.backend_id, sizeof(rec.backend_id), "%s", be->id ? be->id : "");
	}
	accesslog_push(r->rw->alog, &rec);
}

/* Close r now for `why` (counted, logged to the access log); freed after the loop turn. */
static void relay_close(struct relay *r, enum relay_close_reason why)
{
	struct relay_worker *rw = r->rw;
	if (r->state == RELAY_CLOSED)
		return;
	if (rw->alog)
		relay_log_access(r, why);
	if (why == RELAY_CLOSE_CONNECT_FAILED || why == RELAY_CLOSE_NO_BACKEND ||
	    why == RELAY_CLOSE_WAIT_TIMEOUT || why == RELAY_CLOSE_LOCAL_ERROR ||
	    why == RELAY_CLOSE_INSTANCE_LIMIT) {
		if (r->state != RELAY_ESTABLISHED) {
			atomic_fetch_add_explicit(&r->set->svc->conn_failed, 1, memory_order_relaxed);
			log_debug("svc=%s client closed without a backend: %s", r->set->svc->name,
				  relay_close_reason_name(why));
		}
	}
	atomic_fetch_add_explicit(&rw->closes[why], 1, memory_order_relaxed);
	/* A broken side (a reset, an error) breaks the other: a FIN would say "complete". */
	r->reset = why == RELAY_CLOSE_CLIENT_ERROR || why == RELAY_CLOSE_BACKEND_ERROR;
	/* A client that left at a boundary still leaves a reusable upstream. */
	if (r->fr && why != RELAY_CLOSE_BACKEND_ERROR && why != RELAY_CLOSE_SHUTDOWN &&
	    why != RELAY_CLOSE_BACKEND_DEMOTED)
		relay_try_pool(r);
	framing_free(r->fr);
	r->fr = NULL;
	unlink_waiting(r);
	relay_set_state(r, RELAY_CLOSED);
	event_del(&r->cr);
	event_del(&r->cw);
	relay_kernel_end(r);	/* out of the maps before the sockets close */
	if (r->reset)
		close_with_reset(r->cfd, NULL);
	else
		close(r->cfd);
	r->cfd = -1;
	upstream_release(r);
	half_release(r, &r->c2u);
	half_release(r, &r->u2c);
	relay_half_unsplice(r, &r->c2u);
	relay_half_unsplice(r, &r->u2c);

	if (r->prev)
		r->prev->next = r->next;
	else
		rw->live = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = NULL;
	atomic_fetch_sub_explicit(&rw->n_relays, 1, memory_order_relaxed);
	service_conn_release(r->set->svc);	/* the slot the worker reserved before accept() */
	/* Reclaimed after this loop turn: the caller may still be on our stack. */
	r->next = rw->dead;
	rw->dead = r;
	event_active(rw->reap, EV_TIMEOUT, 0);
}

void relay_refuse(struct relay_worker *rw, const struct backend_set *set, int cfd,
		  enum relay_close_reason why, uint64_t accepted_ms)
{
	if (rw->alog) {
		struct accesslog_record rec = { 0 };
		struct net_addr peer;
		relay_peer(cfd, &peer);
		relay_record_client(&rec, set->svc->name, &peer, accepted_ms);
		rec.end = why == RELAY_CLOSE_DONE ? "client_closed" : relay_close_reason_name(why);
		accesslog_push(rw->alog, &rec);
	}
	atomic_fetch_add_explicit(&rw->closes[why], 1, memory_order_relaxed);
	close(cfd);
}

void relay_close_all(struct relay_worker *rw)
{
	while (rw->live)
		relay_close(rw->live, RELAY_CLOSE_SHUTDOWN);
}

void relay_close_backend(struct relay_worker *rw, const struct backend *be)
{
	struct relay *next;
	for (struct relay *r = rw->live; r; r = next) {
		next = r->next;		/* relay_close() unlinks r only */
		if (r->be == be && (r->state == RELAY_CONNECTING || r->state == RELAY_ESTABLISHED))
			relay_close(r, RELAY_CLOSE_BACKEND_DEMOTED);
	}
}

void relay_reap(struct relay_worker *rw)
{
	struct relay *r = rw->dead;
	rw->dead = NULL;
	while (r) {
		struct relay *next = r->next;
		backend_set_put(r->set);
		free(r);
		r = next;
	}
}

void relay_worker_init(struct relay_worker *rw, struct event_base *base, struct event *reap,
		       struct pool_worker *pool, uint64_t seed)
{
	rw->base = base;
	rw->reap = reap;
	rw->pool = pool;
	rng_seed(&rw->rng, seed);
	rw->scratch_len = RELAY_SCRATCH_LEN;
	rw->scratch = xmalloc(rw->scratch_len);
	spare_init(&rw->spares);
	relay_kernel_worker_init(rw, relay_close);
}

void relay_worker_free(struct relay_worker *rw)
{
	relay_kernel_worker_free(rw);
	spare_free(&rw->spares);
	free(rw->scratch);
	rw->scratch = NULL;
	free(rw->cands);
	rw->cands = NULL;
	rw->cands_cap = 0;
}
