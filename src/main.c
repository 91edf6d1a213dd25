/*
 * zklb — per-host TCP load balancer for ZooKeeper-based platforms.
 *
 *   zklb -c FILE            run in the foreground
 *   zklb check -c FILE      validate FILE
 *   zklb render -c FILE [--entry N]
 *                           print what render: entries would write now
 *   zklb upgrade -c FILE [--timeout DURATION]
 *                           hot-upgrade the running zklb and wait for the outcome
 *   zklb --version | --help
 *
 * Exit codes: 0 normal, 1 configuration (or start-up) error, 2 usage.
 */
#include "config.h"
#include "control.h"
#include "log.h"
#include "sdnotify.h"
#include "upgrade.h"
#include "upgrade_cmd.h"
#include "snapshot.h"

#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: zklb -c FILE            run in the foreground\n"
		"       zklb check -c FILE      validate FILE and exit (1 on error)\n"
		"       zklb render -c FILE [--entry N]\n"
		"                               print what the render: entries (or entry N,\n"
		"                               from 0) would write now, from one look at\n"
		"                               ZooKeeper, and exit (1: no answer, fewer than\n"
		"                               min_instances)\n"
		"       zklb upgrade -c FILE [--timeout DURATION]\n"
		"                               hot-upgrade the zklb that FILE's admin API\n"
		"                               reaches (as SIGUSR2) and wait for the outcome:\n"
		"                               0 a new process serves, 1 it failed (the old\n"
		"                               one serves on) or no outcome (default 40s)\n"
		"       zklb --version | --help\n"
		"\n"
		"Signals: SIGHUP reloads FILE (an invalid file keeps the running configuration);\n"
		"SIGTERM/SIGINT drain (stop accepting, let connections finish up to\n"
		"drain_timeout) and exit 0. SIGUSR2 starts a hot upgrade.\n"
		"Exit codes: 0 normal, 1 configuration error, 2 usage.\n");
}

/* libevent's own warnings go through our log, one line each. */
static void on_libevent_log(int severity, const char *msg)
{
	enum log_level lv = severity >= EVENT_LOG_ERR ? LOG_ERROR :
			    severity == EVENT_LOG_WARN ? LOG_WARN : LOG_DEBUG;
	log_msg(lv, "libevent: %s", msg);
}

static struct config *load(const char *path)
{
	struct config_errors errs = { 0 };
	struct config *cfg = config_load_file(path, &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	config_errors_free(&errs);
	return cfg;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ "entry", required_argument, NULL, 'e' },
		{ "timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	bool check = false, render = false, upgrade = false;
	long entry = -1;
	uint64_t timeout_ms = UPGRADE_CMD_TIMEOUT_MS;
	int argi = 1;

	if (argc > 1 && strcmp(argv[1], "check") == 0) {
		check = true;
		argi = 2;
	} else if (argc > 1 && strcmp(argv[1], "render") == 0) {
		render = true;
		argi = 2;
	} else if (argc > 1 && strcmp(argv[1], "upgrade") == 0) {
		upgrade = true;
		argi = 2;
	}
	optind = argi;
	int ch;
	while ((ch = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'V':
			printf("zklb %s\n", ZKLB_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'e': {
			char *end;
			entry = strtol(optarg, &end, 10);
			if (!render || *end || end == optarg || entry < 0) {
				usage(stderr);
				return 2;
			}
			break;
		}
		case 't':
			if (!upgrade || !duration_parse(optarg, &timeout_ms) || timeout_ms == 0) {
				usage(stderr);
				return 2;
			}
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}

	struct config *cfg = load(path);
	if (!cfg)
		return 1;
	struct config_errors warns = { 0 };
	config_warnings(cfg, &warns);
	for (size_t i = 0; i < warns.n; i++)
		fprintf(stderr, "%s\n", warns.msgs[i]);
	config_errors_free(&warns);
	if (check) {
		printf("%s: ok (%zu services, %zu announce, %zu sync, %zu render)\n", path,
		       cfg->n_services, cfg->n_announce, cfg->n_sync, cfg->n_render);
		config_free(cfg);
		return 0;
	}
	if (upgrade) {
		int rc = upgrade_cmd_run(cfg, timeout_ms, stdout, stderr);
		config_free(cfg);
		return rc;
	}
	if (render) {
		log_setup(LOG_WARN, cfg->log_format);
		int rc = snapshot_render(cfg, entry, cfg->zookeeper.session_timeout_ms, stdout, stderr);
		config_free(cfg);
		return rc;
	}

	signal(SIGPIPE, SIG_IGN);
	event_set_log_callback(on_libevent_log);
	log_setup(cfg->log_level, cfg->log_format);
	/* A hot upgrade (SIGUSR2 in the running zklb) started us with its sockets. */
	struct upgrade_inherit *inherit = upgrade_inherit_open();
	struct control *c = control_new(cfg, path, inherit);
	if (c && inherit) {
		upgrade_inherit_ready(inherit);
		log_info("upgrade: pid %d serves; the old process drains", (int)getpid());
	}
	upgrade_inherit_free(inherit);
	if (!c)
		return 1;
	/* systemd (Type=notify): serving now; after an upgrade, this is the main process. */
	char state[64];
	snprintf(state, sizeof(state), "MAINPID=%d\nREADY=1", (int)getpid());
	sdnotify_send(state);
	int rc = control_run(c);
	control_free(c);
	log_info("exit %d", rc);
	return rc;
}
