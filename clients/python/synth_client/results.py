"""Deprecated alias (0.2): import results from `synth_client` or `synth_contract.results`."""
from synth_contract.results import *  # noqa: F401,F403
