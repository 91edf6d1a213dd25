/*
 * libFuzzer target for trunk: a stream's :method, :protocol and :authority
 * (as a calling host sends them, after nghttp2's own checks) judged against
 * an allow list. Anything but a clean return — a crash, UB, or an ALLOW for
 * an address that is not in the list — is a finding.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "trunk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct announce_conf ann[] = {
		{ .address = "127.0.0.3", .port = 9000 },
		{ .address = "auto", .port = 5432 },
	};
	static const char *const local[] = { "127.0.0.1", "::1" };
	struct trunk_allow a;
	struct net_addr out;
	char method[16] = "CONNECT";
	char protocol[32] = "";

	/* First byte: which method/protocol; the rest: the authority, NULs and all. */
	if (size > 0) {
		if (data[0] & 1)
			memcpy(method, "GET", 4);
		if (data[0] & 2)
			memcpy(protocol, "zklb-tcp", 9);
		data++;
		size--;
	}
	trunk_allow_build(&a, ann, 2, local, 2);
	enum trunk_verdict v = trunk_request_check(&a, method, protocol[0] ? protocol : NULL,
						   (const char *)data, size, &out);
	if (v == TRUNK_ALLOW) {
		bool listed = false;
		for (size_t i = 0; i < a.n; i++)
			listed |= a.v[i].addr.len == out.len &&
				  memcmp(&a.v[i].addr.ss, &out.ss, out.len) == 0;
		if (!listed || strcmp(method, "CONNECT") != 0)
			abort();
	}
	trunk_allow_free(&a);
	return 0;
}
