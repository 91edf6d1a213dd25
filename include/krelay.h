/*
 * krelay — the in-kernel relay (`relay: kernel|auto`): a BPF sockmap whose
 * sk_skb verdict program (src/bpf/krelay.bpf.c) moves the bytes of a paired
 * client and upstream socket from one to the other inside the kernel, so the
 * worker is not woken per message.
 *
 * One struct krelay per process: loaded once by the control thread, used by
 * every worker. Pairing and unpairing are a few bpf() syscalls per
 * connection; the per-direction counters are read from a shared, mmap()ed
 * array, with no syscall and no lock. The relay (relay.c) keeps owning the
 * connection: it asks here whether a FIN may follow the redirected bytes
 * (krelay_drained) and whether a direction fell back to user space
 * (krelay_spilled), and unpairs before it closes.
 *
 * Thread: krelay_open/krelay_free on the control thread; the rest on any
 * worker (slot allocation takes a mutex, once per connection).
 */
#ifndef ZKLB_KRELAY_H
#define ZKLB_KRELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct krelay;
struct krelay_ring;

/* Directions of a pair. */
enum krelay_dir {
	KRELAY_C2U = 0,			/* client -> upstream */
	KRELAY_U2C = 1,			/* upstream -> client */
};

/* One kernel-relayed connection (embedded in struct relay). */
struct krelay_pair {
	uint32_t slot;			/* even: the client's; slot + 1: the upstream's */
	uint64_t cookie[2];		/* socket cookies: the client's, the upstream's */
	uint64_t written_base[2];	/* per target (by direction): bytes its socket had taken when paired */
	uint64_t counted[2];		/* per direction: bytes already added to the relay's counters */
};

/*
 * Load the BPF object and create the maps. NULL when the kernel refuses
 * (not root, no CAP_BPF, no sockmap...), with the reason in why. The
 * environment variable ZKLB_KRELAY=off refuses on purpose (tests, and an
 * operator's way out).
 */
struct krelay *krelay_open(char *why, size_t why_len);
void krelay_free(struct krelay *k);

/*
 * Can cfd and ufd be paired after user space has read from them: are both
 * receive queues empty? The kernel's verdict takes whole skbs from the
 * queue: one that recv() read half of would be relayed again whole. Bytes
 * that arrive later come in skbs of their own.
 */
bool krelay_quiet(int cfd, int ufd);

/*
 * Pair cfd and ufd (connected TCP sockets; nothing read from them yet or
 * krelay_quiet() just said so, any
 * PROXY header already written to ufd). Bytes already queued on either
 * socket are relayed too. A direction spills (krelay_spilled) once more
 * than `limit` bytes wait in the kernel to enter their target socket (the
 * kernel's redirect queue has no bound of its own). 0 on success; -errno
 * when the pair could not be made and nothing of it remains (relay in user
 * space); -EIO when it failed half-way with bytes possibly lost (close the
 * connection).
 */
int krelay_pair(struct krelay *k, int cfd, int ufd, uint32_t limit, const struct krelay_ring *ring,
		struct krelay_pair *p);

/*
 * A spill: stop the kernel reading the pair's sockets (TCP's window pushes
 * back again) but let it send what it redirected already (krelay_drained
 * says when that is out); then krelay_unpair, and relay in user space.
 */
void krelay_park(struct krelay *k, const struct krelay_pair *p);

/*
 * A worker's ring: the BPF program writes the slot of a direction that
 * spilled to the ring of the worker that paired it, and *fd (owned by the
 * ring) becomes readable; krelay_ring_read then calls fn(ctx, slot) for
 * each. NULL when none can be had (spills are then seen by the sweep).
 * Thread: the worker's.
 */
struct krelay_ring *krelay_ring_open(struct krelay *k, void (*fn)(void *ctx, uint32_t slot), void *ctx,
				     int *fd);
void krelay_ring_read(struct krelay_ring *r);
void krelay_ring_free(struct krelay *k, struct krelay_ring *r);

/* Take the pair out of the maps (before closing its sockets). */
void krelay_unpair(struct krelay *k, struct krelay_pair *p);

/* Bytes redirected in direction d so far. */
uint64_t krelay_bytes(const struct krelay *k, const struct krelay_pair *p, enum krelay_dir d);

/* Has direction d spilled (its reader fell more than the pair's limit behind)? */
bool krelay_spilled(const struct krelay *k, const struct krelay_pair *p, enum krelay_dir d);

/*
 * Are all bytes redirected in direction d in the target's send queue (so a
 * FIN, or a write of our own, comes after them)? from_fd is d's source,
 * to_fd its target. 1 yes, 0 not yet, -errno on error.
 */
int krelay_drained(const struct krelay *k, const struct krelay_pair *p, enum krelay_dir d,
		   int from_fd, int to_fd);

#endif
