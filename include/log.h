/*
 * log — one line per event on stderr, level-filtered, text or JSON.
 *
 * Thread-safe: every line is formatted into a local buffer and written with a
 * single write(2), so lines from workers never interleave.
 */
#ifndef ZKLB_LOG_H
#define ZKLB_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level {
	LOG_ERROR = 0,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

enum log_format {
	LOG_FORMAT_TEXT = 0,
	LOG_FORMAT_JSON,
};

/* Set the threshold and format; safe to call again on reload. */
void log_setup(enum log_level level, enum log_format format);

/* Parse "error|warn|info|debug"; false when unknown. */
bool log_level_parse(const char *s, enum log_level *out);

bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Append s to buf (holding len bytes, room for cap) as the inside of a JSON
 * string, control bytes as \u00NN, bytes outside UTF-8 characters as \ufffd;
 * stops short of cap - 7. Returns the new length. Thread-safe.
 */
size_t log_json_escape(char *buf, size_t len, size_t cap, const char *s);

/* Format wall_ms (epoch) as 2026-11-26T15:04:05.123Z into buf (32 bytes suffice). */
void log_timestamp(uint64_t wall_ms, char *buf, size_t len);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
