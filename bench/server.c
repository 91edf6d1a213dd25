/*
 * server — see server.h.
 *
 * A connection reads into the server's scratch buffer. Echo writes straight
 * back and keeps only what the socket refused (and stops reading until that
 * is gone); fixed and source keep only a count of bytes owed and send them
 * from a shared pattern. So an idle connection costs a small struct and two
 * events, which matters for the 5,000-connection memory run.
 */
#include "server.h"
#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCRATCH_SIZE (64 * 1024)	/* one recv(2)/send(2) at most */
#define IO_ROUNDS 16			/* syscalls per callback before yielding */
#define OWED_MAX (4u * 1024 * 1024)	/* fixed: stop reading while owing more */
#define ACCEPT_BATCH 64			/* accepts per listener wake-up */
#define ACCEPT_PAUSE_US 100000		/* listener rest after EMFILE/ENFILE */

struct server_counters {
	uint64_t accepted;		/* connections accepted */
	uint64_t open;			/* connections currently open */
	uint64_t closed;		/* connections closed (by either side) */
	uint64_t bytes_in;		/* received */
	uint64_t bytes_out;		/* accepted by send(2) */
	uint64_t requests;		/* complete requests (req_size bytes) received */
	uint64_t resets;		/* connections that ended in an error (RST, EPIPE) */
	uint64_t accept_errors;		/* failed accept(2) calls, EAGAIN aside */
};

struct server_conn {
	struct server *srv;		/* ref: owner */
	int fd;				/* owned */
	struct event *ev_read;		/* owned; persistent, added while reading */
	struct event *ev_write;		/* owned; persistent, added while blocked on output */
	bool reading;			/* ev_read is added */
	bool writing;			/* ev_write is added */
	bool eof;			/* the client closed its side */
	bool close_when_flushed;	/* close once nothing is owed */
	uint64_t req_fill;		/* bytes of the current request received */
	uint64_t owed;			/* fixed/source: bytes still to send; UINT64_MAX = endless */
	char *pend;			/* owned; echo bytes the socket refused */
	size_t pend_len;		/* bytes in pend */
	size_t pend_off;		/* bytes of pend already sent */
	struct server_conn *prev;	/* list of open connections */
	struct server_conn *next;
};

struct server {
	const struct server_opts *o;	/* ref: caller's options */
	struct event_base *base;	/* owned */
	int listen_fd;			/* owned */
	int status_fd;			/* owned; -1 without a status address */
	struct event *ev_listen;	/* owned */
	struct event *ev_status;	/* owned; NULL without a status address */
	struct event *ev_resume;	/* owned; re-arms the listener after EMFILE */
	struct server_counters n;	/* counters, this thread only */
	struct server_conn *conns;	/* head of the open connection list */
	char *scratch;			/* owned; SCRATCH_SIZE */
	char *pattern;			/* owned; SCRATCH_SIZE bytes of payload */
};

static void conn_flush(struct server_conn *sc);

void server_opts_default(struct server_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->mode = SERVER_ECHO;
	o->req_size = 64;
	o->backlog = 4096;
}

bool server_mode_parse(const char *s, struct server_opts *o)
{
	if (strcmp(s, "echo") == 0) {
		o->mode = SERVER_ECHO;
	} else if (strcmp(s, "sink") == 0) {
		o->mode = SERVER_SINK;
	} else if (strcmp(s, "source") == 0) {
		o->mode = SERVER_SOURCE;
		o->source_size = 0;
	} else if (strncmp(s, "source:", 7) == 0) {
		o->mode = SERVER_SOURCE;
		if (!size_parse(s + 7, &o->source_size) || o->source_size == 0)
			return false;
	} else if (strncmp(s, "fixed:", 6) == 0) {
		o->mode = SERVER_FIXED;
		if (!size_parse(s + 6, &o->reply_size))
			return false;
	} else {
		return false;
	}
	return true;
}

