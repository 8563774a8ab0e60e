/* tlm-migrate: live-migrate a QEMU VM with TLM (source side), or receive
 * one (--recv).  Usage in --help and tlm-migrate/README.md. */
#define LOG_PREFIX "tlm-migrate"
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "dirty.h"
#include "log.h"
#include "mstream.h"
#include "tlm.h"
#include "version.h"

#include <gnutls/crypto.h>
#include <fcntl.h>

static const char usage[] =
"usage: tlm-migrate --qmp SRC.sock --to HOST:PORT[,HOST:PORT...] [options]\n"
"       tlm-migrate --recv --listen HOST:PORT[,...] --ram FILE --ram-size SIZE\n"
"                   [--qmp DST.sock] [options]\n"
"       tlm-migrate --gen-secret FILE\n"
"\n"
"Thread-based live migration (TLM) of a QEMU VM whose RAM is a shared memory\n"
"backend (memory-backend-memfd or -file, share=on, -machine memory-backend=ID),\n"
"run by the patched QEMU (make qemu: build/qemu/bin/qemu-system-x86_64).\n"
"A checkpoint thread sends all guest RAM once while a page-saver thread\n"
"resends, every epoch, the pages the guest dirtied; then the VM is stopped,\n"
"the last dirty pages are sent, and QEMU's own migration (x-ignore-shared)\n"
"moves the device state, carried on the first stream, to the destination QEMU.\n"
"\n"
"Both sides must hold the same secret (at least 16 bytes, as hex), handed\n"
"over out of band: --secret-file FILE (a regular file of yours, mode 0600,\n"
"not a symbolic link) or the environment variable TLM_SECRET.  Whoever\n"
"starts the source makes it (--gen-secret FILE writes 32 random bytes) and\n"
"gives it to the receiver's side.  Every stream proves it, and every chunk\n"
"carries an HMAC-SHA256 (mstream wire version 2); connections that do not\n"
"are dropped and logged, the transfer goes on.\n"
"\n"
"Both sides:\n"
"  --secret-file FILE the shared secret (else $TLM_SECRET)\n"
"  --session ID       session id (64-bit, decimal or 0x hex) the receiver\n"
"                     expects in every hello (default: derived from the secret)\n"
"\n"
"Source (default):\n"
"  --qmp PATH         QMP socket of the running source QEMU\n"
"  --to LIST          receiver address(es); stream i goes to entry i %% count\n"
"  --streams N        parallel TCP streams, 1..64 (default 4)\n"
"  --epoch-ms MS      page-saver period (default 100)\n"
"  --chunk-pages N    pages per chunk, 1..1024 (default 64)\n"
"  --final-rounds N   after the full pass, up to N page-saver rounds back to\n"
"                     back while each resends fewer pages than the last, before\n"
"                     the stop (default 0)\n"
"  --no-zero-skip     send all-zero pages in the full pass too\n"
"  --timeout S        bound for connecting and for QEMU's migration (default 60)\n"
"  --quiet            no progress lines\n"
"Receiver (--recv):\n"
"  --listen LIST      addresses to listen on (HOST:PORT[,...]; port 0 ephemeral)\n"
"  --streams N        must equal the source's (default 4)\n"
"  --ram FILE         the destination QEMU's RAM file (mem-path of its\n"
"                     memory-backend-file, share=on): created fresh here (never\n"
"                     through a symlink; an existing file must be yours and\n"
"                     0600), so start the destination QEMU after this prints\n"
"                     'listening'\n"
"  --ram-size SIZE    guest RAM size (bytes, or with K/M/G suffix)\n"
"  --qmp PATH         destination QEMU (started with -incoming defer); it gets\n"
"                     x-ignore-shared, the device state through a socket pair\n"
"                     (getfd, migrate-incoming fd:) and cont once everything\n"
"                     arrived\n"
"  --no-resume        leave the destination paused\n"
"  --verify           checksum guest RAM (CRC32C) before the resume, to compare\n"
"                     with the source's; it reads all of RAM, so it adds to the\n"
"                     downtime (tests use it, production need not)\n"
"  --timeout S        bound for accepting and for QEMU's migration (default 60)\n"
"\n"
"Output: progress lines on stderr; last, one line on stdout:\n"
"  TLM-SUMMARY result=ok total_s=.. downtime_s=.. qemu_downtime_ms=.. bytes=..\n"
"    epochs=.. pages_chk=.. pages_zero=.. pages_resent=.. pages_final=..\n"
"    streams=N ram_bytes=.. crc32c=0x.. rate_mbps=.. stage2_mbps=..\n"
"    cpu_user_s=.. cpu_sys_s=.. final_rounds=..\n"
"    (rate_mbps: payload over the total time; stage2_mbps: over stage 2,\n"
"    while the streams are busy; cpu_*: this process's CPU seconds)\n"
"  TLM-RECV-SUMMARY result=ok downtime_s=.. bytes=.. pages_applied=..\n"
"    pages_older=.. streams=N crc32c=0x.. (or none without --verify)\n"
"    cpu_user_s=.. cpu_sys_s=..\n"
"or result=fail with reason=\"...\" (exit status 1; the source VM keeps\n"
"running).  Exit status 2: bad arguments.  --version prints the release and\n"
"every format version spoken, one \"KIND NAME VERSION\" line each (wire\n"
"mstream: the authenticated hello/chunk format; the plain one, version 1,\n"
"is refused).\n";

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end || !v || v % 4096)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

