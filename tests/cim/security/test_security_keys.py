"""API keys (hashed at rest, shown once, revocable, expiring), JWT bearer tokens (issuer, audience, expiry,
algorithm pinning, role claims) and the security file (refused when unsafe)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import jwt
import pytest

from cim.errors import InvalidInputError, NotFoundError
from cim.security.config import SecurityConfigError, load_security_config, parse_security_config
from cim.security.keys import KeyStore, StaticKey, check_secret, hash_secret, parse_key
from cim.security.policy import AuthenticationError, ForbiddenError, Role
from cim.security.tokens import JWTConfig, TokenVerifier
from cim.store import DuckDBStore

SECRET = "an-hs256-secret-that-is-long-enough-0123456789"


# -- keys ---------------------------------------------------------------------------------------------------
def test_an_issued_key_is_stored_only_as_a_salted_hash_and_verifies(store: DuckDBStore) -> None:
    keys = KeyStore(store)
    issued = keys.issue("planning bureau GIS", "planner", created_by="key:boot")
    key_id, secret = parse_key(issued.key)
    assert key_id == issued.record.id and len(secret) >= 40
    row = store.read().execute("SELECT * FROM api_keys").fetchall()
    assert len(row) == 1 and secret not in repr(row) and issued.key not in repr(row)
    stored_hash = store.read().execute("SELECT secret_hash FROM api_keys").fetchone()[0]
    assert stored_hash.startswith("scrypt$16384$8$1$") and check_secret(secret, stored_hash)
    principal = keys.verify(issued.key)
    assert (principal.role, principal.via, principal.id) == (Role.PLANNER, "api_key", f"key:{key_id}")
    assert keys.get(key_id).last_used_at is not None
    # two keys never share a salt: the same secret hashes differently
    assert hash_secret("x" * 20) != hash_secret("x" * 20)


@pytest.mark.parametrize("text", ["", "cim_", "abc.def", "cim_ab.short", "cim_../x.0123456789abcdef0123", "Bearer x"])
def test_malformed_keys_are_refused_with_a_clear_message(store: DuckDBStore, text: str) -> None:
    with pytest.raises(AuthenticationError, match="malformed"):
        KeyStore(store).verify(text)


def test_wrong_secrets_and_unknown_ids_are_refused_alike(store: DuckDBStore) -> None:
    keys = KeyStore(store)
    issued = keys.issue("a", "reviewer")
    key_id, secret = parse_key(issued.key)
    with pytest.raises(AuthenticationError) as wrong:
        keys.verify(f"cim_{key_id}.{secret[:-1]}X")
    with pytest.raises(AuthenticationError) as unknown:
        keys.verify(f"cim_000000000000.{secret}")
    assert str(wrong.value) == str(unknown.value) == "the API key is not valid"


def test_revoked_keys_stop_working_at_once_even_when_cached(store: DuckDBStore) -> None:
    keys = KeyStore(store, cache_ttl_s=3600)
    issued = keys.issue("temp", "platform")
    assert keys.verify(issued.key).role is Role.PLATFORM  # now cached
    record = keys.revoke(issued.record.id, by="key:admin")
    assert record.revoked_at is not None and record.revoked_by == "key:admin"
    with pytest.raises(AuthenticationError, match="revoked"):
        keys.verify(issued.key)
    assert keys.get(issued.record.id).state(datetime.now()) == "revoked"  # the row stays for the audit trail
    with pytest.raises(NotFoundError):
        keys.revoke("nosuchkey")


def test_keys_expire(store: DuckDBStore) -> None:
    now = [datetime(2025, 6, 1)]
    keys = KeyStore(store, clock=lambda: now[0])
    issued = keys.issue("contractor", "reviewer", expires_at=datetime(2025, 6, 30))
    assert keys.verify(issued.key).role is Role.REVIEWER
    now[0] = datetime(2025, 7, 1)
    with pytest.raises(AuthenticationError, match="expired"):
        keys.verify(issued.key)
    with pytest.raises(InvalidInputError, match="past"):
        keys.issue("late", "planner", expires_at=datetime(2025, 1, 1))
    with pytest.raises(InvalidInputError, match="unknown role"):
        keys.issue("x", "superuser")


def test_static_keys_from_the_security_file_verify_and_cannot_be_revoked_through_the_api(store: DuckDBStore) -> None:
    keys = KeyStore(store, [StaticKey("province-sync", "provincial pull", Role.PLATFORM,
                                      hash_secret("s" * 32))])
    assert keys.verify("cim_province-sync." + "s" * 32).role is Role.PLATFORM
    with pytest.raises(AuthenticationError):
        keys.verify("cim_province-sync." + "t" * 32)
    with pytest.raises(ForbiddenError, match="security file"):
        keys.revoke("province-sync")
    listed = {k.id: k.source for k in keys.list()}
    assert listed == {"province-sync": "config"}


def test_pbkdf2_hashes_are_accepted_and_garbage_hashes_never_match() -> None:
    import base64
    import hashlib

    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"pw-pw-pw-pw-pw-pw", salt, 1000)
    encoded = f"pbkdf2_sha256$1000${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert check_secret("pw-pw-pw-pw-pw-pw", encoded) and not check_secret("pw", encoded)
    assert not check_secret("x", "plain-text") and not check_secret("x", "scrypt$1$2")


# -- tokens -------------------------------------------------------------------------------------------------
def _token(claims: dict, key: str = SECRET, alg: str = "HS256", **headers: str) -> str:
    base = {"iss": "https://sso.example", "aud": "cim", "sub": "u1", "exp": int(time.time()) + 300}
    return jwt.encode({**base, **claims}, key, algorithm=alg, headers=headers or None)


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(JWTConfig(issuer="https://sso.example", audience="cim", hs256_secret=SECRET,
                                   role_map={"cim-planners": "planner"}))


def test_a_valid_token_names_the_caller_and_role(verifier: TokenVerifier) -> None:
    p = verifier.verify(_token({"role": "reviewer", "name": "李工"}))
    assert (p.id, p.role, p.via, p.name) == ("jwt:u1", Role.REVIEWER, "jwt", "李工")
    # a list of roles: mapped through role_map, the most privileged wins
    assert verifier.verify(_token({"role": ["public", "cim-planners"]})).role is Role.PLANNER


@pytest.mark.parametrize(("claims", "message"), [
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"aud": "another-service"}, "audience"),
    ({"iss": "https://evil.example"}, "issuer"),
    ({"role": "superuser"}, "no role"),
    ({}, "no role"),
    ({"nbf": int(time.time()) + 3600, "role": "admin"}, "not valid yet"),
])
def test_tokens_with_bad_claims_are_refused_saying_why(verifier: TokenVerifier, claims: dict, message: str) -> None:
    with pytest.raises(AuthenticationError, match=message):
        verifier.verify(_token(claims))


def test_tokens_must_carry_exp_and_sub(verifier: TokenVerifier) -> None:
    no_exp = jwt.encode({"iss": "https://sso.example", "aud": "cim", "sub": "u", "role": "admin"}, SECRET)
    with pytest.raises(AuthenticationError, match="'exp'"):
        verifier.verify(no_exp)
    no_sub = jwt.encode({"iss": "https://sso.example", "aud": "cim", "exp": int(time.time()) + 60,
                         "role": "admin"}, SECRET)
    with pytest.raises(AuthenticationError, match="'sub'"):
        verifier.verify(no_sub)


def test_forged_and_downgraded_tokens_are_refused(verifier: TokenVerifier) -> None:
    with pytest.raises(AuthenticationError, match="signature"):
        verifier.verify(_token({"role": "admin"}, key="another-secret-of-sufficient-length-000000"))
    unsigned = jwt.encode({"iss": "https://sso.example", "aud": "cim", "sub": "u", "exp": int(time.time()) + 60,
                           "role": "admin"}, None, algorithm="none")
    with pytest.raises(AuthenticationError, match="'none' is not accepted"):
        verifier.verify(unsigned)
    with pytest.raises(AuthenticationError, match="not a JWT"):
        verifier.verify("not-a-token")


def test_a_short_hs256_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TokenVerifier(JWTConfig(issuer="i", audience="a", hs256_secret="short"))


def test_rs256_tokens_verify_with_the_public_key_only() -> None:
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    v = TokenVerifier(JWTConfig(issuer="https://sso.example", audience="cim", rs256_public_key=pem,
                                role_claim="realm_access.roles"))
    token = _token({"realm_access": {"roles": ["admin"]}}, key=private, alg="RS256")  # type: ignore[arg-type]
    assert v.verify(token).role is Role.ADMIN
    with pytest.raises(AuthenticationError, match="'HS256' is not accepted"):  # HS256 signed with the public key
        v.verify(_hmac_token({"iss": "https://sso.example", "aud": "cim", "sub": "u", "exp": int(time.time()) + 60,
                              "realm_access": {"roles": ["admin"]}}, pem.encode()))


def _hmac_token(claims: dict, key: bytes) -> str:
    """An HS256 token signed with any bytes (PyJWT itself refuses a PEM key as an HMAC secret)."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    return signing + "." + b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())


