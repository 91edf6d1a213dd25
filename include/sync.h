/*
 * sync — mirror ZooKeeper configuration znodes into local files (the
 * `sync:` entries) and run the entry's on_change command after a change.
 *
 * Single node (file:): the node's bytes become the file. Children
 * (children: true, dir:): every child of the node becomes a file of the
 * same name in dir; added, changed and removed children add, rewrite and
 * remove files. A child is taken only if its name can be a plain file name
 * (not ".", "..", a leading '.', '/', control bytes, over 255 bytes),
 * matches one of `names` (fnmatch), and fits under max_children; its bytes
 * only within max_size and, with the others, max_total_size. Anything else
 * is refused: counted, logged (one line per batch), never written. The
 * names zklb wrote are remembered in dir/.zklb-sync, so a child removed
 * while zklb was down is removed at the next start, and no other file in
 * dir is ever touched.
 *
 * Files are replaced atomically (file_write_atomic_at: a temporary file in
 * the same directory, owner and mode set on its descriptor, fsync, rename),
 * so a reader sees the old or the new bytes, never a mix. Every operation
 * is relative to the directory opened with O_NOFOLLOW (a symlink as the
 * directory is refused) and opens files with O_NOFOLLOW (a symlink at a
 * file's name is replaced, never followed). Nothing is written and no
 * command runs when the bytes are already those of the file (start-up
 * included); a differing mode or owner alone is fixed on the file's
 * descriptor (rewritten instead when the file has another hard link),
 * without the command. ZooKeeper
 * unreachable: files untouched. The node deleted: `on_delete: keep`
 * (default) leaves the file(s); `remove` deletes them and runs the command.
 * Data larger than max_size is refused: logged, counted, file untouched.
 *
 * on_change runs under /bin/sh -c through command.h (never blocking the
 * control thread), with on_change_timeout (its process group is killed);
 * `coalesce` after the first change, so changes within that window share
 * one run; one at a time per entry: changes that arrive while it runs make
 * it run once more when it ends (after another window). Its exit status and first lines of
 * output are logged. The file writes themselves are blocking I/O on the
 * control thread (small files, rare changes).
 *
 * Lifecycles, each with one transition function:
 *   entry (enum sync_state, sync_set_state):
 *     WAITING --node read--> SYNCED <--deleted / created--> MISSING
 *        \------------------node absent-----------------------^
 *   command (enum sync_run, sync_set_run):
 *     IDLE --change--> COALESCING --window over--> RUNNING --exit--> IDLE
 *     RUNNING --change--> AGAIN --exit--> IDLE --> COALESCING (the run asked for)
 *
 * Thread: the control thread (the zk's event base).
 */
#ifndef ZKLB_SYNC_H
#define ZKLB_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sync_conf;

struct event_base;
struct zk;
struct sync;

#define SYNC_MANIFEST ".zklb-sync"	/* in dir: the names zklb wrote, one per line */
#define SYNC_NAME_MAX 255		/* bytes in a child (file) name */

enum sync_state {
	SYNC_WAITING = 0,		/* no answer from ZooKeeper yet: files untouched */
	SYNC_SYNCED,			/* the node exists; the file(s) follow it */
	SYNC_MISSING,			/* the node does not exist (on_delete applied) */
};

enum sync_run {
	SYNC_RUN_IDLE = 0,		/* no command running */
	SYNC_RUN_COALESCING,		/* files changed: on_change runs when the window ends */
	SYNC_RUN_RUNNING,		/* on_change is running */
	SYNC_RUN_AGAIN,			/* running, and another change came: run again after */
};

/* One entry, for the admin API and /metrics. Strings are borrowed until the next apply. */
struct sync_stats {
	const char *path;		/* znode */
	const char *target;		/* file, or dir for children */
	enum sync_state state;
	enum sync_run run;
	uint64_t writes_total;		/* files written (zklb_sync_writes_total) */
	uint64_t removals_total;	/* files removed (zklb_sync_removals_total) */
	uint64_t unchanged_total;	/* updates skipped: bytes already on disk */
	uint64_t refused_total;		/* over max_size or unusable child names (zklb_sync_refused_total) */
	uint64_t errors_total;		/* file or ZooKeeper errors (zklb_sync_errors_total) */
	uint64_t commands_total;	/* on_change runs started (zklb_sync_commands_total) */
	uint64_t command_failures_total;	/* runs that failed, timed out or could not start */
	uint64_t last_change_ms;	/* wall ms of the last file change; 0 = none */
};

/* zk and base must outlive the sync. Nothing is synced until sync_apply(). */
struct sync *sync_new(struct event_base *base, struct zk *zk);

/*
 * Make v[0..n) (read during the call, not kept) the synced set. An entry
 * whose settings are all unchanged keeps running; any other is started
 * afresh (which writes nothing when the files already hold the bytes).
 * Entries no longer configured stop (their files stay); a command they
 * are running finishes and is reaped.
 */
void sync_apply(struct sync *s, const struct sync_conf *v, size_t n);

/* Stop everything; running commands are left to finish on their own. NULL is a no-op. */
void sync_free(struct sync *s);

size_t sync_count(const struct sync *s);
void sync_stats(const struct sync *s, size_t i, struct sync_stats *out);

const char *sync_state_name(enum sync_state st);

/* ---- pure pieces, exported for the unit tests ---- */

/* Can a child named `name` become dir/name? (see above) */
bool sync_child_name_ok(const char *name);

/* Does name match one of globs[0..n) (fnmatch, flags 0)? n == 0: every name does. */
bool sync_name_listed(char *const *globs, size_t n, const char *name);

enum sync_admit {
	SYNC_ADMIT_OK = 0,		/* read it and write its file */
	SYNC_ADMIT_BAD_NAME,		/* cannot be a plain file name */
	SYNC_ADMIT_NOT_LISTED,		/* matches none of `names` */
	SYNC_ADMIT_TOO_MANY,		/* n_taken children already: max_children */
};

/* May a child named name be taken, with n_taken already taken under c? */
enum sync_admit sync_child_admit(const struct sync_conf *c, size_t n_taken, const char *name);

/*
 * Do the children still fit max_total once one of them, counted as old_len
 * bytes in total, holds len bytes? Never overflows.
 */
bool sync_size_fits(uint64_t total, uint64_t old_len, uint64_t len, uint64_t max_total);

enum sync_action {
	SYNC_ACTION_NONE = 0,		/* the file holds exactly these bytes with this mode */
	SYNC_ACTION_CHMOD,		/* same bytes, other mode: chmod only, no command */
	SYNC_ACTION_WRITE,		/* missing or different: write and run the command */
};

/*
 * What to do to make a file hold data[0..len) with mode. old: the file's
 * bytes (old_len of them; a caller may stop reading at len + 1), NULL when
 * there is no file; old_mode its permission bits.
 */
enum sync_action sync_decide(const void *old, size_t old_len, unsigned old_mode,
			     const void *data, size_t len, unsigned mode);

#endif
