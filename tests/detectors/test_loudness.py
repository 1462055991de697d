"""BS.1770 / EBU Mode conformance of the loudness meter, on the EBU test signals synthesised here.

EBU Tech 3341 (minimum requirements) cases 1-6, 9, 12 and 15-23, and EBU Tech 3342 (loudness
range) cases 1-4, each with its published tolerance; then cross-checks of integrated loudness
(and loudness range, true peak) against pyloudnorm (``filter_class="DeMan"``, the exact
BS.1770 filter) and FFmpeg's ``ebur128`` filter run through PyAV, on programme-like material.
Every assertion message carries the measured and the expected values.

Signals: "1000 Hz at X dBFS" is a sine whose *peak* is X dBFS, in phase on both channels of a
stereo pair (Tech 3341); a level sequence is one phase-continuous sine under a stepped gain.
"""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
import pytest

from detectors import loudness_kernels as lk
from detectors.loudness import LoudnessBlock, LoudnessMeter, LoudnessSettings, channel_weights

RATE = 48_000
CHUNK = 9600  # the pipeline's ~200 ms blocks
PROGRAMME = LoudnessSettings(integration="programme")


def levels(*parts: tuple[float, float], channels: int = 2, hz: float = 1000.0, rate: int = RATE):
    """A phase-continuous sine through (seconds, peak dBFS) parts, on ``channels`` channels."""
    gains = [np.full(round(seconds * rate), 10.0 ** (dbfs / 20.0)) for seconds, dbfs in parts]
    gain = np.concatenate(gains)
    wave = gain * np.sin(2.0 * np.pi * hz * np.arange(gain.size) / rate)
    return np.tile(wave, (channels, 1))


def measure(x, *, rate: int = RATE, chunk: int = CHUNK, names=(), settings=PROGRAMME):
    meter = LoudnessMeter(settings, rate, x.shape[0], names)
    x = np.asarray(x, dtype=np.float32)
    blocks: list[LoudnessBlock] = []
    for i in range(0, x.shape[1], chunk):
        blocks += meter.update(np.ascontiguousarray(x[:, i : i + chunk]), i / rate)
    return blocks


def report(case: str, measured: float, expected: float, unit: str) -> str:
    line = f"{case}: measured {measured:.3f} {unit}, expected {expected:.1f} {unit}"
    print(line)
    return line


# --- K-weighting --------------------------------------------------------------------------


def test_k_weighting_at_48k_is_bs1770_tables_1_and_2():
    shelf = [1.53512485958697, -2.69169618940638, 1.19839281085285]
    shelf += [-1.69065929318241, 0.73248077421585]
    published = [shelf, [1.0, -2.0, 1.0, -1.99004745483398, 0.99007225036621]]
    np.testing.assert_allclose(lk.k_weighting(48_000), published, rtol=0, atol=1e-13)


def response_db(coefficients: np.ndarray, hz: np.ndarray, rate: int) -> np.ndarray:
    z = np.exp(-1j * 2.0 * np.pi * hz / rate)
    total = np.ones_like(z)
    for b0, b1, b2, a1, a2 in coefficients:
        total *= (b0 + b1 * z + b2 * z * z) / (1.0 + a1 * z + a2 * z * z)
    return 20.0 * np.log10(np.abs(total))


@pytest.mark.parametrize("rate", [32_000, 44_100, 96_000])
def test_k_weighting_at_other_rates_has_the_48k_response(rate):
    hz = np.array([20.0, 50.0, 100.0, 500.0, 997.0, 2000.0, 5000.0, 10_000.0])
    ours = response_db(lk.k_weighting(rate), hz, rate)
    reference = response_db(lk.k_weighting(48_000), hz, 48_000)
    # Bilinear warping only bends the top octave; below 10 kHz the curves agree to 0.05 dB.
    assert np.max(np.abs(ours - reference)) < 0.05, list(zip(hz, ours - reference, strict=True))


def test_a_997_hz_full_scale_sine_in_one_channel_reads_minus_3_01():
    # BS.1770: "a 0 dB FS 1 kHz (997 Hz) sine wave in the left, centre or right channel" reads
    # -3.01 LKFS; the -0.691 offset cancels the K-filter's gain at 997 Hz.
    x = levels((10.0, 0.0), channels=1, hz=997.0)
    got = measure(x)[-1].integrated_lufs
    assert abs(got - -3.01) < 0.01, report("997 Hz 0 dBFS mono", got, -3.01, "LKFS")


