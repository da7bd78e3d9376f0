"""Imported by the worker pool's forkserver where the store has S3 volumes (see
VolumeSet.preload): boto3 and the S3 service model are loaded there once, so
each worker forked from it makes its client in milliseconds, not in a third of
a second of CPU."""

from pfs.volumes.s3 import warm

warm()
