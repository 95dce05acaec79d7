"""Video mode: one prompt, a whole clip (stage 1 tracks, the refiner refines every frame).

Needs the ``video`` extra (PyAV): ``pip install 'dissam[video]'``."""
