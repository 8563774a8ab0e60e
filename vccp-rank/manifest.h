/* manifest: a checkpoint's table of contents, and the checkpoint directory.
 *
 *   DIR/epoch-000007/manifest     written last by the coordinator
 *   DIR/epoch-000007/rankR.vmstate  QEMU's migration stream of rank R's VM
 *   DIR/epoch-000007/rankR.rq       rank R's receive queue (rq.h)
 *   DIR/latest -> epoch-000007      replaced atomically after the manifest
 *
 * The manifest file is a vcfmt header (magic "VCMF", version 1, body
 * length), a JSON body, and a CRC32C of the body.  The JSON names every
 * rank's files with their sizes and CRC32C, the number of ranks and the VM
 * settings a restore must reuse.  An epoch directory without a valid
 * manifest is not a checkpoint.
 *
 * Several checkpoint directories (--checkpoint-dir D1,D2,..., one per
 * disk): a live epoch's RAM files are spread round-robin over
 * Dk/epoch-000007 (ckpt_ram_dir()); everything else, the manifest and
 * latest stay in D1.  The manifest then lists the directories ("dirs",
 * absolute paths, D1 first) and each RAM file entry the index of its
 * directory ("dir"; absent or 0: the epoch directory holding the manifest).
 */
#ifndef VC_MANIFEST_H
#define VC_MANIFEST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define MANIFEST_VERSION 1
#define CKPT_MAX_DIRS	8	/* --checkpoint-dir D1,...,D8 */

/* DIR/epoch-%06llu */
void ckpt_epoch_dir(const char *dir, uint64_t epoch, char *out, size_t len);

/* The epoch of a directory name as ckpt_epoch_dir() writes it
 * ("epoch-000007"; "epoch-7", "epoch-+7", "epoch-0000007" are not epoch
 * names).  0, or -1 when name is not one. */
int ckpt_epoch_from_name(const char *name, uint64_t *epoch);

/* The epoch after the newest one found in dir (1 when none). */
uint64_t ckpt_next_epoch(const char *dir);

/* Write the manifest of epoch_dir atomically (mode 0600).  0 or -errno. */
int manifest_write(const char *epoch_dir, json_t *m);

/* Read and check a manifest file.  0, or -errno/-EBADMSG with the reason
 * in why (the message names the file). */
int manifest_read(const char *epoch_dir, json_t **out, char *why, size_t whylen);

/* Resolve "latest" or an epoch number to an epoch directory holding a
 * valid manifest.  0 or -errno with the reason in why. */
int ckpt_resolve(const char *dir, const char *which, char *epoch_dir,
		 size_t len, uint64_t *epoch, json_t **manifest, char *why,
		 size_t whylen);

/* Check rank's files against the manifest: present, sizes, CRC32C (the
 * whole file is read).  0 or -EBADMSG/-errno with the reason naming the
 * file in why. */
int ckpt_verify_rank(const char *epoch_dir, json_t *m, int rank, char *why,
		     size_t whylen);

/* CRC32C and size of a whole file.  0 or -errno. */
int ckpt_file_crc(const char *path, uint32_t *crc, uint64_t *size);

/* Point dir/latest at epoch (a new symlink renamed over the old, then an
 * fsync of dir): durable or unchanged -- when the fsync fails the old link
 * is put back before the error is returned, so a caller that then aborts
 * the epoch never leaves latest naming it.  0 or -errno. */
int ckpt_set_latest(const char *dir, uint64_t epoch);

/* Remove epoch directories beyond the newest keep complete ones (and
 * incomplete ones -- no manifest at all -- older than the newest complete
 * one), never keep_epoch nor the one latest names.  An epoch whose
 * manifest exists but cannot be read (EIO, EMFILE, a newer version,
 * damage) is kept and reported (a warning naming it); symlinks named like
 * epochs are ignored.  Call it only after ckpt_set_latest() succeeded.
 * Returns how many were removed. */
int ckpt_prune(const char *dir, int keep, uint64_t keep_epoch);

/* Which of ndirs checkpoint directories holds RAM file `file` of nfiles of
 * rank: round-robin over every rank's files, so that one writer per rank
 * (or one rank per disk) still spreads over all of them. */
int ckpt_ram_dir(int rank, int nfiles, int file, int ndirs);

/* The path of the RAM file of manifest entry f (an element of a rank's
 * "ram"), the manifest m having been read from epoch_dir: checks the name
 * (no '/'), the "dir" index and m's "dirs" (absolute, no "..").  0 or
 * -EBADMSG with why naming the manifest. */
int ckpt_ram_path(const char *epoch_dir, json_t *m, json_t *f, char *out, size_t len,
		  char *why, size_t whylen);

/* Check the checkpoint directories given at start: each exists, is a
 * directory, takes a new file (one is created and removed), and no two are
 * the same directory.  0 or -errno with one line in why naming the
 * directory. */
int ckpt_dirs_check(const char *const *dirs, int n, char *why, size_t whylen);

/* Pruning of a further checkpoint directory (after ckpt_prune() of main):
 * removes extra's epoch directories older than keep_epoch that have no
 * epoch directory in main_dir any more (pruned there, or left by an aborted
 * epoch), never the one main_dir's latest names; symlinks are not followed.
 * Returns how many were removed. */
int ckpt_prune_extra(const char *main_dir, const char *extra, uint64_t keep_epoch);

/* Remove a directory tree (an aborted epoch) with openat/unlinkat, never
 * following a symlink (a symlink at path or inside is removed itself).
 * 0 or -errno. */
int ckpt_remove_tree(const char *path);

#endif
