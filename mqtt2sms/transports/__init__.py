"""Ways out. Each transport has one ``send(text) -> Receipt`` (see ``base``)."""
