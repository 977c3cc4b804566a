"""The symbols of string leaves: UTF-8 bytes plus an end-of-string token (appendix B.1).

Part of the codec: it turns `str` and `bytes` values into these symbols and back,
and the StringLiteral module sizes its embedding and softmax from them. Byte-level,
so that any Unicode string and any `bytes` value round-trips with a fixed vocabulary.
"""
EOS = 256  # end of string, after the 256 byte values
VOCAB = 257
