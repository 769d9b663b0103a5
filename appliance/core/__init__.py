"""The core daemon: owns state and side effects, serves gRPC."""
