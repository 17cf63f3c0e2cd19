"""Message schemas, decoding and validation of requests, and encoding of outputs."""
