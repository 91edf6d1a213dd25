/*
 * render — a service's instances written into a file for software that must
 * hold the member list itself (nginx upstreams, HAProxy server lines, client
 * hash rings), with a validated, atomic, coalesced swap (the `render:` list).
 *
 * This header's first part is the pure policy, free of clocks and I/O:
 *   - quiescence: a changing set is written once it has been stable for
 *     `wait.min`, and at least every `wait.max` while it keeps changing, so
 *     a deploy that replaces instances one by one costs a reload or two, not
 *     one per instance;
 *   - what may reach a file: a rendered file is configuration another program
 *     executes, and every value in it comes from ZooKeeper. An address must
 *     be an IP literal or a host name, ids and payload values a plain token,
 *     so no value can add a line, a brace or a directive.
 */
#ifndef ZKLB_RENDER_H
#define ZKLB_RENDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct render;
struct render_conf;

#define RENDER_TOKEN_MAX 255			/* bytes of an id or payload value */

/* Changes not yet written: when the first and the latest arrived. */
struct render_wait {
	uint64_t first_ms;			/* first unwritten change; 0 = nothing pending */
	uint64_t last_ms;			/* latest change */
};

/* The set changed at now_ms (> 0). */
void render_wait_change(struct render_wait *w, uint64_t now_ms);

/*
 * When to write what is pending: min_ms after the latest change, but no later
 * than max_ms after the first. UINT64_MAX when nothing is pending.
 */
uint64_t render_wait_due(const struct render_wait *w, uint64_t min_ms, uint64_t max_ms);

/* What was pending has been written (or found unchanged). */
void render_wait_done(struct render_wait *w);

/* An IPv4 or IPv6 literal, or an RFC 1123 host name (labels of [A-Za-z0-9-], dots). */
bool render_host_ok(const char *s);

/* 1..RENDER_TOKEN_MAX bytes of [A-Za-z0-9._:-]: ids, payload keys and values. */
bool render_token_ok(const char *s);

/* --- The entry: one `render:` item, driven by the control thread ---------------------
 *
 * The control thread offers each entry its service's current set on every
 * tick (render_offer) and lets it act (render_tick). An entry writes only
 * when the rendered bytes differ from what the file holds (read at start, so
 * an unchanged set never reloads anything, start included); with a
 * check_command the candidate is written beside the file and checked first.
 *
 * Lifecycle (enum render_state, changed by render_set_state() only):
 *   IDLE --due, bytes differ--> CHECKING --check passed--> (file replaced)
 *   IDLE or CHECKING --file replaced, on_change set--> RELOADING --> IDLE
 * Thread: the control thread.
 */

/* One instance offered to an entry; strings are borrowed for the call. */
struct render_member {
	const char *id;
	const char *host;			/* as discovered: IP literal or host name */
	uint16_t port;
	uint16_t ssl_port;			/* 0 = none */
	uint32_t weight;
	const char *payload;			/* instance.h's "key\0value\0" pairs, or NULL */
	uint16_t payload_len;
};

enum render_state {
	RENDER_IDLE = 0,
	RENDER_CHECKING,			/* check_command runs on the candidate */
	RENDER_RELOADING,			/* on_change runs */
	RENDER_STATE_COUNT
};

struct render_stats {
	uint64_t written;			/* the file replaced */
	uint64_t unchanged;			/* a due render gave the bytes the file holds */
	uint64_t below_min;			/* skipped: fewer than min_instances */
	uint64_t check_failed;			/* check_command refused a candidate */
	uint64_t write_failed;			/* the file could not be written */
	uint64_t on_change_failed;		/* on_change exited non-zero, timed out or did not start */
	uint64_t on_change_runs;		/* on_change started */
	uint64_t left_out;			/* instances of the last set left out of the file */
	int64_t last_written_ms;		/* wall clock; 0 = not by this process */
	int last_check_exit;			/* -1 = never ran; else the exit status (or 128+signal) */
	int last_on_change_exit;		/* likewise */
};

/*
 * New entry for rc (copied). Reads the file's current bytes. NULL, with a
 * message in err, when the template does not compile (zklb check refuses
 * that first).
 */
struct render *render_new(struct event_base *base, const struct render_conf *rc, char *err,
			  size_t errlen);

/* Free now, or once a running command is done when one runs (a reload). */
void render_retire(struct render *r);

/* Free now; a running command is left to finish on its own (exit). */
void render_free(struct render *r);

/* Same settings? A reload keeps an entry whose settings did not change. */
bool render_conf_same(const struct render *r, const struct render_conf *rc);

const struct render_conf *render_conf(const struct render *r);

/* The set as it is now (any order); a change starts the wait. */
void render_offer(struct render *r, const struct render_member *v, size_t n, uint64_t now_ms);

/* Write what is due. */
void render_tick(struct render *r, uint64_t now_ms);

const struct render_stats *render_stats(const struct render *r);
const char *render_state_name(enum render_state s);

/* The entry for /services: file, state, stats, the instances left out and why. */
json_t *render_status_json(const struct render *r);

/*
 * What rc would write for the set v[0..n): a malloc'd buffer of *len bytes,
 * *left_out instances left out. NULL, with a message in err, when the
 * template does not compile. For `zklb render`.
 */
char *render_once(const struct render_conf *rc, const struct render_member *v, size_t n,
		  size_t *len, size_t *left_out, char *err, size_t errlen);

#endif
