"""What the suites share, written once (the integration and adversarial suites import it; so
will any later one):

- ``waiting``: ``wait_until`` a real condition with a deadline, ``Fatal`` to stop waiting;
- ``http``: sessions trusting the run's CA, raw requests over TLS, the JSON error shape, log lines;
- ``clients``: slow uploads and keep-alive load threads, ``percentile``;
- ``domain``: the sample domain (its paths, valid bodies; sign up, authenticate, create a
  resource): the one file outside services/api to change when the resource changes (the bench
  uses it too);
- ``containers``: images, hardened containers, stacks (``Launcher``, ``Stack``);
- ``fixtures``: the pytest fixtures and hooks both suites' conftest.py import.
"""
