"""Live chat: message rendering, the wire protocol, the service that stores and announces
messages, and each API worker's hub of websocket connections."""
