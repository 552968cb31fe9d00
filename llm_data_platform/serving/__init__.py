"""Serving: the HTTP retrieval API for chatbot backends and grounded answers."""
