/*
 * check — the active health check runner (see check.h).
 *
 * Each check is a small lifecycle (enum check_phase) driven by one timer: in
 * IDLE the timer is the interval, during an attempt it is the deadline. The
 * connect is done by hand (socket + non-blocking connect + EV_WRITE) so the
 * reason for a failure is the kernel's, then the connected socket becomes a
 * bufferevent for the exchange (send_expect, http). check_set_phase() is the
 * one place the phase changes; check_finish() ends every attempt.
 *
 * Over TLS (check_use_tls) the connected socket becomes an OpenSSL
 * bufferevent around an SSL made by the tls module (the same verification
 * and SNI as the relay's); the handshake runs inside the attempt's timeout,
 * a tcp check passes when it completes, and its failure is the result.
 */
#include "check.h"
#include "config.h"
#include "log.h"
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* An http status line longer than this is not one. */
#define CHECK_STATUS_LINE_MAX 1024

enum check_phase {
	CHECK_PHASE_IDLE = 0,		/* timer armed for the next attempt */
	CHECK_PHASE_CONNECTING,		/* non-blocking connect in flight; timer = deadline */
	CHECK_PHASE_EXCHANGING,		/* connected, sending/reading; timer = deadline */
	CHECK_PHASE_STOPPED,		/* check_stop() called; freed by the timer's finalizer */
};

struct check {
	struct event_base *base;	/* ref: the caller's (control thread) */
	enum check_kind type;		/* tcp, send_expect or http; never CHECK_NONE */
	uint64_t interval_ms;		/* nominal gap between attempts */
	uint64_t timeout_ms;		/* budget of one attempt, connect included */
	char *request;			/* owned; bytes to send (send_expect: conf->send, http: GET) or NULL */
	size_t request_len;		/* bytes in request */
	char *expect;			/* owned; send_expect: expected reply prefix, or NULL */
	size_t expect_len;		/* bytes in expect */
	struct net_addr addr;		/* copy: where to connect */
	char *label;			/* owned; log prefix, e.g. "svc=web be=10.0.0.5:9001" */
	check_result_fn on_result;	/* called once per attempt */
	void *arg;			/* ref: handed back to on_result */
	struct rng rng;			/* owned; jitter of the schedule */
	enum check_phase phase;		/* lifecycle, changed by check_set_phase() only */
	struct event *timer;		/* owned; interval in IDLE, deadline in an attempt */
	struct event *connect_ev;	/* owned; EV_WRITE on fd while CONNECTING, else NULL */
	evutil_socket_t fd;		/* owned while CONNECTING; -1 once bev owns it */
	struct bufferevent *bev;	/* owned while EXCHANGING (closes the socket on free) */
	struct tls_ctx *tls;		/* ref; NULL: plain TCP */
	char *tls_host;			/* owned; the name verified (with tls) */
	uint64_t started_us;		/* monotonic start of the current attempt */
	char reason[96];		/* the reason of the result being reported */
};

static void check_on_timer(evutil_socket_t fd, short what, void *arg);

/*
 * The one place the phase changes. Refuses transitions the lifecycle does not
 * have; a refusal is a bug, logged rather than asserted.
 */
static bool check_set_phase(struct check *c, enum check_phase to)
{
	enum check_phase from = c->phase;
	bool legal;

	switch (to) {
	case CHECK_PHASE_CONNECTING:
		legal = from == CHECK_PHASE_IDLE;
		break;
	case CHECK_PHASE_EXCHANGING:
		legal = from == CHECK_PHASE_CONNECTING;
		break;
	case CHECK_PHASE_IDLE:
		legal = from == CHECK_PHASE_CONNECTING || from == CHECK_PHASE_EXCHANGING;
		break;
	case CHECK_PHASE_STOPPED:
		legal = true;
		break;
	default:
		legal = false;
		break;
	}
	if (!legal) {
		log_error("%s: check: illegal phase change %d -> %d", c->label, (int)from, (int)to);
		return false;
	}
	c->phase = to;
	return true;
}

