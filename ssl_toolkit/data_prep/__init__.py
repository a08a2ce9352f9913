"""Data preparation: synthesize or import scenes, then compute features.

Modules, one idea each:

- :mod:`.arrays`    microphone array geometry (DCASE MIC tetrahedron) and FOA encoding
- :mod:`.sources`   event signals: the built-in procedural library and user clip folders
- :mod:`.rooms`     propagation paths: free field, shoebox image sources, late tail
- :mod:`.render`    paths -> multichannel impulse responses -> clip audio
- :mod:`.synth`     ``SynthConfig``, scene plans and ``synthesize`` (``ssl prep synth``)
- :mod:`.importers` ``import_tut2018`` (``ssl prep import``)
- :mod:`.labels`    the TUT2018 label CSV format and frame labels
- :mod:`.features`  ``FeatureConfig``, ``extract`` and ``compute_features``
"""
