/*
 * config — the validated configuration.
 *
 * YAML (libyaml) is turned into a jansson tree that remembers where every node
 * came from (line and column), and one validator turns that tree into the
 * structs below. JSON pushed through ZooKeeper (zookeeper.config_path) goes
 * through the same validator, so both sources accept and reject the same things.
 *
 * A struct config is immutable once built; the control thread swaps whole
 * configs on reload. Strings are owned by the config and freed by config_free().
 *
 * Defaults, ranges and which keys a reload applies live in one place: the key
 * tables of src/config/config_keys.c (one key per line). The comments below
 * give units and ownership only; they do not restate defaults.
 */
#ifndef ZKLB_CONFIG_H
#define ZKLB_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config_errors.h"	/* every load reports into one; callers read it */
#include "log.h"
#include "netpolicy.h"	/* struct net_list: the overlay policy's networks */

struct tls_ctx;

/* A relay remembers every backend it tried, so retries are bounded. */
#define CONFIG_MAX_RETRIES 15

enum balance_kind {
	BALANCE_LEAST_CONN = 0,
	BALANCE_P2C,
	BALANCE_ROUND_ROBIN,
	BALANCE_RANDOM,
};

enum discovery_kind {
	DISCOVERY_STATIC = 0,
	DISCOVERY_CURATOR,
	DISCOVERY_SERVERSET,
	DISCOVERY_SENTINEL,
};

enum discovery_hostnames {
	DISCOVERY_HOSTNAMES_AUTO = 0,	/* by type: ServerSets and the file yes, Curator no */
	DISCOVERY_HOSTNAMES_YES,
	DISCOVERY_HOSTNAMES_NO,
};

enum check_kind {
	CHECK_NONE = 0,		/* no active check configured */
	CHECK_TCP,
	CHECK_SEND_EXPECT,
	CHECK_HTTP,
	CHECK_REDIS_ROLE,
	CHECK_MYSQL_PRIMARY,
};

/* redis_role check: which ROLE passes. */
enum redis_role_want {
	REDIS_ROLE_MASTER = 0,
	REDIS_ROLE_REPLICA,
};

enum reuse_kind {
	REUSE_NONE = 0,
	REUSE_HTTP1,
	REUSE_REDIS,
	REUSE_MEMCACHED,
};

enum sync_on_delete {
	SYNC_DELETE_KEEP = 0,
	SYNC_DELETE_REMOVE,
};

struct check_conf {
	enum check_kind type;
	uint64_t interval_ms;		/* between checks */
	uint64_t timeout_ms;		/* of one check */
	uint32_t rise;			/* passes in a row to count as up */
	uint32_t fall;			/* failures in a row to count as down */
	char *send;			/* owned; send_expect: bytes to send (may be NULL) */
	size_t send_len;		/* bytes in send */
	char *expect;			/* owned; send_expect: expected reply prefix */
	size_t expect_len;		/* bytes in expect */
	char *path;			/* owned; http: request path */
	enum redis_role_want role;	/* redis_role: the role that passes */
	char *password_file;		/* owned; redis_role, mysql_primary: password file, or NULL */
	char *user;			/* owned; mysql_primary: the user logged in as */
};

struct health_conf {
	uint32_t failures_to_eject;	/* consecutive failures before an ejection */
	uint64_t base_ejection_ms;	/* first ejection; doubles on each repeat */
	uint64_t max_ejection_ms;	/* cap of the doubling */
	uint32_t max_ejected_percent;	/* percent of the instances */
	uint32_t panic_threshold;	/* percent healthy below which panic mode starts */
	struct check_conf check;	/* type CHECK_NONE when absent */
};

enum locality_prefer {
	LOCALITY_NONE = 0,		/* zones are ignored */
	LOCALITY_ZONE,			/* stay in the local zone while it is healthy enough */
};

struct locality_conf {
	enum locality_prefer prefer;
	char *zone_key;			/* owned; payload key holding an instance's zone */
	uint32_t min_healthy_percent;	/* 0..100: below, traffic spills out of the zone */
};