# --- Channel weights ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "weights"),
    [
        (("FC",), [1.0]),
        (("FL", "FR"), [1.0, 1.0]),
        (("FL", "FR", "FC", "LFE", "BL", "BR"), [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]),
        (("FL", "FR", "FC", "LFE", "SL", "SR"), [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]),
        (("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"), [1, 1, 1, 0, 1, 1, 1.41, 1.41]),
        ((), [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]),  # six channels without names: L R C LFE Ls Rs
        (("NONE",) * 6, [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]),  # an unspecified layout
    ],
    ids=["mono", "stereo", "5.1", "5.1(side)", "7.1", "6 channels unnamed", "unspecified"],
)
def test_channel_weights_leave_out_lfe_and_lift_the_surrounds(names, weights):
    assert channel_weights(len(weights), names).tolist() == pytest.approx(weights)


# --- EBU Tech 3341 Table 1 ------------------------------------------------------------------


def test_tech3341_case1_and_2_steady_tones_read_their_level_in_m_s_and_i():
    for case, dbfs in (("3341 #1", -23.0), ("3341 #2", -33.0)):
        last = measure(levels((20.0, dbfs)))[-1]
        for name, value in (
            ("M", last.momentary_lufs),
            ("S", last.short_term_lufs),
            ("I", last.integrated_lufs),
        ):
            assert abs(value - dbfs) <= 0.1, report(f"{case} {name}", value, dbfs, "LUFS")
            report(f"{case} {name}", value, dbfs, "LUFS")


TECH_3341_INTEGRATED = {
    "3341 #3": ((10, -36.0), (60, -23.0), (10, -36.0)),
    "3341 #4": ((10, -72.0), (10, -36.0), (60, -23.0), (10, -36.0), (10, -72.0)),
    "3341 #5": ((20, -26.0), (20.1, -20.0), (20, -26.0)),
}


@pytest.mark.parametrize("case", sorted(TECH_3341_INTEGRATED))
def test_tech3341_gating_cases_integrate_to_minus_23(case):
    got = measure(levels(*TECH_3341_INTEGRATED[case]))[-1].integrated_lufs
    assert abs(got - -23.0) <= 0.1, report(case, got, -23.0, "LUFS")
    report(case, got, -23.0, "LUFS")


FIVE_CHANNELS = (-28.0, -28.0, -24.0, -30.0, -30.0)  # L, R, C, Ls, Rs peak dBFS


@pytest.mark.parametrize(
    ("names", "lfe"),
    [
        (("FL", "FR", "FC", "BL", "BR"), False),
        ((), False),
        (("FL", "FR", "FC", "LFE", "BL", "BR"), True),
        ((), True),
    ],
    ids=["5.0 layout", "5 channels unnamed", "5.1 layout, silent LFE", "6 unnamed, silent LFE"],
)
def test_tech3341_case6_five_channels_weight_the_surrounds(names, lfe):
    x = np.concatenate([levels((20.0, dbfs), channels=1) for dbfs in FIVE_CHANNELS])
    if lfe:
        x = np.insert(x, 3, 0.0, axis=0)  # L R C LFE Ls Rs
    got = measure(x, names=names)[-1].integrated_lufs
    assert abs(got - -23.0) <= 0.1, report("3341 #6", got, -23.0, "LUFS")
    report(f"3341 #6 ({x.shape[0]} channels)", got, -23.0, "LUFS")


def test_a_loud_lfe_does_not_count():
    x = np.concatenate([levels((5.0, dbfs), channels=1) for dbfs in FIVE_CHANNELS])
    x = np.insert(x, 3, levels((5.0, 0.0), channels=1, hz=60.0)[0], axis=0)
    got = measure(x, names=("FL", "FR", "FC", "LFE", "BL", "BR"))[-1].integrated_lufs
    assert abs(got - -23.0) <= 0.1, report("5.1 with a full-scale LFE", got, -23.0, "LUFS")


def test_tech3341_case9_short_term_is_constant_after_3_s():
    blocks = measure(levels(*((1.34, -20.0), (1.66, -30.0)) * 5))
    values = [b.short_term_lufs for b in blocks if b.t_s >= 3.0 - 1e-9]
    low, high = min(values), max(values)
    report("3341 #9 S min", low, -23.0, "LUFS")
    report("3341 #9 S max", high, -23.0, "LUFS")
    assert len(values) >= 100 and low >= -23.1 and high <= -22.9, (low, high)


