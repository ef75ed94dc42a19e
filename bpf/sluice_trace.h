/* SPDX-License-Identifier: GPL-2.0 */
/* sluice_trace.h - types shared by sluice-trace's BPF programs and its loader. */
#ifndef SLUICE_TRACE_H
#define SLUICE_TRACE_H

/* KVM exit reasons are small (KVM_EXIT_*); one slot more counts KVM_RUN errors. */
#define SLUICE_TRACE_MAX_EXIT	64
#define SLUICE_TRACE_EXIT_ERR	(SLUICE_TRACE_MAX_EXIT - 1)

#endif /* SLUICE_TRACE_H */
