/*
 * relay_kernel — the relay's side of `relay: kernel|auto` (see relay.c's
 * top comment and krelay.h): when a connection is handed to the BPF
 * sockmap, how the worker follows it (FIN, reset and error events, the
 * sweep over counters and spills, a FIN passed on once the bytes before it
 * are out), and how a spilled connection comes back to the copying relay.
 * The sockets and maps themselves are krelay.c's.
 *
 * Thread: the owning worker.
 */
#include "relay_int.h"
#include "backend.h"
#include "backend_set.h"
#include "log.h"
#include "service.h"

#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#define KSWEEP_MS 100			/* kernel relays: counters, spills */
#define KSWEEP_PENDING_MS 2		/* ...while a FIN or a spill waits for bytes to drain */
#define KRELAY_AFTER_READS 4		/* upstream reads before a connection is paired in the kernel */

static struct krelay *relay_krelay(const struct relay *r)
{
	return atomic_load_explicit(&r->rw->krelay, memory_order_acquire);
}

/* Add what the kernel relayed since the last look to the relay's and the backend's counters. */
void relay_kernel_count(struct relay *r)
{
	if (!r->kpaired)
		return;
	struct krelay *k = relay_krelay(r);
	uint64_t out = krelay_bytes(k, &r->kp, KRELAY_C2U) - r->kp.counted[KRELAY_C2U];
	uint64_t in = krelay_bytes(k, &r->kp, KRELAY_U2C) - r->kp.counted[KRELAY_U2C];
	if (!out && !in)
		return;
	r->kp.counted[KRELAY_C2U] += out;
	r->kp.counted[KRELAY_U2C] += in;
	r->bytes_out += out;
	r->bytes_in += in;
	atomic_fetch_add_explicit(&r->be->bytes_out, out, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->be->bytes_in, in, memory_order_relaxed);
	r->last_active_ms = now_ms();
	if (in && !r->first_byte) {
		r->first_byte = true;
		service_report_success(r->set->svc, r->be);
	}
}

/* Run the sweep within ms, or sooner if it is due sooner already. */
static void relay_ksweep_arm(struct relay_worker *rw, uint64_t ms)
{
	uint64_t at = now_ms() + ms;
	if (event_pending(rw->ksweep, EV_TIMEOUT, NULL) && rw->ksweep_at_ms <= at)
		return;
	rw->ksweep_at_ms = at;
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	event_add(rw->ksweep, &tv);
}

/* The kernel no longer relays r (spilled to user space, or closing). */
static void relay_kernel_leave(struct relay *r)
{
	if (!r->kernel)
		return;
	event_del(&r->kc);
	event_del(&r->ku);
	r->kernel = false;
	r->kpending = false;
	r->rw->n_kernel--;
}

/* Closing: last counts, then out of the maps (which drops what they still queue). */
void relay_kernel_end(struct relay *r)
{
	relay_kernel_leave(r);
	if (!r->kpaired)
		return;
	relay_kernel_count(r);
	krelay_unpair(relay_krelay(r), &r->kp);
	r->kpaired = false;
}

/*
 * A parked pair's direction d has nothing left in the kernel: the copying
 * relay reads its source from now on. A FIN seen meanwhile is read again by
 * recv() after the bytes that wait before it; one already passed on stays
 * passed. Not in this loop turn: libevent's changelist would carry the
 * edge-triggered flag of the events deleted at parking over to these. Two
 * sweeps on, an epoll_wait has applied the deletion for sure (the sweep may
 * run later in this very turn).
 */
static void relay_kernel_to_user(struct relay *r, enum krelay_dir d)
{
	const struct relay_half *h = d == KRELAY_C2U ? &r->c2u : &r->u2c;
	r->kresumed |= (uint8_t)(1u << d);
	if (h->shut)
		return;
	r->kadd |= (uint8_t)(1u << d);
	r->kresume = 2;
	relay_ksweep_arm(r->rw, 1);
}

static void relay_kernel_resume(struct relay *r)
{
	if (--r->kresume) {
		relay_ksweep_arm(r->rw, 1);
		return;
	}
	if (r->kadd & (1u << KRELAY_C2U)) {
		r->c2u.eof = false;
		event_add(&r->cr, NULL);
	}
	if (r->kadd & (1u << KRELAY_U2C)) {
		r->u2c.eof = false;
		event_add(&r->ur, NULL);
	}
	r->kadd = 0;
}

/*
 * Look at one side of a kernel-relayed connection: a reset or error closes
 * the relay (false); a FIN marks its half at eof.
 */
