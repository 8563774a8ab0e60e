/* tlm: thread-based live migration (TLM) of a QEMU VM over parallel streams.
 *
 * Source (tlm_migrate):
 *   stage 1  connect N streams, x-ignore-shared on, start the dirty log;
 *   stage 2  a checkpoint thread (CHK) sends all guest RAM once while a
 *            page-saver thread (PS) syncs the dirty log every epoch and
 *            resends the dirty pages CHK has already started reading;
 *   stage 3  when CHK is done: stop the VM, final sync, send what is still
 *            dirty and a stop marker on every stream, then QEMU's own
 *            migration with x-ignore-shared (device state and the small
 *            non-shared blocks) into a socket pair handed to QEMU with
 *            getfd, whose bytes the engine carries on stream 0; end the
 *            streams (the receiver acknowledges that everything arrived).
 * Destination (tlm_receive): writes the pages into the RAM file the
 * destination QEMU maps, keeping a version per page so that an older copy
 * never overwrites a newer one whatever stream it came on; once every
 * stream delivered the stop marker (all pages applied) it starts QEMU's
 * incoming migration from its own socket pair, feeds it the device state,
 * waits for it and resumes the VM.  No port but the streams' is opened, and
 * the streams are authenticated (mstream wire version 2, the secret in the
 * options).
 *
 * Versions: one global counter; every batch of pages takes a fresh version
 * just before its contents are read.  Pages are applied when their version is
 * greater than the stored one, under a striped lock.  See README.md
 * ("Correctness") for why the last copy to arrive with the highest version is
 * the final content.
 *
 * Both return 0 or a negative errno with one phrase in why; on a failure the
 * source VM is left running (continued if stage 3 had stopped it).
 */
#ifndef VC_TLM_H
#define VC_TLM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mstream.h"

/* mstream chunk types of the TLM wire format (payloads in README.md). */
#define TLM_T_SETUP	0x544c0001u	/* "TL" 1: block description, on every stream */
#define TLM_T_PAGES	0x544c0002u	/* a batch of pages with one version */
#define TLM_T_STOP	0x544c0003u	/* stage 3 marker: source stop time */
#define TLM_T_DEVSTATE	0x544c0004u	/* QEMU's migration stream, stream 0, tag = offset */
#define TLM_T_DEVEND	0x544c0005u	/* its end, stream 0, tag = total bytes */
#define TLM_WIRE_VERSION 2
#define TLM_SETUP_LEN	96
#define TLM_PAGES_HDR	24
#define TLM_STOP_LEN	32

struct tlm_src_opts {
	const char *qmp_path;		/* source QEMU's QMP socket */
	const struct mstream_addr *to;	/* receiver addresses */
	int nto;
	int nstreams;			/* parallel TCP streams */
	int epoch_ms;			/* PS period */
	int chunk_pages;		/* pages per chunk */
	const uint8_t *secret;		/* shared with the receiver (required) */
	size_t secret_len;
	uint64_t session;		/* the receiver's session id */
	bool zero_skip;			/* CHK skips all-zero pages */
	bool quiet;			/* no progress lines */
	int timeout_ms;			/* connect and QEMU-migration bound */
	int final_rounds;		/* PS rounds after the full pass, back to
					 * back, while the dirty set shrinks (at
					 * most this many; 0: stop right away) */
};

struct tlm_src_result {
	double total_s;			/* stage 1 start to migration completed */
	double downtime_s;		/* VM stop to QEMU migration completed */
	double stage2_s;		/* CHK and PS running */
	uint64_t stage2_bytes;		/* payload bytes sent in stage 2 */
	int64_t qemu_downtime_ms;	/* query-migrate's figure */
	uint64_t bytes;			/* payload bytes over all streams */
	uint64_t epochs;
	uint64_t pages_chk;		/* pages CHK sent */
	uint64_t pages_zero;		/* pages CHK skipped as zero */
	uint64_t pages_resent;		/* pages PS sent */
	uint64_t pages_final;		/* pages sent with the VM stopped */
	int final_rounds;		/* PS rounds run after the full pass */
	uint64_t final_round_pages[16];	/* pages each of them resent (the first 16) */
	uint64_t ram_bytes;
	uint32_t crc;			/* CRC32C of guest RAM at stop */
	int streams;
	/* CPU seconds of this process (getrusage), user and system, from
	 * tlm_migrate() to the end of the migration; and per part: CHK, PS,
	 * the stream threads (summed), the device-state relay, the calling
	 * thread. */
	double cpu_user_s, cpu_sys_s;
	struct tlm_cpu { double user_s, sys_s; } cpu_chk, cpu_ps, cpu_streams, cpu_relay,
		cpu_main;
};

struct tlm_dst_opts {
	const struct mstream_addr *listen;
	int nlisten;
	int nstreams;
	const char *ram_path;		/* RAM file the destination QEMU maps */
	int ram_fd;			/* ... open, from tlm_ram_file_create() */
	uint64_t ram_size;
	const char *qmp_path;		/* destination QEMU (NULL: none) */
	const uint8_t *secret;		/* shared with the source (required) */
	size_t secret_len;
	uint64_t session;		/* expected in every hello */
	int timeout_ms;			/* accept and QEMU bounds */
	bool no_resume;			/* leave the destination paused */
	bool verify;			/* CRC32C of the RAM before resume (costs downtime) */
};

struct tlm_dst_result {
	uint64_t pages_applied;
	uint64_t pages_older;		/* arrived with a lower version: dropped */
	uint64_t bytes;
	uint32_t crc;			/* CRC32C of the RAM file before resume (verify) */
	bool crc_valid;
	double downtime_s;		/* source stop to destination running (-1: unknown) */
	int streams;
};

/* Create the RAM file for the destination QEMU: fresh (all zero) and sized,
 * never through a symbolic link, and refused unless it is a regular file of
 * this user's, private (0600), with one link (in a shared /dev/shm another
 * user could have made it first).  Returns the open descriptor, or -errno
 * with why. */
int tlm_ram_file_create(const char *path, uint64_t size, char *why, size_t whylen);

/* The migration capabilities the engine sets on both QEMUs, in one
 * command: x-ignore-shared on, and off every other one QEMU reports on
 * (except "events"), e.g. postcopy-ram or pause-before-switchover left by an
 * earlier migration; tls-creds cleared, max-bandwidth lifted.  0 or -errno
 * with why. */
struct qmp;
int tlm_set_caps(struct qmp *q, char *why, size_t whylen);
/* The migrate-set-capabilities arguments (a new reference) for the
 * capabilities array of query-migrate-capabilities' reply (borrowed). */
json_t *tlm_caps_args(json_t *current);

int tlm_migrate(const struct tlm_src_opts *o, struct tlm_src_result *r, char *why,
		size_t whylen);

/* ready(arg) is called once the streams listen (may be NULL). */
int tlm_receive(const struct tlm_dst_opts *o, struct tlm_dst_result *r,
		void (*ready)(void *arg), void *arg, char *why, size_t whylen);

#endif
