"""The readiness report against a small library whose answer is known.

Real files made with the real ffmpeg, probed with the real ffprobe, stored in a real SQLite
catalog; the report reads them back and must give the counts the decision rules imply.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import pytest
from cli_helpers import run_castui
from test_control import write_settings

from castui_core.calibrate import CacheFile, calibrated_speeds, calibration_argv
from castui_core.control import ControlServer, RemoteEngine
from castui_core.decide import Action, Decision
from castui_core.engine import Engine
from castui_core.errors import CastuiError
from castui_core.ffmpeg.command import build_command
from castui_core.ffmpeg.nvenc import NvencStatus
from castui_core.guardrails.gpu import NoGpu
from castui_core.media import MediaInfo, VideoStream
from castui_core.probe import probe_ffprobe
from castui_core.profiles import builtin_profiles
from castui_core.report import (
    DEFAULT_SPEED,
    REMUX_BYTES_PER_S,
    Calibration,
    ReadinessReport,
    as_json,
    build_report,
    reason_group,
    resolution_class,
)
from castui_core.settings import load_settings
from castui_core.store import Store
from castui_core.store.models import CatalogEntry, Job, JobAction, JobResult, JobState

#: sample -> expected action on chromecast-1080p and on chromecast-4k-hevc.
KNOWN = {
    "compliant.mp4": ("skip", "transcode"),
    "compliant.mkv": ("remux", "transcode"),
    "mpeg4.avi": ("transcode", "transcode"),
    "audio_only.m4a": ("reject", "reject"),
}


def _job(path: str, action: JobAction, wall_s: float, src: int, out: int) -> Job:
    return Job(
        id=1, path=path, library="films", action=action, state=JobState.DONE, reasons=(),
        priority=0, attempts=1, max_attempts=3, run_after=0.0, lease_owner=None, lease_token=0,
        lease_expires=None, rerun_requested=False, progress=None,
        result=JobResult(source_size=src, output_size=out, duration_s=wall_s, encoder="libx264"),
        reason=None, created_at=0.0, updated_at=0.0, started_at=0.0, finished_at=1.0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def catalog_db(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog with the KNOWN files plus one never-probed row, written through the Store."""
    ffprobe = Path(shutil.which("ffprobe") or "ffprobe")
    db = tmp_path_factory.mktemp("report") / "castui.db"

    async def fill() -> None:
        entries = []
        for name in KNOWN:
            path = samples[name]
            st = path.stat()
            info = await probe_ffprobe(ffprobe, str(path))
            entries.append(
                CatalogEntry(
                    str(path), "films", st.st_size, st.st_mtime_ns, st.st_ino, probe=info.to_json()
                )
            )
        entries.append(CatalogEntry("/nowhere/new.mkv", "films", 5, 5))
        entries.append(CatalogEntry(str(samples["high10.mkv"]), "other", 7, 7, probe=None))
        async with Store.open(db) as store:
            await store.upsert_files(entries)

    asyncio.run(fill())
    return db


def _load(db: Path, library: str | None = None) -> tuple[list[CatalogEntry], ReadinessReport]:
    async def read() -> list[CatalogEntry]:
        async with Store.open(db) as store:
            return await store.list_files(library)

    entries = asyncio.run(read())
    return entries, build_report(entries, library=library)


def test_counts_per_profile_match_the_decision_rules(catalog_db: Path) -> None:
    _, report = _load(catalog_db)
    assert report.unprobed == 2 and report.total.files == len(KNOWN)
    by_name = {p.profile: p for p in report.profiles}
    for column, profile in enumerate(("chromecast-1080p", "chromecast-4k-hevc")):
        p = by_name[profile]
        got = {
            "skip": p.direct.files,
            "remux": p.remux.files,
            "transcode": p.transcode.files,
            "reject": p.reject.files,
        }
        want = {a: sum(v[column] == a for v in KNOWN.values()) for a in got}
        assert got == want, profile
    p1080 = by_name["chromecast-1080p"]
    assert p1080.direct_share == pytest.approx(0.25)
    assert ("remux", "container is not MP4") in {(r.action, r.reason) for r in p1080.reasons}
    assert ("reject", "no video stream (audio only)") in {
        (r.action, r.reason) for r in p1080.reasons
    }
    # Hours and bytes add up: every probed file lands in exactly one action per profile.
    for p in report.profiles:
        parts = (p.direct, p.remux, p.transcode, p.reject)
        assert sum(t.bytes for t in parts) == report.total.bytes
        assert sum(t.seconds for t in parts) == pytest.approx(report.total.seconds)


