/*
 * announce — see announce.h.
 *
 * Each entry owns its check and at most one ZooKeeper request at a time
 * (e->op). announce_reconcile() compares what the entry wants (check up, not
 * withdrawn, not retired) with where its node stands and sends the one
 * request that brings them closer; every completion and every session or
 * check event calls it again. Entries dropped by a reload ("retired") stay
 * until their node is deleted and are freed after the loop turn, never
 * inside their own completion.
 */
#include "announce.h"
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "check.h"
#include "instance.h"
#include "log.h"
#include "nodewatch.h"
#include "util.h"
#include "zk.h"
#include "zkretry.h"

#define ANNOUNCE_RETRY_BASE_MS 1000
#define ANNOUNCE_RETRY_CAP_MS 30000

/* The request an entry has in flight. */
enum announce_op {
	ANNOUNCE_OP_NONE = 0,
	ANNOUNCE_OP_CREATE,		/* create the ephemeral node */
	ANNOUNCE_OP_PROBE,		/* create said "exists": whose node is it? */
	ANNOUNCE_OP_CLEAR,		/* delete a node our session does not own, then create */
	ANNOUNCE_OP_DELETE,		/* deregister */
	ANNOUNCE_OP_RESTORE,		/* write our data back over another client's rewrite */
};

struct announce_entry {
	struct announce *a;		/* ref: the owner */
	char *service;			/* owned; Curator service name */
	char *base_path;		/* owned; Curator base path */
	char *address_conf;		/* owned; address as configured ("auto" or an address) */
	char address[INSTANCE_HOST_MAX];	/* address as announced */
	uint16_t port;			/* announced port, also the identity of the entry */
	uint16_t ssl_port;		/* 0 = none (sslPort null) */
	json_t *payload;		/* owned (deep copy); NULL = null */
	char *payload_class;		/* owned; the payload's "@class"; NULL = a Map */
	struct check_conf check_conf;	/* owned strings; what the check was started with */
	char id[ANNOUNCE_UUID_LEN + 1];	/* UUID v4, made once */
	char *path;			/* owned; base_path/service/id */
	char label[160];		/* log prefix "announce svc=web id=..." */
	struct check *chk;		/* owned; NULL once withdrawn/retired or when it cannot start */
	struct health_params health_params;	/* rise/fall of check_conf (announce_health_params) */
	struct health health;		/* the check's rise/fall state; up = health_routable() */
	enum announce_node node;	/* changed by announce_set_node() only */
	struct nodewatch *nw;		/* owned; our node while PRESENT (stopped once it leaves) */
	enum announce_op op;		/* request in flight; NONE when idle */
	bool rewrite;			/* settings changed: the node's data must be replaced */
	bool retired;			/* dropped by a reload: deregister, then free */
	bool stale_op;			/* op was sent on a session that has since been replaced */
	uint32_t conflicts;		/* foreign nodes replaced since the last registration */
	enum zk_acl acl;		/* ACLs of the node and the parents it creates */
	char *written;			/* owned; the node's bytes as we last wrote them, or NULL */
	size_t written_len;		/* bytes in written */
	uint64_t restored_total;	/* rewrites by another client undone */
	struct zkretry retry;		/* owned; after a failure, reconcile again */
	int64_t registered_at_ms;	/* wall ms written into the current/last node */
	uint64_t registrations_total;	/* creates that succeeded */
	uint64_t deregistrations_total;	/* deletes that succeeded */
	uint64_t failures_total;	/* creates/deletes that failed */
};

struct announce {
	struct event_base *base;	/* ref: the control thread's */
	struct zk *zk;			/* ref */
	struct announce_entry **entries;	/* owned; configured entries, in config order */
	size_t n_entries;
	struct announce_entry **retired;	/* owned; dropped entries still deregistering */
	size_t n_retired;
	struct event *reap_ev;		/* owned; frees idle retired entries after the loop turn */
	struct rng rng;			/* owned; retry jitter */
	bool withdrawing;		/* announce_withdraw() was called: nothing is (re)created */
	struct announce_adopted *adopted;	/* owned; ids a hot upgrade handed over */
	size_t n_adopted;
	void (*withdrawn)(void *arg);	/* called once when the withdraw has finished; NULL after */
	void *withdrawn_arg;
};

/* An id handed over by a hot upgrade, for the entry of service:port. */
struct announce_adopted {
	char *service;			/* owned */
	uint16_t port;
	char id[ANNOUNCE_UUID_LEN + 1];
	bool used;			/* taken by an entry */
};

