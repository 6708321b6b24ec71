"""The settings screen's fields, generated from the settings model; parsing and checks, by table."""

from __future__ import annotations

from typing import Any

import pytest

from castui.tui.settings_form import (
    ArrForm,
    FieldSpec,
    LibraryForm,
    Section,
    changed,
    check_section,
    configured,
    current_value,
    format_value,
    parse_input,
    sections,
    shown_value,
    spec_at,
    value_at,
)
from castui_core.settings import Settings, parse_settings

VIEW_YAML = """\
database: /var/lib/castui/castui.db
libraries:
  - name: movies
    path: /media/movies
  - name: shows
    path: /media/shows
    profile: nest-hub-720p
    watch: poll
jellyfin:
  url: http://127.0.0.1:8096
  api_key: s3cr3t-k3y
notify:
  urls: [ntfys://ntfy.sh/secret-topic]
arr:
  - kind: sonarr
    url: http://127.0.0.1:8989
"""


def view_data() -> dict[str, Any]:
    """What ``settings_view()`` hands the screen: the model's JSON, secrets as "set"."""
    data = parse_settings(VIEW_YAML).model_dump(mode="json")
    data["jellyfin"]["api_key"] = "set"
    data["notify"]["urls"] = "set"
    data["arr"][0]["api_key"] = None
    return data


def by_key(data: dict[str, Any]) -> dict[str, Section]:
    return {s.key: s for s in sections(data)}


def spec(section: Section, name: str) -> FieldSpec:
    return next(f for f in section.fields if f.name == name)


def test_sections_in_order() -> None:
    keys = [s.key for s in sections(view_data())]
    assert keys == [
        "libraries.0", "libraries.1", "profiles", "operational", "scan", "guardrails",
        "service", "jellyfin", "notify", "arr.0", "arr.add", "metrics", "queue", "node",
        "files",
    ]  # fmt: skip
    got = by_key(view_data())
    assert got["libraries.1"].title == "Library shows" and got["libraries.1"].removable
    assert got["arr.0"].title == "Arr sonarr" and got["arr.0"].base == ("arr", 0)
    assert got["profiles"].link == "profiles" and not got["profiles"].fields


def test_every_model_field_is_offered() -> None:
    """A field added to the settings model shows up on the screen without a list to update."""
    got = by_key(Settings().model_dump(mode="json"))
    for key in ("operational", "scan", "guardrails", "service", "metrics", "queue", "node"):
        model = got[key].model
        assert model is not None
        assert [f.name for f in got[key].fields] == list(model.model_fields), key


@pytest.mark.parametrize(
    "section,name,kind,optional,choices,bounds",
    [
        ("guardrails", "gpu_max_temp_c", "int", False, (), "40 … 110"),
        ("guardrails", "max_cpu_percent", "float", True, (), "> 0 … 100"),
        ("guardrails", "schedule", "list", False, (), ""),
        ("guardrails", "outside_schedule", "select", False, ("finish", "pause"), ""),
        ("operational", "encoder", "select", False, ("auto", "nvenc", "cpu"), ""),
        ("operational", "min_free_gb", "float", False, (), "≥ 0"),
        ("scan", "rescan_interval_s", "float", False, (), "≥ 60"),
        ("libraries.0", "watch", "select", False, ("auto", "events", "poll", "off"), ""),
        ("libraries.0", "path", "path", False, (), ""),
        ("libraries.0", "output_dir", "path", True, (), ""),
        ("libraries.0", "follow_symlinks", "bool", False, (), ""),
        ("libraries.0", "jellyfin", "bool", True, (), ""),
        ("jellyfin", "api_key", "secret", True, (), ""),
        ("jellyfin", "path_map", "map", False, (), ""),
        ("queue", "url", "secret", True, (), ""),
        ("notify", "daily_summary_at", "text", True, (), ""),
    ],
)  # fmt: skip
def test_kinds_from_the_model(
    section: str, name: str, kind: str, optional: bool, choices: tuple[str, ...], bounds: str
) -> None:
    got = spec(by_key(view_data())[section], name)
    assert (got.kind, got.optional, got.choices, got.bounds()) == (kind, optional, choices, bounds)


def test_library_profile_chooses_among_the_profiles() -> None:
    got = spec(by_key(view_data())["libraries.0"], "profile")
    assert got.kind == "select"
    assert "nest-hub-720p" in got.choices and "chromecast-1080p" in got.choices


def test_secret_lists_and_hidden_fields() -> None:
    got = by_key(view_data())
    urls = spec(got["notify"], "urls")
    assert urls.kind == "list" and urls.secret
    on = spec(got["notify"], "on")
    assert "daily_summary" in on.choices and not on.secret
    assert "delete_source" not in [f.name for f in got["libraries.0"].fields]


def test_help_says_bounds_choices_and_description() -> None:
    got = by_key(view_data())
    text = spec(got["guardrails"], "gpu_max_temp_c").help()
    assert text == "Pause above this. Allowed: 40 … 110."
    assert "One of: finish, pause." in spec(got["guardrails"], "outside_schedule").help()
    assert "never shown" in spec(got["jellyfin"], "api_key").help()


