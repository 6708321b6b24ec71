"""``castui scan --jellyfin``: Jellyfin's own reasons beside castui's, and where they disagree.

The core (:mod:`castui_core.integrations.jellyfin.sources`) asks PlaybackInfo for every
scanned file Jellyfin knows, with the Cast DeviceProfile of the generation the file's profile
targets; this module only maps scan results to those questions and the answers to columns.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from castui_core.errors import ConfigError
from castui_core.integrations.jellyfin.connect import client_for
from castui_core.integrations.jellyfin.deviceprofile import device_profile_for
from castui_core.integrations.jellyfin.paths import to_jellyfin
from castui_core.integrations.jellyfin.sources import (
    SourceQuestion,
    SourceVerdict,
    disagreement,
    source_verdicts,
)
from castui_core.scan import ScannedFile
from castui_core.settings import Settings


@dataclass(frozen=True)
class JellyfinColumn:
    """What the scan shows for one file: Jellyfin's verdict and any disagreement."""

    verdict: SourceVerdict
    disagreement: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "known": self.verdict.item_id is not None,
            "direct_play": self.verdict.direct_play if self.verdict.item_id else None,
            "reasons": list(self.verdict.reasons),
            "error": self.verdict.error or None,
            "disagreement": self.disagreement,
        }


def _profile_name(settings: Settings, args: argparse.Namespace, library: str) -> str:
    for lib in settings.libraries:
        if lib.name == library:
            return lib.profile
    if args.profile:
        return str(args.profile)
    return settings.libraries[0].profile if settings.libraries else "chromecast-1080p"


async def jellyfin_columns(
    settings: Settings, args: argparse.Namespace, files: list[ScannedFile]
) -> dict[str, JellyfinColumn]:
    """Ask Jellyfin about every scanned file; keyed by castui path."""
    jf = settings.jellyfin
    if jf is None:
        raise ConfigError(
            "--jellyfin needs a jellyfin: section (url, api_key_file, user) in the settings"
        )
    if not jf.user:
        raise ConfigError("--jellyfin asks PlaybackInfo as a Jellyfin user: set jellyfin.user")
    questions = []
    for f in files:
        name = _profile_name(settings, args, f.library)
        generation, device_profile = device_profile_for(name, settings.profiles[name])
        questions.append(SourceQuestion(f.path, generation, device_profile))
    async with client_for(jf) as client:
        verdicts = await source_verdicts(
            client,
            questions,
            to_jellyfin=lambda p: to_jellyfin(p, jf.path_map),
            user=jf.user,
        )
    return {
        f.path: JellyfinColumn(verdicts[f.path], disagreement(f.action, verdicts[f.path]))
        for f in files
        if f.path in verdicts
    }
