"""shoal: a service mesh in Python that shows the traffic between your services."""

__version__ = "0.1.0"
