"""ASGI scope extensions the gateway's WebSocket protocol offers its application.

Named here because both sides need the name: the protocol (listeners_project/ws_protocol.py, loaded by uvicorn before
Django is set up, so it cannot import the consumers) and the consumers (realtime/consumers.py).
"""

# A callable ``send_text_now(data: bytes) -> bool``: frames and writes one text message now, or returns False when the
# transport is paused (the caller then queues it). Servers without it (daphne, stock uvicorn) send through ASGI.
SEND_TEXT_NOW = "gateway.websocket.send_text_now"
