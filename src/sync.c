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
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <fnmatch.h>
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
	char *dir;			/* owned; the directory the files go in */
	const char *file_name;		/* ref: into conf.file; single node only */
	char dir_err[200];		/* the last failure to open dir, logged once */
	enum sync_state state;		/* changed by sync_set_state() only */
	struct nodewatch *nw;		/* single node: owned; NULL for children */
	struct zkset *set;		/* children: owned; NULL for a single node */
	char **managed;			/* children: owned; names of the files we wrote */
	size_t n_managed;
	bool managed_dirty;		/* managed changed since the manifest was written */
	size_t n_taken;			/* children: wanted children (max_children applies) */
	uint64_t total_size;		/* children: bytes of the taken children on disk */
	uint64_t batch_refused;		/* children refused since the last settle (one log line) */
	bool changed;			/* files changed since the last command started */
	enum sync_run run;		/* changed by sync_set_run() only */
	struct event *coalesce_ev;	/* owned; ends the coalescing window */
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

bool sync_name_listed(char *const *globs, size_t n, const char *name)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (fnmatch(globs[i], name, 0) == 0)
			return true;
	return false;
}

enum sync_admit sync_child_admit(const struct sync_conf *c, size_t n_taken, const char *name)
{
	if (!sync_child_name_ok(name))
		return SYNC_ADMIT_BAD_NAME;
	if (!sync_name_listed(c->names, c->n_names, name))
		return SYNC_ADMIT_NOT_LISTED;
	if (n_taken >= c->max_children)
		return SYNC_ADMIT_TOO_MANY;
	return SYNC_ADMIT_OK;
}

bool sync_size_fits(uint64_t total, uint64_t old_len, uint64_t len, uint64_t max_total)
{
	uint64_t rest = total >= old_len ? total - old_len : 0;
	return len <= max_total && rest <= max_total - len;
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
	case SYNC_RUN_COALESCING: return "coalescing";
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
	bool legal = (from == SYNC_RUN_IDLE && to == SYNC_RUN_COALESCING) ||
		     (from == SYNC_RUN_COALESCING && (to == SYNC_RUN_RUNNING || to == SYNC_RUN_IDLE)) ||
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

/*
 * Every file operation is relative to the entry's directory, opened with
 * O_NOFOLLOW for each batch of work: a symlink planted as the directory is
 * refused, and a symlink (or anything but a plain file) at a file's name is
 * never opened, never chmod-ed, only replaced by the rename.
 */

enum sync_put_result {
	SYNC_PUT_SAME = 0,		/* already there: nothing done */
	SYNC_PUT_CHMOD,			/* same bytes; mode or owner fixed */
	SYNC_PUT_WROTE,			/* written */
	SYNC_PUT_ERROR,			/* logged and counted */
};

/* The directory, or -1: logged (once per distinct error) and counted. */
static int sync_dir_open(struct sync_entry *e)
{
	char err[sizeof(e->dir_err)];
	int dfd = open(e->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (dfd >= 0) {
		if (e->dir_err[0])
			log_info("%s: %s usable again", e->label, e->dir);
		e->dir_err[0] = '\0';
		return dfd;
	}
	if (errno == ELOOP || errno == ENOTDIR)
		snprintf(err, sizeof(err), "%s is a symlink or not a directory: nothing written",
			 e->dir);
	else
		snprintf(err, sizeof(err), "open %s: %s: nothing written", e->dir, strerror(errno));
	e->st.errors_total++;
	if (strcmp(err, e->dir_err) != 0)
		log_error("%s: %s", e->label, err);
	snprintf(e->dir_err, sizeof(e->dir_err), "%s", err);
	return -1;
}

/* What is at name now, for sync_put to compare. */
struct sync_old {
	char *bytes;			/* owned; up to the bytes asked for */
	size_t len;			/* bytes in bytes */
	struct stat st;			/* its mode, owner, links */
};

/*
 * Read up to max bytes of the regular file name in dfd, never following a
 * symlink. false when there is no regular file to compare.
 */
static bool sync_read_prefix(int dfd, const char *name, size_t max, struct sync_old *o)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);

	if (fd < 0)
		return false;
	if (fstat(fd, &o->st) < 0 || !S_ISREG(o->st.st_mode)) {
		close(fd);
		return false;
	}
	o->bytes = xmalloc(max ? max : 1);
	o->len = fd_read_full(fd, o->bytes, max);
	close(fd);
	return true;
}