def test_tech3341_case12_momentary_is_constant_after_1_s():
    blocks = measure(levels(*((0.18, -20.0), (0.22, -30.0)) * 25))
    values = [b.momentary_lufs for b in blocks if b.t_s >= 1.0 - 1e-9]
    low, high = min(values), max(values)
    report("3341 #12 M min", low, -23.0, "LUFS")
    report("3341 #12 M max", high, -23.0, "LUFS")
    assert len(values) >= 80 and low >= -23.1 and high <= -22.9, (low, high)


def faded(x: np.ndarray, rate: int, fade_s: float = 0.010) -> np.ndarray:
    n = round(fade_s * rate)
    ramp = np.linspace(0.0, 1.0, n)
    y = x.copy()
    y[..., :n] *= ramp
    y[..., -n:] *= ramp[::-1]
    return y


def max_true_peak(x: np.ndarray, chunk: int = CHUNK, rate: int = RATE) -> float:
    return max(b.true_peak_dbtp for b in measure(x, chunk=chunk, rate=rate))


@pytest.mark.parametrize(
    ("case", "divisor", "amplitude", "phase_deg", "expected"),
    [
        ("3341 #15", 4, 0.50, 0.0, -6.0),
        ("3341 #16", 4, 0.50, 45.0, -6.0),
        ("3341 #17", 6, 0.50, 60.0, -6.0),
        ("3341 #18", 8, 0.50, 67.5, -6.0),
        ("3341 #19", 4, 1.41, 45.0, 3.0),
    ],
)
def test_tech3341_true_peak_of_sines_at_fractions_of_the_sample_rate(
    case, divisor, amplitude, phase_deg, expected
):
    n = np.arange(RATE)  # any duration: 1 s
    wave = amplitude * np.sin(2.0 * np.pi * n / divisor + math.radians(phase_deg))
    got = max_true_peak(faded(np.tile(wave, (2, 1)), RATE))
    assert expected - 0.4 <= got <= expected + 0.2, report(case, got, expected, "dBTP")
    report(case, got, expected, "dBTP")


def lowpass(rate: float, cutoff_hz: float, taps: int = 511) -> np.ndarray:
    """Kaiser-windowed sinc, unity gain at DC."""
    m = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2.0 * cutoff_hz / rate * m) * np.kaiser(taps, 8.0)
    return h / h.sum()


def tech3341_case20(offset: int) -> np.ndarray:
    """Cases 20-23, built as the table says, with what it leaves open assumed: at 4 fs, a 0.50
    FFS fs/6 sine holding, from a rising zero crossing, one period of a 1.00 FFS fs/4 sine
    (the waveform stays continuous); low-passed at 22 kHz (511-tap Kaiser-windowed sinc); every
    4th sample kept from ``offset``; 10 ms fades; 0.5 s."""
    rate4 = 4 * RATE
    quarter = np.arange(12_000) * 2.0 * np.pi / 24  # fs/6 at 4 fs: 24 samples per period
    burst = np.sin(np.arange(16) * 2.0 * np.pi / 16)  # fs/4 at 4 fs: 16 samples per period
    wave = np.concatenate([0.5 * np.sin(quarter), burst, 0.5 * np.sin(quarter)])
    wave = faded(np.convolve(wave, lowpass(rate4, 22_000.0), mode="same"), rate4)
    return np.tile(wave[offset::4], (2, 1))


@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_tech3341_cases20_to_23_inter_sample_peak_of_a_decimated_burst(offset):
    case = f"3341 #{20 + offset}"
    x = tech3341_case20(offset)
    sample_peak = 20.0 * math.log10(np.abs(x).max())
    got = max_true_peak(x)
    assert -0.4 <= got <= 0.2, report(case, got, 0.0, "dBTP")
    report(f"{case} (sample peak {sample_peak:.2f} dBFS)", got, 0.0, "dBTP")


def test_true_peak_does_not_depend_on_where_the_chunks_split():
    x = faded(np.tile(0.5 * np.sin(2.0 * np.pi * np.arange(RATE) / 6 + math.pi / 3), (2, 1)), RATE)
    assert {round(max_true_peak(x, chunk), 9) for chunk in (1024, 4800, 777, 9600)} == {
        round(max_true_peak(x), 9)
    }


# --- EBU Tech 3342 Table 1 ------------------------------------------------------------------

