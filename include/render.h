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

#include <stdbool.h>
#include <stdint.h>

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

#endif
