/* Helpers shared by the static test-guest tools (no libraries in the guest:
 * ISA-L has no static build in Debian, so CRC32C is done with a table). */
#ifndef VC_GUEST_H
#define VC_GUEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint32_t vcg_crc_table[256];

static inline void vcg_crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		vcg_crc_table[i] = c;
	}
}

static inline uint32_t vcg_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
	while (len--)
		crc = vcg_crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static inline double vcg_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Read vc.KEY=VALUE from the kernel command line; def when absent. */
static inline long vcg_cmdline_long(const char *key, long def)
{
	char buf[8192], pat[64];
	FILE *f = fopen("/proc/cmdline", "r");
	char *p;

	if (!f)
		return def;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return def;
	}
	fclose(f);
	snprintf(pat, sizeof(pat), " %s=", key);
	memmove(buf + 1, buf, strlen(buf) + 1);
	buf[0] = ' ';
	p = strstr(buf, pat);
	return p ? strtol(p + strlen(pat), NULL, 10) : def;
}

#endif
