/*
 * discovery_probe — runs discovery (zk + discovery + cache) for one service
 * and prints what the owner would see, one JSON object per line on stdout:
 *
 *   {"ev":"view","t":WALL_MS,"service":"web","instances":[{"id":..,"host":..,
 *    "port":..,"ssl_port":..}]}
 *   {"ev":"state","t":..,"service":"web","state":"connected"}
 *   {"ev":"session","t":..,"event":"new","zk_state":"connected",
 *    "session_id":"0x...","passwd":"<hex>"}
 *   {"ev":"stats","t":..,"state":..,"instances":..,"updates":..,"bad":..,
 *    "held":..,"unroutable":..,"duplicates":..,"lists":..,"gets":..,"read_wait_ms":..,"kept":..,"errors":..,"holding":..,"skipped":..,
 *    "zk":{"state":..,"sessions":..,"expirations":..,"disconnects":..}}
 *
 * Reads commands on stdin: "stats" prints a stats line; EOF or SIGTERM exits.
 * Logs (log.h) go to stderr. A test tool for tests/integration only.
 *
 *   discovery_probe --zk HOSTS --service NAME --type curator|serverset
 *                   --path /services/web [--cache-dir DIR] [--session-timeout MS]
 *                   [--auth scheme:cred] [--keep-last-known 0|1]
 *                   [--collapse-guard F] [--collapse-hold MS] [--coalesce MS]
 *                   [--resync-jitter MS] [--no-watch-data] [--tls] [--no-zk]
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "discovery.h"
#include "config.h"
#include "log.h"
#include "util.h"
#include "zk.h"

struct probe {
	struct event_base *base;	/* ref */
	struct zk *zk;			/* ref; NULL with --no-zk */
	struct discovery *disc;		/* ref */
	const char *service;		/* ref: argv */
	char line[256];			/* stdin command being read */
	size_t line_len;
};

