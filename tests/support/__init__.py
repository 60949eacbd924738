"""What the suites share, written once (the integration, adversarial and Swarm suites import it):

- ``waiting``: ``wait_until`` a real condition with a deadline, ``Fatal`` to stop waiting;
- ``http``: sessions trusting the run's CA, raw requests over TLS, the JSON error shape, log lines;
- ``clients``: slow uploads and keep-alive load threads, ``percentile``;
- ``openload``: open-loop load on a schedule, every attempt and failure class recorded;
- ``domain``: the sample domain (its paths, valid bodies; sign up, authenticate, create a
  resource): the one file outside services/api to change when the resource changes (the bench
  uses it too);
- ``containers``: images, hardened containers, stacks (``Launcher``, ``Stack``);
- ``swarm``: a Swarm of Docker-in-Docker nodes with the stack deployed (``Swarm``, ``Endpoint``);
- ``monitoring``: the stack with its monitoring profile (``MONITORING=1 make up``), Prometheus's
  HTTP API, and ``alert_receiver``, the webhook Alertmanager notifies, run in a container;
- ``figures``: measurements a suite prints at the end of its run;
- ``fixtures``: the pytest fixtures and hooks the suites' conftest.py import.
"""
