"""How many of a client's events Python holds that nobody has handled yet, and the bound on it.

Where an event waits, and who has acknowledged it (goneonize ``main.go``,
whatsmeow): whatsmeow calls goneonize's event handler, which pushes the event
into the client's Go channel (capacity 100) and returns; whatsmeow then
acknowledges the event to WhatsApp, which will never deliver it again. One
goroutine (``CallbackFunction``) takes the events out of that channel one at
a time and calls Python with each, on the thread that called ``Neonize``
(a cgo callback: ctypes takes the GIL for it). From there neonize hands the
event to the event loop, where the link queues it for its consumer.

An :class:`Intake` is that thread's door into Python. Before each event goes
on, :meth:`Intake.admit` counts it; at the bound it waits (a plain lock wait,
without the GIL) until the consumer has handled one (:meth:`Intake.release`,
called when it asks for the next event). While it waits nothing leaves Go's
channel, the channel fills, whatsmeow's handler blocks on it, and whatsmeow
acknowledges nothing more: the rest stays with WhatsApp.

The wait can never hold the event loop or a stop: the loop only releases
(under a lock held for a few instructions, never across a wait), a call from
the loop's own thread is counted but never waits, and :meth:`Intake.close`
(the first thing a client's stop does) lets every waiter through for good.
"""

from __future__ import annotations

import threading


class Intake:
    """Events a client's Go thread handed to Python and nobody handled yet, at most ``bound``."""

    def __init__(self, bound: int) -> None:
        if bound < 1:
            raise ValueError("an intake holds at least one event")
        self.bound = bound
        self._cv = threading.Condition()
        self._held = 0
        self._waiting = 0
        self._closed = False

    @property
    def held(self) -> int:
        """Events admitted and not released: on their way to the link, queued, or being handled."""
        return self._held

    @property
    def waiting(self) -> int:
        """Go threads waiting for room (at most one per client: Go hands events over one by one)."""
        return self._waiting

    @property
    def closed(self) -> bool:
        return self._closed

    def admit(self, *, wait: bool = True) -> bool:
        """Count one more event; at the bound, wait for room first (unless ``wait`` is False).

        False when the intake is closed: the event goes on uncounted (nobody consumes it).
        """
        with self._cv:
            if wait and self._held >= self.bound and not self._closed:
                self._waiting += 1
                try:
                    self._cv.wait_for(lambda: self._held < self.bound or self._closed)
                finally:
                    self._waiting -= 1
            if self._closed:
                return False
            self._held += 1
            return True

    def release(self) -> None:
        """One admitted event was handled (or dropped): room for the next."""
        with self._cv:
            if self._closed or self._held == 0:
                return
            self._held -= 1
            self._cv.notify()

    def close(self) -> None:
        """Nobody consumes any more: let every waiter through and count nothing more."""
        with self._cv:
            self._closed = True
            self._held = 0
            self._cv.notify_all()