def test_cost_uses_history_speed_and_size_ratio_else_the_default_model(
    catalog_db: Path, samples: dict[str, Path]
) -> None:
    entries, plain = _load(catalog_db)
    avi = str(samples["mpeg4.avi"])
    info = MediaInfo.from_json(dict(next(e for e in entries if e.path == avi).probe or {}))
    assert info.duration_s and resolution_class(info.video[0].width, info.video[0].height) == "sd"
    mkv_size = next(e.size for e in entries if e.path.endswith("compliant.mkv"))
    p = next(p for p in plain.profiles if p.profile == "chromecast-1080p")
    assert [s.source for s in plain.speeds] == ["default"] * 4
    assert p.encode_seconds == pytest.approx(
        info.duration_s / DEFAULT_SPEED["sd"] + mkv_size / REMUX_BYTES_PER_S
    )
    # With history: the avi took 0.25 s of wall time and came out at half its size.
    history = [_job(avi, JobAction.TRANSCODE, 0.25, 1000, 500)]
    report = build_report(entries, history)
    sd = next(s for s in report.speeds if s.resolution == "sd")
    assert sd.x_realtime == pytest.approx(info.duration_s / 0.25)
    assert sd.source == "history (1 jobs, libx264)"
    p = next(p for p in report.profiles if p.profile == "chromecast-1080p")
    assert p.encode_seconds == pytest.approx(0.25 + mkv_size / REMUX_BYTES_PER_S)
    avi_size = next(e.size for e in entries if e.path == avi)
    before = sum(e.size for e in entries if e.probe is not None)
    assert p.bytes_after == before - avi_size + round(avi_size * 0.5)
    assert report.size_ratios == {"transcode": 0.5}


@pytest.mark.parametrize(
    ("reason", "group"),
    [
        ("video bitrate 12.0 Mb/s > 10.0 Mb/s", "video bitrate above the profile's limit"),
        ("2560x1440 is larger than 1920x1080", "resolution above the profile's limit"),
        ("60 fps above 720p > 30", "frame rate above the profile's limit"),
        ("10-bit (yuv420p10le)", "bit depth above the profile's limit"),
        ("container MKV is not MP4", "container is not MP4"),
        ("video codec MPEG4 is not H.264", "video codec MPEG4 is not H.264"),
    ],
)
def test_reason_groups(reason: str, group: str) -> None:
    assert reason_group(reason) == group


@pytest.mark.parametrize(
    ("w", "h", "cls"),
    [(320, 240, "sd"), (720, 576, "sd"), (1280, 720, "720p"), (720, 1280, "720p"),
     (1920, 1080, "1080p"), (2560, 1440, "2160p"), (3840, 2160, "2160p")],
)  # fmt: skip
def test_resolution_class(w: int, h: int, cls: str) -> None:
    assert resolution_class(w, h) == cls


def test_json_shape_is_stable(catalog_db: Path) -> None:
    _, report = _load(catalog_db)
    data = json.loads(json.dumps(as_json(report)))
    assert set(data) == {"version", "library", "total", "unprobed", "speeds", "size_ratios",
                         "profiles"}  # fmt: skip
    assert data["version"] == 1
    assert set(data["profiles"][0]) == {
        "profile", "description", "direct", "remux", "transcode", "reject", "reasons",
        "encode_seconds", "bytes_after",
    }  # fmt: skip
    assert set(data["profiles"][0]["direct"]) == {"files", "hours", "bytes"}
    assert set(data["speeds"][0]) == {"resolution", "x_realtime", "source", "kind", "encoder"}
    assert [p["profile"] for p in data["profiles"]] == [
        "chromecast-1080p", "chromecast-1080p60", "chromecast-4k-hevc", "nest-hub-720p",
    ]  # fmt: skip


def _config(tmp_path: Path, db: Path) -> Path:
    config = tmp_path / "settings.yaml"
    config.write_text(f"database: {db}\n")
    return config


