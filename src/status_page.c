/*
 * status_page — see status_page.h. Three parts: the document (what is shown,
 * read from the control thread's state and the workers' atomics), the
 * renderer (document -> HTML, for GET / without JavaScript), and the page
 * shell with its script, which renders the same document the same way in
 * the browser on every poll of /status.
 */
#include "status_page.h"
#include "announce.h"
#include "control.h"
#include "discovery.h"
#include "health.h"
#include "log.h"
#include "renderer.h"
#include "stats.h"
#include "sync.h"
#include "trunk_client.h"
#include "trunk_listener.h"
#include "zk.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_SAMPLE_MS 1000

/* One service's connection counter samples, by name (services come and go on reload). */
struct status_sampled {
	char *name;				/* owned */
	struct status_rate conns;		/* conn_total */
};

struct status_page {
	struct control *c;			/* ref: outlives the page */
	struct event *sampler;			/* owned; every STATUS_SAMPLE_MS */
	struct status_sampled *svcs;		/* owned; [n_svcs], as c->services at the last sample */
	size_t n_svcs;
};

/* ---- pure ------------------------------------------------------------------------ */

void status_rate_add(struct status_rate *r, uint64_t now_ms, uint64_t total)
{
	r->at_ms[r->next] = now_ms;
	r->total[r->next] = total;
	r->next = (r->next + 1) % STATUS_RATE_SAMPLES;
	if (r->n < STATUS_RATE_SAMPLES)
		r->n++;
}

double status_rate_per_s(const struct status_rate *r)
{
	if (r->n < 2)
		return -1;
	unsigned newest = (r->next + STATUS_RATE_SAMPLES - 1) % STATUS_RATE_SAMPLES;
	unsigned oldest = (r->next + STATUS_RATE_SAMPLES - r->n) % STATUS_RATE_SAMPLES;
	uint64_t dt = r->at_ms[newest] - r->at_ms[oldest];
	/* A counter never goes back; a service replaced under the same name might. */
	if (dt == 0 || r->total[newest] < r->total[oldest])
		return -1;
	return (double)(r->total[newest] - r->total[oldest]) * 1000.0 / (double)dt;
}

void status_duration(uint64_t ms, char *buf, size_t len)
{
	uint64_t s = ms / 1000;
	if (ms < 1000)
		snprintf(buf, len, "%" PRIu64 "ms", ms);
	else if (s < 60)
		snprintf(buf, len, "%" PRIu64 "s", s);
	else if (s < 3600)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
	else
		snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s / 3600 % 24);
}

void status_instance_state(const char *state, uint64_t ejected_for_ms, unsigned slow_pct,
			   char *buf, size_t len)
{
	char d[32];
	if (strcmp(state, "ejected") == 0 && ejected_for_ms > 0) {
		status_duration(ejected_for_ms, d, sizeof(d));
		snprintf(buf, len, "%s, %s left", state, d);
	} else if (strcmp(state, "healthy") == 0 && slow_pct < 100) {
		snprintf(buf, len, "%s, slow start %u%%", state, slow_pct);
	} else {
		snprintf(buf, len, "%s", state);
	}
}

/* ---- the renderer ------------------------------------------------------------------ */

static void html_text(struct evbuffer *b, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '<': evbuffer_add(b, "&lt;", 4); break;
		case '>': evbuffer_add(b, "&gt;", 4); break;
		case '&': evbuffer_add(b, "&amp;", 5); break;
		case '"': evbuffer_add(b, "&quot;", 6); break;
		case '\'': evbuffer_add(b, "&#39;", 5); break;
		default: evbuffer_add(b, s, 1);
		}
	}
}

static const char *str_at(const json_t *arr, size_t i)
{
	const char *s = json_string_value(json_array_get(arr, i));
	return s ? s : "";
}

