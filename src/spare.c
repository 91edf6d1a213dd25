/*
 * spare — see spare.h.
 */
#include "spare.h"
#include "util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#define SPARE_BUFS_MAX 64
#define SPARE_PIPES_MAX 64

void spare_init(struct spares *s)
{
	s->bufs = xcalloc(SPARE_BUFS_MAX, sizeof(*s->bufs));
	s->n_bufs = 0;
	s->buf_size = 0;
	s->pipes = xcalloc(SPARE_PIPES_MAX, sizeof(*s->pipes));
	s->n_pipes = 0;
}

void spare_free(struct spares *s)
{
	for (size_t i = 0; i < s->n_bufs; i++)
		free(s->bufs[i]);
	free(s->bufs);
	s->bufs = NULL;
	s->n_bufs = 0;
	for (size_t i = 0; i < s->n_pipes; i++) {
		close(s->pipes[i][0]);
		close(s->pipes[i][1]);
	}
	free(s->pipes);
	s->pipes = NULL;
	s->n_pipes = 0;
}

void *spare_buf_get(struct spares *s, size_t size)
{
	if (size == s->buf_size && s->n_bufs)
		return s->bufs[--s->n_bufs];
	return malloc(size);	/* NULL: the caller closes the connection, zklb goes on */
}

void spare_buf_put(struct spares *s, void *buf, size_t size)
{
	if (s->n_bufs == 0)
		s->buf_size = size;
	if (size == s->buf_size && s->n_bufs < SPARE_BUFS_MAX) {
		s->bufs[s->n_bufs++] = buf;
		return;
	}
	free(buf);
}

bool spare_pipe_get(struct spares *s, int p[2])
{
	if (s->n_pipes) {
		s->n_pipes--;
		p[0] = s->pipes[s->n_pipes][0];
		p[1] = s->pipes[s->n_pipes][1];
		return true;
	}
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
		p[0] = p[1] = -1;
		return false;
	}
	/* Larger loads mean fewer splice calls per byte; the default is 64k. */
	(void)fcntl(p[0], F_SETPIPE_SZ, SPARE_PIPE_SIZE);
	return true;
}

void spare_pipe_put(struct spares *s, const int p[2], bool empty)
{
	if (empty && s->n_pipes < SPARE_PIPES_MAX) {
		s->pipes[s->n_pipes][0] = p[0];
		s->pipes[s->n_pipes][1] = p[1];
		s->n_pipes++;
		return;
	}
	close(p[0]);
	close(p[1]);
}