uint64_t check_delay_ms(uint64_t interval_ms, bool first, struct rng *r)
{
	if (interval_ms == 0)
		return 0;
	if (first) {
		uint32_t n = interval_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)interval_ms;
		return rng_below(r, n);
	}
	uint64_t span = interval_ms / 5;
	if (span >= UINT32_MAX)
		span = UINT32_MAX - 1;
	return interval_ms - interval_ms / 10 + rng_below(r, (uint32_t)span + 1);
}

enum check_verdict check_expect_verdict(const void *reply, size_t len, const void *expect,
					size_t expect_len)
{
	size_t n = len < expect_len ? len : expect_len;
	if (n && memcmp(reply, expect, n) != 0)
		return CHECK_VERDICT_FAIL;
	return len >= expect_len ? CHECK_VERDICT_PASS : CHECK_VERDICT_MORE;
}

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

enum check_verdict check_http_verdict(const char *reply, size_t len, int *status)
{
	static const char proto[] = "HTTP/";
	const size_t proto_len = sizeof(proto) - 1;

	*status = 0;
	if (len == 0)
		return CHECK_VERDICT_MORE;
	/* reject garbage as soon as it cannot be a status line any more */
	if (memcmp(reply, proto, len < proto_len ? len : proto_len) != 0)
		return CHECK_VERDICT_FAIL;
	const char *eol = memchr(reply, '\n', len);
	if (!eol)
		return len >= CHECK_STATUS_LINE_MAX ? CHECK_VERDICT_FAIL : CHECK_VERDICT_MORE;
	size_t line = (size_t)(eol - reply);	/* up to, not including, LF */
	if (line >= CHECK_STATUS_LINE_MAX)
		return CHECK_VERDICT_FAIL;
	/* "HTTP/d.d ddd" then SP, CR or the LF itself */
	const char *p = reply + proto_len;
	if (line < proto_len + 7 || !is_digit(p[0]) || p[1] != '.' || !is_digit(p[2]) ||
	    p[3] != ' ' || !is_digit(p[4]) || !is_digit(p[5]) || !is_digit(p[6]))
		return CHECK_VERDICT_FAIL;
	char after = p[7];
	if (after != ' ' && after != '\r' && after != '\n')
		return CHECK_VERDICT_FAIL;
	int code = (p[4] - '0') * 100 + (p[5] - '0') * 10 + (p[6] - '0');
	if (code < 100)
		return CHECK_VERDICT_FAIL;
	*status = code;
	return code >= 200 && code < 400 ? CHECK_VERDICT_PASS : CHECK_VERDICT_FAIL;
}

/* Nothing to do: the finalizer exists so libevent frees the event after its callback. */
static void check_event_finalized(struct event *ev, void *arg)
{
}

/*
 * Close whatever the current attempt holds; safe to call in any phase and
 * from any of the attempt's callbacks: the events are finalized (freed by the
 * loop once their callbacks are over), never freed under a running callback.
 */
