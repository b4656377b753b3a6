"""Engine core: the KV cache managers (lab 1) and the schedulers (lab 3)."""
