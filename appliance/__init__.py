"""appliance: a self-hosted cloud for your own machines."""
__version__ = "0.1.0"