/* <tag>text</tag>, text escaped (NULL: empty). tag is ours, never outside data. */
static void html_element(struct evbuffer *b, const char *tag, const char *text)
{
	evbuffer_add_printf(b, "<%s>", tag);
	html_text(b, text);
	evbuffer_add_printf(b, "</%s>", tag);
}

/* facts: [[label, value(, "warn")], ...] as <span>s; the script builds the same. */
static void render_facts(const json_t *facts, struct evbuffer *b)
{
	size_t i;
	const json_t *f;
	evbuffer_add_printf(b, "<p class=\"facts\">");
	json_array_foreach(facts, i, f) {
		evbuffer_add_printf(b, "<span%s>", json_array_size(f) > 2 ? " class=\"warn\"" : "");
		html_element(b, "b", str_at(f, 0));
		evbuffer_add(b, " ", 1);
		html_text(b, str_at(f, 1));
		evbuffer_add_printf(b, "</span> ");
	}
	evbuffer_add_printf(b, "</p>");
}

static void render_table(const json_t *t, struct evbuffer *b)
{
	size_t i, j;
	const json_t *v, *row;
	evbuffer_add_printf(b, "<section>");
	html_element(b, "h2", json_string_value(json_object_get(t, "title")));
	render_facts(json_object_get(t, "facts"), b);
	evbuffer_add_printf(b, "<table><thead><tr>");
	json_array_foreach(json_object_get(t, "columns"), i, v)
		html_element(b, "th", json_string_value(v));
	evbuffer_add_printf(b, "</tr></thead><tbody>");
	json_array_foreach(json_object_get(t, "rows"), i, row) {
		evbuffer_add_printf(b, "<tr class=\"");
		html_text(b, json_string_value(json_object_get(row, "class")));
		evbuffer_add_printf(b, "\">");
		json_array_foreach(json_object_get(row, "cells"), j, v)
			html_element(b, "td", json_string_value(v));
		evbuffer_add_printf(b, "</tr>");
	}
	evbuffer_add_printf(b, "</tbody></table></section>");
}

void status_page_render(const json_t *doc, struct evbuffer *b)
{
	size_t i;
	const json_t *t;
	evbuffer_add_printf(b, "<div id=\"main\">");
	html_element(b, "h1", json_string_value(json_object_get(doc, "title")));
	render_facts(json_object_get(doc, "facts"), b);
	json_array_foreach(json_object_get(doc, "tables"), i, t)
		render_table(t, b);
	evbuffer_add_printf(b, "</div>");
}

/* ---- the document ------------------------------------------------------------------ */

static void fact(json_t *facts, const char *label, const char *value, bool warn)
{
	json_t *f = json_pack("[ss]", label, value ? value : "");
	if (warn)
		json_array_append_new(f, json_string("warn"));
	json_array_append_new(facts, f);
}