SCHEDULE = FieldSpec("schedule", "list")
TEMP = FieldSpec("t", "int", minimum=40, maximum=110)
LIMIT = FieldSpec("l", "float", optional=True)
FLAG = FieldSpec("f", "bool")
MODE = FieldSpec("m", "select", choices=("finish", "pause"))
KINDS = FieldSpec("on", "list", choices=("dead", "daily_summary"))
MAP = FieldSpec("path_map", "map")
LABEL = FieldSpec("label", "text", optional=True)
NAME = FieldSpec("name", "text")


@pytest.mark.parametrize(
    "field,text,value,problem",
    [
        (TEMP, "80", 80, None),
        (TEMP, " 80 ", 80, None),
        (TEMP, "hot", None, "'hot' is not a whole number"),
        (TEMP, "", None, "a value is needed"),
        (TEMP, "200", 200, None),  # range: the model's rule, with the model's words
        (LIMIT, "", None, None),
        (LIMIT, "90.5", 90.5, None),
        (LIMIT, "90", 90, None),
        (LIMIT, "nan", None, "'nan' is not a finite number"),
        (LIMIT, "ninety", None, "'ninety' is not a number"),
        (FLAG, "yes", True, None),
        (FLAG, "False", False, None),
        (FLAG, "maybe", None, "'maybe' is not true or false"),
        (MODE, "PAUSE", "pause", None),
        (MODE, "stop", None, "'stop' is not one of finish, pause"),
        (SCHEDULE, "01:00-07:00, 22:00-23:30", ["01:00-07:00", "22:00-23:30"], None),
        (SCHEDULE, "", [], None),
        (KINDS, "dead,daily_summary", ["dead", "daily_summary"], None),
        (KINDS, "dead, oops", None, "oops: not one of dead, daily_summary"),
        (MAP, "/media=/data, /tv = /srv/tv", {"/media": "/data", "/tv": "/srv/tv"}, None),
        (MAP, "/media", None, "'/media' is not from=to"),
        (MAP, "", {}, None),
        (LABEL, "", None, None),
        (NAME, "", "", None),
        (NAME, " films ", "films", None),
    ],
)  # fmt: skip
def test_parse_input(field: FieldSpec, text: str, value: Any, problem: str | None) -> None:
    got = parse_input(field, text)
    assert got.problem == problem
    if problem is None:
        assert got.value == value


@pytest.mark.parametrize(
    "field,value,text",
    [
        (TEMP, 85, "85"),
        (LIMIT, None, ""),
        (LIMIT, 90.0, "90"),
        (FLAG, True, "true"),
        (SCHEDULE, ["01:00-07:00", "22:00-23:30"], "01:00-07:00, 22:00-23:30"),
        (MAP, {"/media": "/data"}, "/media=/data"),
        (FieldSpec("k", "secret"), "set", "set"),
        (FieldSpec("k", "secret"), None, "not set"),
        (FieldSpec("urls", "list", item_secret=True), "set", "set"),
        (FieldSpec("urls", "list", item_secret=True), [], "not set"),
    ],
)  # fmt: skip
def test_format_round_trips(field: FieldSpec, value: Any, text: str) -> None:
    assert format_value(field, value) == text
    if not field.secret:
        assert parse_input(field, text).value == value


def test_shown_value_never_blank() -> None:
    assert shown_value(LIMIT, None) == "none"
    assert shown_value(SCHEDULE, []) == "(empty)"


def test_secret_never_formatted_even_if_the_view_leaked_it() -> None:
    assert format_value(FieldSpec("api_key", "secret"), "s3cr3t-k3y") == "set"


@pytest.mark.parametrize(
    "section,draft,problems",
    [
        ("guardrails", {("guardrails", "gpu_max_temp_c"): 90}, {}),
        (
            "guardrails",
            {("guardrails", "gpu_max_temp_c"): 200},
            {"guardrails.gpu_max_temp_c": "200: Input should be less than or equal to 110"},
        ),
        (
            "guardrails",
            {("guardrails", "gpu_resume_temp_c"): 90},
            {"guardrails.gpu_resume_temp_c": "must be below gpu_max_temp_c (85)"},
        ),
        (
            "guardrails",
            {("guardrails", "schedule"): ["1-7"]},
            {"guardrails.schedule": "'1-7' is not a window like '01:00-07:00'"},
        ),
        (
            "libraries.1",
            {("libraries", 1, "path"): "media/shows"},
            {"libraries.1.path": "'media/shows': must be an absolute path"},
        ),
        (
            "libraries.1",
            {("libraries", 1, "layout"): "mirror"},
            {"libraries.1.layout": "mirror needs output_dir: (the folder of the mirrored tree)"},
        ),
        ("jellyfin", {("jellyfin", "timeout_s"): 20}, {}),  # the redacted key is no problem
        (
            "jellyfin",
            {("jellyfin", "api_key_file"): "/etc/castui/jellyfin.key"},
            {"jellyfin.api_key": "set api_key or api_key_file, not both"},
        ),
    ],
)
def test_check_section_uses_the_models_messages(
    section: str, draft: dict[Any, Any], problems: dict[str, str]
) -> None:
    assert check_section(view_data(), by_key(view_data())[section], draft) == problems


