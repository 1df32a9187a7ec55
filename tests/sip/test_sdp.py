"""SDP parsing, serialisation and offer/answer negotiation against real-world style bodies."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony_agent.sip.sdp import (
    MAX_SDP_BYTES,
    MAX_SDP_LINES,
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Negotiated,
    NoCommonCodec,
    Rtcp,
    RtpMap,
    SdpError,
    SessionDescription,
    accept_answer,
    build_offer,
    negotiate_answer,
    parse_sdp,
    with_direction,
)


def sdp(*lines: str) -> str:
    return "\r\n".join(lines) + "\r\n"


# A carrier trunk: static 0/8 without rtpmap, telephone-event, ptime, vendor attribute.
TRUNK_OFFER = sdp(
    "v=0",
    "o=Sonus_UAC 245236 140566 IN IP4 203.0.113.10",
    "s=SIP Media Capabilities",
    "c=IN IP4 203.0.113.20",
    "t=0 0",
    "m=audio 18456 RTP/AVP 0 8 101",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=sendrecv",
    "a=maxptime:30",
    "a=ptime:20",
    "a=silenceSupp:off - - - -",
)

# A desktop softphone in the style of baresip: every codec mapped, opus at 96, rtcp-mux.
BARESIP_OFFER = sdp(
    "v=0",
    "o=- 1391583041 1939108512 IN IP4 192.168.1.50",
    "s=-",
    "c=IN IP4 192.168.1.50",
    "t=0 0",
    "a=tool:baresip 3.10.1",
    "m=audio 10346 RTP/AVP 96 9 0 8 101",
    "b=AS:128",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 stereo=1;sprop-stereo=1",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=rtcp-mux",
    "a=sendrecv",
    "a=label:1",
    "a=ssrc:1422468104 cname:84bb8fe5-0f3e-4a1e-9a1d-8d65c9f35f5c",
    "a=ptime:20",
)

# A browser's audio list as a WebRTC gateway relays it over plain RTP.
CHROME_STYLE_OFFER = sdp(
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=msid-semantic: WMS",
    "m=audio 40000 RTP/AVP 111 63 9 0 8 13 110 126",
    "c=IN IP4 198.51.100.7",
    "a=rtcp:40001 IN IP4 198.51.100.7",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=mid:0",
    "a=sendrecv",
)

# The same browser offer as sent natively: DTLS-SRTP, which we cannot key.
CHROME_NATIVE_OFFER = CHROME_STYLE_OFFER.replace("RTP/AVP", "UDP/TLS/RTP/SAVPF")

MEDIA_LEVEL_C_OFFER = sdp(
    "v=0",
    "o=user 1 1 IN IP4 10.1.1.1",
    "s=call",
    "t=0 0",
    "m=audio 30000 RTP/AVP 8 0",
    "c=IN IP4 10.1.1.2",
    "a=ptime:30",
)

VIDEO_AND_AUDIO_OFFER = sdp(
    "v=0",
    "o=- 7 7 IN IP4 172.16.0.5",
    "s=-",
    "c=IN IP4 172.16.0.5",
    "t=0 0",
    "m=video 50000 RTP/AVP 96 34",
    "a=rtpmap:96 H264/90000",
    "a=fmtp:96 profile-level-id=42e01f",
    "m=audio 50002 RTP/AVP 0 101",
    "a=rtpmap:101 telephone-event/8000",
    "m=application 50004 UDP/BFCP *",
)

ALL_OFFERS = [
    TRUNK_OFFER,
    BARESIP_OFFER,
    CHROME_STYLE_OFFER,
    CHROME_NATIVE_OFFER,
    MEDIA_LEVEL_C_OFFER,
    VIDEO_AND_AUDIO_OFFER,
]


def answer(offer: str, **kwargs: object) -> Negotiated:
    options: dict[str, object] = {
        "local_address": "192.0.2.1",
        "local_port": 20000,
        "session_id": 42,
        "session_version": 1,
    }
    options.update(kwargs)
    return negotiate_answer(parse_sdp(offer), **options)  # type: ignore[arg-type]


def audio_offer(formats: str, *attributes: str, connection: str = "10.0.0.9") -> str:
    return sdp(
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.9",
        "s=-",
        f"c=IN IP4 {connection}",
        "t=0 0",
        f"m=audio 4000 RTP/AVP {formats}",
        *attributes,
    )


# ---------------------------------------------------------------------- parsing


def test_trunk_offer_resolves_static_payload_types_without_rtpmap() -> None:
    desc = parse_sdp(TRUNK_OFFER.encode())
    (audio,) = desc.media
    assert desc.origin.username == "Sonus_UAC"
    assert desc.origin.session_id == 245236
    assert desc.origin.session_version == 140566
    assert desc.session_name == "SIP Media Capabilities"
    assert desc.connection == Connection("203.0.113.20")
    assert (audio.media, audio.port, audio.proto) == ("audio", 18456, "RTP/AVP")
    assert audio.formats == ("0", "8", "101")
    assert audio.payload_types == (0, 8, 101)
    assert audio.rtpmaps == (RtpMap(101, "telephone-event", 8000),)
    assert audio.rtpmap_for(0) == RtpMap(0, "PCMU", 8000)
    assert audio.rtpmap_for(8) == RtpMap(8, "PCMA", 8000)
    assert audio.fmtp_for(101) == "0-15"
    assert audio.fmtp_for(0) is None
    assert (audio.ptime, audio.maxptime, audio.direction) == (20, 30, "sendrecv")
    assert audio.attributes == (Attribute("silenceSupp", "off - - - -"),)


def test_static_table_covers_rfc3551_types_we_do_not_negotiate() -> None:
    media = parse_sdp(audio_offer("3 18 9")).media[0]
    assert media.rtpmap_for(3) == RtpMap(3, "GSM", 8000)
    assert media.rtpmap_for(18) == RtpMap(18, "G729", 8000)
    assert media.rtpmap_for(9) == RtpMap(9, "G722", 8000)
    assert media.rtpmap_for(96) is None


def test_baresip_offer_keeps_session_and_media_extras() -> None:
    desc = parse_sdp(BARESIP_OFFER)
    audio = desc.media[0]
    assert desc.attributes == (Attribute("tool", "baresip 3.10.1"),)
    assert audio.other_lines == (("b", "AS:128"),)
    assert audio.rtpmap_for(96) == RtpMap(96, "opus", 48000, 2)
    assert audio.fmtp_for(96) == "stereo=1;sprop-stereo=1"
    assert Attribute("rtcp-mux") in audio.attributes
    assert Attribute("ssrc", "1422468104 cname:84bb8fe5-0f3e-4a1e-9a1d-8d65c9f35f5c") in (
        audio.attributes
    )


def test_chrome_style_offer_parses_rtcp_and_media_level_connection() -> None:
    desc = parse_sdp(CHROME_STYLE_OFFER)
    audio = desc.media[0]
    assert desc.connection is None
    assert desc.connection_for(audio) == Connection("198.51.100.7")
    assert audio.rtcp == Rtcp(40001, Connection("198.51.100.7"))
    assert desc.origin.session_id == 4611731400430051336
    assert audio.rtpmap_for(110) == RtpMap(110, "telephone-event", 48000)
    assert desc.attributes == (Attribute("msid-semantic", " WMS"),)


def test_media_level_connection_overrides_session_level() -> None:
    desc = parse_sdp(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=audio 4000 RTP/AVP 0",
            "c=IN IP4 10.0.0.2",
            "m=audio 4002 RTP/AVP 0",
        )
    )
    first, second = desc.media
    assert desc.connection_for(first).host == "10.0.0.2"  # type: ignore[union-attr]
    assert desc.connection_for(second).host == "10.0.0.1"  # type: ignore[union-attr]


def test_ipv6_connection_and_multicast_suffix() -> None:
    desc = parse_sdp(audio_offer("0").replace("c=IN IP4 10.0.0.9", "c=IN IP6 2001:db8::7"))
    assert desc.connection == Connection("2001:db8::7", "IP6")
    multicast = parse_sdp(audio_offer("0", connection="224.2.36.42/127"))
    assert multicast.connection is not None
    assert multicast.connection.host == "224.2.36.42"


def test_bare_lf_str_and_bytes_parse_alike() -> None:
    assert parse_sdp(TRUNK_OFFER.replace("\r\n", "\n")) == parse_sdp(TRUNK_OFFER.encode())


def test_port_zero_stream_needs_no_connection_or_formats() -> None:
    desc = parse_sdp(sdp("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0", "m=video 0 RTP/AVP"))
    assert desc.media[0].port == 0
    assert desc.media[0].formats == ()


def test_direction_defaults_and_overrides() -> None:
    desc = parse_sdp(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "a=sendonly",
            "m=audio 4000 RTP/AVP 0",
            "m=audio 4002 RTP/AVP 0",
            "a=inactive",
        )
    )
    assert desc.direction == "sendonly"
    assert [desc.direction_for(m) for m in desc.media] == ["sendonly", "inactive"]
    plain = parse_sdp(audio_offer("0"))
    assert plain.direction_for(plain.media[0]) == "sendrecv"


def test_non_rtp_media_keep_their_formats_and_attributes() -> None:
    desc = parse_sdp(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=image 4000 udptl t38",
            "a=T38FaxVersion:0",
            "a=fmtp:t38 whatever",
        )
    )
    image = desc.media[0]
    assert not image.is_rtp
    assert image.payload_types == ()
    assert image.attributes == (Attribute("T38FaxVersion", "0"), Attribute("fmtp", "t38 whatever"))


def test_fractional_ptime_is_accepted() -> None:
    assert parse_sdp(audio_offer("0", "a=ptime:20.0")).media[0].ptime == 20


# ---------------------------------------------------------------------- serialisation


@pytest.mark.parametrize("offer", ALL_OFFERS)
def test_round_trip_parse_serialize_parse(offer: str) -> None:
    first = parse_sdp(offer)
    text = first.to_text()
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    assert parse_sdp(text) == first
    assert parse_sdp(first.to_bytes()) == first


def test_serialization_uses_rfc_field_order() -> None:
    text = parse_sdp(BARESIP_OFFER).to_text()
    letters = [line[0] for line in text.split("\r\n") if line]
    session = letters[: letters.index("m")]
    assert session == ["v", "o", "s", "c", "t", "a"]
    media = letters[letters.index("m") :]
    assert media[:2] == ["m", "b"]
    assert set(media[2:]) == {"a"}


def test_rtpmap_and_fmtp_follow_the_format_list_whatever_the_input_order() -> None:
    desc = parse_sdp(
        audio_offer(
            "96 101",
            "a=fmtp:101 0-16",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:96 useinbandfec=1",
            "a=rtpmap:96 opus/48000/2",
        )
    )
    lines = [line for line in desc.to_text().split("\r\n") if line.startswith("a=")]
    assert lines == [
        "a=rtpmap:96 opus/48000/2",
        "a=fmtp:96 useinbandfec=1",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
    ]


# ---------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "SDP is empty"),
        ("\r\n\r\n", "SDP is empty"),
        (sdp("o=- 1 1 IN IP4 10.0.0.1", "v=0"), "must start with v=0"),
        (sdp("v=1", "o=- 1 1 IN IP4 10.0.0.1"), "unsupported SDP version"),
        (sdp("v=0", "s=-", "t=0 0", "m=audio 0 RTP/AVP 0"), "no o= line"),
        (sdp("v=0", "o=- 1 1 IN IP4 10.0.0.1", "t=0 0", "m=audio 0 RTP/AVP 0"), "no s= line"),
        (sdp("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "m=audio 0 RTP/AVP 0"), "no t= line"),
        (sdp("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0"), "no m= line"),
        (sdp("v=0", "o=- x 1 IN IP4 10.0.0.1", "s=-"), "line 2: o= session id 'x' is not a number"),
        (sdp("v=0", "o=- 1 1 IN IP4", "s=-"), "o= needs 6 fields"),
        (audio_offer("0").replace("4000", "70000"), "port 70000 is out of range"),
        (audio_offer("0").replace("4000", "4k"), "port '4k' is not a number"),
        (audio_offer("zero"), "line 6: m=audio: payload type 'zero' is not an integer"),
        (audio_offer("0 200"), "payload type 200 is out of range"),
        (audio_offer("0 0"), "lists a format twice"),
        (audio_offer(""), "m=audio lists no formats"),
        (audio_offer("0").replace("m=audio 4000 RTP/AVP 0", "m=audio 4000"), "m= needs at least"),
        (audio_offer("0").replace("c=IN IP4 10.0.0.9\r\n", ""), "m=audio .* has no c= line"),
        (audio_offer("0", connection="999.1.1.1"), "bad IP4 address"),
        (audio_offer("0", connection="10.0.0.1 extra"), "c= needs 3 fields"),
        (audio_offer("0").replace("c=IN", "c=ATM"), "network type 'ATM' is not IN"),
        (audio_offer("0").replace("c=IN IP4", "c=IN IPX"), "address type 'IPX'"),
        (audio_offer("0", "c=IN IP4 10.0.0.1", "c=IN IP4 10.0.0.2"), "second c= line"),
        (audio_offer("0", "a=rtpmap:0 PCMU"), "encoding must be"),
        (audio_offer("0", "a=rtpmap:0 PCMU/fast"), "clock rate 'fast' is not a number"),
        (audio_offer("0", "a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/8000"), "second rtpmap"),
        (audio_offer("0", "a=fmtp:x 1"), "a=fmtp: payload type 'x' is not an integer"),
        (audio_offer("0", "a=ptime:soon"), "a=ptime 'soon' is not a number"),
        (audio_offer("0", "a=ptime:0"), "a=ptime must be at least 1 ms"),
        (audio_offer("0", "a=rtcp:port"), "a=rtcp port 'port' is not a number"),
        (audio_offer("0", "a=sendonly", "a=recvonly"), "conflicting direction attributes"),
        (audio_offer("0", "a=:x"), "bad attribute name"),
        (audio_offer("0", "s=inside"), "s= line inside an m=audio section"),
        (audio_offer("0", "x=1"), "unknown line type x="),
        (audio_offer("0", "hello"), r"line 7 is not '<letter>=<value>'"),
        (audio_offer("0", "a=x\ry"), "bare CR"),
        (audio_offer("0", "a=x\x00"), "NUL"),
    ],
)
def test_malformed_sdp_raises_sdp_error_with_reason(body: str, reason: str) -> None:
    with pytest.raises(SdpError, match=reason):
        parse_sdp(body)


def test_absurd_sizes_are_refused() -> None:
    with pytest.raises(SdpError, match="larger than"):
        parse_sdp(b"v=0\r\n" + b"a=x\r\n" * (MAX_SDP_BYTES // 5))
    with pytest.raises(SdpError, match="larger than"):
        parse_sdp("é" * (MAX_SDP_BYTES // 2 + 1))
    with pytest.raises(SdpError, match=f"more than {MAX_SDP_LINES} lines"):
        parse_sdp("\n" * (MAX_SDP_LINES + 1))
    with pytest.raises(SdpError, match="longer than"):
        parse_sdp(audio_offer("0", "a=x:" + "y" * 5000))
    with pytest.raises(SdpError, match="more than 64 m= lines"):
        parse_sdp(audio_offer("0", *["m=audio 0 RTP/AVP 0"] * 64))


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(SdpError, match="not valid UTF-8"):
        parse_sdp(b"v=0\r\ns=\xff\r\n")


# ---------------------------------------------------------------------- answering (UAS)


def test_trunk_offer_gets_pcma_with_echoed_telephone_event() -> None:
    n = answer(TRUNK_OFFER)
    assert (n.codec, n.payload_type, n.clock_rate, n.channels) == ("PCMA", 8, 8000, 1)
    assert (n.telephone_event_payload_type, n.telephone_event_clock_rate) == (101, 8000)
    assert n.remote_rtp == ("203.0.113.20", 18456)
    assert n.remote_ptime == 20
    assert (n.can_send, n.can_receive, n.on_hold, n.direction) == (True, True, False, "sendrecv")
    assert n.sample_rate == 8000
    assert n.answer.to_text() == sdp(
        "v=0",
        "o=- 42 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "m=audio 20000 RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    )


def test_baresip_offer_gets_opus_at_the_offered_payload_type() -> None:
    n = answer(BARESIP_OFFER)
    assert (n.codec, n.payload_type, n.clock_rate, n.channels) == ("opus", 96, 48000, 2)
    assert n.telephone_event_payload_type == 101
    assert n.telephone_event_clock_rate == 8000  # only 8000 offered: still accepted
    assert n.remote_fmtp == "stereo=1;sprop-stereo=1"
    assert n.sample_rate == 48000
    audio = n.answer.media[0]
    assert audio.formats == ("96", "101")
    assert audio.rtpmap_for(96) == RtpMap(96, "opus", 48000, 2)
    assert audio.fmtp_for(96) == "minptime=10;useinbandfec=1"


def test_chrome_style_offer_gets_opus_and_48k_telephone_event() -> None:
    n = answer(CHROME_STYLE_OFFER)
    assert (n.codec, n.payload_type) == ("opus", 111)
    assert (n.telephone_event_payload_type, n.telephone_event_clock_rate) == (110, 48000)
    assert n.remote_rtp == ("198.51.100.7", 40000)
    assert n.answer.media[0].formats == ("111", "110")


def test_chrome_style_offer_with_g711_preference_gets_8k_telephone_event() -> None:
    n = answer(CHROME_STYLE_OFFER, codec_preference=("PCMU",))
    assert (n.codec, n.payload_type) == ("PCMU", 0)
    assert (n.telephone_event_payload_type, n.telephone_event_clock_rate) == (126, 8000)


def test_dtls_srtp_offer_is_not_acceptable() -> None:
    with pytest.raises(NoCommonCodec, match="UDP/TLS/RTP/SAVPF"):
        answer(CHROME_NATIVE_OFFER)


def test_media_level_connection_gives_remote_address() -> None:
    n = answer(MEDIA_LEVEL_C_OFFER)
    assert (n.codec, n.remote_rtp, n.remote_ptime) == ("PCMA", ("10.1.1.2", 30000), 30)
    assert n.telephone_event_payload_type is None
    assert n.answer.media[0].formats == ("8",)


def test_video_and_other_streams_are_rejected_in_place() -> None:
    n = answer(VIDEO_AND_AUDIO_OFFER)
    video, audio, app = n.answer.media
    assert n.media_index == 1
    assert (video.media, video.port, video.proto, video.formats) == (
        "video",
        0,
        "RTP/AVP",
        ("96", "34"),
    )
    assert (audio.port, audio.formats) == (20000, ("0", "101"))
    assert (app.media, app.port, app.formats) == ("application", 0, ("*",))
    assert parse_sdp(n.answer.to_bytes()) == n.answer


def test_first_usable_audio_stream_wins_and_the_rest_are_rejected() -> None:
    offer = sdp(
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 18",
        "m=audio 4002 RTP/AVP 0",
        "m=audio 4004 RTP/AVP 8",
    )
    n = answer(offer)
    assert n.media_index == 1
    assert (n.codec, n.remote_rtp) == ("PCMU", ("10.0.0.1", 4002))
    assert [m.port for m in n.answer.media] == [0, 20000, 0]


def test_avpf_is_accepted_and_echoed() -> None:
    n = answer(audio_offer("0").replace("RTP/AVP", "RTP/AVPF"))
    assert n.answer.media[0].proto == "RTP/AVPF"


def test_dynamic_payload_type_for_a_static_codec_is_echoed() -> None:
    n = answer(audio_offer("98 99", "a=rtpmap:98 pcmu/8000", "a=rtpmap:99 telephone-event/8000"))
    assert (n.codec, n.payload_type, n.telephone_event_payload_type) == ("PCMU", 98, 99)
    assert n.answer.media[0].formats == ("98", "99")


@pytest.mark.parametrize(
    ("preference", "codec", "payload_type"),
    [
        (("opus", "G722", "PCMA", "PCMU"), "opus", 96),
        (("G722", "opus"), "G722", 9),
        (("pcmu", "pcma"), "PCMU", 0),
        (("PCMA",), "PCMA", 8),
    ],
)
def test_our_preference_order_decides_among_offered_codecs(
    preference: tuple[str, ...], codec: str, payload_type: int
) -> None:
    n = answer(BARESIP_OFFER, codec_preference=preference)
    assert (n.codec, n.payload_type) == (codec, payload_type)


def test_g722_reports_its_16k_sample_rate_and_8000_clock() -> None:
    n = answer(BARESIP_OFFER, codec_preference=("G722",))
    assert (n.clock_rate, n.sample_rate) == (8000, 16000)


def test_bad_preference_is_a_programming_error_not_a_488() -> None:
    for preference in (("G729",), (), ("PCMU", "pcmu")):
        with pytest.raises(ValueError) as info:
            answer(TRUNK_OFFER, codec_preference=preference)
        assert not isinstance(info.value, SdpError)


@pytest.mark.parametrize(
    ("formats", "attributes"),
    [
        ("18 101", ("a=rtpmap:101 telephone-event/8000",)),
        ("96", ("a=rtpmap:96 opus/48000/1",)),
        ("96", ("a=rtpmap:96 opus/16000/2",)),
        ("97", ()),  # dynamic type with no rtpmap means nothing
        ("101", ("a=rtpmap:101 telephone-event/8000",)),
    ],
)
def test_no_common_codec_is_refused_for_488(formats: str, attributes: tuple[str, ...]) -> None:
    with pytest.raises(NoCommonCodec, match="no common codec") as info:
        answer(audio_offer(formats, *attributes))
    assert isinstance(info.value, SdpError)


def test_488_reason_names_what_was_offered() -> None:
    with pytest.raises(NoCommonCodec, match="G729/8000"):
        answer(audio_offer("18"))


def test_disabled_and_srtp_audio_streams_are_not_chosen() -> None:
    with pytest.raises(NoCommonCodec):
        answer(audio_offer("0").replace("4000", "0"))
    with pytest.raises(NoCommonCodec):
        answer(audio_offer("0").replace("RTP/AVP", "RTP/SAVP"))


def test_opus_with_only_48k_telephone_event_offered_keeps_it() -> None:
    n = answer(
        audio_offer("111 110", "a=rtpmap:111 opus/48000/2", "a=rtpmap:110 telephone-event/48000")
    )
    assert (n.telephone_event_payload_type, n.telephone_event_clock_rate) == (110, 48000)


def test_g711_with_only_48k_telephone_event_offered_drops_it() -> None:
    n = answer(audio_offer("0 110", "a=rtpmap:110 telephone-event/48000"))
    assert n.telephone_event_payload_type is None
    assert n.answer.media[0].formats == ("0",)


@pytest.mark.parametrize(
    ("offered", "answered", "can_send", "can_receive", "on_hold"),
    [
        ("sendrecv", "sendrecv", True, True, False),
        ("sendonly", "recvonly", False, True, True),
        ("recvonly", "sendonly", True, False, False),
        ("inactive", "inactive", False, False, True),
    ],
)
def test_direction_mapping_rfc3264(
    offered: Direction, answered: Direction, can_send: bool, can_receive: bool, on_hold: bool
) -> None:
    for offer in (
        audio_offer("0", f"a={offered}"),
        audio_offer("0").replace("t=0 0", f"t=0 0\r\na={offered}"),
    ):
        n = answer(offer)
        assert n.answer.media[0].direction == answered
        assert (n.can_send, n.can_receive, n.on_hold) == (can_send, can_receive, on_hold)
        assert n.direction == answered


@pytest.mark.parametrize(
    ("offered", "answered"),
    [("sendrecv", "recvonly"), ("recvonly", "inactive"), ("sendonly", "recvonly")],
)
def test_old_style_hold_with_zero_address(offered: Direction, answered: Direction) -> None:
    n = answer(audio_offer("0", f"a={offered}", connection="0.0.0.0"))
    assert n.answer.media[0].direction == answered
    assert n.on_hold
    assert not n.can_send
    assert n.remote_rtp == ("0.0.0.0", 4000)


def test_answer_to_ipv6_local_address_uses_ip6() -> None:
    n = answer(TRUNK_OFFER, local_address="2001:db8::1")
    assert n.answer.connection == Connection("2001:db8::1", "IP6")
    assert n.answer.origin.address_type == "IP6"
    assert parse_sdp(n.answer.to_bytes()) == n.answer


# ---------------------------------------------------------------------- offering (UAC)


def offer_of(*codecs: str, **kwargs: object) -> SessionDescription:
    options: dict[str, object] = {
        "local_address": "192.0.2.9",
        "local_port": 30000,
        "codecs": codecs,
        "session_id": 7,
        "session_version": 3,
    }
    options.update(kwargs)
    return build_offer(**options)  # type: ignore[arg-type]


def test_build_offer_text() -> None:
    assert offer_of("opus", "G722", "PCMA", "PCMU").to_text() == sdp(
        "v=0",
        "o=- 7 3 IN IP4 192.0.2.9",
        "s=-",
        "c=IN IP4 192.0.2.9",
        "t=0 0",
        "m=audio 30000 RTP/AVP 111 9 8 0 101",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    )


def test_build_offer_options() -> None:
    held = offer_of("PCMU", direction="sendonly", telephone_event=False)
    assert held.media[0].formats == ("0",)
    assert held.media[0].direction == "sendonly"
    for bad in ((), ("G729",)):
        with pytest.raises(ValueError):
            offer_of(*bad)
    with pytest.raises(ValueError):
        offer_of("PCMU", local_port=0)


def test_our_offer_negotiates_with_ourselves() -> None:
    offer = offer_of("PCMU", "opus")
    n = answer(offer.to_text(), codec_preference=("opus", "PCMU"))
    agreed = accept_answer(offer, parse_sdp(n.answer.to_bytes()))
    assert (agreed.codec, agreed.payload_type, agreed.telephone_event_payload_type) == (
        "opus",
        111,
        101,
    )
    assert agreed.remote_rtp == ("192.0.2.1", 20000)
    assert (agreed.can_send, agreed.can_receive, agreed.on_hold) == (True, True, False)


def remote_answer(formats: str, *attributes: str, port: int = 6000) -> SessionDescription:
    return parse_sdp(
        sdp(
            "v=0",
            "o=- 9 9 IN IP4 198.51.100.1",
            "s=-",
            "c=IN IP4 198.51.100.1",
            "t=0 0",
            f"m=audio {port} RTP/AVP {formats}",
            *attributes,
        )
    )


def test_accept_answer_takes_the_answers_choice_and_numbers() -> None:
    offer = offer_of("opus", "PCMU")
    agreed = accept_answer(
        offer,
        remote_answer("0 96 97", "a=rtpmap:96 opus/48000/2", "a=rtpmap:97 telephone-event/8000"),
    )
    assert (agreed.codec, agreed.payload_type, agreed.telephone_event_payload_type) == (
        "PCMU",
        0,
        97,
    )
    renumbered = accept_answer(offer, remote_answer("96", "a=rtpmap:96 OPUS/48000/2", "a=ptime:40"))
    assert (renumbered.codec, renumbered.payload_type, renumbered.remote_ptime) == ("opus", 96, 40)


def test_accept_answer_ignores_telephone_event_we_did_not_offer() -> None:
    offer = offer_of("PCMU", telephone_event=False)
    agreed = accept_answer(offer, remote_answer("0 101", "a=rtpmap:101 telephone-event/8000"))
    assert agreed.telephone_event_payload_type is None


@pytest.mark.parametrize(
    ("answer_sdp", "reason"),
    [
        (remote_answer("8"), "picks no codec we offered"),
        (remote_answer("101", "a=rtpmap:101 telephone-event/8000"), "picks no codec we offered"),
        (remote_answer("96", "a=rtpmap:96 opus/48000/2"), "picks no codec we offered"),
    ],
)
def test_accept_answer_refuses_codecs_we_did_not_offer(
    answer_sdp: SessionDescription, reason: str
) -> None:
    with pytest.raises(SdpError, match=reason):
        accept_answer(offer_of("PCMU"), answer_sdp)


def test_accept_answer_refuses_a_mismatched_shape() -> None:
    offer = offer_of("PCMU")
    two = parse_sdp(remote_answer("0").to_text() + "m=video 0 RTP/AVP 96\r\n")
    with pytest.raises(SdpError, match="answer has 2 m-lines for the offer's 1"):
        accept_answer(offer, two)
    video = parse_sdp(remote_answer("0").to_text().replace("m=audio", "m=video"))
    with pytest.raises(SdpError, match="m-line 1 is video"):
        accept_answer(offer, video)
    savp = parse_sdp(remote_answer("0").to_text().replace("RTP/AVP", "RTP/SAVP"))
    with pytest.raises(SdpError, match="changes the transport"):
        accept_answer(offer, savp)
    with pytest.raises(NoCommonCodec, match="refused every audio stream"):
        accept_answer(offer, remote_answer("0", port=0))


@pytest.mark.parametrize(
    ("ours", "theirs", "can_send", "can_receive", "on_hold"),
    [
        ("sendrecv", "sendrecv", True, True, False),
        ("sendrecv", "sendonly", False, True, True),
        ("sendrecv", "recvonly", True, False, False),
        ("sendrecv", "inactive", False, False, True),
        ("sendonly", "recvonly", True, False, False),
        ("inactive", "inactive", False, False, False),
    ],
)
def test_accept_answer_directions(
    ours: Direction, theirs: Direction, can_send: bool, can_receive: bool, on_hold: bool
) -> None:
    agreed = accept_answer(offer_of("PCMU", direction=ours), remote_answer("0", f"a={theirs}"))
    assert (agreed.can_send, agreed.can_receive, agreed.on_hold) == (
        can_send,
        can_receive,
        on_hold,
    )


def test_accept_answer_zero_address_means_do_not_send() -> None:
    held = parse_sdp(remote_answer("0").to_text().replace("198.51.100.1", "0.0.0.0"))
    agreed = accept_answer(offer_of("PCMU"), held)
    assert (agreed.can_send, agreed.can_receive, agreed.on_hold) == (False, True, True)


# ---------------------------------------------------------------------- re-offers


def test_with_direction_makes_hold_and_resume_reoffers() -> None:
    offer = parse_sdp(VIDEO_AND_AUDIO_OFFER.replace("m=video 50000", "m=video 0"))
    held = with_direction(offer, "sendonly", 8)
    assert held.origin.session_version == 8
    assert held.direction is None
    assert [m.direction for m in held.media] == [None, "sendonly", "sendonly"]
    n = answer(held.to_text())
    assert (n.answer.media[1].direction, n.on_hold) == ("recvonly", True)
    resumed = with_direction(held, "sendrecv", 9)
    assert [resumed.direction_for(m) for m in resumed.media[1:]] == ["sendrecv", "sendrecv"]
    assert answer(resumed.to_text()).on_hold is False


def test_with_direction_overrides_a_session_level_direction() -> None:
    offer = parse_sdp(audio_offer("0").replace("t=0 0", "t=0 0\r\na=sendonly"))
    resumed = with_direction(offer, "sendrecv", 2)
    assert resumed.direction_for(resumed.media[0]) == "sendrecv"


def test_with_direction_demands_a_newer_version_and_a_real_direction() -> None:
    offer = parse_sdp(TRUNK_OFFER)
    with pytest.raises(ValueError, match="does not exceed"):
        with_direction(offer, "sendonly", offer.origin.session_version)
    with pytest.raises(ValueError, match="direction must be"):
        with_direction(offer, "hold", 10**7)  # type: ignore[arg-type]


def test_hand_built_description_without_connection_is_an_sdp_error() -> None:
    desc = SessionDescription(
        origin=parse_sdp(TRUNK_OFFER).origin,
        media=(MediaDescription("audio", 4000, "RTP/AVP", ("0",)),),
    )
    with pytest.raises(SdpError, match="no c= line"):
        negotiate_answer(
            desc, local_address="192.0.2.1", local_port=1, session_id=1, session_version=1
        )


# ---------------------------------------------------------------------- fuzzing

SESSION_CONNECTIONS = [
    "c=IN IP4 10.0.0.1",
    "c=IN IP4 0.0.0.0",
    "c=IN IP6 2001:db8::1",
    "c=IN IP4 224.0.0.1/5/2",
    "c=IN IP4 host.example",
]
SESSION_LINES = ["t=1 2", "r=7d 1h 0 25h", "b=AS:64", "i=info", "a=sendonly", "a=tool:x"]
MEDIA_LINES = [
    "m=audio 4000 RTP/AVP 0 8 9 96 101",
    "m=audio 4000/2 RTP/AVPF 111 110",
    "m=audio 0 RTP/AVP 0",
    "m=video 5000 RTP/AVP 96",
    "m=image 6000 udptl t38",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
]
MEDIA_ATTRIBUTE_LINES = [
    "c=IN IP4 10.0.0.2",
    "c=IN IP4 0.0.0.0",
    "b=TIAS:64000",
    "a=rtpmap:96 opus/48000/2",
    "a=rtpmap:111 opus/48000/2",
    "a=rtpmap:96 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:0 PCMU/8000/1",
    "a=fmtp:101 0-16",
    "a=fmtp:96",
    "a=ptime:20",
    "a=ptime:20.5",
    "a=maxptime:40",
    "a=rtcp:4001",
    "a=rtcp:4001 IN IP4 10.0.0.1",
    "a=sendrecv",
    "a=sendonly",
    "a=recvonly",
    "a=inactive",
    "a=rtcp-mux",
    "a=foo:",
]
HEADER = ["v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0"]


@st.composite
def sdp_like(draw: st.DrawFn) -> str:
    """A valid skeleton from real lines, then a few random edits: reaches the deep checks."""
    lines = [*HEADER, *draw(st.lists(st.sampled_from(SESSION_CONNECTIONS), max_size=1))]
    lines += draw(st.lists(st.sampled_from(SESSION_LINES), max_size=3, unique=True))
    for _ in range(draw(st.integers(1, 3))):
        lines.append(draw(st.sampled_from(MEDIA_LINES)))
        lines += draw(st.lists(st.sampled_from(MEDIA_ATTRIBUTE_LINES), max_size=6, unique=True))
    for _ in range(draw(st.integers(0, 2))):
        index = draw(st.integers(0, len(lines) - 1))
        noise = draw(st.text(max_size=8))
        edit = draw(st.sampled_from(["append", "replace", "insert", "truncate"]))
        if edit == "append":
            lines[index] += noise
        elif edit == "replace":
            lines[index] = lines[index][:2] + noise
        elif edit == "insert":
            lines.insert(index, draw(st.sampled_from("vosctmabirkzx")) + "=" + noise)
        else:
            lines[index] = lines[index][: draw(st.integers(0, len(lines[index])))]
    return draw(st.sampled_from(["\r\n", "\n"])).join(lines)


def check_only_sdp_errors(data: str | bytes) -> None:
    try:
        desc = parse_sdp(data)
    except SdpError:
        return
    assert parse_sdp(desc.to_bytes()) == desc
    with contextlib.suppress(SdpError):
        negotiate_answer(
            desc, local_address="192.0.2.1", local_port=1, session_id=1, session_version=1
        )
    with contextlib.suppress(SdpError):
        accept_answer(
            build_offer(
                local_address="192.0.2.1",
                local_port=1,
                codecs=("opus", "PCMU"),
                session_id=1,
                session_version=1,
            ),
            desc,
        )


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_text_raises_only_sdp_error(text: str) -> None:
    check_only_sdp_errors(text)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_bytes_raises_only_sdp_error(data: bytes) -> None:
    check_only_sdp_errors(data)


@FUZZ
@given(sdp_like())
def test_fuzz_sdp_like_raises_only_sdp_error(text: str) -> None:
    check_only_sdp_errors(text)
