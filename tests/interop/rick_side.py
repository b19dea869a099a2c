"""The Python half of tests/python_interop.rs: rick (and cryptography) on one side
of a shared redis-server, memorix on the other.

    rick_side.py write   PORT MODE REDIS_KEY [KEY_HEX]   store FIXTURE the way rick does
    rick_side.py read    PORT MODE REDIS_KEY [KEY_HEX]   read it back, compare strictly
    rick_side.py kat     KEY_HEX                         Fernet256 tokens, fixed IV and time
    rick_side.py decrypt KEY_HEX TOKEN                   rick Fernet256.decrypt -> hex
    rick_side.py fernet-decrypt FERNET_KEY TOKEN         cryptography Fernet.decrypt -> hex
    rick_side.py fernet-encrypt FERNET_KEY PLAIN_HEX     cryptography Fernet.encrypt

MODE is one of: crypt-pickle (rick CryptRedisCache), pickle (rick RedisCache,
default pickle), json (rick RedisCache with rick's JSON serializer), crypt-json
(rick Fernet256 over JSON), fernet-pickle (standard Fernet over pickle).
Keys travel hex-encoded (their UTF-8 bytes) so any locale passes them intact.
Exit status 0 means success; anything else prints why on stderr.
"""

import base64
import json
import pickle
import sys

import redis
from cryptography.fernet import Fernet
from rick.crypto import Fernet256
from rick.resource.redis import CryptRedisCache, RedisCache
from rick.serializer.json.json import ExtendedJsonEncoder

KAT_TIME = 1700000000
KAT_IV = bytes(range(16))
KAT_PLAINTEXTS = [b"", b"a", b"hello", b"x" * 15, b"y" * 16, b"z" * 17, bytes(range(100))]

JSON_FIXTURE = {
    "name": "Ada Lovelace",
    "unicode": "naïve café ☕ 日本",
    "count": 42,
    "big": 2**40 + 7,
    "negative": -17,
    "ratio": 3.25,
    "active": True,
    "inactive": False,
    "missing": None,
    "tags": ["a", "b", "c"],
    "nested": {"level": 2, "inner": {"ok": True, "items": [1, 2, 3]}},
}
PICKLE_FIXTURE = dict(JSON_FIXTURE, blob=b"\x00\x01binary\xff")


def json_dumps(value):
    # rick's documented JSON serializer for RedisCache.
    return json.dumps(value, cls=ExtendedJsonEncoder).encode("utf-8")


def json_loads(data):
    return json.loads(data.decode("utf-8"))


def fernet256(key_hex):
    # What rick's CryptRedisCache does with its key string.
    return Fernet256(base64.urlsafe_b64encode(bytes.fromhex(key_hex)))


def fixture(mode):
    return JSON_FIXTURE if "json" in mode else PICKLE_FIXTURE


def same(a, b):
    """Equality that also compares types: True == 1 == 1.0 in Python."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def store(port, mode, key, key_hex):
    if mode == "crypt-pickle":
        return CryptRedisCache(key=bytes.fromhex(key_hex).decode("utf-8"), host="127.0.0.1", port=port)
    if mode == "pickle":
        return RedisCache(host="127.0.0.1", port=port)
    if mode == "json":
        return RedisCache(host="127.0.0.1", port=port, serializer=json_dumps, deserializer=json_loads)
    client = redis.Redis(host="127.0.0.1", port=port)
    if mode == "crypt-json":
        f = fernet256(key_hex)
        return RawStore(client, lambda v: f.encrypt(json_dumps(v)), lambda d: json_loads(f.decrypt(d)))
    if mode == "fernet-pickle":
        f = Fernet(key_hex.encode("ascii"))
        return RawStore(client, lambda v: f.encrypt(pickle.dumps(v)), lambda d: pickle.loads(f.decrypt(d)))
    raise SystemExit(f"unknown mode {mode!r}")


class RawStore:
    """A redis client with a serializer, for the modes rick has no class for."""

    def __init__(self, client, dumps, loads):
        self.client, self.dumps, self.loads = client, dumps, loads

    def set(self, key, value, ttl=None):
        return self.client.set(key, self.dumps(value), ex=ttl)

    def get(self, key):
        data = self.client.get(key)
        return None if data is None else self.loads(data)


def main(argv):
    command = argv[1]
    if command == "write":
        port, mode, key = int(argv[2]), argv[3], argv[4]
        key_hex = argv[5] if len(argv) > 5 else None
        store(port, mode, key, key_hex).set(key, fixture(mode), 600)
        print("written")
    elif command == "read":
        port, mode, key = int(argv[2]), argv[3], argv[4]
        key_hex = argv[5] if len(argv) > 5 else None
        got = store(port, mode, key, key_hex).get(key)
        if not same(got, fixture(mode)):
            sys.exit(f"value read by Python differs:\n got      {got!r}\n expected {fixture(mode)!r}")
        print("equal")
    elif command == "kat":
        f = fernet256(argv[2])
        for plain in KAT_PLAINTEXTS:
            token = f._encrypt_from_parts(plain, KAT_TIME, KAT_IV)
            print(json.dumps({"plain": plain.hex(), "token": token.decode("ascii")}))
    elif command == "decrypt":
        print(fernet256(argv[2]).decrypt(argv[3].encode("ascii")).hex())
    elif command == "fernet-decrypt":
        print(Fernet(argv[2].encode("ascii")).decrypt(argv[3].encode("ascii")).hex())
    elif command == "fernet-encrypt":
        print(Fernet(argv[2].encode("ascii")).encrypt(bytes.fromhex(argv[3])).decode("ascii"))
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv)