struct pool_conf {
	uint32_t prewarm;		/* idle connections kept open per backend */
	enum reuse_kind reuse;		/* which framing may hand a connection back */
	uint32_t max_idle;		/* idle connections per backend, at most */
	uint64_t idle_timeout_ms;	/* an idle pooled connection closes after this */
};

/* How a service reaches its instances (the zklb-to-zklb trunk, trunk_client.h). */
enum service_via {
	VIA_DIRECT = 0,			/* a TCP connection of its own per client connection */
	VIA_TRUNK,			/* a stream of the instance host's trunk; no trunk: not routable */
	VIA_AUTO,			/* the trunk when the instance advertises one, else direct */
};

enum proxy_protocol {
	PROXY_PROTOCOL_NONE = 0,
	PROXY_PROTOCOL_V2,		/* a PROXY v2 header first on each upstream connection */
};

/* relay: which relay copies a service's bytes. */
enum relay_mode {
	RELAY_MODE_UNSET = 0,		/* a service without relay: takes the top-level one */
	RELAY_MODE_USER,		/* the worker reads and writes (splice for bulk) */
	RELAY_MODE_KERNEL,		/* a BPF sockmap relays; user space where refused */
	RELAY_MODE_AUTO,		/* kernel where the service allows it, else user */
};

struct tls_conf {
	bool enabled;			/* the tls: section is present and not enabled: false */
	char *ca;			/* owned; may be NULL */
	char *cert;			/* owned; may be NULL */
	char *key;			/* owned; may be NULL */
	bool verify;			/* check the server's certificate */
	char *server_name;		/* owned; may be NULL */
	char *min_version;		/* owned; "1.2" or "1.3" */
	char *ciphers;			/* owned; OpenSSL cipher list (TLS <= 1.2); may be NULL */
	bool session_reuse;		/* resume sessions per backend */
	struct tls_ctx *ctx;		/* owned ref: loaded from the files when enabled, else NULL */
};

struct static_backend {
	char *address;			/* owned; "host:port" as written */
	char host[256];
	uint16_t port;
	uint32_t weight;		/* 1..256 (see fn_backends) */
};

struct discovery_conf {
	enum discovery_kind type;
	char *path;			/* owned; curator/serverset znode path */
	bool keep_last_known;		/* an empty set never empties the pool */
	double collapse_guard;		/* 0..1: share of instances that may go at once; 1 disables */
	uint64_t collapse_hold_ms;	/* how long a collapse must hold before it applies */
	uint64_t coalesce_ms;		/* after a children event, wait up to this before listing; 0 = at once */
	uint64_t resync_jitter_ms;	/* after a new session, first read within a random delay up to this */
	bool watch_data;		/* a data watch per instance; false = children watch only */
	struct static_backend *backends;	/* owned; static only */
	size_t n_backends;		/* entries in backends */
	enum discovery_hostnames hostnames;	/* allow_hostnames as written */
	bool allow_hostnames;		/* resolved for the type: instances' host names are looked up */
	uint32_t max_lookups;		/* host name lookups in flight for the service, at most */
	uint64_t lookup_timeout_ms;	/* one lookup fails after this (and is retried) */
	struct static_backend *sentinels;	/* owned; sentinel only: asked in this order */
	size_t n_sentinels;		/* entries in sentinels */
	char *master_name;		/* owned; sentinel only: the name the sentinels monitor */
	uint64_t close_grace_ms;	/* sentinel: connections to a demoted primary close after this */
	uint64_t query_timeout_ms;	/* sentinel: one query (connect and answer) */
	char *password_file;		/* owned; sentinel: AUTH password of the Redis servers, or NULL */
};

/* allowed_networks / denied_networks as written (or defaulted). */
struct networks_conf {
	bool set;			/* written here (or a default applies); else inherit */
	struct net_list list;		/* the prefixes, `reserved` expanded */
};

