/*
 * libFuzzer target for mysql_probe: the input is what a MySQL server sends.
 * Nothing may crash, leak or read out of bounds; the verdict and its reason
 * may not depend on how the bytes were split (fed whole, then byte by byte,
 * the two runs must agree); a verdict is MORE or FAIL unless a login and a
 * resultset really happened, so PASS must come with "read_only 0".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mysql_probe.h"

static enum check_verdict run(const uint8_t *data, size_t size, int byte_by_byte, char *reason,
			      size_t reason_len)
{
	struct mysql_probe *p = mysql_probe_new("fuzz", "pw");
	enum check_verdict v = CHECK_VERDICT_MORE;
	reason[0] = '\0';
	if (byte_by_byte) {
		for (size_t i = 0; i < size && v == CHECK_VERDICT_MORE; i++) {
			v = mysql_probe_feed(p, data + i, 1, reason, reason_len);
			mysql_probe_output_sent(p);
		}
	} else {
		v = mysql_probe_feed(p, data, size, reason, reason_len);
	}
	mysql_probe_free(p);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char whole[96], bytes[96];
	enum check_verdict a = run(data, size, 0, whole, sizeof(whole));
	enum check_verdict b = run(data, size, 1, bytes, sizeof(bytes));
	if (a != b || (a != CHECK_VERDICT_MORE && strcmp(whole, bytes) != 0))
		abort();
	if (a == CHECK_VERDICT_PASS && strcmp(whole, "read_only 0") != 0)
		abort();
	return 0;
}
