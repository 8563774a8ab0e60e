/* tlm: thread-based live migration (TLM) of a QEMU VM over parallel streams.
 *
 * Source (tlm_migrate):
 *   stage 1  connect N streams, x-ignore-shared on, start the dirty log;
 *   stage 2  a checkpoint thread (CHK) sends all guest RAM once while a
 *            page-saver thread (PS) syncs the dirty log every epoch and
 *            resends the dirty pages CHK has already started reading;
 *   stage 3  when CHK is done: stop the VM, final sync, send what is still
 *            dirty, end the streams (the receiver acknowledges that every
 *            page is applied), then QEMU's own migration with x-ignore-shared
 *            moves the device state and the small non-shared blocks.
 * Destination (tlm_receive): writes the pages into the RAM file the
 * destination QEMU maps, keeping a version per page so that an older copy
 * never overwrites a newer one whatever stream it came on; after the end of
 * the streams it checksums the RAM, waits for QEMU's incoming migration and
 * resumes the VM.
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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mstream.h"

/* mstream chunk types of the TLM wire format (payloads in README.md). */
#define TLM_T_SETUP	0x544c0001u	/* "TL" 1: block description, on every stream */
#define TLM_T_PAGES	0x544c0002u	/* a batch of pages with one version */
#define TLM_T_STOP	0x544c0003u	/* stage 3 marker: source stop time */
#define TLM_WIRE_VERSION 1
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
	const char *qemu_uri;		/* QEMU migration target, "tcp:H:P" */
	bool zero_skip;			/* CHK skips all-zero pages */
	bool quiet;			/* no progress lines */
	int timeout_ms;			/* connect and QEMU-migration bound */
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
	uint64_t ram_bytes;
	uint32_t crc;			/* CRC32C of guest RAM at stop */
	int streams;
};

struct tlm_dst_opts {
	const struct mstream_addr *listen;
	int nlisten;
	int nstreams;
	const char *ram_path;		/* RAM file the destination QEMU maps */
	uint64_t ram_size;
	const char *qmp_path;		/* destination QEMU (NULL: none) */
	const char *qemu_uri;		/* migrate-incoming URI */
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

/* Create the RAM file for the destination QEMU: fresh (all zero) and sized.
 * 0 or -errno with why. */
int tlm_ram_file_create(const char *path, uint64_t size, char *why, size_t whylen);

int tlm_migrate(const struct tlm_src_opts *o, struct tlm_src_result *r, char *why,
		size_t whylen);

/* ready(arg) is called once the streams listen (may be NULL). */
int tlm_receive(const struct tlm_dst_opts *o, struct tlm_dst_result *r,
		void (*ready)(void *arg), void *arg, char *why, size_t whylen);

#endif
