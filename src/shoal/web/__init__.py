"""The web dashboard: ``server`` adds login, the built pages and the browser guard to
the control plane's API; ``auth`` holds sessions, tickets and the same-origin rules;
the front end's sources are in ``ui/`` (built with npm, never committed)."""
