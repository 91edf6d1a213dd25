/*
 * instance — one backend instance as ZooKeeper describes it, and the pure
 * decisions made on sets of them.
 *
 * Decoding: Curator x-discovery ServiceInstance JSON and Finagle ServerSet
 * member JSON become a struct instance, or a reason why the node is skipped.
 * The Curator reader is as lenient as Curator's own (Jackson): unknown fields
 * are ignored, `payload` may be any JSON (including Jackson's "@class"),
 * `uriSpec` is not looked at, a missing or null `enabled` means true, a
 * missing or null `serviceType` means DYNAMIC, numbers may arrive as
 * integral reals or decimal strings, and trailing bytes after the document
 * are ignored.
 *
 * Sets ("views") are arrays sorted by id (instance_sort). On them: a diff
 * (added/removed/changed/kept) and the collapse guard, which decides whether
 * a new view applies now, is held, or is refused because it is empty.
 *
 * Pure code: no I/O, no clock (the guard takes `now`), no globals. Any thread.
 */
#ifndef ZKLB_INSTANCE_H
#define ZKLB_INSTANCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INSTANCE_ID_MAX 256		/* bytes incl. NUL; longer ids are skipped */
#define INSTANCE_HOST_MAX 256		/* bytes incl. NUL (a DNS name is <= 253) */
#define INSTANCE_MAX_DATA (1024 * 1024)	/* znode bytes above this are skipped */
#define INSTANCE_REASON_MAX 128		/* suggested size of a reason buffer */
#define INSTANCE_PAYLOAD_MAX 256	/* bytes of flattened payload carried (see below) */

/* Curator's ServiceType. */
enum instance_service_type {
	INSTANCE_DYNAMIC = 0,
	INSTANCE_STATIC,
	INSTANCE_PERMANENT,
	INSTANCE_DYNAMIC_SEQUENTIAL,
};

struct instance {
	char id[INSTANCE_ID_MAX];	/* identity: Curator child name (DYNAMIC_SEQUENTIAL: "id"), ServerSet "host:port" */
	char host[INSTANCE_HOST_MAX];	/* address as announced: IP literal (no brackets) or DNS name */
	uint16_t port;			/* plain port; 0 = none (a Curator TLS-only instance) */
	uint16_t ssl_port;		/* Curator sslPort; 0 = none */
	uint32_t weight;		/* relative weight, 1 unless configured (static backends) */
	bool enabled;			/* Curator `enabled`; ServerSet status == ALIVE */
	enum instance_service_type service_type;	/* Curator only; DYNAMIC for ServerSet */
	int64_t registered_at_ms;	/* Curator registrationTimeUTC, wall ms; 0 = unknown */
	/*
	 * The payload's top-level scalar fields (Curator payload, ServerSet
	 * metadata and shard) as "key\0value\0" pairs, for render: templates;
	 * numbers and booleans as JSON writes them. Fields that do not fit in
	 * INSTANCE_PAYLOAD_MAX, nested values and Jackson's "@class" are not
	 * carried. Bytes are as ZooKeeper gave them: whoever writes them out
	 * checks them first.
	 */
	char payload[INSTANCE_PAYLOAD_MAX];
	uint16_t payload_len;		/* bytes of payload in use */
};

/*
 * Walk i's payload pairs: start with *off = 0; each call gives the next key
 * and value and returns true, false after the last.
 */
bool instance_payload_next(const struct instance *i, size_t *off, const char **key,
			   const char **value);

enum instance_decode {
	INSTANCE_OK = 0,		/* routable */
	INSTANCE_DISABLED,		/* well-formed but not routable (enabled:false, status != ALIVE) */
	INSTANCE_BAD,			/* malformed: skip it, log the reason once and count it */
};

/*
 * Decode the data of a Curator instance znode. `name` is the child's name,
 * which is the instance id (Curator names the node after it); when NULL or
 * empty, and for a DYNAMIC_SEQUENTIAL instance (whose node name is the id
 * plus ZooKeeper's sequence counter), the JSON "id" is used, as Curator's
 * queryForInstances and ServiceCache report it. On INSTANCE_OK and INSTANCE_DISABLED *out is
 * filled; on INSTANCE_DISABLED and INSTANCE_BAD `reason` says why
 * (NUL-terminated, truncated to reason_len). data need not be NUL-terminated.
 */
enum instance_decode instance_decode_curator(const char *name, const char *data, size_t len,
					     struct instance *out, char *reason, size_t reason_len);

/* Same, from an already parsed JSON value (cache files use this). */
enum instance_decode instance_from_curator_json(const char *name, const json_t *root,
						struct instance *out, char *reason,
						size_t reason_len);

/*
 * Decode a Finagle ServerSet member (`member_*` child):
 *   {"serviceEndpoint":{"host":"10.0.0.5","port":9001},
 *    "additionalEndpoints":{...},"status":"ALIVE","shard":0}
 * Only serviceEndpoint is used. The id is "host:port" ("[v6]:port").
 * A status other than ALIVE gives INSTANCE_DISABLED; a missing one is BAD.
 */
enum instance_decode instance_decode_serverset(const char *data, size_t len,
					       struct instance *out, char *reason,
					       size_t reason_len);

/*
 * The Curator ServiceInstance JSON of i (what Curator 5 writes: no
 * "enabled" field when enabled). New reference; `name` is the service name.
 */
json_t *instance_to_curator_json(const struct instance *i, const char *name);