TECH_3342 = {
    "3342 #1": (((20, -20.0), (20, -30.0)), 10.0),
    "3342 #2": (((20, -20.0), (20, -15.0)), 5.0),
    "3342 #3": (((20, -40.0), (20, -20.0)), 20.0),
    "3342 #4": (((20, -50.0), (20, -35.0), (20, -20.0), (20, -35.0), (20, -50.0)), 15.0),
}


@pytest.mark.parametrize("case", sorted(TECH_3342))
def test_tech3342_loudness_range(case):
    parts, expected = TECH_3342[case]
    # File measurements append at least 1.5 s of silence before the final LRA (Tech 3342).
    got = measure(levels(*parts, (1.5, -math.inf)))[-1].range_lu
    assert abs(got - expected) <= 1.0, report(case, got, expected, "LU")
    report(case, got, expected, "LU")


# --- Live behaviour -------------------------------------------------------------------------


def test_measurements_do_not_depend_on_chunk_sizes():
    x = levels((3.0, -20.0), (4.0, -30.0), (3.0, -25.0))
    reference = measure(x, chunk=CHUNK)
    for chunk in (1024, 1536, 4801, 48_000):
        blocks = measure(x, chunk=chunk)
        assert [b.t_s for b in blocks] == pytest.approx([b.t_s for b in reference])
        for name in ("momentary_lufs", "short_term_lufs", "integrated_lufs", "range_lu"):
            ours = np.array([getattr(b, name) for b in blocks])
            theirs = np.array([getattr(b, name) for b in reference])
            np.testing.assert_allclose(ours, theirs, atol=1e-9, err_msg=f"{name}, chunk {chunk}")


def test_a_step_every_100_ms_and_m_s_only_once_their_window_is_full():
    blocks = measure(levels((5.0, -23.0)))
    assert [round(b.t_s, 6) for b in blocks[:3]] == [0.1, 0.2, 0.3] and len(blocks) == 50
    assert math.isnan(blocks[2].momentary_lufs) and not math.isnan(blocks[3].momentary_lufs)
    assert math.isnan(blocks[28].short_term_lufs) and not math.isnan(blocks[29].short_term_lufs)


def test_silence_is_gated_out_of_integrated_loudness():
    blocks = measure(levels((10.0, -23.0), (20.0, -math.inf), (10.0, -23.0)))
    quiet = [b for b in blocks if 14.0 <= b.t_s <= 29.0]
    assert all(b.momentary_lufs == -math.inf for b in quiet)
    assert all(abs(b.integrated_lufs - -23.0) < 0.1 for b in quiet)
    assert abs(blocks[-1].integrated_lufs - -23.0) < 0.1
    # 2 x 100 blocks touch the tone; the K-filter's ringing after the cut adds one more.
    assert blocks[-1].measured_s == pytest.approx(20.0, abs=0.15)


def test_rolling_window_forgets_what_left_it():
    x = levels((20.0, -30.0), (20.0, -20.0))
    rolling = measure(
        x, settings=LoudnessSettings(integration="rolling", window_s=10.0, min_measured_s=5.0)
    )
    programme = measure(x)
    assert abs(rolling[-1].integrated_lufs - -20.0) < 0.05, rolling[-1]
    assert programme[-1].integrated_lufs < -21.5, programme[-1]  # still remembers -30
    assert rolling[-1].measured_s == pytest.approx(10.0)
    assert rolling[-1].range_lu == pytest.approx(0.0, abs=0.05)  # a steady tone: no range


def test_rolling_window_of_silence_leaves_nothing_to_judge():
    x = levels((10.0, -23.0), (14.0, -math.inf))  # the last 3 s windows hold no tone
    last = measure(
        x, settings=LoudnessSettings(integration="rolling", window_s=10.0, min_measured_s=5.0)
    )[-1]
    assert last.integrated_lufs == -math.inf and last.measured_s == 0.0
    assert math.isnan(last.range_lu)


def test_reset_integration_starts_over_and_keeps_the_short_term_window():
    meter = LoudnessMeter(PROGRAMME, RATE, 2)
    x = np.asarray(levels((10.0, -30.0), (10.0, -20.0)), dtype=np.float32)
    half = 10 * RATE
    meter.update(np.ascontiguousarray(x[:, :half]), 0.0)
    meter.reset_integration()
    blocks = meter.update(np.ascontiguousarray(x[:, half:]), 10.0)
    # Blocks after the reset straddle the step for 0.4 s, then read -20.
    assert abs(blocks[-1].integrated_lufs - -20.0) < 0.1, blocks[-1]
    assert not math.isnan(blocks[0].short_term_lufs)


