#!/usr/bin/env python3
"""Writes the starting corpus of each fuzz target into fuzz/corpus/<target>/ (realistic inputs:
the requests of docs/protocol.md, masked and unmasked frames, fragments, close frames). The
committed corpus is this plus what the fuzzers found, minimised with `cargo fuzz cmin`."""

import base64
import hashlib
import hmac
import json
import os
import re
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
JWT_SECRET = b"switchboard-fuzz-secret"  # switchboard_core::fuzzing::JWT_SECRET
RESUME_TOKEN = "switchboard-fuzz-resume-token"  # switchboard_core::fuzzing::RESUME_TOKEN


def write(target, name, data):
    folder = os.path.join(ROOT, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + name), "wb") as out:
        out.write(data if isinstance(data, bytes) else data.encode())


def frame(opcode, payload, fin=True, mask=b"\x37\xfa\x21\x3d", rsv=0):
    """A client frame; mask=None sends it unmasked (a protocol error from a client)."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    length = len(payload)
    bit = 0x80 if mask is not None else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", length)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", length)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def requests():
    with open(os.path.join(ROOT, "..", "docs", "protocol.md")) as doc:
        found = set(re.findall(r'\{"type":"[a-z_]+"[^`\n]*\}', doc.read()))
    client = {"register", "login", "resume", "login_jwt", "login_open", "logout", "send", "history",
              "typing", "read", "delivered", "conversations", "create_room", "join", "leave", "members", "rooms",
              "users", "online", "popular", "stats", "whoami", "ping"}
    kept = sorted(text for text in found if json.loads(text.replace("<signature>", "x"))["type"] in client)
    kept += [
        '{"type":"resume","ref":2,"token":"%s","cursors":{"dm:alice:bob":44,"room:lobby":5200}}' % RESUME_TOKEN,
        '{"type":"conversations","ref":5}',
        '{"type":"rooms","ref":10}',
        '{"type":"online","ref":12}',
        '{"type":"whoami","ref":15}',
        '{"type":"history","ref":3,"to":"bob","after":10}',
        '{"type":"users","ref":11,"cursor":"bob","limit":2}',
        '{"type":"login_open","username":"Guest42","presence":false,"cursors":{"dm:b:a":1}}',
        '{"type":"send","to":"bob","room":"lobby","text":"both"}',
        '{"type":"ping","protocol":2}',
        '["ping"]',
        '{"type":"send","ref":"' + "r" * 65 + '","to":"bob","text":"hi"}',
    ]
    return kept


def jwt(claims):
    encode = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")
    head = encode(b'{"alg":"HS256","typ":"JWT"}') + b"." + encode(json.dumps(claims).encode())
    return (head + b"." + encode(hmac.new(JWT_SECRET, head, hashlib.sha256).digest())).decode()


def main():
    texts = requests()
    for index, text in enumerate(texts):
        write("request", "%02d" % index, text)
        write("login", "%02d" % index, text)
    write("login", "jwt-valid", '{"type":"login_jwt","ref":"j","jwt":"%s"}' % jwt({"sub": "Carol", "exp": 4102444800}))
    write("login", "jwt-expired", '{"type":"login_jwt","jwt":"%s"}' % jwt({"sub": "carol", "exp": 1}))
    write("login", "jwt-bad-sub", '{"type":"login_jwt","jwt":"%s"}' % jwt({"sub": "no:pe", "exp": 4102444800}))

    # Decoder inputs: byte 0 picks the limit (bits 0-1) and binary keeping (bit 2), byte 1 the splits.
    send = texts[0].encode()
    frames = {
        "text-masked": frame(0x1, send),
        "text-unmasked": frame(0x1, send, mask=None),
        "text-fragmented": frame(0x1, b'{"type":', fin=False) + frame(0x9, b"mid") + frame(0x0, b'"ping"}'),
        "text-126": frame(0x1, b"x" * 300),
        "text-127-truncated": frame(0x1, b"y" * 70000)[:40],
        "text-utf8-split": frame(0x1, "h\u00e9llo \u20ac \U0001F600".encode()[:9], fin=False)
        + frame(0x0, "h\u00e9llo \u20ac \U0001F600".encode()[9:]),
        "text-bad-utf8": frame(0x1, b"ok \xc3\x28 no"),
        "binary": frame(0x2, bytes(range(40))),
        "binary-fragmented": frame(0x2, b"\x00\x01", fin=False) + frame(0x0, b"\x02\x03"),
        "ping-pong": frame(0x9, b"are you there") + frame(0xA, b"yes"),
        "close-1000": frame(0x8, struct.pack(">H", 1000) + b"bye"),
        "close-empty": frame(0x8, b""),
        "close-1005": frame(0x8, struct.pack(">H", 1005)),
        "close-one-byte": frame(0x8, b"\x03"),
        "close-bad-reason": frame(0x8, struct.pack(">H", 4000) + b"\xff"),
        "ping-too-long": frame(0x9, b"p" * 126),
        "ping-fragmented": frame(0x9, b"p", fin=False),
        "continuation-first": frame(0x0, b"x"),
        "rsv-set": frame(0x1, b"x", rsv=0x40),
        "opcode-reserved": frame(0x3, b"x"),
        "data-mid-message": frame(0x1, b"a", fin=False) + frame(0x1, b"b"),
        "far-too-large": frame(0x2, b"", mask=b"\0\0\0\0")[:1] + b"\xff" + struct.pack(">Q", 1 << 40) + b"abcd",
    }
    for index, (name, data) in enumerate(sorted(frames.items())):
        for config in (0, 1, 2, 3 | 4):
            write("ws_decoder", "%s-%d" % (name, config), bytes([config, index * 37 % 256]) + data)


if __name__ == "__main__":
    main()
