/* fuzz: helpers shared by the fuzz targets (tests/fuzz/fuzz_*.c).
 *
 * Each target defines LLVMFuzzerTestOneInput() and is built twice: with
 * clang's libFuzzer for `make fuzz`, and with replay.c (any compiler,
 * ASan/UBSan) for `make check`, which runs every file of its corpus once.
 *
 * Most vcluster formats are CRC32C-protected, so a mutated input is nearly
 * always refused at the first CRC.  Targets therefore run each input twice:
 * as it is (the CRC and length checks themselves), and with its CRCs
 * recomputed (everything behind them).  Corpus files stay real files.
 */
#ifndef VC_FUZZ_H
#define VC_FUZZ_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vcfmt.h"

/* gcc says __SANITIZE_ADDRESS__, clang __has_feature(address_sanitizer). */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(FUZZ_ASAN)
#undef FUZZ_ASAN
#define FUZZ_ASAN 1
#include <sanitizer/common_interface_defs.h>
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void fuzz_dir_cleanup(void);

/* Stop on a broken property: a crash with a reason, so both libFuzzer and
 * the replay driver keep the input. */
#define FUZZ_ASSERT(cond)							\
	do {									\
		if (!(cond)) {							\
			fprintf(stderr, "fuzz: %s:%d: property failed: %s\n",	\
				__FILE__, __LINE__, #cond);			\
			fuzz_dir_cleanup();	/* abort() skips atexit */	\
			abort();						\
		}								\
	} while (0)

/* With FUZZ_VERBOSE set, say what became of an input (to check that each
 * seed reaches the check its name promises). */
__attribute__((format(printf, 1, 2)))
static inline void fuzz_note(const char *fmt, ...)
{
	static int verbose = -1;
	va_list ap;

	if (verbose < 0)
		verbose = getenv("FUZZ_VERBOSE") != NULL;
	if (!verbose)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static char fuzz_dir_path[64];

static inline int fuzz_rm_cb(const char *p, const struct stat *st, int type,
		      struct FTW *f)
{
	(void)st; (void)type; (void)f;
	remove(p);
	return 0;
}

static inline void fuzz_dir_cleanup(void)
{
	if (fuzz_dir_path[0])
		nftw(fuzz_dir_path, fuzz_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A private scratch directory, in /dev/shm when it exists (fast), made
 * once per process with mkdtemp and removed at exit. */
static inline const char *fuzz_dir(void)
{
	if (fuzz_dir_path[0])
		return fuzz_dir_path;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(fuzz_dir_path, sizeof(fuzz_dir_path), "%s/vcfuzz-XXXXXX", base);
	if (!mkdtemp(fuzz_dir_path)) {
		perror("fuzz: mkdtemp");
		abort();
	}
	atexit(fuzz_dir_cleanup);
#ifdef FUZZ_ASAN
	__sanitizer_set_death_callback(fuzz_dir_cleanup);	/* a finding */
#endif
	return fuzz_dir_path;
}

/* Replace path's content by len bytes of data. */
static inline void fuzz_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0) {
		perror(path);
		abort();
	}
	while (len) {
		ssize_t n = write(fd, data, len);
		if (n <= 0) {
			perror(path);
			abort();
		}
		data = (const char *)data + n;
		len -= (size_t)n;
	}
	close(fd);
}

/* A malloc'd copy of data, exactly len bytes (so ASan sees overreads). */
static inline uint8_t *fuzz_dup(const uint8_t *data, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	if (!p)
		abort();
	memcpy(p, data, len);
	return p;
}

/* A malloc'd C string: data up to its first NUL, NUL-terminated. */
static inline char *fuzz_str(const uint8_t *data, size_t len)
{
	const uint8_t *nul = memchr(data, 0, len);
	size_t n = nul ? (size_t)(nul - data) : len;
	char *p = malloc(n + 1);

	if (!p)
		abort();
	memcpy(p, data, n);
	p[n] = 0;
	return p;
}

/* Recompute the CRCs of a vcfmt file envelope (header CRC; body CRC where
 * the header's body length fits in buf).  True if a byte changed. */
static inline int fuzz_fix_vcfmt(uint8_t *buf, size_t len)
{
	uint8_t old[4];
	int changed = 0;

	if (len < VCFMT_HDR_SIZE)
		return 0;
	memcpy(old, buf + 20, 4);
	vcfmt_put_be32(buf + 20, vcfmt_crc32c(0, buf, 20));
	changed |= memcmp(old, buf + 20, 4) != 0;
	uint64_t blen = vcfmt_get_be64(buf + 8);
	if (blen <= len - VCFMT_HDR_SIZE && len - VCFMT_HDR_SIZE - blen >= 4) {
		uint8_t *t = buf + VCFMT_HDR_SIZE + blen;
		memcpy(old, t, 4);
		vcfmt_put_be32(t, vcfmt_crc32c(0, buf + VCFMT_HDR_SIZE, blen));
		changed |= memcmp(old, t, 4) != 0;
	}
	return changed;
}

/* Recompute the CRCs of an mstream stream file (tlm-migrate/README.md):
 * the 40-byte hello, then each chunk's 40-byte header CRC and, where its
 * payload fits, the trailer CRC over header and payload. */
static inline void fuzz_fix_mstream(uint8_t *p, size_t len)
{
	size_t off;

	if (len < 40)
		return;
	vcfmt_put_be32(p + 36, vcfmt_crc32c(0, p, 36));
	for (off = 40; len - off >= 40; ) {
		uint8_t *h = p + off;
		vcfmt_put_be32(h + 36, vcfmt_crc32c(0, h, 36));
		uint32_t n = vcfmt_get_be32(h + 32);
		if (len - off - 40 < (size_t)n + 4)
			return;
		vcfmt_put_be32(h + 40 + n,
			       vcfmt_crc32c(vcfmt_crc32c(0, h, 40), h + 40, n));
		off += 40 + (size_t)n + 4;
	}
}

#endif
