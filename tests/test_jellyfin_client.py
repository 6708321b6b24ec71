"""The Jellyfin client against the stand-in Jellyfin over real HTTP on 127.0.0.1.

Auth forms per server version, error translation (401/403/404/5xx, refused, timeout) with
messages that never hold the key, and the library endpoints castui relies on (204 semantics
of /Library/Media/Updated, items with ids derived from their paths, MinDateLastSaved, paging).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

import httpx
import pytest
from jellyfin_fixtures import jellyfin, jellyfin12  # noqa: F401
from jellyfin_standin import MOVIE_TYPE, StandinJellyfin

from castui_core.errors import (
    CastuiError,
    JellyfinAuthError,
    JellyfinRequestError,
    JellyfinServerError,
    JellyfinUnreachable,
)
from castui_core.integrations.jellyfin.client import JellyfinClient, auth_header, safe_url


def movie(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"\0" * 64)  # the stand-in's library scan only needs a file
    return path


@pytest.mark.parametrize("server", ["jellyfin", "jellyfin12"])
async def test_the_mediabrowser_header_works_on_10_10_and_12(
    server: str, request: pytest.FixtureRequest
) -> None:
    standin: StandinJellyfin = request.getfixturevalue(server)
    async with JellyfinClient(standin.url, standin.api_key, timeout_s=5) as client:
        info = await client.public_info()
        system = await client.system_info()
    assert (info.name, info.version) == ("standin", standin.version)
    assert system["Version"] == standin.version
    public, private = (
        standin.requests_to("/System/Info/Public"),
        standin.requests_to("/System/Info"),
    )
    assert "authorization" not in public[0].headers  # the public call does not need the key
    assert private[0].headers["authorization"] == (
        f'MediaBrowser Client="castui", Version="0.1.0", Token="{standin.api_key}"'
    )
    assert all(standin.api_key not in r.path + str(r.query) for r in standin.requests)


async def test_12_refuses_the_legacy_forms_10_10_accepts(
    jellyfin: StandinJellyfin,  # noqa: F811
    jellyfin12: StandinJellyfin,  # noqa: F811
) -> None:
    """Why castui sends only the MediaBrowser header (Sonarr/Radarr broke on this)."""
    async with httpx.AsyncClient(timeout=5) as http:
        for server, expect in ((jellyfin, 200), (jellyfin12, 401)):
            key = server.api_key
            emby = await http.get(f"{server.url}/System/Info", headers={"X-Emby-Token": key})
            query = await http.get(f"{server.url}/System/Info", params={"api_key": key})
            assert (emby.status_code, query.status_code) == (expect, expect)


async def test_a_wrong_key_is_an_auth_error_that_never_shows_the_key(
    jellyfin: StandinJellyfin,  # noqa: F811
) -> None:
    wrong = uuid.uuid4().hex
    client = JellyfinClient(jellyfin.url, wrong, timeout_s=5)
    async with client:
        assert (await client.public_info()).version == "10.10.7"  # reachable without a key
        with pytest.raises(JellyfinAuthError) as caught:
            await client.system_info()
    assert caught.value.status == 401 and not caught.value.retryable
    assert "API Keys" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(client), str(client)):
        assert wrong not in text


async def test_a_non_admin_key_may_not_list_libraries(tmp_path: Path) -> None:
    limited = uuid.uuid4().hex
    server = StandinJellyfin(limited_keys=[limited]).start()
    try:
        async with JellyfinClient(server.url, limited, timeout_s=5) as client:
            await client.system_info()  # the key is valid
            with pytest.raises(JellyfinAuthError) as caught:
                await client.virtual_folders()
    finally:
        server.stop()
    assert caught.value.status == 403 and "not allowed" in str(caught.value)


async def test_5xx_down_and_slow_are_retryable_errors(jellyfin: StandinJellyfin) -> None:  # noqa: F811
    async with JellyfinClient(jellyfin.url, jellyfin.api_key, timeout_s=0.5) as client:
        jellyfin.fail_next(1, 503)
        with pytest.raises(JellyfinServerError) as server_error:
            await client.system_info()
        await client.system_info()  # the next one goes through
        jellyfin.slow_s = 2.0
        with pytest.raises(JellyfinUnreachable) as slow:
            await client.system_info()
        jellyfin.slow_s = 0.0
        jellyfin.down()
        with pytest.raises(JellyfinUnreachable) as down:
            await client.system_info()
        jellyfin.up()
        assert (await client.system_info())["Version"] == "10.10.7"  # same URL again
    assert server_error.value.retryable and server_error.value.status == 503
    assert "within 0.5 s" in str(slow.value) and slow.value.retryable
    assert "cannot reach Jellyfin" in str(down.value) and down.value.retryable
    assert isinstance(down.value, CastuiError)


async def test_media_updated_is_204_at_once_and_outside_paths_are_dropped(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    lib = tmp_path / "movies"
    jellyfin.add_library("Movies", [str(lib)])
    jellyfin.scan()
    new = movie(lib / "Film (2020)", "Film (2020).mp4")
    outside = movie(tmp_path / "elsewhere", "x.mp4")
    async with JellyfinClient(jellyfin.url, jellyfin.api_key, timeout_s=5) as client:
        await client.media_updated([(str(new), "Created"), (str(outside), "Created")])
        assert jellyfin.item_for(str(new)) is None  # not yet: the monitor delay runs
        assert jellyfin.wait_for(lambda: jellyfin.item_for(str(new)) is not None, 5)
        assert jellyfin.dropped == [str(outside)]  # 204 all the same
        with pytest.raises(JellyfinRequestError) as null_path:
            await client.post_json("/Library/Media/Updated", {"Updates": [{"Path": None}]})
    assert null_path.value.status == 400
    body = jellyfin.requests_to("/Library/Media/Updated")[0].json
    assert body == {
        "Updates": [
            {"Path": str(new), "UpdateType": "Created"},
            {"Path": str(outside), "UpdateType": "Created"},
        ]
    }


async def test_items_have_ids_from_their_paths_and_filter_by_date_saved(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    lib_dir = tmp_path / "movies"
    old = [movie(lib_dir / f"Old {n}", f"Old {n}.mkv") for n in range(5)]
    movie(lib_dir / "Old 0", ".hidden.mp4")  # Jellyfin ignores hidden files
    lib = jellyfin.add_library("Movies", [str(lib_dir)])
    jellyfin.scan()
    async with JellyfinClient(jellyfin.url, jellyfin.api_key, timeout_s=5) as client:
        (folder,) = await client.virtual_folders()
        assert (folder.item_id, folder.locations, folder.refresh_status) == (
            lib.item_id,
            (str(lib_dir),),
            "Idle",
        )
        pages = [await client.items(lib.item_id, start=s, limit=2) for s in (0, 2, 4)]
        assert [p.total for p in pages] == [5, 5, 5]
        listed = [i["Path"] for p in pages for i in p.items]
        assert listed == sorted(str(p) for p in old)
        digest = hashlib.md5((MOVIE_TYPE + str(old[0])).encode("utf-16-le")).digest()
        assert pages[0].items[0]["Id"] == uuid.UUID(bytes_le=digest).hex

        cut = time.time()
        new = movie(lib_dir / "New", "New.mp4")
        await client.media_updated([(str(new), "Created")])
        assert jellyfin.wait_for(lambda: jellyfin.item_for(str(new)) is not None, 5)
        recent = await client.items(lib.item_id, min_date_last_saved=cut - 0.001)
    assert [i["Path"] for i in recent.items] == [str(new)]
    (query,) = [r.query for r in jellyfin.requests_to("/Items")][-1:]
    assert query["Fields"] == ["Path"] and query["Recursive"] == ["true"]
    assert query["MinDateLastSaved"][0].endswith("Z")


async def test_a_wrong_base_path_says_to_check_the_url(jellyfin: StandinJellyfin) -> None:  # noqa: F811
    async with JellyfinClient(jellyfin.url + "/jellyfin", jellyfin.api_key, timeout_s=5) as c:
        with pytest.raises(JellyfinRequestError) as caught:
            await c.system_info()
    assert caught.value.status == 404 and "base path" in str(caught.value)


def test_keys_and_urls_are_checked_before_any_request() -> None:
    with pytest.raises(JellyfinAuthError):
        auth_header('abc"def')
    with pytest.raises(JellyfinRequestError, match="not an http"):
        JellyfinClient("ftp://host", "k")
    assert safe_url("http://user:pw@host:8096/jf?api_key=SECRET#x") == "http://host:8096/jf"


def test_settings_read_the_key_from_one_place_and_never_show_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from castui_core.errors import ConfigError
    from castui_core.settings import ENV_JELLYFIN_KEY, parse_settings

    key = uuid.uuid4().hex
    inline = parse_settings(f"jellyfin: {{url: 'http://127.0.0.1:8096', api_key: '{key}'}}\n")
    assert inline.jellyfin is not None and inline.jellyfin.api_key_value() == key
    for text in (repr(inline), str(inline), repr(inline.jellyfin), inline.model_dump_json()):
        assert key not in text

    key_file = tmp_path / "key"
    key_file.write_text(f"  {key}\n")
    from_file = parse_settings(f"jellyfin: {{url: 'http://h', api_key_file: '{key_file}'}}\n")
    assert from_file.jellyfin is not None and from_file.jellyfin.api_key_value() == key

    from_env = parse_settings("jellyfin: {url: 'https://h/jellyfin'}\n")
    assert from_env.jellyfin is not None
    monkeypatch.delenv(ENV_JELLYFIN_KEY, raising=False)
    with pytest.raises(ConfigError, match="Dashboard > API Keys"):
        from_env.jellyfin.api_key_value()
    monkeypatch.setenv(ENV_JELLYFIN_KEY, key)
    assert from_env.jellyfin.api_key_value() == key

    with pytest.raises(ConfigError) as both:
        parse_settings(f"jellyfin: {{url: 'http://h', api_key: '{key}', api_key_file: '/k'}}\n")
    assert "not both" in str(both.value) and key not in str(both.value)
    with pytest.raises(ConfigError) as in_url:
        parse_settings(f"jellyfin: {{url: 'http://h/?api_key={key}', api_key: k}}\n")
    assert "jellyfin.url: must be Jellyfin's address only" in str(in_url.value)
    assert key not in str(in_url.value)  # the error line does not echo the URL


@pytest.mark.parametrize(
    ("flag", "expected"),
    [(None, True), (True, True), (False, False)],
)
def test_libraries_notify_jellyfin_unless_switched_off(flag: bool | None, expected: bool) -> None:
    from castui_core.settings import parse_settings

    lib = {"name": "M", "path": "/m"} | ({} if flag is None else {"jellyfin": flag})
    on = parse_settings(
        yaml_dump({"libraries": [lib], "jellyfin": {"url": "http://h", "api_key": "k"}})
    )
    off = parse_settings(yaml_dump({"libraries": [lib]}))
    assert on.notifies_jellyfin(on.libraries[0]) is expected
    assert off.notifies_jellyfin(off.libraries[0]) is False  # not configured: never


def yaml_dump(data: object) -> str:
    import yaml

    return yaml.safe_dump(data)
