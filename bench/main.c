/*
 * zklb-bench — command line: parse the options of a client mode or of
 * `serve`, run it, print the report (text or --json).
 */
#include "client.h"
#include "log.h"
#include "server.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_DURATION_MS (24ull * 3600 * 1000)	/* a run never lasts longer */

static const char usage_text[] =
"usage: zklb-bench MODE [options] HOST:PORT      load generator\n"
"       zklb-bench serve --listen ADDR [options] benchmark backend\n"
"       zklb-bench backend ADDR [options]         same as serve --listen ADDR\n"
"\n"
"modes:\n"
"  rr       persistent connections; send --req-size bytes, wait for exactly\n"
"           --reply-size bytes, repeat (against serve --mode echo or fixed:M)\n"
"  conn     one new connection per request, same exchange as rr, then the\n"
"           client closes first (--close server: wait for the server's close)\n"
"  stream   bulk one way: --direction up (to serve --mode sink) or down (from\n"
"           --mode source); reports MB/s\n"
"  http     HTTP/1.1 GET --path, keep-alive or --http-close; replies are read\n"
"           by Content-Length (against nginx or any HTTP server)\n"
"  idle     open -c connections, do one rr exchange on each (set both sizes to\n"
"           0 to skip it), print \"ready N\" on stdout, hold them until -d ends\n"
"           or SIGINT/SIGTERM (for memory per idle connection)\n"
"\n"
"client options:\n"
"  -c, --connections N   connections (slots) in total          [50]\n"
"  -t, --threads N       event loops, one thread each           [1]\n"
"  -d, --duration DUR    time bound: 500ms, 10s, 2m             [10s]\n"
"  -n, --requests N      count bound over all connections       [none]\n"
"  -R, --rate R          open loop: R requests/s in total; latency counts\n"
"                        from each request's due time (no coordinated omission)\n"
"      --req-size SIZE   request bytes (rr, conn, idle)         [64]\n"
"      --reply-size SIZE reply bytes expected (rr, conn, idle)  [64]\n"
"      --bytes SIZE      stream: total bytes to move            [none]\n"
"      --direction D     stream: up | down                      [up]\n"
"      --close WHO       conn: client | server                  [client]\n"
"      --http-close      http: send Connection: close\n"
"      --http-once       http: one keep-alive GET per connection, then the\n"
"                        client closes first (short clients a proxy may pool)\n"
"      --path PATH       http: request target                   [/]\n"
"      --host HOST       http: Host header                      [HOST:PORT]\n"
"      --json            print the result as one JSON object\n"
"      --progress / --no-progress\n"
"                        progress line each second on stderr    [if a tty]\n"
"\n"
"serve options:\n"
"  -l, --listen ADDR     host:port (port 0 picks a free one)\n"
"  -m, --mode MODE       echo | fixed:M | sink | source | source:N  [echo]\n"
"      --req-size SIZE   request size: fixed:M replies M bytes after every\n"
"                        SIZE bytes received; echo counts requests by it [64]\n"
"      --close           close after the first reply (server closes first)\n"
"      --status ADDR     answer one JSON line of counters per connection\n"
"      --status-port P   same, on the listen host\n"
"      --backlog N       listen backlog                         [4096]\n"
"  On start, serve prints {\"listen\":ADDR,\"status\":ADDR} on stdout; on SIGUSR1\n"
"  and at exit (SIGINT/SIGTERM) it prints its counters as one JSON line:\n"
"  accepted, open, closed, bytes_in, bytes_out, requests, resets, accept_errors.\n"
"\n"
"rr framing: the client sends req-size bytes and waits for reply-size bytes;\n"
"the server must be started with the same --req-size (fixed:M) or be echo\n"
"(then reply-size = req-size). No headers: proxies see plain bytes.\n"
"\n"
"SIZE: 512, 16k, 1m, 1g.  Exit: 0 run done (see errors), 1 could not run, 2 usage.\n";

enum opt_id {
	OPT_REQ_SIZE = 1000,
	OPT_REPLY_SIZE,
	OPT_BYTES,
	OPT_DIRECTION,
	OPT_CLOSE,
	OPT_HTTP_CLOSE,
	OPT_HTTP_ONCE,
	OPT_PATH,
	OPT_HOST,
	OPT_JSON,
	OPT_PROGRESS,
	OPT_NO_PROGRESS,
	OPT_STATUS,
	OPT_STATUS_PORT,
	OPT_BACKLOG,
	OPT_TARGET,
	OPT_LOG_LEVEL,
};

