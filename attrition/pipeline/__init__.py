"""The run: fullprocess.py's orchestration, new-data detection."""
