/*
 * libFuzzer target for config: the input is fed both as a YAML file
 * (config_load_string) and as a JSON overlay (config_overlay_json) on top of
 * a fixed base, so the parser, the validator and the error paths all run.
 * Anything but a clean return — a crash, a leak, UB — is a finding.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static const char base_yaml[] =
	"zookeeper: {hosts: \"127.0.0.1:2181\"}\n"
	"services:\n"
	"  web:\n"
	"    listen: \"127.0.0.1:8080\"\n"
	"    discovery: {type: static, backends: [\"127.0.0.1:9001\"]}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config *base;
	struct config_errors errs = { 0 };

	if (!base) {
		base = config_load_string(base_yaml, sizeof(base_yaml) - 1, "base", &errs);
		if (!base)
			abort();
	}

	struct config *cfg = config_load_string((const char *)data, size, "fuzz.yaml", &errs);
	if (!cfg && errs.n == 0)
		abort();	/* a rejection must say why */
	if (cfg) {
		/* A config that loads must name its services and find them again. */
		for (size_t i = 0; i < cfg->n_services; i++)
			if (config_service(cfg, cfg->services[i].name) == NULL)
				abort();
	}
	config_free(cfg);
	config_errors_free(&errs);

	cfg = config_overlay_json(base, (const char *)data, size, "zookeeper:/zklb/config", &errs);
	if (!cfg && errs.n == 0)
		abort();
	config_free(cfg);
	config_errors_free(&errs);
	return 0;
}
