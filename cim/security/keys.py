"""API keys: a random secret shown once at issue, stored only as a salted scrypt hash; verify, list, revoke.

A key reads ``cim_<id>.<secret>``: the id finds the record, the secret is checked against its hash in
constant time. Keys live in the store (``api_keys``, issued through the admin API) or, for bootstrap and
service accounts, in the security file (:class:`StaticKey`, hashed with :func:`hash_secret`)::

    python -c "from cim.security.keys import hash_secret; print(hash_secret('the-secret'))"

scrypt makes a stolen table useless but costs ~30 ms a check, so a verified key is cached for
``cache_ttl_s`` (by a SHA-256 of the presented secret); revoking through :meth:`KeyStore.revoke` evicts
it at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import duckdb

from cim.errors import InvalidInputError, NotFoundError
from cim.security.policy import AuthenticationError, ForbiddenError, Principal, Role

if TYPE_CHECKING:
    from cim.store import DuckDBStore

log = logging.getLogger(__name__)

KEY_PREFIX = "cim_"
ID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,40}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_COLUMNS = ("id", "name", "role", "secret_hash", "created_at", "created_by", "expires_at", "revoked_at",
            "revoked_by", "last_used_at", "note")


def utcnow() -> datetime:
    """Now in UTC as a naive timestamp (the store's convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_secret(secret: str, *, n: int = _SCRYPT["n"], r: int = _SCRYPT["r"], p: int = _SCRYPT["p"]) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64) of ``secret`` with a random 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def check_secret(secret: str, encoded: str) -> bool:
    """Whether ``secret`` matches ``encoded`` (``scrypt$…`` or ``pbkdf2_sha256$iterations$salt$hash``)."""
    try:
        kind, *parts = encoded.split("$")
        if kind == "scrypt":
            n, r, p, salt, want = int(parts[0]), int(parts[1]), int(parts[2]), parts[3], parts[4]
            got = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=n, r=r, p=p, dklen=32,
                                 maxmem=max(64 * 1024**2, 256 * n * r))
        elif kind == "pbkdf2_sha256":
            iterations, salt, want = int(parts[0]), parts[1], parts[2]
            got = hashlib.pbkdf2_hmac("sha256", secret.encode(), base64.b64decode(salt), iterations)
        else:
            return False
        return hmac.compare_digest(got, base64.b64decode(want))
    except (ValueError, IndexError):
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Checked against when a key id is unknown, so a miss costs as much as a hit."""
    return hash_secret(secrets.token_urlsafe(16))


def parse_key(text: str) -> tuple[str, str]:
    """``(id, secret)`` of a key ``cim_<id>.<secret>``; raises :class:`AuthenticationError`."""
    text = text.strip()
    body = text[len(KEY_PREFIX):] if text.startswith(KEY_PREFIX) else ""
    key_id, _, secret = body.partition(".")
    if not ID_PATTERN.match(key_id) or len(secret) < 16:
        raise AuthenticationError("the API key is malformed (expected cim_<id>.<secret>)", scheme="ApiKey")
    return key_id, secret


@dataclass(frozen=True)
class ApiKey:
    """What the service knows of a key (never its secret)."""

    id: str
    name: str
    role: str
    created_at: datetime | None = None
    created_by: str | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    last_used_at: datetime | None = None
    note: str | None = None
    source: str = "store"  # store | config

    def state(self, now: datetime) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}
        out["state"] = self.state(now or utcnow())
        return out


@dataclass(frozen=True)
class StaticKey:
    """A key declared in the security file: id, name, role and the hash of its secret."""

    id: str
    name: str
    role: Role
    hash: str
    expires_at: datetime | None = None

    def record(self) -> ApiKey:
        return ApiKey(self.id, self.name, self.role.value, expires_at=self.expires_at, source="config")


@dataclass(frozen=True)
class IssuedKey:
    """A newly issued key: ``key`` is the full text to hand to the client; it is not kept and not shown again."""

    record: ApiKey
    key: str


@dataclass
class _Cached:
    digest: bytes
    record: ApiKey
    hashed: str
    at: datetime


class KeyStore:
    """Issue, verify, list and revoke API keys held in the store (``api_keys``) and the security file.

    ``store`` may be a callable returning the store, so an application can open it on first use.
    """

    def __init__(self, store: DuckDBStore | Callable[[], DuckDBStore], static: Sequence[StaticKey] = (), *,
                 cache_ttl_s: float = 60.0, touch_every_s: float = 60.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._store = store if callable(store) else (lambda: store)
        self.static = {k.id: k for k in static}
        self.cache_ttl = timedelta(seconds=cache_ttl_s)
        self.touch_every = timedelta(seconds=touch_every_s)
        self.clock = clock
        self._cache: dict[str, _Cached] = {}
        self._touched: dict[str, datetime] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> DuckDBStore:
        return self._store()

    # -- issue / revoke -----------------------------------------------------------------------------
    def issue(self, name: str, role: Role | str, *, expires_at: datetime | None = None,
              created_by: str | None = None, note: str | None = None) -> IssuedKey:
        """A new key for ``role``; the returned :attr:`IssuedKey.key` is the only copy of the secret."""
        name = (name or "").strip()
        if not name or len(name) > 200:
            raise InvalidInputError("a key needs a name of 1 to 200 characters", field="name")
        role = _role(role)
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidInputError("the expiry lies in the past", field="expires_at")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        if key_id in self.static:  # astronomically unlikely; never shadow a configured key
            return self.issue(name, role, expires_at=expires_at, created_by=created_by, note=note)
        record = ApiKey(key_id, name, role.value, now, created_by, expires_at, note=note)
        with self.store.transaction() as con:
            con.execute(
                f"INSERT INTO api_keys ({', '.join(_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
                [key_id, name, role.value, hash_secret(secret), now, created_by, expires_at, note],
            )
        return IssuedKey(record, f"{KEY_PREFIX}{key_id}.{secret}")

    def revoke(self, key_id: str, *, by: str | None = None) -> ApiKey:
        """Mark a stored key revoked (its row stays for the audit trail); refuses keys of the security file."""
        if key_id in self.static:
            raise ForbiddenError(f"key {key_id!r} is declared in the security file: remove it there")
        now = self.clock()
        with self.store.transaction() as con:
            row = con.execute("SELECT revoked_at FROM api_keys WHERE id = ?", [key_id]).fetchone()
            if row is None:
                raise NotFoundError(f"API key {key_id!r} does not exist")
            if row[0] is None:
                con.execute("UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ?", [now, by, key_id])
        with self._lock:
            self._cache.pop(key_id, None)
        return self.get(key_id)

    # -- read ---------------------------------------------------------------------------------------
    def get(self, key_id: str) -> ApiKey:
        """One key's record; raises NotFoundError."""
        if key_id in self.static:
            return self.static[key_id].record()
        found = self._load(key_id)
        if found is None:
            raise NotFoundError(f"API key {key_id!r} does not exist")
        return found[0]

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        """Every key (configured first, then stored by creation time)."""
        cur = self.store.read()
        try:
            rows = cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM api_keys ORDER BY created_at, id").fetchall()
        finally:
            cur.close()
        stored = [_record(r)[0] for r in rows]
        keys = [k.record() for k in self.static.values()] + stored
        return [k for k in keys if include_revoked or k.revoked_at is None]

    def _load(self, key_id: str) -> tuple[ApiKey, str] | None:
        cur = self.store.read()
        try:
            row = cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM api_keys WHERE id = ?", [key_id]).fetchone()
        finally:
            cur.close()
        return _record(row) if row else None

    # -- verify -------------------------------------------------------------------------------------
    def verify(self, text: str) -> Principal:
        """The principal of a presented key; raises :class:`AuthenticationError` (malformed, unknown, wrong
        secret, revoked or expired)."""
        key_id, secret = parse_key(text)
        now = self.clock()
        digest = hashlib.sha256(secret.encode()).digest()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached and now - cached.at < self.cache_ttl and hmac.compare_digest(cached.digest, digest):
            record = cached.record
        else:
            record = self._check(key_id, secret, digest, now)
        state = record.state(now)
        if state != "active":
            raise AuthenticationError(f"API key {key_id} is {state}", scheme="ApiKey")
        if record.source == "store":
            self._touch(key_id, now)
        return Principal(id=f"key:{key_id}", role=Role(record.role), name=record.name, via="api_key")

    def _check(self, key_id: str, secret: str, digest: bytes, now: datetime) -> ApiKey:
        static = self.static.get(key_id)
        found = (static.record(), static.hash) if static else self._load(key_id)
        if found is None:
            check_secret(secret, _dummy_hash())
            raise AuthenticationError("the API key is not valid", scheme="ApiKey")
        record, hashed = found
        if not check_secret(secret, hashed):
            raise AuthenticationError("the API key is not valid", scheme="ApiKey")
        with self._lock:
            self._cache[key_id] = _Cached(digest, record, hashed, now)
        return record

    def _touch(self, key_id: str, now: datetime) -> None:
        """Record ``last_used_at`` at most every ``touch_every_s`` (best effort: never fails a request)."""
        with self._lock:
            last = self._touched.get(key_id)
            if last is not None and now - last < self.touch_every:
                return
            self._touched[key_id] = now
        cur = self.store.read()
        try:
            cur.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [now, key_id])
        except duckdb.Error as exc:  # a concurrent revoke wins; the next use records it
            log.debug("last_used_at of key %s not recorded: %s", key_id, exc)
        finally:
            cur.close()


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidInputError(f"unknown role {role!r} (one of {', '.join(r.value for r in Role)})",
                                field="role") from None


def _record(row: tuple) -> tuple[ApiKey, str]:
    v = dict(zip(_COLUMNS, row, strict=True))
    hashed = v.pop("secret_hash")
    return ApiKey(**v), hashed
