/*
 * netpolicy — see netpolicy.h.
 */
#include "netpolicy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* What `reserved` expands to, in the order a refusal would name them. */
static const char *const reserved_prefixes[] = {
	"0.0.0.0/8",		/* "this network": 0.0.0.0 reaches the host itself */
	"169.254.0.0/16",	/* link-local; 169.254.169.254 is the metadata service */
	"100.100.100.200/32",	/* Alibaba Cloud metadata */
	"::/128",		/* unspecified */
	"fe80::/10",		/* link-local */
	"fd00:ec2::254/128",	/* AWS metadata over IPv6 */
};

static const char *const verdict_names[NETPOLICY_VERDICT_COUNT] = {
	[NETPOLICY_ALLOW] = "allowed",
	[NETPOLICY_DENIED] = "denied_network",
	[NETPOLICY_NOT_ALLOWED] = "not_allowed",
	[NETPOLICY_SELF] = "zklb_listener",
};

const char *netpolicy_verdict_name(enum netpolicy_verdict v)
{
	return (unsigned)v < NETPOLICY_VERDICT_COUNT ? verdict_names[v] : "?";
}

/* Are the bits of addr past the first `bits` all zero? */
static bool host_bits_clear(const uint8_t *addr, unsigned len, unsigned bits)
{
	for (unsigned i = 0; i < len; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;
		uint8_t mask = keep == 8 ? 0xff : (uint8_t)(0xff00 >> keep);
		if (addr[i] & (uint8_t)~mask)
			return false;
	}
	return true;
}

static bool prefix_parse(const char *entry, struct net_prefix *p, char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(entry, '/');
	size_t hl = slash ? (size_t)(slash - entry) : strlen(entry);
	if (hl == 0 || hl >= sizeof(host)) {
		snprintf(err, errlen, "'%s' is not an address or CIDR prefix", entry);
		return false;
	}
	memcpy(host, entry, hl);
	host[hl] = '\0';

	memset(p, 0, sizeof(*p));
	unsigned max;
	if (inet_pton(AF_INET, host, p->addr) == 1) {
		p->family = 4;
		max = 32;
	} else if (inet_pton(AF_INET6, host, p->addr) == 1) {
		p->family = 6;
		max = 128;
	} else {
		snprintf(err, errlen, "'%s' is not an IP address (write networks numerically)", host);
		return false;
	}

	unsigned bits = max;
	if (slash) {
		char *end;
		unsigned long b = strtoul(slash + 1, &end, 10);
		if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || b > max) {
			snprintf(err, errlen, "'%s': prefix length must be 0..%u", entry, max);
			return false;
		}
		bits = (unsigned)b;
	}
	if (!host_bits_clear(p->addr, max / 8, bits)) {
		snprintf(err, errlen, "'%s' has host bits set past /%u", entry, bits);
		return false;
	}
	p->bits = (uint8_t)bits;
	return true;
}

static bool list_push(struct net_list *l, const struct net_prefix *p, char *err, size_t errlen)
{
	if (l->n == NETPOLICY_MAX_PREFIXES) {
		snprintf(err, errlen, "more than %d networks in one list", NETPOLICY_MAX_PREFIXES);
		return false;
	}
	l->prefix[l->n++] = *p;
	return true;
}

bool net_list_add(struct net_list *l, const char *entry, char *err, size_t errlen)
{
	struct net_prefix p;
	if (strcmp(entry, "reserved") == 0) {
		for (size_t i = 0; i < sizeof(reserved_prefixes) / sizeof(reserved_prefixes[0]); i++) {
			if (!prefix_parse(reserved_prefixes[i], &p, err, errlen) ||
			    !list_push(l, &p, err, errlen))
				return false;
		}
		l->has_reserved = true;
		return true;
	}
	return prefix_parse(entry, &p, err, errlen) && list_push(l, &p, err, errlen);
}

/* The address sa reaches, as (family, bytes): IPv4-mapped IPv6 becomes IPv4. */
static bool addr_bytes(const struct sockaddr *sa, uint8_t *family, const uint8_t **bytes)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (sa->sa_family == AF_INET) {
		*family = 4;
		*bytes = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const uint8_t *b = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
		if (memcmp(b, mapped, sizeof(mapped)) == 0) {
			*family = 4;
			*bytes = b + 12;
		} else {
			*family = 6;
			*bytes = b;
		}
		return true;
	}
	return false;
}

