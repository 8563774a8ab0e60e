/* Every vcluster magic number, in one place (one per file or message kind).
 * The ASCII spelling is in the comment so a hexdump can be read. */
#ifndef VC_MAGIC_H
#define VC_MAGIC_H

#define VC_MAGIC_FABRIC_MSG	0x56434642u	/* "VCFB" fabric batch over MPI */
#define VC_MAGIC_CTL		0x5643434cu	/* "VCCL" control socket message */
#define VC_MAGIC_RQ		0x56435251u	/* "VCRQ" receive queue image */
#define VC_MAGIC_MANIFEST	0x56434d46u	/* "VCMF" checkpoint manifest */
#define VC_MAGIC_MSTREAM	0x56434d53u	/* "VCMS" parallel stream hello/chunk */
#define VC_MAGIC_CTRLMSG	0x5643524du	/* "VCRM" control message between ranks */

#endif
