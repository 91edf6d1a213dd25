/*
 * trunk_call — what one stream of the trunk's calling side shares between
 * the relay that holds one end of its socketpair and the trunk thread that
 * holds the other: how it ended when the end was not a plain half-close.
 * A unix socketpair carries bytes and a FIN but no reset, so each side says
 * "this was a reset" here before it closes its end, and the other side reads
 * it once it sees that end close.
 *
 * Ordering: the writer stores its mark (release) before it closes or shuts
 * its end of the socketpair; the reader loads it (acquire) only after a
 * read or write on its own end reported that close (EOF, EPIPE,
 * ECONNRESET). The close happens after the store in the writer's thread
 * and the reader's syscall returns after the close, so a reader that saw
 * the close sees the mark (a store made later is simply not seen: a plain
 * end then). Each mark has one writer; nothing else is shared. Atomics
 * only, no lock, and never touched per byte.
 *
 * Lifetime: two references, the relay's and the trunk thread's; whoever
 * drops the last one frees it.
 *
 * Thread: any (the relay's worker and the trunk thread).
 */
#ifndef ZKLB_TRUNK_CALL_H
#define ZKLB_TRUNK_CALL_H

#include <stdbool.h>

struct trunk_call;

/* How a side of the stream ended, beyond a FIN. */
enum trunk_call_end {
	TRUNK_CALL_CLEAN = 0,		/* a FIN, or not ended yet */
	TRUNK_CALL_RESET,		/* reset: the client's TCP RST, the peer's RST_STREAM */
	TRUNK_CALL_LOST,		/* the trunk connection died under the stream */
};

/* A fresh handle with two references (the relay's and the trunk thread's). */
struct trunk_call *trunk_call_new(void);

/* Drop one reference; the last one frees it. NULL: no-op. */
void trunk_call_put(struct trunk_call *call);

/*
 * The trunk thread: the peer reset the stream (or the trunk died). Call
 * before closing its end of the socketpair. The first mark stays.
 */
void trunk_call_mark_remote(struct trunk_call *call, enum trunk_call_end end);

/* The relay, after its end of the socketpair reported a close: how the remote side ended. */
enum trunk_call_end trunk_call_remote(const struct trunk_call *call);

/* The relay: its client reset (or the relay failed). Call before closing its end. */
void trunk_call_mark_local_reset(struct trunk_call *call);

/* The trunk thread, after the relay's end reported a close: was it a reset? */
bool trunk_call_local_reset(const struct trunk_call *call);

/* "clean", "reset", "trunk lost": for log lines. */
const char *trunk_call_end_name(enum trunk_call_end end);

#endif
