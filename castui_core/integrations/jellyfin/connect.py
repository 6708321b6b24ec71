"""The one place a Jellyfin client is built from the settings (key read at that moment)."""

from __future__ import annotations

from castui_core.integrations.jellyfin.client import JellyfinClient
from castui_core.settings import JellyfinSettings


def client_for(settings: JellyfinSettings) -> JellyfinClient:
    """A client for the configured server; raises ConfigError (what to do) when there is no
    key. The key is read now, so a rotated key file is picked up by the next client."""
    return JellyfinClient(
        settings.url,
        settings.api_key_value(),
        timeout_s=settings.timeout_s,
        verify_tls=settings.verify_tls,
    )
