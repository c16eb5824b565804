"""Other serving frameworks serving the same model, for bench/predict_load.py to compare with."""