static bool sync_owner_differs(const struct sync_entry *e, const struct stat *st)
{
	return (e->conf.uid >= 0 && (int64_t)st->st_uid != e->conf.uid) ||
	       (e->conf.gid >= 0 && (int64_t)st->st_gid != e->conf.gid);
}

/* Same bytes, other mode or owner: fix them on a descriptor, never by path. */
static bool sync_fix_attrs(struct sync_entry *e, int dfd, const char *name)
{
	struct stat st;
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
	bool ok = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		  ((e->conf.uid < 0 && e->conf.gid < 0) ||
		   fchown(fd, (uid_t)e->conf.uid, (gid_t)e->conf.gid) == 0) &&
		  fchmod(fd, (mode_t)e->conf.mode) == 0;

	if (!ok) {
		e->st.errors_total++;
		log_error("%s: set mode/owner of %s/%s: %s", e->label, e->dir, name, strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Make dfd/name hold data[0..len) with the entry's mode and owner. */
static enum sync_put_result sync_put(struct sync_entry *e, int dfd, const char *name,
				     const char *data, size_t len)
{
	char err[512];
	struct sync_old o = { 0 };
	bool have = sync_read_prefix(dfd, name, len + 1, &o);
	enum sync_action act = sync_decide(have ? o.bytes : NULL, o.len,
					   have ? (unsigned)o.st.st_mode : 0, data, len, e->conf.mode);

	free(o.bytes);
	if (act != SYNC_ACTION_WRITE && sync_owner_differs(e, &o.st))
		act = SYNC_ACTION_CHMOD;
	/* A second link (to a file elsewhere): fixing it in place would change that file too. */
	if (act == SYNC_ACTION_CHMOD && o.st.st_nlink != 1)
		act = SYNC_ACTION_WRITE;
	switch (act) {
	case SYNC_ACTION_NONE:
		e->st.unchanged_total++;
		log_debug("%s: %s/%s unchanged (%zu bytes)", e->label, e->dir, name, len);
		return SYNC_PUT_SAME;
	case SYNC_ACTION_CHMOD:
		if (!sync_fix_attrs(e, dfd, name))
			return SYNC_PUT_ERROR;
		log_info("%s: %s/%s unchanged; mode %04o and owner set", e->label, e->dir, name,
			 e->conf.mode);
		return SYNC_PUT_CHMOD;
	case SYNC_ACTION_WRITE:
		break;
	}
	if (file_write_atomic_at(dfd, e->dir, name, data, len, e->conf.mode, e->conf.uid,
				 e->conf.gid, err, sizeof(err)) < 0) {
		e->st.errors_total++;
		log_error("%s: %s; the file is untouched", e->label, err);
		return SYNC_PUT_ERROR;
	}
	e->st.writes_total++;
	e->st.last_change_ms = wall_ms();
	log_info("%s: wrote %s/%s (%zu bytes)", e->label, e->dir, name, len);
	return SYNC_PUT_WROTE;
}

/* Remove dfd/name; true when a file was removed. */
static bool sync_remove(struct sync_entry *e, int dfd, const char *name)
{
	if (unlinkat(dfd, name, 0) == 0) {
		e->st.removals_total++;
		e->st.last_change_ms = wall_ms();
		log_info("%s: removed %s/%s", e->label, e->dir, name);
		return true;
	}
	if (errno != ENOENT) {
		e->st.errors_total++;
		log_error("%s: remove %s/%s: %s", e->label, e->dir, name, strerror(errno));
	}
	return false;
}

/* ---- the command ------------------------------------------------------------- */

static void sync_schedule(struct sync_entry *e);

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
			log_warn("%s: on_change timed out after %llums and its process group was "
				 "killed (%s %d)%s%s",
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
		sync_schedule(e);
}

/* The coalescing window is over: run on_change for everything it gathered. */
static void sync_coalesce_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sync_entry *e = arg;
	char err[256];

	e->changed = false;
	e->cmd = command_start(e->s->base, e->conf.on_change, e->conf.on_change_timeout_ms,
			       sync_command_done, e, err, sizeof(err));
	if (!e->cmd) {
		e->st.command_failures_total++;
		log_error("%s: cannot run on_change: %s", e->label, err);
		sync_set_run(e, SYNC_RUN_IDLE);
		return;
	}
	sync_set_run(e, SYNC_RUN_RUNNING);
	e->st.commands_total++;
	log_info("%s: running on_change (pid %d): %s", e->label, command_pid(e->cmd),
		 e->conf.on_change);
}

/* Open the coalescing window: changes until it ends share the run that follows. */
static void sync_schedule(struct sync_entry *e)
{
	struct timeval tv = timeval_from_ms(e->conf.coalesce_ms);

	if (!sync_set_run(e, SYNC_RUN_COALESCING))
		return;
	evtimer_add(e->coalesce_ev, &tv);
}

/*
 * Files changed: run on_change after the coalescing window, or once more
 * after the run in progress. A window already open takes the change along.
 */
static void sync_changed(struct sync_entry *e)
{
	if (!e->changed)
		return;
	if (!e->conf.on_change) {
		e->changed = false;
		return;
	}
	switch (e->run) {
	case SYNC_RUN_IDLE:
		sync_schedule(e);
		break;
	case SYNC_RUN_COALESCING:
		break;
	case SYNC_RUN_RUNNING:
		e->changed = false;
		sync_set_run(e, SYNC_RUN_AGAIN);
		break;
	case SYNC_RUN_AGAIN:
		e->changed = false;
		break;
	}
}

/* ---- single node ----------------------------------------------------------- */

static void sync_on_data(void *arg, const char *data, size_t len)
{
	struct sync_entry *e = arg;
	int dfd;

	sync_set_state(e, SYNC_SYNCED, "node read");
	if (len > e->conf.max_size) {
		e->st.refused_total++;
		log_warn("%s: node holds %zu bytes, over max_size %llu: refused; %s untouched",
			 e->label, len, (unsigned long long)e->conf.max_size, e->conf.file);
		return;
	}
	dfd = sync_dir_open(e);
	if (dfd < 0)
		return;
	if (sync_put(e, dfd, e->file_name, data, len) == SYNC_PUT_WROTE) {
		e->changed = true;
		sync_changed(e);
	}
	close(dfd);
}

static void sync_on_absent(void *arg)
{
	struct sync_entry *e = arg;
	int dfd;

	sync_set_state(e, SYNC_MISSING, "node absent");
	if (e->conf.on_delete != SYNC_DELETE_REMOVE) {
		log_info("%s: node absent; keeping %s (on_delete: keep)", e->label, e->conf.file);
		return;
	}
	dfd = sync_dir_open(e);
	if (dfd < 0)
		return;
	if (sync_remove(e, dfd, e->file_name)) {
		e->changed = true;
		sync_changed(e);
	}
	close(dfd);
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
	struct sync_old o = { 0 };
	int dfd = open(e->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (dfd < 0)
		return;
	if (!sync_read_prefix(dfd, SYNC_MANIFEST, SYNC_MANIFEST_MAX, &o)) {
		close(dfd);
		return;
	}
	close(dfd);
	for (size_t i = 0; i < o.len;) {
		char name[SYNC_NAME_MAX + 1];
		const char *nl = memchr(o.bytes + i, '\n', o.len - i);
		size_t n = nl ? (size_t)(nl - (o.bytes + i)) : o.len - i;
		if (n <= SYNC_NAME_MAX && n > 0) {
			memcpy(name, o.bytes + i, n);
			name[n] = '\0';
			if (sync_child_name_ok(name))
				sync_managed_add(e, name);
		}
		i += n + 1;
	}
	free(o.bytes);
	e->managed_dirty = false;
}

static void sync_manifest_save(struct sync_entry *e, int dfd)
{
	char err[512];
	size_t len = 0;
	char *text;

	e->managed_dirty = false;
	if (e->n_managed == 0) {
		if (unlinkat(dfd, SYNC_MANIFEST, 0) < 0 && errno != ENOENT)
			log_warn("%s: remove %s/%s: %s", e->label, e->dir, SYNC_MANIFEST,
				 strerror(errno));
		return;
	}
	for (size_t i = 0; i < e->n_managed; i++)
		len += strlen(e->managed[i]) + 1;
	text = xmalloc(len + 1);
	len = 0;
	for (size_t i = 0; i < e->n_managed; i++)
		len += (size_t)sprintf(text + len, "%s\n", e->managed[i]);
	if (file_write_atomic_at(dfd, e->dir, SYNC_MANIFEST, text, len, 0600, -1, -1, err,
				 sizeof(err)) < 0) {
		e->st.errors_total++;
		log_warn("%s: cannot record the files it wrote: %s", e->label, err);
	}
	free(text);
}

/* ---- children: what the zkset reads ------------------------------------------ */

/* Per taken child (zkset_member.priv): what it counts against max_total_size. */
struct sync_child {
	uint64_t len;			/* bytes of its file as zklb last wrote or found it */
};

static const char *const sync_admit_why[] = {
	[SYNC_ADMIT_OK] = "",
	[SYNC_ADMIT_BAD_NAME] = "cannot be a file name",
	[SYNC_ADMIT_NOT_LISTED] = "matches none of names",
	[SYNC_ADMIT_TOO_MANY] = "is over max_children",
};

/* A child name for a log line: control bytes as '?', cut to fit. */
static void sync_show_name(const char *name, char *buf, size_t len)
{
	size_t i;

	for (i = 0; name[i] && i + 1 < len; i++)
		buf[i] = (unsigned char)name[i] < 0x20 || name[i] == 0x7f ? '?' : name[i];
	buf[i] = '\0';
}

/*
 * Which children are read: a usable name, listed by names, within
 * max_children (in the order they appear; a child refused for the count is
 * taken when it next appears with room). A refusal is counted each time;
 * the first of a batch is logged, the rest summed up when the batch settles,
 * so 100k unwanted children make two log lines, not 100k.
 */
static bool sync_child_wanted(void *arg, const char *name)
{
	struct sync_entry *e = arg;
	enum sync_admit a = sync_child_admit(&e->conf, e->n_taken, name);
	char shown[80];

	if (a == SYNC_ADMIT_OK) {
		e->n_taken++;
		return true;
	}
	e->st.refused_total++;
	if (e->batch_refused++ == 0) {
		sync_show_name(name, shown, sizeof(shown));
		log_warn("%s: child name '%s' %s: refused, never written", e->label, shown,
			 sync_admit_why[a]);
	}
	return false;
}

static void sync_child_forget(void *arg, struct zkset_member *m)
{
	struct sync_entry *e = arg;
	struct sync_child *c = m->priv;

	if (m->wanted && e->n_taken > 0)
		e->n_taken--;
	if (c) {
		e->total_size -= MIN(c->len, e->total_size);
		free(c);
		m->priv = NULL;
	}
}

/* A child's bytes: they become dir/<child>, within max_size and max_total_size. */
static void sync_child_read(void *arg, struct zkset_member *m, int rc, const char *data,
			    size_t len)
{
	struct sync_entry *e = arg;
	struct sync_child *c = m->priv;
	uint64_t old_len = c ? c->len : 0;
	enum sync_put_result pr;
	int dfd;

	if (rc != ZOK)
		return;	/* unreadable: the zkset logged, counted and retries it */
	if (len > e->conf.max_size) {
		e->st.refused_total++;
		log_warn("%s: child %s holds %zu bytes, over max_size %llu: refused; file untouched",
			 e->label, m->name, len, (unsigned long long)e->conf.max_size);
		return;
	}
	if (!sync_size_fits(e->total_size, old_len, len, e->conf.max_total_size)) {
		e->st.refused_total++;
		log_warn("%s: child %s (%zu bytes) would take the children past max_total_size "
			 "%llu: refused; file untouched", e->label, m->name, len,
			 (unsigned long long)e->conf.max_total_size);
		return;
	}
	dfd = sync_dir_open(e);
	if (dfd < 0)
		return;
	pr = sync_put(e, dfd, m->name, data ? data : "", len);
	close(dfd);
	if (pr == SYNC_PUT_ERROR)
		return;
	if (pr == SYNC_PUT_WROTE)
		e->changed = true;
	sync_managed_add(e, m->name);
	if (!c)
		m->priv = c = xcalloc(1, sizeof(*c));
	e->total_size = e->total_size - old_len + len;
	c->len = len;
}

static int sync_cmp_member(const void *key, const void *elem)
{
	return strcmp(key, ((const struct zkset_member *)elem)->name);
}

/*
 * The files of children no longer taken go, and only those zklb wrote (the
 * manifest): removed since the last list, or while zklb was not running.
 */
static void sync_prune(struct sync_entry *e, int dfd)
{
	size_t n;
	const struct zkset_member *members = zkset_members(e->set, &n);

	for (size_t m = 0; m < e->n_managed;) {
		const struct zkset_member *hit =
			n ? bsearch(e->managed[m], members, n, sizeof(*members), sync_cmp_member)
			  : NULL;
		if (hit && hit->wanted) {
			m++;
			continue;
		}
		if (sync_remove(e, dfd, e->managed[m]))
			e->changed = true;
		sync_managed_drop(e, m);
	}
}

/* The node is gone (or never was): on_delete decides about the files. */
static void sync_children_missing(struct sync_entry *e, int dfd)
{
	if (!sync_set_state(e, SYNC_MISSING, "node absent"))
		return;
	if (e->conf.on_delete != SYNC_DELETE_REMOVE) {
		log_info("%s: node absent; keeping the files in %s (on_delete: keep)", e->label,
			 e->dir);
		return;
	}
	while (e->n_managed) {
		if (sync_remove(e, dfd, e->managed[0]))
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
	int dfd;

	if (e->batch_refused > 1)
		log_warn("%s: %llu more children refused (names, max_children, or unusable names)",
			 e->label, (unsigned long long)e->batch_refused - 1);
	e->batch_refused = 0;
	dfd = sync_dir_open(e);
	if (dfd < 0)
		return;
	if (zkset_phase(e->set) == ZKSET_ABSENT) {
		sync_children_missing(e, dfd);
	} else {
		sync_set_state(e, SYNC_SYNCED, "children listed");
		sync_prune(e, dfd);
	}
	if (e->managed_dirty)
		sync_manifest_save(e, dfd);
	close(dfd);
	sync_changed(e);
}

static const struct zkset_hooks sync_children_hooks = {
	.wanted = sync_child_wanted,
	.on_read = sync_child_read,
	.forget = sync_child_forget,
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

static bool sync_names_same(const struct sync_conf *a, const struct sync_conf *b)
{
	if (a->n_names != b->n_names)
		return false;
	for (size_t i = 0; i < a->n_names; i++)
		if (strcmp(a->names[i], b->names[i]) != 0)
			return false;
	return true;
}

static bool sync_conf_same(const struct sync_conf *a, const struct sync_conf *b)
{
	return str_same(a->path, b->path) && str_same(a->file, b->file) &&
	       a->children == b->children && str_same(a->dir, b->dir) && a->mode == b->mode &&
	       str_same(a->on_change, b->on_change) &&
	       a->on_change_timeout_ms == b->on_change_timeout_ms &&
	       a->on_delete == b->on_delete && a->max_size == b->max_size &&
	       sync_names_same(a, b) && a->max_children == b->max_children &&
	       a->max_total_size == b->max_total_size && a->uid == b->uid && a->gid == b->gid &&
	       a->coalesce_ms == b->coalesce_ms;
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
	e->conf.names = c->n_names ? xcalloc(c->n_names, sizeof(*e->conf.names)) : NULL;
	for (size_t i = 0; i < c->n_names; i++)
		e->conf.names[i] = xstrdup(c->names[i]);
	e->conf.owner = dup_or_null(c->owner);
	e->conf.group = dup_or_null(c->group);
	if (e->conf.children) {
		e->dir = xstrdup(e->conf.dir);
	} else {
		const char *slash = strrchr(e->conf.file, '/');
		e->file_name = slash ? slash + 1 : e->conf.file;
		e->dir = xstrdup(slash == e->conf.file ? "/" : slash ? e->conf.file : ".");
		if (slash && slash != e->conf.file)
			e->dir[slash - e->conf.file] = '\0';
	}
	e->coalesce_ev = evtimer_new(s->base, sync_coalesce_cb, e);
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
	event_free(e->coalesce_ev);
	for (size_t i = 0; i < e->n_managed; i++)
		free(e->managed[i]);
	free(e->managed);
	for (size_t i = 0; i < e->conf.n_names; i++)
		free(e->conf.names[i]);
	free(e->conf.names);
	free(e->conf.owner);
	free(e->conf.group);
	free(e->dir);
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
	/* Files already changed: their run is not lost with the entry. */
	if (e->run == SYNC_RUN_COALESCING) {
		event_del(e->coalesce_ev);
		sync_coalesce_cb(-1, EV_TIMEOUT, e);
	}
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
