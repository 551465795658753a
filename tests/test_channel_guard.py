"""Nothing goes out on an SSH channel after its close (fleet/channel_guard.py; paramiko/paramiko#1115): OpenSSH
would drop the whole connection ("data packet referred to nonexistent channel"), and through a jump host that
connection is every host behind it.  The rule is pure; the transport applies it to the bytes it writes."""

from __future__ import annotations

import socket

import paramiko
from paramiko.common import (
    cMSG_CHANNEL_CLOSE, cMSG_CHANNEL_DATA, cMSG_CHANNEL_EOF, cMSG_CHANNEL_WINDOW_ADJUST, cMSG_IGNORE,
)
from paramiko.message import Message

from fleet import channel_guard
from fleet.transport import _Transport


def message(kind: bytes, rid: int | None = None, data: bytes | None = None) -> Message:
    m = Message()
    m.add_byte(kind)
    if rid is not None:
        m.add_int(rid)
    if data is not None:
        m.add_string(data)
    return m


def test_the_recipient_of_channel_messages_and_of_no_other():
    assert channel_guard.recipient(message(cMSG_CHANNEL_DATA, 7, b"x").asbytes()) == (94, 7)
    assert channel_guard.recipient(message(cMSG_CHANNEL_CLOSE, 2 ** 32 - 1).asbytes()) == (97, 2 ** 32 - 1)
    assert channel_guard.recipient(message(cMSG_IGNORE, None, b"abcd").asbytes()) == (2, None)
    assert channel_guard.recipient(b"\x5e\x00") == (94, None)  # too short to name one
    assert channel_guard.recipient(b"") == (-1, None)


def test_a_message_for_a_closed_or_unknown_channel_is_stale_and_the_close_never_is():
    open_ = [(3, False), (4, True)]  # channel 3 open; channel 4 open, its close already sent
    assert channel_guard.stale(94, 3, open_) is False
    assert channel_guard.stale(94, 4, open_) is True
    assert channel_guard.stale(96, 4, open_) is True  # nor an EOF after the close
    assert channel_guard.stale(93, 5, open_) is True  # a window adjust for a channel no longer ours
    assert channel_guard.stale(97, 4, open_) is False  # the close itself
    assert channel_guard.stale(2, None, open_) is False  # not a channel message
    # the server reused id 4 for a new channel after freeing the old one: the new one's data goes
    assert channel_guard.stale(94, 4, [(4, True), (4, False)]) is False


def _sent(sock: socket.socket) -> int:
    got = 0
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return got
        got += len(chunk)


def test_the_transport_drops_data_sent_after_the_channels_close():
    """The interleaving paramiko allows (a writer checks the channel open, the close goes out, then the writer's
    data), replayed in that order on a transport over a socket pair: the data after the close is not written."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    t = _Transport(ours)
    try:
        chan = paramiko.Channel(5)
        chan._set_transport(t)
        chan._set_remote_channel(9, 2 ** 20, 32768)
        t._channels.put(5, chan)
        t._send_message(message(cMSG_CHANNEL_DATA, 9, b"before"))
        assert _sent(theirs) > 0
        t._send_message(message(cMSG_CHANNEL_EOF, 9))
        t._send_message(message(cMSG_CHANNEL_CLOSE, 9))
        assert _sent(theirs) > 0
        for late in (message(cMSG_CHANNEL_DATA, 9, b"late"), message(cMSG_CHANNEL_WINDOW_ADJUST, 9),
                     message(cMSG_CHANNEL_EOF, 9), message(cMSG_CHANNEL_DATA, 10, b"nobody's")):
            t._send_message(late)
        assert _sent(theirs) == 0
        t._send_message(message(cMSG_IGNORE, None, b"keepalive"))  # not a channel's: goes as ever
        assert _sent(theirs) > 0
    finally:
        t.close()
        ours.close()
        theirs.close()
