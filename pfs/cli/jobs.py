"""Background jobs: one thread per put/get/delete/verify, with progress.

Jobs on the same file run in the order they were started: a get or delete of a
file that is still being stored waits for the put, so a script may say
`put a` then `get 1` straight away.

A job can be cancelled: its `cancelled` event is handed to the store's
operation, which stops at the next part and cleans up; a job cancelled before
it started never runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pfs import threads
from pfs.errors import Cancelled, NotFoundError, ResourceError


@dataclass
class Job:
    """One background operation on one file."""

    id: int
    kind: str
    file_id: int
    name: str
    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    result: object = None
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    as_json: bool = False  # its end is told as a JSON object (the command had --json)

    def advance(self, nbytes: int) -> None:
        self.done += nbytes

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else (1.0 if self.finished.is_set() else 0.0)


class JobManager:
    """Starts jobs, keeps per-file order, and waits for them."""

    def __init__(self, on_finish: Callable[[Job], None]) -> None:
        self._on_finish = on_finish
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}
        self._last_on_file: dict[int, Job] = {}
        self._next_id = 1

    def start(self, kind: str, file_id: int, name: str, total: int, work: Callable[[Job], object],
              as_json: bool = False) -> Job:
        """Run work(job) in a new thread once earlier jobs on the same file are done."""
        with self._lock:
            job = Job(self._next_id, kind, file_id, name, total, as_json=as_json)
            self._next_id += 1
            before = self._last_on_file.get(file_id)
            self._last_on_file[file_id] = job
            self._jobs[job.id] = job

        def run() -> None:
            if before is not None:
                before.finished.wait()
            job.started = time.monotonic()
            try:
                if job.cancelled.is_set():
                    raise Cancelled("cancelled")
                job.result = work(job)
            except BaseException as exc:  # reported through on_finish, never lost
                job.error = exc
            finally:
                job.ended = time.monotonic()
                try:
                    self._on_finish(job)  # reported before anyone waiting can see it gone
                finally:
                    with self._lock:
                        del self._jobs[job.id]
                        if self._last_on_file.get(file_id) is job:
                            del self._last_on_file[file_id]
                    job.finished.set()

        try:
            threads.start(threading.Thread(target=run, name=f"pfs-{kind}-{file_id}"), f"the {kind} of {name}")
        except ResourceError:
            self._unregister(job, before)
            raise
        return job

    def _unregister(self, job: Job, before: Job | None) -> None:
        """Forget a job whose thread could not start: nothing waits for it for ever."""
        with self._lock:
            del self._jobs[job.id]
            if self._last_on_file.get(job.file_id) is job:
                if before is not None and not before.finished.is_set():
                    self._last_on_file[job.file_id] = before
                else:
                    del self._last_on_file[job.file_id]
        job.finished.set()

    def find(self, job_id: int) -> Job:
        """The running job with this number."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no running job {job_id}", self._hint(job_id))
        return job

    def _hint(self, number: int) -> str:
        """Event lines begin with the file id ([2] storing ...), not the job
        number: name the job of file `number`, where one runs."""
        on_file = [j for j in self.running() if j.file_id == number]
        if len(on_file) == 1:
            j = on_file[0]
            return f"[{number}] is file {number}; its {j.kind} is job {j.id}: `cancel {j.id}`"
        return "`jobs` shows the running jobs"

    def running(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.id)

    def wait_file(self, file_id: int) -> None:
        """Block until every job started on `file_id` so far has finished."""
        with self._lock:
            last = self._last_on_file.get(file_id)
        if last is not None:
            last.finished.wait()

    def wait_all(self) -> None:
        """Block until every job started so far has finished."""
        for job in self.running():
            job.finished.wait()
