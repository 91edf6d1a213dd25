/*
 * trunk_probe — a calling side of the trunk for the tests: HTTP/2 over
 * mutual TLS to a zklb trunk listener, N concurrent CONNECT streams to one
 * authority, each sending `bytes` of a per-stream pattern then END_STREAM,
 * and checking that exactly those bytes come back before the remote's
 * END_STREAM (against an echo backend). One JSON line on stdout:
 *   {"streams":N,"ok":..,"status":{"200":..},"mismatch":..,"reset":..,
 *    "bytes_back":..,"ms":..,"fast_done_ms":..}
 *
 * --stall-first: stream 1 never reads what comes back (its window stays
 * shut once full); the others must still finish ("fast_done_ms"), then
 * stream 1 is reset. --reset-after B: each stream is reset after B bytes
 * came back. Exits 0 once every stream ended, 1 on a setup failure, 2 on
 * the deadline (--timeout seconds).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct probe_stream {
	int32_t id;
	unsigned index;
	uint64_t sent;			/* bytes */
	uint64_t back;			/* bytes */
	int status;
	bool mismatch;
	bool done;
	bool reset;
};

struct probe {
	SSL *ssl;
	nghttp2_session *h2;
	struct probe_stream *v;
	unsigned n;
	uint64_t bytes;
	uint64_t reset_after;
	bool stall_first;
	unsigned n_done;
	unsigned n_fast_done;
	uint64_t t0_ms;
	uint64_t fast_done_ms;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint8_t pattern(unsigned index, uint64_t off)
{
	return (uint8_t)((off * 31 + index * 7 + (off >> 11)) & 0xff);
}

static ssize_t on_send(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
		       uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct probe_stream *s = src->ptr;
	struct probe *p = arg;
	(void)h2;
	(void)id;
	size_t n = (size_t)(p->bytes - s->sent < len ? p->bytes - s->sent : len);
	for (size_t i = 0; i < n; i++)
		buf[i] = pattern(s->index, s->sent + i);
	s->sent += n;
	if (s->sent == p->bytes)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *arg)
{
	(void)flags;
	(void)arg;
	struct probe_stream *s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
	if (s && namelen == 7 && memcmp(name, ":status", 7) == 0)
		s->status = valuelen == 3 ? atoi((const char *)value) : -1;
	return 0;
}

static int on_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *d, size_t len,
		   void *arg)
{
	struct probe *p = arg;
	(void)flags;
	struct probe_stream *s = nghttp2_session_get_stream_user_data(h2, id);
	if (!s)
		return 0;
	for (size_t i = 0; i < len && !s->mismatch; i++)
		s->mismatch = d[i] != pattern(s->index, s->back + i);
	s->back += len;
	if (!(p->stall_first && s->index == 0))
		nghttp2_session_consume(h2, id, len);
	else
		nghttp2_session_consume_connection(h2, len);
	if (p->reset_after && s->back >= p->reset_after && !s->reset) {
		s->reset = true;
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
	}
	return 0;
}

static int on_close(nghttp2_session *h2, int32_t id, uint32_t code, void *arg)
{
	struct probe *p = arg;
	struct probe_stream *s = nghttp2_session_get_stream_user_data(h2, id);
	if (!s || s->done)
		return 0;
	s->done = true;
	s->reset |= code != NGHTTP2_NO_ERROR;
	p->n_done++;
	if (s->index != 0 || !p->stall_first) {
		if (++p->n_fast_done == p->n - (p->stall_first ? 1 : 0))
			p->fast_done_ms = mono_ms() - p->t0_ms;
	}
	return 0;
}

