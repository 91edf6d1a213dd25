/*
 * spare — a worker's stock of relay buffers and splice pipes, kept between
 * connections so the per-connection path rarely allocates or opens anything.
 *
 * Buffers: one size is cached at a time (the max_buffer of whichever service
 * returned a buffer first into an empty cache); buffers of another size are
 * freed when returned. Pipes: only empty pipes are kept, so no byte of one
 * connection can reach the next.
 *
 * Thread: the owning worker only; no locks.
 */
#ifndef ZKLB_SPARE_H
#define ZKLB_SPARE_H

#define SPARE_PIPE_SIZE (256 * 1024)	/* bytes a splice pipe holds (F_SETPIPE_SZ) */

#include <stdbool.h>
#include <stddef.h>

/* Embedded in struct relay_worker. */
struct spares {
	void **bufs;				/* owned; cached buffers, each owned */
	size_t n_bufs;
	size_t buf_size;			/* bytes of each cached buffer */
	int (*pipes)[2];			/* owned; cached empty pipes, fds owned */
	size_t n_pipes;
};

void spare_init(struct spares *s);
/* Free every cached buffer and close every cached pipe. */
void spare_free(struct spares *s);

/* A buffer of `size` bytes (cached or new); never NULL. */
void *spare_buf_get(struct spares *s, size_t size);
/* Take back a buffer from spare_buf_get() of the same `size`. */
void spare_buf_put(struct spares *s, void *buf, size_t size);

/* An empty pipe for splice (cached or new); false when none can be had. */
bool spare_pipe_get(struct spares *s, int p[2]);
/* Return a pipe; `empty` false means bytes are left in it and it is closed. */
void spare_pipe_put(struct spares *s, const int p[2], bool empty);

#endif