static void factf(json_t *facts, const char *label, bool warn, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void factf(json_t *facts, const char *label, bool warn, const char *fmt, ...)
{
	char v[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v, sizeof(v), fmt, ap);
	va_end(ap);
	fact(facts, label, v, warn);
}

static json_t *table_new(const char *title, const char *const *columns, size_t n)
{
	json_t *cols = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(cols, json_string(columns[i]));
	return json_pack("{s:s, s:o, s:o, s:o}", "title", title, "facts", json_array(),
			 "columns", cols, "rows", json_array());
}

/* Append a row of state class cls to table; returns its cells, to fill one per column. */
static json_t *row_new(json_t *table, const char *cls)
{
	json_t *cells = json_array();
	json_array_append_new(json_object_get(table, "rows"),
			      json_pack("{s:s, s:o}", "class", cls, "cells", cells));
	return cells;
}

static void cell(json_t *cells, const char *s)
{
	json_array_append_new(cells, json_string(s ? s : ""));
}

static void cellf(json_t *cells, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cellf(json_t *cells, const char *fmt, ...)
{
	char v[320];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v, sizeof(v), fmt, ap);
	va_end(ap);
	cell(cells, v);
}

static const struct status_rate *rate_of(const struct status_page *p, const char *name)
{
	for (size_t i = 0; i < p->n_svcs; i++)
		if (strcmp(p->svcs[i].name, name) == 0)
			return &p->svcs[i].conns;
	return NULL;
}

static const char *const instance_columns[] = {
	"instance", "address", "state", "weight", "active", "connections", "connect failures",
	"ejections", "pool idle", "pool reused / opened", "bytes in / out",
};

static json_t *service_table(struct status_page *p, size_t idx, uint64_t now, uint64_t wall)
{
	struct control *c = p->c;
	struct service *svc = c->services[idx];
	const struct service_conf *sc = &c->cfg->cfg->services[idx];
	char title[96], d[32];
	snprintf(title, sizeof(title), "service %s", svc->name);
	json_t *t = table_new(title, instance_columns, ARRAY_SIZE(instance_columns));
	json_t *facts = json_object_get(t, "facts");

	fact(facts, "listen", sc->listen ? sc->listen : "off (not proxied)", false);
	fact(facts, "balance", balance_kind_name(sc->balance), false);
	struct discovery_stats ds;
	bool zk = c->disc && discovery_stats(c->disc, svc->name, &ds);
	const char *view = service_view_name(svc->view);
	bool view_bad = svc->view != SERVICE_VIEW_CONNECTED && svc->view != SERVICE_VIEW_STATIC;
	if (zk && ds.last_update_ms && wall >= ds.last_update_ms) {
		status_duration(wall - ds.last_update_ms, d, sizeof(d));
		factf(facts, "discovery", view_bad, "%s, last change %s ago", view, d);
	} else {
		fact(facts, "discovery", view, view_bad);
	}
	if (zk && (ds.skipped || ds.holding))
		factf(facts, "skipped nodes", true, "%zu%s", ds.skipped,
		      ds.holding ? ", a collapse is held" : "");
	if (sc->origin && strcmp(sc->origin, "file") != 0)
		fact(facts, "origin", sc->origin, false);
	pthread_mutex_lock(&svc->health_lock);
	bool panic = svc->panic;
	pthread_mutex_unlock(&svc->health_lock);
	fact(facts, "panic", panic ? "PANIC: balancing over all instances" : "no", panic);

	size_t n;
	struct stats_instance *v = stats_instances_of(svc, &n);
	uint64_t active = 0;
	for (size_t i = 0; i < n; i++) {
		struct backend *be = v[i].be;
		char state[64 + sizeof(be->admin_note)];
		unsigned pct = 100;
		uint32_t w = backend_weight(be);
		uint32_t now_w = health_slow_start_weight(w, atomic_load(&be->serving_since_ms), now,
							  svc->slow_start_ms);
		if (w && now_w < w)
			pct = (unsigned)(now_w * 100u / w);
		status_instance_state(v[i].state, v[i].ejected_for_ms, pct, state, sizeof(state));
		if (be->admin_note[0]) {
			/* Who drained it or set its weight: the runtime API's last change. */
			size_t sl = strlen(state);
			snprintf(state + sl, sizeof(state) - sl, " (%s)", be->admin_note);
		}
		uint32_t act = atomic_load(&be->active);
		active += act;
		json_t *cells = row_new(t, v[i].state);
		cell(cells, be->id);
		cell(cells, be->name);
		cell(cells, state);
		cellf(cells, "%u", w);
		cellf(cells, "%u", act);
		cellf(cells, "%" PRIu64, atomic_load(&be->conn_total));
		cellf(cells, "%" PRIu64 " (%u in a row)", atomic_load(&be->connect_failures),
		      v[i].consecutive_failures);
		cellf(cells, "%u", v[i].ejections);
		cellf(cells, "%u", atomic_load(&be->idle));
		cellf(cells, "%" PRIu64 " / %" PRIu64, atomic_load(&be->upstream_reused),
		      atomic_load(&be->upstream_opened));
		cellf(cells, "%" PRIu64 " / %" PRIu64, atomic_load(&be->bytes_in),
		      atomic_load(&be->bytes_out));
	}
	stats_instances_free(v, n);

	const struct status_rate *r = rate_of(p, svc->name);
	double rate = r ? status_rate_per_s(r) : -1;
	factf(facts, "active", false, "%" PRIu64, active);
	if (rate >= 0)
		factf(facts, "rate", false, "%.1f conn/s", rate);
	else
		fact(facts, "rate", "-", false);
	factf(facts, "connections", false, "%" PRIu64, atomic_load(&svc->conn_total));
	uint64_t failed = atomic_load(&svc->conn_failed);
	factf(facts, "failed", failed > 0, "%" PRIu64, failed);
	factf(facts, "retries", false, "%" PRIu64, atomic_load(&svc->retries));
	/* The queue beyond max_connections: shown where a cap is set or anyone queued. */
	uint64_t queued = atomic_load(&svc->queued), timeouts = atomic_load(&svc->queue_timeouts);
	if (sc->max_connections || queued || timeouts)
		factf(facts, "queued", queued || timeouts, "%" PRIu64 " now, %" PRIu64 " timed out",
		      queued, timeouts);
	return t;
}

static const char *const announce_columns[] = {
	"service", "id", "announced as", "node", "check", "registrations", "failures",
};

static json_t *announce_table(struct announce *a)
{
	json_t *t = table_new("announce", announce_columns, ARRAY_SIZE(announce_columns));
	for (size_t i = 0; i < announce_count(a); i++) {
		struct announce_stats as;
		announce_stats(a, i, &as);
		bool up = as.healthy && as.node == ANNOUNCE_PRESENT;
		json_t *cells = row_new(t, up ? "healthy" : as.healthy ? "checking" : "down");
		cell(cells, as.service);
		cell(cells, as.id);
		cellf(cells, "%s:%u at %s", as.address, as.port, as.path);
		cell(cells, announce_node_name(as.node));
		cell(cells, as.healthy ? "up" : "down");
		cellf(cells, "%" PRIu64, as.registrations_total);
		cellf(cells, "%" PRIu64 " (check: %" PRIu64 ")", as.failures_total,
		      as.check_failures_total);
	}
	return t;
}

static const char *const trunk_peer_columns[] = {
	"peer", "connections (opened)", "handshake failures", "streams open", "streams",
	"stream failures", "bytes in / out", "window stalls",
};

#define PEER_LOAD(f) atomic_load_explicit(&st->f, memory_order_relaxed)
/* One row per peer host of the trunk's calling side (arg: the table). */
static void trunk_peer_row(const char *peer, const struct trunk_stats *st, void *arg)
{
	uint64_t failures = PEER_LOAD(connect_failures), hs = PEER_LOAD(handshake_failures);
	uint32_t conns = PEER_LOAD(conns_open);
	json_t *cells = row_new(arg, conns ? "healthy" : hs ? "down" : "checking");
	cell(cells, peer);
	cellf(cells, "%" PRIu32 " (%" PRIu64 ")", conns, (uint64_t)PEER_LOAD(conns_accepted));
	cellf(cells, "%" PRIu64, hs);
	cellf(cells, "%" PRIu32, (uint32_t)PEER_LOAD(streams_open));
	cellf(cells, "%" PRIu64, (uint64_t)PEER_LOAD(streams));
	cellf(cells, "%" PRIu64, failures);
	cellf(cells, "%" PRIu64 " / %" PRIu64, (uint64_t)PEER_LOAD(bytes_in),
	      (uint64_t)PEER_LOAD(bytes_out));
	cellf(cells, "%" PRIu64, (uint64_t)PEER_LOAD(window_stalls));
}
#undef PEER_LOAD

static const char *const sync_columns[] = {
	"znode", "file", "state", "writes", "errors", "refused", "command failures", "last change",
};

static json_t *sync_table(struct sync *s, uint64_t wall)
{
	json_t *t = table_new("sync", sync_columns, ARRAY_SIZE(sync_columns));
	for (size_t i = 0; i < sync_count(s); i++) {
		struct sync_stats ss;
		char d[32] = "-";
		sync_stats(s, i, &ss);
		bool bad = ss.errors_total || ss.command_failures_total || ss.refused_total;
		json_t *cells = row_new(t, ss.state != SYNC_SYNCED ? "checking" : bad ? "down" : "healthy");
		cell(cells, ss.path);
		cell(cells, ss.target);
		cell(cells, sync_state_name(ss.state));
		cellf(cells, "%" PRIu64, ss.writes_total);
		cellf(cells, "%" PRIu64, ss.errors_total);
		cellf(cells, "%" PRIu64, ss.refused_total);
		cellf(cells, "%" PRIu64, ss.command_failures_total);
		if (ss.last_change_ms && wall >= ss.last_change_ms) {
			status_duration(wall - ss.last_change_ms, d, sizeof(d));
			strncat(d, " ago", sizeof(d) - strlen(d) - 1);
		}
		cell(cells, d);
	}
	return t;
}

static const char *const render_columns[] = {
	"service", "file", "state", "instances", "written", "unchanged", "kept: below min / check / write",
	"on_change runs / failed", "left out",
};

static uint64_t num(const json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));
	return v > 0 ? (uint64_t)v : 0;
}