static void announce_reconcile(struct announce_entry *e);
static const struct nodewatch_hooks announce_node_hooks;

/* ---- pure ---------------------------------------------------------------- */

void announce_uuid_format(const uint8_t raw[16], char out[ANNOUNCE_UUID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[16];
	size_t o = 0;

	memcpy(b, raw, 16);
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);	/* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);	/* RFC 4122 variant */
	for (size_t i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 0x0f];
	}
	out[o] = '\0';
}

void announce_health_params(struct health_params *p, const struct check_conf *c)
{
	memset(p, 0, sizeof(*p));
	p->active_check = true;
	p->rise = c->rise ? c->rise : 1;
	p->fall = c->fall ? c->fall : 1;
}

bool announce_node_allowed(enum announce_node from, enum announce_node to)
{
	switch (from) {
	case ANNOUNCE_ABSENT:
		return to == ANNOUNCE_CREATING;
	case ANNOUNCE_CREATING:
		return to == ANNOUNCE_PRESENT || to == ANNOUNCE_ABSENT;
	case ANNOUNCE_PRESENT:
		return to == ANNOUNCE_DELETING || to == ANNOUNCE_ABSENT;
	case ANNOUNCE_DELETING:
		return to == ANNOUNCE_ABSENT || to == ANNOUNCE_PRESENT;
	}
	return false;
}

json_t *announce_curator_json(const char *service, const char *id, const char *address,
			      uint16_t port, uint16_t ssl_port, const json_t *payload,
			      const char *payload_class, int64_t registered_at_ms)
{
	struct instance i;
	json_t *o;

	memset(&i, 0, sizeof(i));
	snprintf(i.id, sizeof(i.id), "%s", id);
	snprintf(i.host, sizeof(i.host), "%s", address);
	i.port = port;
	i.ssl_port = ssl_port;
	i.enabled = true;
	i.service_type = INSTANCE_DYNAMIC;
	i.registered_at_ms = registered_at_ms;
	o = instance_to_curator_json(&i, service);
	json_object_set_new(o, "payload", instance_curator_payload(payload, payload_class));
	return o;
}

bool announce_pick_address(const struct ifaddrs *list, char *out, size_t len)
{
	for (const struct ifaddrs *i = list; i; i = i->ifa_next) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)i->ifa_addr;
		if (!sin || sin->sin_family != AF_INET)
			continue;
		if (!(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
			continue;
		return inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t)len) != NULL;
	}
	return false;
}

enum zk_acl announce_acl_for(enum announce_acl conf, bool have_auth)
{
	switch (conf) {
	case ANNOUNCE_ACL_OPEN: return ZK_ACL_OPEN;
	case ANNOUNCE_ACL_CREATOR: return ZK_ACL_CREATOR;
	case ANNOUNCE_ACL_AUTO: break;
	}
	return have_auth ? ZK_ACL_CREATOR : ZK_ACL_OPEN;
}

const char *announce_node_name(enum announce_node s)
{
	switch (s) {
	case ANNOUNCE_ABSENT: return "absent";
	case ANNOUNCE_CREATING: return "creating";
	case ANNOUNCE_PRESENT: return "registered";
	case ANNOUNCE_DELETING: return "deleting";
	}
	return "?";
}

/* ---- entries --------------------------------------------------------------- */

/*
 * The one transition function of the node lifecycle: validates, logs.
 * why says what caused it ("check up", "session expired"...).
 */
static bool announce_set_node(struct announce_entry *e, enum announce_node to, const char *why)
{
	enum announce_node from = e->node;

	if (!announce_node_allowed(from, to)) {
		log_error("%s: refused node transition %s -> %s (%s)", e->label,
			  announce_node_name(from), announce_node_name(to), why);
		return false;
	}
	e->node = to;
	/*
	 * Watch our own node while registered, so that a delete or a
	 * replacement by someone else (an operator's zkCli, a cleanup script)
	 * is undone at once rather than at the next session. Our own delete
	 * fires that watch too: the watch stops before it is sent.
	 */
	if (to == ANNOUNCE_PRESENT) {
		nodewatch_free(e->nw);
		e->nw = nodewatch_new(e->a->zk, e->a->base, e->path, e->label, &announce_node_hooks,
				      e);
	} else if (from == ANNOUNCE_PRESENT) {
		nodewatch_stop(e->nw);
	}
	if (to == ANNOUNCE_PRESENT && from == ANNOUNCE_CREATING)
		log_info("%s: registered %s as %s:%u (%s)", e->label, e->path, e->address,
			 (unsigned)e->port, why);
	else if (to == ANNOUNCE_ABSENT && from != ANNOUNCE_CREATING)
		log_info("%s: deregistered %s (%s)", e->label, e->path, why);
	else
		log_debug("%s: node %s -> %s (%s)", e->label, announce_node_name(from),
			  announce_node_name(to), why);
	return true;
}

