/*
 * log — see log.h. Text lines look like
 *   2026-11-26T15:04:05.123Z info svc=web be=127.0.0.1:9001 ejected for 5s
 * JSON lines are {"ts":"…","level":"info","msg":"…"}.
 *
 * Messages carry values from outside (ZooKeeper data, node names, peers'
 * bytes), so a message can never end a line or start another: in text lines,
 * bytes below 0x20 and 0x7f are written as \xNN; in JSON, as \u00NN, and a
 * byte that is not part of a UTF-8 character as \ufffd (the line stays JSON).
 */
#include "log.h"
#include "utf8.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_threshold = LOG_INFO;
static _Atomic int log_fmt = LOG_FORMAT_TEXT;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void log_setup(enum log_level level, enum log_format format)
{
	atomic_store(&log_threshold, (int)level);
	atomic_store(&log_fmt, (int)format);
}

bool log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	return false;
}

bool log_enabled(enum log_level level)
{
	return (int)level <= atomic_load_explicit(&log_threshold, memory_order_relaxed);
}

size_t log_json_escape(char *buf, size_t len, size_t cap, const char *s)
{
	for (; *s && len + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		size_t n = c >= 0x80 ? utf8_char_len(s) : 1;
		if (c == '"' || c == '\\') {
			buf[len++] = '\\';
			buf[len++] = (char)c;
		} else if (c < 0x20) {
			len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
		} else if (n == 0) {
			/* Not part of a UTF-8 character: the line must stay JSON. */
			memcpy(buf + len, "\\ufffd", 6);
			len += 6;
		} else {
			memcpy(buf + len, s, n);
			len += n;
			s += n - 1;
		}
	}
	return len;
}

/* Append s to buf with control bytes as \xNN; returns the new length. */
static size_t text_escape(char *buf, size_t len, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	for (; *s && len + 5 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f) {
			buf[len++] = '\\';
			buf[len++] = 'x';
			buf[len++] = hex[c >> 4];
			buf[len++] = hex[c & 15];
		} else {
			buf[len++] = (char)c;
		}
	}
	return len;
}

void log_timestamp(uint64_t wall_ms, char *buf, size_t len)
{
	time_t sec = (time_t)(wall_ms / 1000);
	struct tm tm;
	gmtime_r(&sec, &tm);
	size_t tl = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + tl, len - tl, ".%03dZ", (int)(wall_ms % 1000));
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;

	char msg[1536];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;

	struct timeval tv;
	gettimeofday(&tv, NULL);
	char ts[32];
	log_timestamp((uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000, ts, sizeof(ts));

	char line[2048];
	size_t len;
	if (atomic_load_explicit(&log_fmt, memory_order_relaxed) == LOG_FORMAT_JSON) {
		len = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"",
				       ts, level_names[level]);
		len = log_json_escape(line, len, sizeof(line) - 3, msg);
		memcpy(line + len, "\"}\n", 3);
		len += 3;
	} else {
		len = (size_t)snprintf(line, sizeof(line), "%s %s ", ts, level_names[level]);
		len = text_escape(line, len, sizeof(line) - 1, msg);
		line[len++] = '\n';
	}
	/* One write per line: atomic for pipes up to PIPE_BUF, good enough for files. */
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}
