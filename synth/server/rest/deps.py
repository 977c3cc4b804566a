"""Dependency aliases (`Annotated[..., Depends()]`) shared by the routers."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from synth.server.admission import Admission
from synth.server.auth import AccessPolicy
from synth.service import Caller, SynthService

OPEN = AccessPolicy()  # no tokens: every call allowed


async def get_service(request: Request) -> SynthService:
    """The service the app was built with (`create_app(service)`); no module globals."""
    return request.app.state.service


ServiceDep = Annotated[SynthService, Depends(get_service)]


async def get_admission(request: Request) -> Admission:
    """Stream bounds, deadlines and draining of this app (`create_app(admission=...)`)."""
    return request.app.state.admission


AdmissionDep = Annotated[Admission, Depends(get_admission)]

# auto_error=False: a missing token is decided by the policy (public reads), and reported as our
# Unauthenticated (401 with `WWW-Authenticate: Bearer`), not FastAPI's 403.
bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="API token, when the server has tokens (`synth serve --token-file`)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _policy(request: Request) -> AccessPolicy:
    return getattr(request.app.state, "access", None) or OPEN


async def read_access(request: Request, credentials: Credentials) -> Caller | None:
    """Reads need a valid token when the server has tokens, unless it runs with `--public-read`."""
    return _policy(request).authenticate(credentials.credentials if credentials else None, write=False)


async def write_access(request: Request, credentials: Credentials) -> Caller | None:
    """Creating and cancelling jobs always need a valid token when the server has tokens."""
    return _policy(request).authenticate(credentials.credentials if credentials else None, write=True)


ReadCaller = Annotated[Caller | None, Depends(read_access)]
WriteCaller = Annotated[Caller | None, Depends(write_access)]