static const struct option client_long_opts[] = {
	{ "connections", required_argument, NULL, 'c' },
	{ "threads", required_argument, NULL, 't' },
	{ "duration", required_argument, NULL, 'd' },
	{ "requests", required_argument, NULL, 'n' },
	{ "rate", required_argument, NULL, 'R' },
	{ "help", no_argument, NULL, 'h' },
	{ "req-size", required_argument, NULL, OPT_REQ_SIZE },
	{ "reply-size", required_argument, NULL, OPT_REPLY_SIZE },
	{ "bytes", required_argument, NULL, OPT_BYTES },
	{ "direction", required_argument, NULL, OPT_DIRECTION },
	{ "close", required_argument, NULL, OPT_CLOSE },
	{ "http-close", no_argument, NULL, OPT_HTTP_CLOSE },
	{ "http-once", no_argument, NULL, OPT_HTTP_ONCE },
	{ "path", required_argument, NULL, OPT_PATH },
	{ "host", required_argument, NULL, OPT_HOST },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "progress", no_argument, NULL, OPT_PROGRESS },
	{ "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
	{ "target", required_argument, NULL, OPT_TARGET },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ NULL, 0, NULL, 0 },
};

static const struct option serve_long_opts[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "mode", required_argument, NULL, 'm' },
	{ "help", no_argument, NULL, 'h' },
	{ "req-size", required_argument, NULL, OPT_REQ_SIZE },
	{ "close", no_argument, NULL, OPT_CLOSE },
	{ "status", required_argument, NULL, OPT_STATUS },
	{ "status-port", required_argument, NULL, OPT_STATUS_PORT },
	{ "backlog", required_argument, NULL, OPT_BACKLOG },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ NULL, 0, NULL, 0 },
};


