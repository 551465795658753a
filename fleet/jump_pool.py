"""What the hosts of one run share on the way to their jump hosts: one connection per jump chain, and a bound
on the handshakes run with each jump host at once (below sshd's stock ``MaxStartups 10:30:100``, which drops
unauthenticated connections beyond 10 at random)."""

from __future__ import annotations

import threading

from fleet.outcome import HostError

class JumpPool:
    """What the hosts of one run share on the way to their jump hosts (one per :class:`SshOptions`):

    * one connection per jump chain, opened once and used by every host behind it (each host gets a
      ``direct-tcpip`` channel through it), closed when the last host using it closes;
    * per jump host, a bound on the handshakes run with it at once (``gpufleet_jump_handshakes``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chains: dict[tuple, Chain] = {}
        self._gates: dict[str, threading.Semaphore] = {}

    def gate(self, jump: str, limit: int) -> threading.Semaphore:
        """The handshake bound for jump host ``jump`` (the first limit asked for it holds)."""
        with self._lock:
            gate = self._gates.get(jump)
            if gate is None:
                gate = self._gates[jump] = threading.Semaphore(limit)
            return gate

    def acquire(self, key: tuple, build) -> "Chain":
        """The chain for ``key`` (``build()`` makes its hop connections the first time), one more user."""
        with self._lock:
            chain = self._chains.get(key)
            if chain is None:
                chain = self._chains[key] = Chain(build())
            chain.users += 1
            return chain

    def release(self, key: tuple, chain: "Chain") -> None:
        """One user fewer; the last one closes the chain's connections."""
        with self._lock:
            chain.users -= 1
            if chain.users > 0:
                return
            if self._chains.get(key) is chain:
                del self._chains[key]
        for hop in reversed(chain.hops):
            hop.close()


class Chain:
    """The hop connections to one jump chain, shared; ``lock`` serialises opening them, ``failure`` is why the
    last try failed (the hosts waiting behind it get it at once instead of each trying again)."""

    def __init__(self, hops: list) -> None:
        self.hops = hops
        self.lock = threading.Lock()
        self.users = 0
        self.failure: HostError | None = None
