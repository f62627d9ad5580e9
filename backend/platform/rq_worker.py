"""The RQ worker class of `flask worker`: RQ's non-forking SimpleWorker, stopping promptly.

A deploy sends SIGTERM and waits a grace period (Kubernetes: 30 s by default) before SIGKILL.
RQ's warm shutdown lets a running job finish and then exits; two things around it are changed
here:

- the stop of RQ's command channel (a pubsub thread that waits up to 60 s for a message) could
  take those 60 s, and a SIGKILL in the meantime cut the relayer and intake pumps mid-work;
- the process's own stop (the relayer and pumps beside RQ) is told at once (`stop`), also
  when the signal comes before RQ has installed its handlers.
"""

from __future__ import annotations

import contextlib
import threading
from types import FrameType
from typing import Any

import redis
from rq import SimpleWorker


class Worker(SimpleWorker):
    def __init__(self, *args: Any, stop: threading.Event | None = None, **kwargs: Any) -> None:
        """`stop`: the process's stop (its relayer and pumps), set at RQ's stop signal; set
        already when RQ takes the signals over (a signal while it registered itself), RQ's
        loop ends before it takes a job."""
        super().__init__(*args, **kwargs)
        self._process_stop = stop

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        if self._process_stop is not None and self._process_stop.is_set():
            self._stop_requested = True

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self._process_stop is not None:
            self._process_stop.set()
        super().request_stop(signum, frame)

    def unsubscribe(self) -> None:
        """End the command channel's thread without waiting out its 60 s read.

        RQ sends UNSUBSCRIBE and then stops the thread; since redis-py 8.2, `stop()` waits for
        the thread without a bound. When the thread reads the UNSUBSCRIBE reply before `stop()`
        has cleared its flag, it goes back to wait for a subscription (up to its 60 s
        `sleep_time`) and the stop waits with it: measured, about one stop in three took 61 s.
        Here the flag is cleared first, so the reply wakes a thread that has been told to end.
        """
        thread, pubsub = self.pubsub_thread, self.pubsub
        if thread is None or pubsub is None:
            return
        self.log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
        try:
            thread.stop(timeout=0)
        except TypeError:  # redis-py before 8.2: stop() only clears the flag
            thread.stop()
        with contextlib.suppress(redis.exceptions.RedisError):
            pubsub.unsubscribe()
        thread.join(timeout=1)  # a daemon thread: were it still reading, the exit ends it
        with contextlib.suppress(redis.exceptions.RedisError):
            pubsub.close()