/* The secret from --secret-file or $TLM_SECRET, and the session id (given,
 * or derived from the secret so both sides agree without being told).
 * 0, or 2 after printing why. */
static int get_secret(const char *file, uint8_t *key, size_t *len, uint64_t *session,
		      bool session_given)
{
	const char *env = getenv("TLM_SECRET");
	uint8_t digest[32];
	char err[512];

	if (file) {
		if (mstream_secret_load(file, key, MSTREAM_SECRET_MAX, len, err, sizeof(err))) {
			fprintf(stderr, "tlm-migrate: --secret-file %s\n", err);
			return 2;
		}
	} else if (env) {
		if (mstream_secret_parse(env, key, MSTREAM_SECRET_MAX, len, err, sizeof(err))) {
			fprintf(stderr, "tlm-migrate: TLM_SECRET: %s\n", err);
			return 2;
		}
	} else {
		fprintf(stderr, "tlm-migrate: no secret: give --secret-file FILE or set TLM_SECRET (tlm-migrate --gen-secret FILE makes one)\n");
		return 2;
	}
	if (!session_given) {
		if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, *len, "tlm session", 11, digest)) {
			fprintf(stderr, "tlm-migrate: cannot derive the session id\n");
			return 2;
		}
		*session = 0;
		for (int i = 0; i < 8; i++)
			*session = *session << 8 | digest[i];
		*session |= 1;		/* never 0 ("adopt the first") */
	}
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end || !v || *s == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

static void say_ready(void *arg)
{
	const char *what = arg;
	printf("tlm-recv: listening on %s\n", what);
	fflush(stdout);
}

