"""The HTTP gateway: REST + WebSocket in front of the core's gRPC services."""