static void announce_retry(void *arg)
{
	struct announce_entry *e = arg;

	e->conflicts = 0;	/* each retry may replace a foreign node a few times again */
	announce_reconcile(e);
}

/* A request failed for a reason other than the connection: count, log, retry later. */
static void announce_failed(struct announce_entry *e, const char *what, int rc)
{
	e->failures_total++;
	zkretry_failed(&e->retry, e->label, what, e->path, rc);
}

static void announce_reap_cb(evutil_socket_t fd, short what, void *arg);

static void announce_entry_free(struct announce_entry *e)
{
	check_stop(e->chk);
	nodewatch_free(e->nw);
	zk_cancel(e->a->zk, e);
	zkretry_fini(&e->retry);
	free(e->service);
	free(e->base_path);
	free(e->address_conf);
	json_decref(e->payload);
	free(e->payload_class);
	free(e->check_conf.send);
	free(e->check_conf.expect);
	free(e->check_conf.path);
	free(e->check_conf.password_file);
	free(e->check_conf.user);
	free(e->path);
	free(e->written);
	free(e);
}

/* Withdraw finished? Retired entries done? Both are looked at after every change. */
static void announce_progress(struct announce *a)
{
	bool idle = true;

	for (size_t i = 0; i < a->n_retired; i++) {
		struct announce_entry *e = a->retired[i];
		if (e->op == ANNOUNCE_OP_NONE && e->node == ANNOUNCE_ABSENT)
			event_active(a->reap_ev, EV_TIMEOUT, 0);
		else
			idle = false;
	}
	for (size_t i = 0; i < a->n_entries && idle; i++)
		idle = a->entries[i]->op == ANNOUNCE_OP_NONE &&
		       a->entries[i]->node == ANNOUNCE_ABSENT;
	if (a->withdrawing && a->withdrawn && idle) {
		void (*done)(void *) = a->withdrawn;
		a->withdrawn = NULL;
		log_info("announce: every node withdrawn");
		done(a->withdrawn_arg);
	}
}

static void announce_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct announce *a = arg;
	size_t k = 0;

	for (size_t i = 0; i < a->n_retired; i++) {
		struct announce_entry *e = a->retired[i];
		if (e->op == ANNOUNCE_OP_NONE && e->node == ANNOUNCE_ABSENT)
			announce_entry_free(e);
		else
			a->retired[k++] = e;
	}
	a->n_retired = k;
}

static void announce_created(void *arg, const struct zk_result *r);

static void announce_send_create(struct announce_entry *e)
{
	json_t *doc;
	char *text;

	e->registered_at_ms = (int64_t)wall_ms();
	doc = announce_curator_json(e->service, e->id, e->address, e->port, e->ssl_port,
				    e->payload, e->payload_class, e->registered_at_ms);
	text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	e->op = ANNOUNCE_OP_CREATE;
	e->rewrite = false;
	free(e->written);
	e->written = text;
	e->written_len = text ? strlen(text) : 0;
	zk_create_acl(e->a->zk, e->path, text, e->written_len, ZOO_EPHEMERAL, e->acl, true,
		      announce_created, e);
}

static void announce_after(struct announce_entry *e)
{
	announce_reconcile(e);
	announce_progress(e->a);
}

/*
 * A completion of a request sent on a session that has been replaced since:
 * whatever it says, the node (an ephemeral of that session) is gone. true
 * when it was such a completion (and has been dealt with).
 */
static bool announce_stale(struct announce_entry *e)
{
	if (!e->stale_op)
		return false;
	e->stale_op = false;
	e->op = ANNOUNCE_OP_NONE;
	if (e->node != ANNOUNCE_ABSENT)
		announce_set_node(e, ANNOUNCE_ABSENT, "answer from an expired session");
	announce_after(e);
	return true;
}

