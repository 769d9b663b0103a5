"""Generated from proto/appliance/v1 by appliance.protogen; do not edit."""
