/* SPDX-License-Identifier: GPL-2.0 */
/* sluice_blk_trace.h - tracepoints sluice_blk:req_start and sluice_blk:req_done, for sluice-trace and perf. */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM sluice_blk

#if !defined(_SLUICE_BLK_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _SLUICE_BLK_TRACE_H

#include <linux/tracepoint.h>
#include <linux/version.h>

/* A request popped from a queue and about to be submitted. */
TRACE_EVENT(req_start,
	TP_PROTO(const char *disk, u32 queue, u16 desc_head, u32 op, u64 sector, u32 bytes),
	TP_ARGS(disk, queue, desc_head, op, sector, bytes),
	TP_STRUCT__entry(
		__string(disk, disk)
		__field(u32, queue)
		__field(u16, head)
		__field(u32, op)
		__field(u64, sector)
		__field(u32, bytes)
	),
	TP_fast_assign(
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 10, 0)
		__assign_str(disk);
#else
		__assign_str(disk, disk);
#endif
		__entry->queue = queue;
		__entry->head = desc_head;
		__entry->op = op;
		__entry->sector = sector;
		__entry->bytes = bytes;
	),
	TP_printk("disk=%s queue=%u head=%u op=%u sector=%llu bytes=%u", __get_str(disk),
		  __entry->queue, __entry->head, __entry->op,
		  (unsigned long long)__entry->sector, __entry->bytes)
);

/*
 * A request's used-ring entry was written; @status is the virtio-blk status byte,
 * @fallback the reason it was forwarded to userspace (SLUICE_BLK_FWD_*), 0 if the kernel served it.
 */
TRACE_EVENT(req_done,
	TP_PROTO(const char *disk, u32 queue, u16 desc_head, u32 op, u64 sector, u32 bytes, u8 status,
		 u64 latency_ns, u8 fallback),
	TP_ARGS(disk, queue, desc_head, op, sector, bytes, status, latency_ns, fallback),
	TP_STRUCT__entry(
		__string(disk, disk)
		__field(u32, queue)
		__field(u16, head)
		__field(u32, op)
		__field(u64, sector)
		__field(u32, bytes)
		__field(u8, status)
		__field(u64, latency_ns)
		__field(u8, fallback)
	),
	TP_fast_assign(
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 10, 0)
		__assign_str(disk);
#else
		__assign_str(disk, disk);
#endif
		__entry->queue = queue;
		__entry->head = desc_head;
		__entry->op = op;
		__entry->sector = sector;
		__entry->bytes = bytes;
		__entry->status = status;
		__entry->latency_ns = latency_ns;
		__entry->fallback = fallback;
	),
	TP_printk("disk=%s queue=%u head=%u op=%u sector=%llu bytes=%u status=%u latency_ns=%llu fallback=%u",
		  __get_str(disk), __entry->queue, __entry->head, __entry->op,
		  (unsigned long long)__entry->sector, __entry->bytes, __entry->status,
		  (unsigned long long)__entry->latency_ns, __entry->fallback)
);

#endif /* _SLUICE_BLK_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE sluice_blk_trace
#include <trace/define_trace.h>
