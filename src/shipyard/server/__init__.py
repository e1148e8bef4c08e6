"""The online half: the transport-neutral service, its transports, and process wiring."""
