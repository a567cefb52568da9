"""What a user sees while a run goes: a live status line (or periodic lines), events in run.log, and Ctrl-C handling."""
from __future__ import annotations

import contextlib
import shutil
import signal
import threading
import time
from typing import TextIO

# ---------------------------------------------------------------- Ctrl-C

class StopSignal:
    """First SIGINT / SIGTERM: ask the loop to stop gracefully. Second: stop at once (KeyboardInterrupt)."""

    def __init__(self, say):
        self.requested = False
        self._say = say
        self._old: dict[int, object] = {}

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._say("stopping: recording what has arrived, then exiting; press Ctrl-C again to stop at once")


def interrupt(signum, frame) -> None:
    """A SIGTERM handler: the signal is a Ctrl-C (``term_as_interrupt``)."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def term_as_interrupt():
    """Within: a SIGTERM outside a loop's own ``StopSignal`` (Ray starting, a stage starting or ending) is a Ctrl-C,
    so the command stops as after one (exit 130, the resume hint) instead of by the default action (exit -15, no
    word) or Ray's driver handler (``sys.exit(15)`` wherever it lands); ``connect_ray`` puts it back after
    ``ray.init`` installs Ray's. The main thread only; the old handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# ---------------------------------------------------------------- progress

class Progress:
    """A live status line on a terminal; plain periodic lines (and the same lines in run.log) otherwise."""

    def __init__(self, out: TextIO, log: TextIO, every_s: float):
        self.out, self.log, self.every_s = out, log, every_s
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._last_print = 0.0
        self._last_log = time.monotonic()
        self._live = False

    def event(self, text: str, show: bool = True) -> None:
        """A line for the log (and the console when ``show``)."""
        self.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        self.log.flush()
        if show:
            self._clear()
            print(text, file=self.out, flush=True)

    def status(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_log >= max(self.every_s, 30.0) or force:
            self.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
            self.log.flush()
            self._last_log = now
        if self.tty:
            if force or now - self._last_print >= 0.5:
                width = shutil.get_terminal_size((120, 20)).columns - 1
                self.out.write("\r\x1b[K" + text[:width])
                self.out.flush()
                self._live = True
                self._last_print = now
        elif force or now - self._last_print >= self.every_s:
            print(text, file=self.out, flush=True)
            self._last_print = now

    def _clear(self) -> None:
        if self._live:
            self.out.write("\r\x1b[K")
            self._live = False

    def close(self) -> None:
        self._clear()


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
