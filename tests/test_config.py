"""Settings: file + environment precedence, clear errors naming key and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from telephony_agent.config import load_settings
from telephony_agent.config_provider import remote_endpoint, resolve_provider, settings_as_toml
from telephony_agent.errors import ConfigError
from telephony_agent.realtime.dialect import Dialect

FAKE_KEY = "AQVN-fake-key-1234567890"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_key_choose_local_and_say_so() -> None:
    settings = load_settings(None, environ={})
    resolved = resolve_provider(settings, {})
    assert resolved.name == "local"
    assert resolved.notice is not None and "local backend" in resolved.notice


def test_file_then_environment_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, '[agent]\nvoice = "alena"\n[vad]\nsilence_duration_ms = 700\n')
    env = {"TELEPHONY_AGENT_VAD_SILENCE_DURATION_MS": "900"}
    settings = load_settings(path, environ=env)
    assert settings.agent.voice == "alena"
    assert settings.vad.silence_duration_ms == 900


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[provider]\nname = "yandx"\n', "provider.name = 'yandx': expected one of"),
        ("[vad]\nthreshold = 3\n", "vad.threshold = 3.0: expected a value from 0.0 to 1.0"),
        (
            '[vad]\nsilence_duration_ms = "soon"\n',
            "vad.silence_duration_ms = 'soon': expected an integer",
        ),
        ("[agent]\nvoise = 1\n", "unknown key agent.voise (did you mean agent.voice?)"),
        ("[agnet]\n", "unknown section [agnet] (did you mean [agent]?)"),
        ('[provider]\napi_key = "x"\n', "provider.api_key is a secret and is never read from here"),
        ("[vad\n", "not valid TOML"),
        (
            '[log]\nlevels = "telephony_agent.sip=loud"\n',
            "log.levels = 'telephony_agent.sip=loud': 'telephony_agent.sip=loud' is not "
            "MODULE=LEVEL",
        ),
        (
            "[server]\ndrain_timeout_s = -1\n",
            "server.drain_timeout_s = -1.0: expected a value from 0.0 to 86400.0",
        ),
        (
            '[http]\ntls_certificate = "cert.pem"\n',
            "http.tls_certificate is set alone: expected both",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ={})
    assert expected in str(info.value)


def test_bad_environment_value_names_the_variable_key() -> None:
    with pytest.raises(ConfigError, match=r"realtime\.chunk_ms = 'x': expected an integer"):
        load_settings(None, environ={"TELEPHONY_AGENT_REALTIME_CHUNK_MS": "x"})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_yandex_needs_folder_and_key(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[provider]\nname = "yandex"\n'), environ={})
    with pytest.raises(ConfigError, match="needs an API key: set TELEPHONY_AGENT_API_KEY"):
        resolve_provider(settings, {})
    resolved = resolve_provider(settings, {"YANDEX_API_KEY": FAKE_KEY})
    with pytest.raises(ConfigError, match=r"provider\.folder is required"):
        remote_endpoint(settings, resolved)


def test_yandex_endpoint_is_data(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, '[provider]\nname = "yandex"\nfolder = "b1gfolder"\n'), environ={}
    )
    resolved = resolve_provider(settings, {"YANDEX_API_KEY": FAKE_KEY})
    endpoint = remote_endpoint(settings, resolved)
    assert endpoint.url == (
        "wss://ai.api.cloud.yandex.net/v1/realtime?model=gpt://b1gfolder/speech-realtime-250923"
    )
    assert endpoint.headers == {"Authorization": f"Api-Key {FAKE_KEY}"}
    assert endpoint.dialect == Dialect.YANDEX
    assert FAKE_KEY not in repr(endpoint) and FAKE_KEY not in repr(resolved)


def test_yandex_legacy_and_openai_presets(tmp_path: Path) -> None:
    legacy = load_settings(
        write(tmp_path, '[provider]\nname = "yandex-legacy"\nfolder = "f1"\n'), environ={}
    )
    endpoint = remote_endpoint(legacy, resolve_provider(legacy, {"YANDEX_API_KEY": FAKE_KEY}))
    assert endpoint.url.startswith("wss://rest-assistant.api.cloud.yandex.net/v1/realtime/openai")
    assert endpoint.headers["Authorization"] == f"api-key {FAKE_KEY}"
    openai = load_settings(None, environ={})
    resolved = resolve_provider(openai, {"OPENAI_API_KEY": FAKE_KEY})
    assert resolved.name == "openai"
    endpoint = remote_endpoint(openai, resolved)
    assert endpoint.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert endpoint.headers["Authorization"] == f"Bearer {FAKE_KEY}"


def test_custom_provider_with_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(FAKE_KEY + "\n")
    settings = load_settings(
        write(
            tmp_path,
            '[provider]\nname = "custom"\nurl = "wss://example.invalid/rt?model=m"\n'
            'dialect = "beta"\nauth_header = "X-Key"\nauth_scheme = ""\n'
            f'api_key_file = "{key_file}"\n',
        ),
        environ={},
    )
    endpoint = remote_endpoint(settings, resolve_provider(settings, {}))
    assert endpoint.headers == {"X-Key": FAKE_KEY}
    assert endpoint.dialect == Dialect.BETA


def test_custom_provider_rejects_http_url(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, '[provider]\nname = "custom"\nurl = "https://example.invalid"\n'),
        environ={},
    )
    with pytest.raises(ConfigError, match="expected a ws:// or wss:// URL"):
        remote_endpoint(settings, resolve_provider(settings, {}))


def test_effective_config_masks_the_key(tmp_path: Path) -> None:
    settings = load_settings(None, environ={})
    resolved = resolve_provider(settings, {"TELEPHONY_AGENT_API_KEY": FAKE_KEY})
    text = settings_as_toml(settings, resolved)
    assert FAKE_KEY not in text
    assert "*** (set)" in text


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bob:pg-secret-9@db.internal/calls",
        "postgres://bob@db/calls?password=pg-secret-9",
    ],
)
def test_a_records_url_with_a_password_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={"TELEPHONY_AGENT_RECORDS_DATABASE": url})
    message = str(caught.value)
    assert message.startswith("records.database = ") and "PGPASSWORD" in message
    assert "pg-secret-9" not in message


@pytest.mark.parametrize("url", ["mysql://db/calls", "calls.db", "sqlite:/calls.db"])
def test_a_records_url_must_name_sqlite_or_postgresql(url: str) -> None:
    with pytest.raises(ConfigError, match=r"expected sqlite:///PATH or postgresql://"):
        load_settings(None, environ={"TELEPHONY_AGENT_RECORDS_DATABASE": url})


def test_records_urls_without_a_password_are_taken() -> None:
    for url in ("sqlite:///data/calls.db", "postgresql://bob@db:5432/calls"):
        settings = load_settings(None, environ={"TELEPHONY_AGENT_RECORDS_DATABASE": url})
        assert settings.records.database == url


def test_max_session_s_defaults_to_the_providers_limit(tmp_path: Path) -> None:
    from telephony_agent.switchboard.session import max_session_s

    defaults = load_settings(None, environ={})
    assert max_session_s(defaults, "yandex") == 290.0
    assert max_session_s(defaults, "yandex-legacy") == 290.0
    assert max_session_s(defaults, "openai") is None
    assert max_session_s(defaults, "local") is None
    chosen = load_settings(write(tmp_path, "[provider]\nmax_session_s = 120\n"), environ={})
    assert max_session_s(chosen, "openai") == 120.0
    off = load_settings(None, environ={"TELEPHONY_AGENT_PROVIDER_MAX_SESSION_S": "0"})
    assert max_session_s(off, "yandex") is None
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "[provider]\nmax_session_s = -5\n"), environ={})
    assert str(info.value) == (
        "provider.max_session_s = -5.0: expected a value from 0.0 to 86400.0"
    )


def test_turns_defaults_and_overrides(tmp_path: Path) -> None:
    defaults = load_settings(None, environ={}).turns
    assert (defaults.min_speech_ms, defaults.duck_db, defaults.echo_guard) == (250, -12.0, True)
    assert defaults.echo_window_ms == 600 and defaults.local_vad == "energy"
    assert "mm-hm" in defaults.backchannels and "угу" in defaults.backchannels
    path = write(
        tmp_path,
        '[turns]\nmin_speech_ms = 0\necho_guard = false\nbackchannels = "yes, please"\n',
    )
    env = {"TELEPHONY_AGENT_TURNS_DUCK_DB": "-20"}
    turns = load_settings(path, environ=env).turns
    assert (turns.min_speech_ms, turns.echo_guard, turns.duck_db) == (0, False, -20.0)
    assert turns.backchannels == "yes, please"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[turns]\nmin_speech_ms = -5\n", "turns.min_speech_ms = -5: expected a value from 0"),
        ("[turns]\nduck_db = 6\n", "turns.duck_db = 6.0: expected a value from -60.0 to 0.0"),
        ("[turns]\necho_window_ms = 50\n", "turns.echo_window_ms = 50: expected a value from"),
        ('[turns]\nlocal_vad = "silero"\n', "turns.local_vad = 'silero': expected one of"),
        (
            '[turns]\nbackchannels = "mm-hm, 42"\n',
            "turns.backchannels = 'mm-hm, 42': '42' has no letters, expected comma-separated",
        ),
        ('[turns]\necho_guard = "yes"\n', "turns.echo_guard = 'yes': expected true or false"),
    ],
)
def test_bad_turns_values_name_the_key_in_one_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ={})
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_the_webrtc_detector_without_its_package_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "webrtcvad", None)
    with pytest.raises(ConfigError, match=r"turns.local_vad = 'webrtc': expected the webrtcvad"):
        load_settings(write(tmp_path, '[turns]\nlocal_vad = "webrtc"\n'), environ={})
