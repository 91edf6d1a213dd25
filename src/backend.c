/*
 * backend — see backend.h.
 */
#include "backend.h"
#include "log.h"
#include "trunk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct backend *backend_new(const char *svc_name, unsigned n_workers, const char *id,
			    const char *host, uint16_t port, uint16_t ssl_port, uint32_t weight,
			    uint64_t now)
{
	struct backend *be = xcalloc(1, sizeof(*be));
	atomic_init(&be->refs, 1);
	be->id = xstrdup(id);
	snprintf(be->host, sizeof(be->host), "%s", host);
	be->port = port;
	be->ssl_port = ssl_port;
	be->weight = weight ? weight : 1;
	be->svc_name = xstrdup(svc_name);
	size_t slots = n_workers * sizeof(*be->slots);
	be->slots = aligned_alloc(64, slots);	/* slots is a multiple of 64 */
	if (!be->slots) {
		log_error("out of memory allocating %zu bytes", slots);
		abort();
	}
	memset(be->slots, 0, slots);

	/* be->name holds any host of 255 bytes with brackets and port. */
	if (strchr(host, ':'))
		snprintf(be->name, sizeof(be->name), "[%s]:%u", be->host, port);
	else
		snprintf(be->name, sizeof(be->name), "%s:%u", be->host, port);
	/* A name waits for its address as a member: listed, never routable. */
	bool literal = net_addr_numeric(host, port, &be->addr);
	atomic_init(&be->has_addr, literal);
	if (!literal)
		atomic_init(&be->eligible_after_ms, UINT64_MAX);
	atomic_init(&be->serving_since_ms, now);
	atomic_init(&be->member, true);
	health_init(&be->health, now);
	return be;
}

/* The zklb.trunk port among "key\0value\0" pairs; 0 when absent or not a port. */
static uint16_t payload_trunk_port(const char *p, size_t len)
{
	size_t off = 0;
	while (off < len) {
		const char *key = p + off;
		const char *kend = memchr(key, '\0', len - off);
		if (!kend || (size_t)(kend - p) + 1 >= len)
			return 0;
		const char *val = kend + 1;
		const char *vend = memchr(val, '\0', len - (size_t)(val - p));
		if (!vend)
			return 0;
		off = (size_t)(vend - p) + 1;
		if (strcmp(key, TRUNK_PAYLOAD_KEY) != 0)
			continue;
		unsigned long port = 0;
		for (const char *c = val; c < vend; c++) {
			if (*c < '0' || *c > '9' || port > 65535)
				return 0;
			port = port * 10 + (unsigned long)(*c - '0');
		}
		return val < vend && port <= 65535 ? (uint16_t)port : 0;
	}
	return 0;
}

void backend_set_payload(struct backend *be, const char *payload, uint16_t len)
{
	if (len == be->payload_len && (len == 0 || memcmp(be->payload, payload, len) == 0))
		return;
	atomic_store_explicit(&be->trunk_port, payload_trunk_port(payload, len),
			      memory_order_relaxed);
	free(be->payload);
	be->payload = NULL;
	if (len) {
		be->payload = xmalloc(len);
		memcpy(be->payload, payload, len);
	}
	be->payload_len = len;
}

void backend_set_addr(struct backend *be, const struct net_addr *addr)
{
	if (backend_has_addr(be))
		return;
	be->addr = *addr;
	atomic_store_explicit(&be->has_addr, true, memory_order_release);
}

void backend_refuse(struct backend *be, const char *why)
{
	snprintf(be->refused, sizeof(be->refused), "%s", why);
	atomic_store_explicit(&be->has_addr, false, memory_order_release);
	atomic_store(&be->eligible_after_ms, UINT64_MAX);
}

const char *backend_held_name(enum backend_held h)
{
	switch (h) {
	case BACKEND_HELD_NONE:
		return "none";
	case BACKEND_HELD_REMOVED:
		return "removed";
	case BACKEND_HELD_CHANGED:
		return "changed";
	}
	return "?";
}

#define BACKEND_TLS_LOG_MS 5000

void backend_count_tls(struct backend *be, enum tls_result r, const char *reason, uint64_t now)
{
	if (r >= TLS_RESULTS)
		return;
	atomic_fetch_add_explicit(&be->tls_handshakes[r], 1, memory_order_relaxed);
	if (r == TLS_RESULT_FULL || r == TLS_RESULT_RESUMED)
		return;
	uint64_t last = atomic_load_explicit(&be->tls_logged_ms, memory_order_relaxed);
	if (last && now - last < BACKEND_TLS_LOG_MS)
		return;
	/* One thread wins the slot; the others stay quiet. */
	if (atomic_compare_exchange_strong(&be->tls_logged_ms, &last, now ? now : 1))
		log_warn("svc=%s be=%s TLS handshake failed (%s): %s", be->svc_name, be->name,
			 tls_result_name(r), reason && *reason ? reason : "no reason given");
}

void backend_count_tls_bytes(struct backend *be, struct tls_conn *t)
{
	uint64_t in, out;
	tls_conn_wire_delta(t, &in, &out);
	if (in)
		atomic_fetch_add_explicit(&be->tls_bytes[0], in, memory_order_relaxed);
	if (out)
		atomic_fetch_add_explicit(&be->tls_bytes[1], out, memory_order_relaxed);
}

struct backend *backend_get(struct backend *be)
{
	atomic_fetch_add_explicit(&be->refs, 1, memory_order_relaxed);
	return be;
}

void backend_put(struct backend *be)
{
	if (!be || atomic_fetch_sub_explicit(&be->refs, 1, memory_order_acq_rel) != 1)
		return;
	free(be->slots);
	free(be->svc_name);
	free(be->id);
	free(be->payload);
	free(be);
}
