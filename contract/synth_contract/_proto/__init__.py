"""Generated stubs of synth/v1/synthesizer.proto (python -m synth_contract.gen_proto); do not edit."""
