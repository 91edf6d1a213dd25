/*
 * accesslog — see accesslog.h. A text line looks like
 *   2026-12-06T09:30:00.123Z svc="web" client="127.0.0.1:40312"
 *   backend="10.0.0.5:9001" id="i-1" attempts=1 connect_ms=1 total_ms=52
 *   bytes_in=812 bytes_out=77 established=true reused=false end=client_closed
 * (one line); a JSON line has the same fields as one object. Backend
 * addresses and ids come from ZooKeeper: every string is quoted and escaped
 * like a JSON string, so no value can end the line or fake a field.
 *
 * The rings: the worker fills slots[head % SLOTS] and then publishes head
 * (release); the logger reads up to head (acquire), writes, and publishes
 * tail. One producer and one consumer per ring, so no lock is taken.
 *
 * The logger wakes every LOGGER_IDLE_MS when the rings were empty; a line
 * therefore reaches the file within that delay of the close.
 */
#include "accesslog.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOGGER_IDLE_MS 20		/* sleep when every ring was empty */
#define LOGGER_BUF (64 * 1024)		/* lines are gathered up to this before a write */
#define LINE_MAX_LEN 2048		/* one formatted record, at most */
#define STUCK_WRITE_MS 1000		/* at exit, a write that cannot progress gives up */
#define STALL_POLL_MS 100		/* a full pipe is polled this often (stop flag) */

struct accesslog {
	char *path;				/* owned; NULL for stderr */
	enum log_format format;
	int fd;					/* owned unless stderr */
	struct accesslog_ring *rings;		/* owned; n_rings */
	unsigned n_rings;
	pthread_t thread;
	bool started;				/* thread is running */
	_Atomic bool stop;			/* set by accesslog_free */
	_Atomic bool reopen;			/* set by accesslog_reopen */
	_Atomic uint64_t lines;
	_Atomic uint64_t write_errors;
	_Atomic uint64_t reopens;
	bool error_logged;			/* one log line per run of failed writes */
	char *buf;				/* owned; LOGGER_BUF, the logger's */
	size_t buf_len;
};

static int open_target(const char *path)
{
	/* O_NONBLOCK: a FIFO without a reader fails here instead of hanging the start. */
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
	return fd;
}

struct accesslog *accesslog_new(const char *target, enum log_format format, unsigned n_rings,
				char *err, size_t errlen)
{
	struct accesslog *al = xcalloc(1, sizeof(*al));
	al->format = format;
	if (strcmp(target, "stderr") == 0) {
		al->fd = STDERR_FILENO;
	} else {
		al->fd = open_target(target);
		if (al->fd < 0) {
			snprintf(err, errlen, "log.access: cannot open %s: %s", target, strerror(errno));
			free(al);
			return NULL;
		}
		al->path = xstrdup(target);
	}
	al->n_rings = n_rings;
	al->rings = xcalloc(n_rings, sizeof(*al->rings));
	for (unsigned i = 0; i < n_rings; i++)
		al->rings[i].slots = xcalloc(ACCESSLOG_RING_SLOTS, sizeof(struct accesslog_record));
	al->buf = xmalloc(LOGGER_BUF);
	return al;
}

struct accesslog_ring *accesslog_ring(struct accesslog *al, unsigned i)
{
	return i < al->n_rings ? &al->rings[i] : NULL;
}

bool accesslog_push(struct accesslog_ring *ring, const struct accesslog_record *rec)
{
	uint32_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
	uint32_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
	if (head - tail >= ACCESSLOG_RING_SLOTS) {
		atomic_fetch_add_explicit(&ring->dropped, 1, memory_order_relaxed);
		return false;
	}
	ring->slots[head % ACCESSLOG_RING_SLOTS] = *rec;
	atomic_store_explicit(&ring->head, head + 1, memory_order_release);
	return true;
}

void accesslog_reopen(struct accesslog *al)
{
	if (al)
		atomic_store(&al->reopen, true);
}

void accesslog_stats(const struct accesslog *al, struct accesslog_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!al)
		return;
	out->lines = atomic_load(&al->lines);
	out->write_errors = atomic_load(&al->write_errors);
	out->reopens = atomic_load(&al->reopens);
	for (unsigned i = 0; i < al->n_rings; i++)
		out->dropped += atomic_load(&al->rings[i].dropped);
}

/* Append `key`"value" with the value escaped as a JSON string's inside. */
static size_t put_quoted(char *buf, size_t len, size_t cap, const char *key, const char *value)
{
	len += (size_t)snprintf(buf + len, cap - len, "%s\"", key);
	if (len + 2 > cap)
		return cap - 1;		/* no room for the closing quote and the NUL */
	len = log_json_escape(buf, len, cap - 2, value);
	buf[len++] = '"';
	buf[len] = '\0';
	return len;
}