/*
 * queue_timeout as written: how long a client beyond max_connections waits
 * for a slot (HAProxy's `timeout queue`, which follows `timeout connect`
 * when unset; so does zklb's default).
 */
#define CONFIG_MAX_QUEUE_TIMEOUT_MS (3600u * 1000)

struct queue_timeout_conf {
	bool set;			/* written (or defaulted) here; else the top-level one applies */
	bool connect;			/* "connect_timeout": the service's connect_timeout */
	uint64_t ms;			/* otherwise; 0 = no queue (the listen backlog) */
};

struct service_conf {
	char *name;			/* owned; the key under services: */
	char *listen;			/* owned; "host:port" or "unix:/path"; NULL for listen: off */
	struct discovery_conf discovery;
	enum balance_kind balance;
	uint64_t slow_start_ms;		/* weight ramp of a new instance; 0 = off */
	uint64_t connect_timeout_ms;	/* per connect attempt */
	uint64_t idle_timeout_ms;	/* 0 = none */
	uint64_t max_buffer;		/* bytes per direction */
	uint32_t max_connections;	/* open client connections of this service; 0 = no cap */
	struct queue_timeout_conf queue_timeout;	/* as written; unset: the top-level one */
	uint64_t queue_timeout_ms;	/* in force (config_resolve_queue): 0 = no queue */
	uint32_t queue_max;		/* clients queued beyond a cap, at most; 0 = no queue */
	uint32_t retries;		/* at most CONFIG_MAX_RETRIES */
	enum proxy_protocol proxy_protocol;	/* towards the backends */
	enum service_via via;		/* direct, or through the instances' hosts' trunks */
	enum relay_mode relay;		/* never UNSET once the configuration is checked */
	uint32_t max_connections_per_instance;	/* open or connecting, per instance; 0 = no limit */
	struct health_conf health;
	struct pool_conf pool;
	struct tls_conf tls;
	struct locality_conf locality;
	char *origin;			/* owned; "file" or "zookeeper:<path>" */
	struct networks_conf allowed_networks;	/* unset: the global list */
	struct networks_conf denied_networks;	/* unset: the global list */
};

struct zookeeper_conf {
	char *hosts;			/* owned; NULL when no zookeeper: section */
	uint64_t session_timeout_ms;	/* asked of the ensemble */
	char *auth;			/* owned; "digest:user:secret" (from auth or auth_file) or NULL */
	char *auth_file;		/* owned; the file auth was read from, or NULL */
	struct tls_conf tls;		/* TLS to the ensemble (zktunnel.h); enabled = in use */
	char *config_path;		/* owned; or NULL */
};

/* Who may change what announce creates (zk.h: ZK_ACL_*). */
enum announce_acl {
	ANNOUNCE_ACL_AUTO = 0,		/* creator when zookeeper.auth is set, else open */
	ANNOUNCE_ACL_OPEN,		/* world: all (Curator's default) */
	ANNOUNCE_ACL_CREATOR,		/* node: creator all + world read; parents: see design.md */
};

struct announce_conf {
	char *service;			/* owned */
	char *base_path;		/* owned; the node goes under base_path/service */
	char *address;			/* owned; "auto" or an address */
	uint16_t port;
	uint16_t ssl_port;		/* 0 = none */
	json_t *payload;		/* ref; NULL when absent */
	char *payload_class;		/* owned; the payload's Jackson "@class"; NULL = a Map */
	struct check_conf check;	/* of the local service, guards the node */
	enum announce_acl acl;		/* ACLs of the node and of the parents it creates */
};

