/*
 * libFuzzer target for sentinel's parsers: the input is a +switch-master
 * message (first byte: how many bytes of it name the master). Nothing may
 * crash or read out of bounds; an accepted message yields an address that
 * inet_pton takes and a port in 1..65535.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sentinel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t nlen = data[0] % 16;
	if (nlen > size - 1)
		nlen = size - 1;
	char name[17];
	memcpy(name, data + 1, nlen);
	name[nlen] = '\0';
	char host[64];
	uint16_t port = 0;
	if (sentinel_parse_switch((const char *)data + 1, size - 1, name, host, sizeof(host), &port)) {
		unsigned char bin[16];
		if (port == 0 || (inet_pton(AF_INET, host, bin) != 1 && inet_pton(AF_INET6, host, bin) != 1))
			abort();
	}
	return 0;
}
