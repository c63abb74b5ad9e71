"""Send control requests as another uid: ``ctl_as_uid.py UID ENDPOINT COMMAND...``.

Starts as root (the interpreter lives where only root may read), drops to UID keeping gid 0, then
connects, so the daemon's SO_PEERCRED sees UID. Prints one line per command: its reply's msgpack
as JSON.
"""

from __future__ import annotations

import json
import os
import sys

import msgspec
import zmq

from protocol import codec
from protocol.messages import Request

uid, endpoint, *commands = sys.argv[1:]
os.setuid(int(uid))
ctx = zmq.Context()
sock = ctx.socket(zmq.DEALER)
sock.setsockopt(zmq.LINGER, 0)
sock.connect(endpoint)
for command in commands:
    sock.send(codec.encode(Request(id=command, command=command, args={"id": "E-1"})))
    if not sock.poll(5000):
        sys.exit(f"no reply to {command}")
    print(json.dumps(msgspec.to_builtins(msgspec.msgpack.decode(sock.recv()))))
ctx.destroy(0)
