"""Generated stubs of synth/v1/synthesizer.proto (python -m server.gen_proto); do not edit."""
