"""The decode path: zero-copy luma, media time from PTS (wrap, gaps, missing), audio blocks."""

from fractions import Fraction

import av
import numpy as np
import pytest

from monitor.config import default_channel
from monitor.decode.media_source import MPEG_WRAP_TICKS, MediaSource, Timeline, luma_view
from monitor.demo.synth import MediaSpec, Span
from monitor.pipeline.analyze import analyze

TB = Fraction(1, 90000)


def test_timeline_unwraps_33_bit_pts_however_often_it_wraps():
    timeline = Timeline(TB, MPEG_WRAP_TICKS)
    raw = [(MPEG_WRAP_TICKS - 3600 * 2 + i * 3600) % MPEG_WRAP_TICKS for i in range(5)]
    seconds = [timeline.seconds(p, 0.04, 0.0) for p in raw]
    assert np.allclose(np.diff(seconds), 0.04)
    # a second wrap, 26.5 hours later, reached in 20 s steps as a live stream would
    pts = raw[-1]
    while pts < MPEG_WRAP_TICKS - 20 * 90000:
        pts += 20 * 90000
        timeline.seconds(pts, 0.04, 0.0)
    later = [MPEG_WRAP_TICKS - 3600, 0, 3600]
    timeline.seconds(later[0] - 3600, 0.04, 0.0)
    out = [timeline.seconds(p, 0.04, 0.0) for p in later]
    assert np.allclose(np.diff(out), 0.04)
    assert out[1] == pytest.approx(2 * MPEG_WRAP_TICKS / 90000)
    assert timeline.discontinuities == 0


def test_timeline_extrapolates_a_missing_pts_from_the_previous_frame():
    timeline = Timeline(TB, MPEG_WRAP_TICKS)
    assert timeline.seconds(90000, 0.04, 0.0) == pytest.approx(1.0)
    assert timeline.seconds(None, 0.04, 0.0) == pytest.approx(1.04)
    assert timeline.seconds(None, 0.04, 0.0) == pytest.approx(1.08)


def test_timeline_bridges_a_jump_backwards_that_is_not_a_wrap():
    timeline = Timeline(TB, MPEG_WRAP_TICKS)
    timeline.seconds(900000, 0.04, 0.0)  # 10.0 s
    assert timeline.seconds(450000, 0.04, 0.0) == pytest.approx(10.04)  # the clock restarted
    assert timeline.seconds(453600, 0.04, 0.0) == pytest.approx(10.08)  # and runs on from there
    assert timeline.discontinuities == 1


def test_timeline_bridges_a_jump_far_ahead_but_keeps_a_short_gap():
    timeline = Timeline(TB, MPEG_WRAP_TICKS)
    timeline.seconds(0, 0.04, 0.0)
    assert timeline.seconds(2 * 90000, 0.04, 0.0) == pytest.approx(2.0)  # a 2 s gap is media
    assert timeline.seconds(2 * 90000 + 3600 * 90000, 0.04, 0.0) == pytest.approx(2.04)
    assert timeline.discontinuities == 1


def test_a_gap_ahead_is_media_once_the_next_timestamp_confirms_it():
    timeline = Timeline(TB, MPEG_WRAP_TICKS, confirm_after_s=1.0)
    timeline.seconds(0, 0.04, 0.0)
    assert timeline.seconds(2 * 90000, 0.04, 0.0) == pytest.approx(0.04)
    assert timeline.seconds(2 * 90000 + 3600, 0.04, 0.0) == pytest.approx(2.04)
    assert timeline.suspect_timestamps == 0


def test_one_timestamp_seconds_ahead_does_not_move_the_timeline():
    # A damaged PTS 26 s ahead, then the stream's own timestamps again.
    timeline = Timeline(TB, MPEG_WRAP_TICKS, confirm_after_s=1.0)
    times = [timeline.seconds(p, 0.04, 0.0) for p in (0, 3600, 7200 + 26 * 90000, 10800, 14400)]
    assert times == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])
    assert timeline.discontinuities == 0 and timeline.suspect_timestamps == 1


def test_small_jitter_backwards_is_not_a_discontinuity():
    timeline = Timeline(TB, MPEG_WRAP_TICKS)
    timeline.seconds(90000, 0.04, 0.0)
    assert timeline.seconds(90000 + 3000, 0.04, 0.0) == pytest.approx(1.0 + 3000 / 90000)
    assert timeline.discontinuities == 0


def test_timeline_measures_from_the_origin():
    assert Timeline(TB, None).seconds(180000, 0.04, 1.5) == pytest.approx(0.5)


