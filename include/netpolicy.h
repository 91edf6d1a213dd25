/*
 * netpolicy — which destination addresses zklb may connect to: the
 * allowed_networks / denied_networks lists, checked on the resolved socket
 * address of every instance before any connection, check or prewarm.
 *
 * Checking the socket address, not the string a source wrote, makes every
 * spelling of an address the same: "2130706433", "0x7f.1" and "127.0.0.1"
 * resolve to one sockaddr, and an IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * is matched as the IPv4 address it reaches.
 *
 * The word `reserved` in a list stands for the addresses no service should be
 * routed to: unspecified (0.0.0.0/8, ::/128), link-local (169.254.0.0/16,
 * fe80::/10, which hold the cloud metadata service at 169.254.169.254) and the
 * other metadata addresses (fd00:ec2::254, 100.100.100.200).
 *
 * Pure: no sockets, no clock, no allocation after parsing.
 */
#ifndef ZKLB_NETPOLICY_H
#define ZKLB_NETPOLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* One CIDR prefix; IPv4 kept as such (family 4), never as mapped IPv6. */
struct net_prefix {
	uint8_t family;				/* 4 or 6 */
	uint8_t bits;				/* prefix length */
	uint8_t addr[16];			/* network bytes; 4 used for IPv4 */
};

#define NETPOLICY_MAX_PREFIXES 64

/* A parsed list: what allowed_networks or denied_networks say. */
struct net_list {
	struct net_prefix prefix[NETPOLICY_MAX_PREFIXES];
	size_t n;				/* prefixes in use */
	bool has_reserved;			/* `reserved` was one of the entries */
};

enum netpolicy_verdict {
	NETPOLICY_ALLOW = 0,
	NETPOLICY_DENIED,			/* inside a denied_networks prefix */
	NETPOLICY_NOT_ALLOWED,			/* allowed_networks set, and outside all of it */
	NETPOLICY_SELF,				/* one of zklb's own listening sockets */
	NETPOLICY_VERDICT_COUNT
};

/* "allowed", "denied_network", "not_allowed", "zklb_listener": stable, for /services and metrics. */
const char *netpolicy_verdict_name(enum netpolicy_verdict v);

/*
 * Parse "a.b.c.d/n", "x:y::/n", a bare address (a whole-address prefix) or
 * `reserved`, and append it to l. False with a message when malformed, when
 * host bits are set beyond the prefix ("10.0.0.1/8": almost always a typo) or
 * when l is full.
 */
bool net_list_add(struct net_list *l, const char *entry, char *err, size_t errlen);

/* Does prefix p hold address sa? AF_UNIX and other families: false. */
bool net_prefix_contains(const struct net_prefix *p, const struct sockaddr *sa);

/* The prefix, as "a.b.c.d/n" or "x::/n". */
void net_prefix_format(const struct net_prefix *p, char *buf, size_t len);

/*
 * May zklb connect to sa? Denied wins over allowed; an empty allow list
 * allows everything not denied. Non-IP addresses (unix: paths, which only
 * the config file can name) are always allowed. *hit, when not NULL, gets the
 * prefix that decided a refusal (NULL for NOT_ALLOWED).
 */
enum netpolicy_verdict netpolicy_check(const struct net_list *allowed, const struct net_list *denied,
				       const struct sockaddr *sa, const struct net_prefix **hit);

/*
 * One of zklb's own TCP listening sockets (admin.listen, a service's listen):
 * an instance pointing there would loop zklb into itself.
 */
struct net_self {
	uint8_t family;				/* 4 or 6 */
	bool wildcard;				/* 0.0.0.0 or ::: any local address */
	uint16_t port;				/* host order */
	uint8_t addr[16];			/* 4 used for IPv4; unused when wildcard */
};

/* Fill s from a listening address; false for non-IP (unix:) addresses. */
bool net_self_from(struct net_self *s, const struct sockaddr *sa);

/* Does any of v[0..n) listen on sa's port? (Cheap test before net_self_match.) */
bool net_self_port(const struct net_self *v, size_t n, const struct sockaddr *sa);

/*
 * Is sa one of the listeners v[0..n)? `local` says whether sa is an address
 * of this host (the caller knows its interfaces; 127.0.0.0/8 and ::1 are
 * always local): a wildcard listener matches any local address on its port.
 * IPv4-mapped IPv6 matches as IPv4. *hit gets the listener when not NULL.
 */
bool net_self_match(const struct net_self *v, size_t n, const struct sockaddr *sa, bool local,
		    const struct net_self **hit);

#endif