static void announce_cleared(void *arg, const struct zk_result *r)
{
	struct announce_entry *e = arg;

	if (announce_stale(e))
		return;
	e->op = ANNOUNCE_OP_NONE;
	if ((r->rc == ZOK || r->rc == ZNONODE) && e->conflicts < 3) {
		/* bounds create/exists/delete rounds against a node that keeps coming back */
		e->conflicts++;
		log_warn("%s: replaced a node at %s that our session did not own", e->label, e->path);
		announce_send_create(e);
		return;
	}
	announce_set_node(e, ANNOUNCE_ABSENT, "could not replace the existing node");
	if (zk_rc_is_connection(r->rc))
		e->failures_total++;
	else
		announce_failed(e, "replacing the existing node", r->rc == ZOK ? ZNODEEXISTS : r->rc);
	announce_after(e);
}

static void announce_probed(void *arg, const struct zk_result *r)
{
	struct announce_entry *e = arg;
	int64_t sid = 0;
	char pw[16];

	if (announce_stale(e))
		return;
	e->op = ANNOUNCE_OP_NONE;
	if (r->rc == ZOK && r->stat && zk_client_id(e->a->zk, &sid, pw) &&
	    r->stat->ephemeralOwner == sid) {
		/* Our create went through; only its reply was lost. */
		zkretry_succeeded(&e->retry);
		e->conflicts = 0;
		e->registrations_total++;
		announce_set_node(e, ANNOUNCE_PRESENT, "check up; node already ours");
	} else if (r->rc == ZOK) {
		e->op = ANNOUNCE_OP_CLEAR;
		zk_delete(e->a->zk, e->path, -1, announce_cleared, e);
		return;
	} else {
		announce_set_node(e, ANNOUNCE_ABSENT, "existing node vanished");
		if (zk_rc_is_connection(r->rc))
			e->failures_total++;
		else
			announce_failed(e, "exists", r->rc);
	}
	announce_after(e);
}

static void announce_restored(void *arg, const struct zk_result *r)
{
	struct announce_entry *e = arg;

	if (announce_stale(e))
		return;
	e->op = ANNOUNCE_OP_NONE;
	if (r->rc == ZOK) {
		log_info("%s: restored the registration at %s", e->label, e->path);
	} else if (r->rc == ZNONODE) {
		announce_set_node(e, ANNOUNCE_ABSENT, "deleted while being restored");
	} else {
		/* The watch has delivered this version already: register anew instead. */
		e->rewrite = true;
		if (zk_rc_is_connection(r->rc))
			e->failures_total++;
		else
			announce_failed(e, "restoring the rewritten node", r->rc);
	}
	announce_after(e);
}

/*
 * Our registered node, as its nodewatch reads it: is it still ours, and
 * still what we wrote? Another client may rewrite it (same path and owner,
 * a new data version): the identity it names or an open ACL lets it. Our
 * bytes go back, with a line and a count; the watch then delivers them,
 * which match.
 */
static void announce_node_data(void *arg, const char *data, size_t len)
{
	struct announce_entry *e = arg;
	int64_t sid = 0;
	char pw[16];

	/* A retired entry's delete is on its way; there is nothing to restore. */
	if (e->node != ANNOUNCE_PRESENT || e->op != ANNOUNCE_OP_NONE || e->retired)
		return;
	if (zk_client_id(e->a->zk, &sid, pw) && nodewatch_owner(e->nw) != sid) {
		log_warn("%s: %s was replaced by another client's node; registering again",
			 e->label, e->path);
		announce_set_node(e, ANNOUNCE_ABSENT, "replaced by another client");
		announce_after(e);
	} else if (e->written && !(len == e->written_len && memcmp(data, e->written, len) == 0)) {
		e->restored_total++;
		log_warn("%s: %s was rewritten by another client (%zu bytes); restoring our "
			 "registration", e->label, e->path, len);
		e->op = ANNOUNCE_OP_RESTORE;
		zk_set(e->a->zk, e->path, e->written, e->written_len, -1, announce_restored, e);
	}
}

static void announce_node_absent(void *arg)
{
	struct announce_entry *e = arg;

	if (e->node != ANNOUNCE_PRESENT || e->op != ANNOUNCE_OP_NONE || e->retired)
		return;
	log_warn("%s: %s was deleted by another client; registering again", e->label, e->path);
	announce_set_node(e, ANNOUNCE_ABSENT, "deleted by another client");
	announce_after(e);
}

static const struct nodewatch_hooks announce_node_hooks = {
	.on_data = announce_node_data,
	.on_absent = announce_node_absent,
};

