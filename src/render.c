/*
 * render — see render.h.
 *
 * An entry keeps three things: the set last offered (validated, sorted,
 * fingerprinted), the bytes the file holds (read at start, then what we
 * wrote), and the wait. When the wait is due the set is rendered; bytes
 * equal to the file's are dropped, others replace the file (through the
 * check_command when there is one) and run on_change. A check that refused
 * some bytes is not run again for the same bytes.
 */
#include "render.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "command.h"
#include "config.h"
#include "log.h"
#include "template.h"
#include "util.h"

#define RENDER_FILE_MAX (16u << 20)		/* bytes of the current file read at start */
#define RENDER_LEFT_OUT_SHOWN 16		/* instances left out, listed in /services */

void render_wait_change(struct render_wait *w, uint64_t now_ms)
{
	if (w->first_ms == 0)
		w->first_ms = now_ms;
	w->last_ms = now_ms;
}

uint64_t render_wait_due(const struct render_wait *w, uint64_t min_ms, uint64_t max_ms)
{
	if (w->first_ms == 0)
		return UINT64_MAX;
	uint64_t quiet = w->last_ms + min_ms, cap = w->first_ms + max_ms;
	return quiet < cap ? quiet : cap;
}

void render_wait_done(struct render_wait *w)
{
	w->first_ms = 0;
	w->last_ms = 0;
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool render_host_ok(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1)
		return true;
	size_t len = strlen(s);
	if (len == 0 || len > 253)
		return false;
	size_t label = 0;
	for (size_t i = 0; i <= len; i++) {
		char c = s[i];
		if (c == '.' || c == '\0') {
			/* No empty label, none starting or ending with '-'. */
			if (label == 0 || label > 63 || s[i - label] == '-' || s[i - 1] == '-')
				return false;
			label = 0;
		} else if (is_alnum(c) || c == '-') {
			label++;
		} else {
			return false;
		}
	}
	return true;
}

bool render_token_ok(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > RENDER_TOKEN_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != ':' && s[i] != '-')
			return false;
	return true;
}

static bool render_id_ok(const char *s)
{
	/* Static backends are named by their address as written: "[::1]:9001". */
	size_t len = strlen(s);
	if (len == 0 || len > RENDER_TOKEN_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_alnum(s[i]) && !strchr("._:-[]", s[i]))
			return false;
	return true;
}

/* One instance of the set, validated; owned copies. */
struct render_item {
	char *id;
	char *host;
	uint16_t port;
	uint16_t ssl_port;
	uint32_t weight;
	char *payload;				/* instance.h's pairs, or NULL */
	uint16_t payload_len;
};

struct render_left_out {
	char id[64];				/* cut to fit */
	char reason[64];
};

struct render {
	struct event_base *base;		/* borrowed: the control thread's */
	struct render_conf conf;		/* owned strings */
	struct template *tpl;			/* owned */
	bool uses_payload;			/* the template shows payload values */
	char label[300];			/* "render file=/x" for log lines */
	enum render_state state;		/* changed by render_set_state() only */
	struct render_wait wait;
	bool offered;				/* a set was offered at least once */
	uint64_t offered_hash;			/* fingerprint of items[] */
	struct render_item *items;		/* owned, n_items, sorted */
	size_t n_items;
	struct render_left_out shown[RENDER_LEFT_OUT_SHOWN];
	size_t n_shown;
	char *current;				/* owned; the bytes the file holds, NULL = no file */
	size_t current_len;
	char *candidate;			/* owned while CHECKING: the bytes being checked */
	size_t candidate_len;
	char tmp[4096];				/* CHECKING: the candidate's path */
	uint64_t refused_hash;			/* fingerprint of bytes a check refused; 0 = none */
	bool below_min_logged;			/* "fewer than min_instances" said for this episode */
	struct command *cmd;			/* owned while CHECKING or RELOADING */
	bool retired;				/* freed once cmd is done */
	struct render_stats st;
};

static const char *const state_names[RENDER_STATE_COUNT] = {
	[RENDER_IDLE] = "idle",
	[RENDER_CHECKING] = "checking",
	[RENDER_RELOADING] = "reloading",
};

const char *render_state_name(enum render_state s)
{
	return (unsigned)s < RENDER_STATE_COUNT ? state_names[s] : "?";
}

