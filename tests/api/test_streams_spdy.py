"""SPDY/3 frame codec: golden bytes from a real Go client, round trips, compression context."""

from __future__ import annotations

import zlib

import pytest

from microkube.api.streams import spdy

# A SYN_STREAM written by moby/spdystream (client-go) for exec's stdout stream: a real
# capture, so it checks the dictionary, the frame layout and the header block at once.
GO_STDOUT_SYN_STREAM = (
    b"\x80\x03\x00\x01\x00\x00\x00\x2b\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    b"\x78\xf9\xe3\xc6\xa7\xc2\x62\x60\x60\x60\x04\xa7\xb3\x92\xa2\xd4\xc4\x5c"
    b"\x68\x51\xc2\x56\x5c\x92\x92\x5f\x5a\x02\x00\x00\x00\xff\xff"
)


def test_dictionary_is_the_spdy3_one() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2


def test_decodes_a_frame_written_by_go() -> None:
    frames = spdy.Codec().feed(GO_STDOUT_SYN_STREAM)
    assert frames == [spdy.SynStream(1, {"streamtype": ["stdout"]}, associated_id=0, priority=0)]


def test_header_block_encoding_lowercases_and_joins_values() -> None:
    block = spdy.encode_header_block({"StreamType": ["data"], "X": ["a", "b"]})
    assert spdy.decode_header_block(block) == {"streamtype": ["data"], "x": ["a", "b"]}
    assert b"\x00\x00\x00\x03a\x00b" in block


ALL_FRAMES: list[spdy.Frame] = [
    spdy.SynStream(1, {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}, priority=3),
    spdy.SynStream(
        3,
        {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]},
        fin=True,
        unidirectional=True,
    ),
    spdy.SynReply(1, {}),
    spdy.SynReply(3, {"a": ["b"]}, fin=True),
    spdy.HeadersFrame(3, {"c": ["d"]}),
    spdy.DataFrame(1, b"hello"),
    spdy.DataFrame(1, b"", fin=True),
    spdy.RstStream(5, spdy.RST_CANCEL),
    spdy.Settings([(0, 7, 65536), (1, 4, 100)]),
    spdy.Ping(7),
    spdy.GoAway(3, spdy.GOAWAY_OK),
    spdy.WindowUpdate(1, 4096),
]


def test_round_trip_of_every_frame_type_through_one_compression_context() -> None:
    sender, receiver = spdy.Codec(), spdy.Codec()
    wire = b"".join(sender.encode(frame) for frame in ALL_FRAMES)
    assert receiver.feed(wire) == ALL_FRAMES


def test_incremental_feed_byte_by_byte() -> None:
    sender, receiver = spdy.Codec(), spdy.Codec()
    wire = b"".join(sender.encode(frame) for frame in ALL_FRAMES)
    got: list[spdy.Frame] = []
    for i in range(len(wire)):
        got += receiver.feed(wire[i : i + 1])
    assert got == ALL_FRAMES


def test_header_blocks_share_the_connection_zlib_stream() -> None:
    """A second block only inflates with the first one's context (as in Go's framer)."""
    sender = spdy.Codec()
    first = sender.encode(spdy.SynReply(1, {"streamtype": ["stdout"]}))
    second = sender.encode(spdy.SynReply(3, {"streamtype": ["stdout"]}))
    assert len(second) < len(first)  # the repeated header is a back-reference
    with pytest.raises(spdy.ProtocolError):
        spdy.Codec().feed(second)
    receiver = spdy.Codec()
    assert receiver.feed(first + second)[1] == spdy.SynReply(3, {"streamtype": ["stdout"]})


def test_control_frame_layout() -> None:
    codec = spdy.Codec()
    assert codec.encode(spdy.Ping(1)) == b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"
    assert codec.encode(spdy.DataFrame(3, b"ab", fin=True)) == b"\x00\x00\x00\x03\x01\x00\x00\x02ab"
    goaway = codec.encode(spdy.GoAway(5, spdy.GOAWAY_OK))
    assert goaway == b"\x80\x03\x00\x07\x00\x00\x00\x08\x00\x00\x00\x05\x00\x00\x00\x00"


def test_wrong_version_and_garbage_are_protocol_errors() -> None:
    with pytest.raises(spdy.ProtocolError):
        spdy.Codec().feed(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01")
    garbage = b"\x80\x03\x00\x02\x00\x00\x00\x08\x00\x00\x00\x01junk"
    with pytest.raises(spdy.ProtocolError):
        spdy.Codec().feed(garbage)


def test_unknown_control_frames_are_skipped() -> None:
    unknown = b"\x80\x03\x00\x0a\x00\x00\x00\x02xy"
    ping = spdy.Codec().encode(spdy.Ping(3))
    assert spdy.Codec().feed(unknown + ping) == [spdy.Ping(3)]