static void announce_created(void *arg, const struct zk_result *r)
{
	struct announce_entry *e = arg;

	if (announce_stale(e))
		return;
	e->op = ANNOUNCE_OP_NONE;
	if (r->rc == ZOK) {
		zkretry_succeeded(&e->retry);
		e->conflicts = 0;
		e->registrations_total++;
		announce_set_node(e, ANNOUNCE_PRESENT, "check up");
	} else if (r->rc == ZNODEEXISTS) {
		e->op = ANNOUNCE_OP_PROBE;
		zk_exists(e->a->zk, e->path, false, announce_probed, e);
		return;
	} else if (zk_rc_is_connection(r->rc)) {
		e->failures_total++;
		announce_set_node(e, ANNOUNCE_ABSENT, "create interrupted");
		log_info("%s: create of %s interrupted (%s); again when the session is back",
			 e->label, e->path, zk_rc_name(r->rc));
	} else {
		announce_set_node(e, ANNOUNCE_ABSENT, "create failed");
		announce_failed(e, "create", r->rc);
	}
	announce_after(e);
}

static void announce_deleted(void *arg, const struct zk_result *r)
{
	struct announce_entry *e = arg;
	const char *why = e->a->withdrawing ? "shutting down" : e->retired ? "removed from the configuration"
				 : e->rewrite ? "settings changed; registering again" : "check down";

	if (announce_stale(e))
		return;
	e->op = ANNOUNCE_OP_NONE;
	if (r->rc == ZOK || r->rc == ZNONODE) {
		zkretry_succeeded(&e->retry);
		if (r->rc == ZOK)
			e->deregistrations_total++;
		announce_set_node(e, ANNOUNCE_ABSENT, why);
	} else if (zk_rc_is_connection(r->rc)) {
		/* It may or may not be gone: assume it is there and delete again later. */
		e->failures_total++;
		announce_set_node(e, ANNOUNCE_PRESENT, "delete interrupted");
		log_info("%s: delete of %s interrupted (%s); again when the session is back",
			 e->label, e->path, zk_rc_name(r->rc));
	} else {
		announce_set_node(e, ANNOUNCE_PRESENT, "delete failed");
		announce_failed(e, "delete", r->rc);
	}
	announce_after(e);
}

/* Send the one request that brings the node closer to what the entry wants. */
static void announce_reconcile(struct announce_entry *e)
{
	struct announce *a = e->a;
	bool want = health_routable(&e->health) && !a->withdrawing && !e->retired;

	if (e->op != ANNOUNCE_OP_NONE || zkretry_pending(&e->retry) ||
	    zk_state(a->zk) != ZK_CONNECTED)
		return;
	if (e->node == ANNOUNCE_ABSENT && want) {
		if (announce_set_node(e, ANNOUNCE_CREATING, "check up"))
			announce_send_create(e);
	} else if (e->node == ANNOUNCE_PRESENT && (!want || e->rewrite)) {
		if (announce_set_node(e, ANNOUNCE_DELETING, want ? "settings changed" : "not wanted")) {
			e->op = ANNOUNCE_OP_DELETE;
			zk_delete(a->zk, e->path, -1, announce_deleted, e);
		}
	}
}

static void announce_on_check(struct check *c, bool passed, const char *reason,
			      uint64_t elapsed_ms, void *arg)
{
	struct announce_entry *e = arg;
	enum health_transition t;

	if (!passed)
		log_debug("%s: check failed: %s", e->label, reason);
	t = health_on_check(&e->health, &e->health_params, passed, now_ms());
	if (t == HEALTH_T_CHECK_UP)
		log_info("%s: check up after %u passes (%s)", e->label, e->health.check_passes,
			 reason);
	else if (t == HEALTH_T_CHECK_DOWN)
		log_warn("%s: check down after %u failures (%s)", e->label, e->health.check_fails,
			 reason);
	if (t != HEALTH_T_NONE)
		announce_reconcile(e);
}

/* ---- configuration ----------------------------------------------------------- */

static void check_conf_dup(struct check_conf *dst, const struct check_conf *src)
{
	*dst = *src;
	dst->send = NULL;
	dst->expect = NULL;
	if (src->send) {
		dst->send = xmalloc(src->send_len + 1);
		memcpy(dst->send, src->send, src->send_len + 1);
	}
	if (src->expect) {
		dst->expect = xmalloc(src->expect_len + 1);
		memcpy(dst->expect, src->expect, src->expect_len + 1);
	}
	dst->path = src->path ? xstrdup(src->path) : NULL;
	dst->password_file = src->password_file ? xstrdup(src->password_file) : NULL;
	dst->user = src->user ? xstrdup(src->user) : NULL;
}

