"""Small widgets: data comes down from the screen, user intent goes up as messages."""
