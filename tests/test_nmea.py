"""drivers.nmea: parsing RMC/GGA/other sentences, every rejection reason, GpsState."""

from __future__ import annotations

import datetime as dt
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import nmea
from drivers.nmea import GGA, RMC, GpsState, NmeaError, Sentence, parse

UTC = dt.UTC
RMC_2017 = "$GNRMC,001031.00,A,4404.13993,N,12118.86023,W,0.146,,100117,,,A*7B"


def cs(body: str) -> str:
    """Independent checksum helper: XOR of the bytes of `body`, upper-case hex."""
    return f"{reduce(lambda a, b: a ^ b, body.encode('ascii'), 0):02X}"


def line(body: str) -> str:
    return f"${body}*{cs(body)}\r\n"


def gga(
    time="123519.00",
    lat="4807.038",
    ns="N",
    lon="01131.000",
    ew="E",
    q="1",
    sats="08",
    hdop="0.9",
    alt="545.4",
    geoid="46.9",
    talker="GP",
) -> str:
    return line(f"{talker}GGA,{time},{lat},{ns},{lon},{ew},{q},{sats},{hdop},{alt},M,{geoid},M,,")


def rmc(
    time="123519.00",
    status="A",
    lat="4807.038",
    ns="N",
    lon="01131.000",
    ew="E",
    speed="0.5",
    course="84.4",
    date="230324",
    var="",
    var_dir="",
    mode="A",
    talker="GN",
) -> str:
    tail = "" if mode is None else f",{mode}"
    return line(f"{talker}RMC,{time},{status},{lat},{ns},{lon},{ew},{speed},{course},{date},{var},{var_dir}{tail}")


def reason(text, **kw) -> str:
    with pytest.raises(NmeaError) as info:
        parse(text, **kw)
    assert isinstance(info.value, ValueError)
    return info.value.reason


# ---- RMC -----------------------------------------------------------------------------


def test_known_rmc_example():
    s = parse(RMC_2017, min_year=2000)
    assert isinstance(s, RMC)
    assert (s.talker, s.type, s.status, s.mode, s.valid) == ("GN", "RMC", "A", "A", True)
    assert s.latitude == pytest.approx(44.068998833, abs=1e-8)
    assert s.longitude == pytest.approx(-121.314337167, abs=1e-8)
    assert s.time_utc == dt.datetime(2017, 1, 10, 0, 10, 31, tzinfo=UTC)
    assert s.speed_knots == pytest.approx(0.146) and s.course_deg is None
    assert cs(RMC_2017[1:-3]) == "7B"  # our helper agrees with the published example


def test_known_example_is_week_rollover_with_default_min_year():
    assert "week rollover suspected" in reason(RMC_2017)
    assert "2017-01-10" in reason(RMC_2017)


def test_bytes_lowercase_checksum_and_crlf():
    body = RMC_2017[1:-3]
    s = parse(f"${body}*7b\r\n".encode(), min_year=2000)
    assert isinstance(s, RMC) and s.valid


@pytest.mark.parametrize("talker", ["GP", "GN", "GL", "GA", "BD", "GB"])
def test_any_talker(talker):
    s = parse(rmc(talker=talker))
    assert isinstance(s, RMC) and s.talker == talker
    g = parse(gga(talker=talker))
    assert isinstance(g, GGA) and g.talker == talker


def test_rmc_fields_and_fraction_of_second():
    s = parse(
        rmc(time="235959.25", lat="3351.1234", ns="S", lon="15112.5000", ew="E", course="359.9", var="3.1", var_dir="W")
    )
    assert isinstance(s, RMC)
    assert s.time_utc == dt.datetime(2024, 3, 23, 23, 59, 59, 250000, tzinfo=UTC)
    assert s.latitude == pytest.approx(-(33 + 51.1234 / 60))
    assert s.longitude == pytest.approx(151 + 12.5 / 60)
    assert s.course_deg == pytest.approx(359.9)
    assert s.magnetic_variation_deg == pytest.approx(-3.1)