# -- the security file --------------------------------------------------------------------------------------
def test_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIM_SECURITY_FILE", raising=False)
    cfg = load_security_config(None)
    assert cfg.audit.retention_days >= 180 and cfg.auth.anonymous and cfg.cors.origins == () and cfg.jwt is None


def test_a_full_security_file_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIM_TEST_JWT", SECRET)
    file = tmp_path / "security.toml"
    file.write_text(f"""
[jwt]
issuer = "https://sso.example"
audience = "cim"
hs256_secret_env = "CIM_TEST_JWT"
role_map = {{ "cim-admins" = "admin" }}

[[keys]]
id = "ops"
name = "operations"
role = "admin"
hash = "{hash_secret('o' * 32)}"
expires = 2030-01-01T00:00:00

[cors]
origins = ["https://cim.jinan.example"]

[limits]
requests_per_minute = 60
roles = {{ admin = 1200 }}

[audit]
retention_days = 200
""", encoding="utf-8")
    monkeypatch.setenv("CIM_SECURITY_FILE", str(file))
    cfg = load_security_config(None)
    assert cfg.limits.roles[Role.ADMIN] == 1200 and cfg.static_keys()[0].expires_at == datetime(2030, 1, 1)
    verifier = cfg.token_verifier()
    assert verifier is not None and verifier.verify(_token({"role": "cim-admins"})).role is Role.ADMIN


