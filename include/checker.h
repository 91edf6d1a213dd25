/*
 * checker — schedules the active health checks of services' members: one
 * running check (check.h) per member that has an address, for every service
 * whose health: section has a check:. Each result goes to the member's
 * service (service_check_result()), which owns what it means.
 *
 * The control thread owns one checker and only wires it: after a reload,
 * a new view or a resolved host name it calls checker_sync() for the
 * service, and checker_forget() when the service goes away.
 *
 * Thread: the control thread (the base's); no locks.
 */
#ifndef ZKLB_CHECKER_H
#define ZKLB_CHECKER_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "service.h"

struct service_conf;

struct checker;

/* A checker whose checks run on base (the control thread's). */
struct checker *checker_new(struct event_base *base);

/*
 * Make svc's checks match its members and conf's check: one per member with
 * an address; none when conf has no check. Checks of members that stay keep
 * running (and their schedule), unless `restart`: the settings changed
 * (reload), so every check of svc starts over. The health state lives in
 * the backend and is kept either way.
 */
void checker_sync(struct checker *ck, struct service *svc, const struct service_conf *conf,
		  bool restart);

/* Stop every check of svc (the service goes away). */
void checker_forget(struct checker *ck, struct service *svc);

/* How many checks of svc run (for the tests). */
size_t checker_count(const struct checker *ck, const struct service *svc);

/* Stop everything and free. NULL is a no-op. */
void checker_free(struct checker *ck);

#endif