struct sync_conf {
	char *path;			/* owned; znode */
	char *file;			/* owned; for a single node */
	bool children;			/* mirror every child into dir */
	char *dir;			/* owned; with children */
	uint32_t mode;			/* file mode bits */
	char *on_change;		/* owned; shell command or NULL */
	uint64_t on_change_timeout_ms;	/* then the command is killed */
	enum sync_on_delete on_delete;
	uint64_t max_size;		/* bytes of a node, at most */
	char **names;			/* owned, n_names globs a child's name must match; none = all */
	size_t n_names;
	uint32_t max_children;		/* children mirrored, at most */
	uint64_t max_total_size;	/* bytes of all mirrored children, at most */
	char *owner;			/* owned; user name or id as written, or NULL */
	char *group;			/* owned; group name or id as written, or NULL */
	int64_t uid;			/* owner resolved at load; -1 = leave as created */
	int64_t gid;			/* group resolved at load; -1 = leave as created */
	uint64_t coalesce_ms;		/* changes this close share one on_change run */
};

/* What an overlay from ZooKeeper may ask for (see overlay_policy.h). */
struct overlay_policy_conf {
	bool replace_file_services;	/* it may replace a service the file defines */
	struct net_list listen_networks;	/* TCP listen addresses it may use */
	char *listen_dir;		/* owned; unix: listen paths must be below it; NULL = none */
	struct net_list allowed_networks;	/* static backends inside these (none: any) */
	struct net_list denied_networks;	/* ... and outside these */
	bool check_payloads;		/* send_expect checks (send/expect) allowed */
	uint64_t min_check_interval_ms;	/* active checks no more often than this */
	uint32_t max_prewarm;		/* pool.prewarm, at most */
	uint32_t max_idle;		/* pool.max_idle, at most */
	uint64_t max_buffer;		/* bytes of max_buffer, at most */
};

/* The trunk listener: other zklb hosts' streams to this host's announced services. */
struct trunk_conf {
	char *listen;			/* owned; "host:port"; NULL: no trunk listener */
	struct tls_conf tls;		/* its ctx is a server context (tls_ctx_new_server) */
	uint64_t stream_window;		/* bytes a stream may have in flight towards us */
	uint64_t connection_window;	/* bytes all streams of one trunk may have in flight */
	uint32_t max_streams;		/* concurrent streams per trunk connection */
	uint64_t connect_timeout_ms;	/* to the local backend */
	uint64_t idle_timeout_ms;	/* a trunk with no stream and no frame closes; 0 = never */
	uint32_t connections_per_peer;	/* calling side: trunk connections per peer host */
};

/* Which instances a render entry writes. */
enum render_set {
	RENDER_ROUTABLE = 0,		/* what the proxy would route to: not ejected, checks passing */
	RENDER_ALL,			/* every discovered instance */
};

struct render_wait_conf {
	uint64_t min_ms;		/* write once the set has been stable this long */
	uint64_t max_ms;		/* but at least this often while it keeps changing */
};

struct render_conf {
	char *service;			/* owned; a key of services: */
	char *file;			/* owned; absolute path of the output */
	char *format;			/* owned; a built-in format, or NULL with template */
	char *template_path;		/* owned; a template file, or NULL with format */
	char *template_text;		/* owned; the template itself, read and checked at load */
	enum render_set instances;
	struct render_wait_conf wait;
	uint32_t min_instances;		/* fewer: keep the file as it is */
	char *check_command;		/* owned; or NULL; {{file}} is the candidate's path */
	char *on_change;		/* owned; or NULL */
	uint64_t on_change_timeout_ms;	/* for check_command and on_change alike */
	uint32_t mode;			/* file mode bits */
};

