"""mqtt2sms: MQTT messages from a home become SMS texts."""

__version__ = "0.1.0"
