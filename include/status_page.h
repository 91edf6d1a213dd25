/*
 * status_page — the admin API's human page, GET / and its data, GET /status.
 *
 * What an operator wants at a glance during an incident: ZooKeeper's session,
 * then per service its listen address, discovery state and age, panic flag,
 * active connections, connection rate and failures, and one row per
 * instance (state with its detail — "ejected, 12s left", "healthy, slow
 * start 40%" —, traffic, failures, pool); then announce, sync and render.
 *
 * One document carries it all, built on the control thread: a title, facts
 * (label, value[, "warn"]) and tables (title, facts, columns, rows of cells
 * with a state class), every value already a string. GET /status sends it as
 * JSON; GET / renders the same document as plain HTML tables (so the page
 * works without JavaScript) plus a small inline script that polls /status
 * every 2 s and renders it again with the same structure through
 * textContent. A new column or state is a change here only. Everything
 * shown is escaped: instance ids and addresses come from ZooKeeper. No
 * external asset is loaded.
 *
 * The connection rate is the slope of each service's connection counter over
 * the last 10 s, sampled once a second by a timer of the page's own.
 *
 * Thread: the control thread (c->base).
 */
#ifndef ZKLB_STATUS_PAGE_H
#define ZKLB_STATUS_PAGE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct control;
struct evbuffer;
struct status_page;

/* The page of control c (which must outlive it); starts the rate sampler. */
struct status_page *status_page_new(struct control *c);
void status_page_free(struct status_page *p);

/* The document of the page, now. Caller owns the reference. */
json_t *status_page_doc(struct status_page *p);

/* GET /: the page, server-rendered, with the polling script. */
void status_page_html(struct status_page *p, struct evbuffer *out);

/* GET /status: the document as compact JSON and a newline. */
void status_page_json(struct status_page *p, struct evbuffer *out);

/* ---- pure pieces, exported for the unit tests ---- */

#define STATUS_RATE_SAMPLES 11		/* one a second: a 10 s window */

/* A counter's recent samples, oldest first once full (a ring). */
struct status_rate {
	uint64_t at_ms[STATUS_RATE_SAMPLES];	/* monotonic */
	uint64_t total[STATUS_RATE_SAMPLES];	/* the counter then */
	unsigned n;				/* samples held */
	unsigned next;				/* where the next one goes */
};

void status_rate_add(struct status_rate *r, uint64_t now_ms, uint64_t total);

/* Per second between the oldest and newest sample; -1 with fewer than two. */
double status_rate_per_s(const struct status_rate *r);

/* "950ms", "12s", "3m04s", "2h05m", "3d04h". */
void status_duration(uint64_t ms, char *buf, size_t len);

/*
 * An instance's state with its detail, into buf: "ejected, 12s left",
 * "healthy, slow start 40%" (slow_pct < 100), or the state alone.
 */
void status_instance_state(const char *state, uint64_t ejected_for_ms, unsigned slow_pct,
			   char *buf, size_t len);

/* Render a document (as status_page_doc builds it) as HTML, escaping every string. */
void status_page_render(const json_t *doc, struct evbuffer *out);

#endif
