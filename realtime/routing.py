"""WebSocket paths and their consumers, read by the ASGI application (listeners_project/asgi.py)."""
from .consumers import EventsConsumer

WEBSOCKET_CONSUMERS = {"/ws": EventsConsumer}