static void emit(json_t *o)
{
	char *s;

	json_object_set_new(o, "t", json_integer((json_int_t)wall_ms()));
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	fputs(s, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	free(s);
}

static void on_view(void *arg, const char *service, const struct instance *v, size_t n)
{
	json_t *o = json_object(), *arr = json_array();

	(void)arg;
	for (size_t i = 0; i < n; i++) {
		json_t *x = json_object();
		json_object_set_new(x, "id", json_string(v[i].id));
		json_object_set_new(x, "host", json_string(v[i].host));
		json_object_set_new(x, "port", json_integer(v[i].port));
		json_object_set_new(x, "ssl_port", json_integer(v[i].ssl_port));
		json_array_append_new(arr, x);
	}
	json_object_set_new(o, "ev", json_string("view"));
	json_object_set_new(o, "service", json_string(service));
	json_object_set_new(o, "instances", arr);
	emit(o);
}

static void on_state(void *arg, const char *service, enum discovery_state st)
{
	json_t *o = json_object();

	(void)arg;
	json_object_set_new(o, "ev", json_string("state"));
	json_object_set_new(o, "service", json_string(service));
	json_object_set_new(o, "state", json_string(discovery_state_name(st)));
	emit(o);
}

static void on_session(void *arg, enum zk_session_event ev)
{
	struct probe *p = arg;
	json_t *o = json_object();
	char passwd[16], hex[33], id[32];
	int64_t sid;

	json_object_set_new(o, "ev", json_string("session"));
	json_object_set_new(o, "event", json_string(zk_session_event_name(ev)));
	json_object_set_new(o, "zk_state", json_string(zk_state_name(zk_state(p->zk))));
	if (zk_client_id(p->zk, &sid, passwd)) {
		for (int i = 0; i < 16; i++)
			snprintf(hex + 2 * i, 3, "%02x", (unsigned char)passwd[i]);
		snprintf(id, sizeof(id), "0x%llx", (unsigned long long)sid);
		json_object_set_new(o, "session_id", json_string(id));
		json_object_set_new(o, "passwd", json_string(hex));
	}
	emit(o);
}

static void print_stats(struct probe *p)
{
	struct discovery_stats st;
	json_t *o = json_object();

	json_object_set_new(o, "ev", json_string("stats"));
	if (discovery_stats(p->disc, p->service, &st)) {
		json_object_set_new(o, "state", json_string(discovery_state_name(st.state)));
		json_object_set_new(o, "instances", json_integer((json_int_t)st.instances));
		json_object_set_new(o, "skipped", json_integer((json_int_t)st.skipped));
		json_object_set_new(o, "updates", json_integer((json_int_t)st.updates_total));
		json_object_set_new(o, "bad", json_integer((json_int_t)st.bad_instances_total));
		json_object_set_new(o, "held", json_integer((json_int_t)st.held_total));
		json_object_set_new(o, "unroutable", json_integer((json_int_t)st.unroutable_total));
		json_object_set_new(o, "duplicates", json_integer((json_int_t)st.duplicates_total));
		json_object_set_new(o, "lists", json_integer((json_int_t)st.lists_total));
		json_object_set_new(o, "gets", json_integer((json_int_t)st.gets_total));
		json_object_set_new(o, "read_wait_ms", json_integer((json_int_t)st.read_wait_ms));
		json_object_set_new(o, "kept", json_integer((json_int_t)st.kept_total));
		json_object_set_new(o, "errors", json_integer((json_int_t)st.errors_total));
		json_object_set_new(o, "holding", json_boolean(st.holding));
	}
	if (p->zk) {
		struct zk_stats zs;
		json_t *z = json_object();
		zk_stats(p->zk, &zs);
		json_object_set_new(z, "state", json_string(zk_state_name(zs.state)));
		json_object_set_new(z, "sessions", json_integer((json_int_t)zs.sessions_total));
		json_object_set_new(z, "expirations",
				    json_integer((json_int_t)zs.expirations_total));
		json_object_set_new(z, "disconnects",
				    json_integer((json_int_t)zs.disconnects_total));
		json_object_set_new(z, "auth_failures",
				    json_integer((json_int_t)zs.auth_failures_total));
		json_object_set_new(o, "zk", z);
	}
	emit(o);
}

static void stdin_cb(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;
	char buf[256];
	ssize_t n;

	(void)what;
	n = read(fd, buf, sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		event_base_loopbreak(p->base);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] != '\n') {
			if (p->line_len < sizeof(p->line) - 1)
				p->line[p->line_len++] = buf[i];
			continue;
		}
		p->line[p->line_len] = '\0';
		p->line_len = 0;
		if (strcmp(p->line, "stats") == 0)
			print_stats(p);
	}
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopbreak(arg);
}