static void check_close_attempt(struct check *c)
{
	if (c->connect_ev) {
		event_free_finalize(0, c->connect_ev, check_event_finalized);
		c->connect_ev = NULL;
	}
	if (c->bev) {
		/* freeing a bufferevent inside its own callback is safe: libevent refcounts it */
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

/* Free what check_start() allocated; the timer is already gone. */
static void check_free(struct check *c)
{
	free(c->request);
	free(c->expect);
	free(c->label);
	tls_ctx_put(c->tls);
	free(c->tls_host);
	free(c);
}

static void check_arm(struct check *c, uint64_t ms)
{
	struct timeval tv = {
		.tv_sec = (time_t)(ms / 1000),
		.tv_usec = (suseconds_t)(ms % 1000 * 1000),
	};
	evtimer_add(c->timer, &tv);
}

/*
 * End the attempt: close it, schedule the next one, report. `reason` may be a
 * static string or c->reason. The callback may stop the check; c stays valid
 * until the loop runs the timer's finalizer, but callers return right after
 * this anyway.
 */
static void check_finish(struct check *c, bool passed, const char *reason)
{
	if (reason != c->reason)
		snprintf(c->reason, sizeof(c->reason), "%s", reason);
	check_close_attempt(c);
	if (!check_set_phase(c, CHECK_PHASE_IDLE))
		return;
	check_arm(c, check_delay_ms(c->interval_ms, false, &c->rng));

	uint64_t elapsed_ms = (now_us() - c->started_us) / 1000;
	c->on_result(c, passed, c->reason, elapsed_ms, c->arg);
}

/* A failure with errno text, e.g. "connect failed: Network is unreachable". */
static void check_fail_errno(struct check *c, const char *what, int err)
{
	if (err == ECONNREFUSED) {
		check_finish(c, false, "connect refused");
		return;
	}
	if (err == ECONNRESET) {
		check_finish(c, false, "connection reset");
		return;
	}
	snprintf(c->reason, sizeof(c->reason), "%s: %s", what, strerror(err));
	check_finish(c, false, c->reason);
}

static void check_on_read(struct bufferevent *bev, void *arg)
{
	struct check *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);

	if (c->type == CHECK_HTTP) {
		size_t n = len < CHECK_STATUS_LINE_MAX ? len : CHECK_STATUS_LINE_MAX;
		const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
		int status;
		enum check_verdict v = check_http_verdict(data, n, &status);
		if (v == CHECK_VERDICT_MORE)
			return;
		if (status == 0) {
			check_finish(c, false, "bad status line");
			return;
		}
		snprintf(c->reason, sizeof(c->reason), "status %d", status);
		check_finish(c, v == CHECK_VERDICT_PASS, c->reason);
		return;
	}

	/* send_expect with an expectation (without one, reading is not enabled) */
	size_t n = len < c->expect_len ? len : c->expect_len;
	const void *data = evbuffer_pullup(in, (ev_ssize_t)n);
	enum check_verdict v = check_expect_verdict(data, len, c->expect, c->expect_len);
	if (v == CHECK_VERDICT_PASS)
		check_finish(c, true, "ok");
	else if (v == CHECK_VERDICT_FAIL)
		check_finish(c, false, "unexpected reply");
}

/* Output drained. Only send_expect without `expect` waits for this. */
static void check_on_write(struct bufferevent *bev, void *arg)
{
	struct check *c = arg;

	if (c->type == CHECK_SEND_EXPECT && c->expect_len == 0)
		check_finish(c, true, "ok");
}

/* Why a TLS attempt failed: the certificate's verdict, or OpenSSL's error. */
static void check_tls_reason(struct check *c, struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	unsigned long e = bufferevent_get_openssl_error(bev);
	if (v != X509_V_OK) {
		snprintf(c->reason, sizeof(c->reason), "TLS: certificate verify failed: %s",
			 X509_verify_cert_error_string(v));
	} else if (e) {
		char s[120];
		ERR_error_string_n(e, s, sizeof(s));
		snprintf(c->reason, sizeof(c->reason), "TLS: %.80s", s);
	} else {
		snprintf(c->reason, sizeof(c->reason), "TLS: connection closed");
	}
	while (bufferevent_get_openssl_error(bev))
		;
}

static void check_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct check *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		/* The TLS handshake completed: that is all a tcp check asks. */
		if (c->type == CHECK_TCP || (c->request_len == 0 && c->expect_len == 0))
			check_finish(c, true, "ok");
		return;
	}
	if (c->tls && (what & BEV_EVENT_ERROR)) {
		check_tls_reason(c, bev);
		check_finish(c, false, c->reason);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		/* a reply that could be judged was judged by check_on_read already */
		check_finish(c, false, "connection closed");
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		int err = EVUTIL_SOCKET_ERROR();
		check_fail_errno(c, what & BEV_EVENT_WRITING ? "write error" : "read error", err);
		return;
	}
}

