"""One module per screen; each reads the app's :class:`~castui.tui.state.LiveState`."""
