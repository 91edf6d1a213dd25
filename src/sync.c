/*
 * sync — see sync.h.
 *
 * The ZooKeeper side is the watch layer's: a single-node entry is a
 * nodewatch, a children entry a zkset (the children and each child's data,
 * watched, retried, re-read on a new session). This file is what the bytes
 * become: files, the manifest, and the command. A zkset settles when every
 * listed child has been read; only then are the manifest written and the
 * command started, so a new child list that adds three children runs the
 * command once, after the three files are in place.
 */
#include "sync.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "command.h"
#include "log.h"
#include "nodewatch.h"
#include "util.h"
#include "zk.h"
#include "zkset.h"

#define SYNC_RETRY_CAP_MS 30000
#define SYNC_MANIFEST_MAX (1u << 20)

struct sync_entry {
	struct sync *s;			/* ref: the owner */
	struct sync_conf conf;		/* owned strings; the settings */
	char label[300];		/* log prefix "sync path=/x" */
	enum sync_state state;		/* changed by sync_set_state() only */
	struct nodewatch *nw;		/* single node: owned; NULL for children */
	struct zkset *set;		/* children: owned; NULL for a single node */
	char **managed;			/* children: owned; names of the files we wrote */
	size_t n_managed;
	bool managed_dirty;		/* managed changed since the manifest was written */
	bool changed;			/* files changed since the last command started */
	enum sync_run run;		/* changed by sync_set_run() only */
	struct command *cmd;		/* owned while the command runs */
	bool retired;			/* dropped by a reload: freed once its command is done */
	struct sync_stats st;		/* counters (strings filled on read) */
};

struct sync {
	struct event_base *base;	/* ref: the control thread's */
	struct zk *zk;			/* ref */
	struct sync_entry **entries;	/* owned; in config order */
	size_t n_entries;
	struct sync_entry **retired;	/* owned; dropped entries whose command still runs */
	size_t n_retired;
	struct event *reap_ev;		/* owned; frees idle retired entries after the loop turn */
	struct rng rng;			/* owned; retry jitter */
};


/* ---- pure ---------------------------------------------------------------- */

bool sync_child_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > SYNC_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '/' || c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

enum sync_action sync_decide(const void *old, size_t old_len, unsigned old_mode,
			     const void *data, size_t len, unsigned mode)
{
	if (!old || old_len != len || (len && memcmp(old, data, len) != 0))
		return SYNC_ACTION_WRITE;
	if ((old_mode & 07777) != (mode & 07777))
		return SYNC_ACTION_CHMOD;
	return SYNC_ACTION_NONE;
}

const char *sync_state_name(enum sync_state st)
{
	switch (st) {
	case SYNC_WAITING: return "waiting";
	case SYNC_SYNCED: return "synced";
	case SYNC_MISSING: return "missing";
	}
	return "?";
}

static const char *sync_run_name(enum sync_run r)
{
	switch (r) {
	case SYNC_RUN_IDLE: return "idle";
	case SYNC_RUN_RUNNING: return "running";
	case SYNC_RUN_AGAIN: return "again";
	}
	return "?";
}

/* ---- lifecycles ------------------------------------------------------------ */

static bool sync_set_state(struct sync_entry *e, enum sync_state to, const char *why)
{
	enum sync_state from = e->state;

	if (to == SYNC_WAITING) {
		log_error("%s: refused transition %s -> waiting (%s)", e->label,
			  sync_state_name(from), why);
		return false;
	}
	if (from == to)
		return true;
	e->state = to;
	log_info("%s: %s -> %s (%s)", e->label, sync_state_name(from), sync_state_name(to), why);
	return true;
}

static bool sync_set_run(struct sync_entry *e, enum sync_run to)
{
	enum sync_run from = e->run;
	bool legal = (from == SYNC_RUN_IDLE && to == SYNC_RUN_RUNNING) ||
		     (from == SYNC_RUN_RUNNING && (to == SYNC_RUN_AGAIN || to == SYNC_RUN_IDLE)) ||
		     (from == SYNC_RUN_AGAIN && to == SYNC_RUN_IDLE);

	if (!legal) {
		log_error("%s: refused command transition %s -> %s", e->label, sync_run_name(from),
			  sync_run_name(to));
		return false;
	}
	e->run = to;
	return true;
}

/* ---- files ----------------------------------------------------------------- */

enum sync_put_result {
	SYNC_PUT_SAME = 0,		/* already there: nothing done */
	SYNC_PUT_CHMOD,			/* same bytes; mode fixed */
	SYNC_PUT_WROTE,			/* written */
	SYNC_PUT_ERROR,			/* logged and counted */
};

