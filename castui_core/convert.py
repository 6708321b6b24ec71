"""One file, end to end: probe → decide → encode → validate → swap.

This is the pipeline behind ``castui convert`` (and, later, each engine worker). The order is
what keeps originals safe: the output is written to a hidden temp name in the destination
directory, validated completely (exit code, probe against the profile, duration, stream
accounting, truncation, faststart), and only then put in place; any failure removes the
partial output and leaves the source untouched, with the reason recorded. Every step of the
swap is journaled so a crash at any point is recovered at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from castui_core.bus import EventBus
from castui_core.decide import Action, Decision, copy_decision, decide
from castui_core.errors import CastuiError, ConfigError, OutputExistsError
from castui_core.events import (
    JobFinished,
    JobNote,
    JobOutput,
    JobProgress,
    JobStarted,
    OriginalChanged,
)
from castui_core.ffmpeg.command import (
    DEFAULT_NVDEC_CODECS,
    Backend,
    EncodePlan,
    build_command,
    build_sidecar_commands,
)
from castui_core.ffmpeg.nvenc import NvencStatus, choose_backend
from castui_core.ffmpeg.progress import Progress
from castui_core.ffmpeg.runner import FfmpegRun, RunResult
from castui_core.layout import LayoutChoice, LayoutName, choose, label_from_profile
from castui_core.media import MediaInfo, ProbeFailure
from castui_core.probe import ProbePool
from castui_core.profiles import DEFAULT_PROFILE, Profile
from castui_core.settings import DEFAULT_EXTENSIONS, LibrarySettings, Settings
from castui_core.store import OutputRecord, Store
from castui_core.store.originals import OriginalRecord
from castui_core.swap import (
    Journal,
    NameLimits,
    Placement,
    SourceIdentity,
    abort,
    begin,
    carry_sidecars,
    check_free_space,
    commit,
    estimate_output_size,
    output_dir_for,
    plan_placement,
)
from castui_core.tools import Tools
from castui_core.validate import validate_output

EncoderPreference = Literal["auto", "nvenc", "cpu"]
#: Lines of ffmpeg's stderr kept live for the job detail screen.
_LIVE_STDERR_LINES = 40
Status = Literal["done", "skipped", "rejected", "failed", "cancelled"]


@dataclass(frozen=True)
class ConvertOptions:
    """Per-job choices (from the library settings and the command line)."""

    profile: Profile
    encoder: EncoderPreference = "auto"
    library_root: Path | None = None
    output_dir: Path | None = None
    delete_source: bool = False
    min_free_bytes: int = 0
    stall_timeout_s: float = 120.0
    timeout_s: float | None = None
    #: The profile's name, recorded with each output castui writes.
    profile_name: str = DEFAULT_PROFILE
    #: The library's layout (``castui_core.layout``); None: beside the source or into
    #: ``output_dir`` as before layouts existed (a file outside every library).
    layout: LayoutName | None = None
    originals: Literal["archive", "delete"] = "archive"
    version_label: str = "Chromecast"
    version_fallback: Literal["replace", "skip"] = "replace"
    library_name: str | None = None


@dataclass(frozen=True)
class ConvertOutcome:
    """What happened to one file, in words and numbers (stored as the job result later)."""

    path: str
    status: Status
    action: Action
    reasons: tuple[str, ...]
    reason: str | None = None
    output_path: str | None = None
    bytes_before: int = 0
    bytes_after: int | None = None
    seconds: float = 0.0
    encoder: str | None = None
    command: tuple[str, ...] = ()
    exit_code: int | None = None
    stderr_tail: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: Why it failed, for the code: a ``FailureKind`` value, ``validation``, ``config`` or
    #: ``environment``; None when it did not fail.
    failure_kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped")

    def finished_event(self) -> JobFinished:
        """The ``JobFinished`` the dashboard and logs see for this outcome: built here once,
        since both ``castui convert`` and the engine (after its commit) publish it."""
        return JobFinished(
            path=self.path,
            status=self.status,
            action=self.action.value,
            reason=self.reason,
            output_path=self.output_path,
            bytes_before=self.bytes_before,
            bytes_after=self.bytes_after,
            seconds=self.seconds,
            encoder=self.encoder,
        )


def options_for(
    settings: Settings,
    library: LibrarySettings | None,
    *,
    profile: str | None = None,
    encoder: EncoderPreference | None = None,
) -> ConvertOptions:
    """Profile, placement and deletion policy for a file of ``library`` (None: no library)."""
    if profile is not None:
        if profile not in settings.profiles:
            known = ", ".join(sorted(settings.profiles))
            raise ConfigError(f"profile {profile!r} is not defined; known: {known}")
        name = profile
    elif library is not None:
        name = library.profile
    else:
        name = DEFAULT_PROFILE
    chosen = settings.profiles[name]
    op = settings.operational
    return ConvertOptions(
        profile=chosen,
        encoder=encoder or op.encoder,
        library_root=library.path if library is not None else None,
        output_dir=library.output_dir if library is not None else None,
        delete_source=library.delete_source if library is not None else False,
        min_free_bytes=int(op.min_free_gb * 1e9),
        stall_timeout_s=op.stall_timeout_s,
        timeout_s=op.job_timeout_s,
        profile_name=name,
        layout=library.layout if library is not None else None,
        originals=library.originals if library is not None else "archive",
        version_label=(
            (library.version_label or label_from_profile(name))
            if library is not None
            else "Chromecast"
        ),
        version_fallback=library.version_fallback if library is not None else "replace",
        library_name=library.name if library is not None else None,
    )


class Converter:
    """Runs the pipeline for one file at a time per call; several calls may run concurrently."""

    def __init__(
        self,
        *,
        tools: Tools,
        pool: ProbePool,
        journal: Journal,
        bus: EventBus | None = None,
        nvenc: NvencStatus | None = None,
        clock: Callable[[], float] = time.monotonic,
        store: Store | None = None,
        written_by: str = "convert",
    ) -> None:
        self.tools = tools
        #: Where every placed output is recorded (``outputs``), so castui knows its own work
        #: whichever command wrote it; ``written_by`` names the command in that record.
        self.store = store
        self.written_by = written_by
        self.pool = pool
        self.journal = journal
        self.bus = bus if bus is not None else EventBus()
        self.nvenc = nvenc
        #: Source codecs this GPU decodes (NVDEC); the engine narrows it from its start-up
        #: probe (``ffmpeg.nvenc.detect_nvdec``). A plan decodes on the GPU only for these.
        self.nvdec_codecs: frozenset[str] = DEFAULT_NVDEC_CODECS
        #: NVENC status per profile name (``ffmpeg.nvenc.detect_nvenc_for_profiles``), set by
        #: the engine at start; a profile not in it uses ``nvenc``.
        self.profile_nvenc: dict[str, NvencStatus] = {}
        self.clock = clock
        self._runs: dict[str, FfmpegRun] = {}
        #: The engine turns this off and publishes ``JobFinished`` itself, once the store has
        #: committed the job's new state (a subscriber must never see an uncommitted end).
        self.publish_finished = True
        self._cancelled: set[str] = set()

    # --- control (from the CLI's Ctrl-C handler, later the engine) ----------------------------

    async def cancel(self, path: str, reason: str = "cancelled") -> None:
        """Stop the encode of ``path`` (its partial output is removed, the source untouched)."""
        self._cancelled.add(path)
        run = self._runs.get(path)
        if run is not None:
            await run.cancel(reason)

    def pid_of(self, path: str) -> int | None:
        """Process id of the ffmpeg now working on ``path`` (None when none runs)."""
        run = self._runs.get(path)
        return None if run is None else run.pid

    def pause(self, path: str) -> None:
        run = self._runs.get(path)
        if run is not None:
            run.pause()

    def resume(self, path: str) -> None:
        run = self._runs.get(path)
        if run is not None:
            run.resume()

    # --- the pipeline ------------------------------------------------------------------------

    async def probe(self, path: Path) -> MediaInfo | ProbeFailure:
        async for result in self.pool.probe_many([str(path)]):
            return result
        raise AssertionError("probe_many yielded nothing for one path")

    async def convert(
        self,
        path: Path,
        options: ConvertOptions,
        *,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> ConvertOutcome:
        """Convert one file. ``before_commit`` runs right before the swap and may raise to
        stop it (the engine re-checks its lease there: a worker that lost its job must not
        touch the user's files)."""
        started = self.clock()
        source = str(path)
        # Read before the probe: the swap refuses an output made from a source that is not
        # this file any more (replaced while it was probed or encoded).
        identity = await asyncio.to_thread(_identity_of, path)
        info = await self.probe(path)
        decision = decide(info, options.profile)
        size = info.size
        if decision.action in (Action.SKIP, Action.REJECT):
            status: Status = "skipped" if decision.action is Action.SKIP else "rejected"
            outcome = ConvertOutcome(
                path=source,
                status=status,
                action=decision.action,
                reasons=decision.reasons,
                reason="; ".join(decision.reasons),
                bytes_before=size,
                seconds=self.clock() - started,
            )
            if self.publish_finished:
                self._finished(outcome)
            return outcome
        assert isinstance(info, MediaInfo)
        try:
            outcome = await self._encode(
                path, info, decision, options, started, before_commit, identity
            )
        except CastuiError as exc:
            kind = "disk_full" if _disk_full(exc) else getattr(exc, "failure_kind", "environment")
            outcome = ConvertOutcome(
                path=source,
                status="failed",
                action=decision.action,
                reasons=decision.reasons,
                reason=str(exc),
                bytes_before=size,
                seconds=self.clock() - started,
                failure_kind=kind,
            )
        finally:
            self._runs.pop(source, None)
            self._cancelled.discard(source)
        if self.publish_finished:
            self._finished(outcome)
        return outcome

    async def _encode(
        self,
        path: Path,
        info: MediaInfo,
        decision: Decision,
        options: ConvertOptions,
        started: float,
        before_commit: Callable[[], Awaitable[None]] | None,
        identity: SourceIdentity | None = None,
    ) -> ConvertOutcome:
        source = str(path)
        notes: list[str] = []
        marked = await self._restored_on_purpose(path, info, started, identity)
        if marked is not None:
            return marked
        layout = await asyncio.to_thread(_layout_for, path, options)
        if layout.note is not None:
            notes.append(layout.note)
        if layout.layout == "version":
            earlier = await self._earlier_layout_output(path, info, started)
            if earlier is not None:
                return earlier
        if layout.layout == "skip":
            return ConvertOutcome(
                path=source,
                status="skipped",
                action=Action.SKIP,
                reasons=(layout.note or "version layout not possible",),
                reason=layout.note,
                bytes_before=info.size,
                seconds=self.clock() - started,
            )
        # A profile the per-profile probe found NVENC cannot run (main10, HEVC B-frames...)
        # goes to the CPU under auto before its job even starts.
        status = self.profile_nvenc.get(options.profile_name, self.nvenc)
        backend, why = choose_backend(options.encoder, status)
        if decision.action is Action.TRANSCODE:
            notes.append(why)
        # Every name this job will create must fit the destination's filesystem: checked
        # now (shortened where it can be, NameTooLongError where not), not at the swap
        # after hours of encoding.
        where = output_dir_for(
            path, library_root=options.library_root, output_dir=layout.output_dir
        )
        place = functools.partial(
            plan_placement,
            path,
            library_root=options.library_root,
            output_dir=layout.output_dir,
            token=secrets.token_hex(4),
            limits=await asyncio.to_thread(NameLimits.of, where),
            archive_root=layout.archive_root,
            version_label=layout.version_label,
        )
        placement = place()
        if await asyncio.to_thread(_taken_by_another, placement):
            return await self._existing_copy(path, info, decision, options, placement, started)
        plan = self._plan(info, decision, options, placement, backend)
        if plan.sidecars:  # sidecar names are longer: fit them too (same token, same job)
            placement = place(sidecar_suffixes=[s.suffix for s in plan.sidecars])
            plan = self._plan(info, decision, options, placement, backend)
        needed = estimate_output_size(info, plan, options.profile)
        await asyncio.to_thread(
            check_free_space,
            placement.final.parent if placement.final.parent.exists() else path.parent,
            needed,
            min_free_bytes=options.min_free_bytes,
            archive=layout.archive_root,
        )
        await asyncio.to_thread(
            functools.partial(
                begin,
                self.journal,
                placement,
                delete_source=options.delete_source,
                expect=identity,
            )
        )
        sidecars: list[Path] = []
        committed = False
        try:
            result = await self._run(source, plan, info, decision, options)
            if (
                not result.ok
                and result.failure is not None
                and result.failure.gpu_decode_related
                and plan.hwaccel
                and source not in self._cancelled
            ):
                # NVDEC did not take this stream: decode on the CPU, keep the GPU encoder.
                note = (
                    f"GPU decoding failed ({result.failure.reason}); retried with CPU decoding "
                    f"on {plan.encoder}"
                )
                notes.append(note)
                self.bus.publish(JobNote(path=source, message=note))
                plan = self._plan(info, decision, options, placement, backend, gpu_decode=False)
                result = await self._run(source, plan, info, decision, options)
            if (
                not result.ok
                and result.failure is not None
                and (result.failure.nvenc_related or result.failure.gpu_decode_related)
                and backend == "nvenc"
                and options.encoder == "auto"
                and source not in self._cancelled
            ):
                note = f"NVENC failed ({result.failure.reason}); fell back to CPU for this file"
                notes.append(note)
                self.bus.publish(JobNote(path=source, message=note))
                plan = self._plan(info, decision, options, placement, "cpu")
                result = await self._run(source, plan, info, decision, options)
            if not result.ok:
                reason = (
                    result.failure.reason
                    if result.failure is not None
                    else f"ffmpeg exited with code {result.exit_code}"
                )
                kind = result.failure.kind.value if result.failure is not None else "unknown"
                return self._failed(
                    source, info, decision, plan, result, started, notes, reason, kind
                )
            sidecars = await self._extract_sidecars(info, plan, placement)
            report = await validate_output(
                placement.temp,
                source=info,
                profile=options.profile,
                plan=plan,
                ffmpeg=self.tools.ffmpeg,
                sidecar_paths=sidecars,
                # The encode's own limits and a cancel that reaches the integrity read too.
                timeout_s=options.timeout_s,
                stall_timeout_s=options.stall_timeout_s,
                on_run=functools.partial(self._track, source),
            )
            if source in self._cancelled:  # stopped during validation: no swap, no verdict
                reason = "stopped during validation"
                return self._failed(
                    source, info, decision, plan, result, started, notes, reason, "cancelled"
                )
            if not report.ok:
                reason = "output failed validation: " + "; ".join(report.problems)
                return self._failed(
                    source, info, decision, plan, result, started, notes, reason, "validation"
                )
            if before_commit is not None:
                await before_commit()
            swapping = asyncio.ensure_future(
                asyncio.to_thread(
                    functools.partial(
                        commit,
                        self.journal,
                        placement,
                        delete_source=options.delete_source,
                        sidecar_temps=sidecars,
                    )
                )
            )
            try:
                swap = await asyncio.shield(swapping)
            except asyncio.CancelledError:
                # The swap is short and journaled: once started it finishes (the thread
                # cannot be stopped anyway), and the cleanup below must not run beside it.
                await asyncio.wait({swapping})
                committed = not swapping.cancelled() and swapping.exception() is None
                raise
            committed = True
        finally:
            if not committed:
                # Synchronous on purpose: this also runs while a cancellation unwinds, where
                # an await could be interrupted and leave the partial output behind.
                self._discard(placement, sidecars)
        notes.extend(
            f"bitmap subtitles written to {placement.sidecar_final(t).name}" for t in sidecars
        )
        unrecorded = await self._record_output(swap.final, source, identity, options)
        if unrecorded is not None:
            notes.append(unrecorded)
        if swap.backup is not None and layout.archive_root is not None:
            notes.append(await self._record_archived(swap.backup, source, swap.final, options))
        if layout.layout in ("replace", "version"):
            carried = await asyncio.to_thread(
                functools.partial(carry_sidecars, path, swap.final, layout=layout.layout)
            )
            notes.extend(f"sidecar {p.name} now matches the output" for p in carried)
        notes.extend(plan.notes)
        return ConvertOutcome(
            path=source,
            status="done",
            action=decision.action,
            reasons=decision.reasons,
            reason=None,
            output_path=str(swap.final),
            bytes_before=info.size,
            bytes_after=swap.bytes_after,
            seconds=self.clock() - started,
            encoder=plan.encoder,
            command=plan.args,
            exit_code=result.exit_code,
            stderr_tail=result.stderr_tail,
            notes=tuple(notes),
        )

    async def _existing_copy(
        self,
        path: Path,
        info: MediaInfo,
        decision: Decision,
        options: ConvertOptions,
        placement: Placement,
        started: float,
    ) -> ConvertOutcome:
        """The output name is taken: skip the source when that file is its conversion.

        castui's own earlier output from this very source (per the ``outputs`` record, and
        neither file changed since) or any copy that plays directly and lasts as long as the
        source means the work is done. Anything else raises ``OutputExistsError`` (never
        retried) saying what to do: castui never overwrites a file it did not write.
        """
        final = placement.final
        reasons: tuple[str, ...] | None = None
        record = await self.store.get_output(str(final)) if self.store is not None else None
        if record is not None and record.source == str(path):
            now = await asyncio.to_thread(_identity_of, final)
            src = await asyncio.to_thread(_identity_of, path)
            # Both unchanged since: a newer source (or an edited output) is not "done".
            same_source = record.source_size is None or (
                src is not None and (src.size, src.mtime_ns) == record.source_state
            )
            if now is not None and record.matches(now.size, now.mtime_ns, now.ino) and same_source:
                reasons = (f"castui already converted it: {final.name}",)
        if reasons is None:
            copy = await self.probe(final)
            verdict = copy_decision(decision, info, copy, options.profile, final.name)
            if verdict.action is not Action.SKIP:
                raise OutputExistsError(f"{path.name}: {verdict.reasons[-1]}")
            reasons = verdict.reasons
        return ConvertOutcome(
            path=str(path),
            status="skipped",
            action=Action.SKIP,
            reasons=reasons,
            reason="; ".join(reasons),
            output_path=str(final),
            bytes_before=info.size,
            seconds=self.clock() - started,
        )

    async def _record_output(
        self,
        final: Path,
        source: str,
        identity: SourceIdentity | None,
        options: ConvertOptions,
    ) -> str | None:
        """Record the placed output in ``outputs``; a note when that failed (the file is in
        place either way: a database hiccup must not turn a finished job into a failure)."""
        if self.store is None:
            return None
        now = await asyncio.to_thread(_identity_of, final)
        if now is None:
            return None
        record = OutputRecord(
            path=str(final),
            source=source,
            size=now.size,
            mtime_ns=now.mtime_ns,
            inode=now.ino,
            source_size=identity.size if identity is not None else None,
            source_mtime_ns=identity.mtime_ns if identity is not None else None,
            profile=options.profile_name,
            written_by=self.written_by,
            written_at=time.time(),
        )
        try:
            await self.store.record_output(record)
        except CastuiError as exc:
            return f"the output is in place but could not be recorded: {exc}"
        return None

    async def _record_archived(
        self, archive: Path, source: str, final: Path, options: ConvertOptions
    ) -> str:
        """Record the archived original (``originals`` table) so list/restore/purge find it;
        the note says where it is (and when the record failed: the file is safe either way)."""
        note = f"original archived: {archive}"
        if self.store is None:
            return note
        st = await asyncio.to_thread(_identity_of, archive)
        if st is None:
            return note
        record = OriginalRecord(
            library=options.library_name or "",
            path=source,
            archive=str(archive),
            output=str(final),
            size=st.size,
            mtime_ns=st.mtime_ns,
            archived_at=time.time(),
        )
        try:
            await self.store.record_original(record)
        except CastuiError as exc:
            return f"{note} (not recorded: {exc}; castui originals list will not show it)"
        self.bus.publish(OriginalChanged("archived", source, str(archive), note))
        return note

    async def _earlier_layout_output(
        self, path: Path, info: MediaInfo, started: float
    ) -> ConvertOutcome | None:
        """A skip when castui already wrote ``<stem>.mp4`` beside this source before the
        library used the version layout (recorded, unchanged): the work is done, and
        ``castui layout migrate`` renames it as a version."""
        earlier = path.with_suffix(".mp4")
        if self.store is None or earlier == path:
            return None
        record = await self.store.get_output(str(earlier))
        now = await asyncio.to_thread(_identity_of, earlier)
        if record is None or record.source != str(path) or now is None:
            return None
        if not record.matches(now.size, now.mtime_ns, now.ino):
            return None
        reason = (
            f"castui already converted it: {earlier.name} (an earlier layout;"
            " `castui layout migrate` names it as a version)"
        )
        return ConvertOutcome(
            path=str(path),
            status="skipped",
            action=Action.SKIP,
            reasons=(reason,),
            reason=reason,
            output_path=str(earlier),
            bytes_before=info.size,
            seconds=self.clock() - started,
        )

    async def _restored_on_purpose(
        self, path: Path, info: MediaInfo, started: float, identity: SourceIdentity | None
    ) -> ConvertOutcome | None:
        """A skip when the person restored this very file from the archive (unchanged since):
        converting it again would undo their restore. ``castui retry`` clears the mark."""
        if self.store is None:
            return None
        mark = await self.store.restored_marker(str(path))
        if (
            mark is None
            or identity is None
            or (mark.size, mark.mtime_ns)
            != (
                identity.size,
                identity.mtime_ns,
            )
        ):
            return None
        reason = (
            "restored from the archive on purpose;"
            " `castui originals convert-again PATH` converts it again"
        )
        return ConvertOutcome(
            path=str(path),
            status="skipped",
            action=Action.SKIP,
            reasons=(reason,),
            reason=reason,
            bytes_before=info.size,
            seconds=self.clock() - started,
        )

    def _plan(
        self,
        info: MediaInfo,
        decision: Decision,
        options: ConvertOptions,
        placement: Placement,
        backend: Backend,
        *,
        gpu_decode: bool = True,
    ) -> EncodePlan:
        return build_command(
            info,
            options.profile,
            decision,
            output=str(placement.temp),
            backend=backend,
            ffmpeg=str(self.tools.ffmpeg),
            nvdec_codecs=self.nvdec_codecs if gpu_decode else frozenset(),
        )

    async def _run(
        self,
        source: str,
        plan: EncodePlan,
        info: MediaInfo,
        decision: Decision,
        options: ConvertOptions,
    ) -> RunResult:
        self.bus.publish(
            JobStarted(
                path=source,
                action=decision.action.value,
                backend=plan.backend,
                encoder=plan.encoder,
                command=plan.args,
                notes=plan.notes,
            )
        )

        def on_progress(progress: Progress) -> None:
            self.bus.publish(
                JobProgress(
                    path=source,
                    percent=progress.percent,
                    fps=progress.fps,
                    speed=progress.speed,
                    eta_s=progress.eta_s,
                    out_time_s=progress.out_time_s,
                    output_bytes=progress.total_size,
                )
            )

        lines: deque[str] = deque(maxlen=_LIVE_STDERR_LINES)
        partial = [""]

        def on_stderr(text: str) -> None:
            # Keep a rolling tail of whole lines; publish it (coalesced) so the job detail
            # screen shows what ffmpeg says while it runs, not only after it ended.
            *complete, partial[0] = (partial[0] + text).split("\n")
            lines.extend(line.rstrip() for line in complete if line.strip())
            if complete:
                self.bus.publish(JobOutput(path=source, tail="\n".join(lines)))

        run = FfmpegRun(
            plan.args,
            duration_s=info.duration_s,
            on_progress=on_progress,
            on_stderr=on_stderr,
            stall_timeout_s=options.stall_timeout_s,
            timeout_s=options.timeout_s,
        )
        self._runs[source] = run
        if source in self._cancelled:  # cancelled between decide and start
            await run.cancel("cancelled")
        return await run.run()

    async def _extract_sidecars(
        self, info: MediaInfo, plan: EncodePlan, placement: Placement
    ) -> list[Path]:
        """Bitmap subtitles go to hidden temp files beside the output, placed after the swap."""
        if not plan.sidecars:
            return []
        stem = str(placement.temp.with_name(f"{placement.temp_prefix}.tmp"))
        written: list[Path] = []
        commands = build_sidecar_commands(info, plan, stem, ffmpeg=str(self.tools.ffmpeg))
        for sidecar, argv in zip(plan.sidecars, commands, strict=True):
            target = placement.sidecar_temp(sidecar.suffix)
            result = await FfmpegRun(argv, duration_s=info.duration_s).run()
            if not result.ok:
                reason = result.failure.reason if result.failure else "unknown error"
                raise SidecarError(
                    f"could not extract bitmap subtitle #{sidecar.index} ({sidecar.codec}):"
                    f" {reason}"
                )
            written.append(target)
        return written

    def _track(self, source: str, run: FfmpegRun) -> None:
        """Make ``run`` (a validation read) reachable by :meth:`cancel` like the encode."""
        self._runs[source] = run
        if source in self._cancelled:
            run.stop("cancelled")

    def _discard(self, placement: Placement, sidecars: list[Path]) -> None:
        abort(self.journal, placement)
        for temp in sidecars:
            temp.unlink(missing_ok=True)

    def _failed(
        self,
        source: str,
        info: MediaInfo,
        decision: Decision,
        plan: EncodePlan,
        result: RunResult,
        started: float,
        notes: list[str],
        reason: str,
        kind: str,
    ) -> ConvertOutcome:
        status: Status = "cancelled" if source in self._cancelled else "failed"
        return ConvertOutcome(
            path=source,
            status=status,
            action=decision.action,
            reasons=decision.reasons,
            reason=reason,
            bytes_before=info.size,
            seconds=self.clock() - started,
            encoder=plan.encoder,
            command=plan.args,
            exit_code=result.exit_code,
            stderr_tail=result.stderr_tail,
            notes=tuple(notes),
            failure_kind=kind,
        )

    def _finished(self, outcome: ConvertOutcome) -> None:
        self.bus.publish(outcome.finished_event())


def _taken_by_another(placement: Placement) -> bool:
    """A file (not the source itself) already has the output's name."""
    final = placement.final
    if not os.path.lexists(final):
        return False
    try:
        return not os.path.samefile(final, placement.source)
    except OSError:
        return True


_VIDEO_EXTENSIONS = frozenset(DEFAULT_EXTENSIONS)


def _layout_for(path: Path, options: ConvertOptions) -> LayoutChoice:
    """The layout for ``path`` (blocking: lists the folder for Jellyfin's version rule)."""
    if options.layout is None:
        return LayoutChoice("mirror", output_dir=options.output_dir)
    siblings: list[str] = []
    if options.layout == "version":
        with contextlib.suppress(OSError):
            siblings = [
                e.name
                for e in os.scandir(path.parent)
                if e.name != path.name
                and not e.name.startswith(".")
                and e.name.rpartition(".")[2].lower() in _VIDEO_EXTENSIONS
                and e.is_file()
            ]
    return choose(
        options.layout,
        source=path,
        library_root=options.library_root,
        output_dir=options.output_dir,
        originals=options.originals,
        label=options.version_label,
        fallback=options.version_fallback,
        siblings=siblings,
    )


def _identity_of(path: Path) -> SourceIdentity | None:
    """The source's identity now; None when it cannot be read (the probe says why)."""
    try:
        return SourceIdentity.of(path)
    except OSError:
        return None


def _disk_full(exc: BaseException) -> bool:
    """An ENOSPC/EDQUOT anywhere in the chain (the swap or journal writing on a full disk):
    the engine waits for space instead of using an attempt."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class SidecarError(CastuiError):
    """A bitmap subtitle stream could not be extracted next to the output."""
