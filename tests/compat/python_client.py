"""python-socketio's client against /socket.io/: a token in the handshake auth, native requests
as events with acknowledgements, and a message event from a native user.

Run by crates/switchboard/tests/compat_python.rs with SB_URL, SB_TOKEN (a session token of
SB_USER) and SB_PEER (a native user who answers "pong" to any private message)."""

import os
import queue
import sys

import socketio


def main() -> int:
    url, token, user, peer = (os.environ[name] for name in ("SB_URL", "SB_TOKEN", "SB_USER", "SB_PEER"))
    messages: "queue.Queue[dict]" = queue.Queue()

    client = socketio.Client(reconnection=False)
    client.on("message", messages.put)
    client.connect(url, auth={"token": token}, wait_timeout=10)
    whoami = client.call("whoami", {"ref": "py-1"}, timeout=10)
    assert whoami["type"] == "whoami" and whoami["user"] == user, whoami
    assert whoami["ref"] == "py-1", whoami
    ack = client.call("send", {"to": peer, "text": "ping", "key": "py-key"}, timeout=10)
    assert ack["type"] == "ack" and ack["duplicate"] is False, ack
    again = client.call("send", {"to": peer, "text": "ping", "key": "py-key"}, timeout=10)
    assert again["duplicate"] is True and again["seq"] == ack["seq"], again
    reply = messages.get(timeout=10)
    assert reply["from"] == peer and reply["text"] == "pong", reply
    history = client.call("history", {"to": peer}, timeout=10)
    assert [m["text"] for m in history["messages"]] == ["ping", "pong"], history
    client.disconnect()

    refused = socketio.Client(reconnection=False)
    refusals: "queue.Queue[object]" = queue.Queue()
    refused.on("connect_error", refusals.put)
    try:
        refused.connect(url, auth={"token": "not-a-token"}, wait_timeout=3)
        print("a bad token was let in", file=sys.stderr)
        return 1
    except socketio.exceptions.ConnectionError:
        refusal = refusals.get(timeout=10)
        assert refusal == {"message": "invalid_token"}, refusal
    print("python-socketio: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
