/*
 * krelay — see krelay.h and src/bpf/krelay.bpf.c.
 *
 * Pairing order matters: the counters and the cookie -> slot entries are
 * written first, then the upstream socket goes into the sockmap, then the
 * client's. An skb the upstream delivers in between finds no peer and
 * spills (it waits in the upstream's own queue for the user-space relay),
 * so nothing is dropped. Bytes that arrived before pairing sit in the
 * receive queues, which the verdict program only sees on the next arrival:
 * SO_RCVLOWAT makes TCP call the socket's data_ready at once, which runs the
 * verdict over what is queued (tcp_set_rcvlowat -> tcp_data_ready).
 *
 * "Drained" compares the bytes the program redirected with what the target
 * socket took since pairing (tcpi_bytes_acked, read first, plus SIOCOUTQ,
 * read second: never more than the truth). The source is locked once first
 * (SIOCINQ), so a verdict running on another CPU has finished and counted.
 */
#include "krelay.h"
#include "log.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

/* The BPF object, compiled by the build and embedded (src/bpf/embed.py). */
extern const unsigned char krelay_bpf_obj[];
extern const size_t krelay_bpf_obj_len;

#define KRELAY_SLOTS 65536		/* as in krelay.bpf.c */
#define KRELAY_PAIRS (KRELAY_SLOTS / 2)

/* dirs[] of krelay.bpf.c, one per slot. */
struct krelay_dir_state {
	_Atomic uint64_t bytes;		/* redirected to the peer (the program adds) */
	uint64_t written_base;		/* what the peer's socket had taken when paired (sock_written) */
	uint32_t limit;			/* bytes waiting to enter the peer's socket, at most */
	_Atomic uint32_t spilled;	/* 1: the worker moves the pair to user space */
	uint32_t ring;			/* the pairing worker's entry in rings */
};
_Static_assert(sizeof(struct krelay_dir_state) == 32, "dirs[] value size");

struct krelay {
	struct bpf_object *obj;		/* owned */
	int socks_fd;			/* ref: obj's SOCKMAP, slot -> socket, with the verdict program */
	int park_fd;			/* ref: obj's SOCKMAP without programs (see krelay_park) */
	int slots_fd;			/* ref: obj's HASH, cookie -> slot */
	int rings_fd;			/* ref: obj's ARRAY_OF_MAPS, one spill ring per worker */
	struct krelay_dir_state *dirs;	/* owned mmap of obj's dirs[] */
	size_t dirs_len;		/* bytes mapped */
	pthread_mutex_t lock;		/* guards next_pair and used */
	uint32_t next_pair;		/* where the search for a free pair starts */
	uint8_t used[KRELAY_PAIRS];	/* 1: the pair's slots are taken */
	uint32_t n_rings;		/* rings handed out (guarded by lock) */
};

#define KRELAY_RINGS 256		/* as in krelay.bpf.c */
#define KRELAY_RING_BYTES 4096		/* as in krelay.bpf.c: 256 notices */

struct krelay_ring {
	struct ring_buffer *rb;		/* owned; libbpf's reader */
	int map_fd;			/* owned */
	uint32_t id;			/* entry in rings */
	void (*fn)(void *ctx, uint32_t slot);	/* krelay_ring_read's */
	void *ctx;
};

/* libbpf's own messages: at debug level only; the caller logs the outcome. */
__attribute__((format(printf, 2, 0)))
static int krelay_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[512];
	if (level == LIBBPF_DEBUG)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_debug("libbpf: %s", line);
	return 0;
}

struct krelay *krelay_open(char *why, size_t why_len)
{
	const char *env = getenv("ZKLB_KRELAY");
	if (env && strcmp(env, "off") == 0) {
		snprintf(why, why_len, "ZKLB_KRELAY=off");
		return NULL;
	}
	libbpf_set_print(krelay_libbpf_print);
	struct krelay *k = calloc(1, sizeof(*k));
	if (!k) {
		snprintf(why, why_len, "out of memory");
		return NULL;
	}
	k->dirs = MAP_FAILED;
	const char *step = "open the BPF object";
	k->obj = bpf_object__open_mem(krelay_bpf_obj, krelay_bpf_obj_len, NULL);
	if (!k->obj)
		goto fail;
	step = "load the BPF program";
	if (bpf_object__load(k->obj) < 0)
		goto fail;
	k->socks_fd = bpf_object__find_map_fd_by_name(k->obj, "socks");
	k->park_fd = bpf_object__find_map_fd_by_name(k->obj, "park");
	k->slots_fd = bpf_object__find_map_fd_by_name(k->obj, "slots");
	k->rings_fd = bpf_object__find_map_fd_by_name(k->obj, "rings");
	int dirs_fd = bpf_object__find_map_fd_by_name(k->obj, "dirs");
	struct bpf_program *prog = bpf_object__find_program_by_name(k->obj, "krelay_verdict");
	step = "find the maps";
	if (k->socks_fd < 0 || k->park_fd < 0 || k->slots_fd < 0 || k->rings_fd < 0 || dirs_fd < 0 ||
	    !prog) {
		errno = ENOENT;
		goto fail;
	}
	step = "attach the verdict program to the sockmap";
	if (bpf_prog_attach(bpf_program__fd(prog), k->socks_fd, BPF_SK_SKB_VERDICT, 0) < 0)
		goto fail;
	step = "map the counters";
	k->dirs_len = (size_t)KRELAY_SLOTS * sizeof(struct krelay_dir_state);
	k->dirs = mmap(NULL, k->dirs_len, PROT_READ | PROT_WRITE, MAP_SHARED, dirs_fd, 0);
	if (k->dirs == MAP_FAILED)
		goto fail;
	pthread_mutex_init(&k->lock, NULL);
	return k;
fail:
	snprintf(why, why_len, "cannot %s: %s", step, strerror(errno ? errno : EINVAL));
	if (k->dirs != MAP_FAILED)
		munmap(k->dirs, k->dirs_len);
	bpf_object__close(k->obj);
	free(k);
	return NULL;
}

