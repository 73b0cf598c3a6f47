"""Stopping on SIGTERM or SIGINT: the step saved, then a clean exit.

Inside ``stop_on_signals()`` (the recipes' and ``keras_autorep.pi``'s
commands run in it) SIGTERM and SIGINT become ``Preempted``. While a fit
saves its steps (``StepCheckpoint`` holds ``defer()`` from its start to
its end) the signal is only recorded (``requested``): the fit ends the step
in progress, saves it and raises ``Preempted`` (``stop_deferring``). Anywhere else the
exception is raised at once: what finished stages produced is on disk
already, and ``finally`` blocks remove scratch folders. A second signal
while one is pending raises at once too.
"""

import contextlib
import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_deferring = False
_requested = None


class Preempted(BaseException):
    """A signal asked the process to stop.

    A ``BaseException``, like ``KeyboardInterrupt``, so that code catching
    ``Exception`` (a tuner's trial, say) lets it through.

    Attributes:
        signum: the signal.
        saved: what was saved on the way out, in words, or ``None``.
    """

    def __init__(self, signum, saved=None):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.saved = saved

    @property
    def exit_status(self):
        """The shell's status of a process the signal ended: 128 + its
        number (143 for SIGTERM, 130 for SIGINT)."""
        return 128 + self.signum

    def message(self):
        """One line: the signal and what was saved."""
        saved = f"; saved {self.saved}" if self.saved else ""
        return f"stopped by {signal.Signals(self.signum).name}{saved}"


def _handle(signum, frame):
    global _requested
    if _deferring and _requested is None:
        _requested = signum
        return
    raise Preempted(signum)


@contextlib.contextmanager
def stop_on_signals():
    """Turn SIGTERM and SIGINT into ``Preempted`` (call from the main
    thread); the previous handlers come back on exit."""
    global _deferring, _requested
    previous = {signum: signal.signal(signum, _handle) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _deferring, _requested = False, None


def defer():
    """Record the signals from now on instead of raising them."""
    global _deferring, _requested
    _deferring, _requested = True, None


def requested():
    """The signal recorded while deferring, or ``None``."""
    return _requested


def stop_deferring(saved=None):
    """Raise the signals at once again; ``Preempted`` (with ``saved``,
    what the caller saved) right now if one was recorded."""
    global _deferring, _requested
    signum, _deferring, _requested = _requested, False, None
    if signum is not None:
        raise Preempted(signum, saved)