static void render_set_state(struct render *r, enum render_state to)
{
	static const bool legal[RENDER_STATE_COUNT][RENDER_STATE_COUNT] = {
		[RENDER_IDLE] = { [RENDER_CHECKING] = true, [RENDER_RELOADING] = true },
		[RENDER_CHECKING] = { [RENDER_IDLE] = true, [RENDER_RELOADING] = true },
		[RENDER_RELOADING] = { [RENDER_IDLE] = true },
	};
	if (!legal[r->state][to]) {
		log_error("%s: refused state change %s -> %s", r->label, render_state_name(r->state),
			  render_state_name(to));
		return;
	}
	r->state = to;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

static uint64_t fnv_str(uint64_t h, const char *s)
{
	return fnv(h, s, strlen(s) + 1);
}

/* Order: IPv4 (numerically), then IPv6 (numerically), then names; then port, then id. */
static int host_rank(const char *h, unsigned char *bytes)
{
	if (inet_pton(AF_INET, h, bytes) == 1)
		return 0;
	if (inet_pton(AF_INET6, h, bytes) == 1)
		return 1;
	return 2;
}

static int item_cmp(const void *pa, const void *pb)
{
	const struct render_item *a = pa, *b = pb;
	unsigned char ba[16], bb[16];
	int ra = host_rank(a->host, ba), rb = host_rank(b->host, bb);
	int c = ra != rb ? ra - rb : ra < 2 ? memcmp(ba, bb, ra == 0 ? 4 : 16) : strcmp(a->host, b->host);
	if (c)
		return c;
	if (a->port != b->port)
		return a->port < b->port ? -1 : 1;
	return strcmp(a->id, b->id);
}

static void items_free(struct render_item *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].id);
		free(v[i].host);
		free(v[i].payload);
	}
	free(v);
}

/* Why m may not reach a file, or NULL. */
static const char *member_refusal(const struct render *r, const struct render_member *m)
{
	if (!render_id_ok(m->id))
		return "id has characters a file must not get";
	if (!render_host_ok(m->host))
		return "address is neither an IP literal nor a host name";
	if (!r->uses_payload)
		return NULL;
	for (size_t off = 0; off < m->payload_len;) {
		const char *key = m->payload + off;
		const char *value = key + strlen(key) + 1;
		if (!render_token_ok(key) || !render_token_ok(value))
			return "payload has characters a file must not get";
		off = (size_t)(value - m->payload) + strlen(value) + 1;
	}
	return NULL;
}

static void left_out_add(struct render *r, const char *id, const char *why)
{
	r->st.left_out++;
	if (r->n_shown == RENDER_LEFT_OUT_SHOWN)
		return;
	struct render_left_out *lo = &r->shown[r->n_shown++];
	size_t k = 0;
	/* The id may be anything: keep what is printable, so /services stays readable. */
	for (const char *c = id; *c && k + 1 < sizeof(lo->id); c++)
		lo->id[k++] = (*c >= 0x20 && *c < 0x7f) ? *c : '?';
	lo->id[k] = '\0';
	snprintf(lo->reason, sizeof(lo->reason), "%s", why);
}

void render_offer(struct render *r, const struct render_member *v, size_t n, uint64_t now_ms)
{
	struct render_item *items = xcalloc(n ? n : 1, sizeof(*items));
	size_t k = 0;
	r->st.left_out = 0;
	r->n_shown = 0;
	for (size_t i = 0; i < n; i++) {
		const char *why = member_refusal(r, &v[i]);
		if (why) {
			left_out_add(r, v[i].id, why);
			continue;
		}
		struct render_item *it = &items[k++];
		it->id = xstrdup(v[i].id);
		it->host = xstrdup(v[i].host);
		it->port = v[i].port;
		it->ssl_port = v[i].ssl_port;
		it->weight = v[i].weight;
		if (v[i].payload_len) {
			it->payload = xmalloc(v[i].payload_len);
			memcpy(it->payload, v[i].payload, v[i].payload_len);
			it->payload_len = v[i].payload_len;
		}
	}
	qsort(items, k, sizeof(*items), item_cmp);
	uint64_t h = 14695981039346656037ull;
	for (size_t i = 0; i < k; i++) {
		h = fnv_str(h, items[i].id);
		h = fnv_str(h, items[i].host);
		h = fnv(h, &items[i].port, sizeof(items[i].port));
		h = fnv(h, &items[i].ssl_port, sizeof(items[i].ssl_port));
		h = fnv(h, &items[i].weight, sizeof(items[i].weight));
		h = fnv(h, items[i].payload ? items[i].payload : "", items[i].payload_len);
	}
	h = fnv(h, &k, sizeof(k));
	if (r->offered && h == r->offered_hash) {
		items_free(items, k);
		return;
	}
	items_free(r->items, r->n_items);
	r->items = items;
	r->n_items = k;
	r->offered_hash = h;
	r->offered = true;
	render_wait_change(&r->wait, now_ms ? now_ms : 1);
}