struct config {
	char *source;			/* owned; file name the config came from */
	struct zookeeper_conf zookeeper;
	char *cache_dir;		/* owned; or NULL */
	uint32_t workers;		/* resolved: "auto" becomes the online CPU count */
	uint64_t drain_timeout_ms;	/* SIGTERM: open connections may finish for this long */
	char *admin_listen;		/* owned; NULL when admin: {listen: off} */
	enum log_level log_level;
	enum log_format log_format;
	char *access_log;		/* owned; NULL when off, else "stderr" or an absolute path */
	enum log_format access_log_format;
	char *zone;			/* owned; this host's zone (zone: or zone_file:'s content), or NULL */
	struct service_conf *services;	/* owned, n_services entries, in file order */
	size_t n_services;
	struct announce_conf *announce;	/* owned, n_announce entries */
	size_t n_announce;
	struct sync_conf *sync;		/* owned, n_sync entries */
	size_t n_sync;
	struct networks_conf allowed_networks;	/* destinations instances may have */
	struct networks_conf denied_networks;	/* ...and may not (wins over allowed) */
	char *admin_token_file;		/* owned; or NULL: no bearer token */
	uint32_t admin_max_connections;	/* open admin connections, at most */
	uint64_t admin_request_timeout_ms;	/* for the whole request head */
	uint64_t admin_metrics_cache_ms;	/* /metrics is rebuilt at most this often */
	uint32_t max_connections;	/* client connections, all services; 0 = no cap */
	struct queue_timeout_conf queue_timeout;	/* services' default queue_timeout */
	uint64_t max_buffer_memory;	/* bytes relays may hold in buffers, all together; 0 = no cap */
	enum relay_mode relay;		/* services' default relay */
	struct overlay_policy_conf overlay;	/* the file's `overlay:` section */
	struct render_conf *render;	/* owned, n_render entries */
	size_t n_render;
	struct trunk_conf trunk;	/* listen NULL when there is no trunk: section */
};

/*
 * Load and validate a YAML file. Returns the config, or NULL with at least one
 * message in errs. Thread: control thread (or any, it touches no globals).
 */
struct config *config_load_file(const char *path, struct config_errors *errs);

/* Same, from a YAML string; `name` is used as FILE in messages. */
struct config *config_load_string(const char *yaml, size_t len, const char *name,
				  struct config_errors *errs);

/*
 * Overlay: validate a JSON document with the same schema as the file's
 * `services:` section (from zookeeper.config_path) on top of base. Services
 * named in the overlay replace or add to those of base; the result is a new
 * config. On error returns NULL; messages name the JSON path
 * ("zookeeper:/zklb/config: services.web.balance: ...").
 */
struct config *config_overlay_json(const struct config *base, const char *json, size_t len,
				   const char *origin, struct config_errors *errs);

void config_free(struct config *cfg);

/* A deep copy of one render: entry (render.c keeps its own), and its release. */
void config_render_copy(struct render_conf *dst, const struct render_conf *src);
void config_render_free(struct render_conf *r);

/*
 * SIGHUP: can `cur` replace `old` in a running process? Returns true when
 * every difference applies live (services, announce, sync, log, drain_timeout).
 * Otherwise false, with the first key that changed but needs a restart
 * (workers, cache_dir, admin.*, zookeeper.*) written into buf.
 */
bool config_reloadable(const struct config *old, const struct config *cur, char *buf, size_t len);

/*
 * The effective configuration as JSON (GET /config): every key with the value
 * in force, defaults included, secrets (zookeeper.auth, tls.key) as "***".
 * The caller owns the result.
 */
json_t *config_dump(const struct config *cfg);

/* Names of the enums, as written in the file. */
const char *balance_kind_name(enum balance_kind k);
const char *discovery_kind_name(enum discovery_kind k);
const char *check_kind_name(enum check_kind k);
const char *reuse_kind_name(enum reuse_kind k);

/*
 * Can the kernel relay (relay: kernel|auto) carry this service's
 * connections: no tls:, no pool.reuse or pool.prewarm, not via: trunk, a TCP
 * listen address? (Under via: auto the relay keeps trunk streams in user space.)
 */
bool config_relay_kernel_fits(const struct service_conf *s);

/* The destination lists in force for sc: its own, or the global ones. */
const struct net_list *config_allowed_networks(const struct config *cfg, const struct service_conf *sc);
const struct net_list *config_denied_networks(const struct config *cfg, const struct service_conf *sc);

/*
 * What is valid but probably unsafe (a denied_networks without `reserved`,
 * ...): one complete message each into warns, "FILE: warning: key: why".
 */
void config_warnings(const struct config *cfg, struct config_errors *warns);

/* The service named `name`, or NULL. */
const struct service_conf *config_service(const struct config *cfg, const char *name);

#endif
