"""``phoenix-stream bench``: throughput, latency and HTTP figures against baselines.

Everything runs on the embedded services in one run, with the same requests, so every
figure comes with the baseline it is compared to (``runner.run_bench``). The helper
processes live here too: a hand-written aiokafka loop (``baseline``), a stock Faust
pass-through app (``floor_app``) and a bare aiohttp server (``http_baseline``).
Nothing is imported here: the helper processes start with ``python -m`` and stay lean.
"""
