/*
 * nodewatch — follow one znode's data and existence: the one-node watcher
 * of the ZooKeeper layer (zkset.h is its children-with-data sibling), used
 * by sync for a single node, by the zookeeper.config_path overlay, and by
 * announce for its own registered node.
 *
 * The node is read with a data watch; while it does not exist an exists
 * watch waits for it to appear. Every fired watch on the path, every new
 * session (no watch survives one) and every resumed session (a read may
 * have failed with the connection) reads it again. A version already
 * delivered (same mzxid) is not delivered twice, so the re-read after a
 * reconnect reports nothing when nothing changed.
 *
 * ZooKeeper being unreachable is never reported as "absent": only the
 * server's answer that the node does not exist is. Other errors (no
 * permission...) are logged with the label, counted, and the read retried
 * after 1 s, doubling up to 30 s (zkretry.h).
 *
 * Lifecycle (enum nodewatch_state), changed only by nodewatch_set_state():
 *   UNKNOWN --read--> PRESENT <--deleted / created--> ABSENT
 *      \-----------------not found------------------^
 *
 * Thread: the control thread (the zk's base). Hooks are called from zk
 * completions, never from inside nodewatch_new(); they must not free the
 * nodewatch that calls them.
 */
#ifndef ZKLB_NODEWATCH_H
#define ZKLB_NODEWATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct zk;
struct nodewatch;

enum nodewatch_state {
	NODEWATCH_UNKNOWN = 0,		/* no authoritative answer yet */
	NODEWATCH_PRESENT,		/* the node exists; its data was delivered */
	NODEWATCH_ABSENT,		/* the server said it does not exist */
};

struct nodewatch_hooks {
	/* The node exists and holds data[0..len) (borrowed): first read or a new version. */
	void (*on_data)(void *arg, const char *data, size_t len);
	/* The server says the node does not exist (first answer, or it was deleted). */
	void (*on_absent)(void *arg);
};

/*
 * Start following path (copied) on zk. h and arg must outlive the
 * nodewatch; label (copied) prefixes its log lines, e.g. "sync path=/x".
 * The first read is sent at once (libzookeeper queues it until connected).
 */
struct nodewatch *nodewatch_new(struct zk *zk, struct event_base *base, const char *path,
				const char *label, const struct nodewatch_hooks *h, void *arg);

/* Stop: no hook is called afterwards. NULL is a no-op. Not from its own hook. */
void nodewatch_free(struct nodewatch *w);

/*
 * Stop following the node: no hook is called afterwards and nothing is read
 * again. Safe from its own hook (unlike nodewatch_free, which must follow
 * later). NULL is a no-op.
 */
void nodewatch_stop(struct nodewatch *w);

/* The session owning the node as last delivered (Stat.ephemeralOwner); 0 = persistent. */
int64_t nodewatch_owner(const struct nodewatch *w);

enum nodewatch_state nodewatch_state(const struct nodewatch *w);
const char *nodewatch_state_name(enum nodewatch_state s);

/* Read errors other than connection trouble, since the start. */
uint64_t nodewatch_errors(const struct nodewatch *w);

#endif
