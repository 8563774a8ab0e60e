/* version: what `PROGRAM --version` prints, the same way in every program.
 *
 *   vcluster-launch 0.1.0          the program and the release (VERSION)
 *   format manifest 1              KIND NAME VERSION, one line per on-disk
 *   wire fabric-batch 1            format (KIND format) or wire protocol
 *                                  (KIND wire) the program reads or writes
 *
 * Machine-readable: fields are separated by one space, names are fixed
 * (renaming one is an interface change), and the versions are the defines
 * the readers check (FBATCH_VERSION, RQ_VERSION, ...), never copies.  The
 * release comes from the top-level VERSION file through the Makefile
 * (-DVC_VERSION); `make install` reads the same file.
 *
 * Header only: config.c, which handles the launcher's --version, is also
 * built into unit tests and fuzz targets that link no library.
 */
#ifndef VC_VERSION_H
#define VC_VERSION_H

#include <stdio.h>

#ifndef VC_VERSION
#error "VC_VERSION is not defined: build through the Makefile (it reads VERSION)"
#endif

struct version_item {
	const char *kind;	/* "format" or "wire" */
	const char *name;
	unsigned version;
};

/* Print the release and the items, which end with an entry whose kind is
 * NULL.  Returns 0, or -1 when stdout could not be written. */
static inline int version_print(FILE *out, const char *prog,
				const struct version_item *items)
{
	fprintf(out, "%s %s\n", prog, VC_VERSION);
	for (const struct version_item *i = items; i->kind; i++)
		fprintf(out, "%s %s %u\n", i->kind, i->name, i->version);
	return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}

#endif