static int tcp_connect(const char *hostport)
{
	char host[64];
	const char *colon = strrchr(hostport, ':');
	if (!colon || (size_t)(colon - hostport) >= sizeof(host))
		return -1;
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1)) };
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Move frames out and bytes in until every stream ended or the deadline. */
static int probe_run(struct probe *p, int fd, uint64_t deadline_ms)
{
	uint8_t buf[16384];
	while (p->n_done < p->n) {
		if (p->stall_first && p->n_fast_done == p->n - 1 && !p->v[0].done && !p->v[0].reset) {
			p->v[0].reset = true;
			nghttp2_submit_rst_stream(p->h2, NGHTTP2_FLAG_NONE, p->v[0].id, NGHTTP2_CANCEL);
		}
		for (;;) {
			const uint8_t *out;
			ssize_t n = nghttp2_session_mem_send(p->h2, &out);
			if (n < 0)
				return 1;
			if (n == 0)
				break;
			for (ssize_t off = 0; off < n;) {
				size_t w = 0;
				if (SSL_write_ex(p->ssl, out + off, (size_t)(n - off), &w) != 1)
					return 1;
				off += (ssize_t)w;
			}
		}
		if (mono_ms() > deadline_ms)
			return 2;
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (SSL_pending(p->ssl) == 0 && poll(&pfd, 1, 100) <= 0)
			continue;
		size_t got = 0;
		int rc = SSL_read_ex(p->ssl, buf, sizeof(buf), &got);
		if (rc != 1) {
			int e = SSL_get_error(p->ssl, rc);
			if (e == SSL_ERROR_WANT_READ)
				continue;
			return 3;		/* the trunk went away */
		}
		if (nghttp2_session_mem_recv(p->h2, buf, got) < 0)
			return 1;
	}
	return 0;
}

/*
 * Leave politely: GOAWAY and close_notify, then read until the trunk closes
 * (at most 2 s), so that the frames sent last (resets) are read before our
 * socket closes — a close with unread bytes would be a TCP RST.
 */
static void probe_goaway(struct probe *p, int fd)
{
	uint8_t buf[16384];
	const uint8_t *out;
	ssize_t n;
	nghttp2_session_terminate_session(p->h2, NGHTTP2_NO_ERROR);
	while ((n = nghttp2_session_mem_send(p->h2, &out)) > 0) {
		size_t w = 0;
		for (ssize_t off = 0; off < n; off += (ssize_t)w)
			if (SSL_write_ex(p->ssl, out + off, (size_t)(n - off), &w) != 1)
				return;
	}
	SSL_shutdown(p->ssl);
	uint64_t deadline = mono_ms() + 2000;
	while (mono_ms() < deadline) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		size_t got = 0;
		if (SSL_read_ex(p->ssl, buf, sizeof(buf), &got) != 1 &&
		    SSL_get_error(p->ssl, 0) != SSL_ERROR_WANT_READ)
			return;
	}
}

