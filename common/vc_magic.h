/* Every vcluster magic number, in one place (one per file or message kind).
 * The ASCII spelling is in the comment so a hexdump can be read. */
#ifndef VC_MAGIC_H
#define VC_MAGIC_H

#define VC_MAGIC_FABRIC_MSG	0x56434642u	/* "VCFB" fabric batch over MPI */
#define VC_MAGIC_FABRIC_HELLO	0x56434648u	/* "VCFH" fabric TCP connection hello/proof */
#define VC_MAGIC_CTL		0x5643434cu	/* "VCCL" control socket message */
#define VC_MAGIC_RQ		0x56435251u	/* "VCRQ" receive queue image */
#define VC_MAGIC_MANIFEST	0x56434d46u	/* "VCMF" checkpoint manifest */
#define VC_MAGIC_LIVERAM	0x56434c52u	/* "VCLR" live checkpoint RAM file */
#define VC_MAGIC_MSTREAM	0x56434d53u	/* "VCMS" parallel stream hello/chunk */
#define VC_MAGIC_CTRLMSG	0x5643524du	/* "VCRM" control message between ranks */
#define VC_MAGIC_SYNTH_FRAME	0x56435346u	/* "VCSF" --vm none: synthetic frame */
#define VC_MAGIC_SYNTH_STATE	0x56435353u	/* "VCSS" --vm none: synthetic VM state */
#define VC_MAGIC_CLOCK		0x5643544du	/* "VCTM" clock frame to the guest */
#define VC_CLOCK_VERSION	1		/* the clock frame's version field */
/* Written by the patched QEMU (qemu-patches 0002) little-endian, so the
 * value reads backwards; the file's first bytes are "VCDL". */
#define VC_MAGIC_DIRTYLOG	0x4c444356u	/* "VCDL" dirty-log region */

#endif
