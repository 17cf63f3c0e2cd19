"""``python -m phoenix_stream`` is the ``phoenix-stream`` console script."""

from phoenix_stream.cli import main

main()