def yuv_frame(width, height, fmt, value):
    frame = av.VideoFrame(width, height, fmt)
    for plane in frame.planes:
        arr = np.frombuffer(plane, np.uint8)
        arr.setflags(write=True)
        arr[:] = 0
    y = np.frombuffer(frame.planes[0], np.uint8 if "10" not in fmt else "<u2")
    y.setflags(write=True)
    y[:] = value
    return frame


@pytest.mark.parametrize(
    ("fmt", "value", "dtype"), [("yuv420p", 77, np.uint8), ("yuv420p10le", 700, np.uint16)]
)
def test_luma_view_is_a_read_only_view_of_the_frame_buffer(fmt, value, dtype):
    frame = yuv_frame(318, 180, fmt, value)  # a width with line padding
    y = luma_view(frame)
    assert y.shape == (180, 318) and y.dtype == dtype
    assert not y.flags.writeable and not y.flags.owndata
    assert int(y[0, 0]) == value and int(y[-1, -1]) == value
    plane = np.frombuffer(frame.planes[0], dtype)
    assert np.shares_memory(y, plane)


def test_pictures_and_audio_come_with_media_time_from_zero(media):
    path = media(MediaSpec(duration_s=2.0))
    with MediaSource(str(path)) as source:
        items = list(source)
    pictures = [i for i in items if type(i).__name__ == "Picture"]
    audio = [i for i in items if type(i).__name__ == "AudioChunk"]
    assert len(pictures) == 50
    assert pictures[0].pts_s == pytest.approx(0.0) and pictures[-1].pts_s == pytest.approx(1.96)
    assert pictures[0].keyframe and not pictures[1].keyframe
    assert audio[0].samples.dtype == np.float32 and audio[0].samples.shape[0] == 2
    assert sum(a.samples.shape[1] for a in audio) >= 2 * 48000


def test_times_stay_right_across_the_33_bit_pts_wrap(media):
    wrap_s = MPEG_WRAP_TICKS / 90000
    spec = MediaSpec(
        duration_s=10.0,
        black=(Span(2.0, 6.0),),
        silence=(Span(5.0, 8.0),),
        start_offset_s=wrap_s - 3.0,  # the PTS wrap falls at 3.0 s, inside both faults
    )
    events = []
    analyze(str(media(spec)), default_channel(), events.append)
    found = [(e.alarm, e.start, e.end) for e in events if e.state == "cleared"]
    assert [a for a, _, _ in found] == ["black", "silence"]
    (_, b0, b1), (_, s0, s1) = found
    assert b0 == pytest.approx(2.0, abs=0.04) and b1 == pytest.approx(6.0, abs=0.04)
    assert s0 == pytest.approx(5.0, abs=0.032) and s1 == pytest.approx(8.0, abs=0.032)


def planes(n, value=0.5, channels=2):
    return [np.full(n, value, dtype=np.float32) for _ in range(channels)]


def test_audio_batch_gathers_frames_into_blocks_with_the_first_frames_time():
    from monitor.decode.media_source import AudioBatch

    batch = AudioBatch(stream=0, block_s=0.05)
    chunks = []
    for i in range(6):  # 6 x 1024 samples at 48 kHz = 128 ms
        pts = i * 1024 / 48000
        assert batch.close_if_discontinuous(2, pts, 48000) is None
        chunk = batch.add(planes(1024, value=i), pts, 48000)
        if chunk is not None:
            chunks.append(chunk)
    tail = batch.flush()
    assert [c.samples.shape for c in chunks] == [(2, 3072), (2, 3072)]
    assert tail is None
    assert chunks[1].pts_s == pytest.approx(3 * 1024 / 48000)
    assert chunks[1].samples[0, 0] == 3.0 and chunks[1].samples[1, -1] == 5.0


def test_audio_batch_closes_a_block_at_a_timestamp_gap_or_a_layout_change():
    from monitor.decode.media_source import AudioBatch

    batch = AudioBatch(stream=1, block_s=1.0)
    batch.add(planes(1024), 0.0, 48000)
    assert batch.close_if_discontinuous(2, 1024 / 48000, 48000) is None  # contiguous
    batch.add(planes(1024), 1024 / 48000, 48000)
    closed = batch.close_if_discontinuous(2, 0.5, 48000)  # a 457 ms gap
    assert closed is not None and closed.samples.shape == (2, 2048) and closed.pts_s == 0.0
    batch.add(planes(1024), 0.5, 48000)
    closed = batch.close_if_discontinuous(6, 0.5 + 1024 / 48000, 48000)  # stereo -> 5.1
    assert closed is not None and closed.pts_s == 0.5 and closed.stream == 1


