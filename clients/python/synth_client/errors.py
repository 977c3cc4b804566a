"""Deprecated alias (0.2): import errors from `synth_client` or `synth_contract.errors`.

The client raises the contract's classes, the very ones the server raises, so
`except synth_client.NotFound` and `except synth.errors.NotFound` catch the same.
"""
from synth_contract.errors import *  # noqa: F401,F403
from synth_contract.errors import error_from_wire as make_error  # noqa: F401 - the 0.1 name
