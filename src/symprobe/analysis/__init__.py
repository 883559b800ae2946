"""Analysis of trajectories: :mod:`.observables` (pure functions of frames: g(r), orientations, dipole
correlations, MSD, angular momentum, spectra, drift) and :mod:`.statistics` (error bars and verdicts)."""