/* Everything the command line sets, for either side. */
struct cli {
	bool serve;			/* `serve` rather than a client mode */
	struct client_opts client;	/* client mode options */
	struct server_opts server;	/* serve options */
	bool have_listen;		/* serve: --listen given */
	const char *listen_text;	/* serve: --listen as given */
	const char *status_port;	/* serve: --status-port as given */
	const char *target;		/* client: HOST:PORT */
	bool json;			/* --json */
	int progress;			/* -1 auto (tty), 0 off, 1 on */
	bool reply_size_set;		/* --reply-size given */
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "zklb-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\ntry zklb-bench --help\n");
	return 2;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;
	if (!parse_u64(s, &v) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool parse_addr(const char *s, struct net_addr *a)
{
	char err[256];
	if (net_addr_parse(s, a, err, sizeof(err)))
		return true;
	fprintf(stderr, "zklb-bench: %s: %s\n", s, err);
	return false;
}

/* A listen address; "HOST:0" asks the kernel for a free port. */
static bool parse_listen_addr(const char *s, struct net_addr *a)
{
	char buf[300];
	size_t len = strlen(s);

	if (len < 2 || len >= sizeof(buf) || strcmp(s + len - 2, ":0") != 0)
		return parse_addr(s, a);
	/* util's parser wants a real port: parse with 1, then clear it. */
	memcpy(buf, s, len + 1);
	buf[len - 1] = '1';
	if (!parse_addr(buf, a))
		return false;
	if (a->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&a->ss)->sin_port = 0;
	else if (a->ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&a->ss)->sin6_port = 0;
	return true;
}

/* Parse argv into cli; 0 to go on, otherwise the exit code. */
static int parse_args(int argc, char **argv, struct cli *cli)
{
	struct client_opts *co = &cli->client;
	struct server_opts *so = &cli->server;
	uint64_t v;
	double rate;
	char *end;

	if (argc < 2)
		return usage_error("%s", "a mode is required");
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_text, stdout);
		return -1;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("zklb-bench %s\n", ZKLB_VERSION);
		return -1;
	}
	bool backend_alias = strcmp(argv[1], "backend") == 0;
	if (strcmp(argv[1], "serve") == 0 || backend_alias)
		cli->serve = true;
	else if (!client_mode_parse(argv[1], &co->mode))
		return usage_error("unknown mode '%s'", argv[1]);

	optind = 2;
	int c;
	const char *shorts = cli->serve ? "l:m:h" : "c:t:d:n:R:h";
	const struct option *longs = cli->serve ? serve_long_opts : client_long_opts;
	while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (!parse_u32(optarg, &co->connections) || co->connections == 0)
				return usage_error("bad --connections '%s'", optarg);
			break;
		case 't':
			if (!parse_u32(optarg, &co->threads) || co->threads == 0 || co->threads > 256)
				return usage_error("bad --threads '%s' (1-256)", optarg);
			break;
		case 'd':
			if (!duration_parse(optarg, &v) || v == 0 || v > MAX_DURATION_MS)
				return usage_error("bad --duration '%s' (e.g. 500ms, 10s; at most 24h)", optarg);
			co->duration_us = v * 1000u;
			break;
		case 'n':
			if (!parse_u64(optarg, &co->requests) || co->requests == 0)
				return usage_error("bad --requests '%s'", optarg);
			break;
		case 'R':
			errno = 0;
			rate = strtod(optarg, &end);
			if (errno || *end || !(rate > 0) || rate > 1e9)
				return usage_error("bad --rate '%s'", optarg);
			co->rate = rate;
			break;
		case 'l':
			if (!parse_listen_addr(optarg, &so->listen))
				return 2;
			cli->have_listen = true;
			cli->listen_text = optarg;
			break;
		case 'm':
			if (!server_mode_parse(optarg, so))
				return usage_error("bad --mode '%s' (echo, fixed:M, sink, source, source:N)", optarg);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return -1;
		case OPT_REQ_SIZE:
			if (!size_parse(optarg, &v))
				return usage_error("bad --req-size '%s'", optarg);
			co->req_size = v;
			so->req_size = v;
			break;
		case OPT_REPLY_SIZE:
			if (!size_parse(optarg, &co->reply_size))
				return usage_error("bad --reply-size '%s'", optarg);
			cli->reply_size_set = true;
			break;
		case OPT_BYTES:
			if (!size_parse(optarg, &co->bytes) || co->bytes == 0)
				return usage_error("bad --bytes '%s'", optarg);
			break;
		case OPT_DIRECTION:
			if (strcmp(optarg, "up") == 0)
				co->stream_down = false;
			else if (strcmp(optarg, "down") == 0)
				co->stream_down = true;
			else
				return usage_error("bad --direction '%s' (up or down)", optarg);
			break;
		case OPT_CLOSE:
			/* serve: --close; conn: --close client|server */
			if (cli->serve)
				so->close_after_reply = true;
			else if (strcmp(optarg, "client") == 0)
				co->close_by_server = false;
			else if (strcmp(optarg, "server") == 0)
				co->close_by_server = true;
			else
				return usage_error("bad --close '%s' (client or server)", optarg);
			break;
		case OPT_HTTP_CLOSE:
			co->http_close = true;
			break;
		case OPT_HTTP_ONCE:
			co->http_once = true;
			break;
		case OPT_PATH:
			if (optarg[0] != '/' || strlen(optarg) >= sizeof(co->http_path) || strpbrk(optarg, " \r\n"))
				return usage_error("bad --path '%s'", optarg);
			snprintf(co->http_path, sizeof(co->http_path), "%s", optarg);
			break;
		case OPT_HOST:
			if (strlen(optarg) >= sizeof(co->http_host) || strpbrk(optarg, " \r\n"))
				return usage_error("bad --host '%s'", optarg);
			snprintf(co->http_host, sizeof(co->http_host), "%s", optarg);
			break;
		case OPT_JSON:
			cli->json = true;
			break;
		case OPT_PROGRESS:
			cli->progress = 1;
			break;
		case OPT_NO_PROGRESS:
			cli->progress = 0;
			break;
		case OPT_STATUS:
			if (!parse_listen_addr(optarg, &so->status))
				return 2;
			so->has_status = true;
			break;
		case OPT_STATUS_PORT:
			cli->status_port = optarg;
			break;
		case OPT_BACKLOG:
			if (!parse_u64(optarg, &v) || v == 0 || v > INT_MAX)
				return usage_error("bad --backlog '%s'", optarg);
			so->backlog = (int)v;
			break;
		case OPT_TARGET:
			cli->target = optarg;
			break;
		case OPT_LOG_LEVEL: {
			enum log_level level;
			if (!log_level_parse(optarg, &level))
				return usage_error("bad --log-level '%s'", optarg);
			log_setup(level, LOG_FORMAT_TEXT);
			break;
		}
		default:
			return 2;
		}
	}
	if (backend_alias && optind + 1 == argc && !cli->have_listen) {
		/* `backend ADDR` is `serve --listen ADDR` */
		if (!parse_listen_addr(argv[optind], &so->listen))
			return 2;
		cli->have_listen = true;
		cli->listen_text = argv[optind++];
	}
	if (optind < argc) {
		if (cli->serve || cli->target || optind + 1 < argc)
			return usage_error("unexpected argument '%s'", argv[optind]);
		cli->target = argv[optind];
	}
	return 0;
}