static void fail_line(const char *summary, const char *why)
{
	printf("%s result=fail reason=\"%s\"\n", summary, why);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "qmp", required_argument, 0, 'q' }, { "to", required_argument, 0, 't' },
		{ "streams", required_argument, 0, 'n' }, { "epoch-ms", required_argument, 0, 'e' },
		{ "chunk-pages", required_argument, 0, 'c' },
		{ "final-rounds", required_argument, 0, 'F' },
		{ "secret-file", required_argument, 0, 'S' }, { "session", required_argument, 0, 'I' },
		{ "gen-secret", required_argument, 0, 'G' },
		{ "no-zero-skip", no_argument, 0, 'z' }, { "timeout", required_argument, 0, 'T' },
		{ "quiet", no_argument, 0, 'Q' }, { "recv", no_argument, 0, 'R' },
		{ "listen", required_argument, 0, 'l' }, { "ram", required_argument, 0, 'r' },
		{ "ram-size", required_argument, 0, 's' }, { "no-resume", no_argument, 0, 'N' },
		{ "verify", no_argument, 0, 'v' },
		{ "help", no_argument, 0, 'h' }, { "version", no_argument, 0, 'V' }, { 0 }
	};
	const char *qmp = NULL, *to = NULL, *listen = NULL, *ram = NULL;
	const char *secret_file = NULL;
	int streams = 4, epoch_ms = 100, chunk = 64, timeout = 60, final_rounds = 0;
	uint64_t session = 0;
	bool session_given = false;
	uint8_t key[MSTREAM_SECRET_MAX];
	size_t key_len = 0;
	bool recv = false, zero_skip = true, quiet = false, no_resume = false, verify = false;
	uint64_t ram_size = 0;
	char err[512];
	int c;

	log_init("tlm-migrate", -1);
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'q': qmp = optarg; break;
		case 't': to = optarg; break;
		case 'n': bad = parse_int(optarg, 1, MSTREAM_MAX_STREAMS, &streams); break;
		case 'e': bad = parse_int(optarg, 1, 60000, &epoch_ms); break;
		case 'c': bad = parse_int(optarg, 1, 1024, &chunk); break;
		case 'F': bad = parse_int(optarg, 0, 1000, &final_rounds); break;
		case 'S': secret_file = optarg; break;
		case 'I': bad = parse_u64(optarg, &session); session_given = true; break;
		case 'G':
			if (mstream_secret_generate(optarg, err, sizeof(err))) {
				fprintf(stderr, "tlm-migrate: --gen-secret %s\n", err);
				return 1;
			}
			return 0;
		case 'T': bad = parse_int(optarg, 1, 86400, &timeout); break;
		case 'z': zero_skip = false; break;
		case 'Q': quiet = true; break;
		case 'R': recv = true; break;
		case 'l': listen = optarg; break;
		case 'r': ram = optarg; break;
		case 's': bad = parse_size(optarg, &ram_size); break;
		case 'N': no_resume = true; break;
		case 'v': verify = true; break;
		case 'h': fputs(usage, stdout); return 0;
		case 'V': {
			static const struct version_item v[] = {
				{ "wire", "tlm", TLM_WIRE_VERSION },
				{ "wire", "mstream", MSTREAM_WIRE_VERSION_AUTH },
				{ "format", "dirty-log", DIRTY_REGION_VERSION },
				{ NULL, NULL, 0 }
			};
			return version_print(stdout, "tlm-migrate", v) ? 1 : 0;
		}
		default: fputs("tlm-migrate: see --help\n", stderr); return 2;
		}
		if (bad) {
			const char *name = "?";
			for (const struct option *o = lopts; o->name; o++)
				if (o->val == c)
					name = o->name;
			fprintf(stderr, "tlm-migrate: bad value \"%s\" for --%s (expected %s)\n",
				optarg, name, c == 's' ? "a multiple of 4096 bytes, e.g. 256M" :
				c == 'I' ? "a non-zero 64-bit number" : "a number in range, see --help");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tlm-migrate: unexpected argument \"%s\" (see --help)\n", argv[optind]);
		return 2;
	}

	struct mstream_addr *addrs = NULL;
	int naddrs = 0;
	if (!recv) {
		if (!qmp || !to) {
			fprintf(stderr, "tlm-migrate: --qmp and --to are required (see --help)\n");
			return 2;
		}
		if (mstream_addrs_parse(to, &addrs, &naddrs, err, sizeof(err))) {
			fprintf(stderr, "tlm-migrate: --to: %s\n", err);
			return 2;
		}
		if (naddrs > streams) {
			fprintf(stderr, "tlm-migrate: --to has %d addresses for %d streams\n", naddrs, streams);
			return 2;
		}
		if (get_secret(secret_file, key, &key_len, &session, session_given)) {
			free(addrs);
			return 2;
		}
		struct tlm_src_opts o = {
			.qmp_path = qmp, .to = addrs, .nto = naddrs, .nstreams = streams,
			.epoch_ms = epoch_ms, .chunk_pages = chunk,
			.secret = key, .secret_len = key_len, .session = session,
			.zero_skip = zero_skip, .quiet = quiet, .timeout_ms = timeout * 1000,
			.final_rounds = final_rounds,
		};
		struct tlm_src_result r;
		int rc = tlm_migrate(&o, &r, err, sizeof(err));
		free(addrs);
		if (rc) {
			fprintf(stderr, "tlm-migrate: %s; the source VM keeps running\n", err);
			fail_line("TLM-SUMMARY", err);
			return 1;
		}
		printf("TLM-SUMMARY result=ok total_s=%.3f downtime_s=%.3f qemu_downtime_ms=%" PRId64
		       " stage2_s=%.3f bytes=%" PRIu64 " epochs=%" PRIu64 " pages_chk=%" PRIu64
		       " pages_zero=%" PRIu64 " pages_resent=%" PRIu64 " pages_final=%" PRIu64
		       " streams=%d ram_bytes=%" PRIu64 " crc32c=0x%08x rate_mbps=%.1f"
		       " stage2_mbps=%.1f cpu_user_s=%.2f cpu_sys_s=%.2f final_rounds=%d\n",
		       r.total_s, r.downtime_s, r.qemu_downtime_ms, r.stage2_s, r.bytes, r.epochs,
		       r.pages_chk, r.pages_zero, r.pages_resent, r.pages_final, r.streams,
		       r.ram_bytes, r.crc, (double)r.bytes * 8 / 1e6 / r.total_s,
		       r.stage2_s > 0 ? (double)r.stage2_bytes * 8 / 1e6 / r.stage2_s : 0.0,
		       r.cpu_user_s, r.cpu_sys_s, r.final_rounds);
		return 0;
	}

	if (!listen || !ram || !ram_size) {
		fprintf(stderr, "tlm-migrate: --recv needs --listen, --ram and --ram-size (see --help)\n");
		return 2;
	}
	if (mstream_addrs_parse(listen, &addrs, &naddrs, err, sizeof(err))) {
		fprintf(stderr, "tlm-migrate: --listen: %s\n", err);
		return 2;
	}
	if (naddrs > streams) {
		fprintf(stderr, "tlm-migrate: --listen has %d addresses for %d streams\n", naddrs, streams);
		return 2;
	}
	if (get_secret(secret_file, key, &key_len, &session, session_given)) {
		free(addrs);
		return 2;
	}
	int ram_fd = tlm_ram_file_create(ram, ram_size, err, sizeof(err));
	if (ram_fd < 0) {
		fprintf(stderr, "tlm-migrate: --ram %s\n", err);
		free(addrs);
		return 1;
	}
	struct tlm_dst_opts o = {
		.listen = addrs, .nlisten = naddrs, .nstreams = streams, .ram_path = ram,
		.ram_fd = ram_fd, .ram_size = ram_size, .qmp_path = qmp,
		.secret = key, .secret_len = key_len, .session = session,
		.timeout_ms = timeout * 1000, .no_resume = no_resume, .verify = verify,
	};
	struct tlm_dst_result r;
	int rc = tlm_receive(&o, &r, say_ready, (void *)listen, err, sizeof(err));
	close(ram_fd);
	free(addrs);
	if (rc) {
		fprintf(stderr, "tlm-migrate --recv: %s\n", err);
		fail_line("TLM-RECV-SUMMARY", err);
		return 1;
	}
	char crc[16] = "none";
	if (r.crc_valid)
		snprintf(crc, sizeof(crc), "0x%08x", r.crc);
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru))
		memset(&ru, 0, sizeof(ru));
	printf("TLM-RECV-SUMMARY result=ok downtime_s=%.3f bytes=%" PRIu64 " pages_applied=%" PRIu64
	       " pages_older=%" PRIu64 " streams=%d crc32c=%s cpu_user_s=%.2f cpu_sys_s=%.2f\n",
	       r.downtime_s, r.bytes, r.pages_applied, r.pages_older, r.streams, crc,
	       (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	return 0;
}