/*
 * Read up to max bytes of path into *buf (malloc'd); *len the bytes read,
 * *mode the permission bits. false when there is no regular file to compare.
 */
static bool sync_read_prefix(const char *path, size_t max, char **buf, size_t *len, unsigned *mode)
{
	struct stat st;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return false;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return false;
	}
	*buf = xmalloc(max ? max : 1);
	while (got < max) {
		ssize_t r = read(fd, *buf + got, max - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	*len = got;
	*mode = (unsigned)st.st_mode & 07777;
	return true;
}

/* Make path hold data[0..len) with the entry's mode. */
static enum sync_put_result sync_put(struct sync_entry *e, const char *path, const char *data,
				     size_t len)
{
	char *old = NULL, err[512];
	size_t old_len = 0;
	unsigned old_mode = 0;
	bool have = sync_read_prefix(path, len + 1, &old, &old_len, &old_mode);
	enum sync_action act = sync_decide(have ? old : NULL, old_len, old_mode, data, len,
					   e->conf.mode);

	free(old);
	switch (act) {
	case SYNC_ACTION_NONE:
		e->st.unchanged_total++;
		log_debug("%s: %s unchanged (%zu bytes)", e->label, path, len);
		return SYNC_PUT_SAME;
	case SYNC_ACTION_CHMOD:
		if (chmod(path, (mode_t)e->conf.mode) < 0) {
			e->st.errors_total++;
			log_error("%s: chmod %s: %s", e->label, path, strerror(errno));
			return SYNC_PUT_ERROR;
		}
		log_info("%s: %s unchanged; mode set to %04o", e->label, path, e->conf.mode);
		return SYNC_PUT_CHMOD;
	case SYNC_ACTION_WRITE:
		break;
	}
	if (file_write_atomic(path, data, len, e->conf.mode, err, sizeof(err)) < 0) {
		e->st.errors_total++;
		log_error("%s: %s; the file is untouched", e->label, err);
		return SYNC_PUT_ERROR;
	}
	e->st.writes_total++;
	e->st.last_change_ms = wall_ms();
	log_info("%s: wrote %s (%zu bytes)", e->label, path, len);
	return SYNC_PUT_WROTE;
}

/* Remove path; true when a file was removed. */
static bool sync_remove(struct sync_entry *e, const char *path)
{
	if (unlink(path) == 0) {
		e->st.removals_total++;
		e->st.last_change_ms = wall_ms();
		log_info("%s: removed %s", e->label, path);
		return true;
	}
	if (errno != ENOENT) {
		e->st.errors_total++;
		log_error("%s: remove %s: %s", e->label, path, strerror(errno));
	}
	return false;
}

/* dir/name into buf; false (logged) when too long. */
static bool sync_join(const char *dir, const char *name, char *buf, size_t len)
{
	size_t n = strlen(dir);
	bool slash = n > 0 && dir[n - 1] == '/';

	return (size_t)snprintf(buf, len, "%s%s%s", dir, slash ? "" : "/", name) < len;
}

/* ---- the command ------------------------------------------------------------- */

static void sync_start_command(struct sync_entry *e);

static void sync_command_done(void *arg, const struct command_result *r)
{
	struct sync_entry *e = arg;
	bool again = e->run == SYNC_RUN_AGAIN;

	e->cmd = NULL;
	if (r->exited && r->exit_code == 0) {
		log_info("%s: on_change exited 0 after %llums%s%s", e->label,
			 (unsigned long long)r->elapsed_ms, r->output[0] ? ": " : "", r->output);
	} else {
		e->st.command_failures_total++;
		if (r->timed_out)
			log_warn("%s: on_change timed out after %llums and was killed (%s %d)%s%s",
				 e->label, (unsigned long long)e->conf.on_change_timeout_ms,
				 r->exited ? "exit" : "signal", r->exited ? r->exit_code : r->signal,
				 r->output[0] ? ": " : "", r->output);
		else if (r->exited)
			log_warn("%s: on_change exited %d after %llums%s%s", e->label, r->exit_code,
				 (unsigned long long)r->elapsed_ms, r->output[0] ? ": " : "",
				 r->output);
		else
			log_warn("%s: on_change killed by signal %d after %llums%s%s", e->label,
				 r->signal, (unsigned long long)r->elapsed_ms,
				 r->output[0] ? ": " : "", r->output);
	}
	sync_set_run(e, SYNC_RUN_IDLE);
	if (e->retired)
		event_active(e->s->reap_ev, EV_TIMEOUT, 0);
	else if (again)
		sync_start_command(e);
}

static void sync_start_command(struct sync_entry *e)
{
	char err[256];

	e->changed = false;
	e->cmd = command_start(e->s->base, e->conf.on_change, e->conf.on_change_timeout_ms,
			       sync_command_done, e, err, sizeof(err));
	if (!e->cmd) {
		e->st.command_failures_total++;
		log_error("%s: cannot run on_change: %s", e->label, err);
		return;
	}
	sync_set_run(e, SYNC_RUN_RUNNING);
	e->st.commands_total++;
	log_info("%s: running on_change (pid %d): %s", e->label, command_pid(e->cmd),
		 e->conf.on_change);
}

/* Files changed: run on_change now, or once more after the run in progress. */
static void sync_changed(struct sync_entry *e)
{
	if (!e->changed)
		return;
	if (!e->conf.on_change) {
		e->changed = false;
		return;
	}
	if (e->run == SYNC_RUN_IDLE) {
		sync_start_command(e);
	} else {
		e->changed = false;
		if (e->run == SYNC_RUN_RUNNING)
			sync_set_run(e, SYNC_RUN_AGAIN);
	}
}

/* ---- single node ----------------------------------------------------------- */

static void sync_on_data(void *arg, const char *data, size_t len)
{
	struct sync_entry *e = arg;

	sync_set_state(e, SYNC_SYNCED, "node read");
	if (len > e->conf.max_size) {
		e->st.refused_total++;
		log_warn("%s: node holds %zu bytes, over max_size %llu: refused; %s untouched",
			 e->label, len, (unsigned long long)e->conf.max_size, e->conf.file);
		return;
	}
	if (sync_put(e, e->conf.file, data, len) == SYNC_PUT_WROTE) {
		e->changed = true;
		sync_changed(e);
	}
}

static void sync_on_absent(void *arg)
{
	struct sync_entry *e = arg;

	sync_set_state(e, SYNC_MISSING, "node absent");
	if (e->conf.on_delete == SYNC_DELETE_REMOVE) {
		if (sync_remove(e, e->conf.file)) {
			e->changed = true;
			sync_changed(e);
		}
	} else {
		log_info("%s: node absent; keeping %s (on_delete: keep)", e->label, e->conf.file);
	}
}

static const struct nodewatch_hooks sync_node_hooks = {
	.on_data = sync_on_data,
	.on_absent = sync_on_absent,
};

/* ---- children: manifest ------------------------------------------------------ */

static long sync_managed_find(const struct sync_entry *e, const char *name)
{
	for (size_t i = 0; i < e->n_managed; i++)
		if (strcmp(e->managed[i], name) == 0)
			return (long)i;
	return -1;
}

static void sync_managed_add(struct sync_entry *e, const char *name)
{
	if (sync_managed_find(e, name) >= 0)
		return;
	e->managed = xrealloc(e->managed, (e->n_managed + 1) * sizeof(*e->managed));
	e->managed[e->n_managed++] = xstrdup(name);
	e->managed_dirty = true;
}

static void sync_managed_drop(struct sync_entry *e, size_t i)
{
	free(e->managed[i]);
	e->managed[i] = e->managed[--e->n_managed];
	e->managed_dirty = true;
}

static void sync_manifest_load(struct sync_entry *e)
{
	char path[4096], *buf = NULL;
	size_t len = 0;
	unsigned mode;

	if (!sync_join(e->conf.dir, SYNC_MANIFEST, path, sizeof(path)) ||
	    !sync_read_prefix(path, SYNC_MANIFEST_MAX, &buf, &len, &mode)) {
		free(buf);
		return;
	}
	for (size_t i = 0; i < len;) {
		char name[SYNC_NAME_MAX + 1];
		const char *nl = memchr(buf + i, '\n', len - i);
		size_t n = nl ? (size_t)(nl - (buf + i)) : len - i;
		if (n <= SYNC_NAME_MAX && n > 0) {
			memcpy(name, buf + i, n);
			name[n] = '\0';
			if (sync_child_name_ok(name))
				sync_managed_add(e, name);
		}
		i += n + 1;
	}
	free(buf);
	e->managed_dirty = false;
}

static void sync_manifest_save(struct sync_entry *e)
{
	char path[4096], err[512];
	size_t len = 0;
	char *text;

	e->managed_dirty = false;
	if (!sync_join(e->conf.dir, SYNC_MANIFEST, path, sizeof(path)))
		return;
	if (e->n_managed == 0) {
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn("%s: remove %s: %s", e->label, path, strerror(errno));
		return;
	}
	for (size_t i = 0; i < e->n_managed; i++)
		len += strlen(e->managed[i]) + 1;
	text = xmalloc(len + 1);
	len = 0;
	for (size_t i = 0; i < e->n_managed; i++)
		len += (size_t)sprintf(text + len, "%s\n", e->managed[i]);
	if (file_write_atomic(path, text, len, 0644, err, sizeof(err)) < 0) {
		e->st.errors_total++;
		log_warn("%s: cannot record the files it wrote: %s", e->label, err);
	}
	free(text);
}

/* ---- children: what the zkset reads ------------------------------------------ */

/* Only a child whose name can be a file is read; the others are refused once per appearance. */
static bool sync_child_wanted(void *arg, const char *name)
{
	struct sync_entry *e = arg;

	if (sync_child_name_ok(name))
		return true;
	e->st.refused_total++;
	log_warn("%s: child name '%s' cannot be a file name: refused", e->label, name);
	return false;
}

/* A child's bytes: they become dir/<child>. */
static void sync_child_read(void *arg, struct zkset_member *m, int rc, const char *data,
			    size_t len)
{
	struct sync_entry *e = arg;
	char file[4096];

	if (rc != ZOK)
		return;	/* unreadable: the zkset logged, counted and retries it */
	if (len > e->conf.max_size) {
		e->st.refused_total++;
		log_warn("%s: child %s holds %zu bytes, over max_size %llu: refused; file untouched",
			 e->label, m->name, len, (unsigned long long)e->conf.max_size);
	} else if (sync_join(e->conf.dir, m->name, file, sizeof(file))) {
		enum sync_put_result pr = sync_put(e, file, data ? data : "", len);
		if (pr == SYNC_PUT_WROTE)
			e->changed = true;
		if (pr != SYNC_PUT_ERROR)
			sync_managed_add(e, m->name);
	}
}

static int sync_cmp_member(const void *key, const void *elem)
{
	return strcmp(key, ((const struct zkset_member *)elem)->name);
}

/*
 * The files of children no longer listed go, and only those zklb wrote (the
 * manifest): removed since the last list, or while zklb was not running.
 */
static void sync_prune(struct sync_entry *e)
{
	size_t n;
	const struct zkset_member *members = zkset_members(e->set, &n);
	char file[4096];

	for (size_t m = 0; m < e->n_managed;) {
		if (n && bsearch(e->managed[m], members, n, sizeof(*members), sync_cmp_member)) {
			m++;
			continue;
		}
		if (sync_join(e->conf.dir, e->managed[m], file, sizeof(file)) && sync_remove(e, file))
			e->changed = true;
		sync_managed_drop(e, m);
	}
}

/* The node is gone (or never was): on_delete decides about the files. */
static void sync_children_missing(struct sync_entry *e)
{
	char file[4096];

	if (!sync_set_state(e, SYNC_MISSING, "node absent"))
		return;
	if (e->conf.on_delete != SYNC_DELETE_REMOVE) {
		log_info("%s: node absent; keeping the files in %s (on_delete: keep)", e->label,
			 e->conf.dir);
		return;
	}
	while (e->n_managed) {
		if (sync_join(e->conf.dir, e->managed[0], file, sizeof(file)) && sync_remove(e, file))
			e->changed = true;
		sync_managed_drop(e, 0);
	}
}

/*
 * Everything listed has been read: the files are in place. Record them and
 * run the command once for the whole batch (three children added by one
 * change run it once, after the three files are written).
 */
static void sync_children_settled(void *arg)
{
	struct sync_entry *e = arg;

	if (zkset_phase(e->set) == ZKSET_ABSENT) {
		sync_children_missing(e);
	} else {
		sync_set_state(e, SYNC_SYNCED, "children listed");
		sync_prune(e);
	}
	if (e->managed_dirty)
		sync_manifest_save(e);
	sync_changed(e);
}

static const struct zkset_hooks sync_children_hooks = {
	.wanted = sync_child_wanted,
	.on_read = sync_child_read,
	.on_settled = sync_children_settled,
};

/* ---- entries ------------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static bool str_same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool sync_conf_same(const struct sync_conf *a, const struct sync_conf *b)
{
	return str_same(a->path, b->path) && str_same(a->file, b->file) &&
	       a->children == b->children && str_same(a->dir, b->dir) && a->mode == b->mode &&
	       str_same(a->on_change, b->on_change) &&
	       a->on_change_timeout_ms == b->on_change_timeout_ms &&
	       a->on_delete == b->on_delete && a->max_size == b->max_size;
}

static struct sync_entry *sync_entry_new(struct sync *s, const struct sync_conf *c)
{
	struct sync_entry *e = xcalloc(1, sizeof(*e));

	e->s = s;
	e->conf = *c;
	e->conf.path = xstrdup(c->path);
	e->conf.file = dup_or_null(c->file);
	e->conf.dir = dup_or_null(c->dir);
	e->conf.on_change = dup_or_null(c->on_change);
	snprintf(e->label, sizeof(e->label), "sync path=%s", e->conf.path);
	e->state = SYNC_WAITING;
	if (e->conf.children) {
		log_info("%s: mirroring its children into %s", e->label, e->conf.dir);
		sync_manifest_load(e);
		e->set = zkset_new(s->base, s->zk, e->label, &s->rng, SYNC_RETRY_CAP_MS,
				   &sync_children_hooks, e);
		zkset_start(e->set, e->conf.path, "start");
	} else {
		log_info("%s: mirroring into %s", e->label, e->conf.file);
		e->nw = nodewatch_new(s->zk, s->base, e->conf.path, e->label, &sync_node_hooks, e);
	}
	return e;
}

static void sync_entry_free(struct sync_entry *e)
{
	nodewatch_free(e->nw);
	zkset_free(e->set);
	command_abandon(e->cmd);
	for (size_t i = 0; i < e->n_managed; i++)
		free(e->managed[i]);
	free(e->managed);
	free(e->conf.path);
	free(e->conf.file);
	free(e->conf.dir);
	free(e->conf.on_change);
	free(e);
}

/* Stop following ZooKeeper; the entry lives on only while its command runs. */
static void sync_entry_retire(struct sync *s, struct sync_entry *e)
{
	nodewatch_free(e->nw);
	e->nw = NULL;
	if (e->set)
		zkset_cancel(e->set);
	e->retired = true;
	s->retired = xrealloc(s->retired, (s->n_retired + 1) * sizeof(*s->retired));
	s->retired[s->n_retired++] = e;
	event_active(s->reap_ev, EV_TIMEOUT, 0);
}

static void sync_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sync *s = arg;
	size_t k = 0;

	for (size_t i = 0; i < s->n_retired; i++) {
		struct sync_entry *e = s->retired[i];
		if (e->run == SYNC_RUN_IDLE)
			sync_entry_free(e);
		else
			s->retired[k++] = e;
	}
	s->n_retired = k;
}