/* From the renderer's own status (what /services shows under "render"). */
static json_t *renderer_table(const json_t *entries)
{
	json_t *t = table_new("render", render_columns, ARRAY_SIZE(render_columns));
	size_t i;
	const json_t *e;
	json_array_foreach(entries, i, e) {
		const char *state = json_string_value(json_object_get(e, "state"));
		bool bad = num(e, "check_failed") || num(e, "write_failed") || num(e, "on_change_failed") ||
			   num(e, "below_min_instances");
		json_t *cells = row_new(t, bad ? "down" : state && strcmp(state, "idle") == 0 ? "healthy"
										      : "checking");
		cell(cells, json_string_value(json_object_get(e, "service")));
		cell(cells, json_string_value(json_object_get(e, "file")));
		cell(cells, state);
		cellf(cells, "%" PRIu64, num(e, "instances"));
		cellf(cells, "%" PRIu64, num(e, "written"));
		cellf(cells, "%" PRIu64, num(e, "unchanged"));
		cellf(cells, "%" PRIu64 " / %" PRIu64 " / %" PRIu64, num(e, "below_min_instances"),
		      num(e, "check_failed"), num(e, "write_failed"));
		cellf(cells, "%" PRIu64 " / %" PRIu64, num(e, "on_change_runs"), num(e, "on_change_failed"));
		const json_t *first = json_array_get(json_object_get(e, "left_out"), 0);
		if (first)
			cellf(cells, "%" PRIu64 " (%s: %s)", num(e, "left_out_count"),
			      json_string_value(json_object_get(first, "id")) ?: "?",
			      json_string_value(json_object_get(first, "reason")) ?: "?");
		else
			cellf(cells, "%" PRIu64, num(e, "left_out_count"));
	}
	return t;
}

