/* ftcp: the fabric's TCP mesh -- set-up, peer authentication and
 * non-blocking byte I/O between the ranks of one job.
 *
 * Set-up (ftcp_create, collective): rank 0 draws a 32-byte job secret and
 * sends it to every rank with MPI_Bcast; each rank listens on its host's
 * address (the one its hostname resolves to, or the one given) and the
 * addresses are exchanged with MPI_Allgather.  Rank r connects to every
 * rank below it and accepts from every rank above, all non-blocking, until
 * each peer has one authenticated connection.
 *
 * Hello wire format (both ends send one at once, then a proof), big-endian:
 *   0 u32 magic "VCFH"  4 u16 version (1)  6 u16 length (76)
 *   8 u8 type (1 hello, 2 proof)  9 u8[3] zero
 *  12 u32 sender's rank  16 u32 receiver's rank  20 u32 job size
 *  24 u8[16] hello: the sender's nonce; proof: zero
 *  40 u8[32] proof: HMAC-SHA256(secret, "vcluster fabric proof 1" ||
 *            bytes 8..24 of the proof || receiver's nonce || sender's nonce);
 *            hello: zero
 *  72 u32 CRC32C of bytes 0..72
 * A proof binds both nonces and both ranks in their direction, so it can
 * neither be replayed into another connection nor reflected back.  A
 * connection whose hello or proof does not check, or that claims a rank
 * already connected, gets one log line naming its address and is closed;
 * the job goes on.  Nothing but a proof is read from a peer, and nothing
 * is written to it, before its proof has checked.
 *
 * After set-up the listener stays open (late connections are checked the
 * same way and closed).  One thread calls everything here.
 */
#ifndef VC_FTCP_H
#define VC_FTCP_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FTCP_HELLO_LEN		76
#define FTCP_HELLO_VERSION	1

struct ftcp;

/* Build the mesh over comm (not dup'ed: only collectives on it here).
 * addr: the address to listen on and advertise, or NULL/"" for the one
 * the hostname resolves to.  Waits at most timeout_ms for every peer.
 * NULL with errno, after one line saying why (naming the peer). */
struct ftcp *ftcp_create(MPI_Comm comm, const char *addr, int timeout_ms);
void ftcp_destroy(struct ftcp *t);		/* NULL is fine */

/* The descriptor to wait on: readable when a peer socket is ready for
 * the events asked with ftcp_want(), or a connection is arriving. */
int ftcp_fd(const struct ftcp *t);

/* Ask for readability (in) and writability (out) of peer's socket. */
void ftcp_want(struct ftcp *t, int peer, bool in, bool out);

/* Handle arriving connections and fill ready[] with the peers whose
 * socket reported an asked event (at most max).  Never blocks. */
int ftcp_ready(struct ftcp *t, int *ready, int max);

/* Non-blocking I/O with peer: bytes moved (0: would block), -EPIPE when
 * the peer closed (recv), or -errno. */
ssize_t ftcp_send(struct ftcp *t, int peer, const void *buf, size_t len);
ssize_t ftcp_recv(struct ftcp *t, int peer, void *buf, size_t len);
/* Nothing more will be sent to peer: it reads what is on its way, then
 * end of file (ftcp_recv's -EPIPE).  0 or -errno. */
int ftcp_shutdown_wr(struct ftcp *t, int peer);

/* The authentication primitives, exposed for the unit test: fill a
 * hello/proof and check one.  For a hello, check stores the sender's
 * nonce in peer_nonce; for a proof it checks the MAC over it.  0, or
 * -EBADMSG (a field, named in why) or -EACCES (the MAC). */
void ftcp_fill_hello(uint8_t *m, int type, int from, int to, int size,
		     const uint8_t nonce[16], const uint8_t secret[32],
		     const uint8_t peer_nonce[16]);
int ftcp_check_hello(const uint8_t *m, int type, int want_to, int size,
		     const uint8_t secret[32], const uint8_t my_nonce[16],
		     uint8_t peer_nonce[16], int *from,
		     char *why, size_t whylen);

#endif
