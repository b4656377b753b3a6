"""The engine: requests in, tokens out, one scheduler step at a time."""
