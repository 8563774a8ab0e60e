/* vctime: the clocks vcluster code reads.  Monotonic for timeouts and
 * intervals; the wall clock only for timestamps that cross machines (pause
 * and resume times of VMs). */
#ifndef VC_VCTIME_H
#define VC_VCTIME_H

#include <time.h>

static inline double vc_mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline long long vc_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline double vc_wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif
