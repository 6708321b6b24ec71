"""The readiness report: how much of a library plays directly on each built-in Cast profile.

Why a separate, pure module: the numbers come from what castui already knows (the catalog's
probes and the finished jobs' results), so the report never re-probes a file and the same
computation serves ``castui report`` and any front end. Every rule here is a plain function
of its inputs, table-tested against a library whose answer is known.

Cost of fixing, per profile:

- **encode time**: transcodes at the speed castui's own history shows for the file's
  resolution class (media seconds per wall second, from finished transcode jobs whose source
  is in the catalog); with no history for a class, a calibration encode's speed when there is
  one (:class:`Calibration`, castui_core/calibrate.py: the encoder the node will use), else
  :data:`DEFAULT_SPEED` (a documented guess). Each speed names its source and encoder, so the
  reader knows how much to trust the estimate. Remuxes copy at :data:`REMUX_BYTES_PER_S`.
- **space after**: from history's mean output/source size ratio per action when there is
  one; otherwise a remux keeps the size and a transcode writes
  ``duration × (half the profile's max video bitrate + its audio bitrate)``, never more than
  the source.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from castui_core.decide import Action, decide
from castui_core.media import MediaInfo, ProbeFailure
from castui_core.profiles import Profile, builtin_profiles
from castui_core.store.models import CatalogEntry, Job, JobAction, JobState

#: Resolution classes, by the frame's short side (portrait video counts like landscape).
RESOLUTION_CLASSES = ("sd", "720p", "1080p", "2160p")

#: Transcode speed (media seconds per wall second) used when history has none for a class:
#: roughly libx264/x265 "medium" on a few desktop cores. Shown as ``default`` in the report.
DEFAULT_SPEED: Mapping[str, float] = {"sd": 8.0, "720p": 4.0, "1080p": 2.0, "2160p": 0.5}

#: A remux copies streams: bounded by the disk, not the encoder.
REMUX_BYTES_PER_S = 150_000_000

_GROUPS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^video bitrate "), "video bitrate above the profile's limit"),
    (re.compile(r" is larger than "), "resolution above the profile's limit"),
    (re.compile(r"fps"), "frame rate above the profile's limit"),
    (re.compile(r"^no [A-Z/]+ audio track"), "no playable audio track"),
    (re.compile(r"^bitmap subtitles"), "bitmap subtitles"),
    (re.compile(r"^container "), "container is not MP4"),
    (re.compile(r"^\d+-bit "), "bit depth above the profile's limit"),
    (re.compile(r"^HDR "), "HDR on an SDR profile"),
    (re.compile(r"^interlaced"), "interlaced"),
    (re.compile(r"^anamorphic"), "anamorphic pixels"),
    (re.compile(r"extra video stream"), "extra video streams"),
)


def reason_group(reason: str) -> str:
    """The reason with its file-specific numbers folded away, so a table has a few rows
    ("video bitrate above the profile's limit") instead of one per bitrate."""
    for pattern, label in _GROUPS:
        if pattern.search(reason):
            return label
    return reason


def resolution_class(width: int, height: int) -> str:
    short = min(width, height)
    if short <= 576:
        return "sd"
    if short <= 720:
        return "720p"
    if short <= 1080:
        return "1080p"
    return "2160p"


@dataclass(frozen=True, slots=True)
class Tally:
    files: int = 0
    seconds: float = 0.0
    bytes: int = 0

    def add(self, seconds: float, size: int) -> Tally:
        return Tally(self.files + 1, self.seconds + seconds, self.bytes + size)

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    @property
    def gb(self) -> float:
        return self.bytes / 1e9


@dataclass(frozen=True, slots=True)
class ReasonCount:
    action: str
    reason: str
    tally: Tally


@dataclass(frozen=True, slots=True)
class Speed:
    """Transcode speed for one resolution class: ``x_realtime`` media s per wall s.

    ``source`` says where it came from in words: ``history (N jobs, ENCODER)``,
    ``calibration (ENCODER, 2 s testsrc2)``, ``default`` or ``default (calibration with
    ENCODER failed: REASON)``; ``encoder`` is the encoder the speed is for (None for the
    default model, which measured nothing).
    """

    resolution: str
    x_realtime: float
    source: str
    encoder: str | None = None

    @property
    def kind(self) -> str:
        """``history``, ``calibration`` or ``default``."""
        return self.source.split(" ", 1)[0]


@dataclass(frozen=True, slots=True)
class Calibration:
    """Speeds measured by calibration encodes with ``encoder`` (castui_core/calibrate.py).

    ``failure`` is why the last calibration with this encoder failed (an NVENC that will not
    open a session, say): the report then uses the default model and says why, rather than
    hiding a broken encoder behind a guess.
    """

    encoder: str
    speeds: Mapping[str, float]
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class ProfileReport:
    profile: str
    description: str
    direct: Tally
    remux: Tally
    transcode: Tally
    reject: Tally
    reasons: tuple[ReasonCount, ...]
    encode_seconds: float
    bytes_after: int

    @property
    def direct_share(self) -> float:
        """Share of the probed files that play directly (0..1)."""
        total = self.direct.files + self.remux.files + self.transcode.files + self.reject.files
        return self.direct.files / total if total else 0.0


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    library: str | None
    total: Tally
    unprobed: int
    profiles: tuple[ProfileReport, ...]
    speeds: tuple[Speed, ...]
    size_ratios: Mapping[str, float]
    #: Resolution classes the probed files have (what a calibration must measure).
    classes: tuple[str, ...] = ()

    def uncalibrated(self) -> list[str]:
        """Classes the library has whose speed is not from history: what to calibrate."""
        return [
            s.resolution
            for s in self.speeds
            if s.kind != "history" and s.resolution in self.classes
        ]


def _parse(entry: CatalogEntry) -> MediaInfo | ProbeFailure | None:
    if entry.probe is None:
        return None
    data = dict(entry.probe)
    if "failure" in data:
        return ProbeFailure(entry.path, entry.size, str(data["failure"]))
    return MediaInfo.from_json(data)


def history_speeds(
    history: Iterable[Job],
    durations: Mapping[str, tuple[float, str]],
    calibration: Calibration | None = None,
) -> tuple[Speed, ...]:
    """Speed per resolution class from finished transcodes whose source the catalog knows.

    ``durations`` maps a source path to (media seconds, resolution class). Speed is total
    media time over total wall time of the class's jobs; the encoder named is the one most
    of them used. A class with no history takes ``calibration``'s speed when it has one, else
    :data:`DEFAULT_SPEED` (with the calibration's failure in its source for a class the
    library has: the one a calibration would have measured).
    """
    media: dict[str, float] = defaultdict(float)
    wall: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    encoders: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for job in history:
        r = job.result
        known = durations.get(job.path)
        if (
            job.state is not JobState.DONE
            or job.action is not JobAction.TRANSCODE
            or known is None
            or not r.duration_s
            or r.duration_s <= 0
        ):
            continue
        seconds, cls = known
        media[cls] += seconds
        wall[cls] += r.duration_s
        count[cls] += 1
        encoders[cls][r.encoder or "unknown"] += 1
    present = {cls for _, cls in durations.values()}  # a failure concerns only these
    speeds = []
    for cls in RESOLUTION_CLASSES:
        if count[cls] and media[cls] > 0:
            enc = max(encoders[cls].items(), key=lambda kv: kv[1])[0]
            source = f"history ({count[cls]} jobs, {enc})"
            speeds.append(Speed(cls, media[cls] / wall[cls], source, enc))
        elif calibration is not None and cls in calibration.speeds:
            enc = calibration.encoder
            source = f"calibration ({enc}, 2 s testsrc2)"
            speeds.append(Speed(cls, calibration.speeds[cls], source, enc))
        elif calibration is not None and calibration.failure and cls in present:
            why = f"default (calibration with {calibration.encoder} failed: {calibration.failure})"
            speeds.append(Speed(cls, DEFAULT_SPEED[cls], why))
        else:
            speeds.append(Speed(cls, DEFAULT_SPEED[cls], "default"))
    return tuple(speeds)


def history_size_ratios(history: Iterable[Job]) -> dict[str, float]:
    """Mean output/source size per action over finished jobs that recorded both sizes."""
    out: dict[str, int] = defaultdict(int)
    src: dict[str, int] = defaultdict(int)
    for job in history:
        r = job.result
        if job.state is JobState.DONE and r.source_size and r.output_size is not None:
            out[job.action.value] += r.output_size
            src[job.action.value] += r.source_size
    return {action: out[action] / src[action] for action in sorted(src) if src[action]}


def build_report(
    entries: Sequence[CatalogEntry],
    history: Sequence[Job] = (),
    *,
    profiles: Mapping[str, Profile] | None = None,
    library: str | None = None,
    calibration: Calibration | None = None,
) -> ReadinessReport:
    """The readiness of ``entries`` for every profile in ``profiles`` (the built-ins)."""
    profiles = builtin_profiles() if profiles is None else profiles
    parsed: list[tuple[CatalogEntry, MediaInfo | ProbeFailure]] = []
    durations: dict[str, tuple[float, str]] = {}
    total = Tally()
    unprobed = 0
    for entry in entries:
        info = _parse(entry)
        if info is None:
            unprobed += 1
            continue
        seconds = 0.0
        if isinstance(info, MediaInfo):
            seconds = info.duration_s or 0.0
            if info.video:
                v = info.video[0]
                durations[entry.path] = (seconds, resolution_class(v.width, v.height))
        parsed.append((entry, info))
        total = total.add(seconds, entry.size)
    speeds = history_speeds(history, durations, calibration)
    speed_by_class = {s.resolution: s.x_realtime for s in speeds}
    ratios = history_size_ratios(history)
    reports = []
    for name, profile in profiles.items():
        tallies = {a: Tally() for a in Action}
        reasons: dict[tuple[str, str], Tally] = defaultdict(Tally)
        encode_s = 0.0
        after = 0
        for entry, info in parsed:
            seconds = (info.duration_s or 0.0) if isinstance(info, MediaInfo) else 0.0
            decision = decide(info, profile)
            action = decision.action
            tallies[action] = tallies[action].add(seconds, entry.size)
            if action is not Action.SKIP:
                for group in dict.fromkeys(reason_group(r) for r in decision.reasons):
                    reasons[(action.value, group)] = reasons[(action.value, group)].add(
                        seconds, entry.size
                    )
            if action is Action.SKIP:
                after += entry.size
            elif action is Action.REMUX:
                encode_s += entry.size / REMUX_BYTES_PER_S
                after += round(entry.size * ratios.get("remux", 1.0))
            elif action is Action.TRANSCODE:
                cls = durations.get(entry.path, (0.0, "1080p"))[1]
                encode_s += seconds / speed_by_class[cls]
                if "transcode" in ratios:
                    after += round(entry.size * ratios["transcode"])
                else:
                    kbps = profile.video.max_bitrate_kbps / 2 + profile.audio.bitrate_kbps
                    after += min(entry.size, round(seconds * kbps * 1000 / 8))
            else:  # reject: left as it is
                after += entry.size
        ordered = sorted(
            (ReasonCount(a, r, t) for (a, r), t in reasons.items()),
            key=lambda rc: (-rc.tally.files, rc.action, rc.reason),
        )
        reports.append(
            ProfileReport(
                profile=name,
                description=profile.description,
                direct=tallies[Action.SKIP],
                remux=tallies[Action.REMUX],
                transcode=tallies[Action.TRANSCODE],
                reject=tallies[Action.REJECT],
                reasons=tuple(ordered),
                encode_seconds=encode_s,
                bytes_after=after,
            )
        )
    classes = tuple(c for c in RESOLUTION_CLASSES if c in {cls for _, cls in durations.values()})
    return ReadinessReport(library, total, unprobed, tuple(reports), speeds, ratios, classes)


#: Version of :func:`as_json`'s shape; bumped when a key changes meaning or goes away.
JSON_VERSION = 1


def as_json(report: ReadinessReport) -> dict[str, Any]:
    """The report as plain JSON (stable keys, see README "Readiness report")."""

    def tally(t: Tally) -> dict[str, Any]:
        return {"files": t.files, "hours": round(t.hours, 3), "bytes": t.bytes}

    return {
        "version": JSON_VERSION,
        "library": report.library,
        "total": tally(report.total),
        "unprobed": report.unprobed,
        "speeds": [{**asdict(s), "kind": s.kind} for s in report.speeds],
        "size_ratios": dict(report.size_ratios),
        "profiles": [
            {
                "profile": p.profile,
                "description": p.description,
                "direct": tally(p.direct),
                "remux": tally(p.remux),
                "transcode": tally(p.transcode),
                "reject": tally(p.reject),
                "reasons": [
                    {"action": r.action, "reason": r.reason, **tally(r.tally)} for r in p.reasons
                ],
                "encode_seconds": round(p.encode_seconds, 1),
                "bytes_after": p.bytes_after,
            }
            for p in report.profiles
        ],
    }
