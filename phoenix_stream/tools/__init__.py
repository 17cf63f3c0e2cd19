"""Tools: demo, simulator, worker processes and the benchmark."""
