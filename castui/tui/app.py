"""The castui dashboard app and :func:`make_app`, the one factory the CLI and tests use.

The app owns a :class:`LiveState` fed by the :class:`EventBridge`, and an engine seen only as
:class:`~castui_core.api.EngineAPI` (an in-process :class:`~castui_core.engine.Engine`, a
:class:`~castui_core.control.RemoteEngine` attached to ``castui --no-ui``, or a test double):
screens read state, and read and command through :attr:`CastuiApp.engine`. Screens see the
app as :class:`~castui.tui.host.DashboardHost`, so they never import this module.

Every binding has an id (``castui.<what>``, ``castui.<screen>.<what>``): Textual's keymap
(``App.set_keymap``) remaps keys by id, fed by the settings' ``keymap:`` section (ids and
their checks in :mod:`castui.keymap`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from multiprocessing import resource_tracker
from typing import Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen

from castui.keymap import keymap_problems, usable_keymap
from castui.tui.bridge import CoreEvent, EventBridge
from castui.tui.host import DashboardHost
from castui.tui.screens.base import LiveScreen
from castui.tui.screens.dashboard import DashboardScreen
from castui.tui.screens.help import HelpScreen
from castui.tui.screens.history import HistoryScreen
from castui.tui.screens.job_detail import JobDetailScreen
from castui.tui.screens.libraries import LibrariesScreen
from castui.tui.screens.profiles import ProfileEditorScreen
from castui.tui.screens.quit import QuitScreen
from castui.tui.screens.report import ReportScreen
from castui.tui.screens.settings import SettingsScreen
from castui.tui.state import LiveState
from castui_core.api import EngineAPI
from castui_core.control import ControlServer, RemoteEngine, find_service
from castui_core.engine import Engine
from castui_core.errors import CastuiError
from castui_core.events import ServiceConnection
from castui_core.guardrails.disk import FreeSpace, FreeSpaceReader, read_free_space
from castui_core.settings import Settings
from castui_core.store import Job

Clock = Callable[[], float]


class CastuiApp(App[int]):
    """The dashboard. Build it with :func:`make_app`."""

    CSS_PATH = "castui.tcss"
    TITLE = "castui"
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        "dashboard": DashboardScreen,
        "history": HistoryScreen,
        "libraries": LibrariesScreen,
        "report": ReportScreen,
        "profiles": ProfileEditorScreen,
        "settings": SettingsScreen,
    }
    DEFAULT_MODE = "dashboard"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "switch_mode('dashboard')", "Dashboard", id="castui.dashboard"),
        Binding("h", "switch_mode('history')", "History", id="castui.history"),
        Binding("l", "switch_mode('libraries')", "Libraries", id="castui.libraries"),
        Binding("e", "switch_mode('profiles')", "Profiles", id="castui.profiles"),
        # Not in the footer (yet): it would change every screen's snapshot; the command
        # palette names it ("Readiness report").
        Binding("r", "switch_mode('report')", "Report", show=False, id="castui.report"),
        # Not in the footer either, for the same reason; the palette names it ("Settings").
        Binding(
            "comma",
            "switch_mode('settings')",
            "Settings",
            show=False,
            key_display=",",
            id="castui.settings",
        ),
        Binding("p", "toggle_pause", "Pause/resume", id="castui.toggle_pause"),
        Binding("s", "scan", "Scan", id="castui.scan"),
        Binding("question_mark,f1", "help", "Help", key_display="?", id="castui.help"),
        Binding("q", "quit_app", "Quit", id="castui.quit"),
        Binding("ctrl+c", "quit_app", "Quit", show=False, priority=True, id="castui.interrupt"),
    ]

    def __init__(
        self,
        engine: EngineAPI,
        *,
        attached: bool = False,
        control: ControlServer | None = None,
        clock: Clock = time.time,
        free_space: FreeSpaceReader = read_free_space,
        disk_interval_s: float = 30.0,
        queue_refresh_s: float = 0.5,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.attached = attached
        self.clock = clock
        self.state = LiveState(clock)
        self.disk: dict[str, int | str] = {}
        self.running_jobs: list[Job] = []
        self.queued_jobs: list[Job] = []
        self.engine_ready = asyncio.Event()
        self._control = control
        self._free_space = free_space
        self._disk_interval_s = disk_interval_s
        self._queue_refresh_s = queue_refresh_s
        self._bridge = EventBridge(engine.bus, self)
        self._jobs_dirty = asyncio.Event()
        self._stopped = False

    @property
    def settings(self) -> Settings:
        return self.engine.settings

    # --- lifecycle -----------------------------------------------------------------------

    async def on_mount(self) -> None:
        self.sub_title = "attached to the castui service" if self.attached else "engine in-process"
        self.apply_keymap(self.settings.keymap)
        self.run_worker(self._bridge.run(), name="bridge", exclusive=False)
        self._start_engine()

    def apply_keymap(self, keymap: Mapping[str, str]) -> list[str]:
        """Remap keys from the settings' ``keymap:`` (binding id -> keys); returns the problems.

        Textual ignores an id it does not know, so a typo would leave the old key working and
        say nothing: every entry that cannot be applied is said plainly (a notification and
        the log) and the rest are applied. ``castui config check`` reports the same lines.
        """
        problems = keymap_problems(keymap)
        self.set_keymap(usable_keymap(keymap))
        for line in problems:
            self.state.log.append((self.clock(), "error", line))
            self.state.log_serial += 1
        if problems:
            self.notify(
                "\n".join(problems), title="keymap not fully applied", severity="error", timeout=30
            )
            self._tell_screens({"log"})
        return problems

    @work(exclusive=True, group="engine", exit_on_error=False)
    async def _start_engine(self) -> None:
        control = self._control
        if control is not None:
            # Claimed before the engine starts: never a second engine on this database.
            try:
                await control.claim()
            except CastuiError as exc:
                self._control = None  # not ours to stop
                self.notify(str(exc), title="engine not started", severity="error", timeout=60)
                return
        try:
            await self.engine.start()
        except CastuiError as exc:
            self.notify(str(exc), title="engine did not start", severity="error", timeout=30)
            return
        if control is not None:
            try:
                await control.start()
            except (CastuiError, OSError) as exc:
                self.notify(f"attach socket not started: {exc}", severity="warning")
        for event in await self.engine.initial_events():
            self.post_message(CoreEvent(event))
        self.engine_ready.set()
        self._jobs_dirty.set()
        self.run_worker(self._refresh_jobs_loop(), name="jobs", group="loops")
        self.run_worker(self._disk_loop(), name="disk", group="loops")

    async def on_unmount(self) -> None:
        """However the app ends (quit, ctrl+c, a test harness taking a snapshot), stop what it
        started: an engine left running keeps store threads, probe workers and encodes alive,
        and the process would never exit."""
        await self.stop_engine(0.0)

    async def stop_engine(self, grace_s: float | None = None) -> None:
        """Stop what this app started (the engine only when it runs in-process)."""
        if self._stopped:
            return
        self._stopped = True
        await self.engine.stop(grace_s)
        if self._control is not None:  # after: no other engine starts while this one stops
            await self._control.stop()
        self._bridge.close()

    async def action_quit(self) -> None:
        await self.action_quit_app()

    async def action_quit_app(self) -> None:
        running = [] if self.attached else await self.engine.running_ids()
        if not running:  # attached: quitting leaves the service's jobs running
            await self._exit_after_stop(0.0)
            return
        self.push_screen(QuitScreen(len(running)), self._quit_choice)

    def _quit_choice(self, choice: str | None) -> None:
        if choice == "requeue":
            self.run_worker(self._exit_after_stop(0.0), group="quit")
        elif choice == "wait":
            self.notify("waiting for running jobs to finish; no new job starts", timeout=60)
            self.run_worker(self._exit_after_stop(7 * 86400.0), group="quit")

    async def _exit_after_stop(self, grace_s: float) -> None:
        await self.stop_engine(grace_s)
        self.exit(0)

    # --- events ---------------------------------------------------------------------------

    def on_core_event(self, message: CoreEvent) -> None:
        changed = self.state.apply(message.event)
        if isinstance(message.event, ServiceConnection):
            self.sub_title = self.state.service_text()
        if "jobs" in changed:
            self._jobs_dirty.set()
        self._tell_screens(changed)

    def _tell_screens(self, changed: set[str]) -> None:
        if not changed:
            return
        for screen in self.screen_stack:
            if isinstance(screen, LiveScreen) and screen.is_mounted:
                try:
                    screen.live_changed(changed)
                except NoMatches:
                    # Its widgets are not there: the screen is being built (it draws the
                    # state when mounted or resumed) or torn down as the app exits. Seen at
                    # exit when a queue re-read landed as the dashboard's tables went away.
                    continue

    async def _refresh_jobs_loop(self) -> None:
        """Re-read the active jobs when events say they changed.

        At most every 0.5 s, and never more than a third of the time: with 100,000 queued
        jobs one read costs about a second of CPU, and a scan queueing thousands of files
        must not turn the dashboard into a busy loop.
        """
        while True:
            await self._jobs_dirty.wait()
            self._jobs_dirty.clear()
            started = time.monotonic()
            try:
                await self.reload_jobs()
            except CastuiError as exc:
                self.state.log.append((self.clock(), "error", f"reading the queue: {exc}"))
            took = time.monotonic() - started
            await asyncio.sleep(max(self._queue_refresh_s, 2 * took))

    async def reload_jobs(self) -> None:
        # Shielded: a store read cancelled half-way (app exit) would leave its transaction open.
        jobs = await asyncio.shield(self.engine.active_jobs())
        split = next((i for i, j in enumerate(jobs) if j.state != "running"), len(jobs))
        self.running_jobs, self.queued_jobs = jobs[:split], jobs[split:]
        self._tell_screens({"jobs"})

    async def _disk_loop(self) -> None:
        """Free space per library, read off the event loop (a dead NAS can hang statvfs)."""
        while True:
            disk: dict[str, int | str] = {}
            for lib in self.settings.libraries:
                target = lib.output_dir or lib.path
                try:
                    free: FreeSpace = await asyncio.to_thread(self._free_space, target)
                    disk[lib.name] = free.free_bytes
                except OSError as exc:
                    disk[lib.name] = f"unreadable ({exc.strerror or exc})"
            self.disk = disk
            self._tell_screens({"guards"})
            await asyncio.sleep(self._disk_interval_s)

    # --- commands -------------------------------------------------------------------------

    @work(group="commands", exit_on_error=False)
    async def run_command(self, label: str, call: Callable[[], Awaitable[Any]]) -> None:
        """Run an engine command off the key handler; report failures as notifications."""
        try:
            await call()
        except CastuiError as exc:
            self.notify(f"{label}: {exc}", severity="error", timeout=10)
            return
        self._jobs_dirty.set()
        self.notify(label, timeout=3)

    def action_toggle_pause(self) -> None:
        if self.state.paused:
            self.run_command("queue resumed", lambda: self.engine.resume_queue())
        else:
            self.run_command("queue paused", lambda: self.engine.pause_queue())

    def action_scan(self) -> None:
        self.run_command("scan started", lambda: self.engine.scan(None))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def open_job(self, job_id: int) -> None:
        self.push_screen(JobDetailScreen(job_id))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Dashboard", "Active jobs, queue, guardrails, log", self._mode("dashboard")
        )
        yield SystemCommand("History", "Finished jobs and totals", self._mode("history"))
        yield SystemCommand(
            "Libraries", "Watch state, last scan, scan now", self._mode("libraries")
        )
        yield SystemCommand(
            "Profile editor", "Edit and save target profiles", self._mode("profiles")
        )
        yield SystemCommand(
            "Settings",
            "Every setting: libraries, limits, guardrails, Jellyfin, notifications",
            self._mode("settings"),
        )
        yield SystemCommand(
            "Readiness report",
            "What plays directly on each Cast, and the cost",
            self._mode("report"),
        )
        yield SystemCommand(
            "Calibrate encode speed",
            "Readiness report: measure this engine's encoder now (c on the report)",
            self.calibrate_report,
        )
        yield SystemCommand(
            "Pause / resume queue", "Stop or restart handing out jobs", self.action_toggle_pause
        )
        yield SystemCommand("Scan all libraries", "Look for new work now", self.action_scan)
        yield SystemCommand("Help", "Keys and what each screen shows", self.action_help)

    async def calibrate_report(self) -> None:
        """The palette's "calibrate now": show the report and start its calibration."""
        await self.switch_mode("report")
        if isinstance(self.screen, ReportScreen):
            self.screen.action_calibrate()

    def _mode(self, mode: str) -> Callable[[], None]:
        def switch() -> None:
            self.switch_mode(mode)

        return switch