int main(int argc, char **argv)
{
	const char *trunk = NULL, *ca = NULL, *cert = NULL, *key = NULL, *authority = NULL;
	unsigned n = 1;
	unsigned timeout_s = 60;
	struct probe p = { 0 };
	signal(SIGPIPE, SIG_IGN);	/* a trunk closed under us is an error return, not a death */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : "";
		if (strcmp(a, "--stall-first") == 0) {
			p.stall_first = true;
			continue;
		}
		i++;
		if (strcmp(a, "--trunk") == 0) trunk = v;
		else if (strcmp(a, "--ca") == 0) ca = v;
		else if (strcmp(a, "--cert") == 0) cert = v;
		else if (strcmp(a, "--key") == 0) key = v;
		else if (strcmp(a, "--authority") == 0) authority = v;
		else if (strcmp(a, "--streams") == 0) n = (unsigned)atoi(v);
		else if (strcmp(a, "--bytes") == 0) p.bytes = strtoull(v, NULL, 10);
		else if (strcmp(a, "--reset-after") == 0) p.reset_after = strtoull(v, NULL, 10);
		else if (strcmp(a, "--timeout") == 0) timeout_s = (unsigned)atoi(v);
		else {
			fprintf(stderr, "trunk_probe: unknown argument %s\n", a);
			return 1;
		}
	}
	if (!trunk || !ca || !authority || n == 0) {
		fprintf(stderr, "usage: trunk_probe --trunk H:P --ca F [--cert F --key F] "
				"--authority H:P [--streams N] [--bytes N]\n");
		return 1;
	}
	SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
	SSL_CTX_load_verify_locations(sc, ca, NULL);
	SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
	if (cert && (!SSL_CTX_use_certificate_chain_file(sc, cert) ||
		     !SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM))) {
		fprintf(stderr, "trunk_probe: cannot load %s / %s\n", cert, key);
		return 1;
	}
	static const unsigned char alpn[] = "\x02h2";
	SSL_CTX_set_alpn_protos(sc, alpn, 3);
	int fd = tcp_connect(trunk);
	if (fd < 0) {
		fprintf(stderr, "trunk_probe: cannot connect to %s: %s\n", trunk, strerror(errno));
		return 1;
	}
	p.ssl = SSL_new(sc);
	SSL_set_fd(p.ssl, fd);
	if (SSL_connect(p.ssl) != 1) {
		char e[200];
		ERR_error_string_n(ERR_get_error(), e, sizeof(e));
		printf("{\"handshake\":\"failed\",\"error\":\"%s\"}\n", e);
		return 0;
	}
	nghttp2_session_callbacks *cb;
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
	nghttp2_option *opt;
	nghttp2_option_new(&opt);
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_session_client_new2(&p.h2, cb, &p, opt);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	nghttp2_settings_entry s[] = { { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20 } };
	nghttp2_submit_settings(p.h2, NGHTTP2_FLAG_NONE, s, 1);
	nghttp2_session_set_local_window_size(p.h2, NGHTTP2_FLAG_NONE, 0, 64 << 20);

	p.n = n;
	p.v = calloc(n, sizeof(*p.v));
	p.t0_ms = mono_ms();
	for (unsigned i = 0; i < n; i++) {
		nghttp2_nv nv[] = {
			{ (uint8_t *)":method", (uint8_t *)"CONNECT", 7, 7, NGHTTP2_NV_FLAG_NONE },
			{ (uint8_t *)":authority", (uint8_t *)authority, 10, strlen(authority),
			  NGHTTP2_NV_FLAG_NONE },
		};
		p.v[i].index = i;
		nghttp2_data_provider dp = { .source.ptr = &p.v[i], .read_callback = on_send };
		p.v[i].id = nghttp2_submit_request(p.h2, NULL, nv, 2, p.bytes ? &dp : NULL, &p.v[i]);
		if (p.v[i].id < 0) {
			fprintf(stderr, "trunk_probe: submit: %s\n", nghttp2_strerror(p.v[i].id));
			return 1;
		}
	}
	int rc = probe_run(&p, fd, p.t0_ms + timeout_s * 1000ull);
	if (rc == 0)
		probe_goaway(&p, fd);
	unsigned ok = 0, mismatch = 0, reset = 0, st200 = 0, st403 = 0, st502 = 0, other = 0;
	uint64_t back = 0;
	for (unsigned i = 0; i < n; i++) {
		struct probe_stream *x = &p.v[i];
		back += x->back;
		mismatch += x->mismatch;
		reset += x->reset;
		st200 += x->status == 200;
		st403 += x->status == 403;
		st502 += x->status == 502;
		other += x->status != 200 && x->status != 403 && x->status != 502;
		ok += x->done && !x->reset && !x->mismatch && x->status == 200 && x->back == p.bytes;
	}
	printf("{\"rc\":%d,\"streams\":%u,\"ok\":%u,\"mismatch\":%u,\"reset\":%u,"
	       "\"status\":{\"200\":%u,\"403\":%u,\"502\":%u,\"other\":%u},"
	       "\"bytes_back\":%llu,\"ms\":%llu,\"fast_done_ms\":%llu}\n",
	       rc, n, ok, mismatch, reset, st200, st403, st502, other, (unsigned long long)back,
	       (unsigned long long)(mono_ms() - p.t0_ms), (unsigned long long)p.fast_done_ms);
	fflush(stdout);
	nghttp2_session_del(p.h2);
	SSL_free(p.ssl);
	SSL_CTX_free(sc);
	close(fd);
	free(p.v);
	return rc == 2 ? 2 : 0;
}
