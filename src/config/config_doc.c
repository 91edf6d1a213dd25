/*
 * config_doc — see config_doc.h. The walk (types, defaults, reload flags
 * from the schema) and the one table of descriptions, by key path. A key
 * added to config_keys.c needs a row here: the unit test and the man page
 * build say which one is missing.
 */
#include "config_doc.h"
#include "config_keys.h"
#include "schema.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOC_PATH_MAX 160

/* Descriptions, by key path. Keys parsed by a function say how they are written. */
static const struct config_doc_row doc_rows[] = {
	{ "zookeeper", NULL,
	  "The ZooKeeper session. Required by curator and serverset discovery, announce: and sync:; "
	  "without it zklb never connects to ZooKeeper." },
	{ "zookeeper.hosts", NULL,
	  "Connect string host:port[,host:port...][/chroot]." },
	{ "zookeeper.session_timeout", NULL, "Requested session timeout." },
	{ "zookeeper.auth", NULL,
	  "scheme:credentials, e.g. digest:user:secret, added to every session. An ensemble that "
	  "refuses it (or requires authentication when it is not set) stops zklb at start with exit "
	  "status 1; later, each refusal is an error line and counts in "
	  "zklb_zookeeper_auth_failures_total." },
	{ "zookeeper.auth_file", NULL,
	  "A file holding what auth would say (one line; trailing white space dropped), so this "
	  "file can stay world-readable. Refused if group or other may access it (chmod 600). "
	  "Excludes auth." },
	{ "zookeeper.tls", NULL,
	  "TLS to the ensemble (a secureClientPort): libzookeeper is given one loopback "
	  "endpoint per member, in the ensemble's order, and zklb carries each connection to its "
	  "member over TLS. The keys are those of services.NAME.tls; the name verified and sent as "
	  "SNI is server_name, else the member's host. A change needs a restart." },
	{ "zookeeper.tls.enabled", NULL, "false keeps the section but talks plain TCP." },
	{ "zookeeper.tls.ca", NULL, "CA certificates (PEM) the members' chains must end in; default: the system store." },
	{ "zookeeper.tls.cert", NULL, "Client certificate (PEM), for a server with ssl.clientAuth, with key." },
	{ "zookeeper.tls.key", NULL, "The client certificate's private key (PEM); readable by group or other is a warning." },
	{ "zookeeper.tls.verify", NULL, "Check each member's chain and name." },
	{ "zookeeper.tls.server_name", NULL, "The name every member's certificate must carry; default: the member's host." },
	{ "zookeeper.tls.min_version", NULL, "\"1.2\" or \"1.3\": the oldest version offered." },
	{ "zookeeper.tls.ciphers", NULL, "OpenSSL cipher list for TLS 1.2." },
	{ "zookeeper.tls.session_reuse", NULL, "Resume sessions per member." },
	{ "zookeeper.config_path", NULL,
	  "A znode whose JSON (the schema of services:, either {\"web\": {...}} or "
	  "{\"services\": {...}}) is laid over the file's services: each service it names "
	  "replaces the file's service of that name, whole." },
	{ "cache_dir", NULL,
	  "Where the last-known instances of each service and the overlay in force are kept, "
	  "for a restart while ZooKeeper is down." },
	{ "workers", "integer 1..256, or auto",
	  "Data-plane threads; auto = the number of online CPUs." },
	{ "zone", "1 to 63 printable bytes, no spaces",
	  "This host's zone, for services with locality: {prefer: zone}." },
	{ "zone_file", "absolute path",
	  "A file whose first line is this host's zone (read at start and reload); excludes zone:." },
	{ "drain_timeout", NULL,
	  "How long open connections may finish after SIGTERM before zklb exits." },
	{ "max_connections", NULL,
	  "Client connections of all services together, at most; 0 = no cap. At the cap clients "
	  "queue for a slot in their service's queue (queue_timeout)." },
	{ "queue_timeout", "duration or connect_timeout",
	  "Every service's queue_timeout unless it sets its own. connect_timeout (the default, as "
	  "HAProxy's timeout queue follows timeout connect): each service's connect_timeout." },
	{ "max_buffer_memory", NULL,
	  "Bytes all relays together may hold for slow readers (each at most its service's "
	  "max_buffer); a relay that needs a buffer beyond it, or that malloc refuses, is closed as "
	  "local_error and counted, so a flood of slow readers cannot grow zklb without bound. "
	  "0 = no cap." },
	{ "relay", NULL,
	  "The services' default relay (a service's own relay: wins): user copies in the worker; "
	  "kernel and auto relay in the kernel through a BPF sockmap (see services.NAME.relay), "
	  "for the services they fit (no tls:, no pool.reuse or pool.prewarm, a TCP listen "
	  "address; the others stay user). Where the kernel refuses BPF, connections are relayed "
	  "in user space, logged once and counted (zklb_service_kernel_fallbacks_total)." },
	{ "allowed_networks", "list of CIDR prefixes or addresses",
	  "Destinations instances may have, checked on the resolved address of every instance; "
	  "empty = any that is not denied." },
	{ "denied_networks", "list of CIDR prefixes, addresses or reserved",
	  "Destinations no instance may have; wins over allowed_networks. reserved = 0.0.0.0/8, "
	  "::/128, 169.254.0.0/16, fe80::/10 and the cloud metadata addresses; a list without "
	  "it gets a zklb check warning." },
	{ "admin", NULL, "The admin HTTP API: /healthz, /services, /status, /metrics and the status page at /." },
	{ "admin.listen", "host:port, unix:/path, or off",
	  "Where the admin API listens; off (or false) disables it. Keep it on loopback: without "
	  "token_file it has no authentication, and it shows the platform's topology." },
	{ "admin.token_file", NULL,
	  "An absolute path to a file of mode 0600 whose first line is a bearer token that every "
	  "endpoint but /healthz then requires (Authorization: Bearer TOKEN)." },
	{ "admin.max_connections", NULL, "Open admin connections, at most; at the cap accepting pauses." },
	{ "admin.request_timeout", NULL,
	  "The whole request head must arrive within this, or the connection is closed." },
	{ "admin.metrics_cache", NULL, "/metrics is rebuilt at most this often; 0 = on every scrape." },
	{ "log", NULL, "Logging, on stderr." },
	{ "log.level", NULL, "The least severe level written." },
	{ "log.format", NULL, "text: one line per event; json: one object per line." },
	{ "log.access", NULL, "The access log: one line per client connection at its end, to stderr "
	  "or appended to this absolute path (reopened on SIGUSR1); off when absent. Read at start." },
	{ "log.access_format", NULL, "text: key=value pairs; json: one object per line. Read at start." },
	{ "services", "mapping of service names",
	  "The services this host connects to, by name (1..64 of A-Z a-z 0-9 _ - .)." },
	{ "services.NAME.listen", "host:port, [ipv6]:port, unix:/path, or off",
	  "Where applications connect (a unix: path under 108 bytes); off: the service is "
	  "discovered and checked but not proxied (for render:)." },
	{ "services.NAME.discovery", NULL, "Where the service's instances come from." },
	{ "services.NAME.discovery.type", NULL,
	  "curator: Apache Curator x-discovery instances; serverset: Finagle/Aurora member_* "
	  "nodes; static: the backends list; sentinel: the primary Redis Sentinel names." },
	{ "services.NAME.discovery.path", NULL,
	  "The znode whose children are the instances (Curator: basePath/serviceName). "
	  "Required for curator and serverset." },
	{ "services.NAME.discovery.keep_last_known", NULL,
	  "A view that would empty the service is refused; the previous set stays." },
	{ "services.NAME.discovery.collapse_guard", NULL,
	  "A change that removes more than this share of the instances at once is held..." },
	{ "services.NAME.discovery.collapse_hold", NULL,
	  "...this long, and applies only if it still holds then." },
	{ "services.NAME.discovery.allow_hostnames", "true, false or auto",
	  "Instances whose address is a host name are looked up (true) or refused (false: state "
	  "hostname_not_allowed, never asked of DNS). auto is true for serverset and static, false "
	  "for curator, whose builder writes IP addresses." },
	{ "services.NAME.discovery.max_lookups", NULL,
	  "1..64 host name lookups of this service in flight at once; the others wait their turn." },
	{ "services.NAME.discovery.lookup_timeout", NULL,
	  "A lookup not answered by then fails (counted timed_out) and is retried like any failure." },
	{ "services.NAME.discovery.coalesce", NULL,
	  "After a children change, list again this long later (with jitter), so a storm of changes "
	  "costs one list per window; 0 = at once." },
	{ "services.NAME.discovery.resync_jitter", NULL,
	  "After a new session, re-read within a random delay up to this while the last-known set "
	  "serves, so a fleet does not re-read at the same moment." },
	{ "services.NAME.discovery.watch_data", NULL,
	  "Watch every instance's data (true), or only the children (false: one watch per service; "
	  "an in-place setData of an instance that stays, as Curator's updateService does, is missed)." },
	{ "services.NAME.discovery.backends", "list of host:port [weight=N] strings",
	  "The instances of a static service, weight 1..256 (default 1); host names are allowed. "
	  "Required for static." },
	{ "services.NAME.discovery.sentinels", "list of host:port strings",
	  "sentinel only, and required there: the Sentinels, asked in this order (1 to 16)." },
	{ "services.NAME.discovery.master_name", "non-empty string",
	  "sentinel only, and required there: the master name the Sentinels monitor." },
	{ "services.NAME.discovery.close_grace", NULL,
	  "sentinel only: after a failover, connections still open to the demoted primary are "
	  "closed after this long (writes to it fail); 0 closes them at once." },
	{ "services.NAME.discovery.query_timeout", NULL,
	  "sentinel only: one query to a Sentinel or a ROLE to the primary, connect included." },
	{ "services.NAME.discovery.password_file", "absolute path",
	  "sentinel only: the AUTH password for ROLE on the Redis servers; refused when others may read it." },
	{ "services.NAME.balance", NULL,
	  "least_conn (weighted), p2c (power of two choices), round_robin or random." },
	{ "services.NAME.slow_start", NULL,
	  "A new or returning instance ramps from 10% to its full weight over this window; 0 = off." },
	{ "services.NAME.connect_timeout", NULL,
	  "Per connect attempt; also how long a client waits for the service's first view." },
	{ "services.NAME.idle_timeout", NULL,
	  "A connection with no bytes either way for this long is closed; 0 = never." },
	{ "services.NAME.max_buffer", NULL,
	  "Per direction: what zklb holds for a slow reader before it stops reading the other side." },
	{ "services.NAME.retries", NULL,
	  "Connect-phase retries, each on an instance this client has not tried." },
	{ "services.NAME.max_connections", NULL,
	  "This service's open client connections, at most; 0 = no cap. Clients beyond it (or beyond "
	  "the global max_connections) queue for a slot, see queue_timeout." },
	{ "services.NAME.queue_timeout", "duration or connect_timeout",
	  "How long a client beyond max_connections (the service's or the global one) waits in "
	  "zklb's queue for a slot, first come first served across workers; then it is closed and "
	  "counted (zklb_service_queue_timeouts_total). 0 = no queue: clients wait in the listen "
	  "backlog, unbounded in time. Unset: the top-level queue_timeout." },
	{ "services.NAME.queue_max", "0..1000000",
	  "Clients queued at most (each holds a descriptor); beyond, accepting pauses and clients "
	  "wait in the listen backlog. 0 = no queue." },
	{ "services.NAME.allowed_networks", "list of CIDR prefixes or addresses",
	  "As the top-level allowed_networks, for this service only (replaces the global list). "
	  "The overlay may not set it." },
	{ "services.NAME.denied_networks", "list of CIDR prefixes, addresses or reserved",
	  "As the top-level denied_networks, for this service only (replaces the global list). "
	  "The overlay may not set it." },
	{ "services.NAME.proxy_protocol", NULL,
	  "v2: write a PROXY protocol v2 header (the client's address and the one it connected to) "
	  "first on each upstream connection. Excludes pool.reuse and pool.prewarm." },
	{ "services.NAME.via", NULL,
	  "direct: one TCP connection per client connection. trunk: each client connection is "
	  "a stream of an HTTP/2 trunk to the instance's host (its Curator payload must carry "
	  "zklb.trunk, else the instance is not routable and /services says so). auto: the trunk "
	  "when the instance advertises one, else direct. Needs a trunk: section; excludes "
	  "pool.reuse and pool.prewarm." },
	{ "services.NAME.relay", NULL,
	  "user: the worker copies the bytes. kernel: once connected, the client and upstream "
	  "sockets are paired in a BPF sockmap and the kernel moves the bytes (the worker still "
	  "owns timeouts, half-close, close and counters); excludes tls:, pool.reuse, pool.prewarm, "
	  "via: trunk and a unix: listen address (under via: auto, trunk streams stay in user "
	  "space); every connection is paired once connected. auto: the same "
	  "where the service allows it, but a connection is paired only once it has carried 4 "
	  "reads from the upstream and nothing of it is queued, so short connections never pay "
	  "for pairing. A connection whose reader falls more than max_buffer behind moves to the "
	  "user-space relay for good. Default: the top-level relay." },
	{ "services.NAME.max_connections_per_instance", "0..1000000",
	  "No instance gets more open connections than this from zklb (all workers); when every "
	  "one is full, a new client is closed as no_backend and counted. 0 = no limit." },
	{ "services.NAME.health", NULL, "Passive ejection, panic mode and the active check." },
	{ "services.NAME.health.failures_to_eject", NULL,
	  "Consecutive connect failures (or resets before the first byte) that eject an instance." },
	{ "services.NAME.health.base_ejection", NULL, "The first ejection; it doubles on each repeat..." },
	{ "services.NAME.health.max_ejection", NULL, "...up to this (not shorter than base_ejection)." },
	{ "services.NAME.health.max_ejected_percent", NULL,
	  "At most this share of the instances is ejected by passive health at once." },
	{ "services.NAME.health.panic_threshold", NULL,
	  "Below this percentage of routable instances, balance over all of them (panic mode)." },
	{ "services.NAME.health.check", NULL,
	  "An active health check; without it, health is passive only. With it, a new instance "
	  "takes traffic after its first pass." },
	{ "services.NAME.health.check.type", NULL,
	  "tcp: connect; send_expect: send bytes, expect a reply prefix; http: GET path, expect 2xx or 3xx; "
	  "redis_role: AUTH (with password_file) then ROLE, expect the wanted role; "
	  "mysql_primary: log in as user, expect @@global.read_only = 0." },
	{ "services.NAME.health.check.interval", NULL, "Between checks of one instance (with 10% jitter)." },
	{ "services.NAME.health.check.timeout", NULL, "Per check." },
	{ "services.NAME.health.check.rise", NULL, "Passes in a row that bring an instance up." },
	{ "services.NAME.health.check.fall", NULL, "Failures in a row that take an instance down." },
	{ "services.NAME.health.check.send", "non-empty string", "send_expect only: the bytes sent." },
	{ "services.NAME.health.check.expect", "non-empty string",
	  "send_expect only, and required there: the prefix the reply must start with." },
	{ "services.NAME.health.check.path", NULL, "http only: the path requested." },
	{ "services.NAME.health.check.role", NULL,
	  "redis_role only: master passes on ROLE master, replica on ROLE slave." },
	{ "services.NAME.health.check.password_file", "absolute path",
	  "redis_role and mysql_primary only: the password, read from this file; refused when "
	  "others may read it." },
	{ "services.NAME.health.check.user", "1 to 80 bytes",
	  "mysql_primary only, and required there: the user the check logs in as "
	  "(mysql_native_password)." },
	{ "services.NAME.pool", NULL, "The upstream connection pool." },
	{ "services.NAME.pool.prewarm", NULL,
	  "Idle upstream connections kept open per backend (at most max_idle)." },
	{ "services.NAME.pool.reuse", NULL,
	  "Return an upstream connection to the pool when it is at a request boundary of this protocol." },
	{ "services.NAME.pool.max_idle", NULL, "Idle pooled connections per backend." },
	{ "services.NAME.pool.idle_timeout", NULL,
	  "A pooled connection unused this long is closed; keep it below the backend's own keep-alive timeout." },
	{ "services.NAME.locality", NULL, "Zone-aware routing (needs zone: or zone_file:)." },
	{ "services.NAME.locality.prefer", NULL,
	  "none: zones are ignored; zone: new connections stay in the local zone while enough of "
	  "it is routable." },
	{ "services.NAME.locality.zone_key", "non-empty string",
	  "The payload key (Curator payload field, ServerSet metadata) that holds an instance's zone." },
	{ "services.NAME.locality.min_healthy_percent", "0..100",
	  "Below this share of routable local instances, the share the zone lacks spills to the "
	  "other zones (Envoy's locality weighting); panic mode still applies to the whole set." },
	{ "services.NAME.tls", NULL,
	  "Upstream TLS: zklb is the TLS client, applications keep talking plain TCP to it. "
	  "Discovered instances are reached on their sslPort (one without is not routed); static "
	  "backends take these settings. Every file is loaded by zklb check and on each reload." },
	{ "services.NAME.tls.enabled", NULL,
	  "Set by the presence of the section; false turns it off without removing it." },
	{ "services.NAME.tls.ca", NULL,
	  "CA bundle (PEM) the backend's chain is verified against; default: the system store." },
	{ "services.NAME.tls.cert", NULL, "Client certificate (PEM), for mutual TLS, with key." },
	{ "services.NAME.tls.key", NULL,
	  "Client key (PEM), with cert; a file readable by group or other is a warning." },
	{ "services.NAME.tls.verify", NULL,
	  "Verify the chain against ca and the name against server_name." },
	{ "services.NAME.tls.server_name", NULL,
	  "The name verified and sent as SNI; default: the instance's host (an IP literal is "
	  "verified as an IP and sends no SNI)." },
	{ "services.NAME.tls.min_version", NULL, "\"1.2\" or \"1.3\": the oldest version offered." },
	{ "services.NAME.tls.ciphers", NULL,
	  "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults)." },
	{ "services.NAME.tls.session_reuse", NULL,
	  "Resume sessions per backend (tickets), saving a round trip on new connections." },
	{ "announce", "list of mappings",
	  "Services on this host to register in ZooKeeper as Curator instances, behind a local check." },
	{ "announce[].service", NULL, "The Curator service name." },
	{ "announce[].acl", "auto, open or creator",
	  "ACLs of what this entry creates. open: world may do anything (Curator's default). "
	  "creator: the node is creator-all plus world-read; parents it creates are world "
	  "create+read plus creator-all, so other identities can register beside it but neither "
	  "delete nor rewrite it. auto: creator when zookeeper.auth is set, else open. Existing "
	  "nodes keep their ACLs." },
	{ "announce[].base_path", NULL, "The node is base_path/service/<id>." },
	{ "announce[].address", NULL,
	  "The address announced; auto = the first IPv4 address of an UP non-loopback interface "
	  "(127.0.0.1, with a warning, when there is none)." },
	{ "announce[].port", NULL, "The port announced and checked." },
	{ "announce[].ssl_port", NULL, "Written as sslPort; 0 = none (null)." },
	{ "announce[].payload", "any YAML value",
	  "Written as payload (null when absent), in the form Curator's JsonInstanceSerializer "
	  "writes for its Java type: a mapping with \"@class\" (java.util.LinkedHashMap unless "
	  "payload_class), a list as [\"java.util.ArrayList\", [...]], a long as "
	  "[\"java.lang.Long\", n]." },
	{ "announce[].payload_class", NULL,
	  "The Java class consumers read a mapping payload as (written as \"@class\"), for "
	  "ServiceDiscoveryBuilder.builder(THAT_CLASS.class)." },
	{ "announce[].check", NULL,
	  "The local check: it probes 127.0.0.1:port (address: auto) or address:port; the node "
	  "exists while it passes." },
	{ "sync", "list of mappings", "Znodes mirrored into local files." },
	{ "sync[].path", NULL, "The znode." },
	{ "sync[].file", NULL, "The local file, replaced atomically. Required unless children." },
	{ "sync[].children", NULL, "Mirror every child of path into dir instead." },
	{ "sync[].dir", NULL, "The local directory. Required with children." },
	{ "sync[].mode", "octal string, quoted", "The files' mode." },
	{ "sync[].on_change", NULL,
	  "Run with /bin/sh -c, in its own process group, after a change." },
	{ "sync[].on_change_timeout", NULL, "Then SIGTERM, and SIGKILL 1 s later." },
	{ "sync[].on_delete", NULL, "keep or remove the file when the node is deleted." },
	{ "sync[].max_size", NULL, "A larger node is refused with a log line; the file is left alone." },
	{ "sync[].names", "list of globs",
	  "With children: a child's name must match one (fnmatch); other children are never read or "
	  "written, counted and logged." },
	{ "sync[].max_children", NULL,
	  "With children: children mirrored at most, in the order they appear; more are refused." },
	{ "sync[].max_total_size", NULL,
	  "With children: bytes of all mirrored children at most; a child that would pass it is "
	  "refused and its file left as it was." },
	{ "sync[].owner", NULL,
	  "User name or id the files belong to (resolved at load; set on the file's descriptor)." },
	{ "sync[].group", NULL, "Group name or id the files belong to, likewise." },
	{ "sync[].coalesce", NULL, "Changes within this window of the first share one on_change run." },
	{ "overlay", NULL,
	  "What the ZooKeeper overlay (zookeeper.config_path), a less trusted source than this file, "
	  "may do." },
	{ "overlay.replace_file_services", NULL,
	  "The overlay may replace a service this file defines (it may always add services)." },
	{ "overlay.listen_networks", "list of CIDR prefixes",
	  "The addresses an overlay service may listen on; empty = no TCP listener." },
	{ "overlay.listen_dir", NULL,
	  "An overlay may listen on unix: paths below this directory only (none: not at all)." },
	{ "overlay.allowed_networks", "list of CIDR prefixes (or reserved)",
	  "Static backends of an overlay must be inside one (none: any)..." },
	{ "overlay.denied_networks", "list of CIDR prefixes (or reserved)",
	  "...and outside all of these; reserved = unspecified, link-local and cloud metadata "
	  "addresses. Checked on the socket address, so every spelling is the same." },
	{ "overlay.check_payloads", NULL, "send_expect checks (their send/expect bytes) are allowed." },
	{ "overlay.min_check_interval", NULL, "An overlay's active checks run no more often." },
	{ "overlay.max_prewarm", NULL, "pool.prewarm at most." },
	{ "overlay.max_idle", NULL, "pool.max_idle at most." },
	{ "overlay.max_buffer", NULL, "max_buffer at most." },
	{ "render", "list of mappings",
	  "Files a service's instances are written into through a template, checked, swapped "
	  "atomically and followed by a command (as confd or consul-template do)." },
	{ "render[].service", NULL, "A service under services:." },
	{ "render[].file", NULL, "Absolute path of the output." },
	{ "render[].format", NULL,
	  "A built-in template: nginx_upstream, haproxy_servers, json or lines. Give either "
	  "format or template." },
	{ "render[].template", NULL,
	  "A template file (a Mustache subset), compiled by zklb check. Give either format or template." },
	{ "render[].instances", NULL,
	  "routable: what the proxy would route to; all: every discovered instance." },
	{ "render[].wait", NULL, "Coalescing of changes, so a rolling deploy costs few reloads." },
	{ "render[].wait.min", NULL, "Write once the set has been stable this long..." },
	{ "render[].wait.max", NULL, "...but at least this often while it keeps changing." },
	{ "render[].min_instances", NULL, "With fewer instances, the file stays as it is." },
	{ "render[].check_command", NULL,
	  "Run on the candidate first ({{file}} is its quoted path); a non-zero exit keeps the old file." },
	{ "render[].on_change", NULL,
	  "Run after the file was replaced (/bin/sh -c, in its own process group)." },
	{ "render[].on_change_timeout", NULL,
	  "Bounds check_command and on_change: SIGTERM to the group, SIGKILL 1 s later." },
	{ "render[].mode", "octal string, quoted", "The file's mode." },
	{ "trunk", NULL,
	  "The trunk listener: other zklb hosts relay client connections to this host's announced "
	  "services as streams of one HTTP/2 connection over mutual TLS. A stream may reach only "
	  "an address:port of this host's announce: entries (never an open relay). Announce "
	  "entries with no payload or an untyped mapping payload advertise the trunk's port as "
	  "payload key zklb.trunk." },
	{ "trunk.listen", "host:port",
	  "Where the trunk listener accepts (TCP only)." },
	{ "trunk.tls", NULL,
	  "Mutual TLS of the trunk, in both roles (ALPN h2): the accepting side requires a "
	  "client certificate; the calling side (services with via: trunk|auto) presents the same "
	  "certificate and verifies the peer's chain and its IP address (an IP SAN)." },
	{ "trunk.tls.ca", NULL, "CA file (PEM) that verifies the other hosts' certificates." },
	{ "trunk.tls.cert", NULL, "This host's trunk certificate (PEM chain)." },
	{ "trunk.tls.key", NULL, "The private key of cert (PEM); keep it mode 0600." },
	{ "trunk.tls.verify", NULL,
	  "Require and verify a client certificate (mutual TLS). Turn off only in a test." },
	{ "trunk.tls.min_version", NULL, "\"1.2\" or \"1.3\": the oldest version accepted." },
	{ "trunk.stream_window", NULL,
	  "HTTP/2 flow-control window of one stream towards this host: the bytes of a stream "
	  "in flight or buffered here, at most. Size it to the bandwidth-delay product of one "
	  "stream (1 MiB covers 1 Gbit/s at 8 ms)." },
	{ "trunk.connection_window", NULL,
	  "The window of a whole trunk connection (all its streams); at least stream_window." },
	{ "trunk.max_streams", NULL,
	  "Concurrent streams per trunk connection (SETTINGS_MAX_CONCURRENT_STREAMS)." },
	{ "trunk.connect_timeout", NULL,
	  "Connect timeout of a stream to its local backend; when calling, of a trunk "
	  "connection's TCP connect and TLS handshake." },
	{ "trunk.idle_timeout", NULL,
	  "A trunk connection with no open stream closes after this; 0 = never." },
	{ "trunk.connections_per_peer", NULL,
	  "Calling side: trunk connections to one peer host (1-16), opened on demand; more than "
	  "one spreads the streams and so bounds head-of-line blocking." },
};

