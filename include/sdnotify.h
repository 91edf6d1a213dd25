/*
 * sdnotify — systemd's notification protocol (sd_notify(3)) without
 * libsystemd: one datagram of "KEY=VALUE\n" lines to $NOTIFY_SOCKET. zklb
 * sends READY=1 once it serves and, after a hot upgrade, MAINPID= so that
 * systemd follows the new process (the unit needs Type=notify and
 * NotifyAccess=all). Without NOTIFY_SOCKET nothing is sent.
 *
 * Thread: any.
 */
#ifndef ZKLB_SDNOTIFY_H
#define ZKLB_SDNOTIFY_H

#include <stdbool.h>

/* Send `state` ("READY=1", ...); false when there is no socket or the send failed. */
bool sdnotify_send(const char *state);

#endif
