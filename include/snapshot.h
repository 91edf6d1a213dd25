/*
 * snapshot — `zklb render`: one look at the instances of the services that
 * render: entries name, rendered and printed, then exit (confd's one-time
 * mode). Static services are read from the file; discovered ones from
 * ZooKeeper itself (never from cache_dir), waiting until each is in sync.
 * Health checks do not run, so "routable" means every instance discovery
 * would route to: what the daemon writes when all instances pass.
 */
#ifndef ZKLB_SNAPSHOT_H
#define ZKLB_SNAPSHOT_H

#include <stdint.h>
#include <stdio.h>

struct config;

/*
 * Print entry `entry` of cfg->render (-1: every entry, each after a
 * "==> FILE <==" line when there is more than one) to out. Waits at most
 * timeout_ms for ZooKeeper. Returns the exit code: 0, or 1 (with the reason
 * on err) when ZooKeeper did not answer in time, an entry number does not
 * exist, or an entry has fewer than min_instances instances (the daemon
 * would keep the file as it is).
 */
int snapshot_render(const struct config *cfg, long entry, uint64_t timeout_ms, FILE *out,
		    FILE *err);

#endif