static int status_json(const struct server *srv, char *buf, size_t len)
{
	const struct server_counters *n = &srv->n;
	return snprintf(buf, len,
		"{\"accepted\":%llu,\"open\":%llu,\"closed\":%llu,\"bytes_in\":%llu,"
		"\"bytes_out\":%llu,\"requests\":%llu,\"resets\":%llu,\"accept_errors\":%llu}\n",
		(unsigned long long)n->accepted, (unsigned long long)n->open,
		(unsigned long long)n->closed, (unsigned long long)n->bytes_in,
		(unsigned long long)n->bytes_out, (unsigned long long)n->requests,
		(unsigned long long)n->resets, (unsigned long long)n->accept_errors);
}

static void conn_close(struct server_conn *sc, bool error)
{
	struct server *srv = sc->srv;

	if (error)
		srv->n.resets++;
	srv->n.open--;
	srv->n.closed++;
	if (sc->prev)
		sc->prev->next = sc->next;
	else
		srv->conns = sc->next;
	if (sc->next)
		sc->next->prev = sc->prev;
	event_free(sc->ev_read);
	event_free(sc->ev_write);
	close(sc->fd);
	free(sc->pend);
	free(sc);
}

static void conn_reading(struct server_conn *sc, bool on)
{
	if (on && !sc->reading)
		event_add(sc->ev_read, NULL);
	else if (!on && sc->reading)
		event_del(sc->ev_read);
	sc->reading = on;
}

static void conn_writing(struct server_conn *sc, bool on)
{
	if (on && !sc->writing)
		event_add(sc->ev_write, NULL);
	else if (!on && sc->writing)
		event_del(sc->ev_write);
	sc->writing = on;
}