struct walk {
	const struct config_doc_row *rows;	/* ref */
	size_t n_rows;
	bool *used;				/* owned: rows[i] named a key */
	const struct schema_section *seen[32];	/* ref: sections walked, for same_as */
	char seen_at[32][DOC_PATH_MAX];		/* where each was walked */
	size_t n_seen;
	config_doc_key_fn *key;			/* caller's, may be NULL */
	config_doc_problem_fn *problem;		/* caller's, may be NULL */
	void *arg;
	size_t problems;
};

static void problem(struct walk *w, const char *path, const char *what)
{
	char msg[DOC_PATH_MAX + 80];
	snprintf(msg, sizeof(msg), "%s: %s", path, what);
	w->problems++;
	if (w->problem)
		w->problem(msg, w->arg);
}

/* "1k" for 1024: sizes as the file writes them. */
static void size_text(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "kmg";
	int u = -1;
	while (u < 2 && v >= 1024 && v % 1024 == 0) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%" PRIu64 "%.*s", v, u >= 0 ? 1 : 0, u >= 0 ? &units[u] : "");
}

static void type_text(const struct schema_key *k, char *buf, size_t len)
{
	const struct schema_range *r = k->arg;
	char lo[24], hi[24];
	switch (k->type) {
	case S_STR: snprintf(buf, len, "string"); break;
	case S_ZPATH: snprintf(buf, len, "znode path"); break;
	case S_BOOL: snprintf(buf, len, "boolean"); break;
	case S_RATIO: snprintf(buf, len, "ratio 0..1"); break;
	case S_SECTION: snprintf(buf, len, "mapping"); break;
	case S_FN: snprintf(buf, len, "?"); break;
	case S_U32:
	case S_PORT:
		if (r)
			snprintf(buf, len, "integer %" PRIu64 "..%" PRIu64, r->min, r->max);
		else
			snprintf(buf, len, "integer");
		break;
	case S_DUR:
		if (r && r->min > 0 && r->max == UINT64_MAX)
			snprintf(buf, len, "duration, not 0");
		else
			snprintf(buf, len, "duration");
		break;
	case S_SIZE:
		if (r) {
			size_text(r->min, lo, sizeof(lo));
			size_text(r->max, hi, sizeof(hi));
			if (r->max == UINT64_MAX)
				snprintf(buf, len, "size, at least %s", lo);
			else
				snprintf(buf, len, "size %s..%s", lo, hi);
		} else {
			snprintf(buf, len, "size");
		}
		break;
	case S_ENUM: {
		size_t o = (size_t)snprintf(buf, len, "one of:");
		for (const struct schema_enum *e = k->arg; e->name && o < len; e++)
			o += (size_t)snprintf(buf + o, len - o, "%s %s", e == k->arg ? "" : ",", e->name);
		break;
	}
	}
}

