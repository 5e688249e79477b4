"""QBus v1: the serial bus to counter displays, keypads and rating pads (see PROTOCOL.md)."""