/* Send; returns bytes sent (>= 0), or -1 after closing sc on a hard error. */
static ssize_t conn_send(struct server_conn *sc, const char *buf, size_t len)
{
	for (;;) {
		ssize_t w = send(sc->fd, buf, len, MSG_NOSIGNAL);
		if (w >= 0) {
			sc->srv->n.bytes_out += (uint64_t)w;
			return w;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		conn_close(sc, true);
		return -1;
	}
}

/* Count complete requests in n new bytes; returns how many completed. */
static uint64_t conn_count_requests(struct server_conn *sc, size_t n)
{
	uint64_t req = sc->srv->o->req_size;
	if (req == 0)
		return 0;
	sc->req_fill += n;
	uint64_t done = sc->req_fill / req;
	sc->req_fill %= req;
	sc->srv->n.requests += done;
	return done;
}

/* Echo n scratch bytes; false if sc was closed. */
static bool conn_echo(struct server_conn *sc, size_t n)
{
	ssize_t w = conn_send(sc, sc->srv->scratch, n);
	if (w < 0)
		return false;
	if ((size_t)w < n) {
		sc->pend_len = n - (size_t)w;
		sc->pend_off = 0;
		sc->pend = xmalloc(sc->pend_len);
		memcpy(sc->pend, sc->srv->scratch + w, sc->pend_len);
		conn_reading(sc, false);
		conn_writing(sc, true);
	}
	return true;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct server_conn *sc = arg;
	struct server *srv = sc->srv;
	const struct server_opts *o = srv->o;

	for (int round = 0; round < IO_ROUNDS && sc->reading; round++) {
		ssize_t r = recv(sc->fd, srv->scratch, SCRATCH_SIZE, 0);
		if (r == 0) {
			sc->eof = true;
			conn_reading(sc, false);
			if (o->mode == SERVER_SOURCE && sc->owed == UINT64_MAX)
				sc->owed = 0;	/* an endless source stops when the client leaves */
			sc->close_when_flushed = true;
			conn_flush(sc);
			return;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_close(sc, true);
			return;
		}
		srv->n.bytes_in += (uint64_t)r;
		uint64_t done = 0;
		switch (o->mode) {
		case SERVER_ECHO:
			done = conn_count_requests(sc, (size_t)r);
			if (!conn_echo(sc, (size_t)r))
				return;
			break;
		case SERVER_FIXED:
			done = conn_count_requests(sc, (size_t)r);
			if (done) {
				sc->owed += done * o->reply_size;
				if (sc->owed > OWED_MAX)
					conn_reading(sc, false);
				conn_flush(sc);	/* may close sc */
				if (o->close_after_reply)
					return;	/* conn_flush closed it or will once flushed */
			}
			break;
		case SERVER_SINK:
		case SERVER_SOURCE:
			break;
		}
		if (done && o->close_after_reply) {
			/* Echo: the reply may still be pending. */
			conn_reading(sc, false);
			sc->close_when_flushed = true;
			if (sc->pend_len == 0)
				conn_close(sc, false);
			return;
		}
	}
}

/* Send what is owed; close when done and asked to; may free sc. */
static void conn_flush(struct server_conn *sc)
{
	struct server *srv = sc->srv;
	const struct server_opts *o = srv->o;

	if (o->mode == SERVER_FIXED && o->close_after_reply && sc->owed > 0) {
		conn_reading(sc, false);
		sc->close_when_flushed = true;
	}
	for (int round = 0; round < IO_ROUNDS; round++) {
		const char *buf;
		size_t len;
		if (sc->pend_len > 0) {
			buf = sc->pend + sc->pend_off;
			len = sc->pend_len - sc->pend_off;
		} else if (sc->owed > 0) {
			buf = srv->pattern;
			len = sc->owed < SCRATCH_SIZE ? (size_t)sc->owed : SCRATCH_SIZE;
		} else {
			break;
		}
		ssize_t w = conn_send(sc, buf, len);
		if (w < 0)
			return;
		if (w == 0) {
			conn_writing(sc, true);
			return;
		}
		if (sc->pend_len > 0) {
			sc->pend_off += (size_t)w;
			if (sc->pend_off == sc->pend_len) {
				free(sc->pend);
				sc->pend = NULL;
				sc->pend_len = sc->pend_off = 0;
			}
		} else if (sc->owed != UINT64_MAX) {
			sc->owed -= (uint64_t)w;
		}
	}
	if (sc->pend_len > 0 || sc->owed > 0) {
		conn_writing(sc, true);	/* yielded after IO_ROUNDS */
		return;
	}
	conn_writing(sc, false);
	if (sc->close_when_flushed || (o->mode == SERVER_SOURCE)) {
		/* A finite source is done: the server closes first. */
		conn_close(sc, false);
		return;
	}
	if (!sc->eof && !sc->reading)
		conn_reading(sc, true);	/* echo/fixed backpressure released */
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	conn_flush(arg);
}

static void server_pause_accept(struct server *srv)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = ACCEPT_PAUSE_US };
	event_del(srv->ev_listen);
	event_add(srv->ev_resume, &tv);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	event_add(srv->ev_listen, NULL);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct server *srv = arg;
	const struct server_opts *o = srv->o;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			srv->n.accept_errors++;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				log_warn("accept: %s; pausing the listener", strerror(errno));
				server_pause_accept(srv);
			}
			return;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct server_conn *sc = xcalloc(1, sizeof(*sc));
		sc->srv = srv;
		sc->fd = fd;
		sc->ev_read = event_new(srv->base, fd, EV_READ | EV_PERSIST, on_read, sc);
		sc->ev_write = event_new(srv->base, fd, EV_WRITE | EV_PERSIST, on_write, sc);
		sc->next = srv->conns;
		if (srv->conns)
			srv->conns->prev = sc;
		srv->conns = sc;
		srv->n.accepted++;
		srv->n.open++;
		conn_reading(sc, true);
		if (o->mode == SERVER_SOURCE) {
			sc->owed = o->source_size ? o->source_size : UINT64_MAX;
			conn_writing(sc, true);
		}
	}
}