def dashboard_for(settings: Settings) -> CastuiApp:
    """What ``castui`` runs: attached to this user's service on the database (also one that
    is still starting, or a ``--once`` run), else the engine in-process. Raises
    :class:`CastuiError` (before any UI) when neither is safe: another user's service runs
    on the database, or the socket's folder is not trustworthy."""
    target = find_service(settings.database)
    if target is not None:
        return make_app(RemoteEngine(settings, target, wait_for_service=True), attached=True)
    engine = Engine(settings)
    return make_app(engine, control=ControlServer(engine))


def make_app(
    engine: EngineAPI,
    *,
    attached: bool = False,
    control: ControlServer | None = None,
    clock: Clock = time.time,
    free_space: FreeSpaceReader = read_free_space,
    disk_interval_s: float = 30.0,
) -> CastuiApp:
    """The dashboard for ``engine``.

    ``attached``: ``engine`` is a :class:`RemoteEngine`; quitting leaves the service running.
    ``control``: the attach socket of an in-process engine, claimed before the engine starts
    and served while it runs, so a second ``castui`` attaches instead of starting another
    engine. ``clock`` and ``free_space`` are
    injected so tests render deterministic screens.
    """
    # The engine's probe pool spawns processes through multiprocessing, whose resource
    # tracker passes on stderr's file descriptor; Textual swaps stderr for a capture object
    # without one while the app runs, so the tracker must be running before that.
    resource_tracker.ensure_running()
    return CastuiApp(
        engine,
        attached=attached,
        control=control,
        clock=clock,
        free_space=free_space,
        disk_interval_s=disk_interval_s,
    )


def _host(app: CastuiApp) -> DashboardHost:
    """Checked by mypy: the app gives screens everything :class:`DashboardHost` promises."""
    return app
