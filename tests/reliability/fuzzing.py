"""What the fuzz tests share: hypothesis settings scaled by ``CIM_FUZZ_EXAMPLES``, scratch files, byte mutations
and the one property every parser must have (a result, or a CIMError with a message)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from cim.errors import CIMError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SCALE = int(os.environ.get("CIM_FUZZ_EXAMPLES", "0") or 0)
FUZZ = settings(deadline=None, derandomize=not SCALE, suppress_health_check=list(HealthCheck), database=None)


def examples(n: int) -> settings:
    """``n`` examples in the suite, ``CIM_FUZZ_EXAMPLES`` in a campaign."""
    return settings(FUZZ, max_examples=SCALE or n)


def scratch(name: str, data: bytes) -> Iterator[Path]:
    """``data`` written to a file called ``name`` in a fresh temporary folder (yielded once)."""
    with tempfile.TemporaryDirectory(prefix="cim-fuzz-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        yield path


@st.composite
def mutated(draw: st.DrawFn, data: bytes, tokens: tuple[bytes, ...] = (), *, span: int = 200,
            junk: int = 40) -> bytes:
    """``data`` with a few random edits: truncation, deleted/duplicated runs, inserted junk or tokens, bit flips."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("truncate", "delete", "dup", "insert", "flip", "token")))
        pos = draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "truncate":
            del out[pos:]
        elif op == "delete":
            del out[pos : pos + draw(st.integers(1, span))]
        elif op == "dup":
            out[pos:pos] = out[pos : pos + draw(st.integers(1, span + span // 2))]
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=junk))
        elif op == "flip" and out:
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "token" and tokens:
            out[pos:pos] = draw(st.sampled_from(tokens))
    return bytes(out)


def expect_clean(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call``'s result, or None after a CIMError that says something; any other exception fails the test."""
    try:
        return call(*args, **kwargs)
    except CIMError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        return None