static bool prefix_holds(const struct net_prefix *p, uint8_t family, const uint8_t *bytes)
{
	if (p->family != family)
		return false;
	unsigned full = p->bits / 8, rest = p->bits % 8;
	if (memcmp(p->addr, bytes, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff00 >> rest);
	return (p->addr[full] & mask) == (bytes[full] & mask);
}

bool net_prefix_contains(const struct net_prefix *p, const struct sockaddr *sa)
{
	uint8_t family;
	const uint8_t *bytes;
	return addr_bytes(sa, &family, &bytes) && prefix_holds(p, family, bytes);
}

void net_prefix_format(const struct net_prefix *p, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	if (!inet_ntop(p->family == 4 ? AF_INET : AF_INET6, p->addr, host, sizeof(host)))
		snprintf(host, sizeof(host), "?");
	snprintf(buf, len, "%s/%u", host, p->bits);
}

enum netpolicy_verdict netpolicy_check(const struct net_list *allowed, const struct net_list *denied,
				       const struct sockaddr *sa, const struct net_prefix **hit)
{
	uint8_t family;
	const uint8_t *bytes;
	if (hit)
		*hit = NULL;
	if (!addr_bytes(sa, &family, &bytes))
		return NETPOLICY_ALLOW;
	for (size_t i = 0; denied && i < denied->n; i++) {
		if (prefix_holds(&denied->prefix[i], family, bytes)) {
			if (hit)
				*hit = &denied->prefix[i];
			return NETPOLICY_DENIED;
		}
	}
	if (!allowed || allowed->n == 0)
		return NETPOLICY_ALLOW;
	for (size_t i = 0; i < allowed->n; i++)
		if (prefix_holds(&allowed->prefix[i], family, bytes))
			return NETPOLICY_ALLOW;
	return NETPOLICY_NOT_ALLOWED;
}

static uint16_t sa_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
	return 0;
}

bool net_self_from(struct net_self *s, const struct sockaddr *sa)
{
	uint8_t family;
	const uint8_t *bytes;
	memset(s, 0, sizeof(*s));
	if (!addr_bytes(sa, &family, &bytes))
		return false;
	size_t len = family == 4 ? 4 : 16;
	static const uint8_t zero[16];
	s->family = family;
	s->port = sa_port(sa);
	s->wildcard = memcmp(bytes, zero, len) == 0;
	memcpy(s->addr, bytes, len);
	return true;
}

bool net_self_port(const struct net_self *v, size_t n, const struct sockaddr *sa)
{
	uint16_t port = sa_port(sa);
	for (size_t i = 0; port && i < n; i++)
		if (v[i].port == port)
			return true;
	return false;
}

bool net_self_match(const struct net_self *v, size_t n, const struct sockaddr *sa, bool local,
		    const struct net_self **hit)
{
	uint8_t family;
	const uint8_t *bytes;
	if (hit)
		*hit = NULL;
	if (!addr_bytes(sa, &family, &bytes))
		return false;
	static const uint8_t loop6[16] = { [15] = 1 };
	static const uint8_t zero[16];
	size_t len = family == 4 ? 4 : 16;
	/* Loopback, and the unspecified address, which connect() takes for this host. */
	if ((family == 4 && bytes[0] == 127) || (family == 6 && memcmp(bytes, loop6, 16) == 0) ||
	    memcmp(bytes, zero, len) == 0)
		local = true;
	uint16_t port = sa_port(sa);
	for (size_t i = 0; i < n; i++) {
		const struct net_self *s = &v[i];
		if (s->port != port)
			continue;
		/* A wildcard socket of either family takes every local address:
		 * an IPv6 [::] listener is dual-stack unless told otherwise. */
		bool same = s->wildcard ? local
				       : s->family == family && memcmp(s->addr, bytes, len) == 0;
		if (same) {
			if (hit)
				*hit = s;
			return true;
		}
	}
	return false;
}