json_t *status_page_doc(struct status_page *p)
{
	struct control *c = p->c;
	uint64_t now = now_ms(), wall = wall_ms();
	char title[64], d[32];
	snprintf(title, sizeof(title), "zklb %s", ZKLB_VERSION);
	json_t *facts = json_array();
	json_t *tables = json_array();
	json_t *doc = json_pack("{s:s, s:o, s:o}", "title", title, "facts", facts, "tables", tables);

	status_duration(now - c->started_ms, d, sizeof(d));
	fact(facts, "uptime", d, false);
	factf(facts, "workers", false, "%u", c->n_workers);
	if (c->draining)
		fact(facts, "state", "DRAINING", true);
	if (c->zk) {
		struct zk_stats zs;
		zk_stats(c->zk, &zs);
		status_duration(now >= zs.state_since_ms ? now - zs.state_since_ms : 0, d, sizeof(d));
		factf(facts, "zookeeper", zs.state != ZK_CONNECTED, "%s for %s, session 0x%" PRIx64
		      ", %" PRIu64 " expirations", zk_state_name(zs.state), d, (uint64_t)zs.session_id,
		      zs.expirations_total);
	} else {
		fact(facts, "zookeeper", "not configured", false);
	}
	factf(facts, "reloads", c->reload_failures > 0, "%" PRIu64 " (%" PRIu64 " rejected)",
	      c->reloads, c->reload_failures);

	for (size_t i = 0; i < c->n_services; i++)
		json_array_append_new(tables, service_table(p, i, now, wall));
	if (c->announce && announce_count(c->announce))
		json_array_append_new(tables, announce_table(c->announce));
	if (c->sync && sync_count(c->sync))
		json_array_append_new(tables, sync_table(c->sync, wall));
	if (c->trunk_client) {
		json_t *t = table_new("trunk peers", trunk_peer_columns, ARRAY_SIZE(trunk_peer_columns));
		trunk_client_each_peer(c->trunk_client, trunk_peer_row, t);
		json_array_append_new(tables, t);
	}
	if (renderer_count(c->renderer)) {
		json_t *entries = renderer_status_json(c->renderer);
		json_array_append_new(tables, renderer_table(entries));
		json_decref(entries);
	}
	return doc;
}

