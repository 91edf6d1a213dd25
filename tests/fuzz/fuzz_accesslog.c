/*
 * libFuzzer target for the access log's line formatter (accesslog.c), whose
 * strings come from clients, backends and ZooKeeper (the instance id). The
 * input fills a record (numbers, then the four strings, NUL-separated, cut
 * to their fields) and a buffer size of 64 bytes and more; the line is
 * formatted in both formats into a buffer of exactly that size (ASan sees a
 * byte written past it), and must be one line: length at most size - 1,
 * NUL-terminated there, exactly one newline, at the end. When it was not
 * cut, the JSON line parses whatever the bytes (one outside a UTF-8
 * character is U+FFFD), back to the same strings when they were UTF-8.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "accesslog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Take the next NUL-terminated piece of the input into field (cut to fit). */
static void take(const uint8_t **p, const uint8_t *end, char *field, size_t cap)
{
	size_t n = 0;
	while (*p < end && **p != '\0') {
		if (n + 1 < cap)
			field[n++] = (char)**p;
		(*p)++;
	}
	if (*p < end)
		(*p)++;
	field[n] = '\0';
}

static int utf8(const char *s)
{
	json_t *j = json_string(s);
	json_decref(j);
	return j != NULL;
}

static void one(const struct accesslog_record *r, enum log_format f, size_t len)
{
	char *buf = malloc(len);
	if (!buf)
		abort();
	size_t n = accesslog_format(r, f, buf, len);
	if (n > len - 1 || buf[n] != '\0' || strlen(buf) != n || n == 0 || buf[n - 1] != '\n' ||
	    memchr(buf, '\n', n - 1))
		abort();
	if (f == LOG_FORMAT_JSON && len == 8192) {
		json_error_t err;
		json_t *o = json_loadb(buf, n, 0, &err);
		if (!o)
			abort();	/* whatever the bytes, a whole JSON line */
		if (utf8(r->service) && utf8(r->client) && utf8(r->backend) && utf8(r->backend_id) &&
		    (strcmp(json_string_value(json_object_get(o, "service")), r->service) ||
		     strcmp(json_string_value(json_object_get(o, "client")), r->client) ||
		     strcmp(json_string_value(json_object_get(o, "backend")), r->backend) ||
		     strcmp(json_string_value(json_object_get(o, "id")), r->backend_id)))
			abort();
		json_decref(o);
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct accesslog_record r;
	memset(&r, 0, sizeof(r));
	if (size < 12)
		return 0;
	size_t len = 64 + (((size_t)data[0] << 8 | data[1]) % 2048);
	memcpy(&r.bytes_in, data + 2, 8);
	r.bytes_in >>= 1;		/* a counter stays below 2^63 (JSON readers' int64) */
	r.attempts = data[10];
	r.established = data[11] & 1;
	r.reused = data[11] & 2;
	r.end_wall_ms = (uint64_t)data[11] << 32;
	r.end = "client_closed";
	const uint8_t *p = data + 12, *end = data + size;
	take(&p, end, r.service, sizeof(r.service));
	take(&p, end, r.client, sizeof(r.client));
	take(&p, end, r.backend, sizeof(r.backend));
	take(&p, end, r.backend_id, sizeof(r.backend_id));
	for (int f = LOG_FORMAT_TEXT; f <= LOG_FORMAT_JSON; f++) {
		one(&r, (enum log_format)f, len);
		one(&r, (enum log_format)f, 8192);
	}
	return 0;
}
