/*
 * libFuzzer target for redis_role: the input is what a Redis server answers
 * to AUTH + ROLE. Nothing may crash, leak or read out of bounds, and the
 * verdict and reason may not depend on how the bytes were split.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis_role.h"

static enum check_verdict run(const uint8_t *data, size_t size, int byte_by_byte, char *reason,
			      size_t reason_len)
{
	struct redis_role_judge *j = redis_role_judge_new(REDIS_ROLE_MASTER, size && data[0] & 1);
	enum check_verdict v = CHECK_VERDICT_MORE;
	reason[0] = '\0';
	if (size)
		data++, size--;
	if (byte_by_byte) {
		for (size_t i = 0; i < size && v == CHECK_VERDICT_MORE; i++)
			v = redis_role_judge_feed(j, data + i, 1, reason, reason_len);
	} else {
		v = redis_role_judge_feed(j, data, size, reason, reason_len);
	}
	redis_role_judge_free(j);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char whole[96], bytes[96];
	enum check_verdict a = run(data, size, 0, whole, sizeof(whole));
	enum check_verdict b = run(data, size, 1, bytes, sizeof(bytes));
	if (a != b || (a != CHECK_VERDICT_MORE && strcmp(whole, bytes) != 0))
		abort();
	return 0;
}