/* ---- the page ---------------------------------------------------------------------- */

static const char page_head[] =
	"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
	"<title>zklb status</title>"
	/* Without JavaScript, the page reloads itself; with it, the script polls instead. */
	"<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>"
	"<style>"
	"body{font:13px/1.35 system-ui,sans-serif;margin:1em 1.5em;color:#222}"
	"h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1.2em 0 .2em}"
	".facts span{display:inline-block;margin-right:1.2em}.facts b{color:#555;font-weight:600}"
	".warn{color:#b00;font-weight:bold}"
	"table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:2px 7px;text-align:left;"
	"white-space:nowrap}"
	"th{background:#eee}tr.healthy{background:#dfd}tr.ejected,tr.down{background:#fcc}"
	"tr.checking,tr.resolving{background:#ffc}tr.draining{background:#ddd;color:#555}"
	"#foot{margin-top:1.5em;color:#666}"
	"</style></head><body data-polls=\"0\">";

/*
 * The script renders a document exactly as status_page_render() does, with
 * createElement/textContent only (never innerHTML), and polls /status every
 * 2 s. A failed poll says so in the footer and the last table stays.
 */
static const char page_script[] =
	"<script>(function(){\n"
	"'use strict';\n"
	"function el(tag,cls,text){var e=document.createElement(tag);"
	"if(cls)e.className=cls;if(text!=null)e.textContent=text;return e;}\n"
	"function facts(list){var p=el('p','facts');(list||[]).forEach(function(f){"
	"var s=el('span',f.length>2?'warn':null);s.appendChild(el('b',null,f[0]));"
	"s.appendChild(document.createTextNode(' '+f[1]));p.appendChild(s);"
	"p.appendChild(document.createTextNode(' '));});return p;}\n"
	"function table(t){var sec=el('section');sec.appendChild(el('h2',null,t.title));"
	"sec.appendChild(facts(t.facts));var tb=el('table'),th=el('thead'),tr=el('tr');"
	"t.columns.forEach(function(c){tr.appendChild(el('th',null,c));});th.appendChild(tr);"
	"tb.appendChild(th);var body=el('tbody');t.rows.forEach(function(r){var row=el('tr',r['class']);"
	"r.cells.forEach(function(c){row.appendChild(el('td',null,c));});body.appendChild(row);});"
	"tb.appendChild(body);sec.appendChild(tb);return sec;}\n"
	"function render(doc){var m=el('div');m.id='main';m.appendChild(el('h1',null,doc.title));"
	"m.appendChild(facts(doc.facts));(doc.tables||[]).forEach(function(t){m.appendChild(table(t));});"
	"document.getElementById('main').replaceWith(m);}\n"
	"var polls=0,note=document.getElementById('updated');\n"
	"function poll(){fetch('/status',{cache:'no-store'}).then(function(r){"
	"if(!r.ok)throw new Error('HTTP '+r.status);return r.json();}).then(function(doc){"
	"render(doc);polls++;document.body.setAttribute('data-polls',String(polls));"
	"note.textContent='live: updated '+new Date().toLocaleTimeString()+', every 2 s';"
	"}).catch(function(e){note.textContent='poll of /status failed ('+e.message+'); "
	"showing the last answer';}).then(function(){setTimeout(poll,2000);});}\n"
	"poll();\n"
	"})();</script>";

