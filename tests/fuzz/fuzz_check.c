/*
 * libFuzzer target for the active checks' judges of a backend's reply
 * (check.c): the http status line and send_expect's prefix match. The first
 * input byte picks the judge; for send_expect the next byte says how much of
 * the rest is the expectation. Every prefix a reader might hold is judged,
 * from a copy of exactly that many bytes (ASan sees a read past it), and:
 *   - http: a decision, once made, never changes with more bytes; a status
 *     is 100..999, PASS exactly for 200..399; MORE only below 1024 bytes;
 *   - send_expect: the verdict is what a plain comparison says.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define HTTP_MAX 1024			/* check.c reads no more of a status line */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum check_verdict http_at(const uint8_t *data, size_t n, int *status)
{
	char *copy = malloc(n ? n : 1);
	if (!copy)
		abort();
	memcpy(copy, data, n);
	enum check_verdict v = check_http_verdict(copy, n, status);
	free(copy);
	return v;
}

static void fuzz_http(const uint8_t *data, size_t size)
{
	if (size > HTTP_MAX)
		size = HTTP_MAX;
	enum check_verdict decided = CHECK_VERDICT_MORE;
	int decided_status = 0;
	for (size_t n = 0; n <= size; n++) {
		int status = -1;
		enum check_verdict v = http_at(data, n, &status);
		if (status != 0 && (status < 100 || status > 999))
			abort();
		if (v == CHECK_VERDICT_PASS && (status < 200 || status >= 400))
			abort();
		if (v == CHECK_VERDICT_MORE && (status != 0 || n >= HTTP_MAX))
			abort();
		if (decided != CHECK_VERDICT_MORE && (v != decided || status != decided_status))
			abort();	/* more bytes changed a decision */
		if (decided == CHECK_VERDICT_MORE && v != CHECK_VERDICT_MORE) {
			decided = v;
			decided_status = status;
		}
	}
}

static void fuzz_expect(const uint8_t *data, size_t size)
{
	if (size == 0)
		return;
	size_t elen = data[0] < size - 1 ? data[0] : size - 1;
	const uint8_t *expect = data + 1, *reply = data + 1 + elen;
	size_t rlen = size - 1 - elen;
	for (size_t n = 0; n <= rlen; n++) {
		uint8_t *copy = malloc(n ? n : 1);
		if (!copy)
			abort();
		memcpy(copy, reply, n);
		enum check_verdict v = check_expect_verdict(copy, n, expect, elen);
		free(copy);
		size_t m = n < elen ? n : elen;
		enum check_verdict want = memcmp(reply, expect, m) != 0 ? CHECK_VERDICT_FAIL
					  : n >= elen ? CHECK_VERDICT_PASS : CHECK_VERDICT_MORE;
		if (v != want)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		fuzz_expect(data + 1, size - 1);
	else
		fuzz_http(data + 1, size - 1);
	return 0;
}
