/*
 * upgrade — hot binary upgrade (SIGUSR2): the running zklb starts a new
 * binary and hands it, over a unix SOCK_SEQPACKET socket with SCM_RIGHTS,
 * its listening sockets (the very same sockets, so their accept queues and
 * SO_REUSEPORT groups carry over: nothing queued is lost, nothing is
 * refused) and its ZooKeeper session (id and password), so announced
 * ephemeral nodes never flap.
 *
 * The exchange, old (O) and new (N) process:
 *   O -> N  SOCK <n> <key>   with n descriptors (repeated for a long list)
 *   O -> N  ANN <port> <id> <service>  for each announced instance
 *   O -> N  ZK <id> <passwd> (with a session) and END
 *   N -> O  ZK?              N is about to connect: O lets go of the session
 *   O -> N  ZK!              (O's client stops talking, the session stays)
 *   N -> O  READY            N serves: O stops accepting, drains and exits
 * Before READY, N's exit, a closed socket or the deadline makes O take its
 * session back and go on as if nothing happened.
 *
 * Thread: the control thread of each process.
 */
#ifndef ZKLB_UPGRADE_H
#define ZKLB_UPGRADE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct upgrade;
struct upgrade_inherit;

#define UPGRADE_ENV "ZKLB_UPGRADE_FD"	/* the new process's end of the socket */

/* One listening address handed over: its key and its sockets (refs). */
struct upgrade_socket {
	const char *key;			/* ref: listen string, or "admin:LISTEN" */
	const int *fds;				/* ref: n_fds descriptors */
	unsigned n_fds;
};

/* An announced instance's id (its node is the session's). */
struct upgrade_announced {
	const char *service;			/* ref */
	uint16_t port;
	const char *id;				/* ref: a Curator UUID */
};

/* What the running process hands over. */
struct upgrade_offer {
	const struct upgrade_socket *sockets;	/* ref: n_sockets */
	size_t n_sockets;
	const struct upgrade_announced *announced;	/* ref: n_announced */
	size_t n_announced;
	bool has_session;			/* a ZooKeeper session to hand over */
	int64_t session_id;
	char session_passwd[16];
};

struct upgrade_hooks {
	void (*release_session)(void *arg);	/* N connects: stop using the session */
	void (*ready)(void *arg);		/* N serves: stop accepting, drain, exit */
	void (*failed)(void *arg, bool released, const char *why);	/* serve on */
};

/*
 * Old side: start `binary` with argv (argv[0] included, NULL-terminated) and
 * offer it everything in `offer` (descriptors are sent, not given away).
 * The new process has `timeout_ms` to say READY. Returns NULL with err set
 * when the binary cannot be started; otherwise exactly one of h->ready and
 * h->failed is called later (after h->release_session, maybe).
 */
struct upgrade *upgrade_start(struct event_base *base, const char *binary, char *const argv[],
			      const struct upgrade_offer *offer, uint64_t timeout_ms,
			      const struct upgrade_hooks *h, void *arg, char *err, size_t errlen);
/* The new process's pid. */
int upgrade_pid(const struct upgrade *u);
/* Forget u (a pending one is abandoned: its process is killed). NULL is a no-op. */
void upgrade_free(struct upgrade *u);

/*
 * New side: when UPGRADE_ENV names a socket, read the old process's offer
 * (bounded wait). Returns NULL when this start is not an upgrade, or after
 * logging why the offer could not be read (then start as usual).
 */
struct upgrade_inherit *upgrade_inherit_open(void);
/*
 * Take the n sockets offered for `key` into fds (ownership passes). False,
 * with fds untouched, when none or another count was offered.
 */
bool upgrade_inherit_take(struct upgrade_inherit *in, const char *key, unsigned n, int *fds);
/*
 * The offered ZooKeeper session, after the old process let go of it; false
 * when none was offered or the old process did not answer.
 */
bool upgrade_inherit_session(struct upgrade_inherit *in, int64_t *id, char passwd[16]);
/*
 * The i-th announced instance offered (service, port, id: borrowed until
 * upgrade_inherit_free); false past the last.
 */
bool upgrade_inherit_announced(const struct upgrade_inherit *in, size_t i, const char **service,
			       uint16_t *port, const char **id);
/* Tell the old process this one serves now. */
void upgrade_inherit_ready(struct upgrade_inherit *in);
/* Close what was not taken, and the socket. NULL is a no-op. */
void upgrade_inherit_free(struct upgrade_inherit *in);

#endif
