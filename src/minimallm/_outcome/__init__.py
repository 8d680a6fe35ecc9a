"""What an attempt ended as (:mod:`.attempts`), what a server said went wrong
(:mod:`.explain`), and the API key kept out of what a server sent (:mod:`.redact`)."""