void krelay_free(struct krelay *k)
{
	if (!k)
		return;
	munmap(k->dirs, k->dirs_len);
	bpf_object__close(k->obj);
	pthread_mutex_destroy(&k->lock);
	free(k);
}

/*
 * A free pair, searched round-robin from the last one given: a slot is
 * reused as late as possible, so a verdict still running for its previous
 * socket has long finished.
 */
static bool slot_take(struct krelay *k, uint32_t *slot)
{
	bool found = false;
	pthread_mutex_lock(&k->lock);
	for (uint32_t i = 0; i < KRELAY_PAIRS; i++) {
		uint32_t n = (k->next_pair + i) % KRELAY_PAIRS;
		if (!k->used[n]) {
			k->used[n] = 1;
			k->next_pair = (n + 1) % KRELAY_PAIRS;
			*slot = 2 * n;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&k->lock);
	return found;
}

static void slot_give(struct krelay *k, uint32_t slot)
{
	pthread_mutex_lock(&k->lock);
	k->used[slot / 2] = 0;
	pthread_mutex_unlock(&k->lock);
}

static int sock_cookie(int fd, uint64_t *cookie)
{
	socklen_t len = sizeof(*cookie);
	return getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &len) < 0 ? -errno : 0;
}

/*
 * Bytes fd's socket has taken for sending since it connected: acknowledged
 * (read first), then queued (SIOCOUTQ), so never more than the truth. With
 * `established`, -ENOTCONN unless the socket is an established TCP one (only
 * those may enter a sockmap: not one with its peer's FIN in, say); a socket
 * that is not TCP fails TCP_INFO.
 */
static int sock_written(int fd, bool established, uint64_t *written)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int outq = 0;
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -errno;
	if (established && ti.tcpi_state != BPF_TCP_ESTABLISHED)
		return -ENOTCONN;
	if (ioctl(fd, SIOCOUTQ, &outq) < 0)
		return -errno;
	*written = ti.tcpi_bytes_acked + (uint64_t)(outq > 0 ? outq : 0);
	return 0;
}

static int ring_sample(void *ctx, void *data, size_t size)
{
	struct krelay_ring *r = ctx;
	uint32_t slot;
	if (size >= sizeof(slot)) {
		memcpy(&slot, data, sizeof(slot));
		if (slot < KRELAY_SLOTS)
			r->fn(r->ctx, slot);
	}
	return 0;
}

struct krelay_ring *krelay_ring_open(struct krelay *k, void (*fn)(void *ctx, uint32_t slot), void *ctx,
				     int *fd)
{
	struct krelay_ring *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->fn = fn;
	r->ctx = ctx;
	pthread_mutex_lock(&k->lock);
	r->id = k->n_rings < KRELAY_RINGS ? k->n_rings++ : KRELAY_RINGS;
	pthread_mutex_unlock(&k->lock);
	r->map_fd = r->id < KRELAY_RINGS ?
		    bpf_map_create(BPF_MAP_TYPE_RINGBUF, "krelay_ring", 0, 0, KRELAY_RING_BYTES, NULL) : -1;
	if (r->map_fd < 0 || bpf_map_update_elem(k->rings_fd, &r->id, &r->map_fd, BPF_ANY) < 0 ||
	    !(r->rb = ring_buffer__new(r->map_fd, ring_sample, r, NULL))) {
		if (r->map_fd >= 0)
			close(r->map_fd);
		free(r);
		return NULL;
	}
	*fd = ring_buffer__epoll_fd(r->rb);
	return r;
}

void krelay_ring_read(struct krelay_ring *r)
{
	ring_buffer__consume(r->rb);
}

void krelay_ring_free(struct krelay *k, struct krelay_ring *r)
{
	if (!r)
		return;
	bpf_map_delete_elem(k->rings_fd, &r->id);
	ring_buffer__free(r->rb);
	close(r->map_fd);
	free(r);
}

static void dir_reset(struct krelay_dir_state *d, uint64_t written_base, uint32_t limit,
		      uint32_t ring)
{
	d->ring = ring;
	atomic_store_explicit(&d->bytes, 0, memory_order_relaxed);
	atomic_store_explicit(&d->spilled, 0, memory_order_relaxed);
	d->written_base = written_base;
	d->limit = limit;
}

