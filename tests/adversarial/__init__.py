"""Adversarial tests: third-party attack tools, hostile clients and faults against the images."""
