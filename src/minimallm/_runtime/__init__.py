"""One backend inside one trio run: the actors' wiring and the request path."""
