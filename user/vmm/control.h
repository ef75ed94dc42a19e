/* SPDX-License-Identifier: GPL-2.0 */
/* control.h - the JSON control socket (--control PATH): one request object per line, one answer per line. */
#ifndef SLUICE_CONTROL_H
#define SLUICE_CONTROL_H

#include <glib.h>

struct sluice_vm;
struct sluice_control;

/* Main thread: listen on @path (mode 0600) in the default GLib main context.  NULL + *@errp on failure. */
struct sluice_control *sluice_control_new(struct sluice_vm *vm, const char *path, char **errp);
/* Main thread: close every connection and remove the socket file. */
void sluice_control_free(struct sluice_control *c);

/* Main thread: answer one request line (without its newline); the result is one JSON object, no newline. */
char *sluice_control_handle(struct sluice_vm *vm, const char *line, size_t len);

#endif /* SLUICE_CONTROL_H */
