"""API tokens: who may read the trail, in which role, until when.

A token is shown once, when it is created; the token file keeps only its SHA-256, so a copy of the
file lets no one in. Roles are fixed (`ROLES`): what each may do is `PERMISSIONS`, the one place the
role matrix lives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROLES = ("auditor", "on-call", "admin")
PERMISSIONS: dict[str, frozenset[str]] = {
    # read: lists, timelines, reports as JSON; export: CSV/Parquet downloads; verify: the hash chain;
    # payloads: dead letters' raw bytes (may hold clear PII); access_log: who asked what.
    "auditor": frozenset({"read", "export", "verify"}),
    "on-call": frozenset({"read"}),
    "admin": frozenset({"read", "export", "verify", "payloads", "access_log"}),
}
TOKEN_PREFIX = "ca_"


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


@dataclass(frozen=True)
class TokenRecord:
    name: str
    role: str
    sha256: str
    created_at: str
    expires_at: str | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and datetime.fromisoformat(self.expires_at) <= now


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The token file (JSON, mode 0600). Reloaded when it changes, so `tokens create` and `tokens
    revoke` take effect on a running API without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._loaded_mtime: float | None = None
        self._records: list[TokenRecord] = []

    def records(self) -> list[TokenRecord]:
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                self._records, self._loaded_mtime = [], None
                return []
            if mtime != self._loaded_mtime:
                try:
                    raw = json.loads(self.path.read_text(encoding="utf-8"))
                    self._records = [TokenRecord(**entry) for entry in raw["tokens"]]
                except (ValueError, KeyError, TypeError) as exc:
                    raise TokenError(f"{self.path}: not a token file ({exc})") from None
                self._loaded_mtime = mtime
            return list(self._records)

    def authenticate(self, token: str, now: datetime | None = None) -> Principal:
        """The principal a presented token stands for; TokenError says why it is refused."""
        now = now or datetime.now(UTC)
        presented = digest(token)
        for record in self.records():
            if hmac.compare_digest(record.sha256, presented):
                if record.expired(now):
                    raise TokenError(f"token {record.name!r} expired at {record.expires_at}")
                return Principal(record.name, record.role)
        raise TokenError("unknown token")

    def create(self, name: str, role: str, valid_for: timedelta | None = None) -> str:
        """A new token (returned once, never stored in clear); replaces a token of the same name."""
        if role not in ROLES:
            raise TokenError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise TokenError("a token name is 1-64 letters, digits, '-', '_' or '.'")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        record = TokenRecord(name, role, digest(token), now.isoformat(timespec="seconds"),
                             (now + valid_for).isoformat(timespec="seconds") if valid_for else None)
        kept = [r for r in self.records() if r.name != name and not r.expired(now)]
        self._write([*kept, record])
        return token

    def revoke(self, name: str) -> bool:
        records = self.records()
        kept = [r for r in records if r.name != name]
        if len(kept) == len(records):
            return False
        self._write(kept)
        return True

    def _write(self, records: list[TokenRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"tokens": [asdict(r) for r in records]}, out, indent=2)
        os.replace(temporary, self.path)
        with self._lock:
            self._loaded_mtime = None