@pytest.mark.parametrize(
    "status,mode,valid",
    [
        ("A", "A", True),
        ("A", "D", True),
        ("A", None, True),
        ("A", "", True),
        ("A", "N", False),
        ("A", "E", False),
        ("A", "M", False),
        ("A", "S", False),
        ("V", "A", False),
        ("V", "N", False),
        ("V", None, False),
    ],
)
def test_mode_dominates_status(status, mode, valid):
    s = parse(rmc(status=status, mode=mode))
    assert isinstance(s, RMC)
    assert s.valid is valid
    assert s.mode == (mode or None)


def test_nmea41_rmc_with_nav_status_field():
    s = parse(line("GNRMC,123519.00,A,4807.038,N,01131.000,E,0.5,84.4,230324,,,D,V"))
    assert isinstance(s, RMC) and s.valid and s.mode == "D"


def test_leap_second_rolls_into_next_minute():
    s = parse(rmc(time="235960.00", date="311224"))
    assert isinstance(s, RMC)
    assert s.time_utc == dt.datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)


def test_invalid_rmc_zero_filled_is_accepted_without_time():
    s = parse(
        rmc(
            time="000000.00",
            status="V",
            lat="0000.0000",
            lon="00000.0000",
            date="000000",
            speed="0.0",
            course="0.0",
            mode="N",
        )
    )
    assert isinstance(s, RMC)
    assert not s.valid and s.time_utc is None
    assert s.latitude == 0.0


def test_invalid_rmc_with_receiver_default_date_is_not_an_error():
    s = parse(rmc(status="V", date="060180", mode="N"))  # 1980 epoch -> 2080
    assert isinstance(s, RMC)
    assert s.time_utc is None and not s.valid
    assert "default date" in reason(rmc(date="060180"))


def test_empty_fields_give_none():
    s = parse(rmc(status="V", time="", lat="", ns="", lon="", ew="", speed="", course="", date="", mode="N"))
    assert isinstance(s, RMC)
    assert (s.time_utc, s.latitude, s.longitude, s.speed_knots, s.course_deg) == (None,) * 5


def test_min_year_is_a_parameter():
    s = parse(rmc(date="230324"), min_year=2024)
    assert isinstance(s, RMC)
    assert s.valid
    assert "week rollover" in reason(rmc(date="230324"), min_year=2025)


# ---- GGA -----------------------------------------------------------------------------


def test_gga_fields():
    g = parse(gga())
    assert isinstance(g, GGA) and g.type == "GGA"
    assert g.time == dt.time(12, 35, 19)
    assert g.latitude == pytest.approx(48 + 7.038 / 60)
    assert g.longitude == pytest.approx(11 + 31 / 60)
    assert (g.fix_quality, g.satellites) == (1, 8)
    assert g.hdop == pytest.approx(0.9)
    assert g.altitude_m == pytest.approx(545.4) and g.geoid_separation_m == pytest.approx(46.9)
    assert g.dgps_age_s is None and g.dgps_station is None


def test_gga_no_fix_and_negative_altitude_and_dgps():
    g = parse(gga(q="0", sats="00", hdop="99.99", lat="", ns="", lon="", ew=""))
    assert isinstance(g, GGA)
    assert g.fix_quality == 0 and g.latitude is None
    body = "GPGGA,000001.5,0130.0000,S,00030.0000,W,2,12,1.0,-12.5,M,-3.0,M,1.2,0031"
    g = parse(line(body))
    assert isinstance(g, GGA)
    assert g.fix_quality == 2 and g.altitude_m == -12.5 and g.geoid_separation_m == -3.0
    assert g.latitude == pytest.approx(-1.5) and g.longitude == pytest.approx(-0.5)
    assert g.dgps_age_s == pytest.approx(1.2) and g.dgps_station == "0031"
    assert g.time == dt.time(0, 0, 1, 500000)


def test_other_types_are_generic_sentences():
    s = parse(line("GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00"))
    assert type(s) is Sentence and (s.talker, s.type) == ("GP", "GSV") and s.fields[0] == "3"
    p = parse(line("PUBX,00,123519.00"))
    assert (p.talker, p.type) == ("P", "UBX")


