"""What the server's policy keeps per request beside the endpoint's own stream state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["FORGOTTEN", "READY", "RECEIVING", "RUNNING", "Stream"]

#: The request is arriving.
RECEIVING = 0
#: The request is complete and waits to be handed out.
READY = 1
#: The request was handed out; its call runs or is answered.
RUNNING = 2
#: The stream was reset or answered before its request was handed out.
FORGOTTEN = -1


@dataclass(slots=True, eq=False)
class Stream:
    """One request, from its header block until it is handed out (or reset, or answered)."""

    stream_id: int
    headers: Sequence[tuple[bytes, bytes]]
    #: The stream's receive window as the client sees it (the settings' initial size, less
    #: what arrived, plus what the server granted).
    window: int
    state: int = RECEIVING
    body: list[bytes] = field(default_factory=list)
    #: Data bytes received (padding not counted).
    size: int = 0
    #: The message length its 5-byte prefix declares; -1 until the prefix arrived.
    declared: int = -1
    #: The declared length is over the limit: the rest is dropped, the call answered at once.
    oversized: bool = False
    #: Flow-controlled bytes received and not yet given back to the client's windows.
    unacked: int = 0
    #: Window granted beyond the initial one, held from the connection's reserve.
    reserved: int = 0
    #: Waiting for the reserve, in the connection's queue.
    queued: bool = False
