"""The security file (TOML, ``CIM_SECURITY_FILE``): static keys, JWT issuer, CORS, limits, audit retention.

Everything has a safe default, so a deployment without the file serves the public role only, with no
CORS, default limits and a 365-day audit log. A file with unknown keys, a bad role, an audit retention
under 180 days or an unusable JWT setup is refused at startup (:class:`SecurityConfigError`). Keep the
file out of git: it may hold the HS256 secret (better: ``CIM_JWT_SECRET`` or ``hs256_secret_env``).

Example::

    [auth]
    anonymous = true                        # requests without credentials act as anonymous_role
    anonymous_role = "public"               # the default; another role only on a closed intranet

    [jwt]
    issuer = "https://sso.jinan.example/realms/cim"
    audience = "cim-service"
    rs256_public_key_file = "/etc/cim/sso-public.pem"
    role_claim = "realm_access.roles"
    role_map = { "cim-planners" = "planner", "cim-admins" = "admin" }

    [[keys]]                                # hash: python -c "from cim.security.keys import hash_secret; ..."
    id = "province-sync"
    name = "provincial platform pull"
    role = "platform"
    hash = "scrypt$16384$8$1$...$..."
    expires = 2026-12-31T00:00:00

    [cors]
    origins = ["https://cim.jinan.example"]

    [limits]
    requests_per_minute = 600               # per key / token
    anonymous_requests_per_minute = 120     # per client address
    tile_requests_per_minute = 12000        # tiles, imagery, terrain, viewer scripts (per client address)
    max_body_bytes = 1_048_576
    roles = { admin = 1200 }

    [audit]
    retention_days = 365                    # at least 180 (Cybersecurity Law art. 21)
"""

from __future__ import annotations

import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from cim.errors import InvalidInputError
from cim.security.audit import MIN_RETENTION_DAYS
from cim.security.keys import ID_PATTERN, StaticKey
from cim.security.policy import Role
from cim.security.tokens import JWTConfig, TokenVerifier

ENV_FILE = "CIM_SECURITY_FILE"
ENV_JWT_SECRET = "CIM_JWT_SECRET"


