"""Optional integrations with the media servers castui keeps a library playable for."""
