"""API tokens: who may call what, for both transports (docs/service.md, "Access control and TLS").

Tokens come from `--token-file` (one per line; `admin:<token>` marks an admin token;
blank lines and `#` comments are skipped) and `SYNTH_TOKEN` (one token, same syntax).
With no token configured the server is open, as before. With tokens:

- creating and cancelling jobs, and deleting models, always need a valid token;
- everything else under `/v1` (and the gRPC Synthesizer service) needs one unless
  `--public-read` is given; health, docs and the web page itself stay open;
- a job may be cancelled only by the token that created it, or by an admin token
  (the service checks that, from the `Caller` passed to it).

Only SHA-256 digests of the tokens are kept in memory, compared with
`hmac.compare_digest`; a token is never logged or echoed. A `Caller.id` is a short
digest, stable for a token and safe to log. Framework-free: the REST dependency
(`synth/server/rest/deps.py`) and the gRPC interceptor (`synth/server/grpc/auth.py`)
both call `AccessPolicy.authenticate`.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from synth.errors import ConfigError, Unauthenticated, Violation
from synth.service.types import Caller

ADMIN_PREFIX = "admin:"
MIN_TOKEN_CHARS = 16


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def parse_tokens(text: str, source: str) -> tuple[list[tuple[str, bool]], list[Violation]]:
    """(token, admin) pairs from token-file text; problems name `source:line`, never the token."""
    tokens, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        admin = line.startswith(ADMIN_PREFIX)
        token = line[len(ADMIN_PREFIX):].strip() if admin else line
        where = f"{source}:{number}"
        if any(c.isspace() for c in token):
            problems.append(Violation(where, "a token cannot contain spaces"))
        elif len(token) < MIN_TOKEN_CHARS:
            problems.append(Violation(where, f"a token needs at least {MIN_TOKEN_CHARS} characters "
                                             "(e.g. `openssl rand -hex 32`)"))
        else:
            tokens.append((token, admin))
    return tokens, problems


@dataclass(frozen=True)
class AccessPolicy:
    """The configured tokens (as digests) and whether reads are public."""

    digests: tuple[tuple[bytes, Caller], ...] = ()
    public_read: bool = False

    @classmethod
    def from_tokens(cls, tokens: Iterable[tuple[str, bool]], public_read: bool = False) -> AccessPolicy:
        by_digest: dict[bytes, Caller] = {}
        for token, admin in tokens:
            d = _digest(token)
            previous = by_digest.get(d)
            by_digest[d] = Caller(d.hex()[:16], admin=admin or (previous is not None and previous.admin))
        return cls(tuple(by_digest.items()), public_read)

    @classmethod
    def from_sources(cls, token_file: Path | None = None, token: str | None = None,
                     public_read: bool = False) -> AccessPolicy:
        """Tokens from a file and/or one token string; ConfigError names every problem."""
        tokens, problems = [], []
        if token_file is not None:
            try:
                text = Path(token_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError("cannot read the token file",
                                  [Violation("token_file", f"{type(e).__name__}: {getattr(e, 'strerror', '')}"
                                             .rstrip(": "))]) from None
            found, bad = parse_tokens(text, "token_file")
            tokens += found
            problems += bad
            if not found and not bad:
                problems.append(Violation("token_file", "holds no token (one per line; admin:<token> for admins)"))
        if token is not None:
            found, bad = parse_tokens(token, "token")
            tokens += found
            problems += [Violation("token", v.message) for v in bad]
        if problems:
            raise ConfigError("invalid API tokens", problems)
        return cls.from_tokens(tokens, public_read)

    @property
    def enabled(self) -> bool:
        """Whether any token is configured (otherwise every call is allowed, anonymously)."""
        return bool(self.digests)

    def identify(self, token: str | None) -> Caller | None:
        """The caller for `token`, or None when it is missing or unknown (constant-time comparison)."""
        if not token:
            return None
        d, found = _digest(token), None
        for known, caller in self.digests:  # no early exit: every digest is compared
            if hmac.compare_digest(d, known):
                found = caller
        return found

    def authenticate(self, token: str | None, write: bool) -> Caller | None:
        """The caller for a request, or raise Unauthenticated. None: no tokens configured (open server),
        or an anonymous read under `public_read`; a write with tokens configured always returns a Caller."""
        if not self.enabled:
            return None
        caller = self.identify(token)
        if caller is not None:
            return caller
        if not write and self.public_read and not token:
            return None
        if not token:
            raise Unauthenticated("this server requires an API token: send `Authorization: Bearer <token>` "
                                  "(gRPC: `authorization` metadata)")
        raise Unauthenticated("the API token is not valid")


def bearer_token(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value (scheme case-insensitive), else None."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


__all__ = ["ADMIN_PREFIX", "AccessPolicy", "Caller", "bearer_token", "parse_tokens"]