def test_keyframes_only_pictures_stand_for_their_gop_and_keep_the_checks_whole(media):
    from monitor.config import default_channel
    from monitor.pipeline.channel import ChannelPipeline

    spec = MediaSpec(duration_s=8.0, gop=25, black=(Span(3.0, 6.0),))
    events = []
    with MediaSource(str(media(spec)), pictures="keyframes") as source:
        audio = [s for s in source.stream_infos() if s.kind == "audio"]
        pipeline = ChannelPipeline(default_channel(), "primary", events.append, audio_streams=audio)
        pictures = []
        for item in source:
            if type(item).__name__ == "Picture":
                pictures.append(item)
            pipeline.process(item)
        pipeline.finish()

    assert [round(p.pts_s, 2) for p in pictures] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert all(p.keyframe for p in pictures)
    assert [p.shown_s for p in pictures[1:]] == pytest.approx([1.0] * 7)
    assert all(p.duration_s == pytest.approx(0.04) for p in pictures)  # still one frame
    found = [(e.alarm, e.start, e.end) for e in events if e.state == "cleared"]
    assert found == [("black", pytest.approx(3.0), pytest.approx(6.0))], events


def test_reference_pictures_skip_the_b_pictures(tmp_path):
    path = tmp_path / "ibp.ts"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"bf": "2", "g": "25"})
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(50):
            picture = np.full((64, 64, 3), (i * 5) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())

    with MediaSource(str(path)) as source:
        every = [i for i in source if type(i).__name__ == "Picture"]
    with MediaSource(str(path), pictures="reference") as source:
        anchors = [i for i in source if type(i).__name__ == "Picture"]

    assert len(every) == 50
    assert 10 <= len(anchors) <= 25, len(anchors)  # I and P pictures: about one in three
    assert {round(p.pts_s, 2) for p in anchors} <= {round(p.pts_s, 2) for p in every}
    ends = [p.end_s for p in anchors[:-1]]
    starts = [p.pts_s for p in anchors[1:]]
    assert all(end >= start - 1e-6 for end, start in zip(ends, starts, strict=True))


def test_long_steps_of_a_variable_frame_rate_are_taken_once_confirmed():
    timeline = Timeline(TB, MPEG_WRAP_TICKS, confirm_after_s=1.0)
    times = [timeline.seconds(round(p * 90000), 0.04, 0.0) for p in (0, 2, 4, 4.04)]
    assert times == pytest.approx([0.0, 0.04, 4.0, 4.04])
    assert timeline.suspect_timestamps == 0


def test_a_streams_first_timestamp_far_from_the_others_joins_their_timeline():
    video, audio = Timeline(TB, MPEG_WRAP_TICKS), Timeline(TB, MPEG_WRAP_TICKS)
    assert audio.seconds(46 * 90000, 0.021, 0.0) == pytest.approx(46.0)
    # the first picture is across a clock restart from the audio: it joins the audio's time
    assert video.seconds(int(1.4 * 90000), 0.04, 0.0, near_s=audio.next_s) == pytest.approx(46.021)
    assert video.seconds(int(1.44 * 90000), 0.04, 0.0) == pytest.approx(46.061)
    assert video.discontinuities == 1
    # a first picture a second from the audio is a normal A/V offset, kept as it is
    other = Timeline(TB, MPEG_WRAP_TICKS)
    assert other.seconds(45 * 90000, 0.04, 0.0, near_s=audio.next_s) == pytest.approx(45.0)
    assert other.discontinuities == 0


def test_a_source_opened_just_before_its_clock_restarts_keeps_audio_and_video_together(
    media, tmp_path
):
    """A looping source, read from the last 1.5 s of one loop: the first audio frames come
    from the end of the loop, the first picture (after the next keyframe) from the start of
    the next. The chaos soak restarted a channel at such a moment, and its video timeline
    stayed one loop (40 s) from its audio's: video_missing for ever and black dated 40 s off.
    """
    path = media(MediaSpec(duration_s=12.0, black=(Span(4.0, 6.0),)))
    data = path.read_bytes()
    tail = data[len(data) * 7 // 8 // 188 * 188 :]  # ~1.5 s, with PAT/PMT (every 0.1 s)
    looped = tmp_path / "looped.ts"
    looped.write_bytes(tail + data)
    with MediaSource(str(looped)) as source:
        items = list(source)
    pictures = [i for i in items if type(i).__name__ == "Picture"]
    audio = [i for i in items if type(i).__name__ == "AudioChunk"]
    assert abs(pictures[0].pts_s - audio[0].pts_s) < 2.0, (pictures[0].pts_s, audio[0].pts_s)
    end_audio = audio[-1].pts_s + audio[-1].samples.shape[1] / 48000
    assert abs(pictures[-1].pts_s - end_audio) < 1.0, (pictures[-1].pts_s, end_audio)