# ---- rejections ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("GPGGA,1*00", "missing '$'"),
        ("", "empty line"),
        ("$GPGGA,123519,,,,,0,00,,,M,,M,,", "missing checksum"),
        ("$GPGGA,123519,,,,,0,00,,,M,,M,,*1", "invalid checksum field"),
        ("$GPGGA,123519,,,,,0,00,,,M,,M,,*ZZ", "invalid checksum field"),
        ("$GPGGA,123519,,,,,0,00,,,M,,M,,*00", "checksum mismatch"),
        ("$GPGGA,1\x00,*00", "control character 0x00"),
        ("$GPG\u00e9A,1*00", "non-ASCII"),
        ("$GPGGA,1$GPRMC,2*00", "unexpected '$'"),
    ],
)
def test_framing_errors(text, expected):
    assert expected in reason(text)


def test_non_ascii_bytes_and_wrong_type():
    assert "non-ASCII byte 0xFF at position 3" in reason(b"$GP\xffGA*00")
    assert "expected str or bytes" in reason(12345)


def test_checksum_mismatch_names_both_values():
    good = gga()
    bad = good[:-4] + ("00" if good[-4:-2] != "00" else "01") + "\r\n"
    assert "computed " + good[-4:-2] in reason(bad)


def test_line_length_limit():
    body = "GPTXT," + "X" * (82 - 1 - 6 - 3 - 2)  # exactly 82 chars with $ *hh CR LF
    assert len(line(body)) == 82
    assert parse(line(body), max_length=82).type == "TXT"
    assert "too long" in reason(line(body + "X"), max_length=82)
    assert parse(line(body + "X" * 30)).type == "TXT"  # 112 chars: tolerated by default
    assert "limit 120" in reason(line(body + "X" * 40))


@pytest.mark.parametrize(
    "text,expected",
    [
        (rmc(lat="9100.0000"), "more than 90"),
        (rmc(lat="4860.0000"), "minutes 60 >= 60"),
        (rmc(lon="18100.0000"), "more than 180"),
        (rmc(lat="48x7.038"), "is not ddmm.mmmm"),
        (rmc(ns="X"), "hemisphere 'X'"),
        (rmc(ns=""), "hemisphere ''"),
        (rmc(speed="fast"), "speed 'fast' is not a number"),
        (rmc(speed="nan"), "is not a number"),
        (rmc(speed="1e3"), "is not a number"),
        (rmc(speed="-1.0"), "is negative"),
        (rmc(course="361.0"), "more than 360"),
        (rmc(status="X"), "status 'X'"),
        (rmc(mode="Q"), "FAA mode 'Q'"),
        (rmc(time="246000"), "out of range"),
        (rmc(time="12:35"), "not hhmmss"),
        (rmc(date="310224"), "not a calendar date"),
        (rmc(date="2303"), "not ddmmyy"),
        (rmc(var="3.1", var_dir="X"), "direction 'X'"),
        (line("GNRMC,123519,A,4807.038,N"), "4 data fields, expected 11"),
        (gga(q="9"), "fix quality 9"),
        (gga(q="x"), "fix quality 'x'"),
        (gga(sats="-1"), "satellites '-1'"),
        (gga(hdop="abc"), "HDOP 'abc'"),
        (line("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M"), "12 data fields, expected 14"),
        (line("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,F,46.9,M,,"), "altitude unit 'F'"),
        (line("gpgga,1"), "address field 'gpgga'"),
        (line("GPGGAX,1"), "address field"),
    ],
)
def test_field_errors(text, expected):
    message = reason(text)
    assert expected in message
    assert message.startswith(("GNRMC: ", "GPGGA: ", "address"))


def test_error_message_shows_the_line():
    with pytest.raises(NmeaError) as info:
        parse(rmc(lat="9100.0000"))
    assert "latitude" in str(info.value) and "$GNRMC" in str(info.value)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=130),
        st.text(max_size=130),
        st.text(alphabet="$*,.0123456789ABCDEFGNPRSVWMX\r\n", max_size=90),
    )
)
def test_garbage_only_ever_raises_nmea_error(data):
    try:
        parse(data)
    except NmeaError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789.,-ANSEWVMDX", max_size=80))