static const struct config_doc_row *row_of(struct walk *w, const char *path)
{
	for (size_t i = 0; i < w->n_rows; i++) {
		if (strcmp(w->rows[i].path, path) == 0) {
			w->used[i] = true;
			return &w->rows[i];
		}
	}
	return NULL;
}

static const char *seen_path(const struct walk *w, const struct schema_section *s)
{
	for (size_t i = 0; i < w->n_seen; i++)
		if (w->seen[i] == s)
			return w->seen_at[i];
	return NULL;
}

static void walk_section(struct walk *w, const struct schema_section *s, const char *prefix,
			 bool reload, unsigned depth)
{
	for (size_t i = 0; i < s->n_keys; i++) {
		const struct schema_key *k = &s->keys[i];
		char path[DOC_PATH_MAX], type[160], inner[DOC_PATH_MAX];
		const char *item = NULL;
		const struct schema_section *sub = k->type == S_SECTION ? k->arg
						 : config_keys_items(k, &item);
		snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", k->name);
		snprintf(inner, sizeof(inner), "%s%s", path, item ? item : "");
		const struct config_doc_row *row = row_of(w, path);
		type_text(k, type, sizeof(type));
		if (k->type == S_FN && (!row || !row->type))
			problem(w, path, "parsed by a function, and no type is documented");
		if (!row || !row->text || !*row->text)
			problem(w, path, "no description");
		struct config_doc_key d = {
			.path = path,
			.type = row && row->type ? row->type : type,
			.def = k->def,
			.required = k->flags & S_REQ,
			.reload = reload && (k->flags & S_RELOAD),
			.section = sub != NULL,
			.same_as = sub ? seen_path(w, sub) : NULL,
			.text = row ? row->text : NULL,
			.depth = depth,
		};
		if (w->key)
			w->key(&d, w->arg);
		if (!sub || d.same_as)
			continue;
		if (w->n_seen < ARRAY_SIZE(w->seen)) {
			w->seen[w->n_seen] = sub;
			snprintf(w->seen_at[w->n_seen], DOC_PATH_MAX, "%s", inner);
			w->n_seen++;
		}
		walk_section(w, sub, inner, d.reload, depth + 1);
	}
}

size_t config_doc_walk_schema(const struct schema_section *top, const struct config_doc_row *rows,
			      size_t n_rows, config_doc_key_fn *key, config_doc_problem_fn *problem_fn,
			      void *arg)
{
	struct walk w = {
		.rows = rows, .n_rows = n_rows, .used = xcalloc(n_rows ? n_rows : 1, sizeof(bool)),
		.key = key, .problem = problem_fn, .arg = arg,
	};
	walk_section(&w, top, "", true, 0);
	for (size_t i = 0; i < n_rows; i++)
		if (!w.used[i])
			problem(&w, rows[i].path, "described, but the schema has no such key");
	free(w.used);
	return w.problems;
}

size_t config_doc_walk(config_doc_key_fn *key, config_doc_problem_fn *problem_fn, void *arg)
{
	return config_doc_walk_schema(config_keys_top(), doc_rows, ARRAY_SIZE(doc_rows), key,
				      problem_fn, arg);
}
