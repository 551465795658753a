"""Nothing sent on an SSH channel after its close: the rule paramiko's threads can break, and its guard.

paramiko checks that a channel is open under the channel's lock, then sends the message outside it (it must, or
a key exchange could deadlock).  A thread writing to a channel can therefore send its data *after* another
thread (the transport's, on the server's close; or ours, closing) has sent ``SSH_MSG_CHANNEL_CLOSE`` for it
(paramiko/paramiko#1115, open since 2017).  OpenSSH answers a message for a channel it has freed by
disconnecting the whole connection ("data packet referred to nonexistent channel N").  For one host that is a
lost command; for the connection to a jump host, which every host behind it shares (:mod:`fleet.jump_pool`), it is
every host behind that bastion at once: seen in the suite with 128 hosts behind one stock sshd, where the target's
sshd drops handshakes past its ``MaxStartups`` while their bytes are still being written.

:func:`stale` is the rule, pure: a channel message (window adjust, data, EOF, request, reply) whose recipient is no
longer an open channel of ours, or one we have already sent the close of, is dropped.  The close itself always
goes.  The transport applies it where every channel message goes through one lock in order
(``Transport._send_message`` under ``clear_to_send_lock``), so a check there and the send are one step as seen
from the close.
"""

from __future__ import annotations

from typing import Iterable

from paramiko.common import (
    MSG_CHANNEL_CLOSE, MSG_CHANNEL_DATA, MSG_CHANNEL_EOF, MSG_CHANNEL_EXTENDED_DATA, MSG_CHANNEL_FAILURE,
    MSG_CHANNEL_REQUEST, MSG_CHANNEL_SUCCESS, MSG_CHANNEL_WINDOW_ADJUST,
)

# the messages that name an open channel and must never follow its close
AFTER_OPEN = frozenset({MSG_CHANNEL_WINDOW_ADJUST, MSG_CHANNEL_DATA, MSG_CHANNEL_EXTENDED_DATA, MSG_CHANNEL_EOF,
                        MSG_CHANNEL_REQUEST, MSG_CHANNEL_SUCCESS, MSG_CHANNEL_FAILURE})
CLOSE = MSG_CHANNEL_CLOSE


def recipient(payload: bytes | memoryview) -> tuple[int, int | None]:
    """``(message type, recipient channel)`` of a channel message's payload; the channel is None for a message
    that names none (or is too short to)."""
    kind = payload[0] if len(payload) else -1
    if (kind in AFTER_OPEN or kind == CLOSE) and len(payload) >= 5:
        return kind, int.from_bytes(bytes(payload[1:5]), "big")
    return kind, None


def stale(kind: int, channel: int | None, open_channels: Iterable[tuple[int, bool]]) -> bool:
    """Whether a message must not be sent: a channel message (:data:`AFTER_OPEN`) for a remote channel id that
    none of our open channels has, or only ones whose close we have already sent.  ``open_channels``: each open
    channel's ``(remote id, close sent)``."""
    if kind not in AFTER_OPEN or channel is None:
        return False
    return not any(rid == channel and not close_sent for rid, close_sent in open_channels)
