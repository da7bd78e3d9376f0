"""`pfs mount`: the store as a POSIX directory through FUSE (see docs/mount.md).

binding loads the FUSE library; view answers what a path is; reading serves
verified part reads with read-ahead; staging keeps files being written in a
bounded local write-back cache; handles tracks what is open; namespace_ops
changes names (unlink, mkdir, symlink, mknod, rmdir, rename); hardlinks gives
a file several names; operations maps the
FUSE calls onto all of these. The command that runs a mount in the foreground
is the front end's: pfs.cli.mount.
"""
