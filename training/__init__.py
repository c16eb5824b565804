"""Pure ML library: compute-graph engine and model training. Never imports `service`."""
