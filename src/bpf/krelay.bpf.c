/*
 * krelay.bpf.c — the in-kernel half of `relay: kernel` (see include/krelay.h).
 *
 * A kernel-relayed pair holds two slots: 2n for the client socket, 2n + 1
 * for the upstream one; a socket's peer is its slot ^ 1. Each socket sits in
 * `socks` at its slot, with this sk_skb verdict program attached, and
 * `slots` maps its cookie to the slot. Each skb read from one socket is
 * redirected to its peer's egress, so the bytes never reach zklb's worker;
 * `dirs[slot]` counts them (user space reads it through mmap()).
 *
 * The kernel's redirect queue has no bound of its own (a redirected skb
 * leaves the source's receive buffer, so the source's window stays open): a
 * slow reader would make the kernel buffer without limit. So once more than
 * `limit` redirected bytes (the service's max_buffer) wait to enter the
 * peer's socket, the direction is marked spilled and its worker is told
 * through its ring; the worker takes both sockets out of `socks` (no more
 * verdicts: TCP's own window pushes back again), waits for what was
 * redirected to be sent, takes them out of `park` too and relays in user
 * space. Until the worker acts, skbs are still redirected: neither passing
 * them to the source's own queue (which the socket cannot be read past once
 * its receive buffer fills) nor dropping them keeps every byte. Redirects go to the peer's entry in `park` (the sockets without a
 * program), which holds both sockets of a pair before either enters
 * `socks`, so a redirect has a target from the first skb to the close.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Keep in step with struct krelay_dir_state in src/krelay.c. */
struct krelay_dir_state {
	__u64 bytes;		/* redirected to the peer */
	__u64 written_base;	/* bytes the peer's socket had taken when paired (user space's) */
	__u32 limit;		/* redirected bytes not yet in the peer's socket, at most */
	__u32 spilled;		/* 1: the worker moves the pair to user space */
	__u32 ring;		/* the worker's entry in rings */
};

#define KRELAY_SLOTS 65536

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, KRELAY_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} socks SEC(".maps");

/* The same sockets, without programs: the redirects' targets; outlives `socks` in a spill. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, KRELAY_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} park SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KRELAY_SLOTS);
	__type(key, __u64);
	__type(value, __u32);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KRELAY_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct krelay_dir_state);
} dirs SEC(".maps");

/* One ring per worker: the slots that spilled (a wake-up, not per message). */
struct ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 256);
	__type(key, __u32);
	__array(values, struct ring);
} rings SEC(".maps");

/* The fields of the kernel's struct tcp_sock read here, found by CO-RE. */
struct tcp_sock {
	__u64 bytes_acked;
	__u32 write_seq;
	__u32 snd_una;
} __attribute__((preserve_access_index));

/*
 * Redirected bytes that have not entered the peer's socket yet (they wait in
 * the kernel's redirect queue); 0 when the peer is gone. What the socket
 * took is counted as user space counts it (krelay_drained): acknowledged
 * plus queued, against the same count taken when the pair was made.
 */
static __always_inline __s64 peer_backlog(__u32 peer, struct krelay_dir_state *d)
{
	struct bpf_sock *sk = bpf_map_lookup_elem(&park, &peer);
	__s64 backlog = 1LL << 40;	/* no peer to measure: spill */
	if (!sk)
		return backlog;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (tp) {
		__u64 written = tp->bytes_acked + (__u32)(tp->write_seq - tp->snd_una);
		backlog = (__s64)(d->bytes - (written - d->written_base));
	}
	bpf_sk_release(sk);
	return backlog;
}

SEC("sk_skb")
int krelay_verdict(struct __sk_buff *skb)
{
	/*
	 * A FIN comes as an empty skb: the socket has already noted it (the
	 * worker sees it and sends its own FIN), and redirected, the empty
	 * skb fails to send and reports an error on the peer.
	 */
	if (skb->len == 0)
		return SK_DROP;
	__u64 cookie = bpf_get_socket_cookie(skb);
	__u32 *slot = bpf_map_lookup_elem(&slots, &cookie);
	if (!slot)
		return SK_PASS;		/* not ours (never in the maps without a slot) */
	__u32 self = *slot;
	__u32 peer = self ^ 1;
	struct krelay_dir_state *d = bpf_map_lookup_elem(&dirs, &self);
	if (!d)
		return SK_DROP;
	if (!d->spilled && peer_backlog(peer, d) > (__s64)d->limit) {
		d->spilled = 1;
		void *ring = bpf_map_lookup_elem(&rings, &d->ring);
		if (ring)
			bpf_ringbuf_output(ring, &self, sizeof(self), 0);
	}
	/* Only a pair being closed has no peer in park: its bytes are not wanted. */
	if (bpf_sk_redirect_map(skb, &park, peer, 0) != SK_PASS)
		return SK_DROP;
	__sync_fetch_and_add(&d->bytes, skb->len);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
