"""Frame decoders: JPEG frame folders and video files behind one ``read(indices)`` interface.

One module per backend (``decord_video``, ``pyav_video``, ``torchcodec_video``,
``jpeg_folder``); ``registry`` picks one; ``frame_index`` caches what exact seeking needs.
Users import ``open_source`` and ``SourceError`` from ``ops.data.sources``.
"""