def test_check_a_section_not_configured_yet() -> None:
    data = Settings().model_dump(mode="json")
    jellyfin = by_key(data)["jellyfin"]
    assert jellyfin.note.startswith("not configured")
    assert check_section(data, jellyfin, {}) == {"jellyfin.url": "required but missing"}
    assert check_section(data, jellyfin, {("jellyfin", "url"): "http://jf:8096"}) == {}


def test_changed_sends_only_differences_and_every_secret() -> None:
    data = view_data()
    draft = {
        ("guardrails", "gpu_max_temp_c"): 85,  # the current value: not an edit
        ("guardrails", "gpu_resume_temp_c"): 70,
        ("libraries", 1, "watch"): "off",
        ("jellyfin", "api_key"): "set",  # retyped: the view cannot tell it is the same
    }
    assert changed(data, draft) == [
        (("guardrails", "gpu_resume_temp_c"), 70),
        (("libraries", 1, "watch"), "off"),
        (("jellyfin", "api_key"), "set"),
    ]


def test_value_at_and_spec_at() -> None:
    data = view_data()
    assert value_at(data, ("libraries", 1, "watch")) == "poll"
    assert value_at(data, ("libraries", 5, "watch")) is None
    assert value_at(data, ("nothing", "here")) is None
    found = spec_at(("arr", 3, "api_key"))
    assert found is not None and found.secret
    assert spec_at(("guardrails", "nope")) is None


@pytest.mark.parametrize(
    "name,path,profile,problems",
    [
        ("films", "/media/films", "", {}),
        ("films", "/media/films", "nest-hub-720p", {}),
        ("", "/media/films", "", {"name": "'': String should have at least 1 character"}),
        ("films", "films", "", {"path": "'films': must be an absolute path"}),
        ("movies", "/media/x", "", {"name": "'movies' is already a library"}),
        (
            "films",
            "/media/films",
            "tv",
            {"profile": "'tv' is not a profile; known: chromecast-1080p, nest-hub-720p"},
        ),
    ],
)
def test_library_form(name: str, path: str, profile: str, problems: dict[str, str]) -> None:
    form = LibraryForm(name, path, profile)
    assert form.check(["movies", "shows"], ["nest-hub-720p", "chromecast-1080p"]) == problems
    if not problems:
        value = form.value()
        assert value["name"] == name and value["path"] == path
        assert value.get("profile") == (profile or None)


def test_a_redacted_secret_is_not_the_operators_problem() -> None:
    """queue.url shows as "set"; the model would refuse that as a Redis URL."""
    data = parse_settings(
        "queue:\n  backend: redis\n  url: redis://:pw@127.0.0.1:6379/0\n"
    ).model_dump(mode="json")
    data["queue"]["url"] = "set"
    queue = by_key(data)["queue"]
    assert check_section(data, queue, {("queue", "prefix"): "farm"}) == {}
    assert check_section(data, queue, {("queue", "url"): "http://x"}) == {
        "queue.url": "must start with redis://, rediss:// or unix://"
    }


def test_a_section_not_configured_shows_the_models_defaults() -> None:
    data = Settings().model_dump(mode="json")
    jellyfin = by_key(data)["jellyfin"]
    assert not configured(data, jellyfin)
    assert current_value(data, jellyfin, spec(jellyfin, "timeout_s")) == 10.0
    assert current_value(data, jellyfin, spec(jellyfin, "pause_while")) == "off"
    assert current_value(data, jellyfin, spec(jellyfin, "url")) is None  # required: no default
    guardrails = by_key(data)["guardrails"]
    assert configured(data, guardrails)
    assert current_value(data, guardrails, spec(guardrails, "gpu_max_temp_c")) == 85


TAKEN = "'radarr' is already an entry: give this one a name"
NOT_A_KIND = "'lidarr': Input should be 'sonarr' or 'radarr'"
NOT_A_URL = "'http://k@h:8989': String should match pattern '^https?://[^\\s?#@]+$'"


@pytest.mark.parametrize(
    "kind,url,name,problems,value",
    [
        ("sonarr", "http://s:8989", "", {}, {"kind": "sonarr", "url": "http://s:8989"}),
        ("Radarr", "http://r:7878", "films", {}, {"kind": "radarr", "url": "http://r:7878",
                                                  "name": "films"}),
        ("radarr", "http://h:7878", "", {"name": TAKEN}, None),
        ("lidarr", "http://h:8686", "", {"kind": NOT_A_KIND}, None),
        ("sonarr", "http://k@h:8989", "", {"url": NOT_A_URL}, None),
    ],
)  # fmt: skip
def test_arr_form(
    kind: str, url: str, name: str, problems: dict[str, str], value: dict[str, str] | None
) -> None:
    form = ArrForm(kind, url, name)
    assert form.check(["radarr"]) == problems
    if value is not None:
        assert form.value() == value
