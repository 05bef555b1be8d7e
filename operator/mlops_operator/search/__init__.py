"""Pure sweep algorithms behind one interface: suggest(history, n) -> list[params]."""
