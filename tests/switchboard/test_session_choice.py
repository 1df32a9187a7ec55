"""The session a call asks for: G.711 passthrough by provider and leg, the output rate
"leg", and the settings behind them (model lists, extra, semantic VAD), with one-line
errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from telephony_agent.config import Settings, load_settings
from telephony_agent.config_provider import remote_endpoint, resolve_provider, settings_as_toml
from telephony_agent.errors import ConfigError
from telephony_agent.media.leg import LegFormat
from telephony_agent.realtime.dialect import Dialect
from telephony_agent.switchboard.session import (
    audio_format_for,
    output_rate_for,
    session_config,
)

FAKE_KEY = "sk-fake-key-for-tests-0000"
PCMU = LegFormat("PCMU", 8000)
PCMA = LegFormat("PCMA", 8000)
OPUS = LegFormat("opus", 48000)


def settings_from(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, environ=environ or {})


@pytest.mark.parametrize(
    ("mode", "provider", "dialect", "leg", "expected"),
    [
        ("auto", "openai", Dialect.GA, PCMU, "pcmu"),
        ("auto", "openai", Dialect.GA, PCMA, "pcma"),
        ("auto", "local", Dialect.GA, PCMU, "pcmu"),
        ("auto", "local", Dialect.YANDEX, PCMU, "pcm"),
        ("auto", "yandex", Dialect.YANDEX, PCMU, "pcm"),
        ("auto", "custom", Dialect.GA, PCMU, "pcm"),
        ("auto", "openai", Dialect.GA, OPUS, "pcm"),
        ("auto", "openai", Dialect.GA, None, "pcm"),
        ("on", "yandex", Dialect.YANDEX, PCMU, "pcmu"),
        ("on", "custom", Dialect.GA, PCMA, "pcma"),
        ("on", "openai", Dialect.GA, OPUS, "pcm"),
        ("off", "openai", Dialect.GA, PCMU, "pcm"),
    ],
)
def test_passthrough_by_provider_and_leg(
    tmp_path: Path,
    mode: str,
    provider: str,
    dialect: Dialect,
    leg: LegFormat | None,
    expected: str,
) -> None:
    settings = settings_from(tmp_path, f'[provider]\ng711_passthrough = "{mode}"\n')
    assert audio_format_for(settings, provider, dialect, leg) == expected


@pytest.mark.parametrize(
    ("provider", "dialect", "leg", "expected"),
    [
        ("yandex", Dialect.YANDEX, PCMU, 8000),
        ("yandex", Dialect.YANDEX, LegFormat("G722", 16000), 16000),
        ("yandex", Dialect.YANDEX, OPUS, 48000),
        ("local", Dialect.GA, OPUS, 48000),
        ("openai", Dialect.GA, PCMU, 24000),  # OpenAI's PCM is 24 kHz only
        ("yandex", Dialect.YANDEX, None, 24000),  # not known yet (an offer in the 200)
        ("custom", Dialect.BETA, OPUS, 24000),  # beta's pcm16 has no rate
    ],
)
def test_output_rate_leg(
    tmp_path: Path, provider: str, dialect: Dialect, leg: LegFormat | None, expected: int
) -> None:
    settings = settings_from(tmp_path, '[agent]\noutput_rate = "leg"\n')
    assert output_rate_for(settings, provider, dialect, leg) == expected


def test_session_config_carries_extra_vad_and_noise_reduction(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        "[provider]\n"
        "extra = { max_output_tokens = 200, audio = { output = { speed = 1.1 } } }\n"
        "[vad]\n"
        'type = "semantic_vad"\n'
        'eagerness = "low"\n'
        "[agent]\n"
        'noise_reduction = "near_field"\n',
    )
    config = session_config(settings, "openai", leg=PCMU)
    assert config.extra == {"max_output_tokens": 200, "audio": {"output": {"speed": 1.1}}}
    assert config.vad is not None
    assert (config.vad.type, config.vad.eagerness) == ("semantic_vad", "low")
    assert config.noise_reduction == "near_field"
    assert config.audio_format == "pcmu"
    # The extra table is the call's own copy.
    config.extra["audio"]["output"]["speed"] = 2.0
    assert session_config(settings, "openai").extra["audio"]["output"]["speed"] == 1.1


def test_model_list_becomes_endpoints_tried_in_order(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        '[provider]\nname = "yandex"\nfolder = "b1gfolder"\n'
        'model = ["speech-realtime-260528", "speech-realtime-250923"]\n',
        {"YANDEX_API_KEY": FAKE_KEY},
    )
    resolved = resolve_provider(settings, {"YANDEX_API_KEY": FAKE_KEY})
    endpoint = remote_endpoint(settings, resolved)
    chain = [endpoint, *endpoint.alternates]
    assert [e.model for e in chain] == ["speech-realtime-260528", "speech-realtime-250923"]
    assert chain[1].url.endswith("model=gpt://b1gfolder/speech-realtime-250923")
    assert all(e.headers == endpoint.headers for e in chain)
    text = settings_as_toml(settings, resolved)
    assert 'model = ["speech-realtime-260528", "speech-realtime-250923"]' in text
    assert FAKE_KEY not in text


def test_settings_from_the_environment(tmp_path: Path) -> None:
    env = {
        "TELEPHONY_AGENT_PROVIDER_MODEL": "a, b",
        "TELEPHONY_AGENT_PROVIDER_EXTRA": '{"max_output_tokens": 64}',
        "TELEPHONY_AGENT_PROVIDER_G711_PASSTHROUGH": "off",
        "TELEPHONY_AGENT_AGENT_OUTPUT_RATE": "leg",
    }
    settings = settings_from(tmp_path, "", env)
    assert settings.provider.model == ("a", "b")
    assert settings.provider.extra == {"max_output_tokens": 64}
    assert settings.provider.g711_passthrough == "off"
    assert settings.agent.output_rate == "leg"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('[provider]\ng711_passthrough = "yes"\n', "provider.g711_passthrough = 'yes'"),
        ("[provider]\nmodel = []\n", "provider.model = []"),
        ("[provider]\nmodel = [1]\n", "provider.model = [1]"),
        ('[provider]\nextra = "x"\n', "provider.extra = 'x'"),
        ('[agent]\noutput_rate = "fast"\n', "agent.output_rate = 'fast'"),
        ("[agent]\noutput_rate = 4000\n", "agent.output_rate = 4000"),
        ('[agent]\nnoise_reduction = "loud"\n', "agent.noise_reduction = 'loud'"),
        ('[vad]\ntype = "semantic"\n', "vad.type = 'semantic'"),
        ('[vad]\ntype = "semantic_vad"\nidle_timeout_ms = 5000\n', "vad.idle_timeout_ms = 5000"),
        (
            '[provider]\nname = "yandex"\n[vad]\ntype = "semantic_vad"\n',
            "vad.type = 'semantic_vad'",
        ),
        ('[local]\ndialect = "klingon"\n', "local.dialect = 'klingon'"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(tmp_path: Path, text: str, names: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from(tmp_path, text, {"YANDEX_API_KEY": FAKE_KEY})
    message = str(info.value)
    assert names in message and "expected" in message and "\n" not in message


def test_env_extra_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from(tmp_path, "", {"TELEPHONY_AGENT_PROVIDER_EXTRA": "{oops"})
    assert "provider.extra" in str(info.value) and "JSON object" in str(info.value)