void status_page_html(struct status_page *p, struct evbuffer *out)
{
	json_t *doc = status_page_doc(p);
	evbuffer_add(out, page_head, sizeof(page_head) - 1);
	status_page_render(doc, out);
	evbuffer_add_printf(out, "<p id=\"foot\"><span id=\"updated\">as of the page load "
			    "(reloads every 10 s without JavaScript)</span> · "
			    "<a href=\"/status\">/status</a> · <a href=\"/services\">/services</a> · "
			    "<a href=\"/metrics\">/metrics</a></p>");
	evbuffer_add(out, page_script, sizeof(page_script) - 1);
	evbuffer_add_printf(out, "</body></html>\n");
	json_decref(doc);
}

void status_page_json(struct status_page *p, struct evbuffer *out)
{
	json_t *doc = status_page_doc(p);
	char *s = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(doc);
	if (s) {
		evbuffer_add(out, s, strlen(s));
		free(s);
	}
	evbuffer_add(out, "\n", 1);
}

/* ---- the rate sampler -------------------------------------------------------------- */

static void on_sample(evutil_socket_t fd, short what, void *arg)
{
	struct status_page *p = arg;
	struct control *c = p->c;
	uint64_t now = now_ms();
	struct status_sampled *v = xcalloc(c->n_services ? c->n_services : 1, sizeof(*v));
	for (size_t i = 0; i < c->n_services; i++) {
		const char *name = c->services[i]->name;
		for (size_t j = 0; j < p->n_svcs; j++) {
			if (p->svcs[j].name && strcmp(p->svcs[j].name, name) == 0) {
				v[i] = p->svcs[j];
				p->svcs[j].name = NULL;		/* moved */
				break;
			}
		}
		if (!v[i].name)
			v[i].name = xstrdup(name);
		status_rate_add(&v[i].conns, now, atomic_load(&c->services[i]->conn_total));
	}
	for (size_t j = 0; j < p->n_svcs; j++)
		free(p->svcs[j].name);
	free(p->svcs);
	p->svcs = v;
	p->n_svcs = c->n_services;
}

struct status_page *status_page_new(struct control *c)
{
	struct status_page *p = xcalloc(1, sizeof(*p));
	p->c = c;
	p->sampler = event_new(c->base, -1, EV_PERSIST, on_sample, p);
	struct timeval tv = { STATUS_SAMPLE_MS / 1000, 0 };
	if (!p->sampler || event_add(p->sampler, &tv) != 0)
		log_warn("status page: cannot start the rate sampler; rates will show as -");
	on_sample(-1, 0, p);
	return p;
}

void status_page_free(struct status_page *p)
{
	if (!p)
		return;
	if (p->sampler)
		event_free(p->sampler);
	for (size_t i = 0; i < p->n_svcs; i++)
		free(p->svcs[i].name);
	free(p->svcs);
	free(p);
}