def test_checksummed_garbage_only_ever_raises_nmea_error(fields):
    for kind in ("GPRMC", "GPGGA"):
        try:
            parse(line(f"{kind},{fields}"))
        except NmeaError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.floats(-89.99, 89.99), st.floats(-179.99, 179.99))
def test_coordinates_round_trip(lat, lon):
    def fmt(value, width):
        deg = int(abs(value))
        return f"{deg:0{width}d}{(abs(value) - deg) * 60:07.4f}"

    text = gga(lat=fmt(lat, 2), ns="N" if lat >= 0 else "S", lon=fmt(lon, 3), ew="E" if lon >= 0 else "W")
    g = parse(text)
    assert isinstance(g, GGA)
    assert g.latitude == pytest.approx(lat, abs=1e-5) and g.longitude == pytest.approx(lon, abs=1e-5)


# ---- GpsState ---------------------------------------------------------------------------


def test_state_empty():
    fix = GpsState().snapshot(100.0)
    assert fix.time_utc is None and fix.time_quality == "none" and not fix.time_valid
    assert not fix.position_valid and fix.fix_quality == 0 and fix.age_s is None
    assert fix.latitude is None and fix.satellites is None


def test_state_time_advances_with_monotonic_and_goes_stale():
    state = GpsState(stale_after_s=5)
    state.feed(parse(rmc(time="120000.00")), mono=1000.0)
    fix = state.snapshot(1002.5)
    assert fix.time_utc == dt.datetime(2024, 3, 23, 12, 0, 2, 500000, tzinfo=UTC)
    assert fix.time_valid and fix.time_quality == "gps" and fix.time_age_s == 2.5
    assert state.snapshot(1005.0).time_quality == "gps"  # boundary: exactly stale_after_s is fresh
    stale = state.snapshot(1010.0)
    assert stale.time_quality == "stale" and not stale.time_valid
    assert stale.time_utc == dt.datetime(2024, 3, 23, 12, 0, 10, tzinfo=UTC)  # still advanced


def test_state_invalid_rmc_does_not_set_time():
    state = GpsState()
    state.feed(parse(rmc(status="V")), 1.0)
    state.feed(parse(rmc(mode="N")), 1.0)
    assert state.snapshot(1.0).time_quality == "none"
    state.feed(parse(rmc(time="120000")), 2.0)
    state.feed(parse(rmc(time="120005", status="V")), 3.0)  # keeps the last valid anchor
    assert state.snapshot(3.0).time_utc == dt.datetime(2024, 3, 23, 12, 0, 1, tzinfo=UTC)


def test_state_position_from_gga():
    state = GpsState(stale_after_s=5)
    state.feed(parse(gga()), 10.0)
    fix = state.snapshot(11.0)
    assert fix.position_valid and fix.fix_quality == 1 and fix.satellites == 8 and fix.hdop == 0.9
    assert fix.latitude == pytest.approx(48.1173) and fix.altitude == pytest.approx(545.4)
    assert fix.age_s == 1.0 and fix.time_quality == "none"  # GGA gives no date, so no time
    state.feed(parse(gga(q="0", sats="03", lat="", ns="", lon="", ew="")), 12.0)  # fix lost
    lost = state.snapshot(12.5)
    assert not lost.position_valid and lost.fix_quality == 0 and lost.satellites == 3
    assert lost.latitude == pytest.approx(48.1173) and lost.age_s == 2.5  # last good kept
    stale = GpsState(stale_after_s=5)
    stale.feed(parse(gga()), 10.0)
    old = stale.snapshot(16.0)
    assert not old.position_valid and old.fix_quality == 0 and old.satellites is None
    assert old.latitude is not None and old.age_s == 6.0


def test_state_ignores_other_sentences_and_checks_arguments():
    state = GpsState()
    state.feed(parse(line("GPGSV,1,1,00")), 1.0)
    assert state.snapshot(1.0).time_quality == "none"
    with pytest.raises(ValueError):
        GpsState(stale_after_s=0)
    with pytest.raises(ValueError):
        state.snapshot(float("nan"))
    assert nmea.checksum("GPGSV,1,1,00") == int(cs("GPGSV,1,1,00"), 16)
