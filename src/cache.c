/*
 * cache — see cache.h.
 */
#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define CACHE_FORMAT "zklb-cache/1"

bool cache_name_ok(const char *service)
{
	return service[0] != '.' && name_is_portable(service, 128);
}

/* dir/<service>.json into path; 0, or -errno with a message in err. */
static int cache_path(const char *dir, const char *service, char *path, size_t len, char *err,
		      size_t errlen)
{
	if (!cache_name_ok(service)) {
		snprintf(err, errlen, "service name '%s' cannot name a cache file", service);
		return -EINVAL;
	}
	if ((size_t)snprintf(path, len, "%s/%s.json", dir, service) >= len) {
		snprintf(err, errlen, "cache path too long");
		return -ENAMETOOLONG;
	}
	return 0;
}

int cache_save(const char *dir, const char *service, const char *source,
	       const struct instance *v, size_t n, char *err, size_t errlen)
{
	char path[4096];
	json_t *root, *arr;
	char *text;
	size_t len;
	int rc;

	rc = cache_path(dir, service, path, sizeof(path), err, errlen);
	if (rc < 0)
		return rc;

	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, instance_to_curator_json(&v[i], service));
	root = json_object();
	json_object_set_new(root, "format", json_string(CACHE_FORMAT));
	json_object_set_new(root, "service", json_string(service));
	json_object_set_new(root, "source", json_string(source));
	json_object_set_new(root, "written_at_ms", json_integer((json_int_t)wall_ms()));
	json_object_set_new(root, "instances", arr);
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!text) {
		snprintf(err, errlen, "cannot encode the view");
		return -ENOMEM;
	}
	len = strlen(text);
	text = xrealloc(text, len + 2);
	text[len++] = '\n';
	text[len] = '\0';

	rc = file_write_atomic(path, text, len, 0644, err, errlen);
	/* First write into a cache_dir nobody created yet. */
	if (rc == -ENOENT && dir_make(dir, 0755) == 0)
		rc = file_write_atomic(path, text, len, 0644, err, errlen);
	free(text);
	return rc;
}

static int read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		if (rc != -ENOENT)
			snprintf(err, errlen, "open %s: %s", path, strerror(-rc));
		else
			snprintf(err, errlen, "%s does not exist", path);
		return rc;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > CACHE_MAX_FILE) {
		snprintf(err, errlen, "%s is not a regular file of at most %u bytes", path,
			 CACHE_MAX_FILE);
		close(fd);
		return -EINVAL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	got = fd_read_full(fd, buf, (size_t)st.st_size);
	close(fd);
	*out = buf;
	*len = got;
	return 0;
}

int cache_load(const char *dir, const char *service, const char *source,
	       struct instance **out, size_t *n_out, uint64_t *written_at_ms,
	       char *err, size_t errlen)
{
	char path[4096], reason[INSTANCE_REASON_MAX];
	struct instance *v = NULL;
	json_error_t jerr;
	json_t *root, *arr, *x;
	size_t len = 0, n;
	char *text = NULL;
	int rc;

	*out = NULL;
	*n_out = 0;
	rc = cache_path(dir, service, path, sizeof(path), err, errlen);
	if (rc < 0)
		return rc;
	rc = read_file(path, &text, &len, err, errlen);
	if (rc < 0)
		return rc;
	root = json_loadb(text, len, 0, &jerr);
	free(text);
	if (!root) {
		snprintf(err, errlen, "%s: not JSON: %s (line %d)", path, jerr.text, jerr.line);
		return -EINVAL;
	}
	x = json_object_get(root, "format");
	if (!json_is_string(x) || strcmp(json_string_value(x), CACHE_FORMAT) != 0) {
		snprintf(err, errlen, "%s: format is not %s", path, CACHE_FORMAT);
		rc = -EINVAL;
		goto out;
	}
	x = json_object_get(root, "source");
	if (!json_is_string(x)) {
		snprintf(err, errlen, "%s: no source", path);
		rc = -EINVAL;
		goto out;
	}
	if (strcmp(json_string_value(x), source) != 0) {
		snprintf(err, errlen, "%s was written for %.200s, not %.200s", path,
			 json_string_value(x), source);
		rc = -ESTALE;
		goto out;
	}
	arr = json_object_get(root, "instances");
	if (!json_is_array(arr)) {
		snprintf(err, errlen, "%s: no instances array", path);
		rc = -EINVAL;
		goto out;
	}
	n = json_array_size(arr);
	if (n > 0)
		v = xcalloc(n, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		if (instance_from_curator_json(NULL, json_array_get(arr, i), &v[i], reason,
					       sizeof(reason)) != INSTANCE_OK) {
			snprintf(err, errlen, "%s: instance %zu: %s", path, i, reason);
			rc = -EINVAL;
			goto out;
		}
	}
	instance_sort(v, n);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(v[i - 1].id, v[i].id) == 0) {
			snprintf(err, errlen, "%s: duplicate instance id %.200s", path, v[i].id);
			rc = -EINVAL;
			goto out;
		}
	}
	x = json_object_get(root, "written_at_ms");
	if (written_at_ms)
		*written_at_ms = json_is_integer(x) ? (uint64_t)json_integer_value(x) : 0;
	*out = v;
	*n_out = n;
	v = NULL;
	rc = 0;
