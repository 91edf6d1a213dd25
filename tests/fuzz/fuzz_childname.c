/*
 * libFuzzer target for the ZooKeeper child-name rule (sync_child_name_ok):
 * whatever a ZooKeeper writer names a child, a name the rule accepts must be
 * one path component inside the sync directory — no '/', not "." or "..", no
 * hidden file, no control byte, bounded length — checked here independently
 * of the rule's own code. Anything but a clean return is a finding.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sync.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* ZooKeeper child names are C strings to zklb: stop at the first NUL. */
	char *name = malloc(size + 1);
	if (!name)
		return 0;
	memcpy(name, data, size);
	name[size] = '\0';
	if (sync_child_name_ok(name)) {
		size_t n = strlen(name);
		if (n == 0 || n > 255)
			abort();
		if (strchr(name, '/') || name[0] == '.')
			abort();	/* also rules out "." and ".." */
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)name[i] < 0x20 || (unsigned char)name[i] == 0x7f)
				abort();
	}
	free(name);
	return 0;
}
