/*
 * trunk_loop — one trunk thread, in either role (see trunk_conn.h): its
 * event base, its eventfd wake-up, the reaper of closed connections and
 * streams, and the thread's start and stop. The listener and the calling
 * side each say only what a wake-up means to them.
 */
#include "trunk_conn.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void on_loop_reap(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	trunk_loop_reap(arg);
}

static void on_loop_wake(evutil_socket_t fd, short what, void *arg)
{
	struct trunk_loop *loop = arg;
	uint64_t v;
	(void)what;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("trunk: wake read: %s", strerror(errno));
	if (atomic_load(&loop->stopping))
		event_base_loopbreak(loop->base);
	else
		loop->on_wake(loop);
}

bool trunk_loop_open(struct trunk_loop *loop, void (*on_wake)(struct trunk_loop *loop),
		     char *err, size_t errlen)
{
	loop->on_wake = on_wake;
	loop->base = event_base_new();
	loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!loop->base || loop->wake_fd < 0) {
		snprintf(err, errlen, "trunk: cannot create its event loop");
		return false;
	}
	loop->wake_ev = event_new(loop->base, loop->wake_fd, EV_READ | EV_PERSIST, on_loop_wake,
				  loop);
	loop->reap_ev = event_new(loop->base, -1, 0, on_loop_reap, loop);
	event_add(loop->wake_ev, NULL);
	return true;
}

static void *loop_thread(void *arg)
{
	struct trunk_loop *loop = arg;
	event_base_dispatch(loop->base);
	while (loop->live)
		trunk_conn_close(loop->live, "shutdown");
	trunk_loop_reap(loop);
	trunk_conn_free_lingering(loop);
	trunk_loop_reap(loop);
	return NULL;
}

bool trunk_loop_start(struct trunk_loop *loop, char *err, size_t errlen)
{
	if (pthread_create(&loop->thread, NULL, loop_thread, loop) != 0) {
		snprintf(err, errlen, "trunk: cannot start its thread");
		return false;
	}
	loop->started = true;
	return true;
}

void trunk_loop_wake(struct trunk_loop *loop)
{
	uint64_t one = 1;
	if (write(loop->wake_fd, &one, sizeof(one)) < 0)
		log_warn("trunk: wake write: %s", strerror(errno));
}

void trunk_loop_stop(struct trunk_loop *loop)
{
	if (!loop->started)
		return;
	atomic_store(&loop->stopping, true);
	trunk_loop_wake(loop);
	pthread_join(loop->thread, NULL);
	loop->started = false;
}

void trunk_loop_close(struct trunk_loop *loop)
{
	trunk_loop_stop(loop);
	if (loop->wake_ev)
		event_free(loop->wake_ev);
	if (loop->reap_ev)
		event_free(loop->reap_ev);
	if (loop->base)
		event_base_free(loop->base);
	if (loop->wake_fd >= 0)
		close(loop->wake_fd);
	loop->wake_ev = loop->reap_ev = NULL;
	loop->base = NULL;
	loop->wake_fd = -1;
}

void trunk_loop_reap(struct trunk_loop *loop)
{
	while (loop->dead) {
		struct trunk_conn *tc = loop->dead;
		loop->dead = tc->next;
		trunk_conn_free(tc);
	}
	while (loop->dead_streams) {
		struct trunk_stream *st = loop->dead_streams;
		loop->dead_streams = st->next;
		trunk_stream_free(st);
	}
}
