"""The incremental FrameDecoder: resync, noise, chunking, buffer bound, never raising."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from devices.qbus.frames import MASTER, MAX_FRAME_SIZE, Command, Frame, FrameDecoder

frames = st.builds(
    Frame,
    dst=st.integers(0, 255),
    src=st.integers(0, 255),
    seq=st.integers(0, 255),
    cmd=st.integers(0, 255),
    payload=st.binary(max_size=240),
)
# Noise may contain SOF bytes and fake headers: the decoder must resync past them.
noise = st.one_of(
    st.binary(max_size=24),
    st.builds(lambda tail: b"\x5a\xa5\x01" + tail, st.binary(max_size=12)),
    st.builds(lambda frame, cut: frame.to_bytes()[:cut], frames, st.integers(1, 9)),
)


def decode_in_chunks(data: bytes, cuts: list[int]) -> list[Frame]:
    decoder = FrameDecoder()
    out: list[Frame] = []
    start = 0
    for cut in sorted(cuts):
        out += decoder.feed(data[start:cut])
        assert decoder.pending < MAX_FRAME_SIZE
        start = cut
    out += decoder.feed(data[start:])
    out += decoder.flush()
    assert decoder.pending == 0
    return out


# derandomize: a noise burst forming a complete fake frame with a valid CRC is a 1-in-65536
# event that no decoder can tell from a real frame; fixed examples keep the test stable.
@settings(derandomize=True, max_examples=300)
@given(st.lists(st.tuples(noise, frames), max_size=8), st.data())
def test_frames_split_anywhere_and_mixed_with_noise_decode_the_same(
    items: list[tuple[bytes, Frame]], data: st.DataObject
) -> None:
    stream = b"".join(junk + frame.to_bytes() for junk, frame in items)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    assert decode_in_chunks(stream, cuts) == [frame for _, frame in items]


@settings(max_examples=300)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=30))
def test_never_raises_and_chunking_does_not_matter(data: bytes, cuts: list[int]) -> None:
    whole = decode_in_chunks(data, [])
    assert decode_in_chunks(data, [c for c in cuts if c <= len(data)]) == whole


def test_bad_crc_restarts_one_byte_after_the_bad_sof() -> None:
    good = Frame(3, MASTER, 1, Command.PING).to_bytes()
    broken = bytearray(Frame(4, MASTER, 2, Command.PING).to_bytes())
    broken[-1] ^= 0xFF
    decoder = FrameDecoder()
    assert decoder.feed(bytes(broken) + good) == [Frame.from_bytes(good)]
    assert decoder.stats.crc_errors == 1
    assert decoder.stats.discarded_bytes == len(broken)


def test_frame_hidden_inside_a_truncated_one_is_found() -> None:
    good = Frame(3, MASTER, 1, Command.PING).to_bytes()
    # A header that claims 200 payload bytes swallows the real frame that follows.
    claim = bytes.fromhex("5AA5 01 05 F0 09 20 C8")
    decoder = FrameDecoder()
    assert decoder.feed(claim + good) == []
    assert decoder.pending == len(claim) + len(good)
    assert decoder.flush() == [Frame.from_bytes(good)]
    assert decoder.pending == 0


def test_bad_version_and_oversized_len_are_skipped() -> None:
    good = Frame(3, MASTER, 1, Command.PING).to_bytes()
    decoder = FrameDecoder()
    junk = bytes.fromhex("5AA5 02 03 F0 07 01 00") + bytes.fromhex("5AA5 01 03 F0 07 01 F1")
    assert decoder.feed(junk + good) == [Frame.from_bytes(good)]
    assert decoder.stats.bad_headers == 2


def test_sof_split_across_chunks() -> None:
    good = Frame(3, MASTER, 1, Command.PING).to_bytes()
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x5a") == []
    assert decoder.pending == 1
    assert decoder.feed(good[1:]) == [Frame.from_bytes(good)]


def test_buffer_never_exceeds_one_frame() -> None:
    decoder = FrameDecoder()
    for _ in range(100):
        decoder.feed(b"\x5a\xa5\x01\x01\x02\x03\x04\xf0" + bytes(100))
        assert decoder.pending < MAX_FRAME_SIZE
    decoder.feed(bytes(10_000))
    assert decoder.pending == 0
