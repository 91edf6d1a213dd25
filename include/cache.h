/*
 * cache — the last applied view of each service, on disk, so that a restart
 * while ZooKeeper is unreachable still serves (cache_dir/<service>.json).
 *
 * Files are written atomically: a temporary file in the same directory,
 * fsync, rename over the old one, fsync the directory. A reader therefore
 * sees either the old or the new file, never a torn one. The format is
 *   {"format":"zklb-cache/1","service":"web","source":"curator:/services/web",
 *    "written_at_ms":1700000000000,"instances":[<Curator ServiceInstance>...]}
 * `source` names what the view was read from; a file whose source differs
 * from the service's current discovery settings is not used.
 *
 * cache_save/cache_load do blocking file I/O. The control thread uses them
 * through a cache_writer: a thread that writes the latest view of each
 * service, so an fsync on a busy disk never delays the event loop (several
 * changes to one service while a write is in progress coalesce into one).
 */
#ifndef ZKLB_CACHE_H
#define ZKLB_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "instance.h"

#define CACHE_MAX_FILE (64u * 1024 * 1024)	/* larger files are treated as corrupt */

/*
 * True when `service` can name a file: 1..128 bytes of [A-Za-z0-9._-], not
 * starting with '.'. Other names are not cached (the caller logs it once).
 */
bool cache_name_ok(const char *service);

/*
 * Write the view v[0..n) of `service` (read from `source`) to dir, creating
 * dir (mkdir -p, 0755) if it does not exist. Returns 0, or -errno with a
 * message in err.
 */
int cache_save(const char *dir, const char *service, const char *source,
	       const struct instance *v, size_t n, char *err, size_t errlen);

/*
 * Read the view of `service`. On success returns 0 and *out (malloc'd, sorted
 * by id, free() it; NULL when n is 0), *n_out and *written_at_ms (wall ms,
 * may be NULL). Errors:
 *   -ENOENT  no file (not worth a warning);
 *   -ESTALE  the file was written for another source (err says which);
 *   -EINVAL  corrupt: not JSON, wrong format, a bad or duplicate instance;
 *   -errno   the file could not be read.
 */
int cache_load(const char *dir, const char *service, const char *source,
	       struct instance **out, size_t *n_out, uint64_t *written_at_ms,
	       char *err, size_t errlen);

struct cache_writer;

/* Start the writer thread for dir (copied). NULL (logged) if it cannot start. */
struct cache_writer *cache_writer_new(const char *dir);

/*
 * Queue the view of `service` for writing (everything is copied; returns at
 * once). A queued, not yet written view of the same service is replaced.
 * Failures are counted, and logged by the writer thread once until the
 * message changes or a write succeeds. Any thread.
 */
void cache_writer_put(struct cache_writer *w, const char *service, const char *source,
		      const struct instance *v, size_t n);

/* Write what is queued, stop the thread, free. NULL is a no-op. */
void cache_writer_free(struct cache_writer *w);

/* Files written and failed so far (for metrics and tests). */
void cache_writer_counts(struct cache_writer *w, uint64_t *written, uint64_t *failed);

#endif
