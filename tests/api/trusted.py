"""Security settings for API tests that exercise features, not access control: anonymous callers act as the
given role (planner by default; reviewer where a test records review decisions), with no rate limits.
Access control itself is tested in ``test_security_*.py``."""

from __future__ import annotations

from cim.security.config import SecurityConfig, parse_security_config


def trusted(role: str = "planner") -> SecurityConfig:
    """Anonymous = ``role``, rate limits off (the suite fires many requests from one address)."""
    return parse_security_config({
        "auth": {"anonymous_role": role},
        "limits": {"requests_per_minute": 0, "anonymous_requests_per_minute": 0, "ip_requests_per_minute": 0},
    })