static bool bytes_same(const char *a, size_t la, const char *b, size_t lb)
{
	if (!a || !b)
		return a == b;
	return la == lb && memcmp(a, b, la) == 0;
}

static bool check_conf_same(const struct check_conf *a, const struct check_conf *b)
{
	return a->type == b->type && a->interval_ms == b->interval_ms &&
	       a->timeout_ms == b->timeout_ms && a->rise == b->rise && a->fall == b->fall &&
	       bytes_same(a->send, a->send_len, b->send, b->send_len) &&
	       bytes_same(a->expect, a->expect_len, b->expect, b->expect_len) &&
	       bytes_same(a->path, a->path ? strlen(a->path) : 0, b->path,
			  b->path ? strlen(b->path) : 0) &&
	       a->role == b->role &&
	       bytes_same(a->password_file, a->password_file ? strlen(a->password_file) : 0,
			  b->password_file, b->password_file ? strlen(b->password_file) : 0) &&
	       bytes_same(a->user, a->user ? strlen(a->user) : 0, b->user, b->user ? strlen(b->user) : 0);
}

/* The address to announce for conf (auto resolved) into out. */
static void announce_resolve(const char *conf, char *out, size_t len)
{
	struct ifaddrs *list = NULL;

	if (strcmp(conf, "auto") != 0) {
		snprintf(out, len, "%s", conf);
		return;
	}
	if (getifaddrs(&list) == 0 && announce_pick_address(list, out, len)) {
		freeifaddrs(list);
		return;
	}
	if (list)
		freeifaddrs(list);
	log_warn("announce: address auto: no UP non-loopback IPv4 interface; announcing 127.0.0.1");
	snprintf(out, len, "127.0.0.1");
}

static void announce_start_check(struct announce_entry *e)
{
	char ep[INSTANCE_HOST_MAX + 8], err[256], label[sizeof(e->label) + sizeof(ep) + 8];
	struct net_addr addr;
	bool is_auto = strcmp(e->address_conf, "auto") == 0;

	instance_endpoint(is_auto ? "127.0.0.1" : e->address_conf, e->port, ep, sizeof(ep));
	if (!net_addr_parse(ep, &addr, err, sizeof(err))) {
		log_error("%s: cannot check %s: %s; never announced until fixed", e->label, ep, err);
		return;
	}
	snprintf(label, sizeof(label), "%s check=%s", e->label, ep);
	e->chk = check_start(e->a->base, &e->check_conf, &addr, label, announce_on_check, e);
	if (!e->chk)
		log_error("%s: the check cannot start; never announced until fixed", e->label);
}

static struct announce_entry *announce_entry_new(struct announce *a, const struct announce_conf *c)
{
	struct announce_entry *e = xcalloc(1, sizeof(*e));
	uint8_t raw[16];
	size_t n;

	e->a = a;
	e->service = xstrdup(c->service);
	e->base_path = xstrdup(c->base_path);
	e->address_conf = xstrdup(c->address);
	e->port = c->port;
	e->ssl_port = c->ssl_port;
	e->payload = c->payload ? json_deep_copy(c->payload) : NULL;
	e->payload_class = c->payload_class ? xstrdup(c->payload_class) : NULL;
	e->acl = announce_acl_for(c->acl, zk_has_auth(a->zk));
	check_conf_dup(&e->check_conf, &c->check);
	announce_health_params(&e->health_params, &e->check_conf);
	health_init_checking(&e->health, now_ms());
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		/* Not expected on Linux >= 3.17; a weaker id still works. */
		uint64_t x = now_us() ^ wall_ms() ^ (uintptr_t)e;
		struct rng r;
		rng_seed(&r, x);
		for (size_t i = 0; i < 16; i += 8) {
			x = rng_next(&r);
			memcpy(raw + i, &x, 8);
		}
	}
	announce_uuid_format(raw, e->id);
	for (size_t i = 0; i < a->n_adopted; i++) {
		struct announce_adopted *d = &a->adopted[i];
		if (!d->used && d->port == e->port && strcmp(d->service, e->service) == 0) {
			d->used = true;
			memcpy(e->id, d->id, sizeof(e->id));
			break;
		}
	}
	n = strlen(e->base_path);
	while (n > 1 && e->base_path[n - 1] == '/')
		n--;
	if (n == 1 && e->base_path[0] == '/')
		n = 0;
	e->path = xmalloc(n + strlen(e->service) + ANNOUNCE_UUID_LEN + 3);
	sprintf(e->path, "%.*s/%s/%s", (int)n, e->base_path, e->service, e->id);
	snprintf(e->label, sizeof(e->label), "announce svc=%s id=%s", e->service, e->id);
	announce_resolve(e->address_conf, e->address, sizeof(e->address));
	zkretry_init(&e->retry, a->base, &a->rng, ANNOUNCE_RETRY_BASE_MS, ANNOUNCE_RETRY_CAP_MS,
		     announce_retry, e);
	log_info("%s: announcing %s:%u at %s once its check passes %u times", e->label,
		 e->address, (unsigned)e->port, e->path, e->health_params.rise);
	announce_start_check(e);
	return e;
}

