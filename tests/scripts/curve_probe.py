"""Try a control request over tcp:// CURVE with a key: ``curve_probe.py ENDPOINT SERVER_KEY KEY``.

Prints "refused" if the handshake fails authentication, "reply CODE" for an answer, or
"nothing" if neither happened within 10 s.
"""

from __future__ import annotations

import sys

import zmq
from zmq.utils.monitor import recv_monitor_message

from pixels_daemon.security.keys import client_curve
from protocol import codec
from protocol.messages import Request

endpoint, server_key, key = sys.argv[1:]
ctx = zmq.Context()
sock = ctx.socket(zmq.DEALER)
sock.setsockopt(zmq.LINGER, 0)
sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = client_curve(server_key, key)
monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
sock.connect(endpoint)
sock.send(codec.encode(Request(id="q", command="ping")))
poller = zmq.Poller()
poller.register(sock, zmq.POLLIN)
poller.register(monitor, zmq.POLLIN)
events = dict(poller.poll(10_000))
if monitor in events and recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
    print("refused")
elif sock in events:
    print(f"reply {type(codec.ctl_response.decode(sock.recv())).__name__}")
else:
    print("nothing")
sock.disable_monitor()
ctx.destroy(0)