out:
	free(v);
	json_decref(root);
	return rc;
}

/* ---------- the writer thread ---------- */

struct cache_job {
	char *service;			/* owned */
	char *source;			/* owned */
	struct instance *v;		/* owned; NULL when n is 0 */
	size_t n;			/* entries in v */
	struct cache_job *next;		/* queue link */
};

struct cache_writer {
	char *dir;			/* owned */
	pthread_t thread;		/* the writer */
	pthread_mutex_t lock;		/* protects everything below */
	pthread_cond_t cond;		/* signalled on put and on stop */
	struct cache_job *jobs;		/* FIFO, at most one per service */
	bool stop;			/* cache_writer_free() was called */
	uint64_t written;		/* files written */
	uint64_t failed;		/* writes that failed */
	char last_err[512];		/* writer thread only: last failure logged ("" after a success) */
};

static void job_free(struct cache_job *j)
{
	free(j->service);
	free(j->source);
	free(j->v);
	free(j);
}

static void *writer_main(void *arg)
{
	struct cache_writer *w = arg;
	char err[512];

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct cache_job *j;
		int rc;

		while (!w->jobs && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		j = w->jobs;
		if (!j)
			break;		/* stopping and drained */
		w->jobs = j->next;
		pthread_mutex_unlock(&w->lock);
		rc = cache_save(w->dir, j->service, j->source, j->v, j->n, err, sizeof(err));
		/* A full or read-only disk fails every write: say so once, not per change. */
		if (rc < 0 && strcmp(err, w->last_err) != 0) {
			log_warn("svc=%s: cache not written: %s", j->service, err);
			snprintf(w->last_err, sizeof(w->last_err), "%s", err);
		} else if (rc == 0 && w->last_err[0]) {
			log_info("svc=%s: cache written again", j->service);
			w->last_err[0] = '\0';
		}
		job_free(j);
		pthread_mutex_lock(&w->lock);
		if (rc < 0)
			w->failed++;
		else
			w->written++;
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

struct cache_writer *cache_writer_new(const char *dir)
{
	struct cache_writer *w = xcalloc(1, sizeof(*w));
	int rc;

	w->dir = xstrdup(dir);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	rc = pthread_create(&w->thread, NULL, writer_main, w);
	if (rc != 0) {
		log_error("cache: cannot start the writer thread: %s", strerror(rc));
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		free(w->dir);
		free(w);
		return NULL;
	}
	return w;
}

void cache_writer_put(struct cache_writer *w, const char *service, const char *source,
		      const struct instance *v, size_t n)
{
	struct cache_job *j, **pp;
	struct instance *copy = NULL;

	if (n) {
		copy = xmalloc(n * sizeof(*copy));
		memcpy(copy, v, n * sizeof(*copy));
	}
	pthread_mutex_lock(&w->lock);
	for (pp = &w->jobs; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->service, service) == 0)
			break;
	}
	if (*pp) {
		j = *pp;
		free(j->v);
		free(j->source);
		j->source = xstrdup(source);
	} else {
		j = xcalloc(1, sizeof(*j));
		j->service = xstrdup(service);
		j->source = xstrdup(source);
		*pp = j;
	}
	j->v = copy;
	j->n = n;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void cache_writer_free(struct cache_writer *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w->dir);
	free(w);
}

void cache_writer_counts(struct cache_writer *w, uint64_t *written, uint64_t *failed)
{
	pthread_mutex_lock(&w->lock);
	*written = w->written;
	*failed = w->failed;
	pthread_mutex_unlock(&w->lock);
}
