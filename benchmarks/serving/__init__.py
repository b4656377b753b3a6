"""Serving benchmark: the OpenAI server under load vs the offline engine."""