static void on_status(evutil_socket_t lfd, short what, void *arg)
{
	struct server *srv = arg;
	char line[512];

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int n = status_json(srv, line, sizeof(line));
		/* A fresh socket's buffer always takes a few hundred bytes. */
		if (send(fd, line, (size_t)n, MSG_NOSIGNAL) < 0)
			log_debug("status: send: %s", strerror(errno));
		close(fd);
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	char line[512];

	if (sig == SIGUSR1) {
		status_json(srv, line, sizeof(line));
		fputs(line, stdout);
		fflush(stdout);
		return;
	}
	event_base_loopbreak(srv->base);
}

static int listen_on(const struct net_addr *a, int backlog, char *text, size_t textlen)
{
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, backlog) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	struct net_addr real;
	real.len = sizeof(real.ss);
	if (getsockname(fd, (struct sockaddr *)&real.ss, &real.len) == 0)
		net_addr_format(&real, text, textlen);
	else
		net_addr_format(a, text, textlen);
	return fd;
}

int server_run(const struct server_opts *o)
{
	struct server srv;
	char listen_text[300];
	char status_text[300] = "";
	struct event *signals[3] = { NULL, NULL, NULL };
	const int signal_nums[3] = { SIGUSR1, SIGINT, SIGTERM };
	int rc = 0;

	memset(&srv, 0, sizeof(srv));
	srv.o = o;
	srv.status_fd = -1;
	srv.listen_fd = listen_on(&o->listen, o->backlog, listen_text, sizeof(listen_text));
	if (srv.listen_fd < 0) {
		net_addr_format(&o->listen, listen_text, sizeof(listen_text));
		log_error("listen %s: %s", listen_text, strerror(-srv.listen_fd));
		return srv.listen_fd;
	}
	if (o->has_status) {
		srv.status_fd = listen_on(&o->status, 64, status_text, sizeof(status_text));
		if (srv.status_fd < 0) {
			rc = srv.status_fd;
			net_addr_format(&o->status, status_text, sizeof(status_text));
			log_error("listen %s (status): %s", status_text, strerror(-rc));
			close(srv.listen_fd);
			return rc;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	srv.base = event_base_new();
	if (!srv.base) {
		log_error("cannot create an event base");
		rc = -ENOMEM;
		goto out;
	}
	srv.scratch = xmalloc(SCRATCH_SIZE);
	srv.pattern = xmalloc(SCRATCH_SIZE);
	for (size_t i = 0; i < SCRATCH_SIZE; i++)
		srv.pattern[i] = (char)('A' + i % 26);
	srv.ev_listen = event_new(srv.base, srv.listen_fd, EV_READ | EV_PERSIST, on_accept, &srv);
	srv.ev_resume = evtimer_new(srv.base, on_resume, &srv);
	event_add(srv.ev_listen, NULL);
	if (srv.status_fd >= 0) {
		srv.ev_status = event_new(srv.base, srv.status_fd, EV_READ | EV_PERSIST, on_status, &srv);
		event_add(srv.ev_status, NULL);
	}
	for (size_t i = 0; i < ARRAY_SIZE(signals); i++) {
		signals[i] = evsignal_new(srv.base, signal_nums[i], on_signal, &srv);
		event_add(signals[i], NULL);
	}

	printf("{\"listen\":\"%s\",\"status\":\"%s\"}\n", listen_text, status_text);
	fflush(stdout);
	event_base_dispatch(srv.base);

	char line[512];
	status_json(&srv, line, sizeof(line));
	fputs(line, stdout);
	fflush(stdout);
	while (srv.conns)
		conn_close(srv.conns, false);
out:
	for (size_t i = 0; i < ARRAY_SIZE(signals); i++)
		if (signals[i])
			event_free(signals[i]);
	if (srv.ev_status)
		event_free(srv.ev_status);
	if (srv.ev_listen)
		event_free(srv.ev_listen);
	if (srv.ev_resume)
		event_free(srv.ev_resume);
	if (srv.base)
		event_base_free(srv.base);
	if (srv.status_fd >= 0)
		close(srv.status_fd);
	close(srv.listen_fd);
	free(srv.scratch);
	free(srv.pattern);
	return rc;
}