/* A running entry takes the settings of c (same identity). */
static void announce_entry_update(struct announce_entry *e, const struct announce_conf *c)
{
	char address[INSTANCE_HOST_MAX];
	const char *aconf = c->address;
	bool check_changed = !check_conf_same(&e->check_conf, &c->check) ||
			     strcmp(aconf, e->address_conf) != 0;
	bool class_changed = (e->payload_class == NULL) != (c->payload_class == NULL) ||
			     (c->payload_class && strcmp(e->payload_class, c->payload_class) != 0);

	/* Applies to the next node made; the current one keeps its ACLs. */
	e->acl = announce_acl_for(c->acl, zk_has_auth(e->a->zk));
	announce_resolve(aconf, address, sizeof(address));
	if (strcmp(address, e->address) != 0 || e->ssl_port != c->ssl_port ||
	    !((e->payload == NULL && c->payload == NULL) ||
	      (e->payload && c->payload && json_equal(e->payload, c->payload))) ||
	    class_changed) {
		log_info("%s: announced settings changed", e->label);
		snprintf(e->address, sizeof(e->address), "%s", address);
		e->ssl_port = c->ssl_port;
		json_decref(e->payload);
		e->payload = c->payload ? json_deep_copy(c->payload) : NULL;
		free(e->payload_class);
		e->payload_class = c->payload_class ? xstrdup(c->payload_class) : NULL;
		e->rewrite = e->node != ANNOUNCE_ABSENT;
	}
	if (check_changed) {
		free(e->address_conf);
		e->address_conf = xstrdup(aconf);
		free(e->check_conf.send);
		free(e->check_conf.expect);
		free(e->check_conf.path);
	free(e->check_conf.password_file);
	free(e->check_conf.user);
		check_conf_dup(&e->check_conf, &c->check);
		announce_health_params(&e->health_params, &e->check_conf);
		check_stop(e->chk);
		e->chk = NULL;
		log_info("%s: check settings changed; restarting the check (state kept: %s)",
			 e->label, health_routable(&e->health) ? "up" : "down");
		announce_start_check(e);
	}
}

static bool announce_same_identity(const struct announce_entry *e, const struct announce_conf *c)
{
	return strcmp(e->service, c->service) == 0 && strcmp(e->base_path, c->base_path) == 0 &&
	       e->port == c->port;
}

void announce_apply(struct announce *a, const struct announce_conf *v, size_t n)
{
	struct announce_entry **next = n ? xcalloc(n, sizeof(*next)) : NULL;

	if (a->withdrawing) {
		free(next);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < a->n_entries && !next[i]; j++) {
			struct announce_entry *e = a->entries[j];
			if (e && announce_same_identity(e, &v[i])) {
				next[i] = e;
				a->entries[j] = NULL;
				announce_entry_update(e, &v[i]);
			}
		}
		if (!next[i])
			next[i] = announce_entry_new(a, &v[i]);
	}
	for (size_t j = 0; j < a->n_entries; j++) {
		struct announce_entry *e = a->entries[j];
		if (!e)
			continue;
		log_info("%s: removed from the configuration", e->label);
		e->retired = true;
		check_stop(e->chk);
		e->chk = NULL;
		a->retired = xrealloc(a->retired, (a->n_retired + 1) * sizeof(*a->retired));
		a->retired[a->n_retired++] = e;
		announce_reconcile(e);
	}
	free(a->entries);
	a->entries = next;
	a->n_entries = n;
	for (size_t i = 0; i < n; i++)
		announce_reconcile(next[i]);
	announce_progress(a);
}

/* ---- session ---------------------------------------------------------------- */

static void announce_each(struct announce *a, void (*fn)(struct announce_entry *e))
{
	for (size_t i = 0; i < a->n_entries; i++)
		fn(a->entries[i]);
	for (size_t i = 0; i < a->n_retired; i++)
		fn(a->retired[i]);
}

