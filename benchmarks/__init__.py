"""pfs benchmark: big-file put/get against cp/cat and the peers (restic, borg,
rclone when installed), reads through the library (fsspec, random 4 KiB reads), the
memory contract, the small-file path and list on the JSON and PostgreSQL metadata
engines, concurrent small puts, and start-up.

    python -m benchmarks [--quick] [--dir DIR] [--json OUT] [--install-peers]
    python benchmarks/bench.py ...      (the same)

Every command, pfs or baseline, runs as a child process through one code path
(`run`), which times it, samples the summed RSS of its whole process tree and
measures the CPU time (user and system) of that whole tree: exactly, from a
cgroup made for the command, where the machine lets us create one. CPU time does
not depend on how busy the machine is, so it is the figure to compare on a shared
machine; wall time is the figure users feel, and is only comparable within a run.
The commands of a section run round-robin (one repetition of each, then the next
round), so a change of load hits pfs and the baselines of its round alike; the
big-file ratios are medians of the ratios within each round.

One module per scenario (big_files, library_reads, redundancy, s3, small_files,
startup), the baselines and peers they are measured against (peers), how commands
are run and measured (measure), the report (report: table, JSON, Markdown, chart),
and one entry point (main).
"""