/* The template over items[0..n): a malloc'd buffer. */
static char *render_items(const struct template *t, const char *service,
			  const struct render_item *items, size_t n, size_t *len)
{
	struct template_instance *ti = xcalloc(n ? n : 1, sizeof(*ti));
	size_t pairs = 0;
	for (size_t i = 0; i < n; i++)
		for (size_t off = 0; off < items[i].payload_len; off++)
			pairs += items[i].payload[off] == '\0';
	/* Two NULs per pair: pairs/2 key and value pointers each. */
	const char **kv = xcalloc(pairs ? pairs : 1, sizeof(*kv));
	size_t used = 0;
	for (size_t i = 0; i < n; i++) {
		const struct render_item *it = &items[i];
		ti[i].id = it->id;
		ti[i].address = it->host;
		ti[i].port = it->port;
		ti[i].ssl_port = it->ssl_port;
		ti[i].weight = it->weight;
		size_t np = 0;
		for (size_t off = 0; off < it->payload_len; off++)
			np += it->payload[off] == '\0';
		np /= 2;
		const char **keys = kv + used, **values = kv + used + np;
		size_t j = 0;
		for (size_t off = 0; off < it->payload_len && j < np; j++) {
			keys[j] = it->payload + off;
			values[j] = keys[j] + strlen(keys[j]) + 1;
			off = (size_t)(values[j] - it->payload) + strlen(values[j]) + 1;
		}
		ti[i].payload_keys = keys;
		ti[i].payload_values = values;
		ti[i].n_payload = np;
		used += 2 * np;
	}
	char *out = template_render(t, service, ti, n, len);
	free(kv);
	free(ti);
	return out;
}