/* The session is gone, and with it every ephemeral node it held. */
static void announce_lost_node(struct announce_entry *e)
{
	if (e->op != ANNOUNCE_OP_NONE)
		e->stale_op = true;
	else if (e->node == ANNOUNCE_PRESENT)
		announce_set_node(e, ANNOUNCE_ABSENT, "session expired; the node went with it");
}

static void announce_on_session(void *arg, enum zk_session_event ev)
{
	struct announce *a = arg;

	switch (ev) {
	case ZK_SESSION_EXPIRED:
		announce_each(a, announce_lost_node);
		break;
	case ZK_SESSION_NEW:
		/* Nodes of an earlier session (if the expiry was missed) are gone too. */
		announce_each(a, announce_lost_node);
		announce_each(a, announce_reconcile);
		break;
	case ZK_SESSION_RESUMED:
		announce_each(a, announce_reconcile);
		break;
	case ZK_SESSION_LOST:
		break;
	}
	announce_progress(a);
}

static const struct zk_observer announce_observer = {
	.on_session = announce_on_session,
};

/* ---- public ----------------------------------------------------------------- */

struct announce *announce_new(struct event_base *base, struct zk *zk)
{
	struct announce *a = xcalloc(1, sizeof(*a));

	a->base = base;
	a->zk = zk;
	a->reap_ev = event_new(base, -1, 0, announce_reap_cb, a);
	rng_seed(&a->rng, now_us() ^ (uintptr_t)a);
	zk_observe(zk, &announce_observer, a);
	return a;
}

static void announce_stop_check(struct announce_entry *e)
{
	check_stop(e->chk);
	e->chk = NULL;
	/* a delete waiting for its retry goes out now */
	zkretry_cancel(&e->retry);
}

bool announce_withdraw(struct announce *a, void (*done)(void *arg), void *arg)
{
	size_t pending = 0;

	a->withdrawing = true;
	announce_each(a, announce_stop_check);
	announce_each(a, announce_reconcile);
	for (size_t i = 0; i < a->n_entries; i++)
		pending += a->entries[i]->op != ANNOUNCE_OP_NONE ||
			   a->entries[i]->node != ANNOUNCE_ABSENT;
	for (size_t i = 0; i < a->n_retired; i++)
		pending += a->retired[i]->op != ANNOUNCE_OP_NONE ||
			   a->retired[i]->node != ANNOUNCE_ABSENT;
	if (pending == 0)
		return true;
	log_info("announce: withdrawing %zu registrations before draining", pending);
	a->withdrawn = done;
	a->withdrawn_arg = arg;
	return false;
}

void announce_adopt(struct announce *a, const char *service, uint16_t port,
		    const char id[ANNOUNCE_UUID_LEN + 1])
{
	a->adopted = xrealloc(a->adopted, (a->n_adopted + 1) * sizeof(*a->adopted));
	struct announce_adopted *d = &a->adopted[a->n_adopted++];
	d->service = xstrdup(service);
	d->port = port;
	memcpy(d->id, id, sizeof(d->id));
	d->id[ANNOUNCE_UUID_LEN] = '\0';
	d->used = false;
}

void announce_free(struct announce *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n_adopted; i++)
		free(a->adopted[i].service);
	free(a->adopted);
	zk_unobserve(a->zk, a);
	for (size_t i = 0; i < a->n_entries; i++)
		announce_entry_free(a->entries[i]);
	for (size_t i = 0; i < a->n_retired; i++)
		announce_entry_free(a->retired[i]);
	free(a->entries);
	free(a->retired);
	event_free(a->reap_ev);
	free(a);
}

size_t announce_count(const struct announce *a)
{
	return a ? a->n_entries : 0;
}

void announce_stats(const struct announce *a, size_t i, struct announce_stats *out)
{
	const struct announce_entry *e = a->entries[i];

	memset(out, 0, sizeof(*out));
	out->service = e->service;
	out->id = e->id;
	out->path = e->path;
	out->address = e->address;
	out->port = e->port;
	out->healthy = health_routable(&e->health);
	out->node = e->node;
	out->registrations_total = e->registrations_total;
	out->deregistrations_total = e->deregistrations_total;
	out->failures_total = e->failures_total;
	out->restored_total = e->restored_total;
	out->check_failures_total = e->health.check_failures_total;
	out->registered_at_ms = e->registered_at_ms;
}