/* Take slots `a` and `b` out of map fd (either may be absent). */
static void map_delete2(int fd, uint32_t a, uint32_t b)
{
	bpf_map_delete_elem(fd, &a);
	bpf_map_delete_elem(fd, &b);
}

bool krelay_quiet(int cfd, int ufd)
{
	int cin = -1, uin = -1;
	return ioctl(cfd, SIOCINQ, &cin) == 0 && cin == 0 && ioctl(ufd, SIOCINQ, &uin) == 0 && uin == 0;
}

int krelay_pair(struct krelay *k, int cfd, int ufd, uint32_t limit, const struct krelay_ring *ring,
		struct krelay_pair *p)
{
	int rc;
	memset(p, 0, sizeof(*p));
	if ((rc = sock_written(ufd, true, &p->written_base[KRELAY_C2U])) < 0 ||
	    (rc = sock_written(cfd, true, &p->written_base[KRELAY_U2C])) < 0 ||
	    (rc = sock_cookie(cfd, &p->cookie[0])) < 0 || (rc = sock_cookie(ufd, &p->cookie[1])) < 0)
		return rc;
	if (!slot_take(k, &p->slot))
		return -ENOSPC;
	uint32_t cs = p->slot, us = p->slot + 1;
	uint32_t ring_id = ring ? ring->id : KRELAY_RINGS;
	dir_reset(&k->dirs[cs], p->written_base[KRELAY_C2U], limit, ring_id);
	dir_reset(&k->dirs[us], p->written_base[KRELAY_U2C], limit, ring_id);
	if (bpf_map_update_elem(k->slots_fd, &p->cookie[0], &cs, BPF_ANY) < 0 ||
	    bpf_map_update_elem(k->slots_fd, &p->cookie[1], &us, BPF_ANY) < 0) {
		rc = -errno;
		goto undo_slots;
	}
	uint64_t ufd64 = (uint64_t)ufd, cfd64 = (uint64_t)cfd;
	/* Both in park (the redirect targets) before either is verdicted in socks. */
	if (bpf_map_update_elem(k->park_fd, &us, &ufd64, BPF_ANY) < 0 ||
	    bpf_map_update_elem(k->park_fd, &cs, &cfd64, BPF_ANY) < 0) {
		rc = -errno;
		map_delete2(k->park_fd, cs, us);
		goto undo_slots;
	}
	if (bpf_map_update_elem(k->socks_fd, &us, &ufd64, BPF_ANY) < 0 ||
	    bpf_map_update_elem(k->socks_fd, &cs, &cfd64, BPF_ANY) < 0) {
		rc = -errno;
		map_delete2(k->socks_fd, cs, us);
		/* Bytes redirected meanwhile would be dropped with park: then say so. */
		if (atomic_load(&k->dirs[us].bytes) || atomic_load(&k->dirs[cs].bytes))
			rc = -EIO;
		map_delete2(k->park_fd, cs, us);
		goto undo_slots;
	}
	/* Relay what arrived before pairing (see the top of the file). */
	int one = 1;
	(void)setsockopt(ufd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
	(void)setsockopt(cfd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
	return 0;
undo_slots:
	bpf_map_delete_elem(k->slots_fd, &p->cookie[0]);
	bpf_map_delete_elem(k->slots_fd, &p->cookie[1]);
	slot_give(k, p->slot);
	return rc;
}

void krelay_park(struct krelay *k, const struct krelay_pair *p)
{
	map_delete2(k->socks_fd, p->slot, p->slot + 1);
}

void krelay_unpair(struct krelay *k, struct krelay_pair *p)
{
	map_delete2(k->socks_fd, p->slot, p->slot + 1);
	map_delete2(k->park_fd, p->slot, p->slot + 1);
	bpf_map_delete_elem(k->slots_fd, &p->cookie[0]);
	bpf_map_delete_elem(k->slots_fd, &p->cookie[1]);
	slot_give(k, p->slot);
}

uint64_t krelay_bytes(const struct krelay *k, const struct krelay_pair *p, enum krelay_dir d)
{
	return atomic_load_explicit(&k->dirs[p->slot + d].bytes, memory_order_relaxed);
}

bool krelay_spilled(const struct krelay *k, const struct krelay_pair *p, enum krelay_dir d)
{
	return atomic_load_explicit(&k->dirs[p->slot + d].spilled, memory_order_relaxed) != 0;
}

int krelay_drained(const struct krelay *k, const struct krelay_pair *p, enum krelay_dir d,
		   int from_fd, int to_fd)
{
	int inq = 0;
	uint64_t written;
	/* Takes the source's lock: a verdict in progress there has counted its skb. */
	if (ioctl(from_fd, SIOCINQ, &inq) < 0)
		return -errno;
	uint64_t bytes = krelay_bytes(k, p, d);
	int rc = sock_written(to_fd, false, &written);
	if (rc < 0)
		return rc;
	return written - p->written_base[d] >= bytes;
}
