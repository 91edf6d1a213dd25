/*
 * libFuzzer target for instance: the input goes through both decoders
 * (Curator with and without a child name, ServerSet), and every decoded
 * instance is re-encoded and decoded again (the cache's round trip), which
 * must give the same routing fields back. Anything but a clean return — a
 * crash, a leak, UB, a round-trip mismatch — is a finding.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "instance.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(const struct instance *a)
{
	char reason[INSTANCE_REASON_MAX];
	struct instance b;
	json_t *j = instance_to_curator_json(a, "svc");
	enum instance_decode r = instance_from_curator_json(NULL, j, &b, reason, sizeof(reason));

	json_decref(j);
	if (r == INSTANCE_BAD || !instance_same(a, &b))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char reason[INSTANCE_REASON_MAX];
	struct instance i;
	const char *d = (const char *)data;

	if (instance_decode_curator("child-1", d, size, &i, reason, sizeof(reason)) !=
	    INSTANCE_BAD)
		roundtrip(&i);
	if (instance_decode_curator(NULL, d, size, &i, reason, sizeof(reason)) != INSTANCE_BAD)
		roundtrip(&i);
	if (instance_decode_serverset(d, size, &i, reason, sizeof(reason)) != INSTANCE_BAD) {
		struct instance v[2] = { i, i };
		struct instance_diff diff;
		instance_diff(v, 1, v + 1, 1, &diff, NULL, NULL);
		if (diff.kept != 1)
			abort();
	}
	return 0;
}