struct sync *sync_new(struct event_base *base, struct zk *zk)
{
	struct sync *s = xcalloc(1, sizeof(*s));

	s->base = base;
	s->zk = zk;
	s->reap_ev = event_new(base, -1, 0, sync_reap_cb, s);
	rng_seed(&s->rng, now_us() ^ (uintptr_t)s);
	return s;
}

void sync_apply(struct sync *s, const struct sync_conf *v, size_t n)
{
	struct sync_entry **next = n ? xcalloc(n, sizeof(*next)) : NULL;

	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < s->n_entries && !next[i]; j++) {
			if (s->entries[j] && sync_conf_same(&s->entries[j]->conf, &v[i])) {
				next[i] = s->entries[j];
				s->entries[j] = NULL;
			}
		}
	}
	for (size_t j = 0; j < s->n_entries; j++) {
		if (s->entries[j]) {
			log_info("%s: stopped (configuration changed)", s->entries[j]->label);
			sync_entry_retire(s, s->entries[j]);
		}
	}
	/* Retire first, then start: a replaced entry never races its successor's reads. */
	for (size_t i = 0; i < n; i++)
		if (!next[i])
			next[i] = sync_entry_new(s, &v[i]);
	free(s->entries);
	s->entries = next;
	s->n_entries = n;
}

void sync_free(struct sync *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_entries; i++)
		sync_entry_free(s->entries[i]);
	for (size_t i = 0; i < s->n_retired; i++)
		sync_entry_free(s->retired[i]);
	free(s->entries);
	free(s->retired);
	event_free(s->reap_ev);
	free(s);
}

size_t sync_count(const struct sync *s)
{
	return s ? s->n_entries : 0;
}

void sync_stats(const struct sync *s, size_t i, struct sync_stats *out)
{
	const struct sync_entry *e = s->entries[i];

	*out = e->st;
	out->path = e->conf.path;
	out->target = e->conf.children ? e->conf.dir : e->conf.file;
	out->state = e->state;
	out->run = e->run;
	if (e->set)
		out->errors_total += zkset_errors(e->set);
}