/* Check the combination of options; 0 or the exit code. */
static int check_serve(struct cli *cli)
{
	struct server_opts *so = &cli->server;

	if (!cli->have_listen)
		return usage_error("%s", "serve needs --listen HOST:PORT");
	if (cli->status_port) {
		char host[256];
		char addr[300];
		uint16_t port;
		uint64_t p;
		if (!parse_u64(cli->status_port, &p) || p > 65535)
			return usage_error("bad --status-port '%s'", cli->status_port);
		if (!net_split_host_port(cli->listen_text, host, sizeof(host), &port))
			return usage_error("bad --listen '%s'", cli->listen_text);
		snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:%llu" : "%s:%llu",
			 host, (unsigned long long)p);
		if (!parse_listen_addr(addr, &so->status))
			return 2;
		so->has_status = true;
	}
	if (so->mode == SERVER_FIXED && so->req_size == 0)
		return usage_error("%s", "fixed:M needs --req-size of at least 1");
	if (so->close_after_reply && (so->mode == SERVER_SINK || so->mode == SERVER_SOURCE))
		return usage_error("%s", "--close applies to echo and fixed:M");
	return 0;
}

static int check_client(struct cli *cli)
{
	struct client_opts *co = &cli->client;

	if (!cli->target)
		return usage_error("%s", "a target HOST:PORT is required");
	if (strlen(cli->target) >= sizeof(co->target_text))
		return usage_error("target too long: '%s'", cli->target);
	if (!parse_addr(cli->target, &co->target))
		return 2;
	snprintf(co->target_text, sizeof(co->target_text), "%s", cli->target);
	if (co->http_host[0] == '\0')
		snprintf(co->http_host, sizeof(co->http_host), "%s", cli->target);
	if (!cli->reply_size_set)
		co->reply_size = co->req_size;	/* echo by default */
	if (co->threads > co->connections)
		co->threads = co->connections;
	if ((co->mode == CLIENT_RR || co->mode == CLIENT_CONN) && (co->req_size == 0 || co->reply_size == 0))
		return usage_error("%s: --req-size and --reply-size must be at least 1", client_mode_name(co->mode));
	if (co->rate > 0 && co->mode != CLIENT_RR && co->mode != CLIENT_CONN && co->mode != CLIENT_HTTP)
		return usage_error("--rate applies to rr, conn and http, not %s", client_mode_name(co->mode));
	if (co->close_by_server && co->mode != CLIENT_CONN)
		return usage_error("%s", "--close server applies to conn mode");
	if (cli->progress < 0)
		co->progress = isatty(STDERR_FILENO) && !cli->json;
	else
		co->progress = cli->progress;
	return 0;
}

