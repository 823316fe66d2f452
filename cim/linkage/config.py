"""The linkage file (TOML, ``CIM_LINKAGE_FILE``): this platform, upstream platforms, inbound platforms, cities.

Example::

    [platform]
    id = "370100"                     # this platform (administrative division code works well)
    name = "济南市 CIM 平台"
    level = "city"                    # city | province | national

    [sync]                            # outbound delivery (cim.linkage.sync)
    timeout_s = 10
    backoff_base_s = 1
    backoff_max_s = 300
    changes_page = 500                # change entries per message
    indicators_every_s = 3600         # producer period of the in-service worker; 0 = only on demand
    poll_cities_every_s = 300         # provincial mode: city polls of the in-service worker
    in_service = true                 # run the worker inside the web service (it holds the store)

    [[upstream]]                      # platforms we push to
    id = "370000"
    name = "山东省 CIM 平台"
    url = "https://cim.shandong.example/linkage/v1"     # messages go to <url>/messages
    secret_env = "CIM_LINKAGE_SECRET_370000"            # or secret = "..." (keep the file out of git)
    streams = ["services", "indicators", "changes"]

    [[inbound]]                       # platforms whose signed notices we accept
    id = "370000"
    secret_env = "CIM_LINKAGE_SECRET_370000"

    [[city]]                          # provincial mode: city services we pull from
    id = "370100"
    name = "济南"
    url = "https://cim.jinan.example"
    api_key_env = "CIM_LINKAGE_KEY_370100"                # a platform-role key of that city

A file with unknown keys, duplicate ids or a secret that cannot be resolved is refused at load
(:class:`LinkageConfigError`); without a file the platform is ``local`` with nothing configured.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

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

ENV_FILE = "CIM_LINKAGE_FILE"
STREAMS = ("services", "indicators", "changes")
_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class LinkageConfigError(InvalidInputError):
    """The linkage file cannot be used."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Secret(_Section):
    secret: SecretStr | None = None
    secret_env: str | None = None

    def secret_bytes(self) -> bytes:
        """The shared HMAC secret (from the file or the named environment variable)."""
        value = self.secret.get_secret_value() if self.secret else None
        if value is None and self.secret_env:
            value = os.environ.get(self.secret_env)
        if not value:
            where = f"environment variable {self.secret_env}" if self.secret_env else "secret"
            raise LinkageConfigError(f"no shared secret for platform {getattr(self, 'id', '?')!r}: set {where}")
        return value.encode()

    @model_validator(mode="after")
    def _one_secret(self) -> _Secret:
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret or secret_env")
        return self


class PlatformSection(_Section):
    id: str = Field("local", pattern=_ID)
    name: str = ""
    level: Literal["city", "province", "national", "local"] = "local"
    base_url: str | None = Field(None, description="Where upstream platforms reach this service")


class SyncSection(_Section):
    timeout_s: float = Field(10.0, gt=0, le=300)
    backoff_base_s: float = Field(1.0, gt=0, le=3600)
    backoff_max_s: float = Field(300.0, gt=0, le=86400)
    changes_page: int = Field(500, ge=1, le=10000)
    indicators_every_s: float = Field(3600.0, ge=0)
    poll_s: float = Field(1.0, gt=0, le=60, description="Idle wait of the sender loop")
    poll_cities_every_s: float = Field(300.0, ge=0, description="Provincial mode: period of city polls; 0 = manual")
    in_service: bool = Field(False, description="Run producer, sender and city polls inside the web service")
    skew_s: float = Field(300.0, ge=5, le=3600, description="Accepted clock difference of signed requests")


class UpstreamSection(_Secret):
    id: str = Field(pattern=_ID)
    name: str = ""
    url: str
    streams: tuple[str, ...] = STREAMS

    @field_validator("streams")
    @classmethod
    def _streams(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(v) - set(STREAMS)
        if unknown:
            raise ValueError(f"unknown streams {sorted(unknown)} (known: {', '.join(STREAMS)})")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("url must be http(s)://")
        return v.rstrip("/")


class InboundSection(_Secret):
    id: str = Field(pattern=_ID)
    name: str = ""


class CitySection(_Section):
    id: str = Field(pattern=_ID)
    name: str = ""
    url: str
    api_key: SecretStr | None = None
    api_key_env: str | None = None

    def key(self) -> str | None:
        """The platform-role API key presented to the city (None: pull anonymously)."""
        if self.api_key:
            return self.api_key.get_secret_value()
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("url must be http(s)://")
        return v.rstrip("/")


class LinkageConfig(_Section):
    """The parsed linkage file."""

    platform: PlatformSection = PlatformSection()
    sync: SyncSection = SyncSection()
    upstream: tuple[UpstreamSection, ...] = ()
    inbound: tuple[InboundSection, ...] = ()
    city: tuple[CitySection, ...] = ()
    source: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique(self) -> LinkageConfig:
        for name in ("upstream", "inbound", "city"):
            ids = [s.id for s in getattr(self, name)]
            if len(ids) != len(set(ids)):
                raise ValueError(f"two [[{name}]] share an id")
        return self

    def get_upstream(self, platform: str) -> UpstreamSection:
        """The upstream platform ``platform``; raises LinkageConfigError naming the known ones."""
        for u in self.upstream:
            if u.id == platform:
                return u
        raise LinkageConfigError(f"unknown upstream platform {platform!r} "
                                 f"(configured: {', '.join(u.id for u in self.upstream) or 'none'})")

    def inbound_secret(self, platform: str) -> bytes | None:
        """The shared secret of inbound platform ``platform`` (None when it is not configured)."""
        for p in self.inbound:
            if p.id == platform:
                return p.secret_bytes()
        return None


def parse_linkage_config(data: dict[str, Any], source: Path | None = None) -> LinkageConfig:
    """A :class:`LinkageConfig` from parsed TOML; raises LinkageConfigError naming every problem."""
    try:
        return LinkageConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise LinkageConfigError(f"invalid linkage settings: {problems}",
                                 file=str(source) if source else None) from None


def load_linkage_config(settings: Any = None, path: Path | str | None = None) -> LinkageConfig:
    """The linkage file named by ``path``, ``settings.linkage_file`` or ``CIM_LINKAGE_FILE`` (defaults when none)."""
    raw = path or getattr(settings, "linkage_file", None) or os.environ.get(ENV_FILE)
    if not raw:
        return LinkageConfig()
    file = Path(raw)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LinkageConfigError(f"cannot read the linkage file: {exc.strerror}", file=str(file)) from None
    except tomllib.TOMLDecodeError as exc:
        raise LinkageConfigError(f"the linkage file is not valid TOML: {exc}", file=str(file)) from None
    return parse_linkage_config(data, file)