static bool relay_kernel_side(struct relay *r, bool client)
{
	struct relay_half *h = client ? &r->c2u : &r->u2c;
	struct pollfd pf = { .fd = client ? r->cfd : r->ufd, .events = POLLRDHUP };
	/* Even after its FIN: a reset then, or a failed send to it, is an error too. */
	if (poll(&pf, 1, 0) <= 0)
		return true;
	if (pf.revents & (POLLERR | POLLNVAL)) {
		int err = 0;
		socklen_t len = sizeof(err);
		(void)getsockopt(pf.fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (!client && !r->first_byte && err == ECONNRESET)
			service_report_failure(r->set->svc, r->be, "reset before the first byte");
		r->rw->kclose(r, client ? RELAY_CLOSE_CLIENT_ERROR : RELAY_CLOSE_BACKEND_ERROR);
		return false;
	}
	if ((pf.revents & (POLLRDHUP | POLLHUP)) && !h->eof) {
		h->eof = true;
		if (!client) {
			r->backend_fin_first = !r->c2u.eof;
			if (!r->first_byte) {
				/* A clean FIN may be the protocol's own end: not a failure. */
				r->first_byte = true;
				service_report_success(r->set->svc, r->be);
			}
		}
	}
	return true;
}

/*
 * Everything the worker does for a kernel-relayed connection: counters,
 * FIN/reset/error of either side, a FIN passed on once the redirected bytes
 * before it are in the other socket, a spill moved to user space.
 */
static void relay_kernel_check(struct relay *r)
{
	struct krelay *k = relay_krelay(r);
	relay_kernel_count(r);
	/* A direction the copying relay has back is its business (its FIN included). */
	if ((!(r->kresumed & (1u << KRELAY_C2U)) && !relay_kernel_side(r, true)) ||
	    (!(r->kresumed & (1u << KRELAY_U2C)) && !relay_kernel_side(r, false)))
		return;
	r->kpending = false;
	if (r->kparked || krelay_spilled(k, &r->kp, KRELAY_C2U) ||
	    krelay_spilled(k, &r->kp, KRELAY_U2C)) {
		if (!r->kparked) {
			/* Both directions, so no event of the copying relay shares a socket with ours. */
			krelay_park(k, &r->kp);
			event_del(&r->kc);
			event_del(&r->ku);
			r->kparked = true;
			atomic_fetch_add_explicit(&r->set->svc->kernel_spills, 1, memory_order_relaxed);
			log_debug("svc=%s be=%s a reader fell behind: the connection moves to the "
				  "user-space relay", r->set->svc->name, r->be->name);
		}
		/*
		 * Each direction comes back as soon as its own bytes are out: a peer
		 * that reads only once its writes went through (an echo with a
		 * blocking send) must not wait for the other direction's.
		 */
		for (enum krelay_dir d = KRELAY_C2U; d <= KRELAY_U2C; d++) {
			int from = d == KRELAY_C2U ? r->cfd : r->ufd, to = d == KRELAY_C2U ? r->ufd : r->cfd;
			if (!(r->kresumed & (1u << d)) && krelay_drained(k, &r->kp, d, from, to) != 0)
				relay_kernel_to_user(r, d);
		}
		if (r->kresumed == ((1u << KRELAY_C2U) | (1u << KRELAY_U2C)))
			relay_kernel_end(r);	/* nothing left in the kernel: plain sockets again */
		else
			r->kpending = true;
		return;
	}
	for (enum krelay_dir d = KRELAY_C2U; d <= KRELAY_U2C; d++) {
		struct relay_half *h = d == KRELAY_C2U ? &r->c2u : &r->u2c;
		int from = d == KRELAY_C2U ? r->cfd : r->ufd, to = d == KRELAY_C2U ? r->ufd : r->cfd;
		if (!h->eof || h->shut)
			continue;
		int rc = krelay_drained(k, &r->kp, d, from, to);
		if (rc == 0 || krelay_spilled(k, &r->kp, d)) {
			r->kpending = true;	/* the sweep looks again soon */
			continue;
		}
		/* drained, or the target is gone (its own event reports that) */
		const struct relay_half *other = d == KRELAY_C2U ? &r->u2c : &r->c2u;
		if (!other->shut)
			shutdown(to, SHUT_WR);
		h->shut = true;
	}
	relay_kernel_count(r);
	if (r->c2u.shut && r->u2c.shut)
		r->rw->kclose(r, RELAY_CLOSE_DONE);
}

/*
 * relay: auto — a connection is paired once it has carried
 * KRELAY_AFTER_READS reads from the upstream, at a moment nothing of it
 * waits in user space or in the sockets (krelay_quiet: a half-read skb
 * would be relayed twice): pairing costs more than relaying a few messages
 * (measured: one request per connection cost 12% more zklb CPU and half as
 * much again of the machine's paired at once), so short connections never
 * pay it. What arrives later waits in the sockets' queues and is relayed by
 * the kernel, in order, once paired.
 */
bool relay_kernel_due(struct relay *r)
{
	if (r->state != RELAY_ESTABLISHED)
		return false;
	if (r->kreads < KRELAY_AFTER_READS) {
		r->kreads++;
		return false;
	}
	if (r->c2u.buf || r->u2c.buf || r->c2u.piped || r->u2c.piped || r->c2u.eof || r->u2c.eof ||
	    !krelay_quiet(r->cfd, r->ufd))
		return false;	/* not now: at a later read */
	r->kwant = false;
	return true;
}

/* The worker's ring: a pair of this worker spilled. */
static void relay_kernel_spilled(void *ctx, uint32_t slot)
{
	struct relay_worker *rw = ctx;
	for (struct relay *r = rw->live; r; r = r->next) {
		if (r->kernel && r->kp.slot == (slot & ~1u)) {
			relay_kernel_check(r);
			if (r->kpending)
				relay_ksweep_arm(rw, KSWEEP_PENDING_MS);
			return;
		}
	}
}

static void on_kring(evutil_socket_t fd, short what, void *arg)
{
	struct relay_worker *rw = arg;
	krelay_ring_read(rw->kring);
}

static void on_kernel_event(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	relay_kernel_check(r);
	if (r->kpending)
		relay_ksweep_arm(r->rw, KSWEEP_PENDING_MS);
}

/* The worker's sweep over its kernel-relayed connections. */
static void on_ksweep(evutil_socket_t fd, short what, void *arg)
{
	struct relay_worker *rw = arg;
	bool pending = false;
	struct relay *next;
	for (struct relay *r = rw->live; r; r = next) {
		next = r->next;		/* closing unlinks r only */
		if (r->kresume)
			relay_kernel_resume(r);
		if (!r->kernel)
			continue;
		/* FINs, resets and errors come as socket events: no syscall here otherwise. */
		struct krelay *k = relay_krelay(r);
		if (r->kpending || krelay_spilled(k, &r->kp, KRELAY_C2U) ||
		    krelay_spilled(k, &r->kp, KRELAY_U2C))
			relay_kernel_check(r);
		else
			relay_kernel_count(r);
		pending |= r->kernel && r->kpending;
	}
	if (rw->n_kernel)
		relay_ksweep_arm(rw, pending ? KSWEEP_PENDING_MS : KSWEEP_MS);
}

/* relay: kernel|auto, and nothing the kernel cannot carry: TLS, the pool's framing, a pooled connection. */
bool relay_kernel_wanted(const struct relay *r)
{
	const struct service_conf *conf = r->set->conf;
	return (conf->relay == RELAY_MODE_KERNEL || conf->relay == RELAY_MODE_AUTO) && !r->tls &&
	       !r->fr && !r->reused && !r->call && config_relay_kernel_fits(conf);
}

/*
 * Hand the established connection to the kernel. false: relay it in user
 * space. true: the kernel relays it, or pairing failed half-way and the
 * relay is closed.
 */
bool relay_kernel_start(struct relay *r)
{
	struct krelay *k = relay_krelay(r);
	struct relay_worker *rw = r->rw;
	if (k && !rw->kring && !rw->kring_failed) {
		/* Once per worker; without a ring, the sweep still finds spills. */
		int fd = -1;
		errno = 0;
		rw->kring = krelay_ring_open(k, relay_kernel_spilled, rw, &fd);
		if (rw->kring) {
			rw->kring_ev = event_new(rw->base, fd, EV_READ | EV_PERSIST, on_kring, rw);
			event_add(rw->kring_ev, NULL);
		} else {
			rw->kring_failed = true;	/* tried once: not again per pairing */
			log_warn("kernel relay: this worker's spill ring cannot be made (%s): a reader "
				 "falling behind is found by the %d ms sweep instead",
				 errno ? strerror(errno) : "no ring left", KSWEEP_MS);
		}
	}
	int rc = k ? krelay_pair(k, r->cfd, r->ufd, r->cap, rw->kring, &r->kp) : -EPERM;
	if (rc < 0) {
		atomic_fetch_add_explicit(&r->set->svc->kernel_fallbacks, 1, memory_order_relaxed);
		if (k)
			log_debug("svc=%s be=%s kernel relay refused: %s", r->set->svc->name,
				  r->be->name, strerror(-rc));
		if (rc == -EIO) {
			rw->kclose(r, RELAY_CLOSE_LOCAL_ERROR);
			return true;
		}
		return false;
	}
	atomic_fetch_add_explicit(&r->set->svc->kernel_relays, 1, memory_order_relaxed);
	r->kpaired = true;
	r->kernel = true;
	/* EV_WRITE, edge-triggered: libevent reports a reset (EPOLLERR) as read|write. */
	event_assign(&r->kc, rw->base, r->cfd, EV_CLOSED | EV_WRITE | EV_ET | EV_PERSIST,
		     on_kernel_event, r);
	event_assign(&r->ku, rw->base, r->ufd, EV_CLOSED | EV_WRITE | EV_ET | EV_PERSIST,
		     on_kernel_event, r);
	event_add(&r->kc, NULL);
	event_add(&r->ku, NULL);
	if (rw->n_kernel++ == 0)
		relay_ksweep_arm(rw, KSWEEP_MS);
	return true;
}

void relay_kernel_worker_init(struct relay_worker *rw, relay_close_fn *close)
{
	rw->kclose = close;
	rw->ksweep = evtimer_new(rw->base, on_ksweep, rw);
}

void relay_kernel_worker_free(struct relay_worker *rw)
{
	if (rw->ksweep)
		event_free(rw->ksweep);
	rw->ksweep = NULL;
	if (rw->kring_ev)
		event_free(rw->kring_ev);
	rw->kring_ev = NULL;
	krelay_ring_free(atomic_load(&rw->krelay), rw->kring);
	rw->kring = NULL;
}
