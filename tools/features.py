#!/usr/bin/python3
"""Speech features from their definitions, in NumPy: log-mel filterbank energies and MFCCs.

Pipeline for a mono waveform x at sample rate sr (each step a function below):
  1. pre-emphasis      y[0] = x[0], y[n] = x[n] - a x[n-1]                       (a = 0.97)
  2. framing           frames of L = round(0.025 sr) samples every H = round(0.010 sr) samples;
                       F = 1 + (len - L) // H frames (a signal shorter than L is zero-padded to L)
  3. Hamming window    w[n] = 0.54 - 0.46 cos(2 pi n / (L - 1)), n = 0..L-1
  4. power spectrum    P[k] = |sum_n f[n] w[n] e^{-2 pi i k n / N}|^2 / N, k = 0..N/2,
                       N = the smallest power of two >= L
  5. mel filterbank    M triangular filters with centres equally spaced on the HTK mel scale
                       mel(f) = 2595 log10(1 + f / 700) between fmin and fmax (default 20 Hz, sr/2):
                       M + 2 edge points m_0..m_{M+1}; filter j rises linearly from f(m_{j-1}) to 1
                       at f(m_j) and falls to 0 at f(m_{j+1}), evaluated at the bin frequencies
                       k sr / N (no rounding of edges to bins)
  6. log               log(max(E, 1e-10)) of each filter's energy E = sum_k P[k] H_j[k]
  7. DCT (MFCC only)   orthonormal DCT-II of the M log energies, first C coefficients:
                       c_q = s_q sqrt(2/M) sum_j e_j cos(pi q (2j + 1) / (2M)), s_0 = 1/sqrt(2), else 1
No dithering: the same waveform always gives the same features.

From Python: logmel(x, sr, n_mels=40), mfcc(x, sr, n_mfcc=20, n_mels=40), read_wav(path).
Command line: features.py WAV [--mfcc C] [--mels M]  prints the frame count and feature size.
"""
import argparse
import sys
import wave

import numpy as np

EPS = 1e-10


def read_wav(path):
    """(samples float64 in [-1, 1), sample rate) of a mono 16-bit PCM WAV; ValueError if not one."""
    try:
        with wave.open(path, "rb") as w:
            ch, width, sr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError) as e:
        raise ValueError("%s: not a readable WAV file (%s)" % (path, e))
    if ch != 1 or width != 2:
        raise ValueError("%s: expected mono 16-bit PCM, got %d channel(s) of %d byte(s)" % (path, ch, width))
    if len(raw) != 2 * n:
        raise ValueError("%s: header says %d samples, data holds %d" % (path, n, len(raw) // 2))
    return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0, sr


def preemphasis(x, a=0.97):
    x = np.asarray(x, dtype=np.float64)
    return np.concatenate([x[:1], x[1:] - a * x[:-1]])


def frame_sizes(sr, win_s=0.025, hop_s=0.010):
    """(L, H): window and hop in samples."""
    return int(round(win_s * sr)), int(round(hop_s * sr))


def frames(x, sr, win_s=0.025, hop_s=0.010):
    """x framed: (F, L), F = 1 + (len - L) // H."""
    L, H = frame_sizes(sr, win_s, hop_s)
    if len(x) < L:
        x = np.concatenate([x, np.zeros(L - len(x))])
    F = 1 + (len(x) - L) // H
    idx = np.arange(L)[None, :] + H * np.arange(F)[:, None]
    return x[idx]


def hamming(L):
    n = np.arange(L)
    return 0.54 - 0.46 * np.cos(2 * np.pi * n / (L - 1))


def nfft_for(L):
    n = 1
    while n < L:
        n *= 2
    return n


def power_spectrum(fr, nfft):
    """fr: (F, L) windowed frames -> (F, nfft/2 + 1)."""
    return np.abs(np.fft.rfft(fr, n=nfft, axis=1)) ** 2 / nfft


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels, nfft, sr, fmin=20.0, fmax=None):
    """(n_mels, nfft/2 + 1) triangular filters and their centre frequencies in Hz."""
    fmax = sr / 2.0 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sr / 2.0:
        raise ValueError("need 0 <= fmin < fmax <= sr/2, got %g, %g (sr %g)" % (fmin, fmax, sr))
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    f = np.arange(nfft // 2 + 1) * sr / nfft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0.0, np.minimum((f - lo) / (mid - lo), (hi - f) / (hi - mid)))
    return fb, edges[1:-1]


def dct2(e, n_out):
    """Orthonormal DCT-II along the last axis, first n_out coefficients."""
    M = e.shape[-1]
    q = np.arange(n_out)[:, None]
    j = np.arange(M)[None, :]
    basis = np.sqrt(2.0 / M) * np.cos(np.pi * q * (2 * j + 1) / (2 * M))
    basis[0] /= np.sqrt(2.0)
    return e @ basis.T


def logmel(x, sr, n_mels=40, fmin=20.0, fmax=None, preemph=0.97):
    """(F, n_mels) log mel energies of waveform x."""
    fr = frames(preemphasis(x, preemph), sr)
    L = fr.shape[1]
    nfft = nfft_for(L)
    P = power_spectrum(fr * hamming(L), nfft)
    fb, _ = mel_filterbank(n_mels, nfft, sr, fmin, fmax)
    return np.log(np.maximum(P @ fb.T, EPS))


def mfcc(x, sr, n_mfcc=20, n_mels=40, fmin=20.0, fmax=None, preemph=0.97):
    """(F, n_mfcc) MFCCs of waveform x (c_0 included)."""
    if not 0 < n_mfcc <= n_mels:
        raise ValueError("need 0 < n_mfcc <= n_mels, got %d, %d" % (n_mfcc, n_mels))
    return dct2(logmel(x, sr, n_mels, fmin, fmax, preemph), n_mfcc)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wav")
    ap.add_argument("--mfcc", type=int, default=0, help="MFCC count (0: log-mel only)")
    ap.add_argument("--mels", type=int, default=40)
    a = ap.parse_args(argv)
    try:
        x, sr = read_wav(a.wav)
        f = mfcc(x, sr, a.mfcc, a.mels) if a.mfcc else logmel(x, sr, a.mels)
    except (ValueError, OSError) as e:
        print("features.py: %s" % e, file=sys.stderr)
        return 1
    print("%s: %d samples at %d Hz -> %d frames x %d features" % (a.wav, len(x), sr, f.shape[0], f.shape[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
