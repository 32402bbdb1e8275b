"""Random and mutated request bodies for the plugin socket.

Used by tests/protocol/test_fuzz.py (a short run in CI) and
scripts/fuzz-socket.py (the long run). The plugin under fuzzing runs with
OSSFS_BIN=/bin/false, so no fuzzed url is ever contacted.
"""

import json

ENDPOINTS = ["Plugin.Activate", "VolumeDriver.Create", "VolumeDriver.Remove", "VolumeDriver.Mount",
             "VolumeDriver.Unmount", "VolumeDriver.Path", "VolumeDriver.Get", "VolumeDriver.List",
             "VolumeDriver.Capabilities", "VolumeDriver.Nope", "Plugin.Activate/x", "VolumeDriver.create"]
NAMES = ["v1", "fuzz", "-x", "", "a" * 64, "a" * 65, "../etc", "v 1", "ü", "v1\n", "0"]
OPTION_KEYS = ["bucket", "url", "ak_id", "ak_secret", "no_stat_cache", "other_opts", "path", "ram_role",
               "region", "credentials", "bukcet", ""]
STRINGS = ["", "b-1", "b-1:/a", "b-1:/../x", "true", "maybe", "http://127.0.0.1:9", "https://e.example",
           "ftp://x", "-o allow_other", "-o umask=022; id", "-f", "-o url=http://x", "\x00", "\ud800x",
           "a" * 300, "-o " + "a," * 50, "LTAI5tFuzzKeyId", "x:y", "auto", "cn-hangzhou"]
ODD_VALUES = [None, 0, -1, 1.5, True, [], {}, ["x"], {"a": "b"}, "x" * 5000]


def odd_value(rng):
    # A fresh copy: the lists and dicts must not be shared between bodies.
    return json.loads(json.dumps(rng.choice(ODD_VALUES)))


def random_value(rng):
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(STRINGS)
    if roll < 0.8:
        return odd_value(rng)
    return "".join(chr(rng.randrange(0, 0x2FF)) for _ in range(rng.randrange(0, 30)))


def valid_body(rng, endpoint):
    body = {"Name": rng.choice(["v1", "fuzz"])}
    if endpoint.endswith("Create"):
        body["Opts"] = {"bucket": "b-1", "url": "http://127.0.0.1:9", "ak_id": "LTAI5tFuzzKeyId",
                        "ak_secret": "FuzzSecretValue"}
    if endpoint.endswith("Mount"):
        body["ID"] = rng.choice(["a", "b", ""])
    return body


def mutate_structure(rng, body):
    body = json.loads(json.dumps(body))
    for _ in range(rng.randrange(1, 4)):
        action = rng.randrange(6)
        if action == 0:
            body["Name"] = rng.choice(NAMES) if rng.random() < 0.7 else odd_value(rng)
        elif action == 1:
            opts = body.setdefault("Opts", {})
            if isinstance(opts, dict):
                opts[rng.choice(OPTION_KEYS)] = random_value(rng)
            else:
                body["Opts"] = {}
        elif action == 2:
            body["Opts"] = odd_value(rng)
        elif action == 3:
            body["ID"] = random_value(rng)
        elif action == 4 and body:
            body.pop(rng.choice(list(body)))
        else:
            body[rng.choice(["name", "Extra", "Opts", "ID"])] = random_value(rng)
    return body


def mutate_bytes(rng, data):
    data = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        if not data:
            data += bytes([rng.randrange(256)])
            continue
        position = rng.randrange(len(data))
        action = rng.randrange(4)
        if action == 0:
            data[position] = rng.randrange(256)
        elif action == 1:
            del data[position:position + rng.randrange(1, 8)]
        elif action == 2:
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        else:
            data = data[:position]
    return bytes(data)


def request(rng):
    """Return ``(endpoint, body bytes)`` for one fuzzed request."""
    endpoint = rng.choice(ENDPOINTS)
    body = valid_body(rng, endpoint)
    roll = rng.random()
    if roll < 0.5:
        return endpoint, json.dumps(mutate_structure(rng, body)).encode()
    if roll < 0.85:
        return endpoint, mutate_bytes(rng, json.dumps(body).encode())
    if roll < 0.95:
        return endpoint, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    return endpoint, rng.choice([b"", b"null", b"[]", b"1", b'"x"', b"{}", b"{" * 2000, b'{"Name": "v1"' * 3])


class Tally:
    """Counts of the outcomes the fuzz run reports."""

    def __init__(self):
        self.requests = 0
        self.non_json = 0
        self.server_errors_without_err = 0
        self.internal_errors = 0
        self.statuses = {}
        self.examples = []

    def record(self, endpoint, data, status, text):
        self.requests += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        try:
            reply = json.loads(text)
        except ValueError:
            self.non_json += 1
            self._example("non-JSON", endpoint, data, status, text)
            return
        if status >= 500 and not (isinstance(reply, dict) and reply.get("Err")):
            self.server_errors_without_err += 1
            self._example("5xx without Err", endpoint, data, status, text)
        if isinstance(reply, dict) and str(reply.get("Err", "")).startswith("internal error"):
            self.internal_errors += 1
            self._example("internal error", endpoint, data, status, text)

    def _example(self, kind, endpoint, data, status, text):
        if len(self.examples) < 10:
            self.examples.append((kind, endpoint, data[:200], status, text[:300]))
