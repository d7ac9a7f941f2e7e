"""zvh-gateway: the secure exchange layer for the Dutch Zorg- en Veiligheidshuizen."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
