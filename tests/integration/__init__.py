"""Integration tests: the built images, run as in production, exercised over HTTPS."""
