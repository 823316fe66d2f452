"""OAuth2 bearer tokens: JWTs from the city's identity provider, verified with PyJWT.

HS256 (a shared secret) and RS256 (the provider's public key, PEM; needs ``cryptography``) are accepted,
each only with its own key, so a token cannot pick a weaker algorithm (``none``, or HS256 signed with
the public key). ``exp``, ``iss``, ``aud`` and ``sub`` are required and checked (``nbf``/``iat`` when
present), with a small clock leeway. The role comes from ``role_claim`` — a name such as ``role`` or a
dotted path such as ``realm_access.roles`` — holding one name or a list, mapped through ``role_map``
(identity-provider group → service role); of several, the most privileged wins (:data:`ROLE_PRECEDENCE`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from cim.security.policy import AuthenticationError, Principal, Role

#: Of several roles in one token, the first in this order is taken.
ROLE_PRECEDENCE: tuple[Role, ...] = (Role.ADMIN, Role.REVIEWER, Role.PLANNER, Role.PLATFORM, Role.PUBLIC)


@dataclass(frozen=True)
class JWTConfig:
    """How tokens are checked. At least one of ``hs256_secret`` / ``rs256_public_key`` (PEM text)."""

    issuer: str
    audience: str
    hs256_secret: str | None = None
    rs256_public_key: str | None = None
    role_claim: str = "role"
    role_map: Mapping[str, str] = field(default_factory=dict)
    leeway_s: float = 30.0
    name_claim: str = "name"


class TokenVerifier:
    """Verify bearer JWTs into :class:`~cim.security.policy.Principal` s."""

    def __init__(self, config: JWTConfig) -> None:
        self.config = config
        self._keys: dict[str, Any] = {}
        if config.hs256_secret:
            if len(config.hs256_secret.encode()) < 32:
                raise ValueError("the HS256 secret must be at least 32 bytes (RFC 7518 §3.2)")
            self._keys["HS256"] = config.hs256_secret
        if config.rs256_public_key:
            self._keys["RS256"] = _rsa_key(config.rs256_public_key)
        if not self._keys:
            raise ValueError("JWT verification needs an HS256 secret or an RS256 public key")

    def verify(self, token: str) -> Principal:
        """The caller a token names; raises :class:`AuthenticationError` saying what is wrong with it."""
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.DecodeError as exc:
            raise AuthenticationError(f"the bearer token is not a JWT: {exc}") from None
        key = self._keys.get(alg) if isinstance(alg, str) else None
        if key is None:
            raise AuthenticationError(f"token algorithm {alg!r} is not accepted (accepted: {', '.join(self._keys)})")
        cfg = self.config
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=cfg.audience, issuer=cfg.issuer, leeway=cfg.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("the token is not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError(f"the token is not for this service (audience must be {cfg.audience!r})") \
                from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError(f"the token is not from the configured issuer {cfg.issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("the token signature does not verify") from None
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"the token is not valid: {exc}") from None
        role = self.role_of(claims)
        sub = str(claims["sub"])
        name = claims.get(cfg.name_claim) or claims.get("preferred_username") or sub
        return Principal(id=f"jwt:{sub}", role=role, name=str(name), via="jwt")

    def role_of(self, claims: Mapping[str, Any]) -> Role:
        """The service role of a token's claims (most privileged of those it names)."""
        value: Any = claims
        for part in self.config.role_claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        names = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else []
        roles = set()
        for name in names:
            mapped = self.config.role_map.get(str(name), str(name))
            if mapped in Role._value2member_map_:
                roles.add(Role(mapped))
        for role in ROLE_PRECEDENCE:
            if role in roles:
                return role
        raise AuthenticationError(f"the token names no role of this service in its {self.config.role_claim!r} claim")


def _rsa_key(pem: str) -> Any:
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError:
        raise ValueError("RS256 tokens need the 'cryptography' package (pip install 'PyJWT[crypto]')") from None
    return load_pem_public_key(pem.encode())