def test_a_timestamp_gap_restarts_momentary_and_short_term_but_not_integrated():
    meter = LoudnessMeter(PROGRAMME, RATE, 2)
    x = np.asarray(levels((5.0, -23.0)), dtype=np.float32)
    first = meter.update(x, 0.0)
    after = meter.update(x, 60.0)  # 55 s later than expected
    assert math.isnan(after[0].momentary_lufs) and math.isnan(after[0].short_term_lufs)
    assert after[0].t_s == pytest.approx(60.1)
    assert after[0].measured_s == pytest.approx(first[-1].measured_s)
    assert abs(after[-1].integrated_lufs - -23.0) < 0.1


def test_runs_at_full_scale_are_clipping_and_a_full_scale_sine_is_not():
    t = np.arange(2 * RATE) / RATE
    clean = 0.999 * np.sin(2.0 * np.pi * 997.0 * t)
    clipped = np.clip(1.5 * np.sin(2.0 * np.pi * 997.0 * t), -1.0, 1.0)
    x = np.stack([clean, np.where(t >= 1.0, clipped, clean)])
    blocks = measure(x, chunk=1000)
    hit = [b for b in blocks if b.clipped_channels]
    assert all(b.clipped_channels == (1,) for b in hit)
    assert hit[0].t_s == pytest.approx(1.1) and len(hit) == 10
    # 1.5x over full scale at 997 Hz: asin(1/1.5) .. pi - asin(1/1.5) of each half period.
    assert all(b.clip_run_samples >= 12 for b in hit), [b.clip_run_samples for b in hit]
    assert measure(x[:1])[-1].clip_run_samples == 0


def test_a_clip_run_split_across_chunks_is_one_run():
    x = np.zeros((1, 4800), dtype=np.float32)
    x[0, 2398:2402] = 1.0  # 4 samples at full scale, split 2 + 2 by the chunk boundary
    meter = LoudnessMeter(LoudnessSettings(clip_run_samples=4), RATE, 1)
    blocks = meter.update(x[:, :2400].copy(), 0.0) + meter.update(x[:, 2400:].copy(), 0.05)
    assert [b.clip_run_samples for b in blocks] == [4] and blocks[0].clipped_channels == (0,)


# --- Cross-checks on programme-like material ------------------------------------------------


def speech_like(seconds: float, rate: int = RATE, seed: int = 1) -> np.ndarray:
    """Band-limited noise under a syllabic (3-6 Hz) envelope with pauses, different per
    channel: stands in for dialogue."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    spectrum = np.fft.rfft(rng.standard_normal((2, n)))
    hz = np.fft.rfftfreq(n, 1.0 / rate)
    shape = 1.0 / (1.0 + (hz / 3000.0) ** 4) / (1.0 + (150.0 / np.maximum(hz, 1.0)) ** 2)
    noise = np.fft.irfft(spectrum * shape, n)
    t = np.arange(n) / rate
    syllables = np.abs(np.sin(2.0 * np.pi * 2.2 * t)) ** 2 * (
        0.6 + 0.4 * np.sin(2 * np.pi * 0.3 * t)
    )
    pauses = (np.sin(2.0 * np.pi * 0.23 * t + 1.0) > -0.7).astype(float)
    x = noise * syllables * pauses
    return 0.12 * x / np.sqrt(np.mean(x**2))


def music_like(seconds: float, rate: int = RATE, seed: int = 2) -> np.ndarray:
    """Chords of harmonic tones changing every half second, decaying, over a crescendo."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    x = np.zeros((2, n))
    note = round(0.5 * rate)
    for start in range(0, n, note):
        seg = slice(start, min(start + note, n))
        tt = t[seg] - t[start]
        for root in rng.choice([110.0, 147.0, 196.0, 262.0, 330.0], size=3, replace=False):
            for harmonic in range(1, 7):
                pan = rng.uniform(0.3, 1.0, size=(2, 1))
                x[:, seg] += (
                    pan * np.sin(2 * np.pi * root * harmonic * tt) / harmonic * np.exp(-3.0 * tt)
                )
    x *= 0.3 + 0.7 * t / seconds
    return 0.25 * x / np.abs(x).max()


