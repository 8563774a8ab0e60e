/* vc-clockd: keep the guest's clock on the host's after a restore.
 *
 * A restored (or long-paused) VM's clock lags the wall clock by the time it
 * was not running.  With --clock-sync, each vcluster-launch rank sends its
 * VM a time frame on the fabric NIC after every resume and restore:
 *
 *   Ethernet type 0x88b5 (local experimental), payload:
 *   u32 magic "VCTM", u32 version 1, u64 host CLOCK_REALTIME in ns (BE)
 *
 * vc-clockd receives them on a packet socket and steps the guest clock when
 * it is more than 5 ms off, printing one line each time.  The guest's
 * programs are not touched; only its clock is set, as NTP would.
 *   vc-clockd [--iface IF]   (init starts it when vc.clocksync=1)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ETH_P_VCTIME 0x88b5
#define TIME_MAGIC 0x5643544du

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int main(int argc, char **argv)
{
	const char *ifname = argc == 3 && !strcmp(argv[1], "--iface") ? argv[2] : NULL;
	int fd = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_VCTIME));
	uint8_t buf[256];

	if (fd < 0) {
		perror("vc-clockd: socket");
		return 1;
	}
	if (ifname) {
		struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_VCTIME),
					   .sll_ifindex = (int)if_nametoindex(ifname) };
		if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
			perror("vc-clockd: bind");
			return 1;
		}
	}
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("vc-clockd: recv");
			return 1;
		}
		if (n < 16 || ntohl(*(uint32_t *)buf) != TIME_MAGIC || ntohl(*(uint32_t *)(buf + 4)) != 1)
			continue;
		uint64_t host_ns = be64(buf + 8);
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		int64_t off = (int64_t)host_ns - ((int64_t)now.tv_sec * 1000000000 + now.tv_nsec);
		if (off > 5000000 || off < -5000000) {
			struct timespec set = { (time_t)(host_ns / 1000000000), (long)(host_ns % 1000000000) };
			if (clock_settime(CLOCK_REALTIME, &set) == 0)
				printf("vc-clockd: clock stepped by %+.3f s\n", off / 1e9);
			else
				perror("vc-clockd: clock_settime");
			fflush(stdout);
		}
	}
}
