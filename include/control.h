/*
 * control — the control thread: loads and reloads the configuration, owns
 * the services and publishes their snapshots, the listening sockets until
 * they are handed to workers, discovery, the checker (active health checks),
 * the admin API, signals and the drain on exit. It wires these together;
 * the policies live in their modules (health: service.c, checks: checker.c).
 *
 * Everything here runs on the control thread's event base; workers are told
 * about changes only through worker_post().
 */
#ifndef ZKLB_CONTROL_H
#define ZKLB_CONTROL_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "admin_stats.h"
#include "backend.h"
#include "backend_set.h"
#include "service.h"
#include "worker.h"

struct accesslog;
struct config;
struct config_ref;

struct admin;
struct upgrade;
struct upgrade_inherit;
struct checker;
struct announce;
struct discovery;
struct overlay;
struct sync;
struct trunk_listener;
struct zk;

/* One configured listen address, as the control thread remembers it. */
struct listen_entry {
	struct listen_entry *next;
	char *key;				/* owned; listen string as configured */
	char *unix_path;			/* owned; unix: sockets are unlinked at removal */
	struct service *svc;			/* ref */
	int *fds;				/* owned dups of the workers' sockets, for a hot
						   upgrade; NULL once the workers stopped accepting */
};

struct control {
	struct event_base *base;		/* owned */
	char *config_path;			/* owned */
	struct config_ref *cfg;			/* ref; the running configuration */
	struct worker **workers;		/* owned */
	unsigned n_workers;
	struct service **services;		/* refs; index i belongs to cfg->services[i] */
	size_t n_services;
	struct listen_entry *listens;		/* owned list */
	struct admin *admin;			/* owned; NULL when disabled */
	struct zk *zk;				/* owned; NULL without a zookeeper: section */
	struct discovery *disc;			/* owned */
	struct sentinel *sentinel;		/* owned; services of discovery.type sentinel */
	struct resolver *resolver;		/* owned; host names of backends */
	struct checker *checker;		/* owned; active checks of all services */
	struct renderer *renderer;		/* owned; the render: entries */
	struct announce *announce;		/* owned; NULL without a zookeeper: section */
	struct sync *sync;			/* owned; NULL without a zookeeper: section */
	struct overlay *overlay;		/* owned; NULL without zookeeper.config_path */
	struct trunk_listener *trunk;		/* owned; NULL without a trunk: section */
	struct trunk_client *trunk_client;	/* owned; the calling side, NULL without a trunk: section */
	struct config *file_cfg;		/* owned; with an overlay: the file's own config */
	struct event *withdraw_timer;		/* owned; bounds SIGTERM's wait for deregistration */
	bool withdrawing;			/* SIGTERM: deregistering; the drain starts after */
	struct event *sig_hup;			/* owned */
	struct event *sig_term;			/* owned */
	struct event *sig_int;			/* owned */
	struct event *tick;			/* owned; 100ms housekeeping */
	struct accesslog *alog;			/* owned; NULL without log.access */
	struct event *sig_usr1;			/* owned; reopens the access log */
	struct event *sig_usr2;			/* owned; starts a hot upgrade */
	char *binary;				/* owned; what SIGUSR2 starts: this executable's path */
	struct upgrade *upgrade;		/* owned; a hot upgrade in flight, or NULL */
	bool upgrade_failed;			/* `upgrade` is over and failed: freed at the tick */
	bool upgraded;				/* a new process serves; this one drains and exits */
	uint64_t upgrade_failures;		/* hot upgrades that failed (this process serves on) */
	char upgrade_last_failure[512];		/* why the last one failed; "" before any */
	struct upgrade_inherit *inherit;	/* ref, during control_new only: a hot upgrade's offer */
	bool draining;
	uint64_t drain_deadline_ms;
	uint64_t started_ms;			/* monotonic */
	uint64_t started_wall_ms;		/* epoch */
	uint64_t reloads;			/* successful reloads */
	uint64_t reload_failures;		/* rejected reloads */
	struct service_cap cap;			/* max_connections, all services; workers read it */
	struct admin_stats admin_stats;		/* the admin API's counters (admin.c writes them) */
	struct relay_budget relay_budget;	/* max_buffer_memory; every worker's relays use it */
	struct krelay *krelay;			/* owned; relay: kernel|auto, NULL until loaded or refused */
	bool krelay_tried;			/* loading was tried (once per process) */
	int exit_status;			/* control_run's: 1 after a fatal error found while running */
};

/*
 * Build the runtime for cfg (ownership of cfg passes to the control): create
 * the workers and listeners. Returns NULL after logging why (bind failure…).
 * inherit (may be NULL): a hot upgrade's offer; its listening sockets and
 * ZooKeeper session are taken instead of opening new ones.
 */
struct control *control_new(struct config *cfg, const char *config_path,
			    struct upgrade_inherit *inherit);

/* Run until drained; returns the process exit code. */
int control_run(struct control *c);

void control_free(struct control *c);

/*
 * Start a hot upgrade (what SIGUSR2 does), asked for by `who` (for the log).
 * Returns 0 when the new process is starting (its outcome comes later:
 * c->upgraded, or c->upgrade_failures grows); -EBUSY when draining or an
 * upgrade is under way already; another -errno when it could not start
 * (counted as a failure). why[len] says why in either case. Control thread.
 */
int control_upgrade(struct control *c, const char *who, char *why, size_t len);

/* The service named `name` in the running configuration, or NULL. */
struct service *control_service(const struct control *c, const char *name);

#endif
