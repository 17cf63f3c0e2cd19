"""Streaming: batch handlers, the emitter, the failure policy, Faust transport patches."""