size_t accesslog_format(const struct accesslog_record *rec, enum log_format format, char *buf,
			size_t len)
{
	char ts[32];
	log_timestamp(rec->end_wall_ms, ts, sizeof(ts));
	bool json = format == LOG_FORMAT_JSON;
	size_t n = 0;
	if (len < 64) {
		if (len)
			buf[0] = '\0';
		return 0;
	}
	n = (size_t)snprintf(buf, len, json ? "{\"ts\":\"%s\"" : "%s", ts);
	n = put_quoted(buf, n, len, json ? ",\"service\":" : " svc=", rec->service);
	n = put_quoted(buf, n, len, json ? ",\"client\":" : " client=", rec->client);
	n = put_quoted(buf, n, len, json ? ",\"backend\":" : " backend=", rec->backend);
	n = put_quoted(buf, n, len, json ? ",\"id\":" : " id=", rec->backend_id);
	unsigned long long connect = rec->connect_ms, total = rec->total_ms;
	unsigned long long in = rec->bytes_in, out = rec->bytes_out;
	const char *est = rec->established ? "true" : "false";
	const char *reused = rec->reused ? "true" : "false";
	const char *end = rec->end ? rec->end : "?";
	int k;
	if (json)
		k = snprintf(buf + n, len - n,
			     ",\"attempts\":%u,\"connect_ms\":%llu,\"total_ms\":%llu,"
			     "\"bytes_in\":%llu,\"bytes_out\":%llu,\"established\":%s,"
			     "\"reused\":%s,\"end\":\"%s\"}\n",
			     rec->attempts, connect, total, in, out, est, reused, end);
	else
		k = snprintf(buf + n, len - n,
			     " attempts=%u connect_ms=%llu total_ms=%llu bytes_in=%llu bytes_out=%llu"
			     " established=%s reused=%s end=%s\n",
			     rec->attempts, connect, total, in, out, est, reused, end);
	if (k < 0 || (size_t)k >= len - n) {
		/* Cannot happen with LINE_MAX_LEN and the field sizes; end the line anyway. */
		buf[len - 2] = '\n';
		buf[len - 1] = '\0';
		return len - 1;
	}
	return n + (size_t)k;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Write the gathered lines. A full pipe is waited for, bounded once stopping. */
static void logger_flush(struct accesslog *al, uint64_t lines)
{
	size_t off = 0;
	uint64_t stuck_since = 0;
	int err = 0;
	while (off < al->buf_len) {
		ssize_t w = write(al->fd, al->buf + off, al->buf_len - off);
		if (w > 0) {
			off += (size_t)w;
			stuck_since = 0;
			continue;
		}
		err = w < 0 ? errno : EIO;
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			uint64_t now = now_ms();
			if (!stuck_since)
				stuck_since = now;
			if (atomic_load(&al->stop) && now - stuck_since >= STUCK_WRITE_MS) {
				err = ETIMEDOUT;
				break;
			}
			struct pollfd p = { .fd = al->fd, .events = POLLOUT };
			(void)poll(&p, 1, STALL_POLL_MS);
			continue;
		}
		break;
	}
	if (off < al->buf_len) {
		atomic_fetch_add(&al->write_errors, lines);
		if (!al->error_logged)
			log_error("log.access: write to %s failed: %s; lines are lost",
				  al->path ? al->path : "stderr", strerror(err));
		al->error_logged = true;
	} else {
		atomic_fetch_add(&al->lines, lines);
		al->error_logged = false;
	}
	al->buf_len = 0;
}

static void logger_reopen(struct accesslog *al)
{
	if (!al->path)
		return;
	int fd = open_target(al->path);
	if (fd < 0) {
		log_error("log.access: cannot reopen %s: %s; writing on to the old file", al->path,
			  strerror(errno));
		return;
	}
	close(al->fd);
	al->fd = fd;
	atomic_fetch_add(&al->reopens, 1);
	log_info("log.access: reopened %s", al->path);
}

/* One pass over every ring; returns the records taken. */
static uint64_t logger_drain(struct accesslog *al)
{
	uint64_t taken = 0, pending = 0;
	for (unsigned i = 0; i < al->n_rings; i++) {
		struct accesslog_ring *r = &al->rings[i];
		uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
		uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire);
		for (; tail != head; tail++) {
			if (al->buf_len + LINE_MAX_LEN > LOGGER_BUF) {
				logger_flush(al, pending);
				pending = 0;
			}
			al->buf_len += accesslog_format(&r->slots[tail % ACCESSLOG_RING_SLOTS],
							al->format, al->buf + al->buf_len,
							LINE_MAX_LEN);
			pending++;
			taken++;
			/* Free the slot at once: the worker may refill it while we write. */
			atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
		}
	}
	if (al->buf_len)
		logger_flush(al, pending);
	return taken;
}

static void *logger_main(void *arg)
{
	struct accesslog *al = arg;
	while (!atomic_load(&al->stop)) {
		if (atomic_exchange(&al->reopen, false))
			logger_reopen(al);
		if (logger_drain(al) == 0)
			sleep_ms(LOGGER_IDLE_MS);
	}
	logger_drain(al);	/* what the workers queued while closing */
	return NULL;
}

int accesslog_start(struct accesslog *al)
{
	int rc = pthread_create(&al->thread, NULL, logger_main, al);
	if (rc)
		return -rc;
	al->started = true;
	return 0;
}

void accesslog_free(struct accesslog *al)
{
	if (!al)
		return;
	atomic_store(&al->stop, true);
	if (al->started)
		pthread_join(al->thread, NULL);
	if (al->path)
		close(al->fd);
	for (unsigned i = 0; i < al->n_rings; i++)
		free(al->rings[i].slots);
	free(al->rings);
	free(al->buf);
	free(al->path);
	free(al);
}