class SecurityConfigError(InvalidInputError):
    """The security file (or a security setting) cannot be used: the service refuses to start."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthSection(_Section):
    anonymous: bool = Field(True, description="Serve requests without credentials (as ``anonymous_role``)")
    anonymous_role: Role = Field(Role.PUBLIC, description="Role of requests without credentials; anything but "
                                 "public only for a closed intranet (e.g. a planning-bureau kiosk or the demo)")
    open_paths: tuple[str, ...] = Field(
        ("/viewer", "/cesium/", "/api/health", "/favicon.ico"),
        description="Path prefixes served without credentials even when anonymous = false")

    @field_validator("anonymous_role")
    @classmethod
    def _not_admin(cls, v: Role) -> Role:
        if v is Role.ADMIN:
            raise ValueError("anonymous callers can never be admins")
        return v


class JWTSection(_Section):
    issuer: str
    audience: str
    hs256_secret: SecretStr | None = None
    hs256_secret_env: str | None = Field(None, description="Environment variable holding the HS256 secret")
    rs256_public_key_file: Path | None = None
    role_claim: str = "role"
    role_map: dict[str, Role] = Field(default_factory=dict)
    leeway_s: float = Field(30.0, ge=0, le=300)
    name_claim: str = "name"


class KeySection(_Section):
    id: str
    name: str
    role: Role
    hash: str
    expires: datetime | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID_PATTERN.match(v):
            raise ValueError("key ids are 1-40 letters, digits or '-'")
        return v

    @field_validator("hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        if not v.startswith(("scrypt$", "pbkdf2_sha256$")):
            raise ValueError("hash must come from cim.security.keys.hash_secret (scrypt$...) — never the secret")
        return v


class CORSSection(_Section):
    origins: tuple[str, ...] = ()
    allow_credentials: bool = False
    methods: tuple[str, ...] = ("GET", "HEAD", "POST", "DELETE", "OPTIONS")
    headers: tuple[str, ...] = ("Authorization", "X-API-Key", "Content-Type", "If-None-Match")
    max_age: int = Field(600, ge=0)

    @model_validator(mode="after")
    def _no_wildcard_credentials(self) -> CORSSection:
        if self.allow_credentials and "*" in self.origins:
            raise ValueError("allow_credentials with origin '*' would let any site act as the user")
        return self


class LimitsSection(_Section):
    requests_per_minute: float = Field(600, ge=0, description="Per authenticated caller; 0 = unlimited")
    anonymous_requests_per_minute: float = Field(120, ge=0, description="Per client address")
    ip_requests_per_minute: float = Field(1200, ge=0, description="Per client address, before authentication")
    tile_requests_per_minute: float = Field(
        12000, ge=0, description="Per client address for tiles, imagery, terrain and viewer scripts (a 3D view "
        "fetches hundreds at once); these requests do not count against the limits above")
    burst: int | None = Field(None, ge=1)
    roles: dict[Role, float] = Field(default_factory=dict, description="Per-role requests a minute")
    max_body_bytes: int = Field(1024**2, gt=0)
    large_body_paths: tuple[str, ...] = Field(("/api/bim/submissions",),
                                              description="Path prefixes allowed settings.max_upload_bytes")
    trusted_proxies: tuple[str, ...] = Field((), description="Peers whose X-Forwarded-For is believed")


class AuditSection(_Section):
    enabled: bool = True
    retention_days: int = 365
    flush_records: int = Field(200, ge=1)
    flush_seconds: float = Field(1.0, gt=0, le=60)

    @field_validator("retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        if v < MIN_RETENTION_DAYS:
            raise ValueError(f"audit retention must be at least {MIN_RETENTION_DAYS} days "
                             "(Cybersecurity Law art. 21: network logs kept ≥ 6 months)")
        return v


class SecurityConfig(_Section):
    """The parsed security file."""

    auth: AuthSection = AuthSection()
    jwt: JWTSection | None = None
    keys: tuple[KeySection, ...] = ()
    cors: CORSSection = CORSSection()
    limits: LimitsSection = LimitsSection()
    audit: AuditSection = AuditSection()
    source: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique_keys(self) -> SecurityConfig:
        ids = [k.id for k in self.keys]
        if len(ids) != len(set(ids)):
            raise ValueError("two [[keys]] share an id")
        return self

    def static_keys(self) -> list[StaticKey]:
        """The ``[[keys]]`` as :class:`~cim.security.keys.StaticKey` s."""
        return [StaticKey(k.id, k.name, k.role, k.hash, k.expires) for k in self.keys]

    def jwt_config(self, env_secret: str | None = None) -> JWTConfig | None:
        """The JWT settings with the secret and public key resolved; None when no ``[jwt]`` section."""
        j = self.jwt
        if j is None:
            return None
        secret = j.hs256_secret.get_secret_value() if j.hs256_secret else None
        if secret is None and j.hs256_secret_env:
            secret = os.environ.get(j.hs256_secret_env)
        secret = secret or env_secret
        pem = None
        if j.rs256_public_key_file:
            path = j.rs256_public_key_file
            if not path.is_absolute() and self.source is not None:
                path = self.source.parent / path
            try:
                pem = path.read_text(encoding="ascii")
            except OSError as exc:
                raise SecurityConfigError(f"cannot read the RS256 public key: {exc}", file=str(path)) from None
        return JWTConfig(issuer=j.issuer, audience=j.audience, hs256_secret=secret, rs256_public_key=pem,
                         role_claim=j.role_claim, role_map={k: v.value for k, v in j.role_map.items()},
                         leeway_s=j.leeway_s, name_claim=j.name_claim)

    def token_verifier(self, env_secret: str | None = None) -> TokenVerifier | None:
        """A verifier for ``[jwt]`` (None without it); raises SecurityConfigError when it cannot be built."""
        cfg = self.jwt_config(env_secret)
        if cfg is None:
            return None
        try:
            return TokenVerifier(cfg)
        except ValueError as exc:
            raise SecurityConfigError(f"[jwt]: {exc}", file=str(self.source) if self.source else None) from None


def parse_security_config(data: dict[str, Any], source: Path | None = None) -> SecurityConfig:
    """A :class:`SecurityConfig` from parsed TOML; raises SecurityConfigError naming every problem."""
    try:
        cfg = SecurityConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise SecurityConfigError(f"invalid security settings: {problems}",
                                  file=str(source) if source else None) from None
    return cfg


def load_security_config(settings: Any = None, path: Path | str | None = None) -> SecurityConfig:
    """The security file named by ``path``, ``settings.security_file`` or ``CIM_SECURITY_FILE`` (defaults
    when none), validated; the JWT verifier is built once so a bad key fails here, at startup."""
    raw = path or getattr(settings, "security_file", None) or os.environ.get(ENV_FILE)
    if not raw:
        return SecurityConfig()
    file = Path(raw)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SecurityConfigError(f"cannot read the security file: {exc.strerror}", file=str(file)) from None
    except tomllib.TOMLDecodeError as exc:
        raise SecurityConfigError(f"the security file is not valid TOML: {exc}", file=str(file)) from None
    cfg = parse_security_config(data, file)
    cfg.token_verifier(jwt_secret(settings))
    return cfg


def jwt_secret(settings: Any = None) -> str | None:
    """The HS256 secret from ``settings.jwt_secret`` or ``CIM_JWT_SECRET`` (None when unset)."""
    value = getattr(settings, "jwt_secret", None)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value or os.environ.get(ENV_JWT_SECRET) or None
