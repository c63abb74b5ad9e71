"""The daemon's tcp:// endpoints: CURVE server sockets, the ZAP handler, and who a peer is.

Off unless ``--tcp-bus`` / ``--tcp-ctl`` are given. Each tcp:// socket is a CURVE server with the
daemon's key pair; pyzmq's asyncio authenticator is the ZAP handler, admitting only keys in the
allow list (an unknown key's handshake fails: it gets nothing through, not even an error). The
authenticator's User-Id for an admitted peer is its Z85 public key, which libzmq attaches to
every frame from it; the role is looked up in the allow list for every frame, so a revocation
takes effect on the next frame. Plain tcp:// (no CURVE) is refused unless ``--allow-plain-tcp``
and the address is loopback.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator

from pixels_daemon.security.guard import Peer
from pixels_daemon.security.keys import AllowList, KeyError_, load_secret
from pixels_daemon.security.policy import UNTRUSTED, VIEWER, ipc_ctl_role, peer_uid
from protocol.messages import SOCKET_MAX_MSGSIZE

#: The ZAP domain of the daemon's tcp:// sockets (the authenticator answers for it alone).
ZAP_DOMAIN = "pixels"


class TransportError(Exception):
    """The tcp:// configuration cannot be served; the message says what to change."""


@dataclass(frozen=True)
class SecurityConfig:
    tcp_bus: str | None = None
    tcp_ctl: str | None = None
    #: The daemon's secret key file; default STATE_DIR/keys/server.key_secret.
    server_key: Path | None = None
    #: Trusted client keys; default STATE_DIR/keys/trusted.json.
    allow_list: Path | None = None
    allow_plain_tcp: bool = False
    #: uids that are operators on the ipc:// control socket besides the daemon's own and root's.
    operators: frozenset[int] = frozenset()

    @property
    def tcp(self) -> bool:
        return bool(self.tcp_bus or self.tcp_ctl)


def keys_dir(state_dir: Path) -> Path:
    return state_dir / "keys"


def is_loopback(endpoint: str) -> bool:
    host = endpoint.removeprefix("tcp://").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Transport:
    """Checks the configuration, holds the keys and the allow list, opens the tcp:// sockets."""

    def __init__(self, config: SecurityConfig, state_dir: Path) -> None:
        self.config = config
        self.operators = config.operators | {0, os.getuid()}
        self.allow = AllowList(config.allow_list or keys_dir(state_dir) / "trusted.json")
        self.curve: tuple[bytes, bytes] | None = None
        for endpoint in (config.tcp_bus, config.tcp_ctl):
            if endpoint is not None and not endpoint.startswith("tcp://"):
                raise TransportError(f"{endpoint!r} is not a tcp:// endpoint (tcp://HOST:PORT)")
        if not config.tcp:
            return
        if config.allow_plain_tcp:
            for endpoint in (config.tcp_bus, config.tcp_ctl):
                if endpoint is not None and not is_loopback(endpoint):
                    raise TransportError(
                        f"--allow-plain-tcp is for loopback only; {endpoint} is not loopback "
                        "(drop --allow-plain-tcp and use CURVE keys: docs/security.md)"
                    )
            return
        secret = config.server_key or keys_dir(state_dir) / "server.key_secret"
        if not secret.exists():
            raise TransportError(
                f"tcp:// endpoints need the daemon's CURVE key {secret}; make one with "
                f"`pixelsctl keys generate --name server --out {secret.parent}` "
                "(or give --server-key FILE)"
            )
        try:
            self.curve = load_secret(secret)
        except KeyError_ as exc:
            raise TransportError(str(exc)) from None
        self._auth: AsyncioAuthenticator | None = None

    def start(self, ctx: zmq.asyncio.Context) -> None:
        """Run the ZAP handler on ``ctx`` (a context of the tcp:// sockets only)."""
        if self.curve is None:
            return
        auth = AsyncioAuthenticator(ctx)
        auth.start()
        auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self.allow)
        self._auth = auth

    def stop(self) -> None:
        if self.curve is not None and self._auth is not None:
            self._auth.stop()
            self._auth = None

    def router(self, ctx: zmq.asyncio.Context, endpoint: str) -> zmq.asyncio.Socket:
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.MAXMSGSIZE, SOCKET_MAX_MSGSIZE)
        if self.curve is not None:
            public, secret = self.curve
            sock.curve_server = True
            sock.curve_publickey = public
            sock.curve_secretkey = secret
            sock.zap_domain = ZAP_DOMAIN.encode()
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise TransportError(f"cannot bind {endpoint}: {exc}") from None
        return sock

    def tcp_peer(self, identity: bytes, user_id: str | None, ctl: bool) -> Peer:
        """Who sent a frame on a tcp:// socket: the allow-list entry of its key, as it is now."""
        if self.curve is None:
            # Plain tcp on loopback: any local user can connect, so control gets a viewer's
            # rights only, and the bus is trusted as far as the ipc:// bus is.
            return Peer(identity, "tcp-plain", VIEWER if ctl else None)
        entry = self.allow.get(user_id or "")
        if entry is None:
            return Peer(identity, f"key:{(user_id or '?')[:8]}", UNTRUSTED)
        return Peer(identity, f"key:{entry.name}", entry.role)

    def ipc_ctl_peer(self, identity: bytes, peer_address: str | None) -> Peer:
        uid = peer_uid(peer_address)
        return Peer(identity, f"uid:{uid}", ipc_ctl_role(uid, frozenset(self.operators)))


def resolve_users(users: list[str]) -> frozenset[int]:
    """--operator values (user names or uids) as uids; ValueError names one that does not
    exist. Resolved once at start: a user added later needs a restart."""
    import pwd

    uids = set()
    for user in users:
        if user.isdigit():
            uids.add(int(user))
            continue
        try:
            uids.add(pwd.getpwnam(user).pw_uid)
        except KeyError:
            raise ValueError(
                f"--operator {user}: no such user (give a user name or a uid)"
            ) from None
    return frozenset(uids)