@pytest.mark.parametrize(("data", "message"), [
    ({"audit": {"retention_days": 90}}, "at least 180 days"),
    ({"keys": [{"id": "k", "name": "n", "role": "admin", "hash": "plain-secret"}]}, "never the secret"),
    ({"keys": [{"id": "k", "name": "n", "role": "root", "hash": "scrypt$1"}]}, "keys.0.role"),
    ({"cors": {"origins": ["*"], "allow_credentials": True}}, "any site"),
    ({"limits": {"max_body_bytes": 0}}, "max_body_bytes"),
    ({"unknown_section": {}}, "unknown_section"),
])
def test_unsafe_security_files_are_refused_at_startup(data: dict, message: str) -> None:
    with pytest.raises(SecurityConfigError, match=message):
        parse_security_config(data)


def test_a_jwt_section_without_a_usable_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIM_JWT_SECRET", raising=False)
    file = tmp_path / "s.toml"
    file.write_text('[jwt]\nissuer = "i"\naudience = "a"\n', encoding="utf-8")
    with pytest.raises(SecurityConfigError, match="HS256 secret or an RS256"):
        load_security_config(None, file)
    file.write_text("[audit\n", encoding="utf-8")
    with pytest.raises(SecurityConfigError, match="not valid TOML"):
        load_security_config(None, file)


def test_expiry_is_checked_against_the_clock(store: DuckDBStore) -> None:
    now = datetime(2025, 1, 1)
    keys = KeyStore(store, [StaticKey("old", "old", Role.ADMIN, hash_secret("k" * 32), now - timedelta(days=1))],
                    clock=lambda: now)
    with pytest.raises(AuthenticationError, match="expired"):
        keys.verify("cim_old." + "k" * 32)
