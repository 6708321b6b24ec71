"""Jellyfin: notify it of every change, confirm it will direct-play the result, and pause
encodes while people watch. Off unless configured."""
