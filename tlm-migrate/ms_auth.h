/* mstream authentication: keys and MACs of wire version 2 (README.md,
 * "Authenticated streams").  GnuTLS does the cryptography: HKDF-SHA256 for
 * the keys, HMAC-SHA256 for the MACs.  Internal to mstream.
 *
 * Keys.  PRK = HKDF-Extract(salt "vcluster mstream 2", the shared secret);
 * the handshake key K_hs = HKDF-Expand(PRK, "vcms2 handshake"); each
 * stream's key K_s = HKDF-Expand(PRK, "vcms2 stream" || challenge[0..40) ||
 * hello[0..40)), which binds it to both nonces, the session, the stream's
 * index and the count.  So a chunk cannot be replayed into another
 * connection, nor moved to another stream; the sequence number inside its
 * header, under the MAC, keeps it from being replayed or reordered within
 * its stream.
 */
#ifndef VC_MS_AUTH_H
#define VC_MS_AUTH_H

#include "ms_core.h"

#include <stddef.h>
#include <stdint.h>

/* Derive PRK and K_hs from the handle's secret.  0 or -errno. */
int ms_auth_init(struct mstream *ms);

/* HMAC-SHA256 with key over label and the n buffers (ptr, len pairs). */
int ms_auth_mac(const uint8_t key[MS_MAC_LEN], const char *label,
		uint8_t out[MS_MAC_LEN], int n, ...);

/* Derive stream ch's key from the challenge and hello it was opened with
 * and set up its chunk MAC.  0 or -errno. */
int ms_auth_stream(struct ms_chan *ch, const uint8_t *chal,
		   const uint8_t *hello);

/* The MAC of a chunk (header and payload) under ch's key. */
int ms_auth_chunk(struct ms_chan *ch, const uint8_t *hdr, const void *data,
		  size_t len, uint8_t out[MS_MAC_LEN]);

/* Constant-time comparison of two MACs. */
bool ms_auth_equal(const uint8_t *a, const uint8_t *b);

/* Random bytes for nonces.  0 or -errno. */
int ms_auth_random(void *buf, size_t len);

/* Free ch's MAC state. */
void ms_auth_stream_free(struct ms_chan *ch);

#endif
