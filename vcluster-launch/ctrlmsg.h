/* ctrlmsg: control messages between the ranks of one launcher job (exits,
 * aborts, shutdown requests, statistics for rank 0, migrations).
 *
 * Wire format: CTRLMSG_SIZE bytes, big-endian, one MPI message.
 *   header (24 bytes)
 *    0 u32 magic "VCRM"   4 u16 version   6 u16 header length (24)
 *    8 u32 body length (CTRLMSG_BODY)
 *   12 u16 type           14 u16 code (enum ctrl_code)
 *   16 i32 sender's rank  20 u32 CRC32C of the message (this field 0)
 *   body
 *    0 i32 status   4 i32 signo   8 i32 vm_state   12 u32 reserved
 *   16 u64 x 9: frames_from_vm, bytes_from_vm, frames_to_vm, bytes_to_vm,
 *              frames_flooded, frames_discarded, backpressure_stalls,
 *              spill_reads, frames_from_rq
 *   88 u32 rq_frames  92 u32 deliver_queue_bytes  96 u32 deliver_queue_max
 *  100 i32 npeers    104 u64 peer_queued        112 u64 ckpt_bytes
 *  120 u16 text length  122 u16 reserved  124 text (CTRLMSG_TEXT bytes)
 *   body of the migration types (CTRL_MIG_*): bytes 16..119 carry instead
 *   16 u32 migration id   20 i32 node   24 i32 source rank   28 i32 target rank
 *   32 u16 streams        34 u16 port   36 u32 bandwidth cap, MiB/s (0: none)
 *   40 u64 RAM bytes      48 u64 bytes sent   56 u64 bytes to send
 *   64 32 bytes: the migration's secret (TLS-PSK key)
 *   96 u32 CRC32C of the guest RAM (DONE with CTRL_MIG_F_CRC)   100..119 reserved (0)
 *   and the text is the address to connect to (READY, START) or a reason;
 *   body 0 (status) carries the migration's flags (enum ctrl_mig_flag).
 * The reader checks every header field and names the one that is wrong.
 * Version 2 added the migration types.
 */
#ifndef VC_CTRLMSG_H
#define VC_CTRLMSG_H

#include "fabric.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTRLMSG_VERSION	2
#define CTRLMSG_HDR	24
#define CTRLMSG_TEXT	200
#define CTRLMSG_BODY	(124 + CTRLMSG_TEXT)
#define CTRLMSG_SIZE	(CTRLMSG_HDR + CTRLMSG_BODY)

enum ctrl_type {
	CTRL_EXIT = 1,		/* my VM is gone: status, reason */
	CTRL_ABORT,		/* stop every VM now: reason, code */
	CTRL_SHUTDOWN,		/* orderly power-down (to rank 0: please start one) */
	CTRL_STATS,		/* to rank 0: my counters */
	/* moving a node to a spare rank (migrate.h) */
	CTRL_MIG_PREPARE,	/* 0 -> target: start a destination, listen */
	CTRL_MIG_READY,		/* target -> 0: listening at text:port */
	CTRL_MIG_START,		/* 0 -> source: migrate to text:port */
	CTRL_MIG_PROGRESS,	/* source -> 0: bytes sent of bytes to send */
	CTRL_MIG_DONE,		/* to all: node runs on the target now */
	CTRL_MIG_FAIL,		/* to 0 (and 0 to both ends): text says why */
	CTRL_TYPE_MAX = CTRL_MIG_FAIL,
};

#define CTRL_MIG_SECRET	32

/* The status field of a CTRL_MIG_* message. */
enum ctrl_mig_flag {
	CTRL_MIG_F_REHEARSE = 1,	/* keep the node at its source (migrun.c) */
	CTRL_MIG_F_REPORT = 2,		/* an end to rank 0 (else rank 0's order to an end) */
	CTRL_MIG_F_CRC = 4,		/* ram_crc is set */
};

/* The fields of a migration message. */
struct ctrl_mig {
	uint32_t id;
	int node, from, to;
	uint16_t streams, port;
	uint32_t bandwidth_mib;	/* the source's max-bandwidth; 0: unlimited */
	uint64_t ram_bytes, sent, total;
	uint8_t secret[CTRL_MIG_SECRET];
	uint32_t ram_crc;	/* the guest RAM's CRC32C (ramsum.h) */
};

static inline bool ctrl_is_mig(enum ctrl_type t)
{
	return t >= CTRL_MIG_PREPARE && t <= CTRL_MIG_FAIL;
}

/* Why an abort happened, as a field (never parsed out of the text). */
enum ctrl_code {
	CTRL_CODE_NONE = 0,
	CTRL_CODE_TIMEOUT,	/* the run passed --timeout */
	CTRL_CODE_FAULT,	/* a rank, its VM or the fabric failed */
	CTRL_CODE_INTERRUPTED,	/* a second signal */
	CTRL_CODE_MAX = CTRL_CODE_INTERRUPTED,
};

/* A message as the program sees it. */
struct ctrlmsg {
	enum ctrl_type type;
	enum ctrl_code code;
	int rank;		/* sender */
	int status;		/* EXIT: guest status, or -1 fault, -2/-3 stopped */
	int signo;		/* SHUTDOWN: the signal that asked for it */
	int vm_state;
	struct fabric_stats fab;
	uint64_t peer_queued;	/* batches queued to all peers */
	uint64_t ckpt_bytes;	/* VM state saved in the running checkpoint */
	struct ctrl_mig mig;	/* CTRL_MIG_*: instead of the statistics */
	char text[CTRLMSG_TEXT + 1];
};

/* Encode m into out[CTRLMSG_SIZE]. */
void ctrlmsg_encode(const struct ctrlmsg *m, uint8_t *out);

/* Decode and check len bytes received from rank `from`.  0, or -EBADMSG
 * with "FIELD X, expected Y" in why. */
int ctrlmsg_decode(const uint8_t *in, size_t len, int from, struct ctrlmsg *m,
		   char *why, size_t whylen);

#endif
