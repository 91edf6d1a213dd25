/*
 * announce — register the services running on this host in ZooKeeper as
 * Curator x-discovery instances, guarded by a local health check (Nerve's
 * job).
 *
 * For each `announce:` entry an active check (check.h) probes the service
 * (127.0.0.1:port when address is auto, else address:port). After `rise`
 * consecutive passes the entry is up and an EPHEMERAL znode
 * base_path/service/<id> is created (missing parents as CONTAINERs, as
 * Curator does) holding what Curator 5 writes for a ServiceInstance:
 *   {"name":"web","id":"<id>","address":"10.0.0.5","port":9001,
 *    "sslPort":null,"payload":<payload or null>,
 *    "registrationTimeUTC":<wall ms>,"serviceType":"DYNAMIC","uriSpec":null}
 * (no "enabled" field), the payload in Curator's typed form
 * (instance_curator_payload(): a mapping gets "@class", payload_class or
 * java.util.LinkedHashMap) so that Curator's consumers deserialize it. After `fall` consecutive failures the node is
 * deleted; after `rise` passes it is created again with the same id and a
 * new registrationTimeUTC. The id is a random UUID v4 made once per entry
 * per process. A new session (the old one expired: its ephemerals are gone)
 * re-creates every node whose entry is up. `address: auto` is the first
 * IPv4 address of an UP, non-loopback interface (127.0.0.1 with a warning
 * when there is none).
 *
 * A node this process finds already existing at its path (a create answered
 * "exists" after a lost reply) is kept when our session owns it, else
 * replaced, as Curator does. A registered node is watched: deleted by
 * another client, it is created again at once.
 *
 * Per entry, two lifecycles:
 *   health (health.h's pure state machine, active check only, starting CHECKING):
 *     CHECKING (down) --rise passes--> HEALTHY (up) --fall failures--> CHECKING
 *   node (enum announce_node, announce_set_node() is the one transition):
 *     ABSENT --create sent--> CREATING --ok--> PRESENT --delete sent--> DELETING --ok--> ABSENT
 *     CREATING --failed--> ABSENT      DELETING --failed--> PRESENT
 *     PRESENT --session expired--> ABSENT
 * The node follows the wish "up, not withdrawn"; requests go out only while
 * the session is connected, at most one write per entry at a time; connection
 * trouble waits for the session to come back, other errors retry with
 * backoff (1 s doubling to 30 s).
 *
 * SIGTERM: announce_withdraw() stops the checks and deletes every node, so
 * that callers stop sending before the proxy stops serving.
 *
 * Thread: the control thread (the zk's event base).
 */
#ifndef ZKLB_ANNOUNCE_H
#define ZKLB_ANNOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"		/* enum announce_acl */
#include "zk_result.h"
#include "health.h"

struct announce_conf;
struct check_conf;

struct event_base;
struct ifaddrs;
struct zk;
struct announce;

#define ANNOUNCE_UUID_LEN 36		/* "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx" */

enum announce_node {
	ANNOUNCE_ABSENT = 0,		/* no node of ours at the path (as far as we know) */
	ANNOUNCE_CREATING,		/* a create (or its existing-node check) is in flight */
	ANNOUNCE_PRESENT,		/* our ephemeral node exists */
	ANNOUNCE_DELETING,		/* a delete is in flight */
};

/* One entry, for the admin API and /metrics. Strings are borrowed until the next apply. */
struct announce_stats {
	const char *service;		/* announce.service */
	const char *id;			/* the instance id (UUID) */
	const char *path;		/* base_path/service/id */
	const char *address;		/* as announced (auto resolved) */
	uint16_t port;
	bool healthy;			/* the check says up */
	enum announce_node node;	/* where the znode stands */
	uint64_t registrations_total;	/* creates that succeeded (zklb_announce_registrations_total) */
	uint64_t deregistrations_total;	/* deletes that succeeded (zklb_announce_deregistrations_total) */
	uint64_t failures_total;	/* creates/deletes that failed (zklb_announce_failures_total) */
	uint64_t check_failures_total;	/* failed check attempts (zklb_announce_check_failures_total) */
	uint64_t restored_total;	/* rewrites by another client undone (zklb_announce_restored_total) */
	int64_t registered_at_ms;	/* wall ms of the current/last registration; 0 = never */
};

/* zk and base must outlive the announce. Nothing is announced until announce_apply(). */
struct announce *announce_new(struct event_base *base, struct zk *zk);

/*
 * Make the entries v[0..n) (read during the call, not kept) the announced
 * set. Entries are matched to the running ones by (service, base_path,
 * port): a match keeps its id, health and node; a changed check restarts
 * the check; a changed address, ssl_port or payload rewrites the node
 * (deleted and created again). Running entries without a match are
 * deregistered and dropped. Ignored once withdrawing.
 */
void announce_apply(struct announce *a, const struct announce_conf *v, size_t n);

/*
 * SIGTERM: stop every check and delete every node. Returns true when
 * nothing is (or can be) left to delete right now — done is not called
 * then; otherwise false, and done(arg) is called once, from an event
 * callback, when the last delete has finished (successfully or not). The
 * caller bounds the wait (the session may be down).
 */
bool announce_withdraw(struct announce *a, void (*done)(void *arg), void *arg);

/* Deletes nothing (the session's close removes the ephemerals); frees. NULL is a no-op. */
void announce_free(struct announce *a);

size_t announce_count(const struct announce *a);
/* Entry i (0 <= i < announce_count) as it stands now. */
void announce_stats(const struct announce *a, size_t i, struct announce_stats *out);

/*
 * Hot upgrade, before the first announce_apply(): the entry for service:port
 * takes `id` (the running process's) instead of a new one, so it finds the
 * node its session already owns rather than creating another.
 */
void announce_adopt(struct announce *a, const char *service, uint16_t port,
		    const char id[ANNOUNCE_UUID_LEN + 1]);

const char *announce_node_name(enum announce_node s);

/* ---- pure pieces, exported for the unit tests ---- */

/* Format 16 random bytes as a UUID v4 (version and variant bits set), lower case, NUL-terminated. */
void announce_uuid_format(const uint8_t raw[16], char out[ANNOUNCE_UUID_LEN + 1]);

/*
 * The rise/fall parameters of health.h's state machine for an entry's check:
 * active check only (no passive ejection); rise and fall of 0 count as 1.
 * An entry starts with health_init_checking() and is up while
 * health_routable().
 */
void announce_health_params(struct health_params *p, const struct check_conf *c);

/*
 * The ACLs an entry gives what it creates: open and creator as configured;
 * auto is creator when the session has credentials, else open.
 */
enum zk_acl announce_acl_for(enum announce_acl conf, bool have_auth);

/* Whether the node lifecycle allows from -> to. */
bool announce_node_allowed(enum announce_node from, enum announce_node to);

/*
 * The Curator 5 ServiceInstance JSON (new reference): payload in Curator's
 * typed form (instance_curator_payload(); NULL = null), payload_class the
 * "@class" of a mapping payload (NULL = java.util.LinkedHashMap); ssl_port
 * 0 = null.
 */
json_t *announce_curator_json(const char *service, const char *id, const char *address,
			      uint16_t port, uint16_t ssl_port, const json_t *payload,
			      const char *payload_class, int64_t registered_at_ms);

/*
 * `address: auto`: the first IPv4 address of an interface that is UP and
 * not LOOPBACK, in the order of list (getifaddrs). false when there is none.
 */
bool announce_pick_address(const struct ifaddrs *list, char *out, size_t len);

#endif