def pyloudnorm_meter(rate: int):
    import pyloudnorm  # the test extra's; imported here, where needed (it loads scipy)

    return pyloudnorm.Meter(rate, filter_class="DeMan")


def ebur128(x: np.ndarray, rate: int, layout: str) -> dict[str, float]:
    """FFmpeg's ebur128 filter through PyAV: its last per-100 ms readings (metadata), with
    the true peak (linear in the metadata) in dBTP."""
    graph = av.filter.Graph()
    source = graph.add_abuffer(
        format="fltp", sample_rate=rate, layout=layout, time_base=Fraction(1, rate)
    )
    graph.link_nodes(source, graph.add("ebur128", "metadata=1:peak=true"), graph.add("abuffersink"))
    graph.configure()
    x = np.asarray(x, dtype=np.float32)
    last: dict[str, str] = {}

    def drain() -> None:
        while True:
            try:
                frame = graph.pull()
            except (BlockingIOError, av.error.EOFError):
                return
            last.update(frame.metadata)

    for i in range(0, x.shape[1], 1024):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(x[:, i : i + 1024]), format="fltp", layout=layout
        )
        frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    readings = {key.removeprefix("lavfi.r128."): float(value) for key, value in last.items()}
    readings["true_peak"] = 20.0 * math.log10(readings["true_peak"])
    return readings


MATERIAL = {
    "speech-like": lambda rate: speech_like(12.0, rate),
    "music-like": lambda rate: music_like(12.0, rate),
}


@pytest.mark.parametrize("rate", [48_000, 44_100])
@pytest.mark.parametrize("material", sorted(MATERIAL))
def test_integrated_loudness_agrees_with_pyloudnorm_and_ebur128(material, rate):
    x = MATERIAL[material](rate)
    blocks = measure(x, rate=rate, chunk=rate // 5)
    ours = blocks[-1]
    peak = max(b.true_peak_dbtp for b in blocks)
    theirs = pyloudnorm_meter(rate).integrated_loudness(x.T)
    ffmpeg = ebur128(x, rate, "stereo")
    line = (
        f"{material} {rate} Hz: I ours {ours.integrated_lufs:.3f}, pyloudnorm {theirs:.3f},"
        f" ebur128 {ffmpeg['I']:.3f} LUFS; LRA ours {ours.range_lu:.2f}, ebur128"
        f" {ffmpeg['LRA']:.2f} LU; true peak ours {peak:.2f}, ebur128"
        f" {ffmpeg['true_peak']:.2f} dBTP"
    )
    print(line)
    assert abs(ours.integrated_lufs - theirs) <= 0.02, line
    assert abs(ours.integrated_lufs - ffmpeg["I"]) <= 0.05, line
    assert abs(ours.range_lu - ffmpeg["LRA"]) <= 1.0, line
    assert abs(peak - ffmpeg["true_peak"]) <= 0.2, line


def test_five_one_agrees_with_ebur128_and_with_pyloudnorm_without_the_lfe():
    front = speech_like(10.0, seed=3)
    back = music_like(10.0, seed=4)
    lfe = 0.5 * np.sin(2 * np.pi * 50.0 * np.arange(10 * RATE) / RATE)
    x = np.stack([front[0], front[1], 0.7 * (front[0] + front[1]) / 2, lfe, back[0], back[1]])
    ours = measure(x, names=("FL", "FR", "FC", "LFE", "BL", "BR"))[-1].integrated_lufs
    ffmpeg = ebur128(x, RATE, "5.1")["I"]
    theirs = pyloudnorm_meter(RATE).integrated_loudness(np.delete(x, 3, axis=0).T)
    line = f"5.1: I ours {ours:.3f}, pyloudnorm (L R C Ls Rs) {theirs:.3f}, ebur128 {ffmpeg:.3f}"
    print(line)
    assert abs(ours - theirs) <= 0.02, line
    assert abs(ours - ffmpeg) <= 0.05, line


def test_loudness_range_agrees_with_pyloudnorm():
    x = np.concatenate([speech_like(20.0), 0.3 * music_like(20.0)], axis=1)
    ours = measure(np.concatenate([x, np.zeros((2, 3 * RATE // 2))], axis=1))[-1].range_lu
    theirs = pyloudnorm_meter(RATE).loudness_range(x.T)
    line = f"LRA speech then quiet music: ours {ours:.2f} LU, pyloudnorm {theirs:.2f} LU"
    print(line)
    assert abs(ours - theirs) <= 0.1, line