/*
 * The transport hook: turn a connected socket into the bufferevent the
 * exchange runs on. Ownership of fd passes to the result.
 *
 * TLS (a later issue) plugs in here and only here: when the service has a
 * tls: section, create an SSL from the service's SSL_CTX (SNI = server_name)
 * and return bufferevent_openssl_socket_new(c->base, fd, ssl,
 * BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE); the handshake then
 * runs inside the attempt's timeout and its failure arrives in
 * check_on_event(). A tcp check over TLS must also take this path (the
 * handshake is the check): check_on_connected() would pass on
 * BEV_EVENT_CONNECTED instead of at connect time. check_start() would take
 * the TLS context in an extra argument.
 */
static struct bufferevent *check_transport_open(struct check *c, evutil_socket_t fd)
{
	if (!c->tls)
		return bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	SSL *ssl = tls_ssl_new(c->tls, c->tls_host);
	if (!ssl)
		return NULL;
	/* From here the bufferevent owns the SSL and the socket. */
	struct bufferevent *bev = bufferevent_openssl_socket_new(c->base, fd, ssl,
		BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	/* A server that closes without close_notify has still answered. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

static void check_on_connected(struct check *c)
{
	if (c->connect_ev) {
		event_free_finalize(0, c->connect_ev, check_event_finalized);
		c->connect_ev = NULL;
	}
	if (!c->tls && (c->type == CHECK_TCP || (c->request_len == 0 && c->expect_len == 0))) {
		check_finish(c, true, "ok");
		return;
	}
	if (!check_set_phase(c, CHECK_PHASE_EXCHANGING))
		return;
	c->bev = check_transport_open(c, c->fd);
	if (!c->bev) {
		/* the fd is still ours: check_close_attempt() closes it */
		check_finish(c, false, "transport setup failed");
		return;
	}
	c->fd = -1;
	bufferevent_setcb(c->bev, check_on_read, check_on_write, check_on_event, c);
	short enable = 0;
	if (c->request_len) {
		bufferevent_write(c->bev, c->request, c->request_len);
		enable |= EV_WRITE;
	}
	/* send_expect without expect passes on the write alone: no reading */
	if (c->type == CHECK_HTTP || c->expect_len || c->tls)
		enable |= EV_READ;
	bufferevent_enable(c->bev, enable);
}

static void check_on_connect_ready(evutil_socket_t fd, short what, void *arg)
{
	struct check *c = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		check_fail_errno(c, "connect failed", err);
		return;
	}
	check_on_connected(c);
}

/* Start one attempt from IDLE. */
static void check_begin(struct check *c)
{
	int fam = c->addr.ss.ss_family;

	c->started_us = now_us();
	c->fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		/* our problem, not the backend's: skip this attempt, say nothing */
		log_warn("%s: check skipped: socket: %s", c->label, strerror(errno));
		check_arm(c, check_delay_ms(c->interval_ms, false, &c->rng));
		return;
	}
	if (!check_set_phase(c, CHECK_PHASE_CONNECTING))
		return;
	check_arm(c, c->timeout_ms);

	if (connect(c->fd, (const struct sockaddr *)&c->addr.ss, c->addr.len) == 0) {
		check_on_connected(c);	/* unix sockets may connect at once */
		return;
	}
	if (errno != EINPROGRESS) {
		check_fail_errno(c, "connect failed", errno);
		return;
	}
	c->connect_ev = event_new(c->base, c->fd, EV_WRITE, check_on_connect_ready, c);
	event_add(c->connect_ev, NULL);
}

static void check_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct check *c = arg;

	switch (c->phase) {
	case CHECK_PHASE_IDLE:
		check_begin(c);
		break;
	case CHECK_PHASE_CONNECTING:
		check_finish(c, false, "connect timeout");
		break;
	case CHECK_PHASE_EXCHANGING:
		check_finish(c, false, "timeout");
		break;
	case CHECK_PHASE_STOPPED:
		break;
	}
}

