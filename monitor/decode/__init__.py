"""The decode path: PyAV sources, pictures and audio blocks, thumbnails."""
