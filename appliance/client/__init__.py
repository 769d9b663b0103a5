"""The user's client: the `appliance` command speaking the public REST API of any appliance
(docs/cli.md). Needs only the base package's dependencies (click, certifi, websockets, rich);
never imports the server's modules (core, http, ssh): the host commands are handed to
appliance/cli.py only when asked for."""