/* A request path must not break the request line. */
static bool check_path_ok(const char *path)
{
	for (const unsigned char *p = (const unsigned char *)path; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return false;
	return *path == '/';
}

/* The http request, owned by the caller. Host is the address as connected to. */
static char *check_http_request(const struct net_addr *addr, const char *path, size_t *len)
{
	char host[300];
	if (addr->ss.ss_family == AF_UNIX)
		snprintf(host, sizeof(host), "localhost");
	else
		net_addr_format(addr, host, sizeof(host));

	char *req = NULL;
	int n = asprintf(&req,
			 "GET %s HTTP/1.0\r\n"
			 "Host: %s\r\n"
			 "User-Agent: zklb-check/%s\r\n"
			 "Connection: close\r\n"
			 "\r\n", path, host, ZKLB_VERSION);
	if (n < 0) {
		log_error("check: out of memory");
		abort();
	}
	*len = (size_t)n;
	return req;
}

static char *check_memdup(const char *p, size_t n)
{
	if (!p || n == 0)
		return NULL;
	char *d = xmalloc(n);
	memcpy(d, p, n);
	return d;
}

static uint64_t check_seed(const struct check *c)
{
	uint64_t seed = 0;
	/*
	 * Hosts started by the same deploy share clock and config: the seed must
	 * come from the kernel to spread them. Fallback when it cannot say.
	 */
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
		seed = now_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
	return seed;
}

struct check *check_start(struct event_base *base, const struct check_conf *conf,
			  const struct net_addr *addr, const char *label,
			  check_result_fn on_result, void *arg)
{
	const char *path = conf->path ? conf->path : "/";
	label = label ? label : "check";

	if (conf->type != CHECK_TCP && conf->type != CHECK_SEND_EXPECT &&
	    conf->type != CHECK_HTTP) {
		log_error("%s: check: no check type", label);
		return NULL;
	}
	if (conf->interval_ms == 0 || conf->timeout_ms == 0) {
		log_error("%s: check: interval and timeout must be positive", label);
		return NULL;
	}
	if (conf->type == CHECK_HTTP && !check_path_ok(path)) {
		log_error("%s: check: bad http path", label);
		return NULL;
	}

	struct check *c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->type = conf->type;
	c->interval_ms = conf->interval_ms;
	c->timeout_ms = conf->timeout_ms;
	if (conf->type == CHECK_HTTP) {
		c->request = check_http_request(addr, path, &c->request_len);
	} else if (conf->type == CHECK_SEND_EXPECT) {
		c->request = check_memdup(conf->send, conf->send_len);
		c->request_len = c->request ? conf->send_len : 0;
		c->expect = check_memdup(conf->expect, conf->expect_len);
		c->expect_len = c->expect ? conf->expect_len : 0;
	}
	c->addr = *addr;
	c->label = xstrdup(label);
	c->on_result = on_result;
	c->arg = arg;
	rng_seed(&c->rng, check_seed(c));
	c->phase = CHECK_PHASE_IDLE;
	c->fd = -1;
	c->timer = evtimer_new(base, check_on_timer, c);
	if (!c->timer) {
		log_error("%s: check: cannot create timer", c->label);
		check_free(c);
		return NULL;
	}
	check_arm(c, check_delay_ms(c->interval_ms, true, &c->rng));
	return c;
}

void check_use_tls(struct check *c, struct tls_ctx *ctx, const char *host)
{
	tls_ctx_put(c->tls);
	free(c->tls_host);
	c->tls = tls_ctx_get(ctx);
	c->tls_host = xstrdup(host);
}

/* The timer's finalizer: the loop runs it once no callback of c can be running. */
static void check_finalized(struct event *ev, void *arg)
{
	check_free(arg);
}

void check_stop(struct check *c)
{
	if (!c || c->phase == CHECK_PHASE_STOPPED)
		return;
	check_close_attempt(c);
	check_set_phase(c, CHECK_PHASE_STOPPED);
	/*
	 * Never free under a running callback (check_stop() may be called from
	 * on_result, i.e. from inside one of c's own callbacks): the timer's
	 * finalizer frees c on a later loop turn, or event_base_free() runs it.
	 */
	event_free_finalize(0, c->timer, check_finalized);
	c->timer = NULL;
}