/* The file's bytes now, or NULL when there is none (or it cannot be read). */
static char *file_read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = xmalloc(RENDER_FILE_MAX + 1);
	size_t n = fread(buf, 1, RENDER_FILE_MAX + 1, f);
	bool bad = ferror(f) || n > RENDER_FILE_MAX;
	fclose(f);
	if (bad) {
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

bool render_conf_same(const struct render *r, const struct render_conf *rc)
{
	const struct render_conf *a = &r->conf;
	return same_str(a->service, rc->service) && same_str(a->file, rc->file) &&
	       same_str(a->template_text, rc->template_text) && a->instances == rc->instances &&
	       a->wait.min_ms == rc->wait.min_ms && a->wait.max_ms == rc->wait.max_ms &&
	       a->min_instances == rc->min_instances && same_str(a->check_command, rc->check_command) &&
	       same_str(a->on_change, rc->on_change) &&
	       a->on_change_timeout_ms == rc->on_change_timeout_ms && a->mode == rc->mode;
}

const struct render_conf *render_conf(const struct render *r)
{
	return &r->conf;
}

struct render *render_new(struct event_base *base, const struct render_conf *rc, char *err,
			  size_t errlen)
{
	struct template *t = template_compile(rc->template_text, strlen(rc->template_text), err,
					      errlen);
	if (!t)
		return NULL;
	struct render *r = xcalloc(1, sizeof(*r));
	r->base = base;
	r->tpl = t;
	r->uses_payload = template_uses_payload(t);
	config_render_copy(&r->conf, rc);
	snprintf(r->label, sizeof(r->label), "render file=%s", rc->file);
	r->current = file_read_all(rc->file, &r->current_len);
	r->st.last_check_exit = -1;
	r->st.last_on_change_exit = -1;
	return r;
}

void render_free(struct render *r)
{
	if (!r)
		return;
	if (r->cmd)
		command_abandon(r->cmd);
	if (r->tmp[0])
		unlink(r->tmp);
	items_free(r->items, r->n_items);
	template_free(r->tpl);
	free(r->current);
	free(r->candidate);
	config_render_free(&r->conf);
	free(r);
}

void render_retire(struct render *r)
{
	if (!r)
		return;
	if (r->cmd) {
		r->retired = true;	/* render_command_done frees it */
		return;
	}
	render_free(r);
}

static int exit_status(const struct command_result *res)
{
	return res->exited ? res->exit_code : 128 + res->signal;
}

static void render_on_change(struct render *r);

static void render_command_done(void *arg, const struct command_result *res)
{
	struct render *r = arg;
	bool ok = res->exited && res->exit_code == 0;
	r->cmd = NULL;
	if (r->state == RENDER_CHECKING) {
		r->st.last_check_exit = exit_status(res);
		if (r->retired) {
			render_free(r);
			return;
		}
		char err[256];
		if (!ok) {
			r->st.check_failed++;
			r->refused_hash = fnv(14695981039346656037ull, r->candidate, r->candidate_len);
			log_error("%s: check_command refused the new file (%s %d%s): %s; the old file stays",
				  r->label, res->exited ? "exit" : "signal", res->exited ? res->exit_code : res->signal,
				  res->timed_out ? ", timed out" : "", res->output);
			unlink(r->tmp);
			r->tmp[0] = '\0';
			free(r->candidate);
			r->candidate = NULL;
			render_set_state(r, RENDER_IDLE);
			return;
		}
		int rc = file_replace(r->tmp, r->conf.file, err, sizeof(err));
		r->tmp[0] = '\0';
		if (rc < 0) {
			r->st.write_failed++;
			log_error("%s: %s", r->label, err);
			free(r->candidate);
			r->candidate = NULL;
			render_set_state(r, RENDER_IDLE);
			return;
		}
		free(r->current);
		r->current = r->candidate;
		r->current_len = r->candidate_len;
		r->candidate = NULL;
		r->st.written++;
		r->st.last_written_ms = wall_ms();
		log_info("%s: written, %zu instances (check passed)", r->label, r->n_items);
		render_on_change(r);
		if (r->state == RENDER_CHECKING)
			render_set_state(r, RENDER_IDLE);
		return;
	}
	r->st.last_on_change_exit = exit_status(res);
	if (!ok) {
		r->st.on_change_failed++;
		log_error("%s: on_change failed (%s %d%s): %s", r->label, res->exited ? "exit" : "signal",
			  res->exited ? res->exit_code : res->signal, res->timed_out ? ", timed out" : "",
			  res->output);
	}
	if (r->retired) {
		render_free(r);
		return;
	}
	render_set_state(r, RENDER_IDLE);
}

/* The file was replaced: run on_change, when there is one. */
static void render_on_change(struct render *r)
{
	if (!r->conf.on_change)
		return;
	char err[256];
	r->st.on_change_runs++;
	r->cmd = command_start(r->base, r->conf.on_change, r->conf.on_change_timeout_ms,
			       render_command_done, r, err, sizeof(err));
	if (!r->cmd) {
		r->st.on_change_failed++;
		log_error("%s: cannot run on_change: %s", r->label, err);
		return;
	}
	render_set_state(r, RENDER_RELOADING);
}

/* check_command with {{file}} replaced by the candidate's path, single-quoted. */
static char *check_line(const char *cmd, const char *path)
{
	size_t cap = strlen(cmd) + 1, len = 0;
	char *quoted = xmalloc(4 * strlen(path) + 3);
	size_t q = 0;
	quoted[q++] = '\'';
	for (const char *c = path; *c; c++) {
		if (*c == '\'') {
			memcpy(quoted + q, "'\\''", 4);
			q += 4;
		} else {
			quoted[q++] = *c;
		}
	}
	quoted[q++] = '\'';
	quoted[q] = '\0';
	for (const char *c = strstr(cmd, "{{file}}"); c; c = strstr(c + 8, "{{file}}"))
		cap += q;
	char *out = xmalloc(cap);
	for (const char *c = cmd; *c;) {
		if (strncmp(c, "{{file}}", 8) == 0) {
			memcpy(out + len, quoted, q);
			len += q;
			c += 8;
		} else {
			out[len++] = *c++;
		}
	}
	out[len] = '\0';
	free(quoted);
	return out;
}

/* Bytes that differ from the file's: through the check, or straight in. */
static void render_write(struct render *r, char *bytes, size_t len)
{
	char err[256];
	if (r->conf.check_command) {
		if (file_write_temp(r->conf.file, bytes, len, r->conf.mode, r->tmp, sizeof(r->tmp), err,
				    sizeof(err)) < 0) {
			r->st.write_failed++;
			r->tmp[0] = '\0';
			log_error("%s: %s", r->label, err);
			free(bytes);
			return;
		}
		char *line = check_line(r->conf.check_command, r->tmp);
		r->cmd = command_start(r->base, line, r->conf.on_change_timeout_ms, render_command_done,
				       r, err, sizeof(err));
		free(line);
		if (!r->cmd) {
			r->st.check_failed++;
			log_error("%s: cannot run check_command: %s", r->label, err);
			unlink(r->tmp);
			r->tmp[0] = '\0';
			free(bytes);
			return;
		}
		r->candidate = bytes;
		r->candidate_len = len;
		render_set_state(r, RENDER_CHECKING);
		return;
	}
	if (file_write_atomic(r->conf.file, bytes, len, r->conf.mode, err, sizeof(err)) < 0) {
		r->st.write_failed++;
		log_error("%s: %s", r->label, err);
		free(bytes);
		return;
	}
	free(r->current);
	r->current = bytes;
	r->current_len = len;
	r->st.written++;
	r->st.last_written_ms = wall_ms();
	log_info("%s: written, %zu instances", r->label, r->n_items);
	render_on_change(r);
}

void render_tick(struct render *r, uint64_t now_ms)
{
	if (r->state != RENDER_IDLE || now_ms < render_wait_due(&r->wait, r->conf.wait.min_ms,
								 r->conf.wait.max_ms))
		return;
	render_wait_done(&r->wait);
	if (r->n_items < r->conf.min_instances) {
		r->st.below_min++;
		if (!r->below_min_logged)
			log_warn("%s: %zu instances, fewer than min_instances %u: the file stays as it is",
				 r->label, r->n_items, r->conf.min_instances);
		r->below_min_logged = true;
		return;
	}
	r->below_min_logged = false;
	size_t len;
	char *bytes = render_items(r->tpl, r->conf.service, r->items, r->n_items, &len);
	if (r->current && len == r->current_len && memcmp(bytes, r->current, len) == 0) {
		r->st.unchanged++;
		free(bytes);
		return;
	}
	if (r->refused_hash && fnv(14695981039346656037ull, bytes, len) == r->refused_hash) {
		free(bytes);	/* the check refused these very bytes already */
		return;
	}
	render_write(r, bytes, len);
}

const struct render_stats *render_stats(const struct render *r)
{
	return &r->st;
}

json_t *render_status_json(const struct render *r)
{
	json_t *o = json_object();
	json_object_set_new(o, "service", json_string(r->conf.service));
	json_object_set_new(o, "file", json_string(r->conf.file));
	json_object_set_new(o, "state", json_string(render_state_name(r->state)));
	json_object_set_new(o, "instances", json_integer((json_int_t)r->n_items));
	json_object_set_new(o, "written", json_integer((json_int_t)r->st.written));
	json_object_set_new(o, "unchanged", json_integer((json_int_t)r->st.unchanged));
	json_object_set_new(o, "below_min_instances", json_integer((json_int_t)r->st.below_min));
	json_object_set_new(o, "check_failed", json_integer((json_int_t)r->st.check_failed));
	json_object_set_new(o, "write_failed", json_integer((json_int_t)r->st.write_failed));
	json_object_set_new(o, "on_change_runs", json_integer((json_int_t)r->st.on_change_runs));
	json_object_set_new(o, "on_change_failed", json_integer((json_int_t)r->st.on_change_failed));
	json_object_set_new(o, "last_written_ms", r->st.last_written_ms ?
			    json_integer(r->st.last_written_ms) : json_null());
	json_object_set_new(o, "last_check_exit", r->st.last_check_exit >= 0 ?
			    json_integer(r->st.last_check_exit) : json_null());
	json_object_set_new(o, "last_on_change_exit", r->st.last_on_change_exit >= 0 ?
			    json_integer(r->st.last_on_change_exit) : json_null());
	json_t *lo = json_array();
	for (size_t i = 0; i < r->n_shown; i++)
		json_array_append_new(lo, json_pack("{ssss}", "id", r->shown[i].id, "reason",
						    r->shown[i].reason));
	json_object_set_new(o, "left_out", lo);
	json_object_set_new(o, "left_out_count", json_integer((json_int_t)r->st.left_out));
	return o;
}

char *render_once(const struct render_conf *rc, const struct render_member *v, size_t n,
		  size_t *len, size_t *left_out, char *err, size_t errlen)
{
	struct render *r = render_new(NULL, rc, err, errlen);
	if (!r)
		return NULL;
	render_offer(r, v, n, 1);
	char *out = render_items(r->tpl, rc->service, r->items, r->n_items, len);
	*left_out = r->st.left_out;
	render_free(r);
	return out;
}
