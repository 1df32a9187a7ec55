"""Audio DSP: G.711 codecs, streaming resamplers, playout queue, media clock, WAV I/O."""