/*
 * An announce payload as Curator's JsonInstanceSerializer writes a payload
 * of the Java type Jackson reads that JSON as (ServiceInstance's payload is
 * @JsonTypeInfo(use = CLASS): Jackson writes a type id unless the type is
 * one it infers from the JSON itself):
 *   mapping  {"@class":C, ...keys}, C = payload_class, else the mapping's
 *            own "@class" (kept, moved first), else java.util.LinkedHashMap
 *   list     ["java.util.ArrayList", [...]]
 *   integer  bare within int32 (java.lang.Integer), else ["java.lang.Long", n]
 *   string, real, true/false   bare (String, Double, Boolean)
 *   NULL or null               null
 * Nested values are written as they are (Jackson types only the payload
 * itself). New reference. payload_class applies to a mapping only.
 */
json_t *instance_curator_payload(const json_t *payload, const char *payload_class);

/*
 * A Java binary class name as Jackson's "@class" takes it: dot-separated
 * identifiers of A-Z a-z 0-9 _ $ (not starting with a digit), at most 255
 * bytes. NULL is not one.
 */
bool instance_java_class_ok(const char *name);

/* "host:port" or "[v6]:port" into buf (INSTANCE_HOST_MAX + 8 is enough). */
void instance_endpoint(const char *host, uint16_t port, char *buf, size_t len);

/*
 * Two nodes may describe the same id (Curator re-creates a DYNAMIC_SEQUENTIAL
 * node after a reconnect while the old one lives on; two ServerSet members
 * may announce one endpoint). Discovery keeps one per id, the first in this
 * order: by id (strcmp), then the newest registrationTimeUTC, then the
 * greatest node name (of sequential nodes, the one created last). a_node and
 * b_node are the znode names the instances were read from. qsort-style result.
 */
int instance_cmp_nodes(const struct instance *a, const char *a_node, const struct instance *b,
		       const char *b_node);

/* Sort by id (strcmp), the canonical order of a view. */
void instance_sort(struct instance *v, size_t n);

/* The index of `id` in a sorted view, or -1. */
long instance_find(const struct instance *v, size_t n, const char *id);

/* True when a and b are the same to zklb: id, host, ports, weight, enabled, payload. */
bool instance_same(const struct instance *a, const struct instance *b);

enum instance_change {
	INSTANCE_ADDED = 0,		/* id only in the new view */
	INSTANCE_REMOVED,		/* id only in the old view */
	INSTANCE_CHANGED,		/* same id, different endpoint/weight */
	INSTANCE_KEPT,			/* same id, same everything routing cares about */
};

struct instance_diff {
	size_t added;			/* ids only in the new view */
	size_t removed;			/* ids only in the old view */
	size_t changed;			/* same id, different endpoint/weight/enabled */
	size_t kept;			/* same id, same routing fields */
};

/*
 * Compare two sorted views. `each` (may be NULL) is called once per id in id
 * order; for ADDED old is NULL, for REMOVED new is NULL.
 */
void instance_diff(const struct instance *old_v, size_t n_old,
		   const struct instance *new_v, size_t n_new, struct instance_diff *out,
		   void (*each)(void *arg, enum instance_change ch, const struct instance *old_i,
				const struct instance *new_i),
		   void *arg);

/* The guard's answer for one candidate view. */
enum instance_verdict {
	INSTANCE_APPLY = 0,		/* deliver the new view now */
	INSTANCE_KEEP,			/* empty while keep_last_known: keep serving the old one */
	INSTANCE_HOLD,			/* a collapse: keep the old view until the hold expires */
};

struct instance_guard_params {
	bool keep_last_known;		/* an empty view never applies over a non-empty one */
	double collapse_guard;		/* 0..1: a net loss of more than this fraction holds; >= 1 disables */
	uint64_t collapse_hold_ms;	/* how long a collapse must persist before it applies */
};

/*
 * Stateless verdict. n_ref: size of the reference view (the one served, or
 * see instance_guard_step); n_new: size of the candidate. A collapse is a net
 * shrink of more than collapse_guard of n_ref (instances replaced by others
 * in the same change are not a collapse). n_ref == 0 always applies.
 */
enum instance_verdict instance_guard_verdict(const struct instance_guard_params *p,
					     size_t n_ref, size_t n_new);

enum instance_hold_state {
	INSTANCE_HOLD_IDLE = 0,		/* no collapse pending */
	INSTANCE_HOLD_HOLDING,		/* a collapse is held until hold_until_ms */
};

struct instance_guard {
	enum instance_hold_state state;	/* changed only by instance_guard_step */
	uint64_t hold_until_ms;		/* HOLDING: monotonic ms when the held view may apply */
	uint64_t holds_total;		/* holds started, for metrics */
	size_t peak;			/* largest view applied recently (see instance_guard_step) */
	uint64_t peak_until_ms;		/* monotonic ms when that view was last the applied one */
};

/*
 * The guard's one transition function. Call it with every candidate view
 * (and again at hold_until_ms with the latest candidate); n_applied is the
 * size of the view being served (0 when nothing was ever applied).
 *
 * "At once" means within collapse_hold: the reference is the largest view
 * applied during the last collapse_hold ms, not only the current one, so a
 * collapse that arrives as a series of small removals (registrar sessions
 * expiring one after another) is held like one that arrives in one change.
 * A held collapse that applies becomes the new reference. Returns:
 *   APPLY  deliver the candidate (a held collapse that persisted to
 *          hold_until_ms applies, as does any non-collapse at once);
 *   KEEP   do not deliver; no timer needed;
 *   HOLD   do not deliver; call again at g->hold_until_ms. The deadline is
 *          set when the hold starts and not pushed back by later candidates.
 */
enum instance_verdict instance_guard_step(struct instance_guard *g,
					  const struct instance_guard_params *p,
					  size_t n_applied, size_t n_new, uint64_t now);

const char *instance_verdict_name(enum instance_verdict v);
const char *instance_service_type_name(enum instance_service_type t);

#endif
