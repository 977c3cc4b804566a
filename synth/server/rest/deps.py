"""Dependency aliases (`Annotated[..., Depends()]`) shared by the routers."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from synth.service import SynthService


def get_service(request: Request) -> SynthService:
    """The service the app was built with (`create_app(service)`); no module globals."""
    return request.app.state.service


ServiceDep = Annotated[SynthService, Depends(get_service)]
