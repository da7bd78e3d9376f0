"""`pfs mount`: the store as a POSIX directory through FUSE (see docs/mount.md).

binding loads the FUSE library, view answers what a path is, reading serves
verified part reads with read-ahead, staging keeps files being written in a
bounded local write-back cache, handles tracks what is open, operations maps
FUSE calls onto all of these, and command runs the mount in the foreground.
"""