def test_cli_text_json_and_html(catalog_db: Path, tmp_path: Path) -> None:
    config = str(_config(tmp_path, catalog_db))
    text = run_castui("report", "--config", config, home=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "chromecast-1080p " in text.stdout and "nest-hub-720p" in text.stdout
    assert "2 not probed yet" in text.stdout and "Traceback" not in text.stderr

    out = run_castui("report", "--config", config, "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    by_name = {p["profile"]: p for p in data["profiles"]}
    assert by_name["chromecast-1080p"]["direct"]["files"] == 1
    assert by_name["chromecast-4k-hevc"]["transcode"]["files"] == 3

    page = tmp_path / "report.html"
    made = run_castui("report", "--config", config, "--html", str(page), home=tmp_path)
    assert made.returncode == 0, made.stderr
    doc = page.read_text()
    assert doc.startswith("<!DOCTYPE html>") and doc.count("<svg") == 4
    # One self-contained file: nothing fetched, no script.
    assert not re.search(r"(?:src|href)=|https?://|<script|@import|url\(", doc)


def test_cli_library_filter_and_exit_codes(catalog_db: Path, tmp_path: Path) -> None:
    config = str(_config(tmp_path, catalog_db))
    films = run_castui("report", "--config", config, "--library", "films", "--json", home=tmp_path)
    assert films.returncode == 0, films.stderr
    data = json.loads(films.stdout)
    assert data["library"] == "films" and data["unprobed"] == 1
    assert data["total"]["files"] == len(KNOWN)

    none = run_castui("report", "--config", config, "--library", "nope", home=tmp_path)
    assert none.returncode == 1 and "run `castui scan` first" in none.stderr
    assert "Traceback" not in none.stderr

    (tmp_path / "elsewhere").mkdir()
    missing = str(_config(tmp_path / "elsewhere", tmp_path / "elsewhere" / "none.db"))
    nodb = run_castui("report", "--config", missing, home=tmp_path)
    assert nodb.returncode == 1 and "no catalog yet" in nodb.stderr
    assert not (tmp_path / "elsewhere" / "none.db").exists()


def test_cli_calibrates_once_when_there_is_no_history(catalog_db: Path, tmp_path: Path) -> None:
    """No finished transcodes: the classes the library has (sd here) are measured with a
    real 2 s encode, cached beside the database and reused; --no-calibrate skips it."""
    db = tmp_path / "castui.db"
    shutil.copy(catalog_db, db)
    config = str(_config(tmp_path, db))
    plain = run_castui("report", "--config", config, "--json", "--no-calibrate", home=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert {s["source"] for s in json.loads(plain.stdout)["speeds"]} == {"default"}
    assert not (tmp_path / "calibration.json").exists()

    first = run_castui("report", "--config", config, "--json", home=tmp_path)
    assert first.returncode == 0, first.stderr
    speeds = {s["resolution"]: s for s in json.loads(first.stdout)["speeds"]}
    assert speeds["sd"]["source"] == "calibration (libx264, 2 s testsrc2)"
    assert speeds["sd"]["x_realtime"] > 0
    assert speeds["1080p"]["source"] == "default"  # the library has no 1080p video
    cache = tmp_path / "calibration.json"
    assert json.loads(cache.read_text())["speeds"].keys() == {"libx264:sd"}
    assert speeds["sd"]["encoder"] == "libx264" and speeds["sd"]["kind"] == "calibration"
    assert speeds["1080p"]["encoder"] is None
    stamp = cache.stat().st_mtime_ns

    again = run_castui("report", "--config", config, "--json", home=tmp_path)
    assert again.returncode == 0, again.stderr
    again_sd = next(s for s in json.loads(again.stdout)["speeds"] if s["resolution"] == "sd")
    assert again_sd == speeds["sd"] and cache.stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "profile,backend,encoder",
    [
        ("chromecast-1080p", "cpu", "libx264"),
        ("chromecast-1080p", "nvenc", "h264_nvenc"),
        ("chromecast-4k-hevc", "cpu", "libx265"),
        ("chromecast-4k-hevc", "nvenc", "hevc_nvenc"),
    ],
)
def test_calibration_runs_the_job_builders_video_options(
    profile: str, backend: str, encoder: str
) -> None:
    """The calibration command is the job builder's, for a source of the class's size: every
    option from the filter chain to the muxing queue is what a real job of that size gets;
    only the input (2 s testsrc2) and the output (-f null) differ."""
    target = builtin_profiles()[profile]
    used, argv = calibration_argv("2160p", target, backend, "ffmpeg")  # type: ignore[arg-type]
    assert used == encoder
    i = argv.index("-i")
    assert argv[i - 2 : i + 2] == [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=3840x2160:rate=30:duration=2",
    ]
    assert argv[-3:] == ["-f", "null", "-"] and "-hwaccel" not in argv
    film = MediaInfo("/m/film.mkv", 1, "matroska", 60.0, video=(VideoStream(
        0, "h264", pix_fmt="yuv420p", width=3840, height=2160, avg_fps=30.0, r_fps=30.0,
        field_order="progressive"),))  # fmt: skip
    job = build_command(
        film, target, Decision(Action.TRANSCODE, ("x",)), output="/m/film.mp4",
        backend=backend, nvdec_codecs=frozenset(),  # type: ignore[arg-type]
    )  # fmt: skip

    def video(args: list[str]) -> list[str]:
        return args[args.index("-filter:v") : args.index("-max_muxing_queue_size")]

    assert video(argv) == video(list(job.args))
    assert ["-c:v", encoder] == video(argv)[2:4]


def test_a_failed_nvenc_calibration_falls_back_to_the_default_and_says_why(
    tmp_path: Path, catalog_db: Path
) -> None:
    """No NVENC on this machine: the h264_nvenc calibration fails with the classified reason
    (the same sentence a failed job gets), is recorded in the cache, and the report uses the
    default speed with that reason in the speed's source. A later CPU calibration is kept
    apart (cached per encoder)."""
    cache = tmp_path / "calibration.json"
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    target = builtin_profiles()["chromecast-1080p"]
    failed = asyncio.run(calibrated_speeds(ffmpeg, ["sd"], cache, profile=target, backend="nvenc"))
    assert failed.encoder == "h264_nvenc" and failed.speeds == {}
    assert failed.failure and "NVENC" in failed.failure
    assert CacheFile.read(cache).calibration() == failed  # the dashboard reads the same

    entries, _ = _load(catalog_db)
    report = build_report(entries, calibration=failed)
    sd = next(s for s in report.speeds if s.resolution == "sd")
    assert sd.kind == "default" and sd.x_realtime == DEFAULT_SPEED["sd"] and sd.encoder is None
    assert sd.source == f"default (calibration with h264_nvenc failed: {failed.failure})"
    assert report.uncalibrated() == ["sd"]  # the samples are all SD
    hd = next(s for s in report.speeds if s.resolution == "1080p")
    assert hd.source == "default"  # never calibrated: the library has no 1080p video

    cpu = asyncio.run(calibrated_speeds(ffmpeg, ["sd"], cache, profile=target, backend="cpu"))
    assert cpu.failure is None and cpu.speeds["sd"] > 0
    stored = CacheFile.read(cache)
    assert stored.last_encoder == "libx264"
    assert stored.calibration("h264_nvenc") == failed
    assert stored.calibration() == Calibration("libx264", cpu.speeds)


def test_cli_with_nvenc_chosen_reports_the_failed_calibration(
    catalog_db: Path, tmp_path: Path
) -> None:
    """operational.encoder: nvenc on a machine without NVENC: castui report still answers
    (exit 0), with the default estimate and the NVENC reason beside it in text and JSON."""
    db = tmp_path / "castui.db"
    shutil.copy(catalog_db, db)
    config = tmp_path / "settings.yaml"
    config.write_text(f"database: {db}\noperational:\n  encoder: nvenc\n")
    out = run_castui("report", "--config", str(config), "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    sd = next(s for s in json.loads(out.stdout)["speeds"] if s["resolution"] == "sd")
    assert sd["kind"] == "default" and sd["encoder"] is None
    assert sd["source"].startswith("default (calibration with h264_nvenc failed: NVENC")
    text = run_castui("report", "--config", str(config), home=tmp_path)
    assert "calibration with h264_nvenc failed" in text.stdout, text.stderr


def test_cache_reads_the_first_format_and_survives_junk(tmp_path: Path) -> None:
    cache = tmp_path / "calibration.json"
    cache.write_text('{"libx264:sd": 3.5, "libx264:1080p": 1.25}')
    assert CacheFile.read(cache).calibration() == Calibration("libx264", {"sd": 3.5, "1080p": 1.25})
    cache.write_text("[not json")
    assert CacheFile.read(cache).calibration() is None


async def test_attached_dashboard_calibrates_on_the_service(
    tmp_path: Path, samples: dict[str, Path]
) -> None:
    """Calibrate from an attached dashboard runs on the service: the service's settings say
    cpu, the dashboard's copy says nvenc (which fails on this machine), and the answer is the
    service's libx264 measurement; the dashboard's next report reads it from the cache. A
    pause sent while the service calibrates is answered at once (its own connection)."""
    settings = load_settings(write_settings(tmp_path))
    ffprobe = Path(shutil.which("ffprobe") or "ffprobe")
    info = await probe_ffprobe(ffprobe, str(samples["mpeg4.avi"]))
    started = asyncio.Event()

    class Service(Engine):
        """The real engine; says when the service side of a calibrate has begun."""

        async def calibrate(self, library: str | None = None) -> Calibration:
            started.set()
            return await super().calibrate(library)

    engine = Service(settings, watch=False, scan_at_start=False, gpu=NoGpu("no GPU: tests"))
    async with engine, ControlServer(engine):
        await engine.store.upsert_files(
            [CatalogEntry(str(samples["mpeg4.avi"]), "media", 1, 1, probe=info.to_json())]
        )
        mine = settings.model_copy(
            update={"operational": settings.operational.model_copy(update={"encoder": "nvenc"})}
        )
        async with RemoteEngine(mine) as remote:
            before = await remote.readiness_report()
            assert {s.kind for s in before.speeds} == {"default"}
            calibrating = asyncio.create_task(remote.calibrate())
            async with asyncio.timeout(10):
                await started.wait()
            await remote.pause_queue(reason="during the calibration")  # not queued behind it
            assert not calibrating.done() and await engine.store.is_paused()
            done = await calibrating
            assert done.encoder == "libx264" and done.failure is None
            assert set(done.speeds) == {"sd"} and done.speeds["sd"] > 0
            after = await remote.readiness_report()
            sd = next(s for s in after.speeds if s.resolution == "sd")
            assert (sd.kind, sd.encoder, sd.x_realtime) == (
                "calibration",
                "libx264",
                done.speeds["sd"],
            )


def test_an_unwritable_cache_is_a_castui_error_saying_what_to_do(tmp_path: Path) -> None:
    """Where the service answers a calibrate, anything but a CastuiError would drop the
    dashboard's connection: a cache that cannot be written says so and what to fix."""
    (tmp_path / "file").write_text("")
    target = builtin_profiles()["chromecast-1080p"]
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    with pytest.raises(CastuiError, match=r"cannot write the calibration cache .*must be writable"):
        asyncio.run(
            calibrated_speeds(
                ffmpeg, [], tmp_path / "file" / "calibration.json", profile=target, backend="cpu"
            )
        )


async def test_engine_calibrates_with_the_backend_its_probe_chose(
    tmp_path: Path, samples: dict[str, Path]
) -> None:
    """An engine whose NVENC probe said yes (encoder auto) calibrates with h264_nvenc, as its
    jobs would; on this machine without NVENC that encode fails, and the result says why
    while the report keeps the default speed with the reason."""
    settings = load_settings(write_settings(tmp_path))
    settings = settings.model_copy(
        update={"operational": settings.operational.model_copy(update={"encoder": "auto"})}
    )
    ffprobe = Path(shutil.which("ffprobe") or "ffprobe")
    info = await probe_ffprobe(ffprobe, str(samples["mpeg4.avi"]))
    engine = Engine(
        settings, watch=False, scan_at_start=False, gpu=NoGpu("no GPU: tests"),
        nvenc=NvencStatus(True, "h264_nvenc encoded a test frame"),
    )  # fmt: skip
    async with engine:
        await engine.store.upsert_files(
            [CatalogEntry(str(samples["mpeg4.avi"]), "media", 1, 1, probe=info.to_json())]
        )
        done = await engine.calibrate()
        assert done.encoder == "h264_nvenc" and done.speeds == {}
        assert done.failure and "NVENC" in done.failure
        report = await engine.readiness_report()
        sd = next(s for s in report.speeds if s.resolution == "sd")
        assert sd.source == f"default (calibration with h264_nvenc failed: {done.failure})"