static void print_text(const struct client_opts *o, const struct client_result *r)
{
	double secs = (double)r->elapsed_us / 1e6;
	const struct histogram *h = r->latency;

	if (secs <= 0)
		secs = 1e-9;
	printf("mode %s  target %s  connections %u  threads %u  elapsed %.3f s%s\n",
	       client_mode_name(o->mode), o->target_text, o->connections, o->threads, secs,
	       o->rate > 0 ? "  (open loop)" : "");
	printf("requests %llu  errors %llu  connect failures %llu  connections opened %llu\n",
	       (unsigned long long)r->requests, (unsigned long long)r->errors,
	       (unsigned long long)r->connect_failures, (unsigned long long)r->connections_opened);
	if (o->mode == CLIENT_HTTP)
		printf("non-2xx replies %llu\n", (unsigned long long)r->http_non2xx);
	if (o->mode == CLIENT_IDLE)
		printf("ready %llu of %u\n", (unsigned long long)r->idle_ready, o->connections);
	printf("throughput %.1f req/s  sent %llu B (%.2f MB/s)  received %llu B (%.2f MB/s)\n",
	       (double)r->requests / secs, (unsigned long long)r->bytes_sent,
	       (double)r->bytes_sent / secs / 1e6, (unsigned long long)r->bytes_received,
	       (double)r->bytes_received / secs / 1e6);
	if (h->count)
		printf("latency us  min %llu  mean %.1f  p50 %llu  p90 %llu  p99 %llu  p99.9 %llu  max %llu\n",
		       (unsigned long long)h->min, histogram_mean(h),
		       (unsigned long long)histogram_percentile(h, 50),
		       (unsigned long long)histogram_percentile(h, 90),
		       (unsigned long long)histogram_percentile(h, 99),
		       (unsigned long long)histogram_percentile(h, 99.9),
		       (unsigned long long)h->max);
}

static void print_json(const struct client_opts *o, const struct client_result *r)
{
	double secs = (double)r->elapsed_us / 1e6;
	const struct histogram *h = r->latency;

	if (secs <= 0)
		secs = 1e-9;
	printf("{\"mode\":\"%s\",\"target\":\"%s\",\"connections\":%u,\"threads\":%u,"
	       "\"rate\":%.3f,\"duration_s\":%.6f,\"requests\":%llu,\"errors\":%llu,"
	       "\"connect_failures\":%llu,\"connections_opened\":%llu,\"bytes_sent\":%llu,"
	       "\"bytes_received\":%llu,\"http_non2xx\":%llu,\"idle_ready\":%llu,"
	       "\"rps\":%.3f,\"mbps_sent\":%.3f,\"mbps_received\":%.3f,"
	       "\"latency_us\":{\"count\":%llu,\"min\":%llu,\"mean\":%.3f,\"p50\":%llu,"
	       "\"p90\":%llu,\"p99\":%llu,\"p99.9\":%llu,\"max\":%llu}}\n",
	       client_mode_name(o->mode), o->target_text, o->connections, o->threads,
	       o->rate, secs, (unsigned long long)r->requests, (unsigned long long)r->errors,
	       (unsigned long long)r->connect_failures, (unsigned long long)r->connections_opened,
	       (unsigned long long)r->bytes_sent, (unsigned long long)r->bytes_received,
	       (unsigned long long)r->http_non2xx, (unsigned long long)r->idle_ready,
	       (double)r->requests / secs, (double)r->bytes_sent / secs / 1e6,
	       (double)r->bytes_received / secs / 1e6,
	       (unsigned long long)h->count, (unsigned long long)(h->count ? h->min : 0),
	       histogram_mean(h),
	       (unsigned long long)histogram_percentile(h, 50),
	       (unsigned long long)histogram_percentile(h, 90),
	       (unsigned long long)histogram_percentile(h, 99),
	       (unsigned long long)histogram_percentile(h, 99.9),
	       (unsigned long long)h->max);
}

int main(int argc, char **argv)
{
	struct cli cli;
	struct client_result result;

	memset(&cli, 0, sizeof(cli));
	cli.progress = -1;
	client_opts_default(&cli.client);
	server_opts_default(&cli.server);
	log_setup(LOG_WARN, LOG_FORMAT_TEXT);

	int rc = parse_args(argc, argv, &cli);
	if (rc < 0)
		return 0;	/* --help, --version */
	if (rc > 0)
		return rc;
	if (cli.serve) {
		rc = check_serve(&cli);
		if (rc)
			return rc;
		return server_run(&cli.server) < 0 ? 1 : 0;
	}
	rc = check_client(&cli);
	if (rc)
		return rc;
	signal(SIGPIPE, SIG_IGN);
	if (client_run(&cli.client, &result) < 0)
		return 1;
	if (cli.json)
		print_json(&cli.client, &result);
	else
		print_text(&cli.client, &result);
	client_result_free(&result);
	return 0;
}