static void usage(void)
{
	fprintf(stderr, "usage: discovery_probe --zk HOSTS --service NAME --type "
			"curator|serverset --path PATH [--cache-dir DIR] [--session-timeout MS] "
			"[--auth scheme:cred] [--keep-last-known 0|1] [--collapse-guard F] "
			"[--collapse-hold MS] [--coalesce MS] [--resync-jitter MS] [--no-watch-data] "
			"[--tls] [--no-zk]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "zk", required_argument, NULL, 'z' },
		{ "service", required_argument, NULL, 's' },
		{ "type", required_argument, NULL, 't' },
		{ "path", required_argument, NULL, 'p' },
		{ "cache-dir", required_argument, NULL, 'c' },
		{ "session-timeout", required_argument, NULL, 'T' },
		{ "auth", required_argument, NULL, 'a' },
		{ "keep-last-known", required_argument, NULL, 'k' },
		{ "collapse-guard", required_argument, NULL, 'g' },
		{ "collapse-hold", required_argument, NULL, 'h' },
		{ "coalesce", required_argument, NULL, 'C' },
		{ "resync-jitter", required_argument, NULL, 'J' },
		{ "no-watch-data", no_argument, NULL, 'W' },
		{ "tls", no_argument, NULL, 'S' },
		{ "no-zk", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct discovery_hooks hooks = { .on_view = on_view, .on_state = on_state };
	static const struct zk_observer observer = { .on_session = on_session };
	struct config cfg;
	struct service_conf svc;
	struct probe p;
	struct event *ev_in, *ev_term, *ev_int;
	bool no_zk = false;
	int c;

	memset(&cfg, 0, sizeof(cfg));
	memset(&svc, 0, sizeof(svc));
	memset(&p, 0, sizeof(p));
	cfg.zookeeper.session_timeout_ms = 4000;
	svc.discovery.type = DISCOVERY_CURATOR;
	svc.discovery.keep_last_known = true;
	svc.discovery.collapse_guard = 0.5;
	svc.discovery.collapse_hold_ms = 30000;
	/* What zklb did before issue 21 unless asked: these tests time single updates. */
	svc.discovery.coalesce_ms = 0;
	svc.discovery.resync_jitter_ms = 0;
	svc.discovery.watch_data = true;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'z': cfg.zookeeper.hosts = optarg; break;
		case 's': svc.name = optarg; break;
		case 't':
			if (strcmp(optarg, "curator") == 0)
				svc.discovery.type = DISCOVERY_CURATOR;
			else if (strcmp(optarg, "serverset") == 0)
				svc.discovery.type = DISCOVERY_SERVERSET;
			else
				usage();
			break;
		case 'p': svc.discovery.path = optarg; break;
		case 'c': cfg.cache_dir = optarg; break;
		case 'T': cfg.zookeeper.session_timeout_ms = strtoull(optarg, NULL, 10); break;
		case 'a': cfg.zookeeper.auth = optarg; break;
		case 'k': svc.discovery.keep_last_known = atoi(optarg) != 0; break;
		case 'g': svc.discovery.collapse_guard = strtod(optarg, NULL); break;
		case 'h': svc.discovery.collapse_hold_ms = strtoull(optarg, NULL, 10); break;
		case 'C': svc.discovery.coalesce_ms = strtoull(optarg, NULL, 10); break;
		case 'J': svc.discovery.resync_jitter_ms = strtoull(optarg, NULL, 10); break;
		case 'W': svc.discovery.watch_data = false; break;
		case 'S': svc.tls.enabled = true; break;
		case 'n': no_zk = true; break;
		default: usage();
		}
	}
	if (!svc.name || !svc.discovery.path || (!cfg.zookeeper.hosts && !no_zk))
		usage();
	log_setup(getenv("PROBE_DEBUG") ? LOG_DEBUG : LOG_INFO, LOG_FORMAT_TEXT);
	signal(SIGPIPE, SIG_IGN);

	p.base = event_base_new();
	p.service = svc.name;
	if (!no_zk) {
		p.zk = zk_new(p.base, &cfg.zookeeper);
		if (!p.zk)
			return 1;
		zk_observe(p.zk, &observer, &p);
	}
	p.disc = discovery_new(p.base, p.zk, &cfg, &hooks, &p);
	if (discovery_watch(p.disc, &svc) < 0)
		return 1;

	fd_set_nonblock(0);
	ev_in = event_new(p.base, 0, EV_READ | EV_PERSIST, stdin_cb, &p);
	event_add(ev_in, NULL);
	ev_term = evsignal_new(p.base, SIGTERM, signal_cb, p.base);
	ev_int = evsignal_new(p.base, SIGINT, signal_cb, p.base);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);

	event_base_dispatch(p.base);

	discovery_free(p.disc);
	if (p.zk) {
		zk_unobserve(p.zk, &p);
		zk_free(p.zk);
	}
	event_free(ev_in);
	event_free(ev_term);
	event_free(ev_int);
	event_base_free(p.base);
	return 0;
}
