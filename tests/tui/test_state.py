"""The dashboard's state keeps what the job detail screen shows while ffmpeg runs."""

from __future__ import annotations

from castui.tui.state import LiveState
from castui_core.events import JobFinished, JobNote, JobOutput, JobStarted


def test_live_stderr_tail_and_notes_follow_the_running_job_and_end_with_it() -> None:
    state = LiveState(clock=lambda: 0.0)
    path = "/media/movies/a.avi"
    state.apply(JobStarted(path, "transcode", "cpu", "libx264", ("ffmpeg", "-i", path)))
    state.apply(JobOutput(path, "[mp3 @ 0x1] Header missing"))
    state.apply(JobOutput(path, "[mp3 @ 0x1] Header missing\nError while decoding stream #0:1"))
    state.apply(JobNote(path, "paused: GPU 0 at 86 °C ≥ 85 °C (resumes at 75)"))
    live = state.live[path]
    assert live.stderr_tail.endswith("Error while decoding stream #0:1")
    assert list(live.notes)[-1].startswith("paused: GPU 0")
    state.apply(JobFinished(path, "done", "transcode", None, "/m/a.mp4", 10, 5, 1.0, "libx264"))
    assert path not in state.live
